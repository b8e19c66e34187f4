"""``Kernel``: everything one run owns, and its boot and shutdown.

Nothing in the model lives in module globals: the task list, the zone,
``oom_lock``, the counters, the kernel threads and the event ring all hang
off one ``Kernel`` object, so runs never leak into each other.

The ``Kernel`` object, its config, stats, decisions and shutdown are lab
machinery. The kernel objects it holds keep their Linux 4.6 meaning
(``oom_lock``, ``tasklist_lock``, ``oom_victims``, ``oom_rs``), and the
kernel-named helpers say where they stand for kernel code.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from .atomic import Atomic
from .cpu import Cpu, Runner, RunState, SpinLock, this_thread, this_cpu
from .designs import (Patch1Ops, QueueOps, ReportOps, TifMemdieOps, V47Ops, V48Ops, V49Ops, V414Ops, V515Ops,
                      V518Ops)
from .errors import PlugPulled
from .events import Ev
from .exit import task_main
from .hung_task import HungTaskState, start_khungtaskd
from .jiffies import Clock
from .mm import MM, VmaSpec, mmget, mmput
from .mutex import Mutex
from .oom_reaper import ReaperState
from .policy import Policy, PolicyOps, V45Ops
from .ratelimit import default_ratelimit_state
from .rwsem import RwSemaphore
from .schedule import EventOrder, SchedConfig, Schedule
from .sched import (OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN, PF, TASK_DEAD, TASK_STATE_MAX, SignalStruct, Task, TaskState,
                    current,
                    task_state_letter)
from .snapshot import KernelSnapshot, ReaperStatus, take_snapshot
from .stacktrace import thread_stacks
from .strategy import Strategy, make_strategy
from .timer import TimerBase
from .trace import SCHED_SWITCH, SCHED_WAKEUP, DmesgLine, LogLevel, Tracer
from .zone import Zone

#: Which ops class boots each design.
POLICY_OPS: dict[Policy, type[PolicyOps]] = {
    Policy.V4_5: V45Ops,
    Policy.NONE: PolicyOps,
    Policy.PATCH1: Patch1Ops,
    Policy.TIFMEMDIE: TifMemdieOps,
    Policy.REPORT: ReportOps,
    Policy.QUEUE: QueueOps,
    Policy.V4_7: V47Ops,
    Policy.V4_8: V48Ops,
    Policy.V4_9: V49Ops,
    Policy.V4_14: V414Ops,
    Policy.V5_15: V515Ops,
    Policy.V5_18: V518Ops,
}

def _actor_pid() -> int:
    """Who is recording an event: the calling task's pid, 0 for the harness."""
    try:
        task = this_thread.task
    except AttributeError:
        return 0
    return task.pid if task is not None else 0


#: Real seconds pulling the plug waits for the decisions in flight (each
#: takes microseconds; longer is a model bug, reported as a breach).
DECISION_DEADLINE = 5.0


@dataclass(frozen=True)
class KernelConfig:
    """A run's parameters. Times are model seconds unless they say ``real``."""

    hz: int = 100
    speed: float = 50.0  # model seconds per real second
    nr_pages: int = 1024
    wmark_min: int | None = None  # default: nr_pages/32, low = min*5/4, high = min*3/2
    wmark_low: int | None = None
    wmark_high: int | None = None
    policy: Policy = Policy.NONE
    # /proc/sys/kernel/hung_task_timeout_secs; 0 disables. As in Linux 4.6,
    # khungtaskd also checks once per this long: the separate
    # hung_task_check_interval_secs (~4.19, not re-verified) does not exist here.
    hung_task_timeout: float = 120.0
    alloc_stall_secs: float = 10.0  # "page allocation stalls" every this long
    ring_size: int = 65536  # flight-recorder events kept (older ones are overwritten)
    trace: bool = True  # the flight recorder; off only to measure its cost
    # Real seconds shutdown() waits for every thread to be joined. None: scale
    # with the run, max(5 s, 5 ms per thread).
    shutdown_timeout: float | None = None
    # How tasks are scheduled: free (real threads as the OS runs them), or a
    # controlled strategy with its seed (kthreads.cpu, kthreads.strategy).
    sched: SchedConfig = SchedConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.policy, Policy):
            object.__setattr__(self, "policy", Policy.parse(str(self.policy)))
        if self.hung_task_timeout < 0 or not float(self.hung_task_timeout).is_integer():
            raise ValueError("hung_task_timeout must be whole seconds >= 0, like "
                             "/proc/sys/kernel/hung_task_timeout_secs")
        if self.alloc_stall_secs <= 0:
            raise ValueError("alloc_stall_secs must be positive")
        if self.shutdown_timeout is not None and self.shutdown_timeout <= 0:
            raise ValueError("shutdown_timeout must be positive")


