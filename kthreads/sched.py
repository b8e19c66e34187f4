"""Tasks on real threads, the one wait primitive, and signals.

A ``Task`` is a ``task_struct``: it runs its body in a ``TaskThread``.
Python cannot stop a thread from outside, so SIGKILL is cooperative exactly
as in the kernel: a task notices a fatal signal at a return-to-user point
(``return_to_user()``) or while sleeping TASK_KILLABLE/TASK_INTERRUPTIBLE,
never while sleeping TASK_UNINTERRUPTIBLE.

Every sleep in the model goes through ``sleep_on()``. It records the state
and what the task waits on (``wchan``), so dumps and khungtaskd can read
them, and it also watches for the harness pulling the plug, so that every
thread can be unwound on shutdown whatever its sleep mode.

Kernel semantics are Linux 4.6's (include/linux/sched.h, kernel/signal.c,
kernel/time/timer.c): the task state and PF_* values, which sleeps a signal
may end, SIGKILL to a whole thread group, the schedule_timeout_* family.
The threads, ``sleep_on``, ``Waiter``, ``current_holder`` and the plug are
the lab's machinery.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from .cpu import Parker, SpinLock, this_thread, monotonic, this_init
from .errors import Errno, PlugPulled, SigKill
from .events import Ev

if TYPE_CHECKING:
    from .futex import RobustList
    from .kernel import Kernel
    from .lockdep import HeldLock
    from .mm import MM


class TaskState(enum.IntFlag):
    """``task->state`` bits, with the kernel's values."""

    TASK_RUNNING = 0x0
    TASK_INTERRUPTIBLE = 0x1
    TASK_UNINTERRUPTIBLE = 0x2
    EXIT_DEAD = 0x10
    EXIT_ZOMBIE = 0x20
    TASK_WAKEKILL = 0x80
    TASK_NOLOAD = 0x400
    TASK_KILLABLE = TASK_WAKEKILL | TASK_UNINTERRUPTIBLE
    TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD


TASK_RUNNING = TaskState.TASK_RUNNING
TASK_INTERRUPTIBLE = TaskState.TASK_INTERRUPTIBLE
TASK_UNINTERRUPTIBLE = TaskState.TASK_UNINTERRUPTIBLE
TASK_KILLABLE = TaskState.TASK_KILLABLE
TASK_IDLE = TaskState.TASK_IDLE
EXIT_ZOMBIE = TaskState.EXIT_ZOMBIE
EXIT_DEAD = TaskState.EXIT_DEAD
#: Linux 4.6's other ``task->state`` values that traces print: a task's last
#: switch is in TASK_DEAD ("x"), and sched_switch adds TASK_STATE_MAX to the
#: state of a preempted task ("R+").
TASK_DEAD = 0x40
TASK_STATE_MAX = 0x800


def task_state_letter(state: TaskState) -> str:
    """The letter 4.6's ``sched_show_task`` prints (the first set bit of the
    state): R S D Z X; TASK_KILLABLE and TASK_IDLE read D."""
    if state & TaskState.EXIT_DEAD:
        return "X"
    if state & TaskState.EXIT_ZOMBIE:
        return "Z"
    if state & TaskState.TASK_UNINTERRUPTIBLE:
        return "D"
    if state & TaskState.TASK_INTERRUPTIBLE:
        return "S"
    return "R"


class PF(enum.IntFlag):
    """``task->flags`` the model uses, with 4.6's values."""

    PF_EXITING = 0x00000004
    PF_MEMALLOC = 0x00000800
    PF_KTHREAD = 0x00200000


class SleepResult(enum.Enum):
    WOKEN = 0  # the condition became true
    INTERRUPTED = -Errno.EINTR  # a signal the sleep mode lets through
    TIMED_OUT = -Errno.ETIMEDOUT


OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000


