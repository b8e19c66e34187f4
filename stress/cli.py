"""``python -m stress``: the headline demo, ``list`` and ``run``."""

from __future__ import annotations

import argparse
import enum
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence, TextIO

from loguru import logger

from kthreads import Policy
from kthreads import HZ_MAX, HZ_MIN, Clock

from .episode import EpisodeConfig, EpisodeResult, run_episode
from .outcomes import Grade
from .scenarios import SCENARIOS, get_scenario
from .soak import (SoakConfig, SoakSettings, format_report, progress_printer, report_json, run_one,
                   run_soak, write_logs)
from .workload import WorkloadParams

DEMO_SCENARIO = "lockup-mutex"
DEMO = dict(speed=10.0, hung_task_timeout=10.0, lockup_window=12.0)
POLICY_TITLES = {Policy.NONE: "Linux 4.5: no oom_reaper",
                 Policy.PATCH1: "Linux 4.6: 'mm, oom: introduce oom reaper' (patch 1)"}


class ExitStatus(enum.IntEnum):
    OK = 0
    UNEXPECTED = 1  # an outcome other than the expected one, a breach, a broken step
    USAGE = 2
    INTERRUPTED = 130


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- argument types: each names the problem and what is valid -------------------
def positive_float(name: str, hi: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not v > 0 or v != v or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"{name} must be at most {hi:g}, got {text}")
        return v
    return parse


def whole_seconds(name: str) -> Callable[[str], float]:
    """hung_task_timeout_secs is a whole number of seconds, as the sysctl is."""
    def parse(text: str) -> float:
        v = positive_float(name, 3600)(text)
        if not v.is_integer():
            raise argparse.ArgumentTypeError(f"{name} is whole seconds (1..3600), got {text}")
        return v
    return parse


