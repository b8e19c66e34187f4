"""The command line's grammar: every command, its flags (from the one flag
table in ``stress.config``), and one-line usage errors that name the
command's own ``--help``."""

from __future__ import annotations

import argparse
import enum
import re
from typing import NoReturn

from kthreads import Policy, Sched

from ..config import (DEMO_TIMING, RUN_TIMING, SOAK_TIMING, TIMING_FLAGS, WORKLOAD_FLAGS, Timing,
                      add_flags, int_in, number_in)
from ..scenarios import SCENARIOS, get_scenario
from ..soak.settings import SoakSettings
from ..workload import WorkloadParams
from .output import UsageError

PROG = "python -m stress"


class ExitStatus(enum.IntEnum):
    OK = 0
    UNEXPECTED = 1  # an unexpected outcome, a breach, a broken step, a file not written
    USAGE = 2
    PIPE_CLOSED = 141  # 128 + SIGPIPE: whoever read stdout went away
    # Stopped by a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM).


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (exit status 2), naming the
    ``--help`` of the command that was being parsed (``help_for``, when set,
    names it for errors the top-level parser finds after a command)."""

    help_for: str | None = None

    def error(self, message: str) -> NoReturn:
        # "argument --pressure: --pressure must be ...": say the flag once.
        message = re.sub(r"^argument (\S+): \1:? ", r"argument \1: ", message)
        raise UsageError(f"{message} (see '{self.help_for or self.prog} --help')")


def policy_type(text: str) -> Policy:
    try:
        return Policy.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def policies_type(text: str) -> tuple[Policy, ...]:
    """A policy, or "all" for every design in history's order (soak, history)."""
    if text == "all":
        return tuple(Policy)
    return (policy_type(text),)


