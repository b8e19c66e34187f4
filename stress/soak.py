"""Soak runs: many randomized episodes, the same seeds under every policy.

Episodes run in worker processes, one ``ProcessPoolExecutor(max_workers=1)``
per worker slot, so that a worker that crashes breaks only its own executor:
the seed it was running is reported and the slot is replaced. A worker that
takes longer than ``episode_timeout`` on one episode is killed and reported
the same way. Each episode runs on real threads inside its worker.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from kthreads import Kernel, Policy

from .explain import explain
from .flight import dump_jsonl
from .grading import SOAK_GRADES, label, rule_of_three, soak_grade
from .lockup_report import record_verdict
from .outcomes import Grade, Outcome
from .verdict import classify, episode_over, lockup_shape
from .workload import WorkloadParams, build, generate

#: Invariant families checked after every episode (check_quiescent).
INVARIANT_FAMILIES = ("pages conserved", "refcounts >= 0", "mm freed once, never touched after",
                      "rwsem exclusion", "threads joined", "every page back after shutdown")


@dataclass(frozen=True)
class SoakSettings:
    """What a worker needs to run one episode (picklable)."""

    params: WorkloadParams = WorkloadParams()
    speed: float = 100.0
    hz: int = 100
    hung_task_timeout: float = 1.0
    lockup_window: float = 1.5
    max_real_seconds: float = 20.0
    keep_log: str = "interesting"  # interesting | all | none
    log_dir: str | None = None  # flight-recorder JSONL of interesting episodes goes here
    trace: bool = True  # the flight recorder (off only to measure its cost)
    ring_size: int = 65536  # flight-recorder events kept per episode
    inject: tuple[tuple[str, int], ...] = ()  # ("crash"|"hang", seed): fault injection for tests


@dataclass
class EpisodeRecord:
    seed: int
    policy: str
    outcome: str
    shape: str | None
    label: str
    grade: str
    model_seconds: float
    wall_seconds: float
    breaches: list[str] = field(default_factory=list)
    error: str | None = None  # "crashed" / "hung" / an exception: the harness's own failure
    explanation: str = ""
    dmesg: list[str] = field(default_factory=list)

    @property
    def interesting(self) -> bool:
        return self.grade == Grade.FORBIDDEN.value or "lockup" in self.outcome


# -- the worker side --------------------------------------------------------------
class Interrupted(BaseException):
    """A worker's episode was stopped because the parent stops the soak."""


class _Stop:
    """Set by SIGUSR1 in a worker process. The handler only sets it (raising
    from a handler could land anywhere, even inside Thread.start()); the
    episode notices it at its next check and unwinds normally."""

    requested = False


def _on_stop(signum: int, frame: Any) -> None:
    _Stop.requested = True


def worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGUSR1, _on_stop)


def worker_pid() -> int:
    return os.getpid()


