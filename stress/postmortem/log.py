"""The flight recorder on disk: a Kernel's ring written as JSON Lines through
loguru (``dump_jsonl``), and read back into checked events (``load_jsonl``).

Each line is one loguru record (``serialize=True``) with the event in
``record.extra``: ``event``, ``t`` (model seconds), ``seq``, ``pid``,
``comm``, ``fields``, ``cur`` (the task that recorded it) and ``pos`` (the
order events were recorded in, shared with the scheduler's records). After
the events, a controlled run's context switches and wake-ups follow in
``sched_records`` lines (seq -2, -3, ...). The first line is a header (``event="header"``): the
run's parameters (``meta`` from the caller, e.g. ``test``, ``scenario``,
``seed``, ``lockup_window``), the kernel's config, and how many events were
written and lost when the ring wrapped. A loguru call costs 20-65 us, so
this happens only for runs somebody wants to read.

Reading trusts nothing: a line that is not a well-formed event (bad JSON,
nesting too deep, numbers that are not finite, wrong types, longer than
``MAX_LINE_BYTES``) is skipped and noted, and the log is then partial.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from loguru import logger

from kthreads import SCHED_SWITCH, SCHED_WAKEUP, Ev, Kernel, lost_from

FORMAT_VERSION = 2  # 2: events carry cur and pos; the header has comms; sched_records lines
FLIGHT_LEVEL = "FLIGHT"
MAX_LINE_BYTES = 4 << 20  # a lockup report with every task's stack stays far below
MAX_EVENTS = 1 << 21  # 32x the default ring: more than any dump writes
MAX_NOTED = 20  # skipped lines named one by one; the rest are counted
EVENT_NAMES = frozenset(member.value for member in Ev)
#: Lines of scheduler records (``Tracer.sched_log``), and how many each holds.
SCHED_RECORDS = "sched_records"
SCHED_CHUNK = 200  # about 12 kB a line, as loguru serialises it


def flight_level() -> str:
    """A loguru level below TRACE: every other sink (level TRACE or above)
    ignores flight records, so dumping never floods the console."""
    try:
        logger.level(FLIGHT_LEVEL)
    except ValueError:
        logger.level(FLIGHT_LEVEL, no=1)
    return FLIGHT_LEVEL


def _plain(value: Any) -> Any:
    """A config value as JSON has it (enums by value)."""
    if isinstance(value, enum.Enum):
        return value.value
    return value


def dump_jsonl(k: Kernel, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``k``'s ring to ``path`` (JSON Lines, via a loguru sink of its own).

    The header holds ``meta`` plus the format version, ``hz``, ``speed``,
    ``nr_pages``, ``policy``, ``hung_task_timeout``, the whole kernel
    ``config``, ``ring_size``, ``events`` (how many follow) and ``lost``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"flight-{uuid.uuid4().hex}"
    level = flight_level()
    # An open file, not the path: loguru would read "{...}" in a path as a template.
    out = open(path, "w", encoding="utf-8")
    # catch=False: a failed write (a full disk) raises here, once, instead of
    # loguru printing a traceback per record.
    sink = logger.add(out, serialize=True, level=level, enqueue=False, colorize=False, catch=False,
                      filter=lambda record: record["extra"].get("flight") == token)
    log = logger.bind(flight=token)
    try:
        events = k.tracer.events()
        sched_log = k.tracer.sched_log()
        config = {key: _plain(value) for key, value in dataclasses.asdict(k.config).items()
                  if key != "sched"}
        # The strategy and its parameters; the schedule itself is in the
        # header once (``schedule``), not again here.
        sched = k.config.sched
        config["sched"] = {"strategy": sched.strategy.value, "seed": sched.seed,
                           "pct_depth": sched.pct_depth, "pct_steps": sched.pct_steps}
        header = dict(meta, version=FORMAT_VERSION, hz=k.clock.hz, speed=k.clock.speed,
                      nr_pages=k.zone.nr_pages, policy=k.policy.value,
                      hung_task_timeout=k.config.hung_task_timeout, config=config,
                      ring_size=k.tracer.ring_size, lost=lost_from(events), events=len(events),
                      comms={str(pid): comm for pid, comm in k.comms().items()},
                      sched_records=len(sched_log))
        log.bind(event="header", t=0.0, seq=-1, pid=0, comm="", fields=header).log(level, "header")
        for seq, t, name, pid, comm, fields, cur, pos in events:
            log.bind(event=str(name), t=t, seq=seq, pid=pid, comm=comm, fields=fields,
                     cur=cur, pos=pos).log(level, str(name))
        # The scheduler's records (a controlled run's switches and wake-ups),
        # in lines of SCHED_CHUNK after the events, numbered -2, -3, ...
        for i in range(0, len(sched_log), SCHED_CHUNK):
            chunk = [list(r) for r in sched_log[i:i + SCHED_CHUNK]]
            log.bind(event=SCHED_RECORDS, t=0.0, seq=-2 - i // SCHED_CHUNK, pid=0, comm="",
                     fields={"records": chunk}).log(level, SCHED_RECORDS)
    finally:
        logger.remove(sink)
        out.close()
    return path


class FieldError(ValueError):
    """A field of an event has the wrong type or is not a finite number."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_int(value: Any, what: str) -> int:
    """``value`` as an int: an int, or a float with no fractional part."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise FieldError(f"{what} is not an integer: {str(value)[:40]}")


def as_number(value: Any, what: str) -> float:
    if _is_number(value):
        return float(value)
    raise FieldError(f"{what} is not a finite number: {str(value)[:40]}")


@dataclass(frozen=True)
class Event:
    """One recorded event, read back from a log and checked."""

    seq: int
    t: float
    name: str
    pid: int
    comm: str
    fields: dict[str, Any]
    line: int = 0  # in the log file
    cur: int = 0  # the task that recorded it (0: the harness)
    pos: int = -1  # the order it was recorded in; -1 in logs of format 1

    @property
    def ev(self) -> Ev | None:
        """The model's name for this event, None for a name the model never records."""
        return Ev(self.name) if self.name in EVENT_NAMES else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def integer(self, key: str, default: int | None = None) -> int | None:
        value = self.fields.get(key)
        return default if value is None else as_int(value, key)

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.fields.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise FieldError(f"{key} is not a string: {str(value)[:40]}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.fields.get(key)
        if value is None:
            return default
        if not isinstance(value, (bool, int)):
            raise FieldError(f"{key} is not a flag: {str(value)[:40]}")
        return bool(value)

    def describe(self) -> str:
        """'oom_kill of pid 101 (victim) at 0.075 s', for sentences."""
        who = f" of pid {self.pid} ({self.comm})" if self.pid else ""
        if self.ev is Ev.PRINTK and isinstance(self.get("text"), str):
            return f'printk "{self.get("text")[:70]}" at {self.t:.3f} s'
        return f"{self.name}{who} at {self.t:.3f} s"


class LogError(ValueError):
    """The file is not a usable flight-recorder log (the message names the line)."""


class Skip(enum.Enum):
    """Why a line of the log was not used."""

    TRUNCATED = "truncated"  # the last line, cut short
    CORRUPT = "corrupt"  # not a well-formed event
    OVERSIZE = "oversize"  # longer than MAX_LINE_BYTES
    DUPLICATE = "duplicate"  # an event already read (same seq)


@dataclass
class FlightLog:
    """A log read back: its header, the events in file order, and what was wrong with it."""

    path: str
    header: dict[str, Any]
    events: list[Event]
    problems: list[str] = field(default_factory=list)  # what was skipped or missing, and why
    skipped: Counter[Skip] = field(default_factory=Counter)  # lines skipped, by why
    #: A controlled run's scheduler records: (pos, t, kind, a, b, c), as
    #: ``kthreads.SchedRecord``; empty for a free run or an older log.
    sched: list[tuple[int, float, str, int, int, int]] = field(default_factory=list)

    @property
    def skipped_lines(self) -> int:
        return sum(self.skipped.values())

    @property
    def lost(self) -> int:
        """Events the ring overwrote before the dump (0 when the header does not say)."""
        value = self.header.get("lost")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    @property
    def announced(self) -> int | None:
        """How many events the header says follow it."""
        value = self.header.get("events")
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    def _seconds(self, key: str, within: dict[str, Any] | None = None) -> float | None:
        value = (self.header if within is None else within).get(key)
        return float(value) if _is_number(value) and value > 0 else None

    @property
    def hung_task_timeout(self) -> float | None:
        config = self.header.get("config")
        return self._seconds("hung_task_timeout") or \
            (self._seconds("hung_task_timeout", config) if isinstance(config, dict) else None)

    @property
    def lockup_window(self) -> float | None:
        """Model seconds without progress that make a stall a lockup: the
        harness's ``lockup_window`` if it wrote one, else khungtaskd's timeout."""
        return self._seconds("lockup_window") or self.hung_task_timeout

    def origin(self) -> str:
        """What the log came from: a test, a scenario, a soak seed."""
        h = self.header
        seed = h.get("seed")
        seed_text = f"seed {seed}" if isinstance(seed, int) and not isinstance(seed, bool) else None
        if isinstance(h.get("test"), str) and h["test"]:
            return f"test {h['test']}"
        if isinstance(h.get("scenario"), str) and h["scenario"]:
            return f"scenario {h['scenario']}" + (f", {seed_text}" if seed_text else "")
        if seed_text:
            return f"soak {seed_text}"
        return "a run that did not record its origin"

    @property
    def partial(self) -> bool:
        return bool(self.problems) or bool(self.lost)


class _BadLine(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse(line: bytes, no: int) -> Event:
    """One line as an Event, or _BadLine saying why not."""
    text = line.decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except RecursionError:
        raise _BadLine("nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and integers too long to convert
        raise _BadLine(f"not JSON: {getattr(e, 'msg', str(e))[:60]}") from None  # the message, not the position
    extra = record.get("record") if isinstance(record, dict) else None
    extra = extra.get("extra") if isinstance(extra, dict) else None
    if not isinstance(extra, dict):
        raise _BadLine("no record.extra object")
    name = extra.get("event")
    if not isinstance(name, str) or not name:
        raise _BadLine("event is not a name")
    fields = extra.get("fields")
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise _BadLine("fields is not an object")
    comm = extra.get("comm", "")
    if not isinstance(comm, str):
        raise _BadLine("comm is not a string")
    try:
        return Event(as_int(extra.get("seq"), "seq"), as_number(extra.get("t"), "t"), name,
                     as_int(extra.get("pid"), "pid"), comm, fields, no,
                     as_int(extra.get("cur", 0), "cur"), as_int(extra.get("pos", -1), "pos"))
    except FieldError as e:
        raise _BadLine(str(e)) from None


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None, bool]]:
    """(line number, bytes or None when oversize, ends with a newline)."""
    no = 0
    while True:
        chunk = f.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        no += 1
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):  # skip the rest of it, bounded memory
                chunk = f.readline(1 << 16)
            yield no, None, True
            continue
        yield no, chunk, chunk.endswith(b"\n")


