"""Deterministic scenarios: the known shapes of the OOM-reaper story.

Every scenario orders its steps on model state (``Sequencer.until``), never
on sleeps, then leaves the kernel to run into its outcome. Each declares,
per policy, which outcomes are EXPECTED, ACCEPTABLE or INTERESTING; anything
else is FORBIDDEN.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from kthreads import (GFP_KERNEL, GFP_NOFS, OOM_SCORE_ADJ_MIN, Completion, Kernel, Mutex, Policy,
                      Task, TaskState, VmaSpec, alloc_pages, do_munmap, mmget, mmput, return_to_user,
                      schedule_timeout, schedule_timeout_uninterruptible, send_sigkill)
from kthreads.futex import Futex, futex_wait, set_robust_list
from kthreads.mm import vm_mmap_write_lock
from kthreads.mrelease import SIGKILL, pidfd_open, pidfd_send_signal, process_mrelease
from kthreads.oom_reaper import freeze_oom_reaper, thaw_oom_reaper

from .config import REAPER_WINDOW
from .outcomes import Grade, Outcome
from .sequencer import Sequencer

Roles = dict[str, Task]
DriveFn = Callable[[Kernel, Sequencer, random.Random], Roles]
Grades = dict[Policy, dict[Outcome, Grade]]


def expect(outcomes: dict[Policy, Outcome],
           acceptable: dict[Policy, Outcome] | None = None) -> Grades:
    """One EXPECTED outcome per policy, and maybe an ACCEPTABLE other.

    Each design is the one before it plus one change, so a scenario names
    its outcome only where a change changes it: a policy not named inherits
    the grades of the design before it (one before the first named, the
    first named's). An ACCEPTABLE outcome belongs to the policy it is named
    for and is inherited the same way."""
    grades: Grades = {}
    first = next(p for p in Policy if p in outcomes)
    previous: dict[Outcome, Grade] = {}
    for policy in Policy:
        source = policy if policy in outcomes else (first if not previous else None)
        if source is None:
            grades[policy] = dict(previous)
        else:
            grades[policy] = {outcomes[source]: Grade.EXPECTED}
            extra = (acceptable or {}).get(source)
            if extra is not None:
                grades[policy][extra] = Grade.ACCEPTABLE
        previous = grades[policy]
    return grades


@dataclass(frozen=True)
class Scenario:
    """A scripted story: ``drive`` creates the tasks and orders the setup on model
    state. Only ``name`` and ``drive`` are needed for an ad-hoc scenario; with no
    grades every outcome is graded FORBIDDEN, so its result only reports."""

    name: str
    drive_fn: DriveFn
    summary: str = ""
    story: str = ""
    nr_pages: int = 1024
    grades: Grades = field(default_factory=dict)

    def drive(self, k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
        return self.drive_fn(k, seq, rng)

    def grade(self, policy: Policy, outcome: Outcome, shape: object = None) -> Grade:
        return self.grades.get(policy, {}).get(outcome, Grade.FORBIDDEN)

    def expected(self, policy: Policy) -> list[Outcome]:
        return [o for o, g in self.grades.get(policy, {}).items() if g is Grade.EXPECTED]


# -- helpers ------------------------------------------------------------------
def pages_leaving(k: Kernel, free: int) -> int:
    """Anon pages for one VMA so that, with its page tables, ``free`` pages stay free."""
    pages = k.zone.nr_free - free
    while pages + (pages + 511) // 512 > k.zone.nr_free - free:
        pages -= 1
    if pages < 1:
        raise ValueError(f"zone of {k.zone.nr_pages} pages is too small for this scenario")
    return pages


def sleeps_on(task: Task, obj: object) -> Callable[[], bool]:
    return lambda: task.state_letter == "D" and task.wchan is obj


def jitter(rng: random.Random, n: int, spread: float = 0.1) -> int:
    """Vary a size by +-spread, deterministically per seed."""
    return max(1, int(n * (1 + rng.uniform(-spread, spread))))


def allocate_once(gfp: int) -> Callable[[Task], None]:
    def body(t: Task) -> None:
        alloc_pages(gfp)
    return body


def park_killable(done: Completion) -> Callable[[Task], None]:
    def body(t: Task) -> None:
        done.wait_for_completion_killable()
        return_to_user(t)
    return body


# -- lockup A -------------------------------------------------------------------
def lockup_a_setup(k: Kernel, seq: Sequencer, rng: random.Random,
                   gfp: int = GFP_KERNEL) -> tuple[Roles, Completion]:
    """writer holds inode_lock; victim (the biggest) sleeps in D on it. Completing
    the returned ``go`` makes writer allocate while holding the lock."""
    inode_lock = Mutex("inode_lock", k)
    go = Completion("go")

    def writer(t: Task) -> None:
        with inode_lock:  # e.g. an XFS inode lock
            go.wait_for_completion()
            # Too small to fail: loops until memory comes back. GFP_NOFS
            # (fs code under a lock) may not even call the OOM killer.
            alloc_pages(gfp)

    def victim(t: Task) -> None:
        with inode_lock:  # mutex_lock(): TASK_UNINTERRUPTIBLE, SIGKILL cannot wake it
            pass

    w = k.fork("writer", writer, vmas=[VmaSpec(pages=jitter(rng, 40))])
    seq.until("writer takes inode_lock", lambda: inode_lock.owner is w)
    v = k.fork("victim", victim, vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    seq.until("victim sleeps in D on inode_lock", sleeps_on(v, inode_lock))
    return {"writer": w, "victim": v}, go


def drive_lockup_mutex(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    roles, go = lockup_a_setup(k, seq, rng)
    go.complete()
    return roles


def drive_lockup_nofs(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    roles, go = lockup_a_setup(k, seq, rng, GFP_NOFS)
    go.complete()
    w = roles["writer"]
    seq.until("writer loops in the allocator with GFP_NOFS", lambda: w.alloc_since is not None)
    roles["allocator"] = k.fork("allocator", allocate_once(GFP_KERNEL))
    return roles


# -- lockup B -------------------------------------------------------------------
def drive_mmap_sem_writer(k: Kernel, seq: Sequencer, rng: random.Random,
                          queued: bool = False) -> Roles:
    never, go = Completion("never"), Completion("go")

    def main_thread(t: Task) -> None:  # the victim's main thread, asleep in read()
        never.wait_for_completion_killable()
        return_to_user(t)

    def mmapper(t: Task) -> None:  # mmap(): mmap_sem for write, fs allocates GFP_NOFS
        with t.mm.mmap_sem.write():
            go.wait_for_completion()
            alloc_pages(GFP_NOFS)

    def faulter(t: Task) -> None:  # a page fault: mmap_sem for read, GFP_NOFS in the fs
        with t.mm.mmap_sem.read():
            go.wait_for_completion()
            alloc_pages(GFP_NOFS)

    def queued_mmapper(t: Task) -> None:  # mmap() in another thread: queues for write
        with t.mm.mmap_sem.write():
            pass

    v = k.fork("victim", main_thread, vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    sem = v.mm.mmap_sem
    roles: Roles = {"victim": v}
    if not queued:
        w = k.clone_thread(v, "mmapper", mmapper)
        seq.until("mmapper holds mmap_sem for write", lambda: sem.owner is w)
        roles["mmapper"] = w
    else:
        f = k.clone_thread(v, "faulter", faulter)
        seq.until("faulter holds mmap_sem for read", lambda: f in sem.readers())
        q = k.clone_thread(v, "mmapper", queued_mmapper)
        seq.until("mmapper queues for mmap_sem write", sleeps_on(q, sem))
        roles.update(faulter=f, mmapper=q)
        w = f
    go.complete()
    seq.until("the mmap_sem holder loops in the allocator", lambda: w.alloc_since is not None)
    roles["allocator"] = k.fork("allocator", allocate_once(GFP_KERNEL))
    return roles


def drive_mmap_sem_queued_writer(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    return drive_mmap_sem_writer(k, seq, rng, queued=True)


def victim_stuck_in_exit_mm(k: Kernel, seq: Sequencer, comm: str, main_thread: Callable[[Task], None],
                            mmapper: Callable[[Task], None], vmas: list[VmaSpec]) -> Roles:
    """A victim whose mmapper thread holds its mmap_sem for write: an allocator's
    OOM kill leaves the main thread stuck in exit_mm, and the reaper (if any)
    has failed a trylock when this returns."""
    v = k.fork(comm, main_thread, vmas=vmas)
    m = k.clone_thread(v, "mmapper", mmapper)
    sem = v.mm.mmap_sem
    seq.until(f"mmapper holds {comm}'s mmap_sem for write", lambda: sem.owner is m)
    a = k.fork("allocator", allocate_once(GFP_KERNEL))
    seq.until(f"{comm} killed, exiting, stuck in exit_mm", sleeps_on(v, sem))
    if k.reaper_status().running:
        seq.until(f"the reaper failed a trylock on {comm} and sleeps before retrying",
                  lambda: k.reaper_status().skipped >= 1)
    return {comm: v, "mmapper": m, "allocator": a}


# -- the victim's exit racing the reaper ------------------------------------------
def drive_exit_race(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    never, release = Completion("never"), Completion("release")

    def main_thread(t: Task) -> None:
        never.wait_for_completion_killable()
        return_to_user(t)

    def mmapper(t: Task) -> None:  # holds mmap_sem for write across an uninterruptible wait
        with t.mm.mmap_sem.write():
            release.wait_for_completion()

    roles = victim_stuck_in_exit_mm(k, seq, "victim", main_thread, mmapper,
                                    [VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    release.complete()  # the victim now exits on its own, between two reaper tries
    return roles


# -- a second victim while the reaper is busy ------------------------------------
def drive_second_victim(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    inode_lock = Mutex("inode_lock", k)
    c1, c2, go = Completion("c1"), Completion("c2"), Completion("go")

    def writer(t: Task) -> None:  # lockup A's writer, for the second kill
        with inode_lock:
            go.wait_for_completion()
            while True:  # fills the memory the first victim gives back, then loops
                alloc_pages(GFP_KERNEL)
                return_to_user(t)  # a later design may kill the writer too

    def victim2(t: Task) -> None:
        with inode_lock:
            pass

    def main_thread(t: Task) -> None:
        c2.wait_for_completion_killable()
        return_to_user(t)

    def mmapper(t: Task) -> None:
        sem = t.mm.mmap_sem
        with sem.write():
            c1.wait_for_completion()
            for vma in t.mm.vmas[:-1]:
                do_munmap(t.mm, vma)  # munmap(): most of victim1's memory goes back
        # Having handed mmap_sem to the exiting main thread, queue for it
        # again at once: the reaper's trylock keeps failing all along.
        with sem.write():
            c2.wait_for_completion()

    w = k.fork("writer", writer, vmas=[VmaSpec(pages=20)])
    seq.until("writer takes inode_lock", lambda: inode_lock.owner is w)
    total = k.zone.nr_pages
    v2 = k.fork("victim2", victim2, vmas=[VmaSpec(pages=jitter(rng, total * 38 // 100, 0.05))])
    seq.until("victim2 sleeps in D on inode_lock", sleeps_on(v2, inode_lock))
    big = pages_leaving(k, k.zone.wmark_min // 2) - 60
    roles = victim_stuck_in_exit_mm(k, seq, "victim1", main_thread, mmapper,
                                    [VmaSpec(pages=big), VmaSpec(pages=40)])
    v1, m = roles["victim1"], roles["mmapper"]
    sem = m.mm.mmap_sem  # the mmapper keeps victim1's mm
    c1.complete()
    seq.until("victim1's main thread exited; mmapper still holds mmap_sem",
              lambda: v1.state_letter in "ZX" and sem.owner is m and m.state_letter == "D")
    go.complete()
    seq.until("the OOM killer picks victim2", lambda: v2.tif_memdie)
    if k.reaper_status().running and not k.policy_ops.reaper_list:
        # The story needs victim2 killed within the reaper's 10 x HZ/10 on
        # victim1; on a machine too slow for the chosen speed, say so.
        seq.until("wake_oom_reaper drops victim2: the single slot is busy",
                  lambda: k.reaper_status().dropped >= 1,
                  timeout=max(0.5, k.clock.model_to_real(REAPER_WINDOW)))
    c2.complete()
    return {"writer": w, "victim": v2, **roles}


# -- an exiting task that cannot finish its exit -----------------------------------
def drive_exiting_task(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """exiter's main thread exits and waits in exit_mm for mmap_sem, held for
    write by exiter's own mmapper thread, which loops in a GFP_NOFS allocation;
    victim, the biggest process, sleeps killably; allocator then calls the OOM
    killer with the exiting task (PF_EXITING, still holding its mm) in the scan."""
    leave, go, never = Completion("leave"), Completion("go"), Completion("never")

    def main_thread(t: Task) -> None:  # exit(): the main thread leaves, mmapper stays
        leave.wait_for_completion_killable()

    def mmapper(t: Task) -> None:  # mmap(): mmap_sem for write, the fs allocates GFP_NOFS
        with t.mm.mmap_sem.write():
            go.wait_for_completion()
            alloc_pages(GFP_NOFS)

    e = k.fork("exiter", main_thread, vmas=[VmaSpec(pages=jitter(rng, k.zone.nr_pages * 15 // 100))])
    m = k.clone_thread(e, "mmapper", mmapper)
    sem = e.mm.mmap_sem
    seq.until("mmapper holds exiter's mmap_sem for write", lambda: sem.owner is m)
    v = k.fork("victim", park_killable(never), vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    seq.until("victim sleeps killably", lambda: v.state_letter == "D")
    leave.complete()
    seq.until("exiter's main thread exits and waits for mmap_sem in exit_mm",
              lambda: e.exiting and sleeps_on(e, sem)())
    go.complete()
    seq.until("mmapper loops in the allocator with GFP_NOFS", lambda: m.alloc_since is not None)
    a = k.fork("allocator", allocate_once(GFP_KERNEL))
    return {"exiter": e, "mmapper": m, "victim": v, "allocator": a}


# -- sharers and the unkillable ---------------------------------------------------
def drive_shared_mm_unkillable(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    roles, go = lockup_a_setup(k, seq, rng)
    never = Completion("never")
    u = k.fork("unkillable", park_killable(never), share_mm_with=roles["victim"],
               oom_score_adj=OOM_SCORE_ADJ_MIN)
    seq.until("the unkillable sharer sleeps", lambda: u.state_letter == "D")
    go.complete()
    roles["unkillable"] = u
    return roles


def drive_no_killable_task(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    never = Completion("never")
    hog = k.fork("hog", park_killable(never), vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))],
                 oom_score_adj=OOM_SCORE_ADJ_MIN)
    a = k.fork("allocator", allocate_once(GFP_KERNEL), oom_score_adj=OOM_SCORE_ADJ_MIN)
    return {"hog": hog, "allocator": a}


# -- history scenarios (#11): what each design changed --------------------------
def looping_writer(lock: Mutex, go: Completion) -> Callable[[Task], None]:
    """lockup A's writer, looping: holds ``lock`` and allocates page after page,
    checking for a fatal signal after each (as generic_perform_write does), so
    a later design may kill it too."""
    def body(t: Task) -> None:
        with lock:
            go.wait_for_completion()
            while True:
                alloc_pages(GFP_KERNEL)
                return_to_user(t)
    return body


def sleep_on_lock(lock: Mutex) -> Callable[[Task], None]:
    """mutex_lock(): TASK_UNINTERRUPTIBLE, SIGKILL cannot wake it; the task
    dies on its way back to user space once it has had the lock."""
    def body(t: Task) -> None:
        with lock:
            pass
        return_to_user(t)
    return body


def drive_reaped_not_enough(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """writer loops in the allocator holding inode_lock; victim (the biggest)
    sleeps on it; bystander sleeps killably. The reaper frees victim's memory,
    and writer eats all of it before anybody else could use it."""
    inode_lock, go, never = Mutex("inode_lock", k), Completion("go"), Completion("never")
    w = k.fork("writer", looping_writer(inode_lock, go), vmas=[VmaSpec(pages=jitter(rng, 20))])
    seq.until("writer takes inode_lock", lambda: inode_lock.owner is w)
    b = k.fork("bystander", park_killable(never), vmas=[VmaSpec(pages=jitter(rng, k.zone.nr_pages // 4))])
    seq.until("bystander sleeps killably", lambda: b.state_letter == "D")
    v = k.fork("victim", sleep_on_lock(inode_lock), vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    seq.until("victim sleeps in D on inode_lock", sleeps_on(v, inode_lock))
    go.complete()
    return {"writer": w, "bystander": b, "victim": v}


def drive_mlocked_victim(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """lockup-mutex with a bystander waiting (killably) for writer's write,
    and a victim whose memory is mlocked but for a few pages: too few, once
    reaped, to lift the zone over its min watermark (wmark_min/2 free, plus
    wmark_min/2 - 8), unless the reaper takes mlocked memory too (5.18)."""
    inode_lock, go, done = Mutex("inode_lock", k), Completion("go"), Completion("done")

    def writer(t: Task) -> None:
        with inode_lock:
            go.wait_for_completion()
            alloc_pages(GFP_KERNEL)  # one page: too small to fail, loops until it comes
        done.complete()  # e.g. the write the bystander waits for

    w = k.fork("writer", writer, vmas=[VmaSpec(pages=jitter(rng, 40))])
    seq.until("writer takes inode_lock", lambda: inode_lock.owner is w)
    b = k.fork("bystander", park_killable(done), vmas=[VmaSpec(pages=jitter(rng, k.zone.nr_pages // 5))])
    seq.until("bystander sleeps killably", lambda: b.state_letter == "D")
    free = k.zone.wmark_min // 2
    unlocked = max(1, free - 8)
    # The unlocked VMA's pages and its page table come out of what stays free.
    locked = pages_leaving(k, free + unlocked + 1)
    v = k.fork("victim", sleep_on_lock(inode_lock),
               vmas=[VmaSpec(pages=locked, locked=True), VmaSpec(pages=unlocked)])
    seq.until("victim sleeps in D on inode_lock", sleeps_on(v, inode_lock))
    go.complete()
    return {"writer": w, "bystander": b, "victim": v}


def drive_three_victims(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """Three OOM kills while the reaper is frozen; it then takes them in the
    order its queue gives. victimA and victimB each share their mm (CLONE_VM,
    not a thread) with a helper at oom_score_adj -999 asleep on inode_lock:
    killed, they exit at once and clear their TIF_MEMDIE, but their memory
    lives on in the helper. victim (victimC) sleeps on inode_lock itself."""
    inode_lock, go = Mutex("inode_lock", k), Completion("go")
    never = Completion("never")
    n = k.zone.nr_pages
    w = k.fork("writer", looping_writer(inode_lock, go), vmas=[VmaSpec(pages=jitter(rng, 20))])
    seq.until("writer takes inode_lock", lambda: inode_lock.owner is w)
    roles: Roles = {"writer": w}
    for name, share in (("A", 30), ("B", 25)):
        p = k.fork(f"victim{name}", park_killable(never), vmas=[VmaSpec(pages=jitter(rng, n * share // 100, 0.05))])
        seq.until(f"victim{name} sleeps killably", lambda p=p: p.state_letter == "D")
        # -999, not -1000: the helper is killed with the victim and does not
        # forbid the reap (4.6's sharer rule); it scores 1 point.
        h = k.fork(f"helper{name}", sleep_on_lock(inode_lock), share_mm_with=p, oom_score_adj=-999)
        seq.until(f"helper{name} sleeps in D on inode_lock", sleeps_on(h, inode_lock))
        roles.update({f"victim{name}": p, f"helper{name}": h})
    c = k.fork("victimC", sleep_on_lock(inode_lock), vmas=[VmaSpec(pages=jitter(rng, n * 20 // 100, 0.05))])
    seq.until("victimC sleeps in D on inode_lock", sleeps_on(c, inode_lock))
    roles.update(victimC=c, victim=c)
    a, b = roles["victimA"], roles["victimB"]
    freeze_oom_reaper(k)
    go.complete()
    seq.until("victimC is killed (after victimA and victimB)", lambda: c.tif_memdie)
    aborts = k.stats.oom_aborts  # oom_lock was held from C's kill to here: no abort since
    seq.until("the OOM killer is back and aborts on victimC's TIF_MEMDIE",
              lambda: k.stats.oom_aborts > aborts and a.state_letter in "ZX" and b.state_letter in "ZX")
    thaw_oom_reaper(k)
    return roles


def drive_self_victim(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """victim, SIGKILLed by another process while asleep in D, allocates on
    its way out: out_of_memory's shortcut gives it TIF_MEMDIE and the
    reserves, and no OOM kill happens. Then it sleeps on a mutex held by
    writer, whose allocation comes next."""
    m = Mutex("i_mutex", k)
    go, go2 = Completion("go"), Completion("go2")

    def writer(t: Task) -> None:
        with m:
            go2.wait_for_completion()
            alloc_pages(GFP_KERNEL)

    def victim(t: Task) -> None:
        go.wait_for_completion()  # uninterruptible: the SIGKILL stays pending
        alloc_pages(GFP_KERNEL)   # e.g. a page cache page for the write it was in
        with m:
            pass
        return_to_user(t)

    def killer(t: Task) -> None:  # kill -9 <victim>
        send_sigkill(v)

    w = k.fork("writer", writer, vmas=[VmaSpec(pages=jitter(rng, 20))])
    seq.until("writer takes i_mutex", lambda: m.owner is w)
    v = k.fork("victim", victim, vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    seq.until("victim sleeps in D", sleeps_on(v, go))
    kl = k.fork("kill", killer)
    seq.until("kill sent victim SIGKILL and exited", lambda: v.sigkill_pending and kl.state_letter in "ZX")
    go.complete()
    # Marked once (a design that reaps it may clear TIF_MEMDIE again by now).
    seq.until("victim, marked a self-victim, sleeps in D on i_mutex",
              lambda: k.stats.oom_victims_marked >= 1 and sleeps_on(v, m)())
    go2.complete()
    return {"writer": w, "victim": v, "kill": kl}


def drive_mmap_sem_killable_writer(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """victim's mmapper thread queues for write on victim's mmap_sem behind
    ps, a separate process: ps holds victim's mm (get_task_mm) and its
    mmap_sem for read (access_remote_vm, as a /proc/<victim>/cmdline read
    does), and inode_lock, and its remote fault allocates GFP_KERNEL, too
    small to fail. The mmapper takes the lock as an mm syscall does
    (``vm_mmap_write_lock``): uninterruptibly in 4.6, killably from 4.7 on.
    victim's logger thread sleeps in D on inode_lock: it keeps victim's mm
    in reach of the reaper after the other threads exit. ps is no thread of
    victim: it is never SIGKILLed with it, so never a self-victim."""
    never, go = Completion("never"), Completion("go")
    inode_lock = Mutex("inode_lock", k)

    def mmapper(t: Task) -> None:  # mmap() in another thread of victim
        with vm_mmap_write_lock(t.mm):
            pass
        return_to_user(t)

    v = k.fork("victim", park_killable(never), vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    mm = v.mm
    sem = mm.mmap_sem

    def ps(t: Task) -> None:  # reads victim's memory with inode_lock held
        with inode_lock:
            mmget(mm)  # get_task_mm(): victim is alive and has its mm
            try:
                with sem.read():  # access_remote_vm()
                    go.wait_for_completion()
                    alloc_pages(GFP_KERNEL)  # the remote fault's page
            finally:
                mmput(mm)
        return_to_user(t)

    p = k.fork("ps", ps)
    seq.until("ps holds victim's mmap_sem for read", lambda: p in sem.readers())
    lg = k.clone_thread(v, "logger", sleep_on_lock(inode_lock))
    seq.until("victim's logger sleeps in D on inode_lock", sleeps_on(lg, inode_lock))
    m = k.clone_thread(v, "mmapper", mmapper)
    seq.until("victim's mmapper queues for mmap_sem write", sleeps_on(m, sem))
    go.complete()
    return {"victim": v, "mmapper": m, "logger": lg, "ps": p}


def drive_exit_aio_self(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """victim1 (most of the zone) sleeps killably with AIO in flight on its
    mm (the lab's ``MM.aio_in_flight``); aio completes that AIO only after
    its own GFP_NOFS allocation succeeds; writer's GFP_KERNEL allocation
    calls the OOM killer. aio and writer are OOM_SCORE_ADJ_MIN: victim1 is
    the only one killable. The reaper is frozen from before the kill until
    victim1 has dropped its mm's last user and sleeps in exit_aio, so the
    reaper always arrives after the victim's own last mmput."""
    aio_done, never = Completion("aio_done"), Completion("never")
    v = k.fork("victim1", park_killable(never), vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    mm = v.mm
    mm.aio_in_flight = aio_done
    seq.until("victim1 sleeps killably", lambda: v.state_letter == "D")

    def aio(t: Task) -> None:  # the AIO's completion needs a page first
        alloc_pages(GFP_NOFS)
        aio_done.complete()

    a = k.fork("aio", aio, oom_score_adj=OOM_SCORE_ADJ_MIN)
    freeze_oom_reaper(k)
    w = k.fork("writer", allocate_once(GFP_KERNEL), oom_score_adj=OOM_SCORE_ADJ_MIN)
    seq.until("victim1, killed, drops its mm's last user and sleeps in exit_aio",
              lambda: mm.mm_users.read() == 0 and sleeps_on(v, aio_done)())
    thaw_oom_reaper(k)
    return {"victim1": v, "victim": v, "aio": a, "writer": w}



def drive_robust_futex(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """owner (the biggest) holds robust futex F, registered on its robust list
    whose head is in its own anonymous memory (a one-page TLS VMA), and
    sleeps in D on i_mutex; waiter (another process, the futex word in
    shared memory) sleeps in FUTEX_WAIT on F; alloc's allocation kills owner.
    holder lets i_mutex go half a second after the kill, so owner can exit by
    itself; its exit walks the robust list, marks F OWNER_DIED and wakes
    waiter, unless the reaper zapped the head's page first."""
    i_mutex, start = Mutex("i_mutex", k), Completion("start")
    f = Futex("robust_mutex")

    def holder(t: Task) -> None:
        with i_mutex:
            start.wait_for_completion()
            schedule_timeout_uninterruptible(k.clock.hz // 2)

    def owner(t: Task) -> None:
        mm = t.mm
        assert mm is not None
        set_robust_list(t, mm.vmas[-1], [f])  # glibc registers the head at thread start; F is taken
        with i_mutex:  # e.g. a write(2) into a file holder is writing
            pass
        return_to_user(t)

    def waiter(t: Task) -> None:
        futex_wait(f)  # pthread_mutex_lock() on F: EOWNERDEAD once owner's exit walks its list
        return_to_user(t)

    h = k.fork("holder", holder, vmas=[VmaSpec(pages=jitter(rng, 20))])
    seq.until("holder takes i_mutex", lambda: i_mutex.owner is h)
    waiter_pages = 10  # plus one page table
    # The robust list head's VMA (one page and its page table) and waiter's
    # eleven pages come out of what stays free.
    o = k.fork("owner", owner, vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2 + waiter_pages + 3)),
                                     VmaSpec(pages=1)])
    seq.until("owner sleeps in D on i_mutex, F on its robust list", sleeps_on(o, i_mutex))
    w = k.fork("waiter", waiter, vmas=[VmaSpec(pages=waiter_pages)])
    seq.until("waiter sleeps in FUTEX_WAIT on F", lambda: w.wchan is f)
    a = k.fork("alloc", allocate_once(GFP_KERNEL))
    seq.until("alloc's allocation kills owner", lambda: o.sigkill_pending)
    start.complete()
    return {"holder": h, "owner": o, "victim": o, "waiter": w, "alloc": a}


def drive_userspace_killer(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """writer holds inode_lock and loops in a GFP_NOFS allocation, which never
    calls the OOM killer; victim (the biggest) sleeps in D on inode_lock.
    lmkd, a userspace low-memory killer (OOM_SCORE_ADJ_MIN), sees the
    pressure, opens a pidfd on victim and calls, in order:
    process_mrelease(pidfd, 1), (pidfd, 0) while victim is alive,
    pidfd_send_signal(SIGKILL), process_mrelease(pidfd, 0), and, once victim
    is gone, process_mrelease(pidfd, 0) again. Before 5.15 pidfd_open is
    -ENOSYS and lmkd falls back to kill(2)."""
    inode_lock, go = Mutex("inode_lock", k), Completion("go")

    def writer(t: Task) -> None:
        with inode_lock:
            go.wait_for_completion()
            alloc_pages(GFP_NOFS)  # fs code under the lock: never invokes the OOM killer

    def victim(t: Task) -> None:
        with inode_lock:
            pass
        return_to_user(t)

    w = k.fork("writer", writer, vmas=[VmaSpec(pages=jitter(rng, 40))])
    seq.until("writer takes inode_lock", lambda: inode_lock.owner is w)
    v = k.fork("victim", victim, vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2))])
    seq.until("victim sleeps in D on inode_lock", sleeps_on(v, inode_lock))

    def lmkd(t: Task) -> None:
        fd = pidfd_open(k, v.pid)
        if isinstance(fd, int):  # -ENOSYS: an older kernel; kill(2) is all there is
            send_sigkill(v)
            return
        process_mrelease(k, fd, 1)  # -EINVAL: no flag is defined
        process_mrelease(k, fd, 0)  # -EINVAL: victim is alive and not dying
        pidfd_send_signal(k, fd, SIGKILL)
        process_mrelease(k, fd, 0)  # 0: reaped, here and now
        while v.state_letter not in "ZX":  # poll(pidfd), 100 ms at a time
            schedule_timeout(TaskState.TASK_INTERRUPTIBLE, k.clock.hz // 10, "do_sys_poll")
        process_mrelease(k, fd, 0)  # -ESRCH: no thread of victim has an mm
        return_to_user(t)

    go.complete()
    seq.until("writer loops in the allocator", lambda: w.alloc_since is not None)
    lm = k.fork("lmkd", lmkd, oom_score_adj=OOM_SCORE_ADJ_MIN)
    return {"writer": w, "victim": v, "lmkd": lm}


def drive_mrelease_blocked(k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
    """writer holds inode_lock and loops in a GFP_NOFS allocation. victim2's
    mmapper thread holds victim2's mmap_sem for write and sleeps in D on
    inode_lock (its file's ->mmap takes it); victim1, the biggest, sleeps in
    D on inode_lock, a quarter of its memory guest memory behind an mmu
    notifier that cannot invalidate without blocking. lmkd kills victim2 and
    calls process_mrelease on it, which waits for victim2's mmap_sem; a
    watchdog that sees no heartbeat from lmkd for a second SIGKILLs it
    (-EINTR) and starts a standby lmkd, which kills victim1 and reaps all
    but the notifier's VMA (-EAGAIN): enough for writer. Before 5.15 both
    lmkds can only kill(2)."""
    inode_lock, go, never, respawn = Mutex("inode_lock", k), Completion("go"), Completion("never"), \
        Completion("respawn")
    beat = [0.0]  # lmkd's heartbeat: a time in shared memory the watchdog reads

    def writer(t: Task) -> None:
        with inode_lock:
            go.wait_for_completion()
            alloc_pages(GFP_NOFS)  # never invokes the OOM killer

    def sleep_on_lock_and_die(t: Task) -> None:
        with inode_lock:
            pass
        return_to_user(t)

    def mmapper(t: Task) -> None:  # mmap() of a file whose ->mmap takes inode_lock
        with vm_mmap_write_lock(t.mm):
            with inode_lock:
                pass
        return_to_user(t)

    def poll_until_gone(*victims: Task) -> None:
        while any(v.state_letter not in "ZX" for v in victims):  # poll(pidfd), 100 ms at a time
            beat[0] = k.clock.now()
            schedule_timeout(TaskState.TASK_INTERRUPTIBLE, k.clock.hz // 10, "do_sys_poll")

    def lmkd(t: Task) -> None:
        beat[0] = k.clock.now()
        fd = pidfd_open(k, v2.pid)
        if isinstance(fd, int):  # -ENOSYS: kill(2), wait a second, kill the next one
            send_sigkill(v2)
            for _ in range(10):
                beat[0] = k.clock.now()
                schedule_timeout(TaskState.TASK_INTERRUPTIBLE, k.clock.hz // 10, "do_sys_poll")
            send_sigkill(v1)
            poll_until_gone(v1, v2)
            return
        pidfd_send_signal(k, fd, SIGKILL)
        beat[0] = k.clock.now()
        process_mrelease(k, fd, 0)  # -EINTR: waits for victim2's mmap_sem until the watchdog kills lmkd
        return_to_user(t)

    def standby(t: Task) -> None:  # the lmkd the watchdog starts
        respawn.wait_for_completion_killable()
        fd = pidfd_open(k, v1.pid)
        if isinstance(fd, int):  # -ENOSYS (never woken there: lmkd never blocks before 5.15)
            send_sigkill(v1)
            return
        pidfd_send_signal(k, fd, SIGKILL)
        process_mrelease(k, fd, 0)  # -EAGAIN: the notifier's VMA is left; the rest is reaped
        poll_until_gone(v1, v2)
        return_to_user(t)

    def watchdog(t: Task) -> None:  # init's service watchdog: one second without a beat
        while any(v.state_letter not in "ZX" for v in (v1, v2)):
            schedule_timeout(TaskState.TASK_INTERRUPTIBLE, k.clock.hz // 2, "do_nanosleep")
            if not respawn.done and k.clock.now() - beat[0] > 1.0:
                send_sigkill(lm)
                respawn.complete()
        return_to_user(t)

    w = k.fork("writer", writer, vmas=[VmaSpec(pages=jitter(rng, 40))])
    seq.until("writer takes inode_lock", lambda: inode_lock.owner is w)
    v2 = k.fork("victim2", park_killable(never), vmas=[VmaSpec(pages=jitter(rng, 150))], oom_score_adj=900)
    m = k.clone_thread(v2, "mmapper", mmapper)
    seq.until("victim2's mmapper holds its mmap_sem and sleeps in D on inode_lock",
              lambda: v2.mm.mmap_sem.owner is m and sleeps_on(m, inode_lock)())
    guest = 100
    v1 = k.fork("victim1", sleep_on_lock_and_die,
                vmas=[VmaSpec(pages=pages_leaving(k, k.zone.wmark_min // 2 + guest + 1)),
                      VmaSpec(pages=guest, notifier_blocks=True)])
    seq.until("victim1 sleeps in D on inode_lock", sleeps_on(v1, inode_lock))
    go.complete()
    seq.until("writer loops in the allocator", lambda: w.alloc_since is not None)
    sb = k.fork("lmkd", standby, oom_score_adj=OOM_SCORE_ADJ_MIN)
    lm = k.fork("lmkd", lmkd, oom_score_adj=OOM_SCORE_ADJ_MIN)
    wd = k.fork("watchdog", watchdog, oom_score_adj=OOM_SCORE_ADJ_MIN)
    return {"writer": w, "victim2": v2, "mmapper": m, "victim1": v1, "victim": v1, "lmkd": lm,
            "standby": sb, "watchdog": wd}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "lockup-mutex", drive_lockup_mutex,
        "lockup A: the victim sleeps in D on a mutex held by a task looping in the allocator",
        "writer holds inode_lock and allocates; the OOM killer picks victim (the biggest), "
        "which sleeps uninterruptibly on inode_lock and cannot die. Without a reaper nothing "
        "moves; the reaper frees victim's memory without victim running.",
        grades=expect({Policy.NONE: Outcome.LOCKUP, Policy.PATCH1: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "lockup-nofs", drive_lockup_nofs,
        "lockup A over GFP_NOFS: the lock holder cannot even call the OOM killer",
        "writer holds inode_lock across a GFP_NOFS allocation, which loops without ever "
        "invoking the OOM killer; a third task's GFP_KERNEL allocation kills victim, asleep "
        "on inode_lock.",
        grades=expect({Policy.NONE: Outcome.LOCKUP, Policy.PATCH1: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "mmap-sem-writer", drive_mmap_sem_writer,
        "lockup B: a thread of the victim holds mmap_sem for write and loops in the allocator",
        "victim's mmapper thread holds mmap_sem for write across a GFP_NOFS allocation; "
        "victim's main thread, killed, waits for mmap_sem in exit_mm. Every reaper trylock "
        "fails: 'unable to reap', as the commit message admits.",
        grades=expect({Policy.NONE: Outcome.LOCKUP, Policy.PATCH1: Outcome.REAP_FAILED_LOCKUP,
                       # 4.7: the killed mmapper's GFP_NOFS allocation reaches out_of_memory, gets the reserves
                       Policy.V4_7: Outcome.VICTIM_EXITED},
                      acceptable={Policy.V4_7: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "mmap-sem-queued-writer", drive_mmap_sem_queued_writer,
        "lockup B, Tetsuo's form: a reader loops in the allocator, a writer queues behind it",
        "victim's faulter holds mmap_sem for read and loops in a GFP_NOFS allocation; its "
        "mmapper queues for write, which makes every down_read_trylock fail; the killed main "
        "thread waits in exit_mm behind the queued writer.",
        grades=expect({Policy.NONE: Outcome.LOCKUP, Policy.PATCH1: Outcome.REAP_FAILED_LOCKUP,
                       # 4.7: the killed faulter's GFP_NOFS allocation reaches out_of_memory, gets the reserves
                       Policy.V4_7: Outcome.VICTIM_EXITED},
                      acceptable={Policy.V4_7: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "exit-race", drive_exit_race,
        "the victim exits on its own while the reaper sleeps between two trylocks",
        "victim's mmapper holds mmap_sem for write, so the reaper's first trylock fails; then "
        "it lets go and victim exits by itself. The reaper's next try must notice "
        "(mmget_not_zero fails) or reap alongside exit_mmap: never a use-after-free.",
        grades=expect({Policy.NONE: Outcome.VICTIM_EXITED, Policy.PATCH1: Outcome.VICTIM_EXITED},
                      acceptable={Policy.PATCH1: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "exiting-task", drive_exiting_task,
        "an exiting task stuck in exit_mm: 4.6 scores it like any other and kills the biggest",
        "exiter's main thread has exited and waits in exit_mm for mmap_sem, held for write by "
        "exiter's mmapper thread, which loops in a GFP_NOFS allocation; victim, the biggest, "
        "sleeps killably; allocator's GFP_KERNEL allocation calls the OOM killer. In both 4.6 "
        "trees (\"mm: oom_kill: don't ignore oom score on exiting tasks\") the exiting task is "
        "scored like the others: victim is killed and exits, the mmapper's allocation then "
        "succeeds, and exiter exits too, reaper or not. 4.5 aborted the scan on any exiting "
        "task with an mm and locked up here, with no kill at all.",
        grades=expect({Policy.V4_5: Outcome.LOCKUP, Policy.NONE: Outcome.VICTIM_EXITED,
                       Policy.PATCH1: Outcome.VICTIM_EXITED},
                      acceptable={Policy.PATCH1: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "second-victim", drive_second_victim,
        "a second OOM kill while the reaper is busy: the single slot drops it",
        "victim1's reap keeps failing while its main thread exits and its memory is munmapped; "
        "a second lockup-A victim is then killed, but mm_to_reap still holds victim1's mm, so "
        "wake_oom_reaper drops victim2: patch 1 locks up where a queue (03049269) would not.",
        grades=expect({Policy.NONE: Outcome.LOCKUP, Policy.PATCH1: Outcome.LOCKUP,
                       # 03049269: victim2 waits on oom_reaper_list and is reaped after victim1's tries
                       Policy.QUEUE: Outcome.RECOVERED_BY_REAPER}), nr_pages=2048),
    Scenario(
        "shared-mm-unkillable", drive_shared_mm_unkillable,
        "the victim shares its mm with an OOM_SCORE_ADJ_MIN process: killed, never reaped",
        "victim (lockup A) shares its address space with a process the OOM killer must not "
        "kill; reaping would pull memory from under it, so the reaper is not woken.",
        grades=expect({Policy.NONE: Outcome.LOCKUP, Policy.PATCH1: Outcome.LOCKUP,
                       # 4.8 (97fd49c2): the OOM_SCORE_ADJ_MIN sharer is killed too, and the mm reaped
                       Policy.V4_8: Outcome.RECOVERED_BY_REAPER},
                      acceptable={Policy.V4_8: Outcome.VICTIM_EXITED})),
    Scenario(
        "no-killable-task", drive_no_killable_task,
        "every process is OOM_SCORE_ADJ_MIN: 'Out of memory and no killable processes'",
        "nothing may be killed, so the OOM killer panics: a prompt outcome, not a hang.",
        grades=expect({Policy.NONE: Outcome.OOM_PANIC, Policy.PATCH1: Outcome.OOM_PANIC})),
    Scenario(
        "reaped-not-enough", drive_reaped_not_enough,
        "reaped, but the writer eats it all: only clearing TIF_MEMDIE lets a second kill happen",
        "writer holds inode_lock and allocates page after page; victim, the biggest, sleeps in D "
        "on inode_lock; bystander sleeps killably. The reaper frees victim's memory and writer "
        "takes every page of it, so the zone is as full as before. Under patch 1 victim keeps "
        "TIF_MEMDIE and every later OOM aborts on it; from 36324a99 on the reaper clears it (and "
        "hides victim at oom_score_adj -1000), so the OOM killer goes on to bystander, then to "
        "writer, which dies at its signal check and lets inode_lock go. Adapted from the design "
        "notes (2.1): writer is 20 pages and bystander a quarter of the zone.",
        grades=expect({Policy.NONE: Outcome.LOCKUP,
                       # aac45363: reaped, but TIF_MEMDIE stays on the victim: OOM aborts for ever
                       Policy.PATCH1: Outcome.LOCKUP,
                       # 36324a99: the reap clears TIF_MEMDIE: bystander, then writer, are killed
                       Policy.TIFMEMDIE: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "mlocked-victim", drive_mlocked_victim,
        "lockup A with the victim's memory mlocked: the reaper skips VM_LOCKED and frees a few pages",
        "lockup-mutex with a bystander sleeping killably, and a victim whose memory is mlocked "
        "but for a few pages. The reaper skips VM_LOCKED VMAs, so it frees too little to lift the "
        "zone over its min watermark. Under patch 1 victim keeps TIF_MEMDIE and the writer's "
        "allocation loops for ever; from 36324a99 on the reap clears it and a second OOM kill "
        "(bystander) brings the page: two kills where one would do. (A later design that reaps "
        "mlocked memory, 5.18 by the design notes, would need only the first.)",
        grades=expect({Policy.NONE: Outcome.LOCKUP,
                       # aac45363: VM_LOCKED skipped, 8 pages freed, TIF_MEMDIE stays
                       Policy.PATCH1: Outcome.LOCKUP,
                       # 36324a99: TIF_MEMDIE cleared after the small reap: bystander is killed too
                       Policy.TIFMEMDIE: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "three-victims", drive_three_victims,
        "three OOM kills while the reaper is frozen: the queue hands them back last first",
        "writer loops in the allocator holding inode_lock. victimA and victimB each share their "
        "mm (CLONE_VM) with a helper at oom_score_adj -999 asleep on inode_lock: killed, they "
        "exit at once and clear their TIF_MEMDIE while the helper keeps their memory, so the OOM "
        "killer moves on. victim (victimC) sleeps on inode_lock and cannot die. The reaper is "
        "frozen (a lab gate for e2679606's freezable wait; before 03049269 it stands for a late "
        "reaper) from before the first kill until the OOM killer aborts on victimC. A single slot "
        "keeps victimA and drops the other two: patch 1 reaps victimA's mm through its helper "
        "(in vain), 36324a99's task slot finds victimA gone; victimC is never reaped. "
        "oom_reaper_list (03049269) gives them back LIFO: victimC first, reaped, then victimB and "
        "victimA, gone. Adapted from the design notes (2.3), where all three exit and the pop "
        "order alone tells the designs apart: here the last victim is a lockup-A victim, so "
        "the order also decides the outcome, and no later kill (writer's) can land before the "
        "three pops.",
        grades=expect({Policy.NONE: Outcome.LOCKUP,
                       # a single slot drops victimC, the one that cannot exit
                       Policy.PATCH1: Outcome.LOCKUP,
                       # 03049269: victimC is queued last and popped first, and reaped
                       Policy.QUEUE: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "self-victim", drive_self_victim,
        "a killed task that allocates: out_of_memory's shortcut marks it, and 4.6 never reaps it",
        "victim, SIGKILLed by another process ('kill') while asleep in D, allocates on its way "
        "out; out_of_memory gives it TIF_MEMDIE and the reserves without a kill (and without a "
        "line in dmesg). It then sleeps in D on i_mutex, held by writer, whose allocation comes "
        "next: every OOM aborts on victim. No 4.6 tree hands a self-victim to the reaper (4.7's "
        "try_oom_reaper does), so all of them lock up here.",
        grades=expect({
            # 4.6 (every tree here): out_of_memory's shortcut never wakes the reaper
            Policy.NONE: Outcome.LOCKUP,
            # 4.7: try_oom_reaper queues the self-victim; its memory is reaped and writer gets it
            Policy.V4_7: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "mmap-sem-killable-writer", drive_mmap_sem_killable_writer,
        "a writer queued on the victim's mmap_sem behind a reader outside it: 4.7 makes it killable",
        "ps, a separate process, holds inode_lock, victim's mm (get_task_mm) and victim's "
        "mmap_sem for read (access_remote_vm, as a /proc/<victim>/cmdline read), and its remote "
        "fault loops in the allocator; victim's mmapper thread queues for write behind it (an mm "
        "syscall: down_write in 4.6, down_write_killable from 4.7 on); victim's logger thread "
        "sleeps in D on inode_lock. ps kills victim. In 4.6 the SIGKILLed mmapper stays queued "
        "in D, victim's main thread waits behind it in exit_mm, and every down_read_trylock of "
        "the reaper fails on the queued writer. From 4.7 on the mmapper leaves the queue with "
        "-EINTR and dies, the main thread exits, and the reaper's trylock succeeds beside ps's "
        "read hold: the reap gives ps its page, ps lets go, and logger dies. ps is no thread of "
        "victim, so it is never a self-victim: only the killable writer changed. Adapted from "
        "the design notes (2.4), which have no logger and let victim's exit free the memory: "
        "ps's get_task_mm reference makes ps's mmput the last one, and without logger victim's "
        "threads drop their mm before the reaper looks (find_lock_task_mm finds none), so the "
        "OOM killer goes on to kill ps. logger (in D on a lock ps holds) keeps victim's mm in "
        "the reaper's reach.",
        grades=expect({Policy.NONE: Outcome.LOCKUP,
                       # aac45363: the queued (uninterruptible) writer fails every trylock
                       Policy.PATCH1: Outcome.REAP_FAILED_LOCKUP,
                       # 4.7 (dc0ef0df): the killed writer leaves the queue with -EINTR; the trylock succeeds
                       Policy.V4_7: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "exit-aio-self", drive_exit_aio_self,
        "the victim's own last mmput blocks in exit_aio before exit_mmap: 4.14 reaps it anyway",
        "victim1 is killed while AIO is in flight on its mm; its last mmput sleeps in exit_aio "
        "(uninterruptibly) until aio, an OOM_SCORE_ADJ_MIN task, completes the AIO, which needs "
        "a GFP_NOFS page first. writer (OOM_SCORE_ADJ_MIN) called the OOM killer; nothing else "
        "is killable. The reaper (frozen, a lab gate) arrives after victim1 dropped its mm's "
        "last user. 4.6's reaper finds no mm user (mmget_not_zero) or no thread with an mm: "
        "nothing reaped, victim1 keeps TIF_MEMDIE and every OOM aborts. 4.7 and 4.8 clear "
        "TIF_MEMDIE after the attempt, and 4.9 sets MMF_OOM_SKIP after it: the OOM killer "
        "finds nobody else and panics (the false positive that motivated 212925802454). 4.14 "
        "reaps signal->oom_mm without an mm_users reference: aio gets its page, exit_aio "
        "returns, and everybody exits. The design notes' 2.5 variant B; exit_aio is the lab's "
        "stand-in (MM.aio_in_flight), and the late reaper a real but timing-dependent race.",
        grades=expect({Policy.NONE: Outcome.LOCKUP,
                       # aac45363..03049269: the reaper finds no mm user / no mm; TIF_MEMDIE stays
                       Policy.PATCH1: Outcome.LOCKUP,
                       # 4.7: TIF_MEMDIE cleared after the attempt; nobody else killable
                       Policy.V4_7: Outcome.OOM_PANIC,
                       # 4.14 (212925802454): oom_mm reaped with no mm_users reference
                       Policy.V4_14: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "robust-futex", drive_robust_futex,
        "a killed robust-futex owner that could exit by itself: the reaper zaps its robust list first",
        "owner, the biggest, holds robust futex F (its robust list head in its own anonymous "
        "memory) and sleeps in D on i_mutex; waiter, another process, sleeps in FUTEX_WAIT on F; "
        "alloc's allocation kills owner, and holder lets i_mutex go half a second later. Without "
        "a reaper owner then exits, exit_robust_list marks F OWNER_DIED and wakes waiter: every "
        "task exits. A reaper that runs at once (owner holds no mmap_sem) zaps the head's page "
        "first: owner's exit reads a zero head, F stays owned by a dead task, and waiter sleeps "
        "for ever (the first reaper made this worse). 5.18 (e4a38402) waits 2*HZ before reaping, "
        "owner exits first, and its exit_mmap's MMF_OOM_SKIP makes the timer drop the reap. The "
        "design notes' 2.7.",
        grades=expect({Policy.NONE: Outcome.VICTIM_EXITED,
                       # aac45363: reaped within a jiffy of the kill, before owner's exit walks its list
                       Policy.PATCH1: Outcome.LOCKUP,
                       # 5.18 (e4a38402): the reap waits 2*HZ; owner exits at 0.5 s and the timer drops it
                       Policy.V5_18: Outcome.VICTIM_EXITED})),
    Scenario(
        "userspace-killer", drive_userspace_killer,
        "a userspace killer (lmkd) kills a victim stuck in D: process_mrelease reaps it from 5.15 on",
        "writer holds inode_lock and loops in a GFP_NOFS allocation, which never calls the OOM "
        "killer; victim, the biggest, sleeps in D on inode_lock. lmkd (OOM_SCORE_ADJ_MIN) opens "
        "a pidfd on victim and calls process_mrelease with flags 1 (-EINVAL), on the live victim "
        "(-EINVAL), after pidfd_send_signal(SIGKILL) (0: reaped at once), and once victim is gone "
        "(-ESRCH). The kernel OOM killer never runs. Before 5.15 pidfd_open is -ENOSYS and lmkd "
        "can only kill(2): victim, in D, never dies, and writer loops for ever with no OOM victim "
        "to blame. From 5.15 on the reap gives writer its page, inode_lock goes, and everybody "
        "exits. The design notes' 2.8a; -EINTR and -EAGAIN are mrelease-blocked's.",
        grades=expect({Policy.NONE: Outcome.LOCKUP,
                       # 884a7e5964e0: process_mrelease reaps the killed victim's mm synchronously
                       Policy.V5_15: Outcome.RECOVERED_BY_REAPER})),
    Scenario(
        "mrelease-blocked", drive_mrelease_blocked,
        "process_mrelease that must wait (-EINTR) and one that reaps only part of an mm (-EAGAIN)",
        "writer holds inode_lock and loops in a GFP_NOFS allocation. victim2's mmapper holds its "
        "mmap_sem for write and sleeps in D on inode_lock; victim1, the biggest, sleeps in D on "
        "inode_lock with a quarter of its memory behind an mmu notifier that cannot invalidate "
        "without blocking (guest memory). lmkd kills victim2 and calls process_mrelease, which "
        "waits killably for victim2's mmap_sem; a watchdog that hears no heartbeat from lmkd for "
        "a second SIGKILLs it (-EINTR) and wakes a standby lmkd, which kills victim1 and calls "
        "process_mrelease: all but the notifier's VMA is reaped (-EAGAIN), which is enough for "
        "writer, and everybody exits. Before 5.15 both lmkds can only kill(2), and the system "
        "locks up with no OOM victim. The design notes' 2.8b and 2.8c in one story.",
        grades=expect({Policy.NONE: Outcome.LOCKUP,
                       # 884a7e5964e0: the second call's partial reap gives writer its page
                       Policy.V5_15: Outcome.RECOVERED_BY_REAPER})),
)}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}") from None
