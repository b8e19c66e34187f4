"""Deciding how an episode ended, from the model's own state.

An episode is over when every user task has exited, when the kernel
panicked, or when it locked up: no allocation has succeeded, no task has
exited and no reap has freed memory for ``window`` model seconds while
khungtaskd reports a hung task.
"""

from __future__ import annotations

from typing import Any, Sequence

from kthreads import Kernel, Task, TaskState

from .outcomes import Outcome, Shape


def all_exited(tasks: Sequence[Task]) -> bool:
    return all(t.state_letter in "ZX" for t in tasks)


def nobody_can_run(tasks: Sequence[Task]) -> bool:
    """Every live task sleeps or loops in the page allocator, and one does loop
    there (tasks that all sleep, with nobody wanting memory, are idle, not stuck)."""
    live = [t for t in tasks if t.state_letter not in "ZX"]
    return any(t.alloc_since is not None for t in live) and \
        all(t.state_letter != "R" or t.alloc_since is not None for t in live)


def orphaned_futex_waiters(tasks: Sequence[Task]) -> list[Task]:
    """Live tasks asleep on a robust futex whose owner died without its
    robust list being walked (the head was zapped): nobody will wake them."""
    out = []
    for t in tasks:
        w = t.wchan  # once: a woken waiter clears it meanwhile
        if t.state_letter not in "ZX" and getattr(w, "kind", None) == "futex" and w.orphaned:
            out.append(t)
    return out


def locked_up(k: Kernel, tasks: Sequence[Task], window: float, since: float = 0.0) -> bool:
    """No allocation succeeded and no task exited for ``window`` model seconds,
    the reaper (if any) is done with its mm (until then it may still free
    memory), and a task is hung in D. khungtaskd ignores TASK_KILLABLE
    sleepers, so a stall made only of those counts when no task can run;
    and it ignores TASK_INTERRUPTIBLE ones, so a stall where every live task
    sleeps and one of them waits on an orphaned robust futex counts too.
    The window starts no earlier than ``since`` (the end of a scripted setup,
    whose steps are progress the kernel does not count)."""
    if k.clock.now() - max(k.stats.last_progress, since) < window or not reaper_idle(k):
        return False
    hung = any(t.state_letter == "D" for pid, _ in list(k.hung_tasks.items())
               if (t := k.find_task_by_pid(pid)) is not None)
    if hung:
        return True
    # Wait for khungtaskd's report while it has a TASK_UNINTERRUPTIBLE task to make.
    uninterruptible = any(t.state == TaskState.TASK_UNINTERRUPTIBLE for t in tasks)
    if uninterruptible:
        return False
    live = [t for t in tasks if t.state_letter not in "ZX"]
    if orphaned_futex_waiters(live):
        # Every live task sleeps or loops in the allocator: nobody will wake the waiter.
        return all(t.state_letter != "R" or t.alloc_since is not None for t in live)
    return nobody_can_run(tasks)


def reaper_idle(k: Kernel) -> bool:
    return k.reaper_status().idle


def episode_over(k: Kernel, tasks: Sequence[Task], window: float, since: float = 0.0) -> bool:
    # An episode whose tasks all exited still waits for the reaper to finish
    # with its mm: how that race ends is part of the episode.
    return k.panic_reason is not None or (all_exited(tasks) and reaper_idle(k)) or \
        locked_up(k, tasks, window, since)


def classify(k: Kernel, tasks: Sequence[Task], window: float, since: float = 0.0) -> Outcome:
    if k.panic_reason is not None:
        return Outcome.OOM_PANIC
    if all_exited(tasks):
        # process_mrelease (5.15) reaps a userspace killer's victim, whole or
        # in part (-EAGAIN): no OOM kill, but the same recovery.
        if k.stats.mrelease_pages > 0:
            return Outcome.RECOVERED_BY_REAPER
        if k.stats.oom_kills == 0 and k.stats.oom_victims_marked == 0:
            return Outcome.NO_OOM
        if k.reaper_status().reaped > 0:
            return Outcome.RECOVERED_BY_REAPER
        return Outcome.VICTIM_EXITED
    if locked_up(k, tasks, window, since):
        # A reap that failed on an mm that is still alive is the reason.
        if k.reaper_status().failed_live_mm_ids:
            return Outcome.REAP_FAILED_LOCKUP
        return Outcome.LOCKUP
    return Outcome.UNDETERMINED


def _alive(t: Task) -> bool:
    return t.state_letter not in "ZX"


