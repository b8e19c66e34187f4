"""The scripted commands: ``demo``, ``list`` and ``run``, and how an episode is
shown (kernel log streaming live on stderr; trace, verdict and table on stdout)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence, TextIO

from kthreads import Policy, SchedConfig
from kthreads.kernel import POLICY_OPS

from ..config import DEMO_TIMING, RUN_TIMING, TIMING_FLAGS, Timing, build
from ..episode import EpisodeConfig, EpisodeResult, Interrupted, run_episode, write_log
from ..ftrace import TraceInput
from ..postmortem import LogError, load_jsonl
from ..recording import Recording, load_recording
from ..scenarios import SCENARIOS, Scenario, get_scenario
from ..signals import StopSignals
from .output import (OutputError, UsageError, check_outputs, silence_stdout, stream_kernel_log, write_ftrace_file,
                     write_json)
from .parser import SCHED_FLAGS, ExitStatus

DEMO_SCENARIO = "lockup-mutex"
def policy_label(policy: Policy) -> str:
    """The banner's name of a design's tree."""
    return POLICY_OPS[policy].label


def print_episode(res: EpisodeResult, out: TextIO) -> None:
    """What follows the kernel log and the lab's lines (which stream live): the verdict."""
    print(f"\n# verdict: {res.label} ({res.grade.value})", file=out)
    if res.explanation:
        print(f"# {res.explanation}", file=out)
    if res.error:
        print(f"# harness error: {res.error}", file=out)
    for b in res.breaches:
        print(f"# INVARIANT BREACH: {b}", file=out)


