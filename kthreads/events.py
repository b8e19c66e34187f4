"""The flight recorder's vocabulary: every event name the model records.

One enum for the recorder, the harness and the post-mortem, so that nobody
re-types an event name as a string literal. Members are ``str``: a recorded
name compares equal to its text and serialises as it (JSON logs keep the
plain names).

Which of these a given kernel tree had as tracepoints (and in which format)
is a question of fidelity to that tree; here they are only the lab's names.
Some match later kernels' tracepoints (``mark_victim``, ``wake_reaper``,
``start_task_reaping``, ``finish_task_reaping``, ``skip_task_reaping``:
Roman Gushchin's, 4.13); neither 4.6 tree had them, and the lab records
them under every policy (``PolicyOps.oom_reaper_tracepoints`` decides
whether they are shown as ftrace lines).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple


class Ev(str, enum.Enum):
    # tasks and scheduling
    TASK_NEWTASK = "task_newtask"
    SCHED_SLEEP = "sched_sleep"
    SCHED_WAKE = "sched_wake"
    SCHED_PROCESS_EXIT_START = "sched_process_exit_start"
    SCHED_PROCESS_EXIT = "sched_process_exit"
    SIGNAL_GENERATE = "signal_generate"
    EXIT_WITH_LOCK_HELD = "exit_with_lock_held"
    # locks (lockdep's view)
    LOCK_CONTENDED = "lock_contended"
    LOCK_ACQUIRE = "lock_acquire"
    LOCK_RELEASE = "lock_release"
    # mm refcounts and teardown
    MMGET = "mmget"
    MMGET_NOT_ZERO = "mmget_not_zero"
    MMGRAB = "mmgrab"
    MMDROP = "mmdrop"
    MMPUT = "mmput"
    EXIT_MMAP = "exit_mmap"
    MM_FREE = "mm_free"
    # the page allocator
    MM_PAGE_ALLOC = "mm_page_alloc"
    MM_PAGE_FREE = "mm_page_free"
    ALLOC_SLOWPATH = "alloc_slowpath"
    ALLOC_SUCCESS = "alloc_success"
    ALLOC_FAIL = "alloc_fail"
    ALLOC_STALL = "alloc_stall"
    # A looping slow path's iterations that were counted, not recorded:
    # loops (iterations so far), retries (counted since the previous
    # alloc_retry of this slow path), aborts and invocations (the oom_abort
    # and oom_invoke events among them), since (model time the slow path
    # started), final (the loop ended). Every model second while it loops,
    # and once at its end.
    ALLOC_RETRY = "alloc_retry"
    # the OOM killer
    OOM_INVOKE = "oom_invoke"
    OOM_ABORT = "oom_abort"
    OOM_KILL = "oom_kill"
    OOM_CURRENT_VICTIM = "oom_current_victim"
    OOM_REAP_FORBIDDEN = "oom_reap_forbidden"
    MARK_VICTIM = "mark_victim"
    EXIT_OOM_VICTIM = "exit_oom_victim"
    PANIC = "panic"
    # the oom_reaper
    WAKE_REAPER = "wake_reaper"
    REAP_DROPPED = "reap_dropped"
    REAP_RACED_EXIT = "reap_raced_exit"
    START_TASK_REAPING = "start_task_reaping"
    SKIP_TASK_REAPING = "skip_task_reaping"
    FINISH_TASK_REAPING = "finish_task_reaping"
    REAP_FAILED = "reap_failed"
    # process_mrelease(2) (5.15): the lab's record of a call and its value
    PROCESS_MRELEASE = "process_mrelease"
    # robust futexes: a FUTEX_WAIT, and exit_robust_list's walk at exit
    FUTEX_WAIT = "futex_wait"
    EXIT_ROBUST_LIST = "exit_robust_list"
    # khungtaskd
    HUNG_TASK = "hung_task"
    # dmesg
    PRINTK = "printk"
    # failures inside the model
    BUG = "bug"
    OOPS = "oops"
    # the lab's annotations: what it shows that the kernel did not print
    LAB = "lab"
    # the harness (recorded into the same ring, never by the model itself)
    SHUTDOWN = "shutdown"
    VERDICT = "verdict"
    LOCKUP_REPORT = "lockup_report"

    def __str__(self) -> str:
        return self.value


class TraceEvent(NamedTuple):
    """One recorded event. The ring stores plain tuples of this shape (cheap
    on the hot path); readers get them back as ``TraceEvent``."""

    seq: int
    t: float  # model seconds
    name: str
    pid: int
    comm: str
    fields: dict[str, Any]
    cur: int = 0  # the pid of the task that recorded it (0: the harness)
    pos: int = -1  # the order it was recorded in (see Tracer); -1: not known
