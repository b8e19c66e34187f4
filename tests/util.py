"""Task bodies and small helpers shared by the tests."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

from kthreads import (GFP_NOFS, Completion, Kernel, Mutex, Policy, RwSemaphore, Sched, SchedConfig, Task,
                      TaskState, VmaSpec, alloc_pages, return_to_user, schedule_timeout, send_sigkill)
from kthreads.kernel import POLICY_OPS
from kthreads.policy import PolicyOps
from stress import EpisodeConfig, EpisodeResult, get_scenario, run_episode
from stress.scenarios import pages_leaving

#: Tests that assert the outcome of a concurrent run run it on the controlled
#: CPU with a fixed seed: the interleaving is decided, so they cannot flake.
CONTROLLED = SchedConfig(Sched.PCT, seed=0)
#: More interleavings for the tests that check every scenario's outcome.
SCHEDS = (SchedConfig(Sched.PCT, seed=0), SchedConfig(Sched.PCT, seed=1), SchedConfig(Sched.RANDOM, seed=0))


def park_killable(done: Completion):
    """A body that sleeps killably until ``done`` (SIGKILL unwinds it)."""
    def body(t: Task) -> None:
        done.wait_killable()
        return_to_user(t)
    return body


def park_uninterruptible(done: Completion):
    def body(t: Task) -> None:
        done.wait_for_completion()
        return_to_user(t)
    return body


def exited(*tasks: Task):
    return lambda: all(t.state_letter == "X" for t in tasks)


def records(path):
    """The JSON records of a flight-recorder log, one a line."""
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def write(path, recs):
    """Write ``recs`` as a JSONL log; returns the path."""
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def run_controlled(name: str, policy: Policy, sched: SchedConfig = CONTROLLED) -> EpisodeResult:
    """One episode of a scenario on the controlled CPU, which must end without
    a harness error or an invariant breach (whatever its outcome)."""
    res = run_episode(get_scenario(name), EpisodeConfig(sched=sched, policy=policy))
    assert res.error is None and res.breaches == [], (res.error, res.breaches)
    return res


def recorded(k: Kernel, name: str, pid: int | None = None) -> list:
    """The flight recorder's events of that name (of that pid), up to the shutdown."""
    out = []
    for e in k.tracer.events():
        if e.name == "shutdown":
            break
        if e.name == name and (pid is None or e.pid == pid):
            out.append(e)
    return out


def dmesg_texts(k: Kernel) -> list[str]:
    return [line.text for line in k.dmesg()]


def pages_left(k: Kernel, free: int) -> int:
    """Anon pages for one VMA so that, with its page table, ``free`` pages stay free."""
    return pages_leaving(k, free)


def stuck_victim(k: Kernel, release: Completion) -> tuple[Task, Task]:
    """A victim whose mmapper thread holds its mmap_sem for write until
    ``release`` (uninterruptibly): every reap attempt fails."""
    never = Completion("never")

    def mmapper(t: Task) -> None:
        with t.mm.mmap_sem.write():
            release.wait_for_completion()

    v = k.fork("victim", park_killable(never), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    m = k.clone_thread(v, "mmapper", mmapper)
    assert k.wait_until(lambda: v.mm.mmap_sem.owner is m, 5)
    return v, m


@dataclass
class Sleepers:
    """One task asleep in each way a stack can end (the call-trace tests')."""

    holder: Task  # holds lock0 and mmap_sem for write, asleep on ``release``
    parked: Task  # asleep on ``never`` in a system call
    mutexer: Task  # asleep on lock0
    faulter: Task  # asleep on mmap_sem for read, as a page fault
    kthread: Task  # a kernel thread asleep on ``never``
    lock0: Mutex
    sem: RwSemaphore
    never: Completion
    release: Completion

    def tasks(self) -> tuple[Task, ...]:
        return self.holder, self.parked, self.mutexer, self.faulter, self.kthread

    def finish(self, k: Kernel) -> None:
        """Let everybody go and wait until they have exited."""
        self.release.complete()
        self.never.complete_all()
        assert k.wait_until(exited(*self.tasks()), 2)


def sleepers_of_every_kind(k: Kernel) -> Sleepers:
    never, release = Completion(), Completion()
    m, sem = Mutex("lock0", k), RwSemaphore("&mm->mmap_sem", k)

    def holder(t: Task) -> None:
        with m:
            sem.down_write()
            release.wait_for_completion()
            sem.up_write()

    def waits_mutex(t: Task) -> None:
        with m:
            pass

    def faults(t: Task) -> None:
        with sem.read():
            pass

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: sem.owner is h, 2)
    p = k.fork("parked", park_uninterruptible(never))
    w = k.fork("mutexer", waits_mutex)
    f = k.fork("faulter", faults)
    kt = k.kthread_run("kt", park_uninterruptible(never))
    assert k.wait_until(lambda: all(x.state_letter == "D" for x in (p, w, f, kt)) and p.wchan is never
                        and w.wchan is m and f.wchan is sem and kt.wchan is never, 2)
    return Sleepers(h, p, w, f, kt, m, sem, never, release)