@dataclass
class KernelStats:
    """Counters, frozen once the plug is pulled (what follows is unwinding).

    Each counter is bumped under a lock, so no update is lost, and only while
    the plug is in (inside a model decision, ``Kernel.decision()``): the oom_*
    ones under oom_lock, the alloc_* ones under ``lock``, ``task_exits``
    under tasklist_lock, which pulling the plug also takes. ``last_progress`` is not a counter but a time, stored
    without a lock on every successful allocation and exit: two racing
    stores leave one of two times a few microseconds apart, and its readers
    compare it with windows of model seconds.
    """

    oom_invocations: int = 0
    oom_kills: int = 0
    oom_aborts: int = 0
    alloc_failed: int = 0
    alloc_stalls: int = 0
    task_exits: int = 0
    oom_victims_marked: int = 0  # TIF_MEMDIE given, by a kill or to a self-victim
    mrelease_reaps: int = 0  # mms process_mrelease reaped whole (5.15), under ``lock``
    mrelease_pages: int = 0  # pages it freed, under ``lock``
    last_progress: float = 0.0  # model time of the last allocation, exit or reap that freed pages
    # Guards the alloc_* counters: decisions run concurrently, and "+= 1" on
    # an attribute is a read, an add and a write another thread can split.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass(frozen=True)
class StuckThread:
    name: str
    stack: str


@dataclass(frozen=True)
class ShutdownReport:
    joined: int
    stuck: tuple[StuckThread, ...]
    real_seconds: float

    @property
    def clean(self) -> bool:
        return not self.stuck

    def format(self) -> str:
        if self.clean:
            return f"shutdown: joined {self.joined} threads in {self.real_seconds * 1000:.1f} ms"
        out = [f"shutdown: {len(self.stuck)} threads did not stop:"]
        for s in self.stuck:
            out.append(f"--- {s.name}\n{s.stack}")
        return "\n".join(out)


class ShutdownError(RuntimeError):
    def __init__(self, report: ShutdownReport) -> None:
        super().__init__(report.format())
        self.report = report


Body = Callable[[Task], Any]


class Decision:
    """``with kernel.decision():`` runs its body entirely before the plug is
    pulled, or not at all (``PlugPulled``).

    Every choice the model makes (an OOM kill or abort, queueing a reap, a
    reap, a khungtaskd report, an allocation stall warning or failure) runs
    inside one, and so does every dmesg line and counter it produces.
    Decisions run concurrently, as in the kernel (the reaper reaps while an
    allocator is in the OOM killer); pulling the plug closes the gate to new
    ones and waits for those in flight, so nothing is decided, printed or
    counted after the ``shutdown`` event:

        allocator (oom_lock held)          harness
        enter: gate open, in flight 1      shutdown(): close the gate,
          select victim, kill, print       wait until none in flight
        leave: in flight 0                 record "shutdown", plug_pulled = True
        out_of_memory again:
        enter: gate closed, PlugPulled

    A decision may call another (oom_kill_process -> wake_oom_reaper), and a
    panic pulls the plug from inside one: the pull does not wait for the
    decisions of its own thread.
    """

    def __init__(self) -> None:
        # Guards the gate and the count; decisions only pass it, never hold it.
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._closed = False
        self._mine = threading.local()  # this thread's decisions in flight (they nest)

    def __enter__(self) -> None:
        with self._cond:
            if self._closed:
                raise PlugPulled()
            self._in_flight += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        r = getattr(this_thread, "runner", None)
        if r is not None:
            r.decisions += 1

    def __exit__(self, *exc: object) -> None:
        self._mine.depth -= 1
        r = getattr(this_thread, "runner", None)
        if r is not None:
            r.decisions -= 1
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def close(self, deadline: float, cpu: Cpu | None = None) -> bool:
        """No decision starts after this; wait (until ``deadline``, monotonic)
        for the ones in flight, but this thread's own. False on timeout: a
        model bug kept a decision going for seconds.

        On a controlled CPU the decisions in flight belong to tasks that are
        not running: the caller lets them run until they are done."""
        mine = getattr(self._mine, "depth", 0)
        with self._cond:
            self._closed = True
        if cpu is not None:
            return cpu.wait_for(lambda: self._in_flight <= mine, DECISION_DEADLINE)
        with self._cond:
            while self._in_flight > mine:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True


