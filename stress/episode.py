"""The one episode lifecycle: boot, drive, wait for the verdict, classify,
explain, record, shut down, check the invariants.

``demo``, ``run``, soak workers, replays and the pytest plugin all go through
``run_episode`` (or, for a kernel a test drives by hand, ``finish_kernel``), so
there is one rule for everything an episode can end in. In particular a
thread that does not stop when the plug is pulled is an invariant breach
("every thread the model started is joined"), graded FORBIDDEN wherever it
happens, with its stack in the shutdown report.

What an episode runs is a ``Driver``: a scripted scenario (``stress.scenarios``)
or a generated soak workload (``WorkloadDriver``).
"""

from __future__ import annotations

import enum
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Protocol

from kthreads import Ev, Kernel, Policy, SchedConfig, ShutdownReport, Task

from .config import RUN_TIMING, Timing
from .explain import explain
from .files import replaced_atomically
from .ftrace import TraceInput, ftrace_lines
from .grading import label, soak_grade
from .lockup_report import record_verdict
from .outcomes import Grade, Outcome, Shape
from .postmortem import dump_jsonl
from .sequencer import Sequencer, StepTimeout
from .verdict import classify, episode_over, lockup_shape
from .workload import Workload, WorkloadParams, build, generate

Roles = dict[str, Task]