def _open(path: Path) -> BinaryIO:
    try:
        if not path.is_file():
            raise LogError(f"{path}: cannot read: not a regular file"
                           if path.exists() else f"{path}: cannot read: no such file")
        return open(path, "rb")
    except OSError as e:
        raise LogError(f"{path}: cannot read: {e.strerror or e}") from None


class _Reader:
    """Accumulates a log's events and its problems, line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.events: list[Event] = []
        self.problems: list[str] = []
        self.skipped: Counter[Skip] = Counter()
        self.seen: set[int] = set()
        self.sched: list[tuple[int, float, str, int, int, int]] = []

    def skip(self, no: int, why: Skip, text: str) -> None:
        self.skipped[why] += 1
        if self.skipped_total() <= MAX_NOTED:
            self.problems.append(f"line {no}: {text}")

    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def first(self, no: int, raw: bytes | None) -> None:
        if raw is None:
            raise LogError(f"{self.path}:{no}: not a flight-recorder log (a line longer than "
                           f"{MAX_LINE_BYTES} bytes)")
        try:
            ev = _parse(raw, no)
        except _BadLine as e:
            raise LogError(f"{self.path}:{no}: not a flight-recorder log ({e.reason})") from None
        if ev.name != "header":
            raise LogError(f"{self.path}:{no}: the first record is {ev.name!r}, not the header")
        self.header = ev.fields

    def line(self, no: int, raw: bytes | None, complete: bool) -> None:
        if raw is None:
            self.skip(no, Skip.OVERSIZE, f"record longer than {MAX_LINE_BYTES} bytes skipped")
            return
        try:
            ev = _parse(raw, no)
        except _BadLine as e:
            why = Skip.CORRUPT if complete else Skip.TRUNCATED
            self.skip(no, why, f"{why.value} record skipped ({e.reason})")
            return
        if ev.seq in self.seen:
            self.skip(no, Skip.DUPLICATE, f"duplicate of event {ev.seq} skipped")
            return
        self.seen.add(ev.seq)
        if ev.name == SCHED_RECORDS and ev.seq < -1:
            self.sched_records(no, ev.get("records"))
            return
        self.events.append(ev)

    def sched_records(self, no: int, records: Any) -> None:
        """A line of scheduler records: the well-formed ones are kept, a
        malformed one is skipped and counted (once per line)."""
        bad = 0
        for r in records if isinstance(records, list) else [None]:
            if isinstance(r, list) and len(r) == 6 and r[2] in (SCHED_SWITCH, SCHED_WAKEUP) and \
                    all(_is_number(x) and float(x).is_integer() for x in (r[0], *r[3:])) and _is_number(r[1]):
                self.sched.append((int(r[0]), float(r[1]), r[2], int(r[3]), int(r[4]), int(r[5])))
            else:
                bad += 1
        if bad:
            self.skip(no, Skip.CORRUPT, f"{bad} corrupt scheduler record{'s' if bad > 1 else ''} skipped")

    def finish(self) -> FlightLog:
        assert self.header is not None
        problems = self.problems
        total = self.skipped_total()
        if total > MAX_NOTED:
            problems.append(f"... and {total - MAX_NOTED} more lines skipped")
        if total:
            kinds = ", ".join(f"{n} {why.value}" for why, n in self.skipped.most_common())
            problems.insert(0, f"{total} line{'s' if total != 1 else ''} skipped ({kinds})")
        self.sched.sort()
        log = FlightLog(str(self.path), self.header, self.events, problems, self.skipped, self.sched)
        for key in ("events", "lost", "ring_size"):
            value = self.header.get(key)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                          and value >= 0):
                problems.append(f"header: {key} is not a count ({str(value)[:40]}), ignored")
        expected = log.announced
        if expected is not None and expected > len(self.events) and not total:
            problems.append(f"{expected - len(self.events)} events missing at the end (truncated log)")
        return log


def load_jsonl(path: str | Path) -> FlightLog:
    """Read a log written by dump_jsonl, streaming it (memory stays bounded
    per line; at most MAX_EVENTS events are kept).

    A missing or unreadable file, an empty one, or one whose first record is
    not a header is a LogError naming the line. Every later line that is not
    a well-formed, new event is skipped and noted: the log is then partial.
    """
    path = Path(path)
    reader = _Reader(path)
    with _open(path) as f:
        try:
            for no, raw, complete in _lines(f):
                if raw is not None and not raw.strip():
                    continue
                if reader.header is None:
                    reader.first(no, raw)
                elif len(reader.events) >= MAX_EVENTS:
                    reader.problems.append(f"line {no}: the log holds more than {MAX_EVENTS} "
                                           f"events; the rest was not read")
                    break
                else:
                    reader.line(no, raw, complete)
        except OSError as e:
            raise LogError(f"{path}: cannot read: {e.strerror or e}") from None
    if reader.header is None:
        raise LogError(f"{path}: empty log")
    return reader.finish()
