"""The flight recorder: an in-memory ring of events, and printk.

Recording must stay cheap: a loguru call costs 20-65 us here, a hundred
times a lock operation (docs/PERF-NOTES.md). Events therefore go into a
bounded ``deque`` of plain tuples, as ftrace's ring buffer does, and are
written out through loguru only when somebody asks for them. printk lines
are events too (name ``printk``) and are also kept in a bounded dmesg buffer
of their own.

A thread that repeats the same iteration of a retry loop can *hold back* its
routine events for one iteration (``hold_back``/``release_held``): if the
iteration records only routine events they are dropped and handed back to
the caller to count; the first other event flushes them into the ring, in
order, ahead of itself. So a looping allocator does not flood the ring.

Lab machinery: the ring, the hold-back and the lab's stream are the lab's.
What is kernel-shaped is the text: a dmesg line is printk's timestamp and
message as 4.6 prints them, and ``SchedRecord`` carries what 4.6's
sched_switch / sched_wakeup tracepoints report.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Collection, NamedTuple

from loguru import logger

from .events import Ev, TraceEvent
from .jiffies import dmesg_stamp

#: (seq, model seconds, event name, pid, comm, fields, current pid, position)
EventTuple = tuple[int, float, str, int, str, dict[str, Any], int, int]

#: A scheduler record of a controlled CPU (``Tracer.note_sched``):
#: (position, model seconds, kind, a, b, c). For ``SCHED_SWITCH``: prev pid,
#: prev state (the kernel's bits, TASK_STATE_MAX added when preempted), next
#: pid. For ``SCHED_WAKEUP``: the waker's pid, the woken pid, 0.
SchedRecord = tuple[int, float, str, int, int, int]
SCHED_SWITCH = "sched_switch"
SCHED_WAKEUP = "sched_wakeup"


class LogLevel(enum.Enum):
    """printk levels the model uses, with the loguru level each maps to."""

    KERN_ERR = "ERROR"
    KERN_WARNING = "WARNING"
    KERN_INFO = "INFO"


class HeldEvent(NamedTuple):
    """An event held back by ``Tracer.hold_back`` (it gets its sequence
    number only if it is flushed into the ring)."""

    t: float
    name: str
    pid: int
    comm: str
    fields: dict[str, Any]
    cur: int
    pos: int


class _Held:
    """One thread's hold: which names are routine, what it holds, and what
    to record ahead of a flush."""

    __slots__ = ("routine", "events", "on_flush")

    def __init__(self, routine: Collection[str], on_flush: Callable[[], None] | None) -> None:
        self.routine = routine
        self.events: list[HeldEvent] = []
        self.on_flush = on_flush


@dataclass(frozen=True)
class DmesgLine:
    seconds: float
    level: LogLevel
    text: str

    def __str__(self) -> str:
        return f"{dmesg_stamp(self.seconds)} {self.text}"


@dataclass(frozen=True)
class LabLine:
    """One of the lab's annotations: marked "# lab" so that nobody takes it
    for a line the kernel printed."""

    seconds: float
    text: str

    def __str__(self) -> str:
        return f"{LAB_MARK} {self.seconds:12.6f}  {self.text}"


#: How the lab's annotations begin, in the terminal and in text logs.
LAB_MARK = "# lab"


class Tracer:
    """Per-kernel event ring, dmesg buffer and the lab's annotations."""

    def __init__(self, now: Callable[[], float], ring_size: int = 65536, dmesg_size: int = 4096,
                 enabled: bool = True, current: Callable[[], int] = lambda: 0) -> None:
        if ring_size < 1:
            raise ValueError(f"ring size must be at least 1, got {ring_size}")
        self._now = now
        # The pid of the task recording an event (0: the harness): ftrace's
        # first column, which is always the current task, not the subject.
        self._current = current
        # Off: events are dropped (printk lines still reach dmesg). For
        # measuring what the recorder costs.
        self.enabled = enabled
        self._ring: deque[EventTuple] = deque(maxlen=ring_size)
        # itertools.count's next() is a single C call: two recording threads
        # can never be handed the same sequence number.
        self._seq = itertools.count()
        # Every event's position in the order it was recorded in, held back
        # or not (seq is the order events entered the ring, and a held event
        # enters late). Scheduler records share it, so that a trace can put
        # each event between the right two context switches.
        self._pos = itertools.count()
        self._sched: deque[SchedRecord] = deque(maxlen=ring_size)
        # The lab's own annotations (never kernel output): see lab().
        self._lab: deque[LabLine] = deque(maxlen=dmesg_size)
        # dmesg and the lab's lines together, in the order they were written:
        # what the terminal showed.
        self._console: deque[DmesgLine | LabLine] = deque(maxlen=2 * dmesg_size)
        self._dmesg: deque[DmesgLine] = deque(maxlen=dmesg_size)
        # The calling thread's hold (``.held``), if it is holding events back.
        self._local = threading.local()
        # Threads holding events back right now. record() reads it without
        # the lock only to skip the thread-local lookup when nobody holds:
        # a holder always sees its own increment, and another thread seeing
        # a stale count only pays the lookup. The lock keeps two threads'
        # increments and decrements from losing one another.
        self._holders = 0
        self._holders_lock = threading.Lock()
        # Called first thing for every event and printk while recording: a
        # scheduling point on a controlled CPU, the event-order recorder in
        # free mode (kthreads.schedule.EventOrder.note).
        self.on_event: Callable[[], None] | None = None
        # The event digest: a hash over every event put in the ring (name,
        # pid, comm, fields, model time; nothing of the wall clock), in ring
        # order, so that two runs can be compared even when the ring wrapped.
        # Hashing costs microseconds an event, so it is deferred: an event is
        # hashed when the ring is about to overwrite it, the rest when the
        # digest is read. (In free mode two threads appending to a full ring
        # at once may hash one evicted event twice; a free run's digest is
        # for the record, only controlled runs are compared by it, and there
        # one thread appends at a time.)
        self._evicted = hashlib.blake2b(digest_size=16)

    @property
    def ring_size(self) -> int:
        return self._ring.maxlen or 0

    def record(self, event: str, pid: int = 0, comm: str = "", **fields: Any) -> None:
        if self.enabled:
            hook = self.on_event
            if hook is not None:
                hook()
                # On a controlled CPU the hook may have waited for a turn
                # while the recording ended (the shutdown event).
                if not self.enabled:
                    return
            pos = next(self._pos)
            if self._holders:
                held = getattr(self._local, "held", None)
                if held is not None:
                    if event in held.routine:
                        held.events.append(HeldEvent(self._now(), event, pid, comm, fields,
                                                     self._current(), pos))
                        return
                    self._flush_held(held)
            self._append(self._now(), event, pid, comm, fields, self._current(), pos)

    def _append(self, t: float, event: str, pid: int, comm: str, fields: dict[str, Any],
                cur: int, pos: int) -> None:
        ring = self._ring
        if len(ring) == ring.maxlen:
            _hash_event(self._evicted, ring[0])
        ring.append((next(self._seq), t, event, pid, comm, fields, cur, pos))

    def note_sched(self, kind: str, a: int, b: int, c: int = 0) -> None:
        """A context switch or a wake-up on a controlled CPU (``SchedRecord``).
        Not an event: no scheduling point, no hold, not in the digest (the
        schedule already determines it); kept beside the ring, as bounded."""
        if self.enabled:
            self._sched.append((next(self._pos), self._now(), kind, a, b, c))

    def sched_log(self) -> list[SchedRecord]:
        """The scheduler records, oldest first."""
        return list(self._sched)

    @property
    def digest(self) -> str:
        """The event digest of everything recorded so far (hex)."""
        h = self._evicted.copy()
        for e in list(self._ring):
            _hash_event(h, e)
        return h.hexdigest()

    # -- holding back a retry loop's routine events --------------------------------
    def hold_back(self, routine: Collection[str],
                  on_flush: Callable[[], None] | None = None) -> bool:
        """Hold back the calling thread's ``routine`` events until
        ``release_held()``; False (nothing held) when the recorder is off.

        If another event flushes them, ``on_flush()`` runs first (it may
        record, e.g. a summary of the iterations before this one)."""
        if not self.enabled:
            return False
        self._local.held = _Held(routine, on_flush)
        with self._holders_lock:
            self._holders += 1
        return True

    def release_held(self) -> list[HeldEvent] | None:
        """End the hold: the events dropped, or None if another event
        flushed them into the ring (the iteration was recorded in full)."""
        held = getattr(self._local, "held", None)
        if held is None:
            return None
        self._end_hold()
        return held.events

    def _flush_held(self, held: _Held) -> None:
        self._end_hold()
        if held.on_flush is not None:
            held.on_flush()
        for e in held.events:
            self._append(e.t, e.name, e.pid, e.comm, e.fields, e.cur, e.pos)

    def _end_hold(self) -> None:
        self._local.held = None
        with self._holders_lock:
            self._holders -= 1

    @property
    def recorded(self) -> int:
        """Events ever recorded (kept or overwritten)."""
        ring = self.events()
        return max(e.seq for e in ring) + 1 if ring else 0

    def events(self) -> list[TraceEvent]:
        """A snapshot of the ring, oldest first."""
        return list(map(TraceEvent._make, list(self._ring)))

    def lost(self) -> int:
        """Events overwritten because the ring wrapped."""
        return lost_from(self.events())

    def printk(self, text: str, level: LogLevel = LogLevel.KERN_INFO,
               pid: int = 0, comm: str = "") -> DmesgLine:
        hook = self.on_event
        if hook is not None and self.enabled:
            hook()
        line = DmesgLine(self._now(), level, text)
        self._dmesg.append(line)
        self._console.append(line)
        pos = next(self._pos)
        if self._holders:
            held = getattr(self._local, "held", None)
            if held is not None:  # a printk is never routine
                self._flush_held(held)
        self._append(line.seconds, Ev.PRINTK, pid, comm, {"level": level.name, "text": text},
                     self._current(), pos)
        logger.log(level.value, "{}", str(line))
        return line

    def lab(self, text: str, pid: int = 0, comm: str = "", **fields: Any) -> LabLine:
        """An annotation of the lab's: something worth showing that the kernel
        tree being modelled did not print (the reaper's progress under patch
        1, the lockup report). Never in dmesg: recorded as a ``lab`` event,
        kept in a buffer of its own, and logged as a line marked "# lab"."""
        hook = self.on_event
        if hook is not None and self.enabled:
            hook()
        line = LabLine(self._now(), text)
        self._lab.append(line)
        self._console.append(line)
        pos = next(self._pos)
        if self._holders:
            held = getattr(self._local, "held", None)
            if held is not None:  # an annotation is never routine
                self._flush_held(held)
        self._append(line.seconds, Ev.LAB, pid, comm, {"text": text, **fields}, self._current(), pos)
        logger.log("INFO", "{}", str(line))
        return line

    def dmesg(self) -> list[DmesgLine]:
        return list(self._dmesg)

    def lab_lines(self) -> list[LabLine]:
        """The lab's annotations, oldest first."""
        return list(self._lab)

    def console(self) -> list[str]:
        """dmesg and the lab's lines, interleaved as they were written."""
        return [str(line) for line in list(self._console)]



