"""The oom_reaper's single slot, its pins, and what it may reap."""

import threading

from kthreads import MM_SWAPENTS, Completion, Kernel, VmaKind, VmaSpec, mmdrop, mmgrab
from kthreads.oom_reaper import wake_oom_reaper
from util import park_killable


def test_the_slot_takes_one_mm_pins_it_with_mm_count_and_drops_a_second(boot):
    k = boot(policy="patch1", speed=5)
    done = Completion()
    a = k.fork("a", park_killable(done), vmas=[VmaSpec(pages=50)])
    b = k.fork("b", park_killable(done), vmas=[VmaSpec(pages=50)])
    a_mm, b_mm = a.mm, b.mm
    rs = k.reaper_status
    # Hold a's mmap_sem for write from the harness: every reaper trylock fails.
    a_mm.mmap_sem.down_write()
    try:
        assert wake_oom_reaper(k, a, a_mm)
        assert k.wait_until(lambda: rs().skipped >= 1, 2)
        assert rs().busy_mm == a_mm.id
        assert a_mm.mm_count.read() == 2  # the reaper's pin
        assert not wake_oom_reaper(k, b, b_mm)  # busy: b is not queued
        assert b_mm.mm_count.read() == 1 and rs().dropped == 1
    finally:
        a_mm.mmap_sem.up_write()
    # The next try succeeds; then the slot empties and the pin goes.
    assert k.wait_until(lambda: rs().idle, 2)
    assert rs().reaped == 1 and a_mm.mm_count.read() == 1
    assert a_mm.get_mm_rss() == 0 and b_mm.get_mm_rss() == 50
    done.complete_all()


def test_reaper_skips_shared_hugetlb_and_mlocked_vmas(boot):
    k = boot(policy="patch1", nr_pages=2048)
    done = Completion()
    p = k.fork("p", park_killable(done), vmas=[
        VmaSpec(VmaKind.ANON_PRIVATE, pages=10, swap=3, size=20),
        VmaSpec(VmaKind.FILE_PRIVATE, pages=7),
        VmaSpec(VmaKind.FILE_SHARED, pages=5),
        VmaSpec(VmaKind.SHMEM_SHARED, pages=4),
        VmaSpec(VmaKind.HUGETLB, pages=6),
        VmaSpec(VmaKind.ANON_PRIVATE, pages=8, locked=True),
    ])
    mm = p.mm
    assert wake_oom_reaper(k, p, mm)
    assert k.wait_until(lambda: k.reaper_status().reaped == 1, 2)
    kinds = {(v.kind, v.locked): len(v.pages) for v in mm.vmas}
    assert kinds == {(VmaKind.ANON_PRIVATE, False): 0, (VmaKind.FILE_PRIVATE, False): 0,
                     (VmaKind.FILE_SHARED, False): 5, (VmaKind.SHMEM_SHARED, False): 4,
                     (VmaKind.HUGETLB, False): 6, (VmaKind.ANON_PRIVATE, True): 8}
    assert k.reaper_status().pages_reaped == 17
    assert mm.get_mm_counter(MM_SWAPENTS) == 0  # swap entries zapped too
    # Patch 1 prints nothing; the lab's stream reports what is left.
    assert not any("oom_reaper" in line.text for line in k.dmesg())
    assert any("oom_reaper: reaped pid" in line.text and "shmem-rss:16kB" in line.text
               for line in k.tracer.lab_lines())
    done.complete()


def test_reaper_notices_an_mm_whose_last_user_is_gone(boot):
    """mmget_not_zero fails: the reaper must not touch the address space."""
    k = boot(policy="patch1")
    done = Completion()
    p = k.fork("p", park_killable(done), vmas=[VmaSpec(pages=30)])
    mm = p.mm
    gate = threading.Event()
    # Pin the struct from the harness, then let the task exit: mm_users hits 0.
    mmgrab(mm)
    done.complete()
    assert k.wait_until(lambda: p.state_letter == "X", 2)
    assert mm.mm_users.read() == 0 and not mm.freed
    assert wake_oom_reaper(k, p, mm)
    assert k.wait_until(lambda: k.reaper_status().raced_exit == 1 and
                        k.reaper_status().idle, 2)
    assert k.reaper_status().reaped == 0
    mmdrop(mm)
    assert mm.freed
    gate.set()


def test_policy_none_has_no_reaper_thread():
    k = Kernel(policy="none")
    try:
        assert k.reaper is None and not k.reaper_status().running
        assert [t.comm for t in k.tasks() if t.is_kthread] == ["khungtaskd"]
    finally:
        k.shutdown()