class Driver(Protocol):
    """What an episode runs on a freshly booted kernel."""

    @property
    def name(self) -> str: ...

    @property
    def nr_pages(self) -> int: ...

    def drive(self, k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
        """Create the tasks and order the setup; return the tasks by role."""

    def grade(self, policy: Policy, outcome: Outcome, shape: Shape | None) -> Grade: ...


@dataclass(frozen=True)
class WorkloadDriver:
    """A soak workload: ``seed`` fully determines it (``stress.workload``)."""

    workload: Workload

    @classmethod
    def from_seed(cls, seed: int, params: WorkloadParams = WorkloadParams()) -> "WorkloadDriver":
        return cls(generate(seed, params))

    @property
    def name(self) -> str:
        return f"soak seed {self.workload.seed}"

    @property
    def nr_pages(self) -> int:
        return self.workload.zone_pages

    def drive(self, k: Kernel, seq: Sequencer, rng: random.Random) -> Roles:
        return {t.comm: t for t in build(k, self.workload)}

    def grade(self, policy: Policy, outcome: Outcome, shape: Shape | None) -> Grade:
        return soak_grade(policy, label(outcome, shape), False)


@dataclass(frozen=True)
class EpisodeConfig:
    """Which kernel an episode boots and how its time runs. ``seed`` varies a
    scenario's sizes; for a soak workload it is the workload's seed."""

    policy: Policy = Policy.PATCH1
    seed: int = 0
    timing: Timing = RUN_TIMING
    trace: bool = True  # the flight recorder; off only to measure its cost
    shutdown_timeout: float | None = None  # real seconds to join every thread (None: the kernel's default)
    sched: SchedConfig = SchedConfig()  # free, or a controlled strategy and its seed

    def __post_init__(self) -> None:
        if not isinstance(self.policy, Policy):
            object.__setattr__(self, "policy", Policy.parse(str(self.policy)))


class Keep(enum.Enum):
    """Which episodes keep their dmesg and trace lines in the result."""

    ALL = "all"
    INTERESTING = "interesting"  # lockups and forbidden outcomes
    NONE = "none"


class Interrupted(BaseException):
    """The episode was stopped from outside (Ctrl-C, SIGTERM); every thread was joined."""


@dataclass
class EpisodeResult:
    name: str  # the scenario, or "soak seed N"
    policy: str
    seed: int
    outcome: Outcome
    shape: Shape | None
    grade: Grade
    model_seconds: float
    wall_seconds: float
    kill_at: float | None = None  # model time of the first OOM kill
    freed_at: float | None = None  # model time the victim's pages were first freed
    recovered_at: float | None = None  # the first allocation success after the kill (not for a lockup)
    error: str | None = None  # a broken step, no verdict in time: the harness's own failures
    breaches: list[str] = field(default_factory=list)
    dmesg: list[str] = field(default_factory=list)  # the kernel's lines only
    console: list[str] = field(default_factory=list)  # dmesg and the lab's "# lab" lines, interleaved
    trace: list[str] = field(default_factory=list)  # the ftrace view (stress.ftrace), without its header
    roles: dict[str, int] = field(default_factory=dict)
    explanation: str = ""
    counters: dict[str, Any] = field(default_factory=dict)
    shutdown: str = ""  # the shutdown report (with the stacks of threads that did not stop)
    lockup_window: float = 0.0  # model seconds, as the verdict used it
    notes: list[str] = field(default_factory=list)  # what went wrong around the episode (a log not written)
    # How it was scheduled, and what replays it: the strategy ("free",
    # "random", "pct", "replay", "follow"), its seed (random, pct), PCT's
    # guarantee 1/(n K^(d-1)) (None past K steps), the CPU's figures, the hash of every
    # flight-recorder event, and the recorded schedule (Schedule.to_json()).
    sched: str = "free"
    sched_seed: int | None = None
    pct_bound: float | None = None
    sched_stats: dict[str, Any] = field(default_factory=dict)
    event_digest: str = ""
    schedule: dict[str, Any] | None = None
    timing: dict[str, Any] = field(default_factory=dict)  # the Timing it ran with (for a replay)
    # The kernel itself, for callers that want to look further; never pickled
    # or written out (the soak drops it before a result leaves its worker).
    kernel: Kernel | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return label(self.outcome, self.shape)

    @property
    def expected(self) -> bool:
        return self.grade.ok and not self.breaches and self.error is None

    @property
    def interesting(self) -> bool:
        return self.grade is Grade.FORBIDDEN or self.outcome.is_lockup

    @property
    def recovery_seconds(self) -> float | None:
        if self.kill_at is None or self.recovered_at is None:
            return None
        return self.recovered_at - self.kill_at

    def detached(self) -> "EpisodeResult":
        """The result without its kernel: what crosses a process boundary."""
        self.kernel = None
        return self

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "kernel"}
        d["scenario"] = d.pop("name")
        d.update(outcome=self.outcome.value, shape=self.shape.value if self.shape else None,
                 label=self.label, grade=self.grade.value, expected=self.expected,
                 recovery_seconds=self.recovery_seconds)
        return d


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    shape: Shape | None
    explanation: str
    counters: dict[str, Any]  # as they stood at the verdict, the numbers the explanation quotes


