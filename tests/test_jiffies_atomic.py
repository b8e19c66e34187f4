import threading

import pytest

from kthreads import Atomic, Cell, Clock, RefcountUnderflow, dmesg_stamp
from kthreads.atomic import atomic_dec_and_test, atomic_inc, atomic_inc_not_zero, cmpxchg


def test_dmesg_stamp_matches_printk():
    assert dmesg_stamp(12.345678) == "[   12.345678]"
    assert dmesg_stamp(0) == "[    0.000000]"


def test_clock_maps_jiffies_to_real_time_through_speed():
    c = Clock(hz=100, speed=50)
    assert c.real_jiffy == pytest.approx(0.0002)
    assert c.jiffies_to_real(10) == pytest.approx(0.002)  # HZ/10 = 10 jiffies
    assert c.model_to_real(1.0) == pytest.approx(0.02)
    assert c.msecs_to_jiffies(100) == 10


@pytest.mark.parametrize("kw, msg", [
    (dict(hz=50), "HZ must be between"),
    (dict(hz=2000), "HZ must be between"),
    (dict(speed=0), "speed must be positive"),
    (dict(speed=-1), "speed must be positive"),
    (dict(hz=1000, speed=100), "floor"),
])
def test_clock_rejects_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Clock(**kw)


def test_atomic_ops_and_underflow():
    a = Atomic(1, "mm_users")
    assert atomic_inc(a) == 2
    assert not atomic_dec_and_test(a)
    assert atomic_dec_and_test(a)
    assert not atomic_inc_not_zero(a)
    with pytest.raises(RefcountUnderflow, match="mm_users"):
        a.dec_return()


def test_atomic_inc_is_atomic_across_threads():
    a = Atomic(0)
    start = threading.Barrier(4)

    def work():
        start.wait(5)
        for _ in range(5000):
            a.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert a.read() == 20000


def test_cmpxchg_swaps_only_from_the_expected_value():
    cell: Cell[object] = Cell(None, "mm_to_reap")
    x, y = object(), object()
    assert cmpxchg(cell, None, x) is None
    assert cell.read() is x
    assert cmpxchg(cell, None, y) is x  # busy: unchanged
    assert cell.read() is x
    assert cell.xchg(None) is x
    assert cell.read() is None
