"""The zone and the allocator's slow path."""

import random

import pytest

from kthreads import (GFP, GFP_ATOMIC, GFP_KERNEL, GFP_NOFS, BadPageState, Completion, VmaSpec,
                      Zone, alloc_pages, format_gfp, free_page, mark_oom_victim, parse_gfp)
from kthreads.page_alloc import AllocFlags
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
    assert k.stats.alloc_stalls >= 1
    assert any("nofs: page allocation stalls for" in line.text and line.text.endswith("order:0")
               for line in k.dmesg())
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
    assert z.owner[pages[0]] is a and z.owner[pages[2]] is a
    assert z.check_conservation() == [] and z.nr_free == 62
