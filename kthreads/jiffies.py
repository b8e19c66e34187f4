"""Model time: jiffies, HZ and the speed factor.

Kernel constants stay in kernel units (jiffies, HZ/10, seconds of
hung_task_timeout). One speed factor maps them onto real time: ``speed``
model seconds pass per real second, so the same scenario runs in
milliseconds in a test (speed 50) and at a readable pace in a demo.

``Clock`` and the speed factor are the lab's. ``HZ`` and jiffies mean what
they mean in the kernel; ``dmesg_stamp`` is printk's timestamp prefix as
4.6 prints it (seconds in a field of five, then six decimals).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

HZ_MIN, HZ_MAX = 100, 1000
#: No real sleep here is shorter than ~0.06 ms (docs/PERF-NOTES.md). A jiffy below
#: this floor turns every one-jiffy sleep into a busy loop fighting for the GIL.
MIN_REAL_JIFFY = 1e-4


@dataclass(frozen=True)
class Clock:
    """Maps model time onto the monotonic clock of this run.

    ``timebase`` is that clock: ``time.monotonic`` in free mode, the
    controlled CPU's virtual time (which moves only when no task can run)
    in controlled mode. ``t0`` defaults to its value at creation.
    """

    hz: int = 100
    speed: float = 50.0
    t0: float | None = None
    timebase: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.t0 is None:
            object.__setattr__(self, "t0", self.timebase())
        if not HZ_MIN <= self.hz <= HZ_MAX:
            raise ValueError(f"HZ must be between {HZ_MIN} and {HZ_MAX}, got {self.hz}")
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.real_jiffy < MIN_REAL_JIFFY:
            raise ValueError(
                f"speed {self.speed:g} at HZ={self.hz} maps a jiffy to "
                f"{self.real_jiffy * 1e6:.0f} us of real time; the floor is "
                f"{MIN_REAL_JIFFY * 1e6:.0f} us (use speed <= {self.max_speed(self.hz):g})"
            )

    @staticmethod
    def max_speed(hz: int) -> float:
        return 1.0 / (hz * MIN_REAL_JIFFY)

    @property
    def real_jiffy(self) -> float:
        """Real seconds in one jiffy."""
        return 1.0 / (self.hz * self.speed)

    def now(self) -> float:
        """Model seconds since boot."""
        return (self.timebase() - self.t0) * self.speed  # type: ignore[operator]

    def monotonic(self) -> float:
        """The clock deadlines are taken on (real seconds, or virtual ones)."""
        return self.timebase()

    def jiffies(self) -> int:
        return int(self.now() * self.hz)

    def jiffies_to_real(self, j: float) -> float:
        return j / (self.hz * self.speed)

    def model_to_real(self, seconds: float) -> float:
        return seconds / self.speed

    def real_to_model(self, seconds: float) -> float:
        return seconds * self.speed

    def msecs_to_jiffies(self, ms: float) -> int:
        return max(1, round(ms * self.hz / 1000))

    def deadline_after(self, j: float) -> float:
        """Deadline on ``monotonic()``, ``j`` jiffies from now."""
        return self.timebase() + self.jiffies_to_real(j)


def dmesg_stamp(seconds: float) -> str:
    """``[   12.345678]``, as printk prints its timestamps."""
    return f"[{seconds:12.6f}]"
