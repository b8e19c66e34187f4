"""Writing the flight recorder out, and reading it back.

The ring is written through loguru with ``serialize=True``: one JSON record
per event, the event in ``record.extra`` (``event``, ``t`` in model seconds,
``seq``, ``pid``, ``comm``, ``fields``). The first record is a header
(``event="header"``) with the run's parameters and how many events the ring
lost when it wrapped. A loguru call costs 20-65 us, so this only happens for
episodes somebody wants to read.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from kthreads import Kernel
from kthreads import lost_from

FORMAT_VERSION = 1
FLIGHT_LEVEL = "FLIGHT"
_tokens = itertools.count()


def flight_level() -> str:
    """A loguru level below TRACE: every other sink (level TRACE or above)
    ignores flight records, so dumping never floods the console."""
    try:
        logger.level(FLIGHT_LEVEL)
    except ValueError:
        logger.level(FLIGHT_LEVEL, no=1)
    return FLIGHT_LEVEL


def dump_jsonl(k: Kernel, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``k``'s ring to ``path`` (JSON Lines, via a loguru sink of its own)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"flight-{next(_tokens)}-{id(k)}"
    level = flight_level()
    # An open file, not the path: loguru would read "{...}" in a path as a template.
    out = open(path, "w", encoding="utf-8")
    sink = logger.add(out, serialize=True, level=level, enqueue=False, colorize=False,
                      filter=lambda r: r["extra"].get("flight") == token)
    log = logger.bind(flight=token)
    try:
        events = k.tracer.events()
        header = dict(meta, version=FORMAT_VERSION, hz=k.clock.hz, speed=k.clock.speed,
                      nr_pages=k.zone.nr_pages, policy=k.policy.value,
                      ring_size=k.tracer.ring_size, lost=lost_from(events),
                      events=len(events))
        log.bind(event="header", t=0.0, seq=-1, pid=0, comm="", fields=header).log(level, "header")
        for seq, t, name, pid, comm, fields in events:
            log.bind(event=name, t=t, seq=seq, pid=pid, comm=comm, fields=fields).log(level, name)
    finally:
        logger.remove(sink)
        out.close()
    return path


@dataclass(frozen=True)
class Event:
    seq: int
    t: float
    name: str
    pid: int
    comm: str
    fields: dict[str, Any]
    line: int = 0  # in the log file

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


class LogError(ValueError):
    """The file is not a usable flight-recorder log (names the line)."""


@dataclass
class FlightLog:
    path: str
    header: dict[str, Any]
    events: list[Event]
    problems: list[str] = field(default_factory=list)  # lines skipped, with why

    @property
    def partial(self) -> bool:
        return bool(self.problems) or bool(self.header.get("lost"))


def load_jsonl(path: str | Path) -> FlightLog:
    """Read a log written by dump_jsonl.

    An empty file, a missing file or one whose first line is no header is an
    error naming the line. A bad line later (a truncated last line, garbage)
    is skipped and noted: the analysis is then marked partial.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise LogError(f"{path}: cannot read: not a regular file"
                           if path.exists() else f"{path}: cannot read: no such file")
        raw = path.read_bytes()
    except OSError as e:
        raise LogError(f"{path}: cannot read: {e.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    # Records end in "\n" only: str.splitlines() would also split on U+2028
    # and friends, which JSON strings may hold unescaped.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines):
        raise LogError(f"{path}: empty log")
    header: dict[str, Any] | None = None
    events: list[Event] = []
    problems: list[str] = []
    seen: set[int] = set()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            extra = json.loads(line)["record"]["extra"]
            ev = Event(int(extra["seq"]), float(extra["t"]), str(extra["event"]), int(extra["pid"]),
                       str(extra["comm"]), dict(extra.get("fields") or {}), no)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            if header is None:
                raise LogError(f"{path}:{no}: not a flight-recorder log "
                               f"({type(e).__name__}: {str(e)[:80]})") from None
            why = "truncated" if no == len(lines) else "corrupt"
            problems.append(f"line {no}: {why} record skipped ({type(e).__name__})")
            continue
        if header is None:
            if ev.name != "header":
                raise LogError(f"{path}:{no}: the first record is {ev.name!r}, not the header")
            header = ev.fields
            continue
        if ev.seq in seen:
            problems.append(f"line {no}: duplicate of event {ev.seq} skipped")
            continue
        seen.add(ev.seq)
        events.append(ev)
    assert header is not None
    expected = header.get("events")
    if isinstance(expected, int) and expected > len(events) and not problems:
        problems.append(f"{expected - len(events)} events missing at the end (truncated log)")
    return FlightLog(str(path), header, events, problems)
