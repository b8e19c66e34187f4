"""What decides a run's interleaving, and the record of one.

``SchedConfig`` says how a kernel schedules: ``free`` (real threads as the
OS runs them) or a controlled strategy with its seed. ``Schedule`` is what a
run recorded, enough to run it again:

* a controlled run records its *switches*: ``[step, pid]`` each time the CPU
  went to another runner (pid 0 is the harness);
* a free run records its *event order*: the pid that recorded each
  flight-recorder event (0: the harness), run-length encoded as
  ``[pid, count, t]`` with ``t`` the model time (microseconds) of the run's
  first event. Complete even when the ring wraps, and counted when a retry
  loop's routine events are held back and dropped. The times matter: in a
  free run a task may not get a CPU for a while (the machine was busy), and
  what khungtaskd or a lockup window sees depends on how long.

(workload seed, policy, strategy, schedule seed) decides a controlled run;
its ``Schedule`` replays it with ``Sched.REPLAY``, and a free run's replays
it as closely as the model allows with ``Sched.FOLLOW``.

Lab machinery: no kernel has any of this.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any

#: Bumped when a change to the model changes which schedule a seed gives:
#: a schedule recorded under another version is refused, not misreplayed.
MODEL_VERSION = 3  # 2: #10's 4.6 fidelity (events, the lab's stream, who records what); 3: #11's 5.x designs


#: Bounds a schedule read from a file must keep (pid_max, a run's events, a year).
PID_LIMIT = 1 << 22
EVENTS_LIMIT = 10_000_000
TIME_LIMIT_US = 365 * 86400 * 10 ** 6


class Sched(str, enum.Enum):
    FREE = "free"
    RANDOM = "random"
    PCT = "pct"
    REPLAY = "replay"  # a controlled run's switches
    FOLLOW = "follow"  # a free run's event order

    @property
    def controlled(self) -> bool:
        return self is not Sched.FREE

    @classmethod
    def parse(cls, text: str) -> "Sched":
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown scheduling strategy {text!r} (choose from "
                             f"{', '.join(s.value for s in cls)})") from None


class ScheduleKind(str, enum.Enum):
    SWITCHES = "switches"
    EVENTS = "events"


@dataclass(frozen=True)
class Schedule:
    kind: ScheduleKind
    switches: tuple[tuple[int, int], ...] = ()  # (step, pid)
    actors: tuple[tuple[int, int, int], ...] = ()  # (pid, count, model microseconds)

    @classmethod
    def from_switches(cls, switches: list[list[int]]) -> "Schedule":
        return cls(ScheduleKind.SWITCHES, switches=tuple((a, b) for a, b in switches))

    def to_json(self) -> dict[str, Any]:
        if self.kind is ScheduleKind.SWITCHES:
            return {"kind": self.kind.value, "version": MODEL_VERSION,
                    "switches": [list(x) for x in self.switches]}
        return {"kind": self.kind.value, "version": MODEL_VERSION,
                "actors": [list(x) for x in self.actors]}

    @classmethod
    def from_json(cls, d: Any) -> "Schedule":
        """``ValueError`` with one line for anything that is not a schedule."""
        if not isinstance(d, dict):
            raise ValueError("the schedule is not a JSON object")
        version = d.get("version")
        if type(version) is not int or version != MODEL_VERSION:
            raise ValueError(f"the schedule was recorded by model version {d.get('version')}, "
                             f"this is version {MODEL_VERSION}")
        try:
            kind = ScheduleKind(d.get("kind"))
        except ValueError:
            raise ValueError(f"unknown schedule kind {d.get('kind')!r}") from None
        key, width = ("switches", 2) if kind is ScheduleKind.SWITCHES else ("actors", 3)
        items = d.get(key)
        if not isinstance(items, list) or not all(
                isinstance(x, list) and len(x) == width and
                all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x)
                for x in items):
            raise ValueError(f"the schedule's {key} must be a list of {width}-lists of integers >= 0")
        rows = tuple(tuple(x) for x in items)
        if any(x[0 if kind is ScheduleKind.EVENTS else 1] >= PID_LIMIT for x in rows):
            raise ValueError(f"the schedule names a pid of {PID_LIMIT} or more")
        if kind is ScheduleKind.EVENTS:
            if sum(x[1] for x in rows) > EVENTS_LIMIT:
                raise ValueError(f"the schedule holds more than {EVENTS_LIMIT} events")
            if any(x[2] >= TIME_LIMIT_US for x in rows):
                raise ValueError("the schedule holds a model time beyond a year")
        return cls(kind, switches=rows) if kind is ScheduleKind.SWITCHES else cls(kind, actors=rows)


@dataclass(frozen=True)
class SchedConfig:
    strategy: Sched = Sched.FREE
    seed: int = 0
    pct_depth: int = 3
    # PCT's k: change points are drawn from the first pct_steps task steps.
    # A lockup episode takes a few thousand (measured by benchmarks/sched.py).
    pct_steps: int = 5000
    schedule: Schedule | None = None  # what REPLAY and FOLLOW follow

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, Sched):
            object.__setattr__(self, "strategy", Sched.parse(str(self.strategy)))
        if self.pct_depth < 1:
            raise ValueError(f"PCT depth must be at least 1, got {self.pct_depth}")
        if self.pct_steps < 1:
            raise ValueError(f"PCT steps must be at least 1, got {self.pct_steps}")
        if self.strategy in (Sched.REPLAY, Sched.FOLLOW):
            want = ScheduleKind.SWITCHES if self.strategy is Sched.REPLAY else ScheduleKind.EVENTS
            if self.schedule is None or self.schedule.kind is not want:
                raise ValueError(f"strategy {self.strategy.value} needs a schedule of {want.value}")

    @property
    def controlled(self) -> bool:
        return self.strategy.controlled

    @staticmethod
    def replaying(schedule: Schedule) -> "SchedConfig":
        """The config that re-runs ``schedule``: REPLAY for a controlled
        run's switches, FOLLOW for a free run's event order."""
        strategy = Sched.REPLAY if schedule.kind is ScheduleKind.SWITCHES else Sched.FOLLOW
        return SchedConfig(strategy, schedule=schedule)


class EventOrder:
    """A free run's event order, as it is recorded (run-length encoded)."""

    __slots__ = ("_lock", "runs", "_actor", "_now")

    def __init__(self, actor: Any, now: Any) -> None:
        # Two threads recording at once must not both extend the same run
        # or interleave an append with an increment.
        self._lock = threading.Lock()
        self.runs: list[list[int]] = []
        self._actor = actor  # () -> pid of the calling thread's task, 0 for the harness
        self._now = now  # () -> model seconds

    def note(self) -> None:
        pid = self._actor()
        with self._lock:
            runs = self.runs
            if runs and runs[-1][0] == pid:
                runs[-1][1] += 1
            else:
                runs.append([pid, 1, max(0, int(self._now() * 1e6))])

    def schedule(self) -> Schedule:
        with self._lock:
            return Schedule(ScheduleKind.EVENTS, actors=tuple((p, n, t) for p, n, t in self.runs))
