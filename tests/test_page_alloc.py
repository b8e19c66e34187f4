"""The zone and the allocator's slow path."""

import gc
import random
import tracemalloc

import pytest

from kthreads import (GFP, GFP_ATOMIC, GFP_KERNEL, GFP_NOFS, BadPageState, Completion, VmaSpec,
                      Zone, alloc_pages, format_gfp, free_page, mark_oom_victim, parse_gfp)
from kthreads.zone import AllocFlags
from util import exited, park_killable


def test_format_gfp_matches_the_kernels_pGg():
    assert int(GFP_KERNEL) == 0x24000C0
    assert format_gfp(GFP_KERNEL) == "GFP_KERNEL"
    assert int(GFP_NOFS) == 0x2400040
    assert format_gfp(GFP_NOFS | GFP.NOFAIL) == "GFP_NOFS|__GFP_NOFAIL"
    assert parse_gfp("GFP_NOFS|__GFP_NOFAIL") == GFP_NOFS | GFP.NOFAIL
    with pytest.raises(ValueError, match="unknown gfp flag 'GFP_BOGUS'"):
        parse_gfp("GFP_BOGUS")


@pytest.mark.parametrize("kw", [dict(nr_pages=8), dict(nr_pages=100, wmark_min=0),
                                dict(nr_pages=100, wmark_min=10, wmark_low=5),
                                dict(nr_pages=100, wmark_min=10, wmark_high=100)])
def test_zone_rejects_bad_geometry(kw):
    with pytest.raises(ValueError):
        Zone(**kw)


def test_double_free_and_foreign_free_are_bad_page_state():
    z = Zone(64)
    a, b = object(), object()
    pfn = z.rmqueue(a, AllocFlags.ALLOC_WMARK_MIN)
    with pytest.raises(BadPageState, match="freed by"):
        z.free_page(pfn, b)
    z.free_page(pfn, a)
    with pytest.raises(BadPageState, match="freed twice"):
        z.free_page(pfn, a)
    assert z.check_conservation() == []


def test_pages_are_conserved_under_concurrent_alloc_and_free(boot):
    k = boot(nr_pages=4096)
    start = Completion()
    checks = []

    def churn(seed):
        def body(t):
            rng = random.Random(seed)
            start.wait_for_completion()
            mine = []
            for _ in range(3000):
                if mine and rng.random() < 0.5:
                    free_page(mine.pop(rng.randrange(len(mine))))
                else:
                    mine.append(alloc_pages(GFP_KERNEL))
            for p in mine:
                free_page(p)
        return body

    tasks = [k.fork(f"churn{i}", churn(i)) for i in range(6)]
    start.complete_all()
    while not exited(*tasks)():
        checks.append(k.zone.check_conservation())
        k.wait_until(exited(*tasks), 0.005)
    assert len(checks) >= 1 and all(c == [] for c in checks)
    assert all(t.exit_reason == "exit" for t in tasks)
    assert k.zone.nr_allocated - k.zone.nr_freed == k.zone.nr_pages - k.zone.nr_free


def fill_to(k, free_target):
    """A process holding everything but ``free_target`` pages; returns (task, done)."""
    done = Completion("hog-done")
    pages = k.zone.nr_free - free_target
    while pages + (pages + 511) // 512 > k.zone.nr_free - free_target:
        pages -= 1  # leave room for the page-table pages
    hog = k.fork("hog", park_killable(done), vmas=[VmaSpec(pages=pages)])
    assert k.zone.nr_free == free_target
    return hog, done


def test_only_tif_memdie_tasks_reach_the_reserves(boot):
    k = boot(nr_pages=1024)
    z = k.zone
    hog, done = fill_to(k, z.wmark_min)
    got = {}
    go = Completion()

    def atomic(t):
        got["plain"] = alloc_pages(GFP_ATOMIC)  # cannot reclaim: fails at min

    def victim(t):
        go.wait_for_completion()
        pages = []
        while (p := alloc_pages(GFP_KERNEL)) is not None:
            pages.append(p)
        got["victim"] = len(pages)
        got["free_at_failure"] = k.zone.nr_free
        for p in pages:
            free_page(p)

    a = k.fork("atomic", atomic)
    assert k.wait_until(exited(a), 2)
    assert got["plain"] is None and z.nr_free == z.wmark_min
    v = k.fork("victim", victim)
    mark_oom_victim(k, v)
    go.complete()
    assert k.wait_until(exited(v), 2)
    # The victim drained the reserves below min, then its allocation failed
    # instead of looping: the one way a small allocation fails.
    assert got["victim"] == z.wmark_min  # every page below min
    assert got["free_at_failure"] == 0
    assert k.stats.oom_invocations == 0 and k.stats.alloc_failed == 2  # atomic + victim
    done.complete()


def test_gfp_nofs_loops_without_ever_invoking_the_oom_killer(boot):
    k = boot(nr_pages=1024, alloc_stall_secs=0.5)
    hog, done = fill_to(k, 4)
    got = []

    def nofs(t):
        got.append(alloc_pages(GFP_NOFS))

    t = k.fork("nofs", nofs)
    # Looped for a model second (100 jiffies at HZ=100): still no OOM kill.
    assert k.wait_until(lambda: t.alloc_since is not None and k.clock.now() - t.alloc_since > 1.0, 5)
    assert k.stats.oom_invocations == 0 and not got
    # The stall warning is 4.9-4.15's: a 4.6 tree loops silently.
    assert k.stats.alloc_stalls == 0
    assert not any("page allocation stalls" in line.text for line in k.dmesg())
    done.complete()  # the hog exits: its memory comes back and the loop ends
    assert k.wait_until(exited(t, hog), 2)
    assert got and got[0] is not None
    assert k.stats.oom_invocations == 0


