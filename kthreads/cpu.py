"""The CPU the model's threads run on: per-thread ``current``, the parker
every sleep ends in, spinlocks, and the controlled scheduler.

Lab machinery, not a model of kernel code: nothing here follows a kernel
version. ``SpinLock`` and ``preempt_disable``/``preempt_enable`` borrow the
kernel's names for the two rules the model needs (no sleeping and no switch
while one is held); they do not model 4.6's spinlock or preempt_count.

Free mode (no ``Cpu``): every task thread runs whenever the OS and the GIL
let it, and model time is real time scaled.

Controlled mode (a ``Cpu``): every task is still its own ``threading.Thread``,
but exactly one of them (or the harness thread that booted the kernel, the
*controller*) holds the CPU and runs model code. The holder gives it up only
at a scheduling point:

* ``point()``: a lock, rwsem, mutex or completion operation, an atomic, a
  cmpxchg, a page allocation or free (the strategy may switch there);
* ``event_point()``: a flight-recorder event (the same, and where a replay
  of a free run holds each task back until its recorded turn);
* ``block()``: the task sleeps (its parker parks);
* ``exit()``: the task's thread ends.

Handing over is one binary semaphore (the *baton*) released for the next
runner while the previous one waits on its own. Only the holder touches the
scheduler's state, so the fast path of a point takes no lock.

Model time is virtual: ``vnow`` moves only when no runner is ready, and then
jumps to the earliest timer. When no runner is ready and no timer but the
controller's own is pending, the run is deadlocked, and the controller's
wait fails at once with ``Deadlock``.

The controller is not part of the system under test: when it is ready (its
wait's predicate became true) it runs at the next point, whatever the
strategy (a replay follows its recording instead).
"""

from __future__ import annotations

import enum
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from .errors import Deadlock, LockBug

if TYPE_CHECKING:
    from .strategy import Strategy

#: Per-thread ``current`` (the model's per-CPU ``current_task``): which task,
#: if any, the calling OS thread is (``task``), who it is as a lock holder
#: (``holder``), the parker it sleeps on (``parker``), and in controlled mode
#: the ``Cpu`` it runs on (``cpu``) and its ``Runner`` there (``runner``).
#: It is the thread's own state, never shared: a task thread sets it when it
#: starts; a harness thread's ``cpu`` and ``runner`` are set when it boots a
#: controlled kernel and restored when that kernel's CPU is dissolved (or
#: its boot fails). A plain thread-local attribute is read in ~70 ns, where
#: threading.current_thread() costs ~150 ns, on every lock operation.
this_thread = threading.local()

#: Real seconds the controller waits for the CPU to come back while no
#: scheduling point passes: longer means a task loops without one (a model
#: bug), and the CPU is dissolved so that the harness can pull the plug.
STALL_SECONDS = 5.0


class Parker:
    """A binary wake-up permit (LockSupport.park/unpark), on a bare Lock.

    ``unpark()`` leaves a permit; ``park()`` consumes one or blocks until one
    arrives. A wake that lands between a sleeper's last condition check and
    its ``park()`` is therefore never lost, and it costs one Lock operation
    where an Event costs a Condition and a fresh lock on every wait.
    """

    __slots__ = ("_permit",)

    def __init__(self) -> None:
        self._permit = threading.Lock()
        self._permit.acquire()  # no permit yet

    def unpark(self) -> None:
        try:
            self._permit.release()
        except RuntimeError:
            pass  # a permit is already waiting: wakes do not accumulate

    def park(self, deadline: float | None = None) -> bool:
        """Wait for a permit until ``deadline`` (``time.monotonic()``); False on timeout."""
        if deadline is None:
            return self._permit.acquire()
        return self._permit.acquire(True, max(0.0, deadline - time.monotonic()))


def this_init() -> None:
    """First use of the model from a thread that is not a task."""
    this_thread.task = None
    this_thread.holder = threading.current_thread()
    this_thread.parker = Parker()
    this_thread.cpu = None
    this_thread.runner = None


def this_cpu() -> "Cpu | None":
    """The controlled CPU the calling thread runs on (None in free mode)."""
    try:
        cpu = this_thread.cpu
    except AttributeError:
        return None
    return cpu if cpu is not None and not cpu.dissolved else None


