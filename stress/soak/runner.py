"""Running a soak: the same seeds under every policy, on worker slots, until the
episodes or the seconds are done or a stop signal arrives; then the replay check.

Stopping (Ctrl-C or SIGTERM, handled alike): every worker is told to stop
(SIGUSR1), its running episode unwinds and joins its threads and reports
``Interrupted``; queued episodes are cancelled; a worker that has not answered
within ``STOP_GRACE`` is killed; every executor is shut down. The report keeps
what was done and says it was interrupted, and by which signal.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from kthreads import Kernel, Policy, SchedConfig, Schedule

from ..config import ConfigError
from ..episode import EpisodeResult, Interrupted, Keep
from ..signals import StopSignals
from .pool import Slot, WorkerStartError
from .report import PolicyStats, SoakReport
from .settings import SoakSettings
from .worker import run_one

#: Real seconds stopping workers get to report before they are killed.
STOP_GRACE = 1.0
#: Real seconds a soak episode's kernel may take to join its threads (the
#: kernel's default shutdown deadline for the few dozen threads of a workload).
SHUTDOWN_ALLOWANCE = 5.0

Progress = Callable[[SoakReport, int, float, float | None], None]


@dataclass(frozen=True)
class SoakConfig:
    policies: tuple[Policy, ...] = (Policy.NONE, Policy.PATCH1)
    episodes: int | None = None  # per policy
    seconds: float | None = None
    seed: int = 0
    jobs: int = 0  # 0: one per core
    settings: SoakSettings = SoakSettings()
    episode_timeout: float = 30.0  # real seconds before a worker is declared hung
    verify_replays: int = 3  # reruns of each replayable episode (up to max_verify episodes)
    max_verify: int = 40

    def __post_init__(self) -> None:
        if not self.policies:
            raise ConfigError("at least one --policy is needed")
        if (self.episodes is None) == (self.seconds is None):
            raise ConfigError("give exactly one of --episodes and --seconds")
        if self.episodes is not None and self.episodes < 1:
            raise ConfigError(f"--episodes must be at least 1, got {self.episodes}")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"--seconds must be positive, got {self.seconds}")
        if self.jobs < 0:
            raise ConfigError(f"--jobs must be at least 1 (or 0 for one per core), got {self.jobs}")
        # A worker is declared hung only once its episode has had its whole
        # verdict deadline and its shutdown deadline: a slow episode is then
        # undetermined (or a breach), never mistaken for a hung worker.
        timing = self.settings.timing
        least = timing.deadline + SHUTDOWN_ALLOWANCE + 1.0
        if self.episode_timeout < least:
            raise ConfigError(
                f"at --speed {timing.speed:g} an episode may take {timing.deadline:.1f} s of real time "
                f"to reach a verdict and {SHUTDOWN_ALLOWANCE:g} s to shut down: --episode-timeout must "
                f"be at least {least:.1f} s, got {self.episode_timeout:g}")

    @property
    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1

    def seeds(self) -> Iterator[tuple[int, Policy]]:
        """Every seed under every policy, in turn, so the policies see the same seeds."""
        count = self.episodes if self.episodes is not None else 1 << 62
        return ((self.seed + i, p) for i in range(count) for p in self.policies)


def empty_rate(policies: tuple[Policy, ...], settings: SoakSettings, n: int = 40) -> float:
    """Empty episodes (boot and shut down only) per second on one core, measured now."""
    t0 = time.monotonic()
    for i in range(n):
        k = Kernel(nr_pages=512, policy=policies[i % len(policies)], speed=settings.timing.speed,
                   hz=settings.timing.hz, hung_task_timeout=settings.timing.hung_task_timeout)
        k.shutdown()
    return n / (time.monotonic() - t0)


def run_soak(cfg: SoakConfig, progress: Progress | None = None,
             on_record: Callable[[EpisodeResult], None] | None = None,
             stop: StopSignals | None = None) -> SoakReport:
    """Run the soak. ``stop`` receives SIGINT and SIGTERM while it runs (in the
    main thread; a new one is made when none is given); the soak polls it at
    every wait and stops by itself, keeping what was done."""
    stop = stop or StopSignals()
    report = SoakReport(cfg, {p.value: PolicyStats() for p in cfg.policies})
    with stop.installed(), stop.polled():
        try:
            report.empty_rate = empty_rate(cfg.policies, cfg.settings)  # ~30 ms of boots
            if not stop.requested():
                run_workers(cfg, report, stop, progress, on_record)
            if not stop.requested():
                verify_replays(report, cfg, stop)
        except KeyboardInterrupt:
            pass
    if stop.requested():
        report.interrupted = True
        report.signal = stop.signum
    return report


def run_workers(cfg: SoakConfig, report: SoakReport, stop: StopSignals, progress: Progress | None,
                on_record: Callable[[EpisodeResult], None] | None) -> None:
    settings = cfg.settings
    ctx = multiprocessing.get_context("spawn")
    todo = cfg.seeds()
    plan = cfg.episodes * len(cfg.policies) if cfg.episodes is not None else 0
    slots: list[Slot] = []
    exhausted = False
    deadline: float | None = None
    t0 = time.monotonic()

    def record(res: EpisodeResult) -> None:
        report.add(res)
        if on_record:
            on_record(res)

    def refill(slot: Slot) -> None:
        nonlocal exhausted
        while len(slot.queue) < 2 and not exhausted:
            nxt = None if deadline is not None and time.monotonic() >= deadline else next(todo, None)
            if nxt is None:
                exhausted = True
                return
            slot.submit(nxt[0], nxt[1], settings)

    def replace_slot(i: int, why: str) -> None:
        """The slot's running episode crashed or hung: report it, rebuild the slot."""
        slot = slots.pop(i)
        job, rest = slot.queue[0], slot.queue[1:]
        report.harness_failures.append({"seed": job.seed, "policy": job.policy.value, "error": why})
        slot.kill()
        slot.close(wait=False)
        slots.insert(i, Slot(ctx, stop))
        for other in rest:  # innocent bystanders: run them again
            slots[i].submit(other.seed, other.policy, settings)

    try:
        for _ in range(cfg.workers):
            slots.append(Slot(ctx, stop))
            if stop.requested():
                raise KeyboardInterrupt()
        # The clock of --seconds starts once the workers are up (~0.3 s each).
        t0 = time.monotonic()
        deadline = t0 + cfg.seconds if cfg.seconds is not None else None
        for s in slots:
            refill(s)
        last_tick = 0.0
        while any(s.queue for s in slots):
            if stop.requested():
                raise KeyboardInterrupt()
            cf.wait([s.queue[0].future for s in slots if s.queue], timeout=0.1,
                    return_when=cf.FIRST_COMPLETED)
            now = time.monotonic()
            for i in range(len(slots)):
                collect(slots, i, record, report, replace_slot, stop, now)
                slot = slots[i]
                if slot.queue and now - slot.queue[0].started > cfg.episode_timeout:
                    replace_slot(i, f"worker hung: no result within {cfg.episode_timeout:g} s")
                refill(slots[i])
            report.wall_seconds = now - t0
            if progress and now - last_tick >= 0.2:
                last_tick = now
                progress(report, plan, now - t0, None if deadline is None else deadline - now)
    except KeyboardInterrupt:
        stop_workers(slots, record)
    except WorkerStartError as e:  # the soak cannot go on: keep what was done
        report.fatal = str(e)
        stop_workers(slots, record)
    finally:
        for s in slots:
            s.close(wait=True)
        report.wall_seconds = time.monotonic() - t0


