"""What a soak episode needs (picklable settings), how its schedule seed is
derived, and the command that replays one."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kthreads import Sched, SchedConfig

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
    # Free, or a controlled strategy whose seed is the base of every
    # episode's own (episode_sched). PCT by default: see README, "Two modes".
    sched: SchedConfig = SchedConfig(Sched.PCT)


def episode_sched(base: SchedConfig, seed: int) -> SchedConfig:
    """The schedule of workload ``seed``'s episode: the base strategy, with a
    seed of its own derived from the base seed and the workload seed, so that
    episodes explore different interleavings and each one replays from
    (seed, base seed) alone."""
    if not base.controlled:
        return base
    return replace(base, seed=(base.seed * 0x9E3779B97F4A7C15 + seed) % (1 << 63))


def settings_flags(settings: SoakSettings) -> list[str]:
    """The soak flags that make ``settings`` differ from the defaults (one table: config.py)."""
    return (command_line(settings.params, WorkloadParams(), WORKLOAD_FLAGS)
            + command_line(settings.timing, SOAK_TIMING, TIMING_FLAGS))


def sched_flags(settings: SoakSettings) -> list[str]:
    """The scheduling flags that differ from the soak's defaults."""
    s, default = settings.sched, SoakSettings().sched
    out = [] if s.strategy is default.strategy else ["--sched", s.strategy.value]
    if s.controlled and s.seed != default.seed:
        out += ["--sched-seed", str(s.seed)]
    if s.strategy is Sched.PCT and s.pct_depth != default.pct_depth:
        out += ["--pct-depth", str(s.pct_depth)]
    return out


def replay_command(seed: int, policy: str, settings: SoakSettings | None = None) -> str:
    """What reruns the episode: its seed and the soak's flags under a
    controlled strategy (exact); under free scheduling, its flight-recorder
    log, which holds the event order (exact as far as the model allows)."""
    if settings is not None and not settings.sched.controlled and settings.log_dir:
        return f"python -m stress soak --replay {settings.log_dir}/seed{seed}-{policy}.jsonl"
    extra = (settings_flags(settings) + sched_flags(settings)) if settings is not None else []
    return " ".join(["python -m stress soak --replay", str(seed), "--policy", policy, *extra])