def stall_warnings(k: Kernel) -> list[str]:
    """A GFP_NOFS allocation loops for 1.2 model seconds beside a hog that
    leaves 4 pages free (boot with ``alloc_stall_secs=0.5``); both are then
    let go. The "page allocation stalls" lines printed meanwhile."""
    done = Completion("hog-done")
    hog = k.fork("hog", park_killable(done), vmas=[VmaSpec(pages=pages_left(k, 4))])
    t = k.fork("nofs", lambda t: alloc_pages(GFP_NOFS))
    assert k.wait_until(lambda: t.alloc_since is not None and k.clock.now() - t.alloc_since > 1.2, 5,
                        idle_ok=True)
    lines = [s for s in dmesg_texts(k) if "page allocation stalls" in s]
    done.complete()
    assert k.wait_until(exited(t, hog), 5)
    return lines


def killed_in_exit_mm(k: Kernel) -> tuple[Task, Task, Completion]:
    """A victim SIGKILLed while its mmapper thread holds its mmap_sem for
    write: it sleeps in exit_mm's down_read until ``release`` (returned,
    with the victim and the mmapper) is completed."""
    never, release = Completion(), Completion()

    def mmapper(t: Task) -> None:
        with t.mm.mmap_sem.write():
            release.wait_for_completion()

    v = k.fork("victim", park_uninterruptible(never), vmas=[VmaSpec(pages=2)])
    m = k.clone_thread(v, "mmapper", mmapper)
    sem = v.mm.mmap_sem
    assert k.wait_until(lambda: sem.owner is m, 2)
    send_sigkill(v)
    never.complete_all()  # the victim heads back to user space, notices the kill, exits
    assert k.wait_until(lambda: v.state_letter == "D" and v.wchan is sem, 2)
    return v, m, release


def assert_first_to_set(policy: Policy, flags: Iterable[str]) -> None:
    """Each flag is on in ``policy``'s ops and off in ``PolicyOps`` and in
    every design before it: ``policy`` is the change that brings it."""
    ops = POLICY_OPS[policy]
    earlier = list(Policy)[:list(Policy).index(policy)]
    for flag in flags:
        assert getattr(ops, flag) is True, flag
        assert getattr(PolicyOps, flag) is False, flag
        assert all(getattr(POLICY_OPS[p], flag) is False for p in earlier), flag


@contextmanager
def spinning(k: Kernel) -> Iterator[Task]:
    """A task that stays in TASK_RUNNING (napping a jiffy at a time), once
    it has been scheduled; stopped, and joined, when the block ends."""
    stop: list[bool] = []

    def spinner(t: Task) -> None:
        while not stop:
            schedule_timeout(TaskState.TASK_RUNNING, 1)

    s = k.fork("spinner", spinner)
    try:
        assert k.wait_until(lambda: s.nvcsw > 0, 2)
        yield s
    finally:
        stop.append(True)
    assert k.wait_until(exited(s), 2)

