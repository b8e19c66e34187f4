"""``postmortem``: explain an episode from its flight-recorder log alone."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..ftrace import FtraceError, TraceInput
from ..postmortem import LogError, analyze, format_text, load_jsonl, render_html, to_json
from ..signals import StopSignals
from .output import OutputError, check_outputs, write_file, write_ftrace_file, write_json
from .parser import ExitStatus


def cmd_postmortem(args: argparse.Namespace, stop: StopSignals) -> int:
    check_outputs({"--json": args.json, "--html": args.html, "--ftrace": args.ftrace}, inputs={"LOG": args.log})
    try:
        log = load_jsonl(args.log)
    except LogError as e:
        print(f"python -m stress: error: {e}", file=sys.stderr)
        return ExitStatus.USAGE
    src = None
    if args.ftrace:
        try:
            src = TraceInput.from_log(log)
        except FtraceError as e:
            print(f"python -m stress: error: {args.log}: {e}", file=sys.stderr)
            return ExitStatus.USAGE
    a = analyze(log)
    print(format_text(a))
    sys.stdout.flush()
    failed: list[str] = []
    if args.json:
        try:
            write_json(args.json, to_json(a))
        except OutputError as e:
            failed.append(str(e))
    if args.html:
        html = render_html(a)

        def page(f: TextIO) -> None:
            f.write(html)
        try:
            write_file(args.html, page)
            print(f"\nHTML timeline written to {args.html}")
        except OutputError as e:
            failed.append(str(e))
    if src is not None:
        try:
            n = write_ftrace_file(args.ftrace, src)
            print(f"\ntrace written to {args.ftrace} ({n} lines)")
        except OutputError as e:
            failed.append(str(e))
    if failed:
        raise OutputError("; ".join(failed))
    return ExitStatus.OK
