"""khungtaskd and its state: report tasks stuck in TASK_UNINTERRUPTIBLE (kernel/hung_task.c).

A task is hung when it is in exactly TASK_UNINTERRUPTIBLE (not killable, not
idle) and has not been scheduled, i.e. its context-switch count has not moved,
for ``hung_task_timeout`` model seconds. As in Linux 4.6, at most
``HUNG_TASK_WARNINGS`` reports are printed per boot; once they are used up
khungtaskd prints nothing more (it still records the ``hung_task`` event).

``HungTaskState`` is khungtaskd's own bookkeeping; only the khungtaskd thread
writes it, and the kernel exposes the reported pids read-only
(``Kernel.hung_tasks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, NamedTuple

from .events import Ev
from .lockdep import debug_show_all_locks
from .sched import Task, TaskState, schedule_timeout
from .snapshot import describe_wchan
from .stacktrace import model_call_traces, sched_show_task
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel

#: sysctl_hung_task_warnings' default: reports printed per boot.
HUNG_TASK_WARNINGS = 10


class LastSeen(NamedTuple):
    """A D-state task's context-switch count, and since when it has not moved."""

    switches: int
    since: float  # model seconds


@dataclass(eq=False)
class HungTaskState:
    """khungtaskd's bookkeeping. Written only by the khungtaskd thread."""

    task: Task  # khungtaskd itself
    timeout: float  # hung_task_timeout_secs
    interval: float  # model seconds between two checks
    warnings_left: int = HUNG_TASK_WARNINGS  # sysctl_hung_task_warnings
    last_seen: dict[int, LastSeen] = field(default_factory=dict)
    reported: dict[int, float] = field(default_factory=dict)  # pid -> model time reported
    checks: int = 0  # check passes completed

    def __post_init__(self) -> None:
        self.view: Mapping[int, float] = MappingProxyType(self.reported)


def start_khungtaskd(kernel: "Kernel") -> HungTaskState:
    """Create khungtaskd (not yet started) and its state."""
    cfg = kernel.config
    task = kernel.kthread_run("khungtaskd", watchdog, start=False)
    return HungTaskState(task, cfg.hung_task_timeout,
                         cfg.hung_task_check_interval or cfg.hung_task_timeout / 4)


def watchdog(task: Task) -> None:
    kernel = task.kernel
    state = kernel.khungtaskd
    while True:
        schedule_timeout(TaskState.TASK_INTERRUPTIBLE, state.interval * kernel.clock.hz, "watchdog")
        check_hung_uninterruptible_tasks(kernel, state)


def check_hung_uninterruptible_tasks(kernel: "Kernel", state: HungTaskState) -> list[Task]:
    """One pass: report the tasks newly hung; returns them."""
    now = kernel.clock.now()
    timeout = state.timeout
    hung: list[tuple[Task, float]] = []
    for t in kernel.tasks():
        if t.state != TaskState.TASK_UNINTERRUPTIBLE:
            state.last_seen.pop(t.pid, None)
            state.reported.pop(t.pid, None)
            continue
        count = t.nvcsw
        prev = state.last_seen.get(t.pid)
        if prev is None or prev.switches != count:
            state.last_seen[t.pid] = LastSeen(count, now)
            state.reported.pop(t.pid, None)
            continue
        if now - prev.since < timeout or t.pid in state.reported:
            continue
        hung.append((t, prev.since))
    if hung:
        with kernel.decision():
            report_hung_tasks(kernel, state, hung, now)
    state.checks += 1
    kernel.poke()
    return [t for t, _ in hung]


def report_hung_tasks(kernel: "Kernel", state: HungTaskState, hung: list[tuple[Task, float]],
                      now: float) -> None:
    """Record every newly hung task; print reports while warnings are left,
    then the locks held, once per pass that printed anything. The tasks
    join ``reported`` last, so a reader that sees one there sees its report."""
    printed = [t for t, _ in hung[:max(0, state.warnings_left)]]
    traces = model_call_traces(printed) if printed else {}
    for t, since in hung:
        wchan, kind, owners = describe_wchan(t.wchan)
        kernel.tracer.record(Ev.HUNG_TASK, t.pid, t.comm, seconds=int(state.timeout), wchan=wchan,
                             wchan_kind=kind, owners=list(owners), blocked_since=since)
        if t.pid in traces:
            state.warnings_left -= 1
            report_hung_task(kernel, state, t, traces[t.pid])
    if printed:
        for line in debug_show_all_locks(kernel):
            kernel.printk(line, LogLevel.KERN_INFO, state.task)
    for t, _ in hung:
        state.reported[t.pid] = now


def report_hung_task(kernel: "Kernel", state: HungTaskState, t: Task, trace: list[str]) -> None:
    me = state.task
    kernel.printk(f"INFO: task {t.comm}:{t.pid} blocked for more than {int(state.timeout)} seconds.",
                  LogLevel.KERN_ERR, me)
    kernel.printk('"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
                  LogLevel.KERN_ERR, me)
    for line in sched_show_task(t, trace):
        kernel.printk(line, LogLevel.KERN_INFO, me)