def monotonic() -> float:
    """The calling thread's clock for real-second deadlines: the virtual one
    on a controlled CPU, ``time.monotonic()`` otherwise."""
    cpu = this_cpu()
    return cpu.vnow if cpu is not None else time.monotonic()


def sched_point() -> None:
    """A scheduling point: on a controlled CPU the strategy may switch here."""
    try:
        cpu = this_thread.cpu
    except AttributeError:
        return
    if cpu is not None:
        cpu.point()


def preempt_disable() -> None:
    try:
        r = this_thread.runner
    except AttributeError:
        return
    if r is not None:
        r.preempt_count += 1


def preempt_enable() -> None:
    try:
        r = this_thread.runner
    except AttributeError:
        return
    if r is not None:
        r.preempt_count -= 1


class SpinLock:
    """``spinlock_t``: held for a few operations, never across a sleep.

    A real lock underneath. On a controlled CPU holding one disables
    preemption, as in the kernel: no scheduling point switches runners while
    it is held (another runner would spin on it for ever), and sleeping with
    one held is a bug (``LockBug``, "scheduling while atomic").
    """

    __slots__ = ("_lock", "name")

    def __init__(self, name: str = "spinlock") -> None:
        self._lock = threading.Lock()
        self.name = name

    def acquire(self) -> bool:
        self._lock.acquire()
        preempt_disable()
        return True

    def release(self) -> None:
        preempt_enable()
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> "SpinLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _hand(nxt: Runner) -> None:
    """Give ``nxt`` the CPU: release its baton (outside ``_lock``, so that
    the woken thread does not wait for it). A stall's dissolve() may have
    released it a moment before: the permit is there, nothing is lost."""
    try:
        nxt.baton.release()
    except RuntimeError:
        pass


class RunState(enum.Enum):
    NEW = "new"  # created, not started
    READY = "ready"  # may run, waiting for the CPU
    RUNNING = "running"  # holds the CPU
    BLOCKED = "blocked"  # asleep until a wake or its timer
    HELD = "held"  # runnable, but its turn never comes (a followed free run that ended)
    DONE = "done"  # its thread has ended


class Runner:
    """One thread on the controlled CPU: a task, or the controller (pid 0)."""

    __slots__ = ("pid", "name", "order", "baton", "parker", "state", "permit", "deadline",
                 "timed_out", "prio", "preempt_count", "watch", "idle_ok", "deadlocked", "gated",
                 "decisions", "task")

    def __init__(self, cpu: "Cpu", pid: int, name: str, order: int, task: Any = None) -> None:
        self.pid = pid
        self.name = name
        self.order = order  # creation order: the tie-break wherever one is needed
        # Released by whoever hands this runner the CPU; acquired by the
        # runner to wait for it. A permit, so a hand-over never gets lost.
        self.baton = threading.Lock()
        self.baton.acquire()
        self.parker = ControlledParker(cpu, self)
        self.state = RunState.NEW
        self.permit = False  # a wake that came while it was not blocked
        self.deadline: float | None = None  # its timer (virtual monotonic)
        self.timed_out = False
        self.prio = 0.0  # PCT's priority
        self.preempt_count = 0
        self.watch: Callable[[], bool] | None = None  # the controller's wait predicate
        self.idle_ok = False  # the controller's wait may let time pass with nothing runnable
        self.deadlocked = False
        self.gated = False  # held back at an event until its recorded turn
        self.decisions = 0  # model decisions in flight (kernel.Decision), never held inside one
        self.task = task

    def __repr__(self) -> str:
        return f"<Runner {self.name} {self.state.value}>"


class ControlledParker(Parker):
    """A runner's parker: parking blocks it on the CPU, unparking makes it
    ready. Once the CPU is dissolved (the plug is pulled) it is a plain
    Parker again, so unwinding threads run free."""

    __slots__ = ("cpu", "runner")

    def __init__(self, cpu: "Cpu", runner: Runner) -> None:
        super().__init__()
        self.cpu = cpu
        self.runner = runner

    def unpark(self) -> None:
        cpu = self.cpu
        if not cpu.dissolved:
            cpu.wake(self.runner)
        super().unpark()  # the permit a dissolved CPU's park() finds

    def park(self, deadline: float | None = None) -> bool:
        cpu = self.cpu
        if not cpu.dissolved:
            return cpu.block(self.runner, deadline)
        # Dissolved: unwinding. Virtual deadlines mean nothing any more;
        # poll, so a sleeper with a deadline still returns.
        return self._permit.acquire(True, -1 if deadline is None else 0.01)