def run_one(seed: int, policy: Policy, settings: SoakSettings) -> EpisodeRecord:
    """One soak episode, in the calling process (a worker, or --replay)."""
    if _Stop.requested:
        raise Interrupted()
    for kind, s in settings.inject:
        if s == seed and kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if s == seed and kind == "hang":
            while True:
                time.sleep(1)
    t0 = time.monotonic()
    w = generate(seed, settings.params)
    k = Kernel(nr_pages=w.zone_pages, policy=policy, speed=settings.speed, hz=settings.hz,
               hung_task_timeout=settings.hung_task_timeout, trace=settings.trace,
               ring_size=settings.ring_size)
    outcome, shape, text = Outcome.UNDETERMINED, None, ""
    try:
        tasks = build(k, w)
        window = settings.lockup_window
        k.wait_until(lambda: _Stop.requested or episode_over(k, tasks, window),
                     settings.max_real_seconds)
        if _Stop.requested:
            raise Interrupted()
        outcome = classify(k, tasks, window)
        if outcome in (Outcome.LOCKUP, Outcome.REAP_FAILED_LOCKUP):
            shape = lockup_shape(k)
            text = explain(k, outcome, None)
        record_verdict(k, outcome, shape, text)
    finally:
        model_seconds = k.clock.now()
        report = k.shutdown()
    breaches = k.check_quiescent() if report.clean else [report.format()]
    lbl = label(outcome, shape)
    grade = soak_grade(policy, lbl, bool(breaches))
    rec = EpisodeRecord(seed, policy.value, outcome.value, shape.value if shape else None, lbl,
                        grade.value, model_seconds, time.monotonic() - t0, breaches,
                        explanation=text)
    if settings.keep_log == "all" or (settings.keep_log == "interesting" and rec.interesting):
        rec.dmesg = [str(line) for line in k.dmesg()]
        if settings.log_dir:
            dump_jsonl(k, Path(settings.log_dir) / f"seed{seed}-{policy.value}.jsonl",
                       {"seed": seed, "outcome": outcome.value, "label": lbl, "grade": grade.value,
                        "replay": replay_command(seed, policy.value, settings)})
    return rec


def empty_episode(policy: Policy, settings: SoakSettings) -> float:
    """Boot and shut down only: the floor an episode cannot beat."""
    t0 = time.monotonic()
    k = Kernel(nr_pages=512, policy=policy, speed=settings.speed, hz=settings.hz,
               hung_task_timeout=settings.hung_task_timeout)
    k.shutdown()
    return time.monotonic() - t0


def empty_rate(policies: tuple[Policy, ...], settings: SoakSettings, n: int = 40) -> float:
    """Empty episodes per second on one core, measured now."""
    t = sum(empty_episode(policies[i % len(policies)], settings) for i in range(n))
    return n / t


# -- the parent side ----------------------------------------------------------------
@dataclass(frozen=True)
class SoakConfig:
    policies: tuple[Policy, ...] = (Policy.NONE, Policy.PATCH1)
    episodes: int | None = None  # per policy
    seconds: float | None = None
    seed: int = 0
    jobs: int = 0  # 0: all cores
    settings: SoakSettings = SoakSettings()
    episode_timeout: float = 30.0  # real seconds before a worker is declared hung
    verify_replays: int = 3  # reruns of each replayable episode (up to max_verify episodes)
    max_verify: int = 8

    def __post_init__(self) -> None:
        if not self.policies:
            raise ValueError("at least one --policy is needed")
        if (self.episodes is None) == (self.seconds is None):
            raise ValueError("give exactly one of --episodes and --seconds")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {self.episodes}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"--seconds must be positive, got {self.seconds}")
        if self.jobs < 0:
            raise ValueError(f"--jobs must be at least 1 (or 0 for all cores), got {self.jobs}")

    @property
    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1


@dataclass
class PolicyStats:
    episodes: int = 0
    labels: Counter = field(default_factory=Counter)
    grades: dict[str, str] = field(default_factory=dict)
    forbidden: int = 0
    breaches: list[str] = field(default_factory=list)
    wall: float = 0.0  # summed episode wall time
    replayable: list[EpisodeRecord] = field(default_factory=list)


@dataclass
class SoakReport:
    config: SoakConfig
    per_policy: dict[str, PolicyStats]
    harness_failures: list[dict[str, Any]]
    wall_seconds: float
    empty_rate: float  # empty episodes/s per core
    interrupted: bool = False
    replay_checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(p.episodes for p in self.per_policy.values())

    @property
    def forbidden(self) -> int:
        return sum(p.forbidden for p in self.per_policy.values()) + len(self.harness_failures)