def collect(slots: list[Slot], i: int, record: Callable[[EpisodeResult], None], report: SoakReport,
            replace_slot: Callable[[int, str], None], stop: StopSignals, now: float) -> None:
    """Record what slot ``i`` has finished, in order; a broken worker replaces the slot."""
    slot = slots[i]
    while slot.queue and slot.queue[0].future.done():
        job = slot.queue[0]
        try:
            res = job.future.result()
        except cf.process.BrokenProcessPool as e:
            replace_slot(i, "worker crashed (killed or died) during this episode" + slot.exit_detail(e))
            return
        except Interrupted:
            if not stop.requested():  # stopped by a signal the soak did not send
                replace_slot(i, "worker stopped by a signal from outside the soak")
                return
            res = None
        except Exception as e:  # the episode itself raised: a harness bug
            report.harness_failures.append({"seed": job.seed, "policy": job.policy.value,
                                            "error": f"{type(e).__name__}: {e}"})
            res = None
        slot.queue.pop(0)
        if res is not None:
            record(res)
        if slot.queue:  # the next one starts now: its hang clock too
            slot.queue[0].started = now


def stop_workers(slots: list[Slot], record: Callable[[EpisodeResult], None]) -> None:
    """Stop every running episode (the worker unwinds it and joins its threads),
    cancel the queued ones, keep what finishes within STOP_GRACE, kill the rest."""
    for s in slots:
        for job in s.queue[1:]:
            job.future.cancel()
        s.signal(signal.SIGUSR1)
    end = time.monotonic() + STOP_GRACE
    for s in slots:
        for job in s.queue:
            try:
                record(job.future.result(timeout=max(0.0, end - time.monotonic())))
            except (Interrupted, cf.CancelledError):
                pass
            except (cf.TimeoutError, Exception):
                s.kill()
        s.queue.clear()


