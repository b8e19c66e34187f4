"""``soak``: the randomized runs, and ``soak --replay`` of one recorded seed."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from kthreads import Policy

from ..config import SOAK_TIMING, TIMING_FLAGS, WORKLOAD_FLAGS, build
from ..episode import EpisodeResult, Interrupted, Keep
from ..outcomes import Grade
from ..signals import StopSignals
from ..soak import SoakConfig, SoakSettings, format_report, progress_printer, report_json, run_one, run_soak
from ..soak.report import write_dmesg_log
from ..workload import WorkloadParams
from .output import OutputError, UsageError, check_outputs, silence_stdout, stream_kernel_log, write_json
from .parser import SOAK_ONLY, ExitStatus


def soak_settings(args: argparse.Namespace, keep: Keep) -> SoakSettings:
    try:  # each flag is checked alone by the parser; here they are checked together
        params = build(WorkloadParams(), args, WORKLOAD_FLAGS)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return SoakSettings(params=params, timing=build(SOAK_TIMING, args, TIMING_FLAGS), keep=keep,
                        inject=tuple(args.inject), log_dir=args.log_dir)


def cmd_soak(args: argparse.Namespace, stop: StopSignals) -> int:
    policies = tuple(dict.fromkeys(args.policy or tuple(Policy)))
    if args.replay is not None:
        return cmd_replay(args, policies, stop)
    settings = soak_settings(args, Keep.INTERESTING if args.log_dir else Keep.NONE)
    cfg = SoakConfig(policies=policies, episodes=None if args.seconds else (args.episodes or 100),
                     seconds=args.seconds, seed=getattr(args, "seed", 0), jobs=getattr(args, "jobs", 0),
                     settings=settings, episode_timeout=getattr(args, "episode_timeout", 30.0),
                     verify_replays=getattr(args, "verify_replays", 3))
    check_outputs({"--json": args.json}, directories={"--log-dir": args.log_dir})
    with stop.polled():  # from here on a stop signal ends the soak with its partial report
        return soak_and_report(args, cfg, stop)


def soak_and_report(args: argparse.Namespace, cfg: SoakConfig, stop: StopSignals) -> int:
    settings, policies = cfg.settings, cfg.policies
    print(f"soak: policies {', '.join(p.value for p in policies)}; "
          + (f"{cfg.episodes} episodes each" if cfg.episodes else f"{cfg.seconds:g} s")
          + f"; seeds from {cfg.seed}; {cfg.workers} worker process(es); "
            f"speed {settings.timing.speed:g}x, lockup window {settings.timing.window:g} s model",
          flush=True)
    log_dir = Path(args.log_dir) if args.log_dir else None
    log_notes: list[str] = []
    report = run_soak(cfg, progress_printer(sys.stderr),
                      on_record=(lambda res: keep_log(log_dir, res, settings, log_notes)) if log_dir else None,
                      stop=stop)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    report.notes += log_notes
    pipe_closed = False
    try:
        format_report(report, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # whoever read stdout went away: the JSON is still wanted
        silence_stdout()
        pipe_closed = True
    if args.json:
        write_json(args.json, report_json(report))  # OutputError after the report is out
    if pipe_closed:
        return ExitStatus.PIPE_CLOSED
    if report.interrupted or stop.requested():
        name = signal.Signals(stop.signum or signal.SIGINT).name
        print(f"python -m stress: interrupted by {name}; every worker's threads were joined",
              file=sys.stderr)
        return stop.exit_status
    if report.fatal:
        print(f"python -m stress: error: {report.fatal}", file=sys.stderr)
        return ExitStatus.UNEXPECTED
    if report.total == 0:
        print("python -m stress: error: no episode ran (is --seconds long enough?)", file=sys.stderr)
        return ExitStatus.UNEXPECTED
    bad = report.forbidden or any(st.breaches for st in report.per_policy.values())
    return ExitStatus.UNEXPECTED if bad and args.fail_on == "forbidden" else ExitStatus.OK


def keep_log(log_dir: Path, res: EpisodeResult, settings: SoakSettings, notes: list[str]) -> None:
    if not res.interesting:
        return
    try:
        write_dmesg_log(log_dir, res, settings)
    except OSError as e:
        notes.append(f"kernel log of seed {res.seed} not written into {log_dir}: {e.strerror or e}")


def cmd_replay(args: argparse.Namespace, policies: tuple[Policy, ...], stop: StopSignals) -> int:
    given = [flag for flag in SOAK_ONLY if hasattr(args, flag.lstrip("-").replace("-", "_"))]
    if args.inject:
        given.append("--inject")
    if given:
        raise UsageError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to "
                         f"--replay, which reruns one seed in this process "
                         f"(see 'python -m stress soak --help')")
    settings = soak_settings(args, Keep.ALL)
    check_outputs({"--json": args.json}, directories={"--log-dir": args.log_dir})
    stream_kernel_log()
    with stop.polled():  # a stop signal ends the replays; those done are still reported
        results, failed = replay_each(args, policies, settings, stop)
        if args.json:
            try:
                write_json(args.json, {"replay": args.replay, "interrupted": stop.requested(),
                                       "results": [r.to_json() for r in results]})
            except OutputError as e:
                failed.append(str(e))
    if failed:
        raise OutputError("; ".join(failed))
    if stop.requested():
        raise Interrupted()
    forbidden = any(r.grade is Grade.FORBIDDEN for r in results)
    return ExitStatus.UNEXPECTED if forbidden and args.fail_on == "forbidden" else ExitStatus.OK


def replay_each(args: argparse.Namespace, policies: tuple[Policy, ...], settings: SoakSettings,
                stop: StopSignals) -> tuple[list[EpisodeResult], list[str]]:
    """Replay the seed under each policy, printing as it goes, until stopped."""
    results: list[EpisodeResult] = []
    failed: list[str] = []
    for policy in policies:
        if stop.requested():
            break
        print(f"=== replay of soak seed {args.replay} under policy {policy.value} ===", flush=True)
        try:
            res = run_one(args.replay, policy, settings, stop=stop.requested)
        except Interrupted:
            break
        results.append(res)
        print(f"\n# verdict: {res.label} ({res.grade.value})")
        if args.log_dir:
            try:
                write_dmesg_log(Path(args.log_dir), res, settings)
                print(f"# kernel log: {args.log_dir}/seed{args.replay}-{policy.value}.log; flight recorder: "
                      f"{args.log_dir}/seed{args.replay}-{policy.value}.jsonl")
            except OSError as e:
                failed.append(f"cannot write into {args.log_dir}: {e.strerror or e}")
        failed += res.notes
        if res.explanation:
            print(f"# {res.explanation}")
        if res.error:
            print(f"# harness error: {res.error}")
        for b in res.breaches:
            print(f"# INVARIANT BREACH: {b}")
    return results, failed