def verdict_table(results: Sequence[EpisodeResult], out: TextIO) -> None:
    rows = [("scenario", "policy", "expected", "observed", "grade", "kill->alloc ok", "wall")]
    for r in results:
        expected = "|".join(o.value for o in SCENARIOS[r.name].expected(Policy(r.policy)))
        rec = r.recovery_seconds
        rows.append((r.name, r.policy, expected, r.outcome.value, r.grade.value,
                     "-" if rec is None else f"{rec * 1000:.1f} ms (model)", f"{r.wall_seconds:.2f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)


def timing_note(timing: Timing, out: TextIO) -> None:
    if timing.verdict_real_seconds > 10:
        print(f"(at --speed {timing.speed:g} a lockup verdict can take up to "
              f"{timing.verdict_real_seconds:.0f} s of real time)", file=out)


def cmd_demo(args: argparse.Namespace, stop: StopSignals) -> int:
    out = sys.stdout
    t0 = time.monotonic()
    timing = build(DEMO_TIMING, args, TIMING_FLAGS)
    sc = get_scenario(DEMO_SCENARIO)
    if not args.quiet:
        stream_kernel_log()
    # Polled: a stop signal unwinds the running episode (every thread joined)
    # instead of interrupting it; no episode starts after it.
    with stop.polled():
        print(f"The OOM-reaper lab: scenario {sc.name}.\n{sc.story}\n"
              f"(speed {timing.speed:g}x: one model second is {1000 / timing.speed:.0f} ms; "
              f"hung_task_timeout_secs={timing.hung_task_timeout:g})", file=out)
        timing_note(timing, out)
        results = []
        for policy in (Policy.NONE, Policy.PATCH1):
            if stop.requested():
                raise Interrupted()
            print(f"\n=== {sc.name} under policy {policy.value} ({policy_label(policy)}) ===", file=out)
            out.flush()
            res = run_episode(sc, EpisodeConfig(policy=policy, timing=timing), stop=stop.requested)
            print_episode(res, out)
            results.append(res)
        print(f"\n=== verdicts (demo took {time.monotonic() - t0:.2f} s) ===", file=out)
        verdict_table(results, out)
    if stop.requested():
        raise Interrupted()
    return ExitStatus.OK if all(r.expected for r in results) else ExitStatus.UNEXPECTED


def cmd_policies(args: argparse.Namespace, stop: StopSignals) -> int:
    print_policies(sys.stdout)
    return ExitStatus.OK


def print_policies(out: TextIO) -> None:
    """One paragraph per design, in the kernel's order: name, commit, title, change."""
    width = max(len(p.value) for p in Policy)
    cwidth = max(len(POLICY_OPS[p].commit) for p in Policy)
    for policy in Policy:
        ops = POLICY_OPS[policy]
        print(f"{policy.value:<{width}}  {ops.commit:<{cwidth}}  {ops.title}", file=out)
        print(f"{'':<{width}}  {ops.change}", file=out)


def cmd_list(args: argparse.Namespace, stop: StopSignals) -> int:
    if args.verbose:
        print("policies (python -m stress policies):")
        print_policies(sys.stdout)
        print()
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


def sched_config(args: argparse.Namespace, default: SchedConfig = SchedConfig()) -> SchedConfig:
    """The scheduling flags given, over ``default`` (checked by the parser one by one)."""
    return SchedConfig(getattr(args, "sched", default.strategy), seed=getattr(args, "sched_seed", default.seed),
                       pct_depth=getattr(args, "pct_depth", default.pct_depth))


def refuse_with_replay(args: argparse.Namespace, flags: Sequence[str]) -> None:
    """A replay runs with the recording's own settings: flags that would
    change them are refused, not ignored."""
    given = [f for f in flags if hasattr(args, f.lstrip("-").replace("-", "_"))]
    if given:
        raise UsageError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to "
                         f"--replay FILE, which re-runs the recording with its own settings")


def run_config(args: argparse.Namespace) -> tuple[Scenario, EpisodeConfig, Recording | None]:
    """What ``run`` runs: the scenario and flags given, or a recording to replay."""
    if args.replay is None:
        if args.scenario is None:
            raise UsageError("give a SCENARIO (see 'python -m stress list') or --replay FILE "
                             "(see 'python -m stress run --help')")
        timing = build(RUN_TIMING, args, TIMING_FLAGS)
        return (get_scenario(args.scenario),
                EpisodeConfig(policy=args.policy or Policy.PATCH1, seed=getattr(args, "seed", 0),
                              timing=timing, sched=sched_config(args)), None)
    refuse_with_replay(args, ["--seed", *SCHED_FLAGS, *(f.option for f in TIMING_FLAGS)])
    rec = load_recording(args.replay)
    if rec.scenario is None:
        raise UsageError(f"{args.replay} records a soak episode: replay it with "
                         f"'python -m stress soak --replay {args.replay}'")
    if rec.scenario not in SCENARIOS:
        raise UsageError(f"{args.replay} records scenario {rec.scenario!r}, which this version does not have")
    if args.scenario is not None and args.scenario != rec.scenario:
        raise UsageError(f"{args.replay} records scenario {rec.scenario}, not {args.scenario}")
    if args.policy is not None and args.policy is not rec.policy:
        raise UsageError(f"{args.replay} records policy {rec.policy.value}, not {args.policy.value}")
    return (get_scenario(rec.scenario),
            EpisodeConfig(policy=rec.policy, seed=rec.seed, timing=rec.timing, sched=rec.replay_config), rec)


def replay_verdict(rec: Recording, res: EpisodeResult, out: TextIO) -> bool:
    """Compare a replay with its recording; True if it reproduced it."""
    same_outcome = res.label == rec.label
    exact = rec.exact
    same = same_outcome and (not exact or res.event_digest == rec.event_digest)
    stats = res.sched_stats
    if exact:
        detail = ("the same event digest" if res.event_digest == rec.event_digest else
                  f"event digest {res.event_digest} where the recording has {rec.event_digest}"
                  + (f"; the schedule diverged at step {stats['replay_diverged_at_step']}"
                     if stats.get("replay_diverged_at_step") is not None else "")
                  + first_difference(rec, res))
    else:
        div = stats.get("follow_diverged_at_event")
        detail = (f"followed {stats.get('follow_followed', 0)} of {stats.get('follow_recorded', 0)} "
                  f"recorded events" + (f"; diverged at recorded event {div}" if div is not None else ""))
    print(f"\n# replay of {rec.path} ({rec.sched} run): {res.label}, recorded {rec.label}; {detail}: "
          f"{'REPRODUCED' if same else 'NOT REPRODUCED'}", file=out)
    return same


def first_difference(rec: Recording, res: EpisodeResult) -> str:
    """Where a replay's events first differ from a recorded log's (empty when
    the recording holds no events, or the replay's kernel is gone)."""
    if res.kernel is None or not rec.path.endswith(".jsonl"):
        return ""
    try:
        recorded = load_jsonl(rec.path).events
    except LogError:
        return ""
    replayed = res.kernel.tracer.events()
    for i, (a, b) in enumerate(zip(recorded, replayed)):
        if (a.t, a.name, a.pid, a.fields) != (b.t, b.name, b.pid, b.fields):
            return (f"; first differing event #{i}: recorded {a.name} pid {a.pid} at {a.t:.6f} s, "
                    f"replayed {b.name} pid {b.pid} at {b.t:.6f} s")
    if len(recorded) != len(replayed):
        return f"; the replay recorded {len(replayed)} events where the log has {len(recorded)}"
    return ""


def cmd_run(args: argparse.Namespace, stop: StopSignals) -> int:
    sc, cfg, rec = run_config(args)
    timing = cfg.timing
    check_outputs({"--json": args.json, "--log": args.log, "--ftrace": args.ftrace})
    if not args.quiet:
        stream_kernel_log()
    # Polled: a stop signal during the episode unwinds it (every thread joined,
    # nothing written); one after it still gets every file written.
    with stop.polled():
        print(f"=== {sc.name} under policy {cfg.policy.value} ({policy_label(cfg.policy)}), "
              f"seed {cfg.seed}, sched {sched_label(cfg.sched)} ===", flush=True)
        timing_note(timing, sys.stdout)
        res = run_episode(sc, cfg, stop=stop.requested)
        pipe_closed = False
        reproduced = True
        try:
            print_episode(res, sys.stdout)
            print_sched(res, sys.stdout)
            if rec is not None:
                reproduced = replay_verdict(rec, res, sys.stdout)
            print()
            verdict_table([res], sys.stdout)
        except BrokenPipeError:  # whoever read stdout went away: the files are still wanted
            silence_stdout()
            pipe_closed = True
        failed = write_run_outputs(args, sc, cfg, res)
    if failed:
        raise OutputError("; ".join(failed))
    if pipe_closed:
        return ExitStatus.PIPE_CLOSED
    if stop.requested():
        raise Interrupted()
    return ExitStatus.OK if res.expected and reproduced else ExitStatus.UNEXPECTED


def sched_label(sched: SchedConfig) -> str:
    if sched.strategy.value in ("random", "pct"):
        extra = f", depth {sched.pct_depth}" if sched.strategy.value == "pct" else ""
        return f"{sched.strategy.value} (seed {sched.seed}{extra})"
    return sched.strategy.value


def print_sched(res: EpisodeResult, out: TextIO) -> None:
    """One line of the lab's about the scheduling: what replays the run."""
    st = res.sched_stats
    if res.sched == "free":
        print(f"# sched: free (real threads); event digest {res.event_digest}; --log or --json "
              f"keeps the event order, and 'run --replay FILE' re-runs it", file=out)
        return
    line = (f"# sched: {res.sched}; {st.get('steps', 0)} scheduling points, {st.get('switches', 0)} "
            f"switches, {st.get('tasks', 0)} tasks; event digest {res.event_digest}")
    if res.sched == "pct":
        d, n, k, big_k = st["pct_depth"], st["pct_n"], st["pct_k"], st["pct_steps"]
        if res.pct_bound is not None:
            line += (f"; PCT guarantee for a bug of depth {d}: 1/(n K^(d-1)) with n={n} tasks, "
                     f"change points in the first K={big_k} of its k={k} steps: {res.pct_bound:.3g}")
        else:
            line += (f"; no PCT guarantee for depth {d}: the run took k={k} steps, more than the "
                     f"K={big_k} its change points were drawn from")
    print(line, file=out)


def write_run_outputs(args: argparse.Namespace, sc: Scenario, cfg: EpisodeConfig,
                      res: EpisodeResult) -> list[str]:
    """Write ``--log`` and ``--json``; the failures, one line each."""
    failed: list[str] = []
    if args.log:
        try:
            write_log(res, args.log, {})
            lost = res.kernel.tracer.lost() if res.kernel is not None else 0  # as written
            print(f"\nflight recorder written to {args.log}; explain it with: "
                  f"python -m stress postmortem {args.log}"
                  + (f"\n(the ring wrapped: its {lost} oldest events are lost; --ring-size "
                     f"{cfg.timing.ring_size} is too small for this episode)" if lost else ""))
        except OSError as e:
            failed.append(f"cannot write {args.log}: {e.strerror or e}")
    if args.ftrace:
        try:
            n = write_ftrace_file(args.ftrace, TraceInput.from_kernel(res.kernel))
            print(f"trace written to {args.ftrace} ({n} lines)")
        except OutputError as e:
            failed.append(str(e))
    if args.json:
        d = res.to_json()
        d["expected_outcomes"] = [o.value for o in sc.expected(cfg.policy)]
        try:
            write_json(args.json, d)
        except OutputError as e:
            failed.append(str(e))
    return failed