class Slot:
    """One worker process behind its own single-worker executor."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.ex = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=worker_init)
        self.pid = self.ex.submit(worker_pid).result(timeout=60)
        # (future, seed, policy, started) in submission order; the first runs.
        self.queue: list[tuple[cf.Future, int, Policy, float]] = []

    def submit(self, seed: int, policy: Policy, settings: SoakSettings) -> None:
        fut = self.ex.submit(run_one, seed, policy, settings)
        self.queue.append((fut, seed, policy, time.monotonic()))

    def exit_detail(self, e: BaseException) -> str:
        """Why the pool broke: the worker's exit code, or the parent's error."""
        procs = getattr(self.ex, "_processes", None) or {}
        codes = [p.exitcode for p in list(procs.values()) if p.exitcode is not None]
        detail = f": exit code {codes[0]}" if codes else ""
        if e.__cause__ is not None:
            detail += f": {str(e.__cause__).strip()[-300:]}"
        return detail

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self, wait: bool = True) -> None:
        self.ex.shutdown(wait=wait, cancel_futures=True)


Progress = Callable[[SoakReport, int, float], None]


def new_slot(ctx: Any) -> Slot:
    """A worker slot, spawned with SIGINT ignored: a Ctrl-C while the child
    is still starting Python would kill it mid-import (the parent handles it)."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to protect
        return Slot(ctx)
    try:
        return Slot(ctx)
    finally:
        signal.signal(signal.SIGINT, old)