@dataclass(eq=False)
class SignalStruct:
    """``signal_struct``: what a thread group shares."""

    oom_score_adj: int = 0
    group_exit: bool = False
    # 4.9's signal->oom_mm: the mm of an OOM victim, pinned with mm_count
    # until the whole group is gone (``PolicyOps.signal_oom_mm``). The
    # pointer stays after that (the kernel's signal struct outlives its
    # threads while somebody holds a task reference); the pin does not.
    oom_mm: Optional["MM"] = None
    oom_mm_pinned: bool = False
    threads: list["Task"] = field(default_factory=list)


class Task:
    """A ``task_struct`` running its body on a real thread."""

    def __init__(self, kernel: "Kernel", pid: int, comm: str, body: Callable[["Task"], Any],
                 signal: SignalStruct, group_leader: Optional["Task"] = None,
                 mm: Optional["MM"] = None, flags: PF = PF(0), *,
                 entry: Callable[["Task"], None]) -> None:
        self.kernel = kernel
        self.pid = pid
        self.comm = comm[:15]  # TASK_COMM_LEN - 1
        self.body = body
        self.signal = signal
        self.group_leader = group_leader or self
        self.tgid = self.group_leader.pid
        self.mm: Optional["MM"] = mm
        # task_lock(): a spinlock, never held across a sleep. It orders
        # exit_mm() clearing ->mm against the OOM killer reading it.
        self.alloc_lock = SpinLock("alloc_lock")
        self.flags = flags
        self.state = TaskState.TASK_RUNNING
        self.tif_memdie = False
        self.sigkill_pending = False
        self.wchan: object = None
        # Context switches, as khungtaskd reads them (nvcsw + nivcsw).
        self.nvcsw = 0
        self.held_locks: list["HeldLock"] = []
        self.lockdep_acquiring: "HeldLock | None" = None  # asleep acquiring it (lockdep.lock_acquiring)
        # Pages the task allocated for itself (not mapped into an mm): freed
        # at exit, like the slab objects a dying task releases.
        self.kernel_pages: list[int] = []
        self.exit_reason: str | None = None
        # set_robust_list()'s head (kthreads/futex.py), walked at exit_mm.
        self.robust_list: "RobustList | None" = None
        # Model time the current slow-path allocation started (None: not in it).
        self.alloc_since: float | None = None
        self.alloc_gfp: int | None = None
        self.error: BaseException | None = None
        # Every waker unparks it; the sleeper rechecks its condition after
        # each park (see sleep_on). On a controlled CPU the parker is its
        # runner's: parking blocks it there, unparking makes it ready.
        cpu = kernel.cpu
        self.runner = cpu.new_runner(pid, f"{self.comm}/{pid}", self) if cpu is not None else None
        self.parker: Parker = self.runner.parker if self.runner is not None else Parker()
        self.thread = TaskThread(self, entry)
        signal.threads.append(self)

    def __repr__(self) -> str:
        return f"<Task {self.comm}:{self.pid} {self.state_letter}>"

    @property
    def state_letter(self) -> str:
        return task_state_letter(self.state)

    @property
    def is_kthread(self) -> bool:
        return bool(self.flags & PF.PF_KTHREAD)

    @property
    def exiting(self) -> bool:
        return bool(self.flags & PF.PF_EXITING)

    def thread_group(self) -> list["Task"]:
        return list(self.signal.threads)


class TaskThread(threading.Thread):
    """The OS thread a ``Task`` runs on; ``current()`` reads ``.task``.

    ``entry`` is what the thread runs as the task: the kernel passes its
    ``task_main`` (the body, then do_exit), so scheduling does not depend on
    the exit path.
    """

    def __init__(self, task: Task, entry: Callable[[Task], None]) -> None:
        super().__init__(name=f"{task.comm}/{task.pid}", daemon=True)
        self.task = task
        self.entry = entry

    def start(self) -> None:
        """Start the thread; on a controlled CPU its task becomes ready (it
        runs when the strategy hands it the CPU)."""
        task = self.task
        if task.runner is not None:
            task.kernel.cpu.start(task.runner)
        super().start()

    def run(self) -> None:
        task = self.task
        this_thread.task = this_thread.holder = task
        this_thread.parker = task.parker
        this_thread.cpu = this_thread.runner = None
        cpu = task.kernel.cpu
        if task.runner is None:
            self.entry(task)
            return
        cpu.enter(task.runner)  # first thing: wait for the CPU
        try:
            self.entry(task)
        finally:
            cpu.exit(task.runner)


