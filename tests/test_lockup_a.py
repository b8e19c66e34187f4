"""Lockup A without a reaper: the OOM victim sleeps on a mutex held by the allocator."""

from kthreads import GFP_KERNEL, Completion, Kernel, Mutex, VmaSpec, alloc_pages
from util import exited

ZONE = 1024


def build(k: Kernel, killable: bool):
    """H (small) takes inode_lock; V (the biggest) sleeps on it; H allocates."""
    inode_lock = Mutex("inode_lock", k)
    go = Completion("go")
    got: list[int | None] = []

    def holder(t):
        with inode_lock:
            go.wait_for_completion()
            got.append(alloc_pages(GFP_KERNEL))  # "too small to fail"

    def victim(t):
        if killable:
            with inode_lock.killable():
                pass
        else:
            with inode_lock:
                pass

    h = k.fork("holder", holder, vmas=[VmaSpec(pages=40)])
    assert k.wait_until(lambda: inode_lock.owner is h, 2)
    free = k.zone.nr_free - 8  # leave less than the min watermark
    v = k.fork("victim", victim, vmas=[VmaSpec(pages=free - (free + 511) // 512)])
    assert k.wait_until(lambda: v.state_letter == "D" and v.wchan is inode_lock, 2)
    assert k.zone.nr_free < k.zone.wmark_min
    return inode_lock, go, got, h, v


def test_lockup_a_without_a_reaper_locks_up_and_still_shuts_down():
    k = Kernel(nr_pages=ZONE, policy="none")
    try:
        inode_lock, go, got, h, v = build(k, killable=False)
        rss_before = v.mm.get_mm_rss()
        go.complete()
        assert k.wait_until(lambda: k.stats.oom_kills == 1, 2)
        freed_at_kill = k.zone.nr_freed
        # The OOM killer keeps being asked, and keeps refusing because of V.
        assert k.wait_until(lambda: k.stats.oom_aborts >= 20, 5)
        snap = k.snapshot()
        sv, sh = snap.task(v.pid), snap.task(h.pid)
        assert sv.tif_memdie and sv.sigkill_pending
        assert sv.state == "D" and sv.wchan == "inode_lock" and sv.waits_for == (h.pid,)
        assert sh.in_allocator_since is not None and not sh.tif_memdie
        assert snap.lock("inode_lock").writer == h.pid and snap.lock("inode_lock").waiters == (v.pid,)
        assert snap.stats.oom_kills == 1 and snap.oom_victims == 1
        assert k.zone.nr_freed == freed_at_kill and v.mm.get_mm_rss() == rss_before
        assert got == []  # H's allocation never returned
        assert "blocked for more than" not in k.dmesg_text()  # silence: nobody noticed (yet)
    finally:
        report = k.shutdown()
    assert report.clean, report.format()
    assert report.joined == 3  # writer, victim, khungtaskd
    assert k.check_quiescent() == []
    assert v.exit_reason in ("SIGKILL", "plug pulled") and h.exit_reason == "plug pulled"


def test_lockup_a_with_a_killable_sleep_recovers_on_its_own(boot):
    k = boot(nr_pages=ZONE, policy="none")
    inode_lock, go, got, h, v = build(k, killable=True)
    mm = v.mm
    go.complete()
    assert k.wait_until(exited(h, v), 3)
    assert v.exit_reason == "SIGKILL"  # woke from lock_killable with -EINTR, then exited
    assert mm.freed and got and got[0] is not None
    assert h.exit_reason == "exit" and k.stats.oom_kills == 1
    assert k.zone.nr_free == k.zone.nr_pages
