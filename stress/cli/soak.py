"""``soak``: the randomized runs, and ``soak --replay`` of one recorded seed."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path

from kthreads import Policy, SchedConfig

from ..config import SOAK_TIMING, TIMING_FLAGS, WORKLOAD_FLAGS, build
from ..episode import EpisodeResult, Interrupted, Keep
from ..recording import Recording, load_recording
from ..outcomes import Grade
from ..signals import StopSignals
from ..soak import SoakConfig, SoakSettings, format_report, progress_printer, report_json, run_one, run_soak
from ..soak.report import write_dmesg_log
from ..workload import WorkloadParams
from .output import OutputError, UsageError, check_outputs, silence_stdout, stream_kernel_log, write_json
from .episodes import refuse_with_replay, replay_verdict, sched_config, sched_label
from .parser import SCHED_FLAGS, SOAK_ONLY, ExitStatus

#: Where a free-mode soak keeps the logs of its lockups when --log-dir is not
#: given: a free run replays only from its recorded event order.
FREE_LOG_DIR = "soak-logs"


def soak_settings(args: argparse.Namespace, keep: Keep) -> SoakSettings:
    try:  # each flag is checked alone by the parser; here they are checked together
        params = build(WorkloadParams(), args, WORKLOAD_FLAGS)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return SoakSettings(params=params, timing=build(SOAK_TIMING, args, TIMING_FLAGS), keep=keep,
                        inject=tuple(args.inject), log_dir=args.log_dir,
                        sched=sched_config(args, SoakSettings().sched))


def cmd_soak(args: argparse.Namespace, stop: StopSignals) -> int:
    # By default the A/B the lab was built for: 4.6 without and with the reaper.
    policies = tuple(dict.fromkeys(p for group in args.policy for p in group)) if args.policy \
        else (Policy.NONE, Policy.PATCH1)
    if args.replay is not None:
        return cmd_replay(args, policies, stop)
    if args.log_dir is None and not sched_config(args, SoakSettings().sched).controlled:
        args.log_dir = FREE_LOG_DIR
        print(f"soak: free scheduling: the logs of lockups go into {FREE_LOG_DIR}/ (--log-dir), "
              f"where their replay commands find their recorded event order", flush=True)
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
    sched = settings.sched
    how = f"sched {sched_label(sched)}"
    print(f"soak: policies {', '.join(p.value for p in policies)}; "
          + (f"{cfg.episodes} episodes each" if cfg.episodes else f"{cfg.seconds:g} s")
          + f"; seeds from {cfg.seed}; {cfg.workers} worker process(es); {how}; "
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
    rec = None
    seed = replay_seed(args.replay)
    if seed is None:  # a recorded episode: its own workload, timing, policy and schedule
        refuse_with_replay(args, [*SCHED_FLAGS, *(f.option for f in TIMING_FLAGS),
                                  *(f.option for f in WORKLOAD_FLAGS)])
        rec = load_recording(args.replay)
        if rec.scenario is not None:
            raise UsageError(f"{args.replay} records scenario {rec.scenario}: replay it with "
                             f"'python -m stress run --replay {args.replay}'")
        if args.policy and rec.policy not in policies:
            raise UsageError(f"{args.replay} records policy {rec.policy.value}, not "
                             f"{', '.join(p.value for p in policies)}")
        seed, policies = rec.seed, (rec.policy,)
        settings = replace(settings, params=rec.workload, timing=rec.timing)
    check_outputs({"--json": args.json}, directories={"--log-dir": args.log_dir})
    stream_kernel_log()
    with stop.polled():  # a stop signal ends the replays; those done are still reported
        results, failed, unreproduced = replay_each(args, seed, policies, settings, stop, rec)
        if args.json:
            try:
                write_json(args.json, {"replay": args.replay if rec is not None else seed,
                                       "interrupted": stop.requested(),
                                       "results": [r.to_json() for r in results]})
            except OutputError as e:
                failed.append(str(e))
    if failed:
        raise OutputError("; ".join(failed))
    if stop.requested():
        raise Interrupted()
    forbidden = any(r.grade is Grade.FORBIDDEN for r in results)
    if unreproduced:
        return ExitStatus.UNEXPECTED
    return ExitStatus.UNEXPECTED if forbidden and args.fail_on == "forbidden" else ExitStatus.OK


def replay_seed(text: str) -> int | None:
    """``--replay``'s argument as a seed, or None for a file."""
    if not (text.isascii() and text.isdigit()):
        if text.isascii() and text.lstrip("-").isdigit():
            raise UsageError(f"argument --replay: a seed is between 0 and {2 ** 63 - 1}, got {text}")
        return None
    seed = int(text)
    if seed > 2 ** 63 - 1:
        raise UsageError(f"argument --replay: a seed is between 0 and {2 ** 63 - 1}, got {text}")
    return seed


def replay_each(args: argparse.Namespace, seed: int, policies: tuple[Policy, ...],
                settings: SoakSettings, stop: StopSignals,
                rec: Recording | None) -> tuple[list[EpisodeResult], list[str], bool]:
    """Replay the seed under each policy (or the recording), printing as it
    goes, until stopped; also says whether a recording was not reproduced."""
    results: list[EpisodeResult] = []
    failed: list[str] = []
    unreproduced = False
    if rec is None and not settings.sched.controlled:
        print("# --sched free: the seed fixes the workload, not the interleaving; a lockup "
              "replays exactly from its log (--replay FILE) or under --sched pct|random")
    for policy in policies:
        if stop.requested():
            break
        print(f"=== replay of soak seed {seed} under policy {policy.value}"
              + (f" from {rec.path}" if rec else "") + " ===", flush=True)
        try:
            res = run_one(seed, policy, settings, stop=stop.requested,
                          sched=rec.replay_config if rec else None)
        except Interrupted:
            break
        results.append(res)
        print(f"\n# verdict: {res.label} ({res.grade.value})")
        if rec is not None:
            unreproduced |= not replay_verdict(rec, res, sys.stdout)
        if args.log_dir:
            try:
                write_dmesg_log(Path(args.log_dir), res, settings)
                print(f"# kernel log: {args.log_dir}/seed{seed}-{policy.value}.log; flight recorder: "
                      f"{args.log_dir}/seed{seed}-{policy.value}.jsonl")
            except OSError as e:
                failed.append(f"cannot write into {args.log_dir}: {e.strerror or e}")
        failed += res.notes
        if res.explanation:
            print(f"# {res.explanation}")
        if res.error:
            print(f"# harness error: {res.error}")
        for b in res.breaches:
            print(f"# INVARIANT BREACH: {b}")
    return results, failed, unreproduced
