"""khungtaskd as Linux 4.6 has it (kernel/hung_task.c): report tasks stuck in
TASK_UNINTERRUPTIBLE.

khungtaskd wakes once per ``hung_task_timeout`` seconds, counted from its
previous check. At each check it compares every TASK_UNINTERRUPTIBLE task's
context-switch count with the count it saw at an earlier check: a task whose
count did not move is hung. So a task is reported at the second check after
it went to sleep, one to two timeouts after (never sooner than one), and
again at every later check while it stays asleep: 4.6 keeps no memory of
what it reported. Each report fires the ``sched_process_hang`` tracepoint
(the lab's ``hung_task`` event) and, while the ten warnings of a boot last,
prints the report, the task's stack and the locks that task holds
(``debug_show_held_locks``). The stack in dmesg is the kernel call trace the
model's Python stack stands for (``stacktrace.kernel_call_trace``); the
Python stack itself follows in the lab's stream. Once the warnings are used
up nothing more is printed, but the event is still recorded at every check.

Sources: a Linux 4.6 copy of kernel/hung_task.c with its comments stripped
and its whitespace squeezed (``garghub/TROVON``,
dataset/codebase_cleansed/linux_kernel/v4.6/hung_task.c, read through the
lab's search tool), checked against the same dataset's 4.8 copy (identical
in what is modelled), its 4.10 copy (which prints ``debug_show_all_locks()``
instead, so that change came in 4.9 or 4.10, not ~4.17), 3.x copies (no
tracepoint, no taint line) and later kernels for the taint line's six-space
indent. The 4.6 tree itself (torvalds/linux at v4.6) could not be read.

4.19-5.x (``PolicyOps.hung_task_blocked_time``; 5.10.13's kernel/hung_task.c,
read per docs/KERNEL-FORMATS.md §3): a task's ``last_switch_time`` is the
jiffies of the check that saw its switch count change; a check reports it
once ``last_switch_time + timeout * HZ`` has passed, and prints
``(jiffies - last_switch_time) / HZ`` seconds (so the number grows while it
stays blocked); khungtaskd wakes every ``min(check_interval ?: timeout,
timeout)`` seconds. The 4.x trees are unchanged.

``HungTaskState`` is khungtaskd's own bookkeeping; only the khungtaskd thread
writes it, and the kernel exposes the reported pids read-only
(``Kernel.hung_tasks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, NamedTuple

from .events import Ev
from .lockdep import debug_show_all_locks, debug_show_held_locks
from .sched import Task, TaskState, schedule_timeout
from .snapshot import describe_wchan
from .stacktrace import ModelStack, model_call_traces, model_stack_line, sched_show_task
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel

#: sysctl_hung_task_warnings' default: reports printed per boot (a negative
#: value would mean "no limit", as the sysctl's -1 does).
HUNG_TASK_WARNINGS = 10

#: The first word of ``init_utsname()->version``, which the report's second
#: line prints after the release (``PolicyOps.release``: "4.5.0+" for the
#: trees in the 4.6 merge window, whose Makefile still said 4.5.0; reasoned
#: from the merge dates, not read from a build).
UTS_VERSION = "#1"


class LastSwitch(NamedTuple):
    """What the kernel keeps in ``task_struct->last_switch_count``, and (the
    lab's own) the model time of the check that stored it."""

    count: int
    seen_at: float  # model seconds


@dataclass(eq=False)
class HungTaskState:
    """khungtaskd's bookkeeping. Written only by the khungtaskd thread."""

    task: Task  # khungtaskd itself
    timeout: float  # hung_task_timeout_secs
    warnings_left: int = HUNG_TASK_WARNINGS  # sysctl_hung_task_warnings
    # pid -> t->last_switch_count. Updated only when a check finds the task in
    # TASK_UNINTERRUPTIBLE, and never forgotten (pids are never reused).
    last_switch: dict[int, LastSwitch] = field(default_factory=dict)
    # The lab's: pid -> model time of the first report of its current hang;
    # dropped once a check sees the task out of D or its count moved.
    reported: dict[int, float] = field(default_factory=dict)
    checks: int = 0  # times khungtaskd woke to check (after a panic or oops too)
    last_checked: float = 0.0  # hung_last_checked, as model seconds
    # 4.19+'s sysctl_hung_task_check_interval_secs: 0 (its default) means
    # the timeout. Read only by designs with hung_task_blocked_time.
    check_interval: float = 0.0

    def __post_init__(self) -> None:
        self.view: Mapping[int, float] = MappingProxyType(self.reported)


def start_khungtaskd(kernel: "Kernel") -> HungTaskState:
    """Create khungtaskd (not yet started) and its state, as 4.6's
    hung_task_init (which also registers a panic notifier: not modelled)."""
    task = kernel.kthread_run("khungtaskd", watchdog, start=False)
    return HungTaskState(task, kernel.config.hung_task_timeout)


def watchdog(task: Task) -> None:
    """khungtaskd's loop, as Linux 4.6's ``watchdog()``: check once
    ``hung_task_timeout`` has passed since the previous check (the first one
    a timeout after the thread starts), then count from the end of that check.
    A wakeup before then only recomputes the time left, so the cadence is one
    check per timeout. Not modelled: ``reset_hung_task_detector()`` (a check
    skipped after a KVM guest was paused) and the sysctl write that wakes the
    thread (the lab's timeout never changes after boot).

    4.19-5.x (``policy_ops.hung_task_blocked_time``): the wait is the
    interval, ``min(check_interval ?: timeout, timeout)`` (5.10.13's
    watchdog(), per docs/KERNEL-FORMATS.md §3); with the sysctl at its
    default, 0, that is the timeout, as before."""
    kernel = task.kernel
    state = kernel.khungtaskd
    clock = kernel.clock
    state.last_checked = clock.now()
    while True:
        # 5.x reads the sysctls afresh at every wakeup.
        interval = state.timeout
        if kernel.policy_ops.hung_task_blocked_time:
            interval = min(state.check_interval or state.timeout, state.timeout)
        # Jiffies left, in whole jiffies as the kernel counts them: a wakeup
        # a rounding error short of the deadline is the deadline.
        left = round((state.last_checked + interval - clock.now()) * clock.hz)
        if left <= 0:
            check_hung_uninterruptible_tasks(kernel, state)
            state.last_checked = clock.now()
            state.checks += 1
            kernel.poke()
            continue
        schedule_timeout(TaskState.TASK_INTERRUPTIBLE, left, "watchdog")


def check_hung_uninterruptible_tasks(kernel: "Kernel", state: HungTaskState) -> list[Task]:
    """One check, as Linux 4.6's ``check_hung_uninterruptible_tasks()`` with
    ``check_hung_task()`` for each task in exactly TASK_UNINTERRUPTIBLE
    (TASK_KILLABLE and TASK_IDLE sleepers are skipped). Returns the tasks
    found hung.

    As 4.6, nothing is checked once the machine died: after a panic, or after
    an oops (``test_taint(TAINT_DIE)``; the model's oops is a task body that
    raised). Not modelled: the freezer (``PF_FROZEN``, ``PF_FREEZER_SKIP``),
    ``hung_task_check_count``, and the RCU break every HUNG_TASK_BATCHING
    (1024) tasks, which only bounds an RCU read section. The kernel also skips
    a task whose switch count is 0 (set to D but not yet switched out); the
    model counts a switch when the task runs again, so its first sleep reads
    0 while the task is truly asleep, and that test has no counterpart here.

    4.19-5.x (``policy_ops.hung_task_blocked_time``): a task whose count did
    not move is hung only once ``timeout`` has passed since the check that
    stored the count (``last_switch_time``), compared in whole jiffies
    (``time_is_after_jiffies``).
    """
    if kernel.panic_reason is not None or kernel.oopses:
        return []
    now = kernel.clock.now()
    hz = kernel.clock.hz
    blocked_time = kernel.policy_ops.hung_task_blocked_time
    hung: list[tuple[Task, float]] = []
    for t in kernel.tasks():
        if t.state != TaskState.TASK_UNINTERRUPTIBLE:
            state.reported.pop(t.pid, None)
            continue
        count = t.nvcsw
        last = state.last_switch.get(t.pid)
        if last is None or last.count != count:
            state.last_switch[t.pid] = LastSwitch(count, now)
            state.reported.pop(t.pid, None)
            continue
        if blocked_time and round(now * hz) < round(last.seen_at * hz) + round(state.timeout * hz):
            continue  # time_is_after_jiffies(last_switch_time + timeout * HZ)
        hung.append((t, last.seen_at))
    if hung:
        with kernel.decision():
            report_hung_tasks(kernel, state, hung, now)
    return [t for t, _ in hung]


def report_hung_tasks(kernel: "Kernel", state: HungTaskState, hung: list[tuple[Task, float]],
                      now: float) -> None:
    """The reporting half of 4.6's ``check_hung_task()``, for each hung task in
    turn: the ``sched_process_hang`` tracepoint (the ``hung_task`` event),
    then, while warnings are left, the report. The stacks of the tasks to be
    printed are read in one go (``model_call_traces``). A task joins
    ``reported`` after its event and report, so a reader that sees it there
    sees them too."""
    to_print = hung[:len(hung) if state.warnings_left < 0 else state.warnings_left]
    traces = model_call_traces([t for t, _ in to_print]) if to_print else {}
    show_lock = False  # 4.14's hung_task_show_lock: a report was printed in this scan
    for t, since in hung:
        wchan, kind, owners = describe_wchan(t.wchan)
        seconds = blocked_seconds(kernel, state, since, now)
        kernel.tracer.record(Ev.HUNG_TASK, t.pid, t.comm, seconds=seconds, wchan=wchan,
                             wchan_kind=kind, owners=list(owners), blocked_since=since)
        if state.warnings_left != 0:
            if state.warnings_left > 0:
                state.warnings_left -= 1
            report_hung_task(kernel, state, t, traces.get(t.pid, ModelStack()), seconds)
            show_lock = True
        state.reported.setdefault(t.pid, now)
    if show_lock and kernel.policy_ops.hung_task_all_locks_once_per_scan:
        # 4.14 (401c636a0eeb): every task's locks once, after the whole scan.
        for line in debug_show_all_locks(kernel):
            kernel.printk(line, LogLevel.KERN_WARNING, state.task)


def blocked_seconds(kernel: "Kernel", state: HungTaskState, since: float, now: float) -> int:
    """The seconds the report prints: the sysctl timeout up to 4.18 (4.6's
    ``timeout``), and from 4.19-5.x (``policy_ops.hung_task_blocked_time``)
    ``(jiffies - t->last_switch_time) / HZ``, in whole jiffies, ``since``
    being the model time of the check that stored the task's count."""
    if not kernel.policy_ops.hung_task_blocked_time:
        return int(state.timeout)
    hz = kernel.clock.hz
    return (round(now * hz) - round(since * hz)) // hz


def report_hung_task(kernel: "Kernel", state: HungTaskState, t: Task, stack: ModelStack,
                     seconds: int | None = None) -> None:
    """One report, as 4.6 prints it: two lines and the taint line at KERN_ERR,
    ``sched_show_task()`` at KERN_INFO (its call trace the kernel functions
    the model's ``stack`` stands for), then ``debug_show_held_locks(t)``:
    the hung task's own locks, printed without a level (the console's
    default, KERN_WARNING). ``touch_nmi_watchdog()`` has nothing to touch
    here, and ``hung_task_panic`` (0 by default) is not modelled. From 4.9
    on (``policy_ops.hung_task_shows_all_locks``) it prints
    ``debug_show_all_locks()`` instead of the hung task's own locks, and
    ``sched_show_task`` has no saved-PC column (``sched_show_task_no_pc``);
    from 4.14 on (``hung_task_all_locks_once_per_scan``) the all-locks dump
    comes once after the scan's reports (``report_hung_tasks``).

    ``seconds`` is what "blocked for more than %ld seconds" prints
    (``blocked_seconds``; the timeout when not given). 5.x prints the same
    three lines (5.10.13's text) and its sched_show_task is 5.9's
    (``sched_show_task_labelled``).

    Then, in the lab's stream (never dmesg), the model's own stack of the
    task, which the kernel call trace only stands for."""
    me = state.task
    if seconds is None:
        seconds = int(state.timeout)
    kernel.printk(f"INFO: task {t.comm}:{t.pid} blocked for more than {seconds} seconds.",
                  LogLevel.KERN_ERR, me)
    kernel.printk(f"      Not tainted {kernel.policy_ops.release} {UTS_VERSION}", LogLevel.KERN_ERR, me)
    kernel.printk('"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
                  LogLevel.KERN_ERR, me)
    for line in sched_show_task(t, stack):
        kernel.printk(line, LogLevel.KERN_INFO, me)
    # 4.9 (``hung_task_shows_all_locks``): every task's locks, once per report;
    # 4.14 (``hung_task_all_locks_once_per_scan``): none here, once per scan.
    ops = kernel.policy_ops
    if ops.hung_task_all_locks_once_per_scan:
        locks = []
    elif ops.hung_task_shows_all_locks:
        locks = debug_show_all_locks(kernel)
    else:
        locks = debug_show_held_locks(t)
    for line in locks:
        kernel.printk(line, LogLevel.KERN_WARNING, me)
    kernel.lab(model_stack_line(t, stack), me)
