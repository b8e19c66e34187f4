"""The harness's configuration: the timing knobs of an episode, validated once,
and the one table of CLI flags that builds both the parser and replay commands.

Every knob has one definition here: its type and range (``Flag.parse``), how
it prints back (``Flag.show``), its help text, and its default (the field of
``Timing`` or ``WorkloadParams`` of the same name). The demo and the soak run
with named presets of the same ``Timing`` (``DEMO_TIMING``, ``SOAK_TIMING``),
so a replay command names exactly the flags that differ from its command's
preset.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

from kthreads import HZ_MAX, HZ_MIN, Clock

from .workload import SYSCALLS, WorkloadParams

#: Real seconds an episode may need, at most, to reach a verdict: a
#: configuration that needs more is refused up front (it would look hung).
MAX_VERDICT_REAL_SECONDS = 600.0
#: The reaper's whole retry window (MAX_OOM_REAP_RETRIES x HZ/10) in model
#: seconds, whatever HZ is: a lockup is declared only once the reaper is done.
REAPER_WINDOW = 1.0
#: Timeouts from a task's sleep in D to khungtaskd's report, at most. Linux 4.6's
#: khungtaskd checks once per timeout and reports a task whose switch count did
#: not move between two checks: the second check after the task went to sleep,
#: one to two timeouts later (kthreads/hung_task.py).
HUNG_TASK_DETECTION = 2.0


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the flag and the numbers."""


@dataclass(frozen=True)
class Timing:
    """How one episode maps kernel time onto real time, and when it is over.

    Model seconds unless a name says ``real``. ``lockup_window`` None means
    1.5 x ``hung_task_timeout``. A lockup is declared only once khungtaskd
    has also reported a hung task, and Linux 4.6's khungtaskd reports a task
    one to two timeouts after it went to sleep (``HUNG_TASK_DETECTION``), never
    sooner: a window shorter than one timeout would mean nothing, and is
    refused. A window shorter than the report's delay is allowed; the verdict
    then comes with the report.
    """

    speed: float = 50.0  # model seconds per real second
    hz: int = 100
    hung_task_timeout: float = 2.0  # khungtaskd's hung_task_timeout_secs (the kernel's default is 120)
    lockup_window: float | None = None  # no progress for this long (and a hung task) -> lockup
    ring_size: int = 65536  # flight-recorder events kept
    step_timeout: float = 5.0  # real seconds a scripted step may take

    def __post_init__(self) -> None:
        try:
            Clock(self.hz, self.speed)  # validates HZ and the real-time floor of a jiffy
        except ValueError as e:
            raise ConfigError(f"--speed/--hz: {e}") from None
        if not (self.hung_task_timeout >= 1 and float(self.hung_task_timeout).is_integer()):
            raise ConfigError(f"--hung-task-timeout is whole seconds >= 1 (a lockup verdict needs "
                              f"khungtaskd), got {self.hung_task_timeout:g}")
        if self.lockup_window is not None and not self.lockup_window >= self.hung_task_timeout:
            raise ConfigError(f"--lockup-window {self.lockup_window:g} is shorter than "
                              f"--hung-task-timeout {self.hung_task_timeout:g}: a lockup needs "
                              f"khungtaskd's report first; use --lockup-window >= "
                              f"{self.hung_task_timeout:g}")
        if self.ring_size < 1:
            raise ConfigError(f"--ring-size must be at least 1, got {self.ring_size}")
        if not self.step_timeout > 0:
            raise ConfigError(f"step_timeout must be positive, got {self.step_timeout:g}")
        if self.verdict_real_seconds > MAX_VERDICT_REAL_SECONDS:
            raise ConfigError(
                f"at --speed {self.speed:g} a verdict can take {self.verdict_real_seconds:.0f} s of "
                f"real time (lockup window {self.window:g} s + hung-task detection "
                f"{HUNG_TASK_DETECTION * self.hung_task_timeout:g} s + the reaper's {REAPER_WINDOW:g} s, model "
                f"time); the limit is {MAX_VERDICT_REAL_SECONDS:.0f} s: raise --speed or lower "
                f"--lockup-window/--hung-task-timeout")

    @property
    def window(self) -> float:
        """The lockup window in effect."""
        return self.lockup_window if self.lockup_window is not None else 1.5 * self.hung_task_timeout

    @property
    def verdict_model_seconds(self) -> float:
        """Model time after setup within which a verdict is due: the window, khungtaskd's
        detection (``HUNG_TASK_DETECTION`` timeouts), the reaper's retries, and one
        second of slack. A sum, not the larger of the two: the task khungtaskd
        reports may go to sleep after the window began."""
        return self.window + HUNG_TASK_DETECTION * self.hung_task_timeout + REAPER_WINDOW + 1.0

    @property
    def verdict_real_seconds(self) -> float:
        return self.verdict_model_seconds / self.speed

    @property
    def step_deadline(self) -> float:
        """Real seconds a scripted step may take: ``step_timeout``, plus one model
        second (a hundred jiffies at HZ=100) for steps that wait on model time."""
        return self.step_timeout + 1.0 / self.speed

    @property
    def deadline(self) -> float:
        """Real seconds the harness waits for a verdict before calling the episode
        undetermined: three times what it should take, plus 2 s for a loaded machine."""
        return 3 * self.verdict_real_seconds + 2.0