def run_soak(cfg: SoakConfig, progress: Progress | None = None,
             on_record: Callable[[EpisodeRecord], None] | None = None) -> SoakReport:
    settings = cfg.settings
    report = SoakReport(cfg, {p.value: PolicyStats() for p in cfg.policies}, [], 0.0, 0.0)
    try:
        report.empty_rate = empty_rate(cfg.policies, settings)
    except KeyboardInterrupt:
        report.interrupted = True
        return report
    ctx = multiprocessing.get_context("spawn")
    t0 = time.monotonic()
    deadline: float | None = None
    plan = cfg.episodes * len(cfg.policies) if cfg.episodes is not None else 0
    todo = ((cfg.seed + i, p) for i in range(cfg.episodes if cfg.episodes is not None else 1 << 62)
            for p in cfg.policies)
    slots: list[Slot] = []
    exhausted = False
    stopping = False

    def record(rec: EpisodeRecord) -> None:
        st = report.per_policy[rec.policy]
        st.episodes += 1
        st.labels[rec.label] += 1
        st.grades[rec.label] = soak_grade(Policy(rec.policy), rec.label, False).value
        st.wall += rec.wall_seconds
        if rec.grade == Grade.FORBIDDEN.value:
            st.forbidden += 1
        st.breaches += [f"seed {rec.seed}: {b}" for b in rec.breaches]
        if rec.interesting:
            st.replayable.append(rec)
        if on_record:
            on_record(rec)

    def refill(slot: Slot) -> None:
        nonlocal exhausted
        while len(slot.queue) < 2 and not exhausted and not stopping:
            if deadline is not None and time.monotonic() >= deadline:
                exhausted = True
                return
            nxt = next(todo, None)
            if nxt is None:
                exhausted = True
                return
            slot.submit(nxt[0], nxt[1], settings)

    def replace(i: int, why: str) -> None:
        """The slot's running episode crashed or hung: report it, rebuild the slot."""
        slot = slots[i]
        (_, seed, policy, _), rest = slot.queue[0], slot.queue[1:]
        report.harness_failures.append({"seed": seed, "policy": policy.value, "error": why})
        slot.kill()
        slot.close(wait=False)
        slots[i] = new_slot(ctx)
        for _, s, p, _ in rest:  # innocent bystanders: run them again
            slots[i].submit(s, p, settings)

    try:
        slots = [new_slot(ctx) for _ in range(cfg.workers)]
        # The clock of --seconds starts once the workers are up (spawning
        # them takes ~0.3 s each).
        t0 = time.monotonic()
        deadline = t0 + cfg.seconds if cfg.seconds is not None else None
        for s in slots:
            refill(s)
        last_tick = 0.0
        while any(s.queue for s in slots):
            futures = [s.queue[0][0] for s in slots if s.queue]
            cf.wait(futures, timeout=0.1, return_when=cf.FIRST_COMPLETED)
            now = time.monotonic()
            for i, slot in enumerate(slots):
                while slot.queue and slot.queue[0][0].done():
                    fut, seed, policy, _ = slot.queue.pop(0)
                    try:
                        record(fut.result())
                    except cf.process.BrokenProcessPool as e:
                        slot.queue.insert(0, (fut, seed, policy, now))
                        replace(i, "worker crashed (killed or died) during this episode"
                                + slot.exit_detail(e))
                        slot = slots[i]
                    except Interrupted:
                        pass
                    except Exception as e:  # the episode itself raised: a harness bug
                        report.harness_failures.append(
                            {"seed": seed, "policy": policy.value, "error": f"{type(e).__name__}: {e}"})
                    if slot.queue:  # the next one starts now: its hang clock too
                        f0, s0, p0, _ = slot.queue[0]
                        slot.queue[0] = (f0, s0, p0, now)
                if slot.queue and now - slot.queue[0][3] > cfg.episode_timeout:
                    replace(i, f"worker hung: no result within {cfg.episode_timeout:g} s")
                refill(slots[i])
            if progress and now - last_tick >= 0.2:
                last_tick = now
                report.wall_seconds = now - t0
                progress(report, plan, now - t0)
    except KeyboardInterrupt:
        stopping = True
        report.interrupted = True
        # Stop every running episode: the worker unwinds it, joins its threads
        # and reports Interrupted; queued ones are cancelled.
        for s in slots:
            for fut, *_ in s.queue[1:]:
                fut.cancel()
            try:
                os.kill(s.pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 1.0
        for s in slots:
            for fut, seed, policy, _ in s.queue:
                try:
                    rec = fut.result(timeout=max(0.0, end - time.monotonic()))
                    record(rec)
                except (Interrupted, cf.CancelledError):
                    pass
                except (cf.TimeoutError, Exception):
                    s.kill()
            s.queue.clear()
    finally:
        for s in slots:
            s.close(wait=True)
        report.wall_seconds = time.monotonic() - t0
    if not report.interrupted:
        try:
            verify_replays(report, cfg)
        except KeyboardInterrupt:
            report.interrupted = True
    return report


def verify_replays(report: SoakReport, cfg: SoakConfig, budget: float = 30.0) -> None:
    """Rerun replayable episodes in this process: how often does a seed reproduce?
    Results go into ``report.replay_checks`` as they come (kept on Ctrl-C);
    at most ``budget`` real seconds are spent."""
    out = report.replay_checks
    if cfg.verify_replays <= 0:
        return
    settings = SoakSettings(**{**asdict(cfg.settings), "params": cfg.settings.params,
                               "keep_log": "none", "inject": ()})
    picked: list[EpisodeRecord] = []
    for st in report.per_policy.values():
        picked += st.replayable[: max(1, cfg.max_verify // len(report.per_policy))]
    deadline = time.monotonic() + budget
    for rec in picked:
        if time.monotonic() > deadline:
            break
        same = 0
        for _ in range(cfg.verify_replays):
            again = run_one(rec.seed, Policy(rec.policy), settings)
            same += again.label == rec.label
        out.append({"seed": rec.seed, "policy": rec.policy, "outcome": rec.label,
                    "reproduced": same, "runs": cfg.verify_replays})


# -- reporting --------------------------------------------------------------------
def settings_flags(settings: SoakSettings) -> str:
    """The soak flags that make ``settings`` differ from the defaults."""
    d, dp, p = SoakSettings(), WorkloadParams(), settings.params
    out = []
    for flag, val, default in (
            ("--processes", p.processes, dp.processes), ("--max-threads", p.max_threads, dp.max_threads),
            ("--zone-pages", p.zone_pages, dp.zone_pages), ("--pressure", p.pressure, dp.pressure),
            ("--locks", p.locks, dp.locks), ("--nofs", p.nofs, dp.nofs),
            ("--killable", p.killable, dp.killable), ("--mix", p.mix, dp.mix),
            ("--speed", settings.speed, d.speed),
            ("--hung-task-timeout", settings.hung_task_timeout, d.hung_task_timeout),
            ("--lockup-window", settings.lockup_window, d.lockup_window)):
        if val == default:
            continue
        if flag == "--mix":
            text = ",".join(f"{k}={v:g}" for k, v in val)
        elif isinstance(val, tuple):
            text = f"{val[0]}-{val[1]}"
        else:
            text = f"{val:g}" if isinstance(val, float) else str(val)
        out.append(f"{flag} {text}")
    return " ".join(out)


def replay_command(rec_seed: int, policy: str, settings: SoakSettings | None = None) -> str:
    extra = settings_flags(settings) if settings is not None else ""
    return f"python -m stress soak --replay {rec_seed} --policy {policy}" + (f" {extra}" if extra else "")


def format_report(report: SoakReport, out: TextIO) -> None:
    cfg = report.config
    cores = cfg.workers
    title = "soak interrupted: partial report" if report.interrupted else "soak report"
    print(f"\n=== {title}: {report.total} episodes in {report.wall_seconds:.1f} s, "
          f"{cores} worker process(es), seeds from {cfg.seed} ===", file=out)
    if report.wall_seconds:
        rate = report.total / report.wall_seconds
        per_core = rate / cores
        print(f"throughput: {rate:.1f} episodes/s, {per_core:.1f} per core; an empty episode "
              f"(boot + shutdown) runs {report.empty_rate:.0f}/s per core, measured in this run "
              f"({per_core / report.empty_rate:.2f}x)", file=out)
    for pol, st in report.per_policy.items():
        n = st.episodes
        print(f"\npolicy {pol}: {n} episodes", file=out)
        if n == 0:
            continue
        rows = [("outcome", "count", "frequency", "grade")]
        seen = set(st.labels)
        for lbl, cnt in st.labels.most_common():
            rows.append((lbl, str(cnt), f"{100 * cnt / n:.1f}%", st.grades[lbl]))
        for lbl, grade in SOAK_GRADES[Policy(pol)].items():
            if lbl not in seen:
                rows.append((lbl, "0", f"< {100 * min(1.0, rule_of_three(n)):.2f}% (95%)", grade.value))
        if "lockup:mutex" not in seen and Policy(pol) is Policy.PATCH1:
            rows.append(("lockup:mutex", "0", f"< {100 * min(1.0, rule_of_three(n)):.2f}% (95%)",
                         "FORBIDDEN"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
        oom = n - st.labels.get("no_oom", 0)
        locks = sum(c for lbl, c in st.labels.items() if "lockup" in lbl)
        if oom:
            print(f"  episodes that hit OOM: {oom}; of those locked up: {locks} "
                  f"({100 * locks / oom:.1f}%)", file=out)
        print(f"  invariant checks: {n * len(INVARIANT_FAMILIES)} ({len(INVARIANT_FAMILIES)} per "
              f"episode), breaches: {len(st.breaches)}", file=out)
        for b in st.breaches[:10]:
            print(f"    BREACH {b}", file=out)
        shown = [r for r in st.replayable if r.grade == Grade.FORBIDDEN.value][:10] + \
            [r for r in st.replayable if r.grade != Grade.FORBIDDEN.value][:5]
        if shown:
            print(f"  replay ({len(st.replayable)} lockup or forbidden episodes; first ones):", file=out)
            for r in shown:
                print(f"    {r.label:<28} {r.grade:<22} {replay_command(r.seed, pol, cfg.settings)}",
                      file=out)
    for f in report.harness_failures:
        print(f"\nHARNESS FAILURE seed {f['seed']} policy {f['policy']}: {f['error']} "
              f"(replay: {replay_command(f['seed'], f['policy'], cfg.settings)})", file=out)
    if report.replay_checks:
        ok = sum(c["reproduced"] for c in report.replay_checks)
        runs = sum(c["runs"] for c in report.replay_checks)
        print(f"\nreplays: {len(report.replay_checks)} recorded episodes rerun "
              f"{report.replay_checks[0]['runs']} times each reproduced their outcome in "
              f"{ok}/{runs} runs ({100 * ok / runs:.0f}%)", file=out)


def report_json(report: SoakReport) -> dict[str, Any]:
    cfg = report.config
    pols = {}
    for pol, st in report.per_policy.items():
        n = st.episodes
        pols[pol] = {
            "episodes": n,
            "outcomes": dict(st.labels),
            "grades": {**{k: g.value for k, g in SOAK_GRADES[Policy(pol)].items()}, **st.grades},
            "forbidden": st.forbidden,
            "episodes_per_second": n / report.wall_seconds if report.wall_seconds else 0.0,
            "never_seen_upper_bound_95": rule_of_three(n) if n else None,
            "breaches": st.breaches,
        }
    return {
        "seed": cfg.seed, "episodes": report.total, "policies": pols,
        "invariant_checks": report.total * len(INVARIANT_FAMILIES),
        "invariant_breaches": sum(len(st.breaches) for st in report.per_policy.values()),
        "replays": [{"seed": r.seed, "policy": r.policy, "outcome": r.label,
                     "command": replay_command(r.seed, r.policy, cfg.settings)}
                    for st in report.per_policy.values() for r in st.replayable],
        "replay_checks": report.replay_checks,
        "harness_failures": report.harness_failures,
        "workers": cfg.workers, "wall_seconds": report.wall_seconds,
        "empty_episodes_per_second_per_core": report.empty_rate,
        "interrupted": report.interrupted,
        "settings": {k: v for k, v in asdict(cfg.settings).items() if k != "inject"},
    }


def write_logs(log_dir: Path, rec: EpisodeRecord, settings: SoakSettings) -> None:
    if not rec.dmesg:
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"seed{rec.seed}-{rec.policy}.log"
    with open(path, "w") as f:
        f.write(f"# seed {rec.seed} policy {rec.policy}: {rec.label} ({rec.grade})\n")
        if rec.explanation:
            f.write(f"# {rec.explanation}\n")
        f.write(f"# replay: {replay_command(rec.seed, rec.policy, settings)}\n")
        f.write("\n".join(rec.dmesg) + "\n")


def progress_printer(out: TextIO) -> Progress:
    tty = out.isatty()
    state = {"last": 0.0}

    def show(report: SoakReport, plan: int, elapsed: float) -> None:
        done = report.total
        rate = done / elapsed if elapsed else 0.0
        counts = "; ".join(
            f"{name}: " + (" ".join(f"{lbl}={c}" for lbl, c in sorted(st.labels.items()) if "lockup" in lbl)
                           or "none") + (f" FORBIDDEN={st.forbidden}" if st.forbidden else "")
            for name, st in report.per_policy.items())
        if plan:
            eta = (plan - done) / rate if rate else float("inf")
            head = f"{done}/{plan} episodes"
            tail = f"ETA {eta:.0f} s" if eta != float("inf") else "ETA ?"
        else:
            secs = report.config.seconds or 0
            head = f"{done} episodes"
            tail = f"{max(0.0, secs - elapsed):.0f} s left"
        line = f"{head}  {rate:.1f} eps/s  {tail}  lockups: {counts or 'none yet'}"
        if tty:
            out.write("\r\033[K" + line[:160])
            out.flush()
        elif elapsed - state["last"] >= 5.0:
            state["last"] = elapsed
            print(line, file=out, flush=True)

    return show
