"""``python -m stress``: parse, dispatch, and turn every failure into one line
and an exit status (0 as expected, 1 unexpected or a file not written, 2 bad
usage, 128+N stopped by signal N, 141 stdout closed)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable, Sequence

from loguru import logger

from ..config import ConfigError
from ..episode import Interrupted
from ..signals import StopSignals
from .episodes import cmd_demo, cmd_list, cmd_policies, cmd_run
from .output import OutputError, UsageError, silence_stdout
from .parser import PROG, ExitStatus, build_parser
from .history import cmd_history
from .postmortem import cmd_postmortem
from .soak import cmd_soak

Command = Callable[[argparse.Namespace, StopSignals], int]
COMMANDS: dict[str, Command] = {"demo": cmd_demo, "list": cmd_list, "policies": cmd_policies, "run": cmd_run, "soak": cmd_soak,
                                "postmortem": cmd_postmortem, "history": cmd_history}


def error(message: str) -> None:
    try:
        print(f"{PROG}: error: {message}", file=sys.stderr)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # No command, or only the demo's flags: the demo (``python -m stress --speed 20``).
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["demo", *argv]
    stop = StopSignals()
    try:
        with stop.installed():
            parser = build_parser()
            # An error the top-level parser finds after a command (an unknown
            # flag) points at that command's help.
            parser.help_for = f"{PROG} {argv[0]}" if argv[0] in COMMANDS else PROG
            try:
                args = parser.parse_args(argv)
            except SystemExit as e:  # --help
                return int(e.code or 0)
            return COMMANDS[args.command](args, stop)
    except (UsageError, ConfigError) as e:
        error(str(e))
        return ExitStatus.USAGE
    except OutputError as e:
        error(str(e))
        return ExitStatus.UNEXPECTED
    except (KeyboardInterrupt, Interrupted):
        error(f"interrupted by {signal.Signals(stop.signum or signal.SIGINT).name}; every thread was joined")
        return stop.exit_status
    except BrokenPipeError:
        silence_stdout()
        return ExitStatus.PIPE_CLOSED
    finally:
        logger.remove()


__all__ = ["COMMANDS", "ExitStatus", "main"]
