"""Deciding how an episode ended, from the model's own state.

An episode is over when every user task has exited, when the kernel
panicked, or when it locked up: no allocation has succeeded and no task has
exited for ``window`` model seconds while khungtaskd reports a hung task.
"""

from __future__ import annotations

from typing import Sequence

from kthreads import Kernel, Task

from .outcomes import Outcome


def all_exited(tasks: Sequence[Task]) -> bool:
    return all(t.state_letter in "ZX" for t in tasks)


def locked_up(k: Kernel, window: float) -> bool:
    """No progress for ``window`` model seconds, with a task hung in D."""
    if k.clock.now() - k.stats.last_progress < window:
        return False
    return any(t.state_letter == "D" for pid, _ in list(k.hung_tasks.items())
               if (t := k.find_task_by_pid(pid)) is not None)


def reaper_idle(k: Kernel) -> bool:
    rs = k.reaper_state
    return rs is None or rs.mm_to_reap.read() is None


def episode_over(k: Kernel, tasks: Sequence[Task], window: float) -> bool:
    # An episode whose tasks all exited still waits for the reaper to finish
    # with its mm: how that race ends is part of the episode.
    return k.panic_reason is not None or (all_exited(tasks) and reaper_idle(k)) or \
        locked_up(k, window)


def classify(k: Kernel, tasks: Sequence[Task], window: float) -> Outcome:
    if k.panic_reason is not None:
        return Outcome.OOM_PANIC
    if all_exited(tasks):
        if k.stats.oom_kills == 0 and k.oom_victims.read() == 0 and \
                not any(e[2] == "mark_victim" for e in k.tracer.events()):
            return Outcome.NO_OOM
        rs = k.reaper_state
        if rs is not None and rs.reaped > 0:
            return Outcome.RECOVERED_BY_REAPER
        return Outcome.VICTIM_EXITED
    if locked_up(k, window):
        rs = k.reaper_state
        # A reap that failed on an mm that is still alive is the reason.
        if rs is not None and any(not mm.freed for mm in rs.failed_mms):
            return Outcome.REAP_FAILED_LOCKUP
        return Outcome.LOCKUP
    return Outcome.UNDETERMINED