def current() -> Task | None:
    """The task running on the calling thread, or None for a harness thread."""
    try:
        return this_thread.task
    except AttributeError:
        this_init()
        return None


def current_holder() -> object:
    """Who a lock is held by: the current task, or the bare thread."""
    try:
        return this_thread.holder
    except AttributeError:
        this_init()
        return this_thread.holder


def current_parker() -> "Parker":
    try:
        return this_thread.parker
    except AttributeError:
        this_init()
        return this_thread.parker


def fatal_signal_pending(task: Task) -> bool:
    return task.sigkill_pending


def signal_wake_up(task: Task) -> None:
    """Wake ``task`` for a fatal signal if its sleep mode lets signals in."""
    # The sender set sigkill_pending before reading the state; the sleeper
    # writes its state before it re-reads sigkill_pending (sleep_on). Either
    # the sender sees the sleepy state and wakes it, or the sleeper sees the
    # signal: the kill is never lost.
    if task.state & (TaskState.TASK_INTERRUPTIBLE | TaskState.TASK_WAKEKILL):
        task.parker.unpark()


def send_sigkill(p: Task) -> None:
    """SIGKILL to ``p``'s whole thread group, as 4.6's OOM killer sends it
    (do_send_sig_info(SIGKILL, SEND_SIG_FORCED, p, true)): every live thread
    gets it pending and is woken if its sleep lets a fatal signal in."""
    p.signal.group_exit = True
    for t in p.thread_group():
        if t.state & (TaskState.EXIT_DEAD | TaskState.EXIT_ZOMBIE):
            continue
        t.sigkill_pending = True
        signal_wake_up(t)
    p.kernel.tracer.record(Ev.SIGNAL_GENERATE, p.pid, p.comm, sig=9)
    p.kernel.poke()


def wake_up_process(task: Task) -> None:
    task.parker.unpark()


def return_to_user(task: Task | None = None) -> None:
    """A return-to-user point: a pending SIGKILL unwinds the body here (the
    lab's stand-in for 4.6's signal check on the way back to user space)."""
    task = task or current()
    if task is None:
        return
    if task.kernel.plug_pulled:
        raise PlugPulled()
    if task.sigkill_pending:
        raise SigKill()


