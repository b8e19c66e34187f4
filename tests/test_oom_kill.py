"""The OOM killer: badness, the abort rule, kills, shared mms, panic, log formats."""

import re

import pytest

from kthreads import (GFP_KERNEL, OOM_SCORE_ADJ_MIN, PF, Completion, Ev, OomControl, VmaSpec,
                      alloc_pages, mark_oom_victim, oom_badness, select_bad_process,
                      send_sigkill)
from kthreads.oom_kill import OomScan
from util import exited, park_killable, park_uninterruptible


def test_badness_table(boot):
    k = boot(nr_pages=4096)
    done = Completion()
    big = k.fork("big", park_killable(done), vmas=[VmaSpec(pages=1000, swap=24, size=1100)])
    small = k.fork("small", park_killable(done), vmas=[VmaSpec(pages=100)])
    boosted = k.fork("boosted", park_killable(done), vmas=[VmaSpec(pages=100)], oom_score_adj=500)
    shielded = k.fork("shielded", park_killable(done), vmas=[VmaSpec(pages=100)], oom_score_adj=-999)
    immune = k.fork("immune", park_killable(done), vmas=[VmaSpec(pages=2500)],
                    oom_score_adj=OOM_SCORE_ADJ_MIN)
    kt = k.kthread_run("kworker/0:1", park_killable(done))
    total = 4096
    assert oom_badness(big, total) == 1000 + 24 + 3  # rss + swapents + page tables
    assert oom_badness(small, total) == 100 + 1
    assert oom_badness(boosted, total) == 101 + 500 * total // 1000
    assert oom_badness(shielded, total) == 1  # never 0 for an eligible task
    assert oom_badness(immune, total) == 0
    assert oom_badness(kt, total) == 0
    victim, score = select_bad_process(k, OomControl(GFP_KERNEL))
    # The score is normalised to the size of memory, as 4.6's *ppoints is.
    assert victim is boosted and score == (101 + 2048) * 1000 // total
    done.complete_all()


def test_select_bad_process_aborts_while_a_tif_memdie_task_lives(boot):
    k = boot()
    done = Completion()
    a = k.fork("a", park_killable(done), vmas=[VmaSpec(pages=10)])
    k.fork("b", park_killable(done), vmas=[VmaSpec(pages=500)])
    mark_oom_victim(k, a)
    assert select_bad_process(k, OomControl(GFP_KERNEL)) == (OomScan.OOM_SCAN_ABORT, 0)
    done.complete_all()


def hog_all_but(k, free, body, comm="victim", **kw):
    pages = k.zone.nr_free - free
    while pages + (pages + 511) // 512 > k.zone.nr_free - free:
        pages -= 1
    return k.fork(comm, body, vmas=[VmaSpec(pages=pages)], **kw)


def test_a_kill_logs_the_kernel_lines_and_the_victim_exits(boot):
    k = boot(nr_pages=1024)
    never = Completion()
    v = hog_all_but(k, 8, park_killable(never))
    got = []

    def allocator(t):
        got.append(alloc_pages(GFP_KERNEL))

    a = k.fork("allocator", allocator)
    assert k.wait_until(exited(a, v), 3)
    assert got[0] is not None and k.stats.oom_kills == 1
    text = [line.text for line in k.dmesg()]
    assert "allocator invoked oom-killer: gfp_mask=0x24000c0(GFP_KERNEL), order=0, oom_score_adj=0" in text
    assert "[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name" in text
    kill = [t for t in text if t.startswith("Out of memory: Kill process")]
    assert kill and re.fullmatch(rf"Out of memory: Kill process {v.pid} \(victim\) score \d+ or sacrifice child",
                                 kill[0])
    killed = [t for t in text if t.startswith("Killed process")]
    assert re.fullmatch(rf"Killed process {v.pid} \(victim\) total-vm:\d+kB, anon-rss:\d+kB, "
                        r"file-rss:0kB, shmem-rss:0kB", killed[0])
    assert v.exit_reason == "SIGKILL" and not v.tif_memdie
    assert k.oom_victims.read() == 0
    names = [e.name for e in k.tracer.events()]
    assert names.index("mark_victim") < names.index("sched_process_exit") < names.index("exit_oom_victim") \
        or names.index("mark_victim") < names.index("exit_oom_victim")


