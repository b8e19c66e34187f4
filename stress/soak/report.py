"""A soak's results: per-policy outcome histograms, the text and JSON reports,
the live progress line, and the kernel logs of kept episodes."""

from __future__ import annotations

import hashlib
import signal
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kthreads import Policy

from ..episode import EpisodeResult
from ..files import replaced_atomically
from ..grading import rule_of_three, soak_grades
from ..outcomes import Grade
from .settings import replay_command

if TYPE_CHECKING:
    from .runner import SoakConfig

#: Invariant families checked after every episode (Kernel.check_quiescent).
INVARIANT_FAMILIES = ("pages conserved", "refcounts >= 0", "mm freed once, never touched after",
                      "rwsem exclusion", "threads joined", "every page back after shutdown")


@dataclass
class PolicyStats:
    episodes: int = 0
    labels: Counter = field(default_factory=Counter)
    forbidden: int = 0
    breaches: list[str] = field(default_factory=list)
    replayable: list[EpisodeResult] = field(default_factory=list)  # lockups and forbidden ones
    digests: dict[int, str] = field(default_factory=dict)  # workload seed -> the episode's event digest

    @property
    def digest(self) -> str:
        """One hash over the episodes' event digests, in seed order: the same
        whatever the number of workers or the order episodes finished in."""
        h = hashlib.blake2b(digest_size=16)
        for seed in sorted(self.digests):
            h.update(f"{seed}:{self.digests[seed]}\n".encode())
        return h.hexdigest()


@dataclass
class SoakReport:
    config: "SoakConfig"
    per_policy: dict[str, PolicyStats]
    harness_failures: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0
    empty_rate: float = 0.0  # empty episodes/s per core, measured in the same run
    interrupted: bool = False
    signal: int | None = None  # what stopped it
    replay_checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # logs that could not be written, ...
    fatal: str | None = None  # why the soak could not go on (a worker that would not start)

    def add(self, res: EpisodeResult) -> None:
        st = self.per_policy[res.policy]
        st.episodes += 1
        st.labels[res.label] += 1
        st.digests[res.seed] = res.event_digest
        if res.grade is Grade.FORBIDDEN:
            st.forbidden += 1
        st.breaches += [f"seed {res.seed}: {b}" for b in res.breaches]
        if res.interesting:
            st.replayable.append(res)
        self.notes += [f"seed {res.seed}: {n}" for n in res.notes]

    @property
    def total(self) -> int:
        return sum(p.episodes for p in self.per_policy.values())

    @property
    def forbidden(self) -> int:
        return (sum(p.forbidden for p in self.per_policy.values()) + len(self.harness_failures)
                + (self.fatal is not None))

    @property
    def stopped_by(self) -> str:
        return signal.Signals(self.signal).name if self.signal else ""

    @property
    def replay_share(self) -> float | None:
        """Replays of recorded lockups that reproduced them, of those attempted."""
        runs = sum(c["runs"] for c in self.replay_checks)
        return sum(c["reproduced"] for c in self.replay_checks) / runs if runs else None


def grade_of(policy: str, lbl: str) -> str:
    return soak_grades(Policy(policy)).get(lbl, Grade.FORBIDDEN).value


def never_seen(n: int) -> str:
    return f"< {100 * min(1.0, rule_of_three(n)):.2f}% (95%)"


