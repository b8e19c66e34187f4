"""One episode: boot a kernel with a policy, drive a scenario, wait for the
verdict, shut everything down, check the invariants."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kthreads import Kernel, Policy
from kthreads import Clock

from .explain import explain
from .outcomes import Grade, Outcome
from .scenarios import Scenario
from .sequencer import Sequencer, StepTimeout
from .lockup_report import record_verdict
from .verdict import classify, episode_over, lockup_shape

#: Events worth showing next to dmesg (ftrace-style) when printing an episode.
TRACEPOINTS = ("mark_victim", "wake_reaper", "reap_dropped", "skip_task_reaping",
               "start_task_reaping", "finish_task_reaping", "reap_raced_exit", "reap_failed",
               "oom_reap_forbidden", "hung_task")


@dataclass(frozen=True)
class EpisodeConfig:
    policy: Policy = Policy.PATCH1
    speed: float = 50.0  # model seconds per real second
    hz: int = 100
    hung_task_timeout: float = 2.0  # model seconds (the kernel default is 120)
    lockup_window: float = 3.0  # model seconds without progress -> lockup
    max_real_seconds: float = 20.0  # a harness deadline, never reached in a sane run
    step_timeout: float = 5.0  # real seconds for each scripted step
    seed: int = 0
    ring_size: int = 65536  # flight-recorder events kept

    def __post_init__(self) -> None:
        if not isinstance(self.policy, Policy):
            object.__setattr__(self, "policy", Policy.parse(str(self.policy)))
        Clock(self.hz, self.speed)  # validates HZ and the speed floor
        if self.hung_task_timeout <= 0:
            raise ValueError("hung_task_timeout must be positive for lockup verdicts")
        if self.lockup_window < self.hung_task_timeout:
            raise ValueError("lockup_window must be at least hung_task_timeout")
        if self.max_real_seconds <= 0 or self.step_timeout <= 0:
            raise ValueError("deadlines must be positive")


@dataclass
class EpisodeResult:
    scenario: str
    policy: str
    seed: int
    outcome: Outcome
    grade: Grade
    model_seconds: float
    wall_seconds: float
    kill_at: float | None = None  # model time of the first OOM kill
    freed_at: float | None = None  # model time the victim's pages were first freed
    recovered_at: float | None = None  # model time of the first allocation success after the kill
    error: str | None = None  # a broken step, a leaked thread: the harness's own failures
    breaches: list[str] = field(default_factory=list)
    dmesg: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    roles: dict[str, int] = field(default_factory=dict)
    explanation: str = ""
    counters: dict[str, Any] = field(default_factory=dict)

    @property
    def expected(self) -> bool:
        return self.grade.ok and not self.breaches and self.error is None

    @property
    def recovery_seconds(self) -> float | None:
        if self.kill_at is None or self.recovered_at is None:
            return None
        return self.recovered_at - self.kill_at

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(outcome=self.outcome.value, grade=self.grade.value, expected=self.expected,
                 recovery_seconds=self.recovery_seconds)
        return d


def boot_for(scenario: Scenario, cfg: EpisodeConfig) -> Kernel:
    return Kernel(nr_pages=scenario.nr_pages, policy=cfg.policy, speed=cfg.speed, hz=cfg.hz,
                  hung_task_timeout=cfg.hung_task_timeout, ring_size=cfg.ring_size)


def run_episode(scenario: Scenario, cfg: EpisodeConfig, log_path: str | None = None) -> EpisodeResult:
    """One episode; with ``log_path``, its flight recorder is written there (JSONL)."""
    t0 = time.monotonic()
    k = boot_for(scenario, cfg)
    roles: dict = {}
    error = None
    explanation = ""
    outcome = Outcome.UNDETERMINED
    try:
        seq = Sequencer(k, cfg.step_timeout)
        roles = scenario.drive(k, seq, random.Random(cfg.seed))
        users = [t for t in k.tasks() if not t.is_kthread]
        since = k.clock.now()
        k.wait_until(lambda: episode_over(k, users, cfg.lockup_window, since), cfg.max_real_seconds)
        outcome = classify(k, users, cfg.lockup_window, since)
        kill = next((e for e in k.tracer.events() if e[2] == "oom_kill"), None)
        explanation = explain(k, outcome, kill[1] if kill else None)
        shape = lockup_shape(k) if outcome in (Outcome.LOCKUP, Outcome.REAP_FAILED_LOCKUP) else None
        record_verdict(k, outcome, shape, explanation)
    except StepTimeout as e:
        explanation = ""
        error = str(e)
    finally:
        model_seconds = k.clock.now()
        report = k.shutdown()
    if not report.clean:
        error = (error + "; " if error else "") + report.format()
    breaches = k.check_quiescent() if report.clean else k.check_invariants()
    res = EpisodeResult(
        scenario=scenario.name, policy=cfg.policy.value, seed=cfg.seed, outcome=outcome,
        grade=scenario.grade(cfg.policy, outcome), model_seconds=model_seconds,
        wall_seconds=time.monotonic() - t0, error=error, breaches=breaches,
        dmesg=[str(line) for line in k.dmesg()],
        roles={name: t.pid for name, t in roles.items()}, explanation=explanation)
    fill_timings(k, res, roles)
    res.trace = format_trace(k)
    res.counters = counters(k)
    if log_path:
        from .flight import dump_jsonl

        dump_jsonl(k, log_path, {"scenario": scenario.name, "seed": cfg.seed,
                                 "outcome": res.outcome.value, "grade": res.grade.value})
    return res


def fill_timings(k: Kernel, res: EpisodeResult, roles: dict) -> None:
    victim = roles.get("victim")
    events = k.tracer.events()
    kill = next((e for e in events if e[2] == "oom_kill"), None)
    if kill is None:
        return
    res.kill_at = kill[1]
    mm_id = kill[5].get("mm")
    for e in events:
        if e[1] < res.kill_at:
            continue
        name = e[2]
        if res.freed_at is None and name in ("finish_task_reaping", "exit_mmap") and \
                e[5].get("mm") == mm_id:
            res.freed_at = e[1]
        if res.recovered_at is None and name == "alloc_success" and \
                (victim is None or e[3] != victim.pid):
            res.recovered_at = e[1]


def format_trace(k: Kernel) -> list[str]:
    """Selected tracepoints, in ftrace's text format."""
    out = []
    for seq, t, name, pid, comm, fields in k.tracer.events():
        if name not in TRACEPOINTS:
            continue
        args = " ".join(f"{key}={val}" for key, val in fields.items())
        out.append(f"{comm or '<idle>'}-{pid:<5} [000] .... {t:12.6f}: {name}: pid={pid} {args}".rstrip())
    return out


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