def test_current_with_sigkill_pending_takes_the_reserves_instead_of_killing(boot):
    k = boot(nr_pages=1024)
    go, never = Completion(), Completion()
    hog_all_but(k, 4, park_killable(never), comm="hog")
    got = []

    def dying(t):
        go.wait_for_completion()  # uninterruptible: SIGKILL waits for the allocation
        got.append(alloc_pages(GFP_KERNEL))

    d = k.fork("dying", dying)
    assert k.wait_until(lambda: d.state_letter == "D", 2)
    send_sigkill(d)
    go.complete()
    assert k.wait_until(exited(d), 2)
    assert got[0] is not None  # from the reserves
    assert k.stats.oom_kills == 0
    assert any(e.name == Ev.OOM_CURRENT_VICTIM and e.pid == d.pid for e in k.tracer.events())
    never.complete()


def test_sharers_of_the_victims_mm_are_killed_unless_unkillable(boot):
    # aac45363: a sharer that is OOM_SCORE_ADJ_MIN, a kthread (use_mm) or
    # init is not killed, and the mm is then not reaped.
    for adj, kthread, killed in ((0, False, True), (OOM_SCORE_ADJ_MIN, False, False), (0, True, False)):
        k = boot(nr_pages=1024)
        never = Completion()
        v = hog_all_but(k, 8, park_killable(never))
        s = k.fork("sharer", park_killable(never), share_mm_with=v, oom_score_adj=adj, start=False)
        if kthread:
            s.flags |= PF.PF_KTHREAD  # a kernel thread working on the victim's mm
        k.start(s)
        a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
        assert k.wait_until(exited(a, v), 3)
        events = k.tracer.events()
        kill = [e for e in events if e.name == Ev.OOM_KILL][0]
        assert kill.pid == v.pid and kill.fields["can_oom_reap"] is killed
        if killed:
            assert k.wait_until(exited(s), 2) and s.exit_reason == "SIGKILL"
        else:
            assert not s.sigkill_pending and s.state_letter == "D"
            assert any(e.name == Ev.OOM_REAP_FORBIDDEN and e.pid == s.pid for e in events)
        never.complete_all()


def test_nothing_killable_is_a_prompt_panic_not_a_hang(boot):
    k = boot(nr_pages=1024)
    never = Completion()
    hog = hog_all_but(k, 4, park_uninterruptible(never), comm="immune", oom_score_adj=OOM_SCORE_ADJ_MIN)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL), oom_score_adj=OOM_SCORE_ADJ_MIN)
    assert k.wait_until(lambda: k.panic_reason is not None, 3)
    assert k.panic_reason == "Out of memory and no killable processes..."
    assert "Kernel panic - not syncing: Out of memory and no killable processes..." in \
        [line.text for line in k.dmesg()]
    # A panic stops the machine: every thread unwinds by itself.
    assert k.wait_until(exited(a, hog), 3)
    assert a.exit_reason == "panic" and hog.exit_reason == "plug pulled"


@pytest.mark.parametrize("adj", [-1001, 1001])
def test_fork_rejects_out_of_range_oom_score_adj(boot, adj):
    k = boot()
    with pytest.raises(ValueError, match="oom_score_adj must be in"):
        k.fork("x", lambda t: None, oom_score_adj=adj)


def test_the_kill_comes_before_tif_memdie_and_the_score_is_per_mille(boot):
    # Linux 4.6's oom_kill_process: SIGKILL, then mark_oom_victim, so the
    # victim never holds the reserves without a kill pending; and "score %u"
    # prints chosen_points * 1000 / totalpages.
    k = boot(nr_pages=1024, policy="none", hung_task_timeout=0)
    done = Completion()
    v = k.fork("victim", park_killable(done), vmas=[VmaSpec(pages=900)])
    w = k.fork("writer", lambda t: alloc_pages(GFP_KERNEL), vmas=[VmaSpec(pages=100)])
    assert k.wait_until(exited(v, w), 10)  # below the min watermark: the victim is killed
    names = [(e.name, e.pid) for e in k.tracer.events() if e.name in (Ev.SIGNAL_GENERATE, Ev.MARK_VICTIM)]
    assert names[:2] == [(Ev.SIGNAL_GENERATE, v.pid), (Ev.MARK_VICTIM, v.pid)]
    points = 900 + 2  # rss + page tables
    assert f"Kill process {v.pid} (victim) score {points * 1000 // 1024} or sacrifice child" in k.dmesg_text()
    done.complete_all()