def run_episode(driver: Driver, cfg: EpisodeConfig = EpisodeConfig(), log_path: str | Path | None = None,
                *, keep: Keep = Keep.ALL, stop: Callable[[], bool] | None = None,
                log_meta: dict[str, Any] | None = None) -> EpisodeResult:
    """One episode from boot to the invariant checks; every thread is joined
    before it returns, whatever happened. ``stop()`` is polled while waiting
    for the verdict: when it turns true the episode is unwound and
    ``Interrupted`` raised. With ``log_path`` the flight recorder is written
    there (JSONL; ``OSError`` if that fails, after the episode is complete)."""
    t0 = time.monotonic()
    timing = cfg.timing
    extra = {} if cfg.shutdown_timeout is None else {"shutdown_timeout": cfg.shutdown_timeout}
    k = Kernel(nr_pages=driver.nr_pages, policy=cfg.policy, speed=timing.speed, hz=timing.hz,
               hung_task_timeout=timing.hung_task_timeout, ring_size=timing.ring_size,
               trace=cfg.trace, sched=cfg.sched, **extra)
    roles: Roles = {}
    verdict: Verdict | None = None
    error: str | None = None
    interrupted = False
    try:
        roles = driver.drive(k, Sequencer(k, timing.step_deadline), random.Random(cfg.seed))
        verdict, error = await_verdict(k, timing, stop)
    except StepTimeout as e:
        error = str(e)
    except Interrupted:
        interrupted = True
    finally:
        model_seconds = k.clock.now()
        # What the episode showed, up to its verdict: taken before the plug is
        # pulled, so nothing the unwinding does can land in it.
        dmesg = [str(line) for line in k.dmesg()]
        console = k.tracer.console()
        if verdict is None:  # no verdict (a broken step): the counters as they stand
            verdict = Verdict(Outcome.UNDETERMINED, None, "", counters(k))
        report, breaches = finish_kernel(k)
    if interrupted:
        raise Interrupted()
    grade = Grade.FORBIDDEN if breaches else driver.grade(cfg.policy, verdict.outcome, verdict.shape)
    res = EpisodeResult(
        name=driver.name, policy=cfg.policy.value, seed=cfg.seed, outcome=verdict.outcome,
        shape=verdict.shape, grade=grade, model_seconds=model_seconds,
        wall_seconds=time.monotonic() - t0, error=error, breaches=breaches,
        roles={name: t.pid for name, t in roles.items()}, explanation=verdict.explanation,
        counters=verdict.counters, shutdown=report.format(), lockup_window=timing.window,
        timing=asdict(timing), kernel=k)
    fill_sched(k, res)
    fill_timings(k, res, roles.get("victim"))
    if keep is Keep.ALL or (keep is Keep.INTERESTING and res.interesting):
        res.dmesg, res.console = dmesg, console
        res.trace = ftrace_lines(TraceInput.from_kernel(k))
    if log_path is not None:
        write_log(res, log_path, log_meta or {})
    return res


def await_verdict(k: Kernel, timing: Timing,
                  stop: Callable[[], bool] | None = None) -> tuple[Verdict, str | None]:
    """Wait (up to ``timing.deadline`` real seconds) until the episode is over,
    then classify, explain and record the verdict in the flight recorder."""
    users = [t for t in k.tasks() if not t.is_kthread]
    since = k.clock.now()  # the end of the setup: its steps were progress the kernel does not count
    window = timing.window
    stopped = stop if stop is not None else (lambda: False)
    seen: list[Outcome] = []

    def over() -> bool:
        # Classified once, here: the model keeps running, and a second look a
        # moment later could see a looper between two naps and call it undetermined.
        if stopped():
            return True
        if episode_over(k, users, window, since):
            seen[:] = [classify(k, users, window, since)]
            return seen[0] is not Outcome.UNDETERMINED
        return False

    # idle_ok: a lockup is declared only once its window has passed, so
    # time must go on when every task is stuck.
    k.wait_until(over, timing.deadline, idle_ok=True)
    if stopped():
        raise Interrupted()
    verdict = conclude(k, users, window, since, seen[0] if seen else Outcome.UNDETERMINED)
    error = None
    if verdict.outcome is Outcome.UNDETERMINED:
        stall = k.cpu.stall if k.cpu is not None else None
        if stall:
            error = f"the controlled CPU stalled: {stall}"
        elif k.controlled:
            error = (f"no verdict within {timing.deadline:.1f} s of virtual time (model time "
                     f"{k.clock.now():.2f} s): the run never settled")
        else:
            error = (f"no verdict within {timing.deadline:.1f} s of real time (model time "
                     f"{k.clock.now():.2f} s): the machine is too slow for --speed {timing.speed:g}, "
                     f"or the harness is broken")
    return verdict, error