def int_in(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be between {lo} and {hi}, got {v}")
        return v
    return parse


def policy_type(text: str) -> Policy:
    try:
        return Policy.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def scenario_type(text: str) -> str:
    try:
        return get_scenario(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def writable_file(text: str) -> str:
    try:
        with open(text, "a"):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {e.strerror}") from None
    return text


def add_episode_options(p: argparse.ArgumentParser, defaults: dict) -> None:
    p.add_argument("--speed", type=positive_float("--speed", Clock.max_speed(100)),
                   default=defaults["speed"],
                   help="model seconds per real second (default %(default)s; at most "
                        f"{Clock.max_speed(100):g} at HZ=100)")
    p.add_argument("--hz", type=int_in("--hz", HZ_MIN, HZ_MAX), default=100,
                   help="HZ, jiffies per model second (default %(default)s)")
    p.add_argument("--hung-task-timeout", type=whole_seconds("--hung-task-timeout"),
                   default=defaults["hung_task_timeout"], metavar="SECS",
                   help="khungtaskd's hung_task_timeout_secs, model seconds (default %(default)s)")
    p.add_argument("--lockup-window", type=positive_float("--lockup-window", 7200),
                   default=defaults["lockup_window"], metavar="SECS",
                   help="model seconds without progress that make a lockup (default %(default)s)")
    p.add_argument("--ring-size", type=int_in("--ring-size", 1, 1 << 24), default=65536, metavar="N",
                   help="flight-recorder events kept (default %(default)s; older ones are overwritten)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not stream the kernel log")


def build_parser() -> Parser:
    parser = Parser(prog="python -m stress",
                    description="Watch the Linux 4.6 OOM-reaper lockup happen on real threads, "
                                "and watch the reaper break it. With no command: the headline demo.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    p_demo = sub.add_parser("demo", help="the headline demo (also the default)",
                            description="lockup-mutex under 'none', then under 'patch1'.")
    add_episode_options(p_demo, DEMO)
    p_demo.set_defaults(func=cmd_demo)

    p_list = sub.add_parser("list", help="the scenarios, one line each",
                            description="List the scenarios and what each shows.")
    p_list.add_argument("-v", "--verbose", action="store_true", help="the whole story and expectations")
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="one episode of one scenario",
                           description="Run one scenario under one policy and print its log and verdict.")
    p_run.add_argument("scenario", type=scenario_type, metavar="SCENARIO",
                       help=f"one of: {', '.join(SCENARIOS)}")
    p_run.add_argument("--policy", type=policy_type, default=Policy.PATCH1,
                       help="none | patch1 (default patch1)")
    p_run.add_argument("--seed", type=int_in("--seed", 0, 2 ** 63 - 1), default=0,
                       help="varies the sizes a little, deterministically (default 0)")
    p_run.add_argument("--json", type=writable_file, metavar="FILE", help="write the result as JSON")
    p_run.add_argument("--log", type=writable_file, metavar="FILE",
                       help="write the flight recorder (JSONL) for 'postmortem'")
    add_episode_options(p_run, dict(speed=50.0, hung_task_timeout=2.0, lockup_window=3.0))
    p_run.set_defaults(func=cmd_run)
    add_soak_parser(sub)
    p_pm = sub.add_parser("postmortem", help="explain an episode from its flight-recorder log alone",
                          description="Rebuild a per-pid timeline and a diagnosis from a JSONL log "
                                      "written by 'run --log' or 'soak --log-dir'.")
    p_pm.add_argument("log", metavar="LOG.jsonl")
    p_pm.add_argument("--html", type=writable_file, metavar="FILE", help="write a self-contained HTML timeline")
    p_pm.add_argument("--json", type=writable_file, metavar="FILE", help="write the analysis as JSON")
    p_pm.set_defaults(func=cmd_postmortem)
    return parser


# -- output -------------------------------------------------------------------
def stream_kernel_log(out: TextIO | None = None) -> None:
    """The CLI, not the library, decides where kernel messages go: the
    dmesg-style lines stream to stderr at INFO; summaries go to stdout."""
    logger.remove()
    logger.add(out or sys.stderr, format="{message}", level="INFO", filter="kthreads", colorize=False)
    logger.enable("kthreads")


def episode_config(args: argparse.Namespace, policy: Policy, seed: int = 0) -> EpisodeConfig:
    return EpisodeConfig(policy=policy, speed=args.speed, hz=args.hz,
                         hung_task_timeout=args.hung_task_timeout,
                         lockup_window=max(args.lockup_window, args.hung_task_timeout), seed=seed,
                         ring_size=args.ring_size)


def print_episode(res: EpisodeResult, out: TextIO) -> None:
    """What follows the kernel log (which streams live): tracepoints and verdict."""
    if res.trace:
        print("\n# tracepoints (ftrace format)", file=out)
        for line in res.trace:
            print(line, file=out)
    print(f"\n# verdict: {res.outcome.value} ({res.grade.value})", file=out)
    if res.explanation:
        print(f"# {res.explanation}", file=out)
    if res.error:
        print(f"# harness error: {res.error}", file=out)
    for b in res.breaches:
        print(f"# INVARIANT BREACH: {b}", file=out)


def verdict_table(results: Sequence[EpisodeResult], out: TextIO) -> None:
    rows = [("scenario", "policy", "expected", "observed", "grade", "kill->alloc ok", "wall")]
    for r in results:
        sc = SCENARIOS[r.scenario]
        expected = "|".join(o.value for o in sc.expected(Policy(r.policy)))
        rec = r.recovery_seconds
        rows.append((r.scenario, r.policy, expected, r.outcome.value, r.grade.value,
                     "-" if rec is None else f"{rec * 1000:.1f} ms (model)",
                     f"{r.wall_seconds:.2f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)


# -- commands -----------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    out = sys.stdout
    t0 = time.monotonic()
    sc = get_scenario(DEMO_SCENARIO)
    if not args.quiet:
        stream_kernel_log()
    print(f"The OOM-reaper lab: scenario {sc.name}.\n{sc.story}\n"
          f"(speed {args.speed:g}x: one model second is {1000 / args.speed:.0f} ms; "
          f"hung_task_timeout_secs={args.hung_task_timeout:g})", file=out)
    results = []
    for policy in (Policy.NONE, Policy.PATCH1):
        print(f"\n=== {sc.name} under policy {policy.value} ({POLICY_TITLES[policy]}) ===", file=out)
        out.flush()
        res = run_episode(sc, episode_config(args, policy))
        print_episode(res, out)
        results.append(res)
    print(f"\n=== verdicts (demo took {time.monotonic() - t0:.2f} s) ===", file=out)
    verdict_table(results, out)
    return ExitStatus.OK if all(r.expected for r in results) else ExitStatus.UNEXPECTED


def cmd_list(args: argparse.Namespace) -> int:
    width = max(len(n) for n in SCENARIOS)
    for sc in SCENARIOS.values():
        print(f"{sc.name:<{width}}  {sc.summary}")
        if args.verbose:
            print(f"{'':<{width}}  {sc.story}")
            for policy in Policy:
                grades = ", ".join(f"{o.value}={g.value}" for o, g in sc.grades.get(policy, {}).items())
                print(f"{'':<{width}}  {policy.value}: {grades}")
            print()
    return ExitStatus.OK


def cmd_run(args: argparse.Namespace) -> int:
    sc = get_scenario(args.scenario)
    cfg = episode_config(args, args.policy, args.seed)
    if not args.quiet:
        stream_kernel_log()
    print(f"=== {sc.name} under policy {cfg.policy.value} ({POLICY_TITLES[cfg.policy]}), "
          f"seed {cfg.seed} ===")
    res = run_episode(sc, cfg, log_path=args.log)
    print_episode(res, sys.stdout)
    print()
    verdict_table([res], sys.stdout)
    if args.log:
        print(f"\nflight recorder written to {args.log}; explain it with: "
              f"python -m stress postmortem {args.log}")
    if args.json:
        d = res.to_json()
        d["expected_outcomes"] = [o.value for o in sc.expected(cfg.policy)]
        with open(args.json, "w") as f:
            json.dump(d, f, indent=2)
            f.write("\n")
    return ExitStatus.OK if res.expected else ExitStatus.UNEXPECTED


def int_range(name: str, lo: int, hi: int) -> Callable[[str], tuple[int, int]]:
    def parse(text: str) -> tuple[int, int]:
        parts = text.split("-")
        try:
            a, b = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
        except ValueError:
            a = b = None
        if a is None or b is None or not lo <= a <= b <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be MIN-MAX (or N) with {lo} <= MIN <= MAX "
                                             f"<= {hi}, got {text!r}")
        return a, b
    return parse


def share(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number between 0 and 1, got {text!r}") from None
        if not 0 <= v <= 1:
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {text}")
        return v
    return parse


def mix_type(text: str) -> tuple[tuple[str, float], ...]:
    from .workload import SYSCALLS

    out = dict(WorkloadParams().mix)
    for item in text.split(","):
        name, _, weight = item.partition("=")
        if name not in SYSCALLS:
            raise argparse.ArgumentTypeError(f"--mix: unknown syscall {name!r}; valid: {', '.join(SYSCALLS)}")
        try:
            w = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix: weight of {name} must be a number, got {weight!r}") from None
        if w < 0:
            raise argparse.ArgumentTypeError(f"--mix: weight of {name} must be >= 0, got {w:g}")
        out[name] = w
    if not any(out.values()):
        raise argparse.ArgumentTypeError("--mix: at least one weight must be positive")
    return tuple(out.items())


def inject_type(text: str) -> tuple[str, int]:
    kind, _, seed = text.partition(":")
    if kind not in ("crash", "hang") or not seed.isdigit():
        raise argparse.ArgumentTypeError("--inject takes crash:SEED or hang:SEED")
    return kind, int(seed)


def writable_dir(text: str) -> str:
    try:
        Path(text).mkdir(parents=True, exist_ok=True)
        probe = Path(text) / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write into {text!r}: {e.strerror}") from None
    return text


def add_soak_parser(sub: Any) -> None:
    d = WorkloadParams()
    p = sub.add_parser("soak", help="randomized workloads, many episodes, an outcome histogram per policy",
                       description="Soak: the same seeded random workloads under each --policy, in "
                                   "worker processes; prints how often each design locks up.")
    p.add_argument("--policy", type=policy_type, action="append", metavar="P",
                   help="none | patch1; repeat to compare (default: both)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--episodes", type=int_in("--episodes", 1, 10 ** 9), metavar="N",
                     help="episodes per policy (default 100)")
    how.add_argument("--seconds", type=positive_float("--seconds", 7 * 86400), metavar="S",
                     help="run for S seconds of wall time instead")
    how.add_argument("--replay", type=int_in("--replay", 0, 2 ** 63 - 1), metavar="SEED",
                     help="rerun one episode in this process and print its log")
    p.add_argument("--seed", type=int_in("--seed", 0, 2 ** 62), default=0,
                   help="first episode seed (default 0)")
    p.add_argument("--jobs", type=int_in("--jobs", 0, 256), default=0, metavar="J",
                   help="worker processes (default 0: one per core)")
    p.add_argument("--json", type=writable_file, metavar="FILE", help="write the report as JSON")
    p.add_argument("--log-dir", type=writable_dir, metavar="DIR",
                   help="write the kernel log (.log) and flight recorder (.jsonl) of every lockup "
                        "or forbidden episode there (with --replay: of that episode)")
    p.add_argument("--fail-on", choices=("forbidden", "never"), default="forbidden",
                   help="exit 1 on a forbidden outcome or breach (default), or never")
    w = p.add_argument_group("workload")
    w.add_argument("--processes", type=int_range("--processes", 1, 64), default=d.processes, metavar="MIN-MAX")
    w.add_argument("--max-threads", type=int_in("--max-threads", 1, 16), default=d.max_threads)
    w.add_argument("--zone-pages", type=int_range("--zone-pages", 128, 1 << 20), default=d.zone_pages,
                   metavar="MIN-MAX")
    w.add_argument("--pressure", type=positive_float("--pressure", 10), default=d.pressure,
                   help="memory wanted / zone size (default %(default)s)")
    w.add_argument("--locks", type=int_in("--locks", 0, 32), default=d.locks)
    w.add_argument("--nofs", type=share("--nofs"), default=d.nofs, help="share of GFP_NOFS allocations")
    w.add_argument("--killable", type=share("--killable"), default=d.killable,
                   help="share of killable mutex waits")
    w.add_argument("--mix", type=mix_type, default=d.mix, metavar="NAME=W,...",
                   help="syscall weights: " + ", ".join(f"{k}={v:g}" for k, v in d.mix))
    e = p.add_argument_group("episode")
    e.add_argument("--speed", type=positive_float("--speed", Clock.max_speed(100)), default=100.0)
    e.add_argument("--hung-task-timeout", type=whole_seconds("--hung-task-timeout"), default=1.0,
                   metavar="SECS")
    e.add_argument("--lockup-window", type=positive_float("--lockup-window", 7200), default=1.5,
                   metavar="SECS")
    e.add_argument("--episode-timeout", type=positive_float("--episode-timeout", 3600), default=30.0,
                   metavar="SECS", help="real seconds before a worker is declared hung (default 30)")
    e.add_argument("--ring-size", type=int_in("--ring-size", 1, 1 << 24), default=65536, metavar="N",
                   help="flight-recorder events kept per episode (default %(default)s)")
    e.add_argument("--verify-replays", type=int_in("--verify-replays", 0, 100), default=3, metavar="N",
                   help="rerun a few lockup episodes N times each to measure replay fidelity (default 3)")
    p.add_argument("--inject", type=inject_type, action="append", default=[], help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_soak)


def soak_settings(args: argparse.Namespace, keep_log: str) -> SoakSettings:
    params = WorkloadParams(processes=args.processes, max_threads=args.max_threads,
                            zone_pages=args.zone_pages, pressure=args.pressure, locks=args.locks,
                            nofs=args.nofs, killable=args.killable, mix=args.mix)
    return SoakSettings(params=params, speed=args.speed, hz=100,
                        hung_task_timeout=args.hung_task_timeout,
                        lockup_window=max(args.lockup_window, args.hung_task_timeout),
                        keep_log=keep_log, inject=tuple(args.inject), ring_size=args.ring_size,
                        log_dir=args.log_dir if keep_log != "none" else None)


def cmd_soak(args: argparse.Namespace) -> int:
    policies = tuple(dict.fromkeys(args.policy or (Policy.NONE, Policy.PATCH1)))
    if args.replay is not None:
        return cmd_replay(args, policies)
    settings = soak_settings(args, "interesting" if args.log_dir else "none")
    cfg = SoakConfig(policies=policies, episodes=None if args.seconds else (args.episodes or 100),
                     seconds=args.seconds, seed=args.seed, jobs=args.jobs, settings=settings,
                     episode_timeout=args.episode_timeout, verify_replays=args.verify_replays)
    log_dir = Path(args.log_dir) if args.log_dir else None
    print(f"soak: policies {', '.join(p.value for p in policies)}; "
          + (f"{cfg.episodes} episodes each" if cfg.episodes else f"{cfg.seconds:g} s")
          + f"; seeds from {cfg.seed}; {cfg.workers} worker process(es); "
            f"speed {settings.speed:g}x, lockup window {settings.lockup_window:g} s model", flush=True)
    report = run_soak(cfg, progress_printer(sys.stderr),
                      on_record=(lambda rec: write_logs(log_dir, rec, settings)) if log_dir else None)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    format_report(report, sys.stdout)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report_json(report), f, indent=2)
            f.write("\n")
    if report.interrupted:
        print("python -m stress: interrupted; every worker's threads were joined", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    if report.total == 0:
        print("python -m stress: error: no episode ran (is --seconds long enough?)", file=sys.stderr)
        return ExitStatus.UNEXPECTED
    bad = report.forbidden or any(st.breaches for st in report.per_policy.values())
    return ExitStatus.UNEXPECTED if bad and args.fail_on == "forbidden" else ExitStatus.OK


def cmd_replay(args: argparse.Namespace, policies: tuple[Policy, ...]) -> int:
    settings = soak_settings(args, "all" if args.log_dir else "none")
    stream_kernel_log()
    worst = ExitStatus.OK
    for policy in policies:
        print(f"=== replay of soak seed {args.replay} under policy {policy.value} ===", flush=True)
        rec = run_one(args.replay, policy, settings)
        print(f"\n# verdict: {rec.label} ({rec.grade})")
        if args.log_dir:
            write_logs(Path(args.log_dir), rec, settings)
            print(f"# kernel log: {args.log_dir}/seed{args.replay}-{policy.value}.log; flight recorder: "
                  f"{args.log_dir}/seed{args.replay}-{policy.value}.jsonl")
        if rec.explanation:
            print(f"# {rec.explanation}")
        for b in rec.breaches:
            print(f"# INVARIANT BREACH: {b}")
        if rec.grade == Grade.FORBIDDEN.value and args.fail_on == "forbidden":
            worst = ExitStatus.UNEXPECTED
    return worst


def cmd_postmortem(args: argparse.Namespace) -> int:
    from .flight import LogError, load_jsonl
    from .postmortem import analyze, format_text, to_json
    from .timeline import render_html

    try:
        log = load_jsonl(args.log)
    except LogError as e:
        print(f"python -m stress: error: {e}", file=sys.stderr)
        return ExitStatus.USAGE
    a = analyze(log)
    print(format_text(a))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(a), f, indent=2, default=str)
            f.write("\n")
    if args.html:
        with open(args.html, "w") as f:
            f.write(render_html(a))
        print(f"\nHTML timeline written to {args.html}")
    return ExitStatus.OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv or ["demo"])
    except UsageError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return ExitStatus.USAGE
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if getattr(args, "func", None) is None:
        args = parser.parse_args(["demo"])
    try:
        return args.func(args)
    except ValueError as e:  # a configuration the episode refused
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        print(f"\n{parser.prog}: interrupted; every thread was joined", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    finally:
        logger.remove()
