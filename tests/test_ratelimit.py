"""``___ratelimit`` (lib/ratelimit.c, Linux 4.6) on a stub kernel: exact jiffies, no threads."""

import pytest

from kthreads.ratelimit import (DEFAULT_RATELIMIT_BURST, RatelimitState, ___ratelimit,
                                default_ratelimit_state)
from kthreads.trace import LogLevel


class StubKernel:
    """What ___ratelimit uses of a Kernel: jiffies and printk."""

    def __init__(self) -> None:
        self.jiffies = 1000
        self.lines: list[tuple[str, LogLevel]] = []

    def printk(self, text, level=LogLevel.KERN_INFO, task=None):
        self.lines.append((text, level))


def test_burst_calls_pass_per_interval_then_the_missed_are_reported_at_the_next_call():
    k, rs = StubKernel(), RatelimitState(interval=50, burst=3)
    assert [___ratelimit(k, rs, "f") for _ in range(5)] == [True, True, True, False, False]
    k.jiffies += 50  # not yet past begin + interval: still the same interval
    assert ___ratelimit(k, rs, "f") is False and k.lines == []
    k.jiffies += 1
    assert ___ratelimit(k, rs, "f") is True
    assert k.lines == [("f: 3 callbacks suppressed", LogLevel.KERN_WARNING)]
    assert (rs.begin, rs.printed, rs.missed) == (1051, 1, 0)


def test_an_interval_with_nothing_missed_prints_nothing():
    k, rs = StubKernel(), RatelimitState(interval=10, burst=2)
    for _ in range(3):
        assert ___ratelimit(k, rs, "f") and ___ratelimit(k, rs, "f")
        k.jiffies += 11
    assert k.lines == []


def test_interval_zero_never_limits_and_burst_zero_suppresses_everything():
    k = StubKernel()
    off = RatelimitState(interval=0, burst=0)
    assert all(___ratelimit(k, off, "f") for _ in range(100))
    mute = RatelimitState(interval=10, burst=0)
    assert not any(___ratelimit(k, mute, "f") for _ in range(4)) and mute.missed == 4


def test_a_busy_state_suppresses_instead_of_waiting():
    k, rs = StubKernel(), RatelimitState(interval=10, burst=5)
    rs.lock.acquire()  # another CPU is inside (raw_spin_trylock fails)
    try:
        assert ___ratelimit(k, rs, "f") is False
    finally:
        rs.lock.release()
    assert rs.missed == 0 and ___ratelimit(k, rs, "f") is True  # not counted as missed


def test_the_default_state_is_10_per_5_seconds():
    rs = default_ratelimit_state(hz=250)
    assert (rs.interval, rs.burst) == (5 * 250, DEFAULT_RATELIMIT_BURST) == (1250, 10)


@pytest.mark.parametrize("interval, burst", [(-1, 10), (10, -1)])
def test_bad_states_are_refused(interval, burst):
    with pytest.raises(ValueError, match="interval >= 0 and burst >= 0"):
        RatelimitState(interval, burst)
