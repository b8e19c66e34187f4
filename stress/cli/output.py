"""Where the CLI's output goes: checked output paths, atomic file writes, a
kernel-log stream and a stdout that survive a closed pipe.

Output files are checked only once the arguments are valid (a usage error
creates nothing), may not name an input or each other, and are written
atomically (``stress.files``): an interrupted or failed write never leaves a
truncated file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

from loguru import logger

from ..files import replaced_atomically
from ..ftrace import TraceInput, write_ftrace


class UsageError(Exception):
    """Bad input: one line, exit status 2."""


class OutputError(Exception):
    """A file could not be written: one line naming it and the OS error, exit status 1."""


def _same(a: Path, b: Path) -> bool:
    """The same file: one inode, or (not both there yet) one resolved path."""
    try:
        return a.exists() and b.exists() and a.samefile(b) or a.resolve() == b.resolve()
    except OSError:
        return False


def check_outputs(outputs: dict[str, str | None], inputs: dict[str, str] | None = None,
                  directories: dict[str, str | None] | None = None) -> None:
    """Refuse output paths that cannot work, before anything runs: a missing or
    unwritable directory, a directory where a file goes, a path given twice, an input."""
    for flag, p in {**outputs, **(directories or {})}.items():
        if p is not None and p.strip() in ("", "-"):
            raise UsageError(f"{flag} needs a file name, got {p!r} (for the terminal, name /dev/stdout)")
    given = {flag: Path(p) for flag, p in outputs.items() if p is not None}
    made = [Path(d).resolve() for d in (directories or {}).values() if d is not None]
    for flag, path in given.items():
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a directory")
        if path.exists() and not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {path}: not writable")
        # A regular file is written beside itself and renamed: its directory must be writable.
        written_through = path.is_symlink() or (path.exists() and not path.is_file())
        parent = path.parent
        in_made = any(parent.resolve() == d or d in parent.resolve().parents for d in made)
        if not written_through and not in_made and \
                not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
            raise UsageError(f"{flag} {path}: cannot create a file in {str(parent)!r} "
                             f"({'not writable' if parent.is_dir() else 'no such directory'})")
    for flag, path in given.items():
        for name, p in (inputs or {}).items():
            if _same(path, Path(p)):
                raise UsageError(f"{flag} {path} would overwrite the input {name} {p}")
    flags = list(given)
    for i, a in enumerate(flags):
        for b in flags[i + 1:]:
            if _same(given[a], given[b]):
                raise UsageError(f"{a} and {b} name the same file {given[a]}")
    for flag, d in (directories or {}).items():
        if d is None:
            continue
        path = Path(d)
        for other, file in given.items():
            if _same(path, file):
                raise UsageError(f"{other} and {flag} name the same path {file}")
        if path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {path}: not a directory")
        try:  # an output directory: made now that the arguments are valid
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{flag} {path}: cannot create it: {e.strerror or e}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path}: not writable")


def write_file(path: str | Path, writer: Callable[[TextIO], None]) -> None:
    """Write a text file atomically (``stress.files``); ``OutputError`` on failure."""
    try:
        with replaced_atomically(path) as staged, open(staged, "w", encoding="utf-8") as f:
            writer(f)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def write_json(path: str | Path, data: Any) -> None:
    def dump(f: TextIO) -> None:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
    write_file(path, dump)


def write_ftrace_file(path: str | Path, src: TraceInput) -> int:
    """Write a trace file (``stress.ftrace``) atomically; its number of trace lines."""
    count = [0]

    def dump(f: TextIO) -> None:
        count[0] = write_ftrace(src, f)
    write_file(path, dump)
    return count[0]


class KernelLogSink:
    """The dmesg-style kernel log, streamed as it happens. A closed stream
    (``| head``) or a write error silences it instead of failing the run."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out
        self.broken = False

    def __call__(self, message: Any) -> None:
        if self.broken:
            return
        try:
            stream = self.out or sys.stderr
            stream.write(str(message))
            stream.flush()
        except (OSError, ValueError):
            self.broken = True


def stream_kernel_log(out: TextIO | None = None) -> None:
    """The CLI, not the library, decides where kernel messages go: stderr, at INFO."""
    logger.remove()
    logger.add(KernelLogSink(out), format="{message}", level="INFO", filter="kthreads",
               colorize=False, catch=False)
    logger.enable("kthreads")


def silence_stdout() -> None:
    """After a closed pipe on stdout: send whatever else is printed nowhere (so the
    interpreter's final flush cannot fail either)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
