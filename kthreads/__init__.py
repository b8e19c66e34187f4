"""kthreads: the Linux OOM killer's neighbourhood, modelled on real threads.

The package's public names, all importable from here (``__all__``). The
library never configures loguru sinks; it only disables its own logger.
Applications (the ``stress`` CLI, tests) add sinks and ``logger.enable("kthreads")``.
"""

from loguru import logger

from .atomic import (Atomic, Cell, atomic_dec_and_test, atomic_inc, atomic_inc_not_zero,
                     atomic_read, cmpxchg, xchg)
from .completion import Completion
from .cpu import Cpu, RunState, SpinLock
from .errors import (BadPageState, Deadlock, Errno, LockBug, ModelBug, OomPanic, PlugPulled,
                     RefcountUnderflow, SigKill, UseAfterFree)
from .events import Ev, TraceEvent
from .gfp import (GFP, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_USER,
                  PAGE_KB, format_gfp, parse_gfp)
from .jiffies import HZ_MAX, HZ_MIN, Clock, dmesg_stamp
from .kernel import (Kernel, KernelConfig, KernelStats, ShutdownError, ShutdownReport,
                     StuckThread)
from .lockdep import debug_show_all_locks
from .memory import do_mmap, do_munmap, handle_mm_fault
from .mm import (MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, VMA, VmaKind,
                 VmaSpec, exit_mmap, mmdrop, mmget, mmget_not_zero, mmgrab, mmput, unmap_page_range)
from .mutex import Mutex, mutex_lock, mutex_lock_killable, mutex_trylock, mutex_unlock
from .oom_kill import (OomControl, mark_oom_victim, oom_badness, oom_kill_process,
                       out_of_memory, select_bad_process)
from .page_alloc import alloc_pages, free_page
from .policy import Policy
from .rwsem import (RwSemaphore, down_read, down_read_killable, down_read_trylock, down_write,
                    down_write_killable, down_write_trylock, up_read, up_write)
from .schedule import MODEL_VERSION, EventOrder, Sched, SchedConfig, Schedule, ScheduleKind
from .sched import (OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN, PF, TASK_IDLE, TASK_INTERRUPTIBLE,
                    TASK_KILLABLE, TASK_RUNNING, TASK_UNINTERRUPTIBLE, SleepResult, Task,
                    TaskState, current, fatal_signal_pending, return_to_user, schedule_timeout,
                    schedule_timeout_killable, schedule_timeout_uninterruptible, send_sigkill,
                    sleep_on)
from .snapshot import (KernelSnapshot, LockSnapshot, MMSnapshot, ReaperStatus, TaskSnapshot,
                       ZoneSnapshot)
from .stacktrace import model_call_trace, model_call_traces, sched_show_task
from .trace import LAB_MARK, SCHED_SWITCH, SCHED_WAKEUP, DmesgLine, LabLine, LogLevel, SchedRecord, lost_from
from .zone import AllocFlags, Zone

logger.disable("kthreads")

__all__ = [
    # kernel and configuration
    "Kernel", "KernelConfig", "KernelStats", "ShutdownError", "ShutdownReport", "StuckThread",
    "Policy", "Clock", "HZ_MAX", "HZ_MIN", "dmesg_stamp",
    # tasks and scheduling
    "Task", "TaskState", "PF", "SleepResult", "TASK_IDLE", "TASK_INTERRUPTIBLE", "TASK_KILLABLE",
    "TASK_RUNNING", "TASK_UNINTERRUPTIBLE", "OOM_SCORE_ADJ_MAX", "OOM_SCORE_ADJ_MIN", "current",
    "fatal_signal_pending", "return_to_user", "schedule_timeout", "schedule_timeout_killable",
    "schedule_timeout_uninterruptible", "send_sigkill", "sleep_on",
    # the controlled CPU and its schedules
    "Cpu", "RunState", "SpinLock", "Sched", "SchedConfig", "Schedule", "ScheduleKind",
    "EventOrder", "MODEL_VERSION",
    # locks, atomics, completions
    "Mutex", "mutex_lock", "mutex_lock_killable", "mutex_trylock", "mutex_unlock",
    "RwSemaphore", "down_read", "down_read_killable", "down_read_trylock", "down_write",
    "down_write_killable", "down_write_trylock", "up_read", "up_write",
    "Atomic", "Cell", "atomic_dec_and_test", "atomic_inc", "atomic_inc_not_zero", "atomic_read",
    "cmpxchg", "xchg", "Completion", "debug_show_all_locks",
    # memory
    "GFP", "GFP_ATOMIC", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL", "GFP_NOFS", "GFP_NOIO", "GFP_USER",
    "PAGE_KB", "format_gfp", "parse_gfp", "Zone", "AllocFlags", "alloc_pages", "free_page",
    "MM", "MM_ANONPAGES", "MM_FILEPAGES", "MM_SHMEMPAGES", "MM_SWAPENTS", "VMA", "VmaKind",
    "VmaSpec", "exit_mmap", "mmdrop", "mmget", "mmget_not_zero", "mmgrab", "mmput",
    "unmap_page_range", "do_mmap", "do_munmap", "handle_mm_fault",
    # the OOM killer
    "OomControl", "mark_oom_victim", "oom_badness", "oom_kill_process", "out_of_memory",
    "select_bad_process",
    # errors
    "BadPageState", "Deadlock", "Errno", "LockBug", "ModelBug", "OomPanic", "PlugPulled", "RefcountUnderflow",
    "SigKill", "UseAfterFree",
    # observing a run
    "Ev", "TraceEvent", "DmesgLine", "LabLine", "LAB_MARK", "SchedRecord", "SCHED_SWITCH", "SCHED_WAKEUP",
    "LogLevel", "lost_from", "KernelSnapshot", "LockSnapshot",
    "MMSnapshot", "ReaperStatus", "TaskSnapshot", "ZoneSnapshot", "model_call_trace",
    "model_call_traces", "sched_show_task",
]