def sleep_on(state: TaskState, wchan: object, until: Callable[[], bool] | None = None,
             deadline: float | None = None) -> SleepResult:
    """The model's one wait primitive (the lab's; kernel sleeps that take a
    state, as 4.6's, are built on it).

    Sleeps in ``state`` until ``until()`` is true (rechecked after every
    wake), the ``deadline`` (``kernel.clock.monotonic()`` seconds: real time, or
    virtual time on a controlled CPU) passes, or a
    signal arrives that ``state`` lets in. With ``until=None`` it is
    ``schedule_timeout()``: it sleeps until the deadline or a signal.
    Whatever the state, a pulled plug raises ``PlugPulled``.

    A harness thread (no task) sleeps on its own parker; it has no signals
    and no plug, only the deadline.
    """
    task = current()
    if task is None:
        return _sleep_bare(until, deadline, current_parker())
    kernel = task.kernel
    parker = task.parker
    wakeable = state & (TaskState.TASK_INTERRUPTIBLE | TaskState.TASK_WAKEKILL)
    task.state = state
    task.wchan = wchan
    tr = kernel.tracer
    if tr.enabled:
        owners = wchan.owner_pids() if hasattr(wchan, "owner_pids") else ()
        tr.record(Ev.SCHED_SLEEP, task.pid, task.comm, state=task_state_letter(state),
                  killable=bool(wakeable), wchan=getattr(wchan, "name", wchan),
                  lock_id=getattr(wchan, "lock_id", 0),
                  kind=getattr(wchan, "kind", "function" if isinstance(wchan, str) else
                               type(wchan).__name__.lower()), owners=list(owners))
    kernel.poke()
    try:
        while True:
            # Check, then park: a wake after the check leaves a permit, so
            # park() returns at once and the loop checks again.
            if until is not None and until():
                return SleepResult.WOKEN
            if kernel.plug_pulled:
                raise PlugPulled()
            if wakeable and task.sigkill_pending:
                return SleepResult.INTERRUPTED
            if deadline is not None and deadline <= kernel.clock.monotonic():
                return SleepResult.TIMED_OUT
            parker.park(deadline)
            task.nvcsw += 1
    finally:
        # Recorded while the task still reads as asleep: on a controlled CPU
        # the event is a scheduling point, and a task held there (a followed
        # free run in which it was woken but never ran again) must look as
        # it did in that run.
        tr.record(Ev.SCHED_WAKE, task.pid, task.comm)
        task.state = TaskState.TASK_RUNNING
        task.wchan = None
        kernel.poke()


def _sleep_bare(until: Callable[[], bool] | None, deadline: float | None,
                parker: Parker) -> SleepResult:
    while True:
        if until is not None and until():
            return SleepResult.WOKEN
        if deadline is None and until is None:
            raise ValueError("a harness thread cannot sleep forever")
        if deadline is not None and deadline <= monotonic():
            return SleepResult.TIMED_OUT
        parker.park(deadline)


def schedule_timeout(state: TaskState, jiffies: float, wchan: object = "schedule_timeout") -> SleepResult:
    """Sleep ``jiffies`` of model time in ``state`` (TASK_RUNNING: a cond_resched-like yield)."""
    task = current()
    if task is None:
        raise RuntimeError("schedule_timeout() called outside a task")
    return sleep_on(state, wchan, None, task.kernel.clock.deadline_after(jiffies))


def schedule_timeout_uninterruptible(jiffies: float, wchan: object = "schedule_timeout") -> SleepResult:
    return schedule_timeout(TaskState.TASK_UNINTERRUPTIBLE, jiffies, wchan)


def schedule_timeout_killable(jiffies: float, wchan: object = "schedule_timeout") -> SleepResult:
    return schedule_timeout(TaskState.TASK_KILLABLE, jiffies, wchan)


def schedule_timeout_idle(jiffies: float, wchan: object = "schedule_timeout") -> SleepResult:
    """TASK_IDLE: uninterruptible, but not counted as load and skipped by
    khungtaskd. Added by 69b27baf, "sched: add schedule_timeout_idle()",
    merged in 4.6-rc1 just before aac45363 for the reaper's sake."""
    return schedule_timeout(TaskState.TASK_IDLE, jiffies, wchan)


class Waiter:
    """One entry on a lock's or completion's wait list."""

    __slots__ = ("holder", "parker", "granted", "write")

    def __init__(self, holder: object, write: bool = False) -> None:
        self.holder = holder
        # The sleeping thread's own parker (a task's, or a harness thread's).
        self.parker: Parker = current_parker() if not isinstance(holder, Task) else holder.parker
        self.granted = False
        self.write = write

    def is_granted(self) -> bool:
        return self.granted

    def wake(self) -> None:
        self.parker.unpark()


def holder_name(holder: object) -> str:
    if isinstance(holder, Task):
        return f"{holder.comm}/{holder.pid}"
    if isinstance(holder, threading.Thread):
        return f"thread {holder.name}"
    return repr(holder)


def holder_pid(holder: object) -> int | None:
    return holder.pid if isinstance(holder, Task) else None