class Cpu:
    """The controlled CPU of one kernel (see the module docstring)."""

    #: Virtual real-time seconds between two looks of a waiting controller at
    #: its predicate (a poke may not come; a time-based predicate needs time).
    RECHECK = 0.01

    def __init__(self, strategy: "Strategy") -> None:
        self.strategy = strategy
        # Guards hand-overs against dissolve() and a stalled controller taking
        # the CPU back; the fast path of a point never takes it.
        self._lock = threading.Lock()
        self.vnow = 0.0  # virtual time, in real-time seconds since boot
        self.runners: dict[int, Runner] = {}
        self.steps = 0  # scheduling points passed
        self.events = 0  # of which flight-recorder events
        self.switches: list[list[int]] = []  # [step, pid] each time another runner got the CPU
        self.dissolved = False
        self.quiet = 0  # > 0 while a predicate of the controller runs on a task's thread
        self.holding = True  # False once the plug is being pulled: nobody is held any more
        self.deadlock: str | None = None
        self.stall: str | None = None
        # Set by the kernel: the blocked tasks and what each waits on.
        self.describe_blocked: Callable[[], str] = lambda: ""
        # Set by the kernel, to trace the scheduler: on_switch(prev, next)
        # as the CPU changes hands, where None is the idle task: (runner,
        # None) as time is about to pass with nobody runnable, answering
        # whether the CPU really went idle (a task napping in TASK_RUNNING
        # keeps it); on_wake(waker or None for a timer, woken) as a sleeper
        # becomes runnable. Called under the CPU's lock.
        self.on_switch: Callable[[Runner | None, Runner | None], bool] | None = None
        self.on_wake: Callable[[Runner | None, Runner], None] | None = None
        self.idle = False  # the trace's view: the idle task has the CPU while time passes
        self._last_look: tuple[float, int] | None = None  # see poke()
        if not hasattr(this_thread, "holder"):
            this_init()
        self._owner = threading.current_thread()
        self._saved = (this_thread.cpu, this_thread.runner, this_thread.parker)
        c = Runner(self, 0, "harness", 0)
        c.state = RunState.RUNNING
        c.prio = float("inf")
        self.controller = c
        self.current = c
        self.runners[0] = c
        this_thread.cpu, this_thread.runner, this_thread.parker = self, c, c.parker

    def monotonic(self) -> float:
        """Virtual time: the controlled kernel's clock reads it."""
        return self.vnow

    # -- runners ------------------------------------------------------------
    def new_runner(self, pid: int, name: str, task: Any) -> Runner:
        r = Runner(self, pid, name, len(self.runners), task)
        self.runners[pid] = r
        self.strategy.on_new(self, r)
        return r

    def start(self, r: Runner) -> None:
        """The runner's thread is being started: it may run from now on."""
        if r.state is RunState.NEW:
            r.state = RunState.READY
            self.strategy.on_ready(self, r)

    def enter(self, r: Runner) -> None:
        """On the runner's own thread, first thing: wait for the CPU."""
        this_thread.cpu, this_thread.runner = self, r
        if not self.dissolved:
            r.baton.acquire()

    def exit(self, r: Runner) -> None:
        """On the runner's own thread, last thing: give the CPU away for good."""
        with self._lock:
            if self.dissolved:
                return
            self.steps += 1  # every decision has a step of its own, for replay
            r.state = RunState.DONE
            nxt = self._next_locked()
            if nxt is not None:
                self._run_locked(nxt)
        if nxt is not None:
            _hand(nxt)

    def ready(self) -> list[Runner]:
        return [r for r in self.runners.values() if r.state is RunState.READY]

    @property
    def nr_tasks(self) -> int:
        """Runners that are tasks (PCT's n)."""
        return len(self.runners) - 1

    # -- scheduling points --------------------------------------------------
    def point(self) -> None:
        if self.quiet or self.dissolved:
            return
        me = self.current
        self.steps += 1
        if me.preempt_count:
            return
        nxt = self.strategy.at_point(self, me)
        if nxt is not None and nxt is not me:
            self._switch(me, nxt)

    def event_point(self) -> None:
        if self.quiet or self.dissolved:
            return
        me = self.current
        self.steps += 1
        self.events += 1
        self.strategy.at_event(self, me)

    def yield_to(self, me: Runner, nxt: Runner) -> None:
        """``me`` stays ready and hands the CPU to ``nxt`` (a strategy's switch)."""
        self._switch(me, nxt)

    def _switch(self, me: Runner, nxt: Runner) -> None:
        with self._lock:
            if self.dissolved:
                return
            me.state = RunState.READY
            self._run_locked(nxt)
        _hand(nxt)
        self._await_turn(me)

    def _run_locked(self, nxt: Runner) -> None:
        nxt.state = RunState.RUNNING
        if self.idle:
            self.idle = False
            if self.on_switch is not None:
                self.on_switch(None, nxt)
        elif nxt is not self.current and self.on_switch is not None:
            self.on_switch(self.current, nxt)
        if nxt is not self.current:
            self.current = nxt
            self.switches.append([self.steps, nxt.pid])
            self.strategy.on_run(self, nxt)

    def _await_turn(self, me: Runner) -> None:
        if me is not self.controller:
            me.baton.acquire()
            return
        # However long the tasks run, they pass scheduling points; a stretch
        # of STALL_SECONDS without one is a loop that never gives the CPU up.
        steps = self.steps
        try:
            while not me.baton.acquire(True, STALL_SECONDS):
                if self.steps == steps:
                    self._stalled()
                    return
                steps = self.steps
        except BaseException:
            # Ctrl-C in the harness while a task holds the CPU: the harness
            # will run on (and pull the plug) beside it, so stop controlling.
            self.dissolve()
            raise

    def _stalled(self) -> None:
        """No scheduling point for STALL_SECONDS with a task on the CPU: a
        loop without one. Dissolve, so that the harness can pull the plug;
        the caller's wait fails, and ``stall`` says why."""
        with self._lock:
            holder = self.current
        self.stall = (f"{holder.name} held the CPU for {STALL_SECONDS:g} s of real time without a "
                      f"scheduling point (a loop that never sleeps, locks or records?)")
        self.dissolve()

    # -- sleeping and waking ------------------------------------------------
    def block(self, me: Runner, deadline: float | None) -> bool:
        """``me`` sleeps until woken (True) or ``deadline`` passes (False)."""
        if me.permit:
            me.permit = False
            return True
        if me.preempt_count:
            raise LockBug(f"scheduling while atomic: {me.name} sleeps holding a spinlock")
        with self._lock:
            if self.dissolved:
                return True
            self.steps += 1  # every decision has a step of its own, for replay
            me.state = RunState.BLOCKED
            me.deadline = deadline
            me.timed_out = False
            nxt = self._next_locked()
            if nxt is me:
                me.state = RunState.RUNNING
                self.current = me
                if self.idle:
                    self.idle = False
                    if self.on_switch is not None:
                        self.on_switch(None, me)
            elif nxt is not None:
                self._run_locked(nxt)
        if nxt is not me:
            if nxt is not None:
                _hand(nxt)
            self._await_turn(me)
        if self.dissolved:
            return True
        if me.deadlocked:
            me.deadlocked = False
            raise Deadlock(self.deadlock or "deadlock")
        if me.timed_out:
            me.timed_out = False
            return False
        return True

    def hold(self, me: Runner) -> None:
        """``me`` could run but must not: it waits until the plug is pulled
        (the free run being followed never ran it again before its end)."""
        if me.preempt_count:
            raise LockBug(f"{me.name} held back holding a spinlock: nobody else could take it")
        with self._lock:
            if self.dissolved or not self.holding:
                return
            self.steps += 1
            me.state = RunState.HELD
            nxt = self._next_locked()
            if nxt is not None:
                self._run_locked(nxt)
        if nxt is not None:
            _hand(nxt)
        self._await_turn(me)

    def release_held(self) -> None:
        """The plug is being pulled: the held runners may run again, and
        unwind with the others."""
        self.holding = False
        for r in self.runners.values():
            if r.state is RunState.HELD:
                r.state = RunState.READY
                self.strategy.on_ready(self, r)

    def wake(self, r: Runner) -> None:
        st = r.state
        if st is RunState.BLOCKED:
            if self.on_wake is not None and not self.dissolved:
                self.on_wake(self.current, r)
            r.state = RunState.READY
            r.deadline = None
            r.timed_out = False
            self.strategy.on_ready(self, r)
        elif st is not RunState.DONE and st is not RunState.HELD:
            r.timed_out = False
            r.permit = True

    def poke(self, exits: int = 0) -> None:
        """Model state changed: wake the controller if what it waits for holds.

        A wait that lets time pass (``idle_ok``: a verdict over a window) is
        looked at again only once time has moved or a task has exited since
        its last look (``exits`` counts them): what it waits for (every task
        gone, a lockup window passed) changes with nothing else, and looking
        at every sleep and wake cost more than the rest of the scheduling."""
        c = self.controller
        pred = c.watch
        if pred is None or c.state is not RunState.BLOCKED or self.quiet or self.dissolved:
            return
        if c.idle_ok:
            key = (self.vnow, exits)
            if key == self._last_look:
                return
            self._last_look = key
        self.quiet += 1
        try:
            ok = pred()
        except Exception:
            ok = True  # let the controller evaluate it on its own thread, and fail there
        finally:
            self.quiet -= 1
        if ok:
            self.wake(c)

    def wait_for(self, pred: Callable[[], bool], timeout: float, idle_ok: bool = False) -> bool:
        """The caller waits (``timeout`` virtual real-time seconds) until
        ``pred()``, letting the others run. False if it does not hold by then,
        or at once when nothing left can run (``deadlock`` says why), unless
        ``idle_ok``: then time passes on to the deadline."""
        me = self.current
        deadline = self.vnow + timeout
        self.deadlock = None  # what this wait finds, not what an earlier one found
        while not pred():
            if self.dissolved or self.vnow >= deadline:
                return bool(pred())
            if me is self.controller:
                me.watch, me.idle_ok = pred, idle_ok
            try:
                self.block(me, min(deadline, self.vnow + self.RECHECK))
            except Deadlock:
                return bool(pred())
            finally:
                me.watch, me.idle_ok = None, False
        return True

    # -- choosing who runs ----------------------------------------------------
    def _next_locked(self) -> Runner | None:
        """Who runs now that the current runner blocked or exited. Fires
        timers (moving virtual time) when nobody is ready; None if nobody
        can ever run again (and nobody waits to be told)."""
        ready = self.ready()
        if not ready:
            ready = self._fire_timers_locked()
            if not ready:
                return None
        if len(ready) == 1:
            return ready[0]
        return self.strategy.pick(self, ready)

    def _fire_timers_locked(self) -> list[Runner]:
        c = self.controller
        timed = [r for r in self.runners.values()
                 if r.state is RunState.BLOCKED and r.deadline is not None]
        if c.state is RunState.BLOCKED and not c.idle_ok and all(r is c for r in timed):
            # Nothing but the harness's own timer can move: whatever it waits
            # for will never happen. Say so now, not at its deadline.
            self.deadlock = self.describe_blocked()
            c.deadlocked = True
            c.state = RunState.READY
            c.deadline = None
            return [c]
        if not timed:
            self.deadlock = self.describe_blocked()
            return []
        if self.on_switch is not None and not self.idle:
            self.idle = self.on_switch(self.current, None)
        self.advance_locked(min(r.deadline for r in timed))  # type: ignore[type-var]
        return self.ready()

    def advance_locked(self, t: float) -> None:
        """Move virtual time to ``t`` (never back) and fire every timer due."""
        if t > self.vnow:
            self.vnow = t
        for r in self.runners.values():
            if r.state is RunState.BLOCKED and r.deadline is not None and r.deadline <= self.vnow:
                if self.on_wake is not None:
                    self.on_wake(None, r)
                r.state = RunState.READY
                r.deadline = None
                r.timed_out = True
                self.strategy.on_ready(self, r)

    def advance_to(self, t: float) -> None:
        with self._lock:
            self.advance_locked(t)

    # -- the end --------------------------------------------------------------
    def dissolve(self) -> None:
        """Stop controlling: every thread runs free from now on (the plug is
        pulled, or the controller gave up). Idempotent."""
        with self._lock:
            if self.dissolved:
                return
            self.dissolved = True
            runners = list(self.runners.values())
        for r in runners:
            try:
                r.baton.release()
            except RuntimeError:
                pass  # it already had the baton
        if threading.current_thread() is self._owner:
            this_thread.cpu, this_thread.runner, this_thread.parker = self._saved

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": self.steps, "events": self.events, "switches": len(self.switches),
                               "tasks": self.nr_tasks, "virtual_seconds": self.vnow}
        if self.stall:
            out["stall"] = self.stall
        return out