def blocking_tasks(k: Kernel) -> list[Task]:
    """The tasks the OOM killer waits for: TIF_MEMDIE victims, else, under 4.5's
    rule only (``PolicyOps.exiting_task_aborts_scan``), exiting tasks with an mm."""
    victims = [t for t in k.tasks() if t.tif_memdie and _alive(t)]
    if victims or not k.policy_ops.exiting_task_aborts_scan:
        return victims
    return [t for t in k.tasks() if t.exiting and t.mm is not None and _alive(t)]


def unreapable_mms(k: Kernel) -> frozenset[int]:
    """mm ids the reaper was never handed: dropped (slot busy), forbidden
    (unkillable sharer), or a victim marked without a kill by a design
    before 4.7 (which hands such victims to nobody)."""
    rs = k.reaper_status()
    # A self-victim's mm may still be reaped later, through a kill of its
    # process: then it was reaped, not unreaped.
    return rs.dropped_mm_ids | rs.forbidden_mm_ids | (rs.self_victim_mm_ids - rs.reaped_mm_ids)


def lockup_shape(k: Kernel) -> Shape:
    blockers = blocking_tasks(k)
    if not blockers:
        return Shape.FUTEX if orphaned_futex_waiters(k.tasks()) else Shape.NO_VICTIM
    kinds = [getattr(t.wchan, "kind", None) for t in blockers]
    if "rw_semaphore" in kinds:
        return Shape.MMAP_SEM
    if "mutex" in kinds:
        mutex_victims = [t for t, kind in zip(blockers, kinds) if kind == "mutex"]
        rs = k.reaper_status()
        if rs.running:
            ids = [t.mm.id if t.mm is not None else None for t in mutex_victims]
            if all(i in unreapable_mms(k) for i in ids):
                return Shape.MUTEX_UNREAPED
            if all(i in rs.reaped_mm_ids for i in ids):
                return Shape.MUTEX_REAPED
        return Shape.MUTEX
    return Shape.OTHER


#: The kind of wait that gives each lockup shape its name.
SHAPE_WAIT = {Shape.MMAP_SEM: "rw_semaphore", Shape.MUTEX: "mutex", Shape.MUTEX_REAPED: "mutex",
              Shape.MUTEX_UNREAPED: "mutex"}


def story_victim(blockers: Sequence[Task], shape: Shape | None) -> Task:
    """The blocker whose story a lockup report tells: the first whose wait gives
    the shape its name (the post-mortem picks the same one from the log)."""
    want = SHAPE_WAIT.get(shape) if shape is not None else None
    return next((t for t in blockers if wait_kind(t) == want), blockers[0])


def wait_kind(t: Task) -> str | None:
    """What kind of thing ``t`` sleeps on, as its sched_sleep event records it."""
    w = t.wchan
    if w is None:
        return None
    return "function" if isinstance(w, str) else getattr(w, "kind", type(w).__name__.lower())


def chain_from(k: Kernel, start: Task, limit: int = 8) -> list[dict[str, Any]]:
    """The wait-for chain from ``start``: each hop, to an allocator or a dead end.

    A task queued on a lock waits for its holders, except behind other
    waiters on an rw_semaphore that is not held for write: then it waits for
    the head of the queue (``behind``), a writer (a reader at the head would
    have been granted already), which waits for the holders. ``waits_for``
    is whom a hop waits for; the walk follows its first pid.
    """
    hops: list[dict[str, Any]] = []
    t: Task | None = start
    seen: set[int] = set()
    while t is not None and t.pid not in seen and len(hops) < limit:
        seen.add(t.pid)
        hop: dict[str, Any] = {"pid": t.pid, "comm": t.comm, "state": t.state_letter}
        hops.append(hop)
        if t.alloc_since is not None:
            hop["allocating_since"] = t.alloc_since
            break
        w = t.wchan
        if w is None or not hasattr(w, "owner_pids"):
            hop["waits_on"] = w if isinstance(w, str) or w is None else getattr(w, "name", "?")
            if w is not None and not isinstance(w, str):
                hop["kind"] = type(w).__name__.lower()
            break
        holders = w.owner_pids()
        held_for_write = bool(w.kind == "rw_semaphore" and w.owner is not None)
        queue = w.waiter_pids()
        behind = queue[0] if w.kind == "rw_semaphore" and not held_for_write and \
            t.pid in queue and queue.index(t.pid) > 0 else None
        waits_for = [behind] if behind is not None else holders
        hop.update(waits_on=w.name, kind=w.kind, lock_id=getattr(w, "lock_id", 0), holders=holders,
                   waits_for=waits_for, behind=behind, held_for_write=held_for_write,
                   queued_writer=bool(getattr(w, "has_queued_writer", lambda: False)()))
        t = k.find_task_by_pid(waits_for[0]) if waits_for else None
    return hops
