"""The flight recorder: an in-memory ring of events, and printk.

Recording must stay cheap: a loguru call costs 20-65 us here, a hundred
times a lock operation (PERF-NOTES.md). Events therefore go into a bounded
``deque`` of plain tuples, as ftrace's ring buffer does, and are written out
through loguru only when somebody asks for them. printk lines are events too
(name ``printk``) and are also kept in a bounded dmesg buffer of their own.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator

from loguru import logger

from .events import TraceEvent
from .jiffies import dmesg_stamp

#: (seq, model seconds, event name, pid, comm, fields)
EventTuple = tuple[int, float, str, int, str, dict[str, Any]]


class LogLevel(enum.Enum):
    """printk levels the model uses, with the loguru level each maps to."""

    KERN_ERR = "ERROR"
    KERN_WARNING = "WARNING"
    KERN_INFO = "INFO"


@dataclass(frozen=True)
class DmesgLine:
    seconds: float
    level: LogLevel
    text: str

    def __str__(self) -> str:
        return f"{dmesg_stamp(self.seconds)} {self.text}"


class Tracer:
    """Per-kernel event ring and dmesg buffer."""

    def __init__(self, now, ring_size: int = 65536, dmesg_size: int = 4096,
                 enabled: bool = True) -> None:
        if ring_size < 1:
            raise ValueError(f"ring size must be at least 1, got {ring_size}")
        self._now = now
        # Off: events are dropped (printk lines still reach dmesg). For
        # measuring what the recorder costs.
        self.enabled = enabled
        self._ring: deque[EventTuple] = deque(maxlen=ring_size)
        # itertools.count's next() is a single C call: two recording threads
        # can never be handed the same sequence number.
        self._seq = itertools.count()
        self._dmesg: deque[DmesgLine] = deque(maxlen=dmesg_size)

    @property
    def ring_size(self) -> int:
        return self._ring.maxlen or 0

    def record(self, event: str, pid: int = 0, comm: str = "", **fields: Any) -> None:
        if self.enabled:
            self._ring.append((next(self._seq), self._now(), event, pid, comm, fields))

    @property
    def recorded(self) -> int:
        """Events ever recorded (kept or overwritten)."""
        ring = self.events()
        return max(e[0] for e in ring) + 1 if ring else 0

    def events(self) -> list[TraceEvent]:
        """A snapshot of the ring, oldest first."""
        return list(map(TraceEvent._make, list(self._ring)))

    def lost(self) -> int:
        """Events overwritten because the ring wrapped."""
        return lost_from(self.events())

    def printk(self, text: str, level: LogLevel = LogLevel.KERN_INFO,
               pid: int = 0, comm: str = "") -> DmesgLine:
        line = DmesgLine(self._now(), level, text)
        self._dmesg.append(line)
        self._ring.append((next(self._seq), line.seconds, "printk", pid, comm,
                           {"level": level.name, "text": text}))
        logger.log(level.value, "{}", str(line))
        return line

    def dmesg(self) -> list[DmesgLine]:
        return list(self._dmesg)

    def iter_text(self) -> Iterator[str]:
        return (str(line) for line in list(self._dmesg))


def lost_from(events: list[TraceEvent]) -> int:
    """Events overwritten before the oldest one a snapshot of the ring holds.

    Counted on one snapshot, as other threads keep appending: events are
    numbered from 0, so the smallest number kept is how many went before it.
    (A number drawn but not yet appended by another thread is not a loss.)"""
    return min(e[0] for e in events) if events else 0
