"""The OOM killer: badness, the abort rule, kills, shared mms, panic, log formats."""

import re

import pytest

from kthreads import (GFP_KERNEL, OOM_SCORE_ADJ_MIN, PF, Completion, Ev, OomControl, Policy, VmaSpec,
                      alloc_pages, mark_oom_victim, oom_badness, schedule_timeout_killable,
                      select_bad_process, send_sigkill)
from kthreads.oom_kill import OomScan, oom_scan_process_thread
from kthreads.trace import LogLevel
from util import CONTROLLED, exited, park_killable, park_uninterruptible, pages_left


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
    # 4.6: adj *= totalpages / 1000, the integer division first (4096 -> 4).
    assert oom_badness(boosted, total) == 101 + 500 * 4
    assert oom_badness(shielded, total) == 1  # never 0 for an eligible task
    assert oom_badness(immune, total) == 0
    assert oom_badness(kt, total) == 0
    victim, score = select_bad_process(k, OomControl(GFP_KERNEL))
    # The score is normalised to the size of memory, as 4.6's *ppoints is.
    assert victim is boosted and score == (101 + 2000) * 1000 // total
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


# -- Linux 4.6's arithmetic: adj counts per whole thousand pages ----------------------------
@pytest.mark.parametrize("totalpages, factor", [(384, 0), (999, 0), (1000, 1), (1999, 1), (2000, 2), (4096, 4)])
def test_oom_score_adj_counts_in_whole_thousands_of_pages(boot, totalpages, factor):
    k = boot(nr_pages=1024, hung_task_timeout=0)
    done = Completion()
    plus = k.fork("plus", park_killable(done), vmas=[VmaSpec(pages=100)], oom_score_adj=300)
    minus = k.fork("minus", park_killable(done), vmas=[VmaSpec(pages=100)], oom_score_adj=-999)
    assert oom_badness(plus, totalpages) == 101 + 300 * factor
    assert oom_badness(minus, totalpages) == max(1, 101 - 999 * factor)  # never 0 while eligible
    done.complete_all()


def test_below_1000_pages_oom_score_adj_changes_no_choice(boot):
    # 4.6 on a 512-page machine: totalpages / 1000 == 0, so neither the most
    # favoured nor the most protected (short of OOM_SCORE_ADJ_MIN) counts.
    k = boot(nr_pages=512, hung_task_timeout=0)
    done = Completion()
    big = k.fork("big", park_killable(done), vmas=[VmaSpec(pages=200)], oom_score_adj=-999)
    k.fork("small", park_killable(done), vmas=[VmaSpec(pages=100)], oom_score_adj=1000)
    victim, score = select_bad_process(k, OomControl(GFP_KERNEL))
    assert victim is big and score == 201 * 1000 // 512
    done.complete_all()


# -- exiting tasks: scored like the others (4.6), or the scan aborts (4.5) ---------------------
def exiter_stuck_in_exit_mm(k, pages, release):
    """A process whose main thread has exited and waits in exit_mm for its
    mmap_sem, held for write by its other thread until ``release``."""
    leave = Completion("leave")

    def main_thread(t):
        leave.wait_for_completion_killable()

    def mmapper(t):
        with t.mm.mmap_sem.write():
            release.wait_for_completion()

    e = k.fork("exiter", main_thread, vmas=[VmaSpec(pages=pages)])
    m = k.clone_thread(e, "mmapper", mmapper)
    sem = e.mm.mmap_sem
    assert k.wait_until(lambda: sem.owner is m, 5)
    leave.complete()
    assert k.wait_until(lambda: e.exiting and e.wchan is sem and e.state_letter == "D", 5)
    return e, m


