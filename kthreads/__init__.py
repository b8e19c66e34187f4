"""kthreads: the Linux OOM killer's neighbourhood, modelled on real threads.

The library never configures loguru sinks; it only disables its own logger.
Applications (the ``stress`` CLI, tests) add sinks and ``logger.enable("kthreads")``.
"""

from loguru import logger

from .atomic import (Atomic, Cell, atomic_dec_and_test, atomic_inc, atomic_inc_not_zero,
                     atomic_read, cmpxchg, xchg)
from .completion import Completion
from .errors import (BadPageState, Errno, LockBug, ModelBug, OomPanic, PlugPulled,
                     RefcountUnderflow, SigKill, UseAfterFree)
from .events import Ev, TraceEvent
from .hung_task import model_call_trace, sched_show_task
from .jiffies import HZ_MAX, HZ_MIN, Clock, dmesg_stamp
from .kernel import Kernel, KernelConfig, KernelStats, ShutdownError, ShutdownReport
from .lockdep import debug_show_all_locks
from .mm import (MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, VMA, VmaKind,
                 VmaSpec, do_mmap, do_munmap, exit_mmap, handle_mm_fault, mmdrop, mmget, mmget_not_zero,
                 mmgrab, mmput, unmap_page_range)
from .mutex import Mutex, mutex_lock, mutex_lock_killable, mutex_trylock, mutex_unlock
from .oom_kill import (OomControl, mark_oom_victim, oom_badness, oom_kill_process,
                       out_of_memory, select_bad_process)
from .page_alloc import (GFP, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOFS, GFP_NOIO,
                         GFP_USER, Zone, alloc_pages, format_gfp, free_page, parse_gfp)
from .policy import Policy
from .rwsem import (RwSemaphore, down_read, down_read_killable, down_read_trylock, down_write,
                    down_write_killable, down_write_trylock, up_read, up_write)
from .sched import (OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN, PF, TASK_IDLE, TASK_INTERRUPTIBLE,
                    TASK_KILLABLE, TASK_RUNNING, TASK_UNINTERRUPTIBLE, SleepResult, Task,
                    TaskState, current, fatal_signal_pending, return_to_user, schedule_timeout,
                    schedule_timeout_killable, schedule_timeout_uninterruptible, send_sigkill,
                    sleep_on)
from .snapshot import (KernelSnapshot, LockSnapshot, MMSnapshot, ReaperStatus, TaskSnapshot,
                       ZoneSnapshot)
from .trace import LogLevel, lost_from

logger.disable("kthreads")

__all__ = [name for name in dir() if not name.startswith("_") and name != "logger"]
