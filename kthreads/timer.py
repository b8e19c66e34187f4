"""Kernel timers: ``timer_list``, ``add_timer`` and the softirq that runs them.

The base and its thread are started by the first ``add_timer`` (only
5.18's delayed reap arms one), not at boot as in the kernel: a thread
started at boot would shift every schedule of the controlled CPU, so that
two designs that differ only after an OOM kill would already run
differently before it. A timer is a callback and an expiry in jiffies;
``add_timer`` files it on the timer base and the timer softirq runs each
one once its jiffy has come.

Where the callbacks run is the lab's choice: the kernel runs expired timers
in the timer softirq, on the way out of the tick interrupt of whatever CPU
owns the timer (often the idle task's, ``<idle>-0`` in a trace), or in
``ksoftirqd/N`` when softirqs pile up. The model runs them in a kernel
thread named ``ksoftirqd/0``: a task that sleeps in TASK_INTERRUPTIBLE until
the earliest expiry, like every other wait of the model, so that a
controlled CPU can schedule it and jump virtual time to it. A trace of the
model therefore shows timer callbacks under ``ksoftirqd/0`` where the kernel
would often show ``<idle>-0``. A callback must not sleep (softirq context).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .cpu import SpinLock
from .sched import Task, TaskState, sleep_on, wake_up_process

if TYPE_CHECKING:
    from .jiffies import Clock
    from .kernel import Kernel


@dataclass(eq=False)
class TimerList:
    """A ``struct timer_list``: ``function`` runs once, in softirq context,
    at the first tick on or after ``expires`` (jiffies)."""

    function: Callable[[], None]
    expires: int = 0
    name: str = "timer"


@dataclass(eq=False)
class TimerBase:
    """The CPU's timer wheel (one CPU, so one base) and the thread that runs
    it, once the first timer started it (``task``)."""

    task: Task | None = None
    # timer_base.lock: the softirq thread takes expired timers off the list
    # while a CPU adds one (unlocked, a timer added during the sweep is
    # lost); and it decides who starts ksoftirqd/0 (two first add_timers
    # must start one thread, and a timer added while it starts must not
    # miss its wake-up).
    lock: SpinLock = field(default_factory=lambda: SpinLock("timer_base.lock"))
    pending: list[TimerList] = field(default_factory=list)
    starting: bool = False
    fired: int = 0

    def armed(self) -> int:
        """Timers added and not yet run (a lock-free read of a list length)."""
        return len(self.pending)


def jiffies_now(clock: "Clock") -> int:
    """The current jiffy, as the tick counts it: a virtual time a rounding
    error short of a jiffy boundary is that jiffy (the lab's; ``Clock.jiffies``
    truncates)."""
    return int(clock.now() * clock.hz + 1e-6)


def add_timer(kernel: "Kernel", timer: TimerList) -> None:
    """File ``timer`` (``add_timer``) and wake the softirq thread, which
    recomputes its sleep: a new timer may expire before the earliest one.
    The first timer starts the thread (see the module docstring): 4.6's
    ``init_timers`` and ``spawn_ksoftirqd``, at first use."""
    base = kernel.timers
    with base.lock:
        base.pending.append(timer)
        start = base.task is None and not base.starting
        base.starting = True
        task = base.task
    if start:
        kernel.kthread_run("ksoftirqd/0", run_timer_softirq)
    elif task is not None:
        wake_up_process(task)
    # else: the thread is being started and will find the timer when it
    # takes the lock to publish itself (run_timer_softirq).
    kernel.poke()


def _expired(base: TimerBase, now: int) -> list[TimerList]:
    """Take the timers due at jiffy ``now`` off the base, earliest first
    (the lab's sweep; the kernel's wheel cascades buckets)."""
    with base.lock:
        due = [t for t in base.pending if t.expires <= now]
        base.pending = [t for t in base.pending if t.expires > now]
    return sorted(due, key=lambda t: t.expires)


def run_timer_softirq(task: Task) -> None:
    """The softirq's loop: sleep until the earliest expiry (or an
    ``add_timer`` wakes it), then run every expired timer in expiry order.
    Never returns (the plug unwinds it)."""
    kernel = task.kernel
    base: TimerBase = kernel.timers
    clock = kernel.clock
    with base.lock:
        base.task = task  # from here on add_timer wakes us (see add_timer)
    while True:
        for timer in _expired(base, jiffies_now(clock)):
            base.fired += 1
            timer.function()
        with base.lock:
            earliest = min((t.expires for t in base.pending), default=None)
            count = len(base.pending)
        deadline = None if earliest is None else clock.deadline_after(max(0, earliest - clock.now() * clock.hz))
        # Until a timer is added (the count changes) or the earliest expires.
        sleep_on(TaskState.TASK_INTERRUPTIBLE, "run_timer_softirq",
                 lambda: len(base.pending) != count, deadline)