#: The demo runs slowly enough to be read as it happens.
DEMO_TIMING = Timing(speed=10.0, hung_task_timeout=10.0, lockup_window=12.0)
#: ``run`` and the API: fast, with the kernel's constants in proportion.
RUN_TIMING = Timing()
#: Soak episodes: as fast as the jiffy floor allows at HZ=100.
SOAK_TIMING = Timing(speed=100.0, hung_task_timeout=1.0)


# -- argument types: each names its flag, the problem, and what is valid -------------
def _number(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{option} must be a finite number, got {text}")
    return value


def number_in(option: str, lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _number(option, text)
        if value < lo or (lo_open and value == lo) or value > hi:
            low = f"> {lo:g}" if lo_open else f">= {lo:g}"
            raise argparse.ArgumentTypeError(f"{option} must be {low} and <= {hi:g}, got {text}")
        return value
    return parse


def whole_seconds(option: str, hi: int) -> Callable[[str], float]:
    """hung_task_timeout_secs is a whole number of seconds, as the sysctl is."""
    def parse(text: str) -> float:
        value = _number(option, text)
        if not (value.is_integer() and 1 <= value <= hi):
            raise argparse.ArgumentTypeError(f"{option} is whole seconds (1..{hi}), got {text}")
        return value
    return parse


def int_in(option: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{option} must be between {lo} and {hi}, got {value}")
        return value
    return parse


def int_range(option: str, lo: int, hi: int) -> Callable[[str], tuple[int, int]]:
    def parse(text: str) -> tuple[int, int]:
        parts = text.split("-")
        try:
            a, b = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
        except ValueError:
            a = b = None
        if a is None or b is None or not lo <= a <= b <= hi:
            raise argparse.ArgumentTypeError(f"{option} must be MIN-MAX (or N) with {lo} <= MIN <= MAX "
                                             f"<= {hi}, got {text!r}")
        return a, b
    return parse


def share(option: str) -> Callable[[str], float]:
    return number_in(option, 0.0, 1.0)


def mix_type(text: str) -> tuple[tuple[str, float], ...]:
    """``NAME=W,...``: weights for some syscalls; the others keep their defaults."""
    weights = dict(WorkloadParams().mix)
    for item in text.split(","):
        name, _, weight = item.partition("=")
        if name not in SYSCALLS:
            raise argparse.ArgumentTypeError(f"--mix: unknown syscall {name!r}; valid: {', '.join(SYSCALLS)}")
        value = _number(f"--mix: the weight of {name}", weight)
        if value < 0:
            raise argparse.ArgumentTypeError(f"--mix: the weight of {name} must be >= 0, got {weight}")
        weights[name] = value
    if not any(weights.values()):
        raise argparse.ArgumentTypeError("--mix: at least one weight must be positive")
    return tuple(weights.items())


def show_number(value: float) -> str:
    """Short where that is exact (``50``), every digit where it is not: a replay
    command must give back the very value."""
    text = f"{value:g}"
    return text if float(text) == value else repr(float(value))


def show_range(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def show_mix(value: tuple[tuple[str, float], ...]) -> str:
    return ",".join(f"{name}={show_number(weight)}" for name, weight in value)


# -- the flag table -------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    """One CLI flag bound to the config field of the same name."""

    option: str
    parse: Callable[[str], Any]
    help: str
    show: Callable[[Any], str] = str
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")


TIMING_FLAGS: tuple[Flag, ...] = (
    Flag("--speed", number_in("--speed", 0.0, Clock.max_speed(HZ_MIN), lo_open=True),
         "model seconds per real second", show_number, "X"),
    Flag("--hz", int_in("--hz", HZ_MIN, HZ_MAX), "HZ, jiffies per model second", str, "HZ"),
    Flag("--hung-task-timeout", whole_seconds("--hung-task-timeout", 3600),
         "khungtaskd's hung_task_timeout_secs, model seconds", show_number, "SECS"),
    Flag("--lockup-window", number_in("--lockup-window", 1.0, 7200.0),
         "model seconds without progress (and a hung task) that make a lockup", show_number, "SECS"),
    Flag("--ring-size", int_in("--ring-size", 1, 1 << 24),
         "flight-recorder events kept (older ones are overwritten)", str, "N"),
)

WORKLOAD_FLAGS: tuple[Flag, ...] = (
    Flag("--processes", int_range("--processes", 1, 64), "processes per workload", show_range, "MIN-MAX"),
    Flag("--max-threads", int_in("--max-threads", 1, 16), "threads per process, at most", str, "N"),
    Flag("--zone-pages", int_range("--zone-pages", 128, 1 << 20), "zone size in pages", show_range,
         "MIN-MAX"),
    Flag("--pressure", number_in("--pressure", 0.1, 10.0), "memory wanted / zone size", show_number, "X"),
    Flag("--locks", int_in("--locks", 0, 32), "mutexes shared by the workload", str, "N"),
    Flag("--nofs", share("--nofs"), "share of GFP_NOFS allocations", show_number, "SHARE"),
    Flag("--killable", share("--killable"), "share of killable mutex waits", show_number, "SHARE"),
    Flag("--mix", mix_type, "syscall weights, NAME=W,... (names: " + ", ".join(SYSCALLS) + ")",
         show_mix, "NAME=W,..."),
)


def add_flags(group: Any, flags: Iterable[Flag], defaults: object) -> None:
    """Add ``flags`` to an argparse parser or group. Values not given on the command
    line are left out of the namespace (``values_given`` then tells which were)."""
    for flag in flags:
        default = getattr(defaults, flag.dest)
        # ", " lets the help text wrap between items, never inside one.
        shown = "1.5 x the hung-task timeout" if default is None else flag.show(default).replace(",", ", ")
        group.add_argument(flag.option, type=flag.parse, default=argparse.SUPPRESS,
                           metavar=flag.metavar, help=f"{flag.help} (default {shown})")


def values_given(args: argparse.Namespace, flags: Iterable[Flag]) -> dict[str, Any]:
    return {f.dest: getattr(args, f.dest) for f in flags if hasattr(args, f.dest)}


def build(preset: Any, args: argparse.Namespace, flags: Sequence[Flag]) -> Any:
    """``preset`` with the flags given on the command line applied. A preset's
    lockup window follows a ``--hung-task-timeout`` given without ``--lockup-window``
    (it defaults to 1.5 timeouts), so one flag never trips over another's preset."""
    given = values_given(args, flags)
    if isinstance(preset, Timing) and "hung_task_timeout" in given and "lockup_window" not in given:
        given["lockup_window"] = None
    return replace(preset, **given)


def command_line(value: Any, preset: Any, flags: Sequence[Flag]) -> list[str]:
    """The flags that turn ``preset`` into ``value``: what a replay command must say."""
    out: list[str] = []
    for flag in flags:
        v, d = getattr(value, flag.dest), getattr(preset, flag.dest)
        if v != d and v is not None:
            out += [flag.option, flag.show(v)]
    return out
