"""Task bodies and small helpers shared by the tests."""

from __future__ import annotations

import json

from kthreads import Completion, Kernel, Policy, Sched, SchedConfig, Task, VmaSpec, return_to_user
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
