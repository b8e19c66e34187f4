"""mm_struct: refcounts, teardown exactly once, use-after-free, RSS counters."""

import pytest

from kthreads import (MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS,
                      Completion, RefcountUnderflow, UseAfterFree, VmaKind, VmaSpec,
                      do_munmap, handle_mm_fault, mmdrop, mmget, mmget_not_zero, mmgrab, mmput,
                      unmap_page_range)
from util import exited, park_killable


def test_last_mmput_frees_the_pages_and_mmget_not_zero_then_fails(boot):
    k = boot()
    mm = MM(k)
    mm.populate(VmaSpec(pages=100))
    assert k.zone.pages_owned_by(mm) == 101  # 100 pages + 1 page-table page
    mmgrab(mm)  # pin the struct, as the reaper does
    mmget(mm)
    mmput(mm)
    assert k.zone.pages_owned_by(mm) == 101  # one user left
    mmput(mm)  # the last user: exit_mmap
    assert k.zone.pages_owned_by(mm) == 0
    assert not mm.freed and mm.mm_users.read() == 0 and mm.mm_count.read() == 1
    assert not mmget_not_zero(mm)
    mmdrop(mm)
    assert mm.freed
    assert k.zone.nr_free == k.zone.nr_pages


def test_a_freed_mm_is_freed_once_and_any_touch_raises(boot):
    k = boot()
    mm = MM(k)
    mmput(mm)
    assert mm.freed
    for touch in (lambda: mmdrop(mm), lambda: mmget(mm), lambda: mmget_not_zero(mm),
                  lambda: mm.get_mm_rss(), lambda: mm.vmas, lambda: mmput(mm)):
        with pytest.raises(UseAfterFree, match=f"mm#{mm.id}"):
            touch()


def test_refcount_underflow_raises(boot):
    k = boot()
    mm = MM(k)
    mmgrab(mm)
    mmput(mm)
    with pytest.raises(RefcountUnderflow, match="mm_users"):
        mmput(mm)
    mmdrop(mm)


def test_rss_counters_by_vma_kind(boot):
    k = boot(nr_pages=2048)
    mm = MM(k)
    anon = mm.populate(VmaSpec(VmaKind.ANON_PRIVATE, pages=10, size=40, swap=5))
    mm.populate(VmaSpec(VmaKind.FILE_PRIVATE, pages=7))
    mm.populate(VmaSpec(VmaKind.FILE_SHARED, pages=3))
    mm.populate(VmaSpec(VmaKind.SHMEM_SHARED, pages=4))
    mm.populate(VmaSpec(VmaKind.HUGETLB, pages=6))
    mm.populate(VmaSpec(VmaKind.ANON_PRIVATE, pages=2, locked=True))
    assert mm.get_mm_counter(MM_ANONPAGES) == 12
    assert mm.get_mm_counter(MM_FILEPAGES) == 10
    assert mm.get_mm_counter(MM_SHMEMPAGES) == 4
    assert mm.get_mm_counter(MM_SWAPENTS) == 5
    assert mm.get_mm_rss() == 26  # hugetlb pages are not RSS
    assert mm.total_vm == 40 + 7 + 3 + 4 + 6 + 2
    assert mm.nr_ptes == 6
    assert unmap_page_range(mm, anon) == 10
    assert mm.get_mm_counter(MM_ANONPAGES) == 2 and mm.get_mm_counter(MM_SWAPENTS) == 0
    mmput(mm)
    assert k.zone.nr_free == k.zone.nr_pages


def test_unmapped_file_and_shmem_pages_go_back_to_the_zone(boot):
    # A deliberate simplification (mm.py): no page cache, so a file page is
    # as good as reclaimed once unmapped, and a shared anonymous mapping's
    # shmem pages die with it. Linux 4.6 would keep them in the page cache
    # (until reclaim) and in tmpfs.
    k = boot(nr_pages=256)
    mm = MM(k)
    vmas = [mm.populate(VmaSpec(kind, pages=5))
            for kind in (VmaKind.FILE_PRIVATE, VmaKind.FILE_SHARED, VmaKind.SHMEM_SHARED)]
    before = k.zone.nr_free
    for vma in vmas:
        assert do_munmap(mm, vma) == 5
    assert k.zone.nr_free == before + 15
    assert mm.get_mm_rss() == 0 and mm.vmas == []
    mmput(mm)
    assert k.zone.nr_free == k.zone.nr_pages


def test_vma_spec_validation():
    with pytest.raises(ValueError, match="bad VMA spec"):
        VmaSpec(pages=10, size=5)
    with pytest.raises(ValueError):
        VmaSpec(pages=-1)


def test_populate_refuses_more_than_the_zone_has(boot):
    k = boot(nr_pages=64)
    mm = MM(k)
    with pytest.raises(ValueError, match="zone too small"):
        mm.populate(VmaSpec(pages=100))
    mmput(mm)


def test_a_fork_that_does_not_fit_gives_its_pages_back(boot):
    k = boot(nr_pages=64)
    with pytest.raises(ValueError, match="zone too small"):
        k.fork("big", lambda t: None, vmas=[VmaSpec(pages=10), VmaSpec(pages=100)])
    assert k.zone.nr_free == k.zone.nr_pages and all(m.freed for m in k.mms())
    assert [t for t in k.tasks() if not t.is_kthread] == []


def test_page_fault_maps_a_page_owned_by_the_mm(boot):
    k = boot()
    done = Completion()
    faulted = []

    def body(t):
        vma = t.mm.vmas[0]
        with t.mm.mmap_sem.read():
            faulted.append(handle_mm_fault(t.mm, vma))
        done.wait_for_completion_killable()

    p = k.fork("faulter", body, vmas=[VmaSpec(pages=1, size=8)])
    assert k.wait_until(lambda: faulted == [True], 2)
    mm = p.mm
    assert mm.get_mm_counter(MM_ANONPAGES) == 2
    assert k.zone.pages_owned_by(mm) == 3
    done.complete()
    assert k.wait_until(exited(p), 2)
    assert mm.freed and k.zone.nr_free == k.zone.nr_pages


def test_threads_share_the_mm_and_the_last_one_out_frees_it(boot):
    k = boot()
    done = Completion()
    leader = k.fork("leader", park_killable(done), vmas=[VmaSpec(pages=10)])
    threads = [k.clone_thread(leader, f"t{i}", park_killable(done)) for i in range(3)]
    mm = leader.mm
    assert mm.mm_users.read() == 4
    assert all(t.tgid == leader.pid and t.mm is mm for t in threads)
    done.complete_all()
    assert k.wait_until(exited(leader, *threads), 2)
    assert mm.freed