#: The lab's line with a task's Python stack ("model stack of victim/101:
#: sleep_on < Mutex.__enter__ < ..."): names are qualified on 3.11+ only.
_MODEL_STACK = re.compile(r"^(model stack of [^:]*: )(.*)$")


def _hash_event(h: Any, e: EventTuple) -> None:
    """Hash one event. Python stacks are hashed by bare function name, or not
    at all: their line numbers move with every edit of the model's source,
    and qualified names exist on 3.11+ only (co_qualname)."""
    _, t, name, pid, comm, fields, cur, _ = e
    if name == Ev.LOCKUP_REPORT and isinstance(fields.get("tasks"), list):
        fields = {**fields, "tasks": [{k: v for k, v in task.items() if k != "stack"}
                                      if isinstance(task, dict) else task for task in fields["tasks"]]}
    elif name == Ev.LAB:
        m = _MODEL_STACK.match(fields.get("text", ""))
        if m is not None:
            names = " < ".join(f.rsplit(".", 1)[-1] for f in m.group(2).split(" < "))
            fields = {**fields, "text": m.group(1) + names}
    h.update(f"{t:.9f}|{name}|{pid}|{comm}|{fields!r}|{cur}\n".encode())


def lost_from(events: list[TraceEvent]) -> int:
    """Events overwritten before the oldest one a snapshot of the ring holds.

    Counted on one snapshot, as other threads keep appending: events are
    numbered from 0, so the smallest number kept is how many went before it.
    (A number drawn but not yet appended by another thread is not a loss.)"""
    return min(e.seq for e in events) if events else 0