def scenario_type(text: str) -> str:
    try:
        return get_scenario(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def inject_type(text: str) -> tuple[str, int]:
    kind, _, seed = text.partition(":")
    if kind not in ("crash", "hang") or not seed.isdigit():
        raise argparse.ArgumentTypeError("--inject takes crash:SEED or hang:SEED")
    return kind, int(seed)


def add_timing(p: argparse.ArgumentParser, preset: Timing, title: str = "timing") -> None:
    add_flags(p.add_argument_group(title), TIMING_FLAGS, preset)


#: What --sched accepts (replay and follow are what --replay uses).
SCHED_CHOICES = (Sched.FREE, Sched.RANDOM, Sched.PCT)


def sched_type(text: str) -> Sched:
    try:
        s = Sched.parse(text)
    except ValueError:
        s = None
    if s not in SCHED_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown strategy {text!r} (choose from "
                                         f"{', '.join(c.value for c in SCHED_CHOICES)})")
    return s


#: The scheduling flags (left out of the namespace unless given: a replay refuses them).
SCHED_FLAGS = ("--sched", "--sched-seed", "--pct-depth")


def add_sched(p: argparse.ArgumentParser, default: Sched, what: str) -> None:
    g = p.add_argument_group("scheduling")
    g.add_argument("--sched", type=sched_type, default=argparse.SUPPRESS, metavar="MODE",
                   help=f"free: real threads as the OS runs them; random | pct: one task at a time "
                        f"on virtual time, the strategy seeded (default {default.value}{what})")
    g.add_argument("--sched-seed", type=int_in("--sched-seed", 0, 2 ** 63 - 1), default=argparse.SUPPRESS,
                   metavar="N", help="the strategy's seed (default 0)")
    g.add_argument("--pct-depth", type=int_in("--pct-depth", 1, 64), default=argparse.SUPPRESS,
                   metavar="D", help="PCT's bug depth d: d-1 priority change points (default 3)")


def build_parser() -> Parser:
    parser = Parser(prog=PROG,
                    description="Watch the Linux 4.6 OOM-reaper lockup happen on real threads, "
                                "and watch the reaper break it. With no command: the headline demo.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the headline demo (also the default)",
                          description="lockup-mutex under 'none', then under 'patch1'.")
    add_timing(demo, DEMO_TIMING)
    demo.add_argument("-q", "--quiet", action="store_true", help="do not stream the kernel log")

    lst = sub.add_parser("list", help="the scenarios, one line each",
                         description="List the scenarios and what each shows.")
    lst.add_argument("-v", "--verbose", action="store_true", help="the whole story and expectations")

    sub.add_parser("policies", help="the kernel designs, in the order of the kernel's history",
                   description="Each policy is a kernel tree: its commit, title and what it changed "
                               "from the one before.")

    hist = sub.add_parser("history", help="every scenario under every policy, as a matrix",
                          description="Run every scenario under every policy on the controlled CPU and print "
                                      "the matrix of observed outcomes; '!' marks one that differs from the "
                                      "scenario's expectation. Exit 0 only when every cell matches.")
    hist.add_argument("--policy", type=policies_type, action="append", metavar="P",
                      help="only these policies (repeatable; default: all, in history's order)")
    hist.add_argument("--scenario", type=scenario_type, action="append", metavar="S",
                      help="only these scenarios (repeatable; default: all)")
    hist.add_argument("--sched-seed", type=int_in("--sched-seed", 0, 2 ** 63 - 1), default=0, metavar="N",
                      help="the PCT seed of every cell (default 0)")
    hist.add_argument("--json", metavar="FILE", help="write the matrix as JSON")
    hist.add_argument("--html", metavar="FILE", help="write the matrix as a self-contained HTML table")
    hist.add_argument("-q", "--quiet", action="store_true", help="no progress dots")

    run = sub.add_parser("run", help="one episode of one scenario",
                         description="Run one scenario under one policy and print its log and verdict.")
    run.add_argument("scenario", type=scenario_type, metavar="SCENARIO", nargs="?",
                     help=f"one of: {', '.join(SCENARIOS)} (optional with --replay)")
    run.add_argument("--policy", type=policy_type, default=None,
                     help=f"{' | '.join(p.value for p in Policy)} (default patch1)")
    run.add_argument("--seed", type=int_in("--seed", 0, 2 ** 63 - 1), default=argparse.SUPPRESS,
                     help="varies the sizes a little, deterministically (default 0)")
    run.add_argument("--json", metavar="FILE", help="write the result as JSON")
    run.add_argument("--log", metavar="FILE", help="write the flight recorder (JSONL) for 'postmortem'")
    run.add_argument("--ftrace", metavar="FILE",
                     help="write the trace as /sys/kernel/tracing/trace would show it on the policy's "
                          "kernel (sched_switch and sched_wakeup with --sched random|pct)")
    run.add_argument("-q", "--quiet", action="store_true", help="do not stream the kernel log")
    run.add_argument("--replay", metavar="FILE",
                     help="re-run a recorded episode with its own settings and schedule: a result "
                          "from 'run --json' or a log from 'run --log' (a controlled run exactly, a "
                          "free one following its recorded event order)")
    add_timing(run, RUN_TIMING)
    add_sched(run, Sched.FREE, "")

    add_soak_parser(sub)

    pm = sub.add_parser("postmortem", help="explain an episode from its flight-recorder log alone",
                        description="Rebuild a per-pid timeline and a diagnosis from a JSONL log "
                                    "written by 'run --log' or 'soak --log-dir'.")
    pm.add_argument("log", metavar="LOG.jsonl")
    pm.add_argument("--html", metavar="FILE", help="write a self-contained HTML timeline")
    pm.add_argument("--json", metavar="FILE", help="write the analysis as JSON")
    pm.add_argument("--ftrace", metavar="FILE",
                    help="write the log's trace as /sys/kernel/tracing/trace would show it")
    return parser


#: soak flags that mean nothing to a replay (given with --replay: a usage error).
SOAK_ONLY = ("--seed", "--jobs", "--verify-replays", "--episode-timeout")


def add_soak_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="randomized workloads, many episodes, an outcome histogram per policy",
                       description="Soak: the same seeded random workloads under each --policy, in "
                                   "worker processes; prints how often each design locks up.")
    p.add_argument("--policy", type=policies_type, action="append", metavar="P",
                   help=f"{' | '.join(p.value for p in Policy)}, or all (every design, in history's "
                        f"order); repeat to compare (default: none and patch1)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--episodes", type=int_in("--episodes", 1, 10 ** 9), metavar="N",
                     help="episodes per policy (default 100)")
    how.add_argument("--seconds", type=number_in("--seconds", 0.0, 7 * 86400.0, lo_open=True), metavar="S",
                     help="run for S seconds of wall time instead")
    how.add_argument("--replay", metavar="SEED|FILE",
                     help="rerun one episode in this process and print its log: a seed (exact "
                          "under --sched random|pct), or a log from --log-dir (its own settings and "
                          "schedule; a free one is followed by its recorded event order). A file "
                          "named by digits alone needs a path: ./007")
    p.add_argument("--seed", type=int_in("--seed", 0, 2 ** 62), default=argparse.SUPPRESS,
                   help="first episode seed (default 0)")
    p.add_argument("--jobs", type=int_in("--jobs", 0, 256), default=argparse.SUPPRESS, metavar="J",
                   help="worker processes (default 0: one per core)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--log-dir", metavar="DIR",
                   help="write the kernel log (.log) and flight recorder (.jsonl) of every lockup "
                        "or forbidden episode there (with --replay: of that episode)")
    p.add_argument("--fail-on", choices=("forbidden", "never"), default="forbidden",
                   help="exit 1 on a forbidden outcome or breach (default), or never")
    add_flags(p.add_argument_group("workload"), WORKLOAD_FLAGS, WorkloadParams())
    add_timing(p, SOAK_TIMING, "episode")
    add_sched(p, SoakSettings().sched.strategy,
              "; each episode's seed is derived from N and the workload seed")
    e = p.add_argument_group("runner")
    e.add_argument("--episode-timeout", type=number_in("--episode-timeout", 1.0, 3600.0),
                   default=argparse.SUPPRESS, metavar="SECS",
                   help="real seconds before a worker is declared hung (default 30)")
    e.add_argument("--verify-replays", type=int_in("--verify-replays", 0, 100), default=argparse.SUPPRESS,
                   metavar="N", help="rerun a few lockup episodes N times each to measure replay "
                                     "fidelity (default 3)")
    p.add_argument("--inject", type=inject_type, action="append", default=[], help=argparse.SUPPRESS)
