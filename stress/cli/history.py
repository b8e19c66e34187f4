"""``history``: every scenario under every policy, as a matrix (``stress.history``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from kthreads import Policy

from ..history import default_sched, matrix_text, run_history, to_html, to_json
from ..scenarios import SCENARIOS
from ..signals import StopSignals
from .output import OutputError, check_outputs, write_file, write_json
from .parser import ExitStatus


def cmd_history(args: argparse.Namespace, stop: StopSignals) -> int:
    check_outputs({"--json": args.json, "--html": args.html})
    policies = tuple(dict.fromkeys(p for group in args.policy for p in group)) if args.policy \
        else tuple(Policy)
    scenarios = [SCENARIOS[n] for n in dict.fromkeys(args.scenario or SCENARIOS)]
    sched = default_sched(args.sched_seed)
    t0 = time.monotonic()
    print(f"history: {len(scenarios)} scenarios x {len(policies)} policies on the controlled CPU "
          f"(pct, seed {sched.seed}); python -m stress policies says what each design changed", flush=True)

    def dot(cell: object) -> None:
        if not args.quiet:
            print("." if getattr(cell, "match") else "!", end="", flush=True, file=sys.stderr)

    with stop.polled():
        cells = run_history(policies, scenarios, sched, stop=stop.requested, progress=dot)
    if not args.quiet:
        print(file=sys.stderr)
    wall = time.monotonic() - t0
    for line in matrix_text(cells, policies):
        print(line)
    bad = [c for c in cells if not c.match]
    print(f"\n{len(cells)} cells in {wall:.1f} s: {len(cells) - len(bad)} as expected, {len(bad)} not"
          + ("" if not bad else " (marked !)"))
    for c in bad:
        want = ", ".join(o.value for o in c.expected + c.acceptable)
        print(f"  {c.scenario} under {c.policy.value}: {c.label}, expected {want}"
              + (f"; error: {c.error}" if c.error else ""))
    failed: list[str] = []
    if args.json:
        try:
            write_json(args.json, {**to_json(cells, policies, sched), "wall_seconds": wall})
        except OutputError as e:
            failed.append(str(e))
    if args.html:
        page = to_html(cells, policies)

        def write(f: TextIO) -> None:
            f.write(page)
        try:
            write_file(args.html, write)
        except OutputError as e:
            failed.append(str(e))
    if failed:
        raise OutputError("; ".join(failed))
    return ExitStatus.OK if not bad else ExitStatus.UNEXPECTED