def shape_table(report: SoakReport) -> list[str]:
    """One table, the designs side by side on the same seeds: per lockup
    shape, how many episodes ended in it and their share of the episodes that
    hit OOM; a shape never seen gets the rule-of-three bound (95%) on its
    share of all the design's episodes."""
    pols = [(pol, st) for pol, st in report.per_policy.items() if st.episodes]
    if not pols:
        return []
    shapes = sorted({lbl for _, st in pols for lbl in st.labels if "lockup" in lbl})
    header = ["lockup shape", *(pol for pol, _ in pols)]
    rows = [header]
    for lbl in shapes:
        row = [lbl]
        for _, st in pols:
            cnt = st.labels.get(lbl, 0)
            oom = st.episodes - st.labels.get("no_oom", 0)
            row.append(f"{cnt} ({100 * cnt / oom:.1f}%)" if cnt and oom else
                       f"0 (<{100 * rule_of_three(st.episodes):.2f}%)")
        rows.append(row)
    total = ["locked up, of OOM"]
    for _, st in pols:
        oom = st.episodes - st.labels.get("no_oom", 0)
        locks = sum(c for lbl, c in st.labels.items() if "lockup" in lbl)
        total.append(f"{locks}/{oom} ({100 * locks / oom:.1f}%)" if oom else "-")
    rows.append(total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["lockups by shape, per design (the same seeds; a share is of the episodes that hit OOM, "
             "a bound of all the design's episodes):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def format_report(report: SoakReport, out: TextIO) -> None:
    cfg = report.config
    cores = cfg.workers
    title = (f"soak interrupted by {report.stopped_by}: partial report" if report.interrupted
             else "soak report")
    print(f"\n=== {title}: {report.total} episodes in {report.wall_seconds:.1f} s, "
          f"{cores} worker process(es), seeds from {cfg.seed} ===", file=out)
    if report.wall_seconds and report.empty_rate:
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
        for lbl, cnt in st.labels.most_common():
            rows.append((lbl, str(cnt), f"{100 * cnt / n:.1f}%", grade_of(pol, lbl)))
        for lbl, grade in soak_grades(Policy(pol)).items():
            if lbl not in st.labels:
                rows.append((lbl, "0", never_seen(n), grade.value))
        if "lockup:mutex" not in st.labels and Policy(pol) is Policy.PATCH1:
            rows.append(("lockup:mutex", "0", never_seen(n), Grade.FORBIDDEN.value))
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
        print(f"  digest over the episodes' event digests: {st.digest}", file=out)
        for b in st.breaches[:10]:
            print(f"    BREACH {b}", file=out)
        shown = [r for r in st.replayable if r.grade is Grade.FORBIDDEN][:10] + \
            [r for r in st.replayable if r.grade is not Grade.FORBIDDEN][:5]
        if shown:
            print(f"  replay ({len(st.replayable)} lockup or forbidden episodes; first ones):", file=out)
            for r in shown:
                print(f"    {r.label:<28} {r.grade.value:<22} "
                      f"{replay_command(r.seed, pol, cfg.settings)}", file=out)
    if len(report.per_policy) > 1:
        print("", file=out)
        for line in shape_table(report):
            print(line, file=out)
    if report.fatal:
        print(f"\nSOAK STOPPED EARLY: {report.fatal}", file=out)
    for f in report.harness_failures:
        print(f"\nHARNESS FAILURE seed {f['seed']} policy {f['policy']}: {f['error']} "
              f"(replay: {replay_command(f['seed'], f['policy'], cfg.settings)})", file=out)
    if report.replay_checks:
        ok = sum(c["reproduced"] for c in report.replay_checks)
        runs = sum(c["runs"] for c in report.replay_checks)
        how = ("from their seed and schedule seed (same outcome and event digest)"
               if cfg.settings.sched.controlled else
               "on the controlled CPU, following their recorded event order (same outcome)")
        print(f"\nreplays: {len(report.replay_checks)} recorded lockups rerun up to "
              f"{max(c['runs'] for c in report.replay_checks)} times each {how}: "
              f"{ok}/{runs} reproduced ({100 * ok / runs:.0f}%)", file=out)
        for c in report.replay_checks:
            if c["reproduced"] < c["runs"]:
                print(f"  not reproduced: seed {c['seed']} {c['policy']} {c['outcome']}: "
                      f"{'; '.join(c['divergences'][:2])}", file=out)
    for note in report.notes[:5]:
        print(f"note: {note}", file=out)
    if len(report.notes) > 5:
        print(f"note: ... and {len(report.notes) - 5} more", file=out)


def report_json(report: SoakReport) -> dict[str, Any]:
    cfg = report.config
    pols = {}
    for pol, st in report.per_policy.items():
        n = st.episodes
        pols[pol] = {
            "episodes": n,
            "outcomes": dict(st.labels),
            "grades": {**{k: g.value for k, g in soak_grades(Policy(pol)).items()},
                       **{lbl: grade_of(pol, lbl) for lbl in st.labels}},
            "forbidden": st.forbidden,
            "episodes_per_second": n / report.wall_seconds if report.wall_seconds else 0.0,
            "never_seen_upper_bound_95": rule_of_three(n) if n else None,
            "breaches": st.breaches,
            "digest": st.digest,
        }
    settings = asdict(cfg.settings)
    settings.pop("inject")
    settings["keep"] = cfg.settings.keep.value
    sched = cfg.settings.sched
    settings["sched"] = {"strategy": sched.strategy.value, "seed": sched.seed,
                         "pct_depth": sched.pct_depth, "pct_steps": sched.pct_steps}
    return {
        "seed": cfg.seed, "episodes": report.total, "policies": pols,
        "invariant_checks": report.total * len(INVARIANT_FAMILIES),
        "invariant_breaches": sum(len(st.breaches) for st in report.per_policy.values()),
        "replays": [{"seed": r.seed, "policy": r.policy, "outcome": r.label,
                     "command": replay_command(r.seed, r.policy, cfg.settings)}
                    for st in report.per_policy.values() for r in st.replayable],
        "replay_checks": report.replay_checks,
        "replay_share": report.replay_share,
        "sched": sched.strategy.value,
        "harness_failures": report.harness_failures,
        "workers": cfg.workers, "wall_seconds": report.wall_seconds,
        "empty_episodes_per_second_per_core": report.empty_rate,
        "interrupted": report.interrupted, "stopped_by": report.stopped_by or None,
        "fatal": report.fatal,
        "notes": report.notes,
        "settings": settings,
    }


def write_dmesg_log(log_dir: Path, res: EpisodeResult, settings: Any) -> Path:
    """The kernel log of a kept episode, as text beside its flight recorder,
    with the lab's own lines ("# lab") where they were written."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"seed{res.seed}-{res.policy}.log"
    lines = [f"# seed {res.seed} policy {res.policy}: {res.label} ({res.grade.value})"]
    if res.explanation:
        lines.append(f"# {res.explanation}")
    lines.append(f"# replay: {replay_command(res.seed, res.policy, settings)}")
    with replaced_atomically(path) as staged:
        staged.write_text("\n".join(lines + (res.console or res.dmesg)) + "\n")
    return path


def progress_printer(out: TextIO) -> Any:
    """A live progress line: rewritten in place on a terminal, every 5 s otherwise."""
    tty = out.isatty()
    last = [0.0]

    def show(report: SoakReport, plan: int, elapsed: float, left: float | None) -> None:
        done = report.total
        rate = done / elapsed if elapsed else 0.0
        counts = "; ".join(
            f"{name}: " + (" ".join(f"{lbl}={c}" for lbl, c in sorted(st.labels.items()) if "lockup" in lbl)
                           or "none") + (f" FORBIDDEN={st.forbidden}" if st.forbidden else "")
            for name, st in report.per_policy.items())
        if plan:
            head = f"{done}/{plan} episodes"
            tail = f"ETA {(plan - done) / rate:.0f} s" if rate else "ETA ?"
        else:
            head = f"{done} episodes"
            tail = f"{max(0.0, left or 0.0):.0f} s left"
        line = f"{head}  {rate:.1f} eps/s  {tail}  lockups: {counts or 'none yet'}"
        if tty:
            out.write("\r\033[K" + line[:160])
            out.flush()
        elif elapsed - last[0] >= 5.0:
            last[0] = elapsed
            print(line, file=out, flush=True)

    return show