def test_a_bad_batch_free_leaves_the_zone_untouched():
    z = Zone(64)
    a = object()
    pages = [z.rmqueue(a, AllocFlags.ALLOC_WMARK_MIN) for _ in range(3)]
    z.free_page(pages[1], a)
    with pytest.raises(BadPageState, match=f"pfn {pages[1]} freed twice"):
        z.free_pages(pages, a)
    assert z.page_owner(pages[0]) is a and z.page_owner(pages[2]) is a
    assert z.check_conservation() == [] and z.nr_free == 62


def test_per_owner_counts_follow_every_alloc_and_free_and_ids_are_recycled():
    z = Zone(64)
    a, b = object(), object()
    pa = [z.rmqueue(a, AllocFlags.ALLOC_NO_WATERMARKS) for _ in range(5)]
    pb = z.rmqueue_bulk(b, 7, AllocFlags.ALLOC_NO_WATERMARKS)
    assert (z.pages_owned_by(a), z.pages_owned_by(b), z.pages_owned_by(object())) == (5, 7, 0)
    assert all(z.page_owner(p) is a for p in pa) and all(z.page_owner(p) is b for p in pb)
    assert len(set(pa + pb)) == 12 and z.nr_free == 52
    z.free_pages(pb, b)
    z.free_page(pa[0], a)
    assert (z.pages_owned_by(a), z.pages_owned_by(b)) == (4, 0)
    assert z.page_owner(pb[0]) is None
    c = object()  # b owns nothing any more: c may get its id, never its pages
    pc = z.rmqueue(c, AllocFlags.ALLOC_NO_WATERMARKS)
    with pytest.raises(BadPageState, match="freed by"):
        z.free_page(pc, b)
    assert z.pages_owned_by(c) == 1 and z.check_conservation() == []


def test_rmqueue_bulk_is_all_or_nothing_and_honours_the_watermark():
    z = Zone(64, wmark_min=4, wmark_low=5, wmark_high=6)
    a = object()
    assert z.rmqueue_bulk(a, 61, AllocFlags.ALLOC_WMARK_MIN) is None
    assert z.nr_free == 64 and z.pages_owned_by(a) == 0
    assert len(z.rmqueue_bulk(a, 60, AllocFlags.ALLOC_WMARK_MIN)) == 60
    assert z.rmqueue(a, AllocFlags.ALLOC_WMARK_MIN) is None  # 4 left: at the watermark
    assert z.rmqueue_bulk(a, 5, AllocFlags.ALLOC_NO_WATERMARKS) is None
    assert len(z.rmqueue_bulk(a, 4, AllocFlags.ALLOC_NO_WATERMARKS)) == 4
    assert z.nr_free == 0 and z.rmqueue(a, AllocFlags.ALLOC_NO_WATERMARKS) is None
    assert z.check_conservation() == []


def test_conservation_check_names_a_corrupted_zone():
    z = Zone(32)
    a = object()
    pages = z.rmqueue_bulk(a, 3, AllocFlags.ALLOC_NO_WATERMARKS)
    z._map[pages[0]] = ~pages[1]  # an owned page rewired as a free one: off the free list
    assert any("not conserved" in p for p in z.check_conservation())
    z2 = Zone(32)
    freed = z2.rmqueue_bulk(a, 3, AllocFlags.ALLOC_NO_WATERMARKS)
    z2.free_pages(freed, a)  # the free list: freed[2] -> freed[1] -> freed[0]
    z2._map[freed[0]] = ~freed[2]  # ... -> freed[2] again: a loop
    assert "a page is on the free list twice" in z2.check_conservation()
    z2._map[20] = 7  # a page never handed out, owned
    assert "a page never handed out is not blank" in z2.check_conservation()
    with pytest.raises(BadPageState, match="outside the zone"):
        z2.free_page(32, a)


def test_an_exiting_mm_is_checked_without_scanning_the_zone(boot):
    """note_mm_freed reads the mm's page count (O(1)): a leak is still caught."""
    k = boot(nr_pages=256)
    p = k.fork("p", lambda t: None, vmas=[VmaSpec(pages=10)], start=False)
    mm = p.mm
    assert k.zone.pages_owned_by(mm) == 10 + 1  # its pages and one page-table page
    k.note_mm_freed(mm)  # as if it were freed now, still mapping them
    assert k.breaches == [f"mm#{mm.id} freed with 11 pages still mapped"]
    k.breaches.clear()
    k.start(p)
    assert k.wait_until(lambda: mm.freed, 2)
    assert k.zone.pages_owned_by(mm) == 0 and k.breaches == []


def test_a_million_page_zone_costs_four_bytes_a_page():
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        z = Zone(1_000_000)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept <= 4 * 1_000_000 + 4096, f"{kept / 1e6:.2f} bytes a page"
    assert z.nr_free == 1_000_000 and z.check_conservation() == []


def test_a_design_that_warns_about_stalls_prints_the_4_9_line(boot):
    k = boot(nr_pages=1024, alloc_stall_secs=0.5)
    k.policy_ops.warns_alloc_stalls = True  # as a 4.9-4.15 design will
    hog, done = fill_to(k, 4)
    t = k.fork("nofs", lambda t: alloc_pages(GFP_NOFS))
    assert k.wait_until(lambda: k.stats.alloc_stalls >= 1, 5)
    # 4.9's warn_alloc: the line ends with the mode, as the OOM header prints it.
    assert any("nofs: page allocation stalls for" in line.text and
               line.text.endswith(f"order:0, mode:{int(GFP_NOFS):#x}(GFP_NOFS)") for line in k.dmesg())
    done.complete()
    assert k.wait_until(exited(t, hog), 2)