class Kernel:
    """One booted model kernel. Use as a context manager, or call shutdown()."""

    def __init__(self, config: KernelConfig | None = None, **overrides: Any) -> None:
        config = replace(config or KernelConfig(), **overrides)
        self.config = config
        # Controlled mode: the booting thread becomes the CPU's controller,
        # and model time is the CPU's virtual time.
        self.cpu: Cpu | None = None
        self.strategy: Strategy | None = None
        self.event_order: EventOrder | None = None
        if config.sched.controlled:
            if this_cpu() is not None:
                raise ValueError("this thread already drives a controlled kernel: shut it down first")
            self.strategy = make_strategy(config.sched, config.speed)
            self.cpu = Cpu(self.strategy)
        try:
            self._boot(config)
        except BaseException:
            # The booting thread became the CPU's controller: give it back.
            if self.cpu is not None:
                self.cpu.dissolve()
            raise

    def _boot(self, config: KernelConfig) -> None:
        if self.cpu is not None:
            self.cpu.describe_blocked = self.blocked_report
            self.clock = Clock(config.hz, config.speed, timebase=self.cpu.monotonic)
        else:
            self.clock = Clock(config.hz, config.speed)
        self.tracer = Tracer(self.clock.now, config.ring_size, enabled=config.trace, current=_actor_pid)
        if self.cpu is not None:
            self.tracer.on_event = self.cpu.event_point
            if config.trace:
                self.cpu.on_switch = self._note_switch
                self.cpu.on_wake = self._note_wake
        elif config.trace:
            self.event_order = EventOrder(_actor_pid, self.clock.now)
            self.tracer.on_event = self.event_order.note
        self.zone = Zone(config.nr_pages, config.wmark_min, config.wmark_low, config.wmark_high)
        self.stats = KernelStats()
        self.policy: Policy = config.policy
        self.policy_ops: PolicyOps = POLICY_OPS[config.policy]()
        # tasklist_lock: the task list and exit_notify's zombie bookkeeping.
        self.tasklist_lock = SpinLock("tasklist_lock")
        self._tasks: dict[int, Task] = {}
        # Kernel threads take the low pids they get at boot; user processes
        # start at 100 so that their pids read the same under every policy.
        self._kthread_pids = itertools.count(2)
        self._pids = itertools.count(100)
        self._mm_ids = itertools.count(1)
        self._locks: list[weakref.ref] = []
        self._mms: list[MM] = []
        self._threads: list[threading.Thread] = []
        self.oom_lock = Mutex("oom_lock", self)
        self.oom_victims = Atomic(0, "oom_victims")
        # oom_kill_process's oom_rs (a function-static in the kernel): how
        # many OOM headers dump_header may print, per kernel.
        self.oom_rs = default_ratelimit_state(config.hz)
        # 4.9's warn_alloc nopage_rs (a static in mm/page_alloc.c), read only
        # by designs that print the stall warning.
        self.nopage_rs = default_ratelimit_state(config.hz)
        self.plug_pulled = False
        # The decision gate: no decision straddles the pull of the plug (see Decision).
        self._decision = Decision()
        self.panic_reason: str | None = None
        self.breaches: list[str] = []
        self.oopses: list[str] = []
        self._shutdown_report: ShutdownReport | None = None
        # Observers (wait_until) sleep on this; poke() notifies them. Kept
        # cheap: poke() is a no-op unless somebody is watching.
        self._changed = threading.Condition(threading.Lock())
        self._observers = 0
        # The oom_reaper's state and thread, set by a reaper policy's boot;
        # the harness reads it through reaper_status().
        self.reaper: ReaperState | None = None
        # The timer base; its softirq thread (ksoftirqd/0) is started by the
        # first add_timer (kthreads/timer.py says why not at boot).
        self.timers = TimerBase()
        # khungtaskd's state and thread (None: hung_task_timeout is 0).
        self.khungtaskd: HungTaskState | None = None
        self.policy_ops.boot(self)
        if config.hung_task_timeout > 0:
            self.khungtaskd = start_khungtaskd(self)
            self.start(self.khungtaskd.task)

    # -- context manager ----------------------------------------------------
    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        report = self.shutdown()
        if not report.clean and exc_type is None:
            raise ShutdownError(report)

    # -- creating tasks -----------------------------------------------------
    def _new_task(self, comm: str, body: Body, signal: SignalStruct, leader: Task | None,
                  mm: MM | None, flags: PF, start: bool) -> Task:
        # Under tasklist_lock: shutdown() pulls the plug and takes its list of
        # threads under it too, so a task is either refused, or seen by
        # shutdown already started (never started twice, never missed).
        with self.tasklist_lock:
            if self.plug_pulled:
                raise RuntimeError("the kernel is shut down")
            pid = next(self._kthread_pids if flags & PF.PF_KTHREAD else self._pids)
            task = Task(self, pid, comm, body, signal, leader, mm, flags, entry=task_main)
            self._tasks[task.pid] = task
            self._threads.append(task.thread)
            if mm is not None and mm.owner is None:
                mm.owner = task
        # Recorded outside tasklist_lock: an event is a scheduling point, and
        # a spinlock is never held across one. Then started as start() does,
        # so a shutdown in between runs the task down itself.
        self.tracer.record(Ev.TASK_NEWTASK, task.pid, task.comm, tgid=task.tgid,
                           mm=mm.id if mm else None, kthread=bool(flags & PF.PF_KTHREAD),
                           oom_score_adj=signal.oom_score_adj)
        if start:
            self.start(task)
        return task

    def fork(self, comm: str, body: Body, *, vmas: Sequence[VmaSpec] = (),
             oom_score_adj: int = 0, share_mm_with: Task | None = None,
             start: bool = True) -> Task:
        """A new process with its own mm (pre-faulted ``vmas``), or one that
        shares ``share_mm_with``'s mm (CLONE_VM without CLONE_THREAD). The
        lab's set-up step: no fork/exec semantics are modelled."""
        if not OOM_SCORE_ADJ_MIN <= oom_score_adj <= OOM_SCORE_ADJ_MAX:
            raise ValueError(f"oom_score_adj must be in [{OOM_SCORE_ADJ_MIN}, "
                             f"{OOM_SCORE_ADJ_MAX}], got {oom_score_adj}")
        if share_mm_with is not None:
            if vmas:
                raise ValueError("a process sharing an mm cannot bring VMAs of its own")
            mm = share_mm_with.mm
            if mm is None:
                raise ValueError(f"{share_mm_with.comm} has no mm to share")
            mmget(mm)
        else:
            if self.plug_pulled:
                raise RuntimeError("the kernel is shut down")
            mm = MM(self)
        try:
            if share_mm_with is None:
                for spec in vmas:
                    mm.populate(spec)
            return self._new_task(comm, body, SignalStruct(oom_score_adj), None, mm, PF(0), start)
        except BaseException:
            mmput(mm)  # give back what was mapped or referenced
            raise

    def set_oom_score_adj(self, task: Task, adj: int) -> None:
        """A write to /proc/<pid>/oom_score_adj (``__set_oom_adj``, without
        the CAP_SYS_RESOURCE rules: the model has no credentials). From 4.8
        on (``policy_ops.shared_oom_score_adj``, 44a70ade, not re-verified)
        the value is written to every other process sharing ``task``'s mm
        too, but init and kernel threads, each with a line. ``fork``'s
        ``oom_score_adj`` is the value a process is created with (inherited
        at clone, or a vfork child's, which 4.8 leaves out of the sharing),
        not a write: it is never propagated."""
        if not OOM_SCORE_ADJ_MIN <= adj <= OOM_SCORE_ADJ_MAX:
            raise ValueError(f"oom_score_adj must be in [{OOM_SCORE_ADJ_MIN}, "
                             f"{OOM_SCORE_ADJ_MAX}], got {adj}")
        task.signal.oom_score_adj = adj
        mm = task.mm
        if mm is None or not self.policy_ops.shared_oom_score_adj or mm.mm_users.read() <= 1:
            return
        for p in self.processes():
            if p.signal is task.signal or p.is_kthread or p.tgid == 1:
                continue
            if not any(t.mm is mm for t in p.thread_group()):
                continue
            self.printk(f"updating oom_score_adj for {p.pid} ({p.comm}) from {p.signal.oom_score_adj} to "
                        f"{adj} because it shares mm with {task.pid} ({task.comm}). Report if this is "
                        f"unexpected.", LogLevel.KERN_INFO)
            p.signal.oom_score_adj = adj

    def clone_thread(self, parent: Task, comm: str, body: Body, start: bool = True) -> Task:
        """A new thread in ``parent``'s thread group (shares mm, signal, mmap_sem)."""
        mm = parent.mm
        if mm is None:
            raise ValueError(f"{parent.comm} has no mm")
        mmget(mm)
        try:
            return self._new_task(comm, body, parent.signal, parent.group_leader, mm, PF(0), start)
        except BaseException:
            mmput(mm)
            raise

    def kthread_run(self, comm: str, body: Body, start: bool = True) -> Task:
        """A kernel thread (kthread_create, then wake_up_process unless
        ``start`` is False), as 4.6's kthread_run; the lab's pids start at 2."""
        return self._new_task(comm, body, SignalStruct(0), None, None, PF.PF_KTHREAD, start)

    def start(self, task: Task) -> None:
        """Start a task forked with ``start=False`` (no-op once shut down:
        shutdown() runs such tasks down itself)."""
        with self.tasklist_lock:
            if not self.plug_pulled and task.thread.ident is None:
                task.thread.start()

    # -- lookups ------------------------------------------------------------
    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def find_task_by_pid(self, pid: int) -> Task | None:
        return self._tasks.get(pid)

    def comms(self) -> dict[int, str]:
        """Every pid this kernel ever gave, with its comm (pids are never reused)."""
        return {t.pid: t.comm for t in self.tasks()}

    def processes(self) -> list[Task]:
        """Thread-group leaders (4.6's for_each_process)."""
        return [t for t in self.tasks() if t.group_leader is t]

    def register_lock(self, lock: object) -> int:
        """Track a lock for snapshots and dumps; returns its id in the event log."""
        self._locks.append(weakref.ref(lock))
        return len(self._locks)

    def locks(self) -> list[Any]:
        return [lk for lk in (r() for r in list(self._locks)) if lk is not None]

    def register_mm(self, mm: MM) -> int:
        self._mms.append(mm)
        return next(self._mm_ids)

    def mms(self) -> list[MM]:
        return list(self._mms)

    @property
    def jiffies(self) -> int:
        return self.clock.jiffies()

    @property
    def hung_tasks(self) -> Mapping[int, float]:
        """pid -> model time khungtaskd reported it hung (read-only; empty
        without khungtaskd)."""
        return self.khungtaskd.view if self.khungtaskd is not None else MappingProxyType({})

    def decision(self) -> Decision:
        """``with kernel.decision():`` decide only while the plug is in (see Decision)."""
        return self._decision

    # -- logging ------------------------------------------------------------
    def printk(self, text: str, level: LogLevel = LogLevel.KERN_INFO,
               task: Task | None = None) -> DmesgLine | None:
        """A dmesg line; None, and nothing printed, once the plug is pulled
        (the model prints only inside decisions, which never straddle the pull)."""
        if self.plug_pulled:
            return None
        return self.tracer.printk(text, level, task.pid if task else 0, task.comm if task else "")

    def dmesg(self) -> list[DmesgLine]:
        return self.tracer.dmesg()

    def lab(self, text: str, task: Task | None = None, **fields: Any) -> None:
        """An annotation of the lab's (``Tracer.lab``), never a kernel line."""
        self.tracer.lab(text, task.pid if task is not None else 0, task.comm if task is not None else "",
                        **fields)

    # -- the scheduler as ftrace sees it (controlled CPU only) -----------------
    def _note_switch(self, prev: Runner | None, nxt: Runner | None) -> bool:
        """sched_switch, prev's state as the kernel's bits; None is the idle
        task, and the harness (pid 0) stands for it too. A runner switched
        out while runnable, or napping in TASK_RUNNING (direct reclaim's
        scan), was preempted (R+); one that finished is TASK_DEAD. Returns
        whether the CPU went idle: a napping task keeps it while time passes."""
        prev_pid = prev.pid if prev is not None else 0
        next_pid = nxt.pid if nxt is not None else 0
        task = prev.task if prev is not None else None
        if nxt is None and task is not None and prev.state is RunState.BLOCKED and \
                task.state == TaskState.TASK_RUNNING:
            return False
        if prev_pid == next_pid:
            return True  # the harness and the idle task are one pid 0
        if prev is None or task is None:
            state = 0
        elif prev.state is RunState.DONE:
            state = TASK_DEAD
        elif prev.state is RunState.BLOCKED and task.state != TaskState.TASK_RUNNING:
            state = int(task.state)
        else:
            state = TASK_STATE_MAX  # preempted: "R+"
        self.tracer.note_sched(SCHED_SWITCH, prev_pid, state, next_pid)
        return True

    def _note_wake(self, waker: Runner | None, woken: Runner) -> None:
        """sched_wakeup (4.6's tracepoint), from the waker's context (a timer's:
        pid 0). A task napping in TASK_RUNNING was never asleep, and
        try_to_wake_up traces nothing for it."""
        task = woken.task
        if task is None or task.state == TaskState.TASK_RUNNING:
            return
        if waker is None and self.cpu is not None and not self.cpu.idle:
            # A timer firing while a task naps in TASK_RUNNING (it kept the
            # CPU): the interrupt comes in that task's context.
            waker = self.cpu.current
        self.tracer.note_sched(SCHED_WAKEUP, waker.pid if waker is not None else 0, woken.pid)

    def dmesg_text(self) -> str:
        return "\n".join(str(line) for line in self.dmesg())

    # -- progress, observers, failure reports --------------------------------
    def note_progress(self) -> None:
        """An allocation succeeded, a task exited, or a reap (the reaper's or
        process_mrelease's) freed memory: not counted once the plug is
        pulled (that is unwinding, not progress)."""
        if not self.plug_pulled:
            self.stats.last_progress = self.clock.now()
        self.poke()

    def poke(self) -> None:
        """Tell wait_until() observers that model state changed."""
        if self.cpu is not None:
            self.cpu.poke(self.stats.task_exits + self.plug_pulled)
        elif self._observers:
            with self._changed:
                self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float, *,
                   idle_ok: bool = False) -> bool:
        """Wait up to ``timeout`` real seconds for ``predicate()`` over model state.

        Re-evaluated whenever the model pokes (a task sleeps or wakes, an
        OOM event, an exit), and at least every 10 ms in case a change did
        not poke. Returns the predicate's last value.

        On a controlled CPU the wait drives the scheduler: the tasks run
        until the predicate holds, and ``timeout`` is virtual time. When
        nothing runnable is left and no timer can change that, it returns
        False at once and ``stuck_report()`` says who is blocked on what,
        unless ``idle_ok`` (a predicate over time itself, like a lockup
        window): then time passes on.
        """
        cpu = self.cpu
        if cpu is not None and this_cpu() is cpu:
            return cpu.wait_for(predicate, timeout, idle_ok)
        deadline = time.monotonic() + timeout
        with self._changed:
            self._observers += 1
            try:
                while not predicate():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return bool(predicate())
                    self._changed.wait(min(remaining, 0.01))
                return True
            finally:
                self._observers -= 1

    # -- the controlled CPU ----------------------------------------------------
    @property
    def controlled(self) -> bool:
        return self.cpu is not None

    def schedule(self) -> Schedule | None:
        """What decided this run's interleaving, to replay it: a controlled
        run's switches, or a free run's event order (None with the flight
        recorder off in free mode)."""
        if self.cpu is not None:
            return Schedule.from_switches(self.cpu.switches)
        return self.event_order.schedule() if self.event_order is not None else None

    def sched_summary(self) -> dict[str, Any]:
        """The strategy and its figures (steps, switches, PCT's bound, a
        replay's divergence); ``{"sched": "free"}`` in free mode."""
        cfg = self.config.sched
        out: dict[str, Any] = {"sched": cfg.strategy.value}
        if self.cpu is not None and self.strategy is not None:
            if cfg.strategy.value in ("random", "pct"):
                out["sched_seed"] = cfg.seed
            out.update(self.cpu.stats())
            out.update(self.strategy.summary(self.cpu))
        return out

    def blocked_report(self) -> str:
        """The blocked tasks and what each waits on (controlled mode)."""
        cpu = self.cpu
        if cpu is None:
            return ""
        out = []
        for r in cpu.runners.values():
            t = r.task
            if r.state is RunState.HELD and t is not None:
                out.append(f"{t.comm}/{t.pid} held (the followed run never ran it again)")
                continue
            if r.state is not RunState.BLOCKED or t is None:
                continue
            wchan = t.wchan
            what = getattr(wchan, "name", wchan)
            owners = wchan.owner_pids() if hasattr(wchan, "owner_pids") else []
            held = f" held by {', '.join(str(p) for p in owners)}" if owners else ""
            out.append(f"{t.comm}/{t.pid} ({task_state_letter(t.state)}) on {what}{held}")
        return "blocked: " + ("; ".join(out) if out else "nothing")

    def stuck_report(self) -> str | None:
        """Why the last controlled wait could not go on (None: it could)."""
        if self.cpu is None:
            return None
        return self.cpu.stall or self.cpu.deadlock

    def report_bug(self, task: Task | None, e: BaseException) -> None:
        who = f"{task.comm}/{task.pid}" if task else "harness"
        self.breaches.append(f"{type(e).__name__} in {who}: {e}")
        self.tracer.record(Ev.BUG, task.pid if task else 0, task.comm if task else "",
                           kind=type(e).__name__, text=str(e))

    def report_oops(self, task: Task, e: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        self.oopses.append(f"{task.comm}/{task.pid}: {type(e).__name__}: {e}\n{tb}")
        self.tracer.record(Ev.OOPS, task.pid, task.comm, kind=type(e).__name__, text=str(e))

    def note_mm_freed(self, mm: MM) -> None:
        """An mm struct was freed: it must own no page any more (O(1))."""
        owned = self.zone.pages_owned_by(mm)
        if owned:
            self.breaches.append(f"mm#{mm.id} freed with {owned} pages still mapped")

    def panic(self, message: str) -> None:
        """The machine stops: record why and unwind every thread."""
        if self.panic_reason is None:
            self.panic_reason = message
        self.tracer.record(Ev.PANIC, 0, "", text=message)
        self.pull_plug()

    # -- invariants -----------------------------------------------------------
    def check_invariants(self) -> list[str]:
        """Breaches of the invariants that must hold at any moment."""
        problems = list(self.breaches)
        problems += self.zone.check_conservation()
        for mm in self.mms():
            users, count = mm.mm_users.read(), mm.mm_count.read()
            if users < 0 or count < 0:
                problems.append(f"mm#{mm.id} refcount below zero (users={users} count={count})")
            if mm.freed and (users or count):
                problems.append(f"mm#{mm.id} freed with users={users} count={count}")
        for lk in self.locks():
            if isinstance(lk, RwSemaphore) and lk.owner is not None and lk.readers():
                problems.append(f"rwsem {lk.name} has a writer and readers")
        return problems

    def check_quiescent(self) -> list[str]:
        """After shutdown: every thread joined, every mm freed, every page free,
        and no task body died of an exception of its own (an oops)."""
        problems = self.check_invariants()
        problems += [f"oops: {o.splitlines()[0]}" for o in self.oopses]
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            problems.append(f"threads not joined: {', '.join(alive)}")
        live_mms = [m for m in self.mms() if not m.freed]
        if live_mms and not alive:
            problems.append(f"mms never freed: {', '.join(f'mm#{m.id}' for m in live_mms)}")
        if not alive and self.zone.nr_free != self.zone.nr_pages:
            problems.append(f"pages leaked: {self.zone.nr_pages - self.zone.nr_free} still owned "
                            f"after every task exited")
        return problems

    # -- snapshots ------------------------------------------------------------
    def snapshot(self) -> KernelSnapshot:
        return take_snapshot(self)

    def reaper_status(self) -> ReaperStatus:
        """The oom_reaper's counters and slot, read-only (all zero without a reaper)."""
        return self.reaper.status() if self.reaper is not None else ReaperStatus()

    # -- shutdown ---------------------------------------------------------------
    def _pull(self, deadline: float, shutting_down: bool) -> list[threading.Thread]:
        """Set plug_pulled between two decisions; returns every thread. On
        shutdown, also record the event and start the unstarted tasks."""
        # Waits for the decisions in flight (microseconds); the deadline only
        # guards against a model bug that keeps one going.
        cpu = self.cpu if self.cpu is not None and this_cpu() is self.cpu else None
        if cpu is not None:
            cpu.release_held()
        if not self._decision.close(deadline, cpu):
            self.breaches.append(
                f"a decision was still running {DECISION_DEADLINE:g} s after the plug was pulled"
                if cpu is None else
                f"a decision could not finish once the plug was pulled ({self.stuck_report() or 'stuck'})")
        if shutting_down:
            # Marks the end of the run in the flight recorder, and ends the
            # recording: what follows is the harness unwinding threads, not the
            # kernel, and it must not push the run's last events out of the ring.
            self.tracer.record(Ev.SHUTDOWN, 0, "")
            self.tracer.enabled = False
        # Under tasklist_lock, as _new_task checks the plug: a task is either
        # refused, or in this list (never missed).
        with self.tasklist_lock:
            self.plug_pulled = True
            threads = list(self._threads)
            if shutting_down and self.cpu is not None:
                # From here on every thread runs free: unwinding is not part
                # of the run, and it must not wait for a scheduler.
                self.cpu.dissolve()
            if shutting_down:
                for th in threads:
                    if th.ident is None:  # created with start=False: run it down
                        th.start()
        for t in self.tasks():
            t.parker.unpark()
        self.poke()
        return threads

    def pull_plug(self) -> None:
        """Make every wait and retry loop in the model unwind, once any
        decision in progress is done; no new decision is taken after it."""
        self._pull(time.monotonic() + DECISION_DEADLINE, shutting_down=False)

    def shutdown_deadline(self) -> float:
        """Real seconds shutdown() allows by default: ``config.shutdown_timeout``,
        or max(5 s, 5 ms per thread)."""
        if self.config.shutdown_timeout is not None:
            return self.config.shutdown_timeout
        return max(5.0, 0.005 * len(self._threads))

    def shutdown(self, timeout: float | None = None) -> ShutdownReport:
        """Pull the plug, join every thread within ``timeout`` real seconds
        (default ``shutdown_deadline()``: ``config.shutdown_timeout``, or when
        that is None max(5 s, 5 ms per thread)), report any that did not stop."""
        if self._shutdown_report is not None:
            return self._shutdown_report
        if current() is not None and current().kernel is self:
            raise RuntimeError("shutdown() from inside a task of the same kernel")
        t0 = time.monotonic()
        deadline = t0 + (self.shutdown_deadline() if timeout is None else timeout)
        threads = self._pull(deadline, shutting_down=True)
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        alive = [th for th in threads if th.is_alive()]
        stacks = thread_stacks(alive) if alive else {}
        stuck = tuple(StuckThread(th.name, stacks[th]) for th in alive)
        if not stuck:
            self.policy_ops.shutdown(self)
        report = ShutdownReport(len(threads) - len(stuck), stuck, time.monotonic() - t0)
        self._shutdown_report = report
        return report

    def threads(self) -> list[threading.Thread]:
        return list(self._threads)
