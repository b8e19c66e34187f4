"""``__ratelimit()`` (lib/ratelimit.c as of Linux 4.6) and its state.

A ``RatelimitState`` lets ``burst`` calls through per ``interval`` jiffies
and counts the rest as missed. As 4.6 does it:

* the interval starts at the first call (``begin = jiffies``);
* the first call once jiffies is past ``begin + interval`` starts a new
  interval (``begin = jiffies``: c2594bc37f44, v4.5-rc1, fixed the old reset
  to 0) and, if calls were missed in the previous ones, prints
  ``"%s: %d callbacks suppressed"`` at KERN_WARNING, ``%s`` being the
  function that called ``__ratelimit`` (its ``__func__``);
* a call is allowed while fewer than ``burst`` went through in this interval.

So the "callbacks suppressed" line comes at the next call after an interval
has run out, just before that call's own (allowed) output; a suppression
followed by no later call is never reported. Printing it when the state is
released instead (RATELIMIT_MSG_ON_RELEASE) came later (6b1d174b, 4.8;
neither id nor version verified at the source), not modelled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .sched import current
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel

#: include/linux/ratelimit.h: DEFAULT_RATELIMIT_INTERVAL is 5 * HZ.
DEFAULT_RATELIMIT_INTERVAL_SECONDS = 5
DEFAULT_RATELIMIT_BURST = 10


@dataclass(eq=False)
class RatelimitState:
    """``struct ratelimit_state``; ``interval`` in jiffies (0: no limit)."""

    interval: int
    burst: int
    printed: int = 0
    missed: int = 0
    # jiffies the current interval began; None before the first call. (The
    # kernel tests ``!rs->begin``; its jiffies start at INITIAL_JIFFIES, so 0
    # never means a real time there. The model's jiffies start at 0.)
    begin: int | None = None
    # raw_spin_trylock(&rs->lock): a caller that finds the state busy is
    # suppressed instead of waiting, so two callers never both see room for
    # the last allowed call of an interval.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.interval < 0 or self.burst < 0:
            raise ValueError(f"a ratelimit needs interval >= 0 and burst >= 0, got "
                             f"interval={self.interval} burst={self.burst}")


def default_ratelimit_state(hz: int) -> RatelimitState:
    """DEFINE_RATELIMIT_STATE(name, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST)."""
    return RatelimitState(DEFAULT_RATELIMIT_INTERVAL_SECONDS * hz, DEFAULT_RATELIMIT_BURST)


def ___ratelimit(kernel: "Kernel", rs: RatelimitState, func: str) -> bool:
    """True: go ahead; False: suppressed. ``func`` is the caller's name, for
    the "callbacks suppressed" line (the kernel's ``__ratelimit`` macro
    passes ``__func__``)."""
    if rs.interval == 0:
        return True
    if not rs.lock.acquire(blocking=False):
        return False
    try:
        now = kernel.jiffies
        if rs.begin is None:
            rs.begin = now
        suppressed = 0
        if now > rs.begin + rs.interval:  # time_is_before_jiffies(begin + interval)
            suppressed = rs.missed
            rs.begin, rs.printed, rs.missed = now, 0, 0
        if rs.burst > rs.printed:
            rs.printed += 1
            allowed = True
        else:
            rs.missed += 1
            allowed = False
    finally:
        rs.lock.release()
    # Printed after the lock is dropped (the kernel prints under it): a
    # printk is a scheduling point on the controlled CPU, and a plain lock
    # must not be held across one. Nothing else reads the state meanwhile
    # that this line could contradict.
    if suppressed:
        kernel.printk(f"{func}: {suppressed} callbacks suppressed", LogLevel.KERN_WARNING, current())
    return allowed
