"""Post-mortems from a flight-recorder log alone: the package's public API.

``log`` writes a kernel's ring as JSONL and reads it back, ``replay``
rebuilds per-pid tracks and lock state from the events, ``diagnose`` decides
the outcome, shape and sentence, ``analysis`` ties them together, ``report``
renders text and JSON and ``timeline`` the HTML page. It never looks at the
model's own verdict record to decide (except for a log whose beginning was
lost, and then says so); tests compare the two.
"""

from .analysis import Analysis, analyze
from .diagnose import Diagnosis, Evidence, lockup_evidence, wait_chain
from .log import MAX_EVENTS, MAX_LINE_BYTES, Event, FlightLog, LogError, Skip, dump_jsonl, load_jsonl
from .replay import LockState, Marker, Replay, Segment, TaskKind, Track, replay
from .report import format_text, to_json
from .timeline import render_html

__all__ = ["Analysis", "Diagnosis", "Event", "Evidence", "FlightLog", "LockState", "LogError",
           "MAX_EVENTS", "MAX_LINE_BYTES", "Marker", "Replay", "Segment", "Skip", "TaskKind", "Track",
           "analyze", "dump_jsonl", "format_text", "load_jsonl", "lockup_evidence", "render_html",
           "replay", "to_json", "wait_chain"]
