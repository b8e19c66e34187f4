"""A recorded episode loaded back to be run again: from the JSON that
``run --json`` writes, or from a JSONL flight-recorder log (``run --log``,
``soak --log-dir``).

A recording names what decides the episode: the scenario (or the soak
workload and its parameters), the policy, the seed, the timing, and the
schedule. Replaying a controlled episode's schedule gives the same event
digest; replaying a free episode's event order re-runs it on the controlled
CPU, each task held back until its recorded turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kthreads import Policy, SchedConfig, Schedule, ScheduleKind

from .config import ConfigError, Timing
from .workload import WorkloadParams


@dataclass(frozen=True)
class Recording:
    path: str
    scenario: str | None  # None: a soak workload
    policy: Policy
    seed: int
    timing: Timing
    workload: WorkloadParams | None  # a soak episode's workload parameters
    schedule: Schedule
    sched: str  # how it was scheduled when recorded
    label: str
    event_digest: str | None

    @property
    def replay_config(self) -> SchedConfig:
        return SchedConfig.replaying(self.schedule)

    @property
    def exact(self) -> bool:
        """A controlled run's switches replay to the same event digest; a free
        run's event order is followed, and its outcome compared."""
        return self.schedule.kind is ScheduleKind.SWITCHES


def _first_record(path: Path) -> dict[str, Any]:
    """The JSON of a result file, or the header of a JSONL log."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a JSON result or a JSONL log (not text)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    first = text.split("\n", 1)[0]
    try:
        rec = json.loads(first)
        header = rec["record"]["extra"]
        if header.get("event") != "header":
            raise KeyError("event")
        return header["fields"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"{path} is not a JSON result or a JSONL log of this lab") from None


def _tuples(v: Any) -> Any:
    """JSON's lists back into the tuples the frozen dataclasses hold."""
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def _dataclass_from(cls: Any, d: Any, what: str, path: Path) -> Any:
    """``cls`` from the recorded fields: every one present, each of the type
    its default has (a whole float where an int is due is taken as the int)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{path} has no {what}: it was not written by this version of the lab")
    values = {}
    defaults = cls()
    for f in fields(cls):
        if f.name not in d:
            raise ConfigError(f"{path}: the {what} lacks {f.name}")
        v, want = _tuples(d[f.name]), getattr(defaults, f.name)
        if isinstance(want, bool) or isinstance(v, bool):
            ok = type(v) is type(want)
        elif isinstance(want, int) and isinstance(v, float) and v.is_integer():
            v, ok = int(v), True
        elif isinstance(want, (int, float)):
            ok = isinstance(v, (int, float)) and not (isinstance(want, int) and isinstance(v, float))
        else:
            ok = want is None or isinstance(v, type(want)) or v is None
        if not ok:
            raise ConfigError(f"{path}: the {what}'s {f.name} is {v!r}")
        values[f.name] = v
    try:
        return cls(**values)
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigError(f"{path}: bad {what}: {e}") from None


def load_recording(path: str | Path) -> Recording:
    """``ConfigError`` (one line) for anything that cannot be replayed."""
    path = Path(path)
    d = _first_record(path)
    if not isinstance(d, dict):
        raise ConfigError(f"{path} is not a JSON result or a JSONL log of this lab")
    if isinstance(d.get("results"), list):  # soak --replay --json: one result per policy
        if len(d["results"]) != 1 or not isinstance(d["results"][0], dict):
            raise ConfigError(f"{path} holds {len(d['results'])} results; replay one of them "
                              f"(a file from 'run --json' or a log from --log-dir)")
        d = d["results"][0]
    if d.get("schedule") is None:
        raise ConfigError(f"{path} has no schedule to replay (written by an older version of the lab, "
                          f"or with the flight recorder off)")
    try:
        schedule = Schedule.from_json(d["schedule"])
        policy = Policy.parse(str(d.get("policy")))
        seed = d.get("seed")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError("no seed")
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    scenario = d.get("scenario")
    timing = _dataclass_from(Timing, d.get("timing"), "timing", path)
    workload = None if scenario else _dataclass_from(WorkloadParams, d.get("workload"), "workload", path)
    label = d.get("label")
    if not isinstance(label, str):
        raise ConfigError(f"{path} does not say which outcome it recorded (no label)")
    return Recording(str(path), scenario, policy, seed, timing, workload, schedule,
                     str(d.get("sched", "free")), label, d.get("event_digest"))