def replayed(rec: EpisodeResult, again: EpisodeResult, exact: bool) -> str | None:
    """None if ``again`` reproduced ``rec``; else where it went another way."""
    if again.label != rec.label:
        st = again.sched_stats
        where = st.get("follow_diverged_at_event", st.get("replay_diverged_at_step"))
        return (f"{again.label} instead"
                + (f", diverged at recorded {'event' if not exact else 'step'} {where}"
                   if where is not None else ""))
    if exact and again.event_digest != rec.event_digest:
        return f"same outcome, event digest {again.event_digest} instead of {rec.event_digest}"
    return None


def verify_replays(report: SoakReport, cfg: SoakConfig, stop: StopSignals, budget: float = 30.0) -> None:
    """Rerun recorded lockups in this process from what the soak printed for
    them: a controlled one from its seed and schedule seed (it must give the
    same outcome and event digest), a free one on the controlled CPU following
    its recorded event order (the same outcome). Results go into
    ``report.replay_checks`` as they come (kept when stopped); at most
    ``budget`` real seconds are spent."""
    if cfg.verify_replays <= 0:
        return
    settings = replace(cfg.settings, keep=Keep.NONE, log_dir=None, inject=())
    exact = settings.sched.controlled
    picked: list[EpisodeResult] = []
    for st in report.per_policy.values():
        lockups = [r for r in st.replayable if r.outcome.is_lockup and (exact or r.schedule)]
        picked += lockups[: max(1, cfg.max_verify // len(report.per_policy))]
    deadline = time.monotonic() + budget
    for rec in picked:
        same = runs = 0
        divergences: list[str] = []
        sched = None if exact else SchedConfig.replaying(Schedule.from_json(rec.schedule))
        for _ in range(cfg.verify_replays):
            if time.monotonic() > deadline:
                break
            runs += 1
            try:
                again = run_one(rec.seed, Policy(rec.policy), settings, stop=stop.requested, sched=sched)
            except Interrupted:
                return
            why = replayed(rec, again, exact)
            same += why is None
            if why is not None:
                divergences.append(why)
        if runs:
            report.replay_checks.append({"seed": rec.seed, "policy": rec.policy, "outcome": rec.label,
                                         "reproduced": same, "runs": runs, "divergences": divergences})
        if time.monotonic() > deadline:
            break