def conclude(k: Kernel, users: list[Task], window: float, since: float = 0.0,
             outcome: Outcome | None = None) -> Verdict:
    """Classify the kernel's state as it stands (unless ``outcome`` was already
    decided), explain it, and record the verdict (and for a lockup the lockup
    report) in the flight recorder."""
    if outcome is None:
        outcome = classify(k, users, window, since)
    counts = counters(k)  # once: the model runs on, and every report quotes these
    shape = lockup_shape(k) if outcome.is_lockup else None
    kill = next((e for e in k.tracer.events() if e.name == Ev.OOM_KILL), None)
    explanation = explain(k, outcome, kill.t if kill else None, counts["oom_aborts"])
    record_verdict(k, outcome, shape, explanation, counts["oom_aborts"])
    return Verdict(outcome, shape, explanation, counts)


def finish_kernel(k: Kernel) -> tuple[ShutdownReport, list[str]]:
    """Pull the plug, join every thread, check every invariant: the one rule for
    the end of any kernel's life. A thread that did not stop is a breach."""
    report = k.shutdown()
    return report, k.check_quiescent()


def write_log(res: EpisodeResult, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the episode's flight recorder to ``path`` (JSONL), atomically
    (``stress.files``); ``OSError`` on failure."""
    if res.kernel is None:
        raise ValueError("the episode's kernel is gone (detached): no log to write")
    path = Path(path)
    source = {} if isinstance(res.name, str) and res.name.startswith("soak seed") else {"scenario": res.name}
    header = {**source, "seed": res.seed, "outcome": res.outcome.value, "label": res.label,
              "grade": res.grade.value, "lockup_window": res.lockup_window, "sched": res.sched,
              "sched_seed": res.sched_seed, "pct_bound": res.pct_bound, "sched_stats": res.sched_stats,
              "event_digest": res.event_digest, "schedule": res.schedule, "timing": res.timing, **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as staged:
        dump_jsonl(res.kernel, staged, header)
    return path


def fill_sched(k: Kernel, res: EpisodeResult) -> None:
    """The schedule and digest, once the recording has ended (at shutdown)."""
    summary = k.sched_summary()
    res.sched = summary.pop("sched")
    res.sched_seed = summary.pop("sched_seed", None)
    res.pct_bound = summary.get("pct_bound")
    res.sched_stats = summary
    res.event_digest = k.tracer.digest
    schedule = k.schedule()
    res.schedule = schedule.to_json() if schedule is not None else None


def fill_timings(k: Kernel, res: EpisodeResult, victim: Task | None) -> None:
    events = k.tracer.events()
    kill = next((e for e in events if e.name == Ev.OOM_KILL), None)
    if kill is None:
        return
    res.kill_at = kill.t
    mm_id = kill.fields.get("mm")
    for e in events:
        if e.name in (Ev.VERDICT, Ev.SHUTDOWN):
            break
        if e.t < kill.t:
            continue
        if res.freed_at is None and e.name in (Ev.FINISH_TASK_REAPING, Ev.EXIT_MMAP) and \
                e.fields.get("mm") == mm_id:
            res.freed_at = e.t
        # An allocation that went through and did not get the run out of trouble is no recovery.
        if res.recovered_at is None and e.name == Ev.ALLOC_SUCCESS and not res.outcome.is_lockup and \
                res.outcome is not Outcome.UNDETERMINED and (victim is None or e.pid != victim.pid):
            res.recovered_at = e.t


def counters(k: Kernel) -> dict[str, Any]:
    s = k.stats
    d: dict[str, Any] = dict(oom_invocations=s.oom_invocations, oom_kills=s.oom_kills,
                             oom_aborts=s.oom_aborts, alloc_stalls=s.alloc_stalls,
                             hung_tasks=len(k.hung_tasks), events_lost=k.tracer.lost())
    rs = k.reaper_status()
    if rs.running:
        d.update(reaper_attempts=rs.attempts, reaper_skipped=rs.skipped, reaped=rs.reaped,
                 reap_failed=rs.failed, reap_dropped=rs.dropped, reap_raced_exit=rs.raced_exit,
                 pages_reaped=rs.pages_reaped)
    return d
