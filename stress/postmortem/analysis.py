"""One log's analysis: its replay and diagnosis together, what the reports render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..outcomes import Outcome
from .diagnose import Diagnosis, diagnose, diagnose_wrapped
from .log import FlightLog
from .replay import LockState, Marker, Track, replay


@dataclass
class Analysis:
    log: FlightLog
    tracks: dict[int, Track]
    locks: dict[int, LockState]
    markers: list[Marker]
    t_end: float
    oom_aborts: int
    diagnosis: Diagnosis
    model_verdict: dict[str, Any] | None

    def users(self) -> list[Track]:
        return [t for t in self.tracks.values() if not t.kthread]


def analyze(log: FlightLog) -> Analysis:
    """Replay ``log`` and diagnose how the run ended, from its events alone."""
    r = replay(log)
    problems = list(log.problems) + r.problems
    if log.lost:
        problems.insert(0, f"the ring wrapped: the {log.lost} oldest events were lost")
    if not log.events:
        d = Diagnosis(Outcome.UNDETERMINED, None, "the log holds no events.", [], [], [], True, problems)
    elif log.lost:
        d = diagnose_wrapped(r, problems)
    else:
        d = diagnose(r, log.lockup_window, bool(problems), problems)
    if r.oopses:
        d.sentence += " Task bodies died of exceptions: " + "; ".join(r.oopses[:3]) + "."
    return Analysis(log, r.tracks, r.locks, sorted(r.markers, key=lambda m: m.t), r.t_end, r.aborts,
                    d, r.verdict)
