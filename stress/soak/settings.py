"""What a soak episode needs (picklable settings) and the command that replays one."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SOAK_TIMING, TIMING_FLAGS, WORKLOAD_FLAGS, Timing, command_line
from ..episode import Keep
from ..workload import WorkloadParams


@dataclass(frozen=True)
class SoakSettings:
    params: WorkloadParams = WorkloadParams()
    timing: Timing = SOAK_TIMING
    keep: Keep = Keep.INTERESTING  # which episodes keep their dmesg and trace in the result
    log_dir: str | None = None  # the flight recorder of every kept episode goes here
    trace: bool = True  # the flight recorder (off only to measure its cost)
    inject: tuple[tuple[str, int], ...] = ()  # ("crash"|"hang", seed): fault injection for tests


def settings_flags(settings: SoakSettings) -> list[str]:
    """The soak flags that make ``settings`` differ from the defaults (one table: config.py)."""
    return (command_line(settings.params, WorkloadParams(), WORKLOAD_FLAGS)
            + command_line(settings.timing, SOAK_TIMING, TIMING_FLAGS))


def replay_command(seed: int, policy: str, settings: SoakSettings | None = None) -> str:
    extra = settings_flags(settings) if settings is not None else []
    return " ".join(["python -m stress soak --replay", str(seed), "--policy", policy, *extra])
