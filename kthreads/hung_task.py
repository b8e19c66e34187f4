"""khungtaskd: report tasks stuck in TASK_UNINTERRUPTIBLE (kernel/hung_task.c).

A task is hung when it is in exactly TASK_UNINTERRUPTIBLE (not killable, not
idle) and has not been scheduled, i.e. its context-switch count has not moved,
for ``hung_task_timeout`` model seconds. As in Linux 4.6, at most
``HUNG_TASK_WARNINGS`` reports are printed per boot.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .lockdep import debug_show_all_locks
from .sched import Task, TaskState, schedule_timeout
from .snapshot import describe_wchan
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel

HUNG_TASK_WARNINGS = 10
TIF_SIGPENDING = 1 << 2
TIF_MEMDIE = 1 << 18


def start_khungtaskd(kernel: "Kernel") -> Task:
    return kernel.kthread_run("khungtaskd", watchdog)


def watchdog(task: Task) -> None:
    kernel = task.kernel
    cfg = kernel.config
    interval = cfg.hung_task_check_interval or cfg.hung_task_timeout / 4
    seen: dict[int, tuple[int, float]] = {}  # pid -> (switch count, when it last moved)
    warnings = [HUNG_TASK_WARNINGS]
    while True:
        schedule_timeout(TaskState.TASK_INTERRUPTIBLE, interval * kernel.clock.hz, "watchdog")
        check_hung_uninterruptible_tasks(kernel, cfg.hung_task_timeout, seen, warnings)


def check_hung_uninterruptible_tasks(kernel: "Kernel", timeout: float,
                                     seen: dict[int, tuple[int, float]],
                                     warnings: list[int]) -> list[Task]:
    now = kernel.clock.now()
    hung = []
    for t in kernel.tasks():
        if t.state != TaskState.TASK_UNINTERRUPTIBLE:
            seen.pop(t.pid, None)
            kernel.hung_tasks.pop(t.pid, None)
            continue
        count = t.nvcsw
        prev = seen.get(t.pid)
        if prev is None or prev[0] != count:
            seen[t.pid] = (count, now)
            kernel.hung_tasks.pop(t.pid, None)
            continue
        if now - prev[1] < timeout or t.pid in kernel.hung_tasks:
            continue
        kernel.hung_tasks[t.pid] = now
        hung.append(t)
        wchan, kind, owners = describe_wchan(t.wchan)
        kernel.tracer.record("hung_task", t.pid, t.comm, seconds=int(timeout), wchan=wchan,
                             wchan_kind=kind, owners=list(owners), blocked_since=prev[1])
        if warnings[0] <= 0:
            continue
        warnings[0] -= 1
        report_hung_task(kernel, t, timeout)
    if hung and warnings[0] >= 0:
        for line in debug_show_all_locks(kernel):
            kernel.printk(line, LogLevel.KERN_INFO, kernel.kthreads.get("khungtaskd"))
    kernel.poke()
    return hung


def report_hung_task(kernel: "Kernel", t: Task, timeout: float) -> None:
    me = kernel.kthreads.get("khungtaskd")
    kernel.printk(f"INFO: task {t.comm}:{t.pid} blocked for more than {int(timeout)} seconds.",
                  LogLevel.KERN_ERR, me)
    kernel.printk('"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
                  LogLevel.KERN_ERR, me)
    for line in sched_show_task(t):
        kernel.printk(line, LogLevel.KERN_INFO, me)


def sched_show_task(t: Task) -> list[str]:
    flags = (TIF_MEMDIE if t.tif_memdie else 0) | (TIF_SIGPENDING if t.sigkill_pending else 0)
    lines = [f"{t.comm:<15.15} {t.state_letter} {0:5d} {t.pid:5d} {1:6d} 0x{flags:08x}",
             "Call Trace:"]
    lines += [f" {name}" for name in model_call_trace(t)]
    return lines


def model_call_trace(t: Task, depth: int = 12) -> list[str]:
    """The task's Python stack, innermost first, as kernel-ish function names."""
    frame = sys._current_frames().get(t.thread.ident or -1)
    names: list[str] = []
    while frame is not None and len(names) < depth:
        code = frame.f_code
        # co_qualname (3.11+) names the class too: "Mutex.__enter__". Never
        # read another thread's f_locals here: that frame is running.
        name = getattr(code, "co_qualname", code.co_name)
        if "threading" not in code.co_filename and name not in ("run", "task_main") and \
                not (code.co_name.startswith("_") and not code.co_name.startswith("__")):
            names.append(f"{name}+{frame.f_lineno}")
        frame = frame.f_back
    return names