@pytest.mark.parametrize("policy", [Policy.NONE, Policy.PATCH1])  # the 4.6 trees
def test_an_exiting_task_is_scored_like_the_others_unless_the_45_rule_is_on(boot, policy, monkeypatch):
    k = boot(nr_pages=1024, policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    release, never = Completion("release"), Completion("never")
    e, m = exiter_stuck_in_exit_mm(k, 150, release)
    big = k.fork("big", park_killable(never), vmas=[VmaSpec(pages=600)])
    assert k.wait_until(lambda: big.state_letter == "D", 5)
    oc = OomControl(GFP_KERNEL)
    assert oom_scan_process_thread(k, oc, e) is OomScan.OOM_SCAN_OK
    assert select_bad_process(k, oc) == (big, 602 * 1000 // 1024)
    # 4.5 (before "mm: oom_kill: don't ignore oom score on exiting tasks").
    monkeypatch.setattr(k.policy_ops, "exiting_task_aborts_scan", True)
    assert oom_scan_process_thread(k, oc, e) is OomScan.OOM_SCAN_ABORT
    assert oom_scan_process_thread(k, oc, m) is OomScan.OOM_SCAN_OK  # not exiting
    assert select_bad_process(k, oc) == (OomScan.OOM_SCAN_ABORT, 0)
    release.complete()
    never.complete_all()
    assert k.wait_until(exited(e, m, big), 5)


@pytest.mark.parametrize("policy", [Policy.NONE, Policy.PATCH1])  # the 4.6 trees
def test_an_exiting_task_chosen_as_victim_is_only_marked(boot, policy):
    # aac45363's oom_kill_process: "If the task is already exiting, don't
    # alarm the sysadmin or kill its children or threads, just set TIF_MEMDIE".
    k = boot(nr_pages=1024, policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    release, never = Completion("release"), Completion("never")
    e, m = exiter_stuck_in_exit_mm(k, 700, release)
    other = k.fork("other", park_killable(never), vmas=[VmaSpec(pages=60)])
    got = []
    a = k.fork("allocator", lambda t: got.append(alloc_pages(GFP_KERNEL, owner=None)),
               vmas=[VmaSpec(pages=pages_left(k, 8))])
    assert k.wait_until(lambda: e.tif_memdie, 5)
    # Marked under oom_lock; the allocator goes on looping, now aborting on it.
    assert k.wait_until(lambda: k.stats.oom_aborts >= 3, 5)
    assert k.stats.oom_kills == 0 and k.stats.oom_victims_marked == 1
    assert not m.tif_memdie and not e.sigkill_pending and not m.sigkill_pending
    assert not other.sigkill_pending
    text = k.dmesg_text()
    assert "invoked oom-killer" not in text and "Kill process" not in text and "Killed process" not in text
    names = {ev.name for ev in k.tracer.events()}
    assert Ev.MARK_VICTIM in names and Ev.OOM_KILL not in names and Ev.WAKE_REAPER not in names
    release.complete()  # the mmapper lets go: exit_mm goes on, TIF_MEMDIE is cleared there
    assert k.wait_until(exited(e, m, a), 5)
    assert got[0] is not None and not e.tif_memdie and k.oom_victims.read() == 0
    assert e.exit_reason == "exit" and other.state_letter == "D"
    never.complete_all()
    assert k.wait_until(exited(other), 5)


# -- dump_header is rate-limited (oom_rs: 10 per 5 * HZ) ---------------------------------------
def test_the_oom_header_is_rate_limited_and_the_suppressed_count_comes_later(boot):
    k = boot(nr_pages=1024, sched=CONTROLLED, hung_task_timeout=0)
    never = Completion("never")
    hogs = [k.fork(f"hog{i}", park_killable(never), vmas=[VmaSpec(pages=60 + i)]) for i in range(13)]

    def allocator(t):
        while k.stats.oom_kills < 12:  # twelve kills inside one 5 s interval...
            alloc_pages(GFP_KERNEL)
        schedule_timeout_killable(6 * k.clock.hz, "test")
        while k.stats.oom_kills < 13:  # ...and one well after it
            alloc_pages(GFP_KERNEL)

    a = k.fork("allocator", allocator)
    assert k.wait_until(exited(a, *hogs), 30)
    kinds = {"invoked oom-killer": "H", "Out of memory: Kill process": "K", "callbacks suppressed": "S"}
    seen = "".join(c for line in k.dmesg() for key, c in kinds.items() if key in line.text)
    # Ten headers, then none for kills 11 and 12; the next kill after the
    # interval first reports the two suppressed headers, then prints its own.
    assert seen == "HK" * 10 + "KK" + "SHK"
    lines = [line for line in k.dmesg() if "callbacks suppressed" in line.text]
    assert [(line.text, line.level) for line in lines] == \
        [("oom_kill_process: 2 callbacks suppressed", LogLevel.KERN_WARNING)]
    assert k.stats.oom_kills == 13


def test_a_postmortem_of_a_mark_only_victim_says_nobody_was_killed(boot, tmp_path):
    """From the log alone: TIF_MEMDIE given to an exiting task, no oom_kill, every task gone."""
    from stress.postmortem import analyze, dump_jsonl, load_jsonl
    from stress.outcomes import Outcome

    k = boot(nr_pages=1024, sched=CONTROLLED, hung_task_timeout=0)
    release = Completion("release")
    e, m = exiter_stuck_in_exit_mm(k, 700, release)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL, owner=None),
               vmas=[VmaSpec(pages=pages_left(k, 8))])
    assert k.wait_until(lambda: e.tif_memdie, 5)
    release.complete()
    assert k.wait_until(exited(e, m, a), 5)
    d = analyze(load_jsonl(dump_jsonl(k, tmp_path / "m.jsonl", {}))).diagnosis
    assert d.outcome is Outcome.VICTIM_EXITED
    assert d.sentence.startswith(f"The OOM killer killed nobody: it gave TIF_MEMDIE to pid {e.pid} (exiter)")
