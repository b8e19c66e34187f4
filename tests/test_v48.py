"""Policy v4.8: each of Linux 4.8's changes on top of ``v4.7``, on the controlled CPU."""

import pytest

from kthreads import (GFP_KERNEL, Completion, Ev, OomControl, Policy, VmaSpec, alloc_pages, send_sigkill)
from kthreads.kernel import POLICY_OPS
from kthreads.mm import MMF
from kthreads.oom_kill import OomScan, oom_scan_process_thread, task_will_free_mem
from kthreads.designs import V47Ops, V48Ops
from kthreads.sched import PF
from stress import Outcome
from util import assert_first_to_set, CONTROLLED, exited, park_killable, park_uninterruptible, run_controlled as run, recorded as events, dmesg_texts as texts, pages_left, stuck_victim

V48_FLAGS = ("oom_kill_all_sharers", "shared_oom_score_adj", "task_will_free_mem_mm",
             "oom_scan_skips_reaped", "reaper_gives_up_twice", "reaper_mmget_after_trylock")


# -- the policy itself ----------------------------------------------------------------------
def test_v48_is_v47_plus_its_flags_and_no_earlier_design_has_one():
    assert Policy.V4_8.previous is Policy.V4_7 and Policy.parse("v4.8") is Policy.V4_8
    ops = POLICY_OPS[Policy.V4_8]
    assert ops is V48Ops and issubclass(ops, V47Ops)
    assert ops.release == "4.8.0" and ops.commit == "v4.8" and ops.reap_self_victims
    assert_first_to_set(Policy.V4_8, V48_FLAGS)


# -- every sharer killed, OOM_SCORE_ADJ_MIN ones too (97fd49c2) ------------------------------
def test_an_oom_score_adj_min_sharer_is_killed_and_the_mm_reaped_from_v48_on():
    res = run("shared-mm-unkillable", Policy.V4_8)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    k, u = res.kernel, res.roles["unkillable"]
    assert events(k, Ev.SIGNAL_GENERATE, u) and not events(k, Ev.OOM_REAP_FORBIDDEN)
    assert any(f"oom_reaper: reaped process {res.roles['victim']} (victim)" in t for t in texts(k))
    assert not any("has mm pinned by" in t for t in texts(k))
    old = run("shared-mm-unkillable", Policy.V4_7)
    assert old.outcome is Outcome.LOCKUP
    assert not events(old.kernel, Ev.SIGNAL_GENERATE, u) and events(old.kernel, Ev.OOM_REAP_FORBIDDEN, u)


@pytest.mark.parametrize("policy", [Policy.V4_7, Policy.V4_8])
def test_a_kthread_sharer_hides_the_mm_under_v48_and_the_oom_killer_moves_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    hold, never = Completion("hold"), Completion("never")
    v = k.fork("victim", park_uninterruptible(hold), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    kt = k.fork("kworker", park_uninterruptible(never), share_mm_with=v)
    kt.flags |= PF.PF_KTHREAD  # stands for a kernel thread that did use_mm(victim's mm)
    assert k.wait_until(lambda: v.state_letter == "D" and kt.state_letter == "D", 5)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    if policy is Policy.V4_8:
        # The victim is killed, its mm marked and not reaped; the next OOM
        # goes past it and kills the allocator, which then gets the reserves.
        assert k.wait_until(exited(a), 10)
        assert f"oom killer {v.pid} (victim) has mm pinned by {kt.pid} (kworker)" in texts(k)
        assert v.mm.flags & MMF.MMF_OOM_REAPED and k.reaper_status().reaped == 0
        assert [e.pid for e in events(k, Ev.OOM_KILL)] == [v.pid, a.pid]
        assert not kt.sigkill_pending
    else:  # 4.7: the kthread forbids the reap, and every later OOM aborts on the victim
        assert k.wait_until(lambda: k.stats.oom_aborts >= 3, 10)
        assert not v.mm.flags & MMF.MMF_OOM_REAPED and not any("pinned" in t for t in texts(k))
    hold.complete()
    kt.flags &= ~PF.PF_KTHREAD
    never.complete_all()
    assert k.wait_until(exited(v, kt, a), 10)


# -- one oom_score_adj per mm (44a70ade) ----------------------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_7, Policy.V4_8])
def test_writing_oom_score_adj_reaches_every_sharer_from_v48_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    never = Completion("never")
    a = k.fork("a", park_killable(never), vmas=[VmaSpec(pages=10)])
    b = k.fork("b", park_killable(never), share_mm_with=a, oom_score_adj=300)  # created so: not a write
    kt = k.fork("kt", park_killable(never), share_mm_with=a)
    kt.flags |= PF.PF_KTHREAD
    other = k.fork("other", park_killable(never), vmas=[VmaSpec(pages=10)])
    assert a.signal.oom_score_adj == 0 and b.signal.oom_score_adj == 300
    k.set_oom_score_adj(b, -500)
    assert b.signal.oom_score_adj == -500 and other.signal.oom_score_adj == 0 and kt.signal.oom_score_adj == 0
    line = (f"updating oom_score_adj for {a.pid} (a) from 0 to -500 because it shares mm with "
            f"{b.pid} (b). Report if this is unexpected.")
    if policy is Policy.V4_8:
        assert a.signal.oom_score_adj == -500 and line in texts(k)
    else:
        assert a.signal.oom_score_adj == 0 and not any("updating oom_score_adj" in t for t in texts(k))
    k.set_oom_score_adj(other, 7)  # its own mm: nobody else
    assert other.signal.oom_score_adj == 7 and a.signal.oom_score_adj == (-500 if policy is Policy.V4_8 else 0)
    with pytest.raises(ValueError):
        k.set_oom_score_adj(a, -1001)
    with pytest.raises(ValueError):
        k.set_oom_score_adj(a, 1001)
    kt.flags &= ~PF.PF_KTHREAD
    never.complete_all()
    assert k.wait_until(exited(a, b, kt, other), 5)


# -- task_will_free_mem over the mm's sharers, and the self-victim test ---------------------
def test_task_will_free_mem_wants_every_sharer_dying_and_no_reaped_mm(boot):
    k = boot(policy=Policy.V4_8, sched=CONTROLLED, hung_task_timeout=0)
    never, hold = Completion("never"), Completion("hold")
    a = k.fork("a", park_uninterruptible(hold), vmas=[VmaSpec(pages=50)])
    b = k.fork("b", park_killable(never), share_mm_with=a)
    alone = k.fork("alone", park_uninterruptible(hold), vmas=[VmaSpec(pages=10)])
    assert k.wait_until(lambda: all(t.state_letter == "D" for t in (a, b, alone)), 5)
    assert not task_will_free_mem(a)  # not even dying
    send_sigkill(a)  # SIGNAL_GROUP_EXIT, asleep in D: no PF_EXITING yet
    assert a.sigkill_pending and not a.flags & PF.PF_EXITING
    assert not task_will_free_mem(a)  # b, sharing the mm, is not dying
    send_sigkill(alone)
    assert task_will_free_mem(alone)  # 4.8: a group kill is enough, and nobody shares its mm
    alone.mm.flags |= MMF.MMF_OOM_REAPED
    assert not task_will_free_mem(alone)  # reaped already: little more to free
    send_sigkill(b)
    assert task_will_free_mem(a) and task_will_free_mem(b)
    hold.complete_all()
    assert k.wait_until(exited(a, b, alone), 5)
    assert not task_will_free_mem(a)  # no mm


def test_a_self_victim_is_woken_straight_to_the_reaper_under_v48():
    res = run("self-victim", Policy.V4_8)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    k, victim = res.kernel, res.roles["victim"]
    assert events(k, Ev.OOM_CURRENT_VICTIM, victim) and events(k, Ev.WAKE_REAPER, victim)
    assert victim in k.reaper.popped and res.counters["oom_kills"] == 0


def test_a_killed_allocator_whose_mm_a_live_process_shares_is_no_self_victim_under_v48(boot):
    # 4.7 marks it (fatal_signal_pending) and try_oom_reaper refuses it; 4.8's
    # task_will_free_mem says no, so the OOM killer selects instead.
    k = boot(policy=Policy.V4_8, sched=CONTROLLED, hung_task_timeout=0)
    never, go = Completion("never"), Completion("go")

    def killed_allocator(t):
        go.wait_for_completion()
        alloc_pages(GFP_KERNEL)

    a = k.fork("a", killed_allocator, vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    b = k.fork("b", park_killable(never), share_mm_with=a)
    assert k.wait_until(lambda: a.state_letter == "D" and b.state_letter == "D", 5)
    send_sigkill(a)  # pending while asleep in D: it allocates on its way out
    go.complete()
    assert k.wait_until(exited(a, b), 10)
    # The first OOM selects and kills (b, the later of two equal scores, and
    # a with it); only then, b gone, is a a self-victim (its mm its own).
    (kill,) = events(k, Ev.OOM_KILL)
    assert kill.pid == b.pid
    assert all(e.seq > kill.seq for e in events(k, Ev.OOM_CURRENT_VICTIM, a.pid))


# -- the scan goes past a victim whose mm is MMF_OOM_REAPED ---------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_7, Policy.V4_8])
def test_the_scan_skips_a_reaped_victim_from_v48_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    hold = Completion("hold")
    v = k.fork("v", park_uninterruptible(hold), vmas=[VmaSpec(pages=30)])
    assert k.wait_until(lambda: v.state_letter == "D", 5)
    v.tif_memdie = True  # a victim (the counter is not involved in the scan)
    oc = OomControl(GFP_KERNEL)
    assert oom_scan_process_thread(k, oc, v) is OomScan.OOM_SCAN_ABORT
    v.mm.flags |= MMF.MMF_OOM_REAPED
    expected = OomScan.OOM_SCAN_CONTINUE if policy is Policy.V4_8 else OomScan.OOM_SCAN_ABORT
    assert oom_scan_process_thread(k, oc, v) is expected
    v.tif_memdie = False
    assert oom_scan_process_thread(k, oc, v) is OomScan.OOM_SCAN_OK
    hold.complete()
    assert k.wait_until(exited(v), 5)


# -- two strikes: MMF_OOM_NOT_REAPABLE, then "giving up" ------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_7, Policy.V4_8])
def test_the_second_failed_reap_gives_the_mm_up_under_v48_only(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    release = Completion("release")
    v, m = stuck_victim(k, release)
    mm = v.mm
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    unable = f"oom_reaper: unable to reap pid:{v.pid} (victim)"
    giving_up = f"oom_reaper: giving up pid:{v.pid} (victim)"
    if policy is Policy.V4_8:
        assert k.wait_until(lambda: giving_up in texts(k), 10)
        lines = texts(k)
        firsts = [i for i, t in enumerate(lines) if t == unable]
        assert len(firsts) == 2 and lines.index(giving_up) == firsts[1] + 1
        # The lock dump follows "giving up", as after every failure.
        assert "Showing all locks held in the system:" in lines[firsts[1] + 3]
        assert mm.flags & MMF.MMF_OOM_NOT_REAPABLE and mm.flags & MMF.MMF_OOM_REAPED
        # Hidden now: the OOM killer moves on to the allocator (itself), which dies.
        assert k.wait_until(exited(a), 10)
        assert [e.pid for e in events(k, Ev.OOM_KILL)] == [v.pid, a.pid]
        assert k.reaper_status().failed == 2 and k.reaper_status().reaped == 0
    else:  # 4.7: it fails, is chosen again, fails again... and never gives up
        assert k.wait_until(lambda: k.reaper_status().failed >= 3, 20)
        assert not any("giving up" in t for t in texts(k))
        assert not mm.flags & MMF.MMF_OOM_REAPED
    release.complete()
    assert k.wait_until(exited(v, m, a), 10)
    assert k.oom_victims.read() == 0


def test_the_first_failure_only_marks_the_mm(boot):
    k = boot(policy=Policy.V4_8, sched=CONTROLLED, hung_task_timeout=0)
    release = Completion("release")
    v, m = stuck_victim(k, release)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(lambda: k.reaper_status().failed == 1 and k.reaper_status().idle, 10)
    assert v.mm.flags & MMF.MMF_OOM_NOT_REAPABLE and not v.mm.flags & MMF.MMF_OOM_REAPED
    assert not any("giving up" in t for t in texts(k))
    release.complete()
    assert k.wait_until(exited(v, m, a), 10)


# -- mm_users taken after the trylock -------------------------------------------------------
def test_a_victim_gone_between_the_trylock_and_mmget_is_not_reaped(boot, monkeypatch):
    import kthreads.oom_reaper as oom_reaper
    k = boot(policy=Policy.V4_8, sched=CONTROLLED, hung_task_timeout=0)
    hold = Completion("hold")
    v = k.fork("victim", park_uninterruptible(hold), vmas=[VmaSpec(pages=40)])
    assert k.wait_until(lambda: v.state_letter == "D", 5)
    mm = v.mm
    users, count = mm.mm_users.read(), mm.mm_count.read()
    # The last mm_users reference dropped just after the trylock.
    monkeypatch.setattr(oom_reaper, "mmget_not_zero", lambda mm: False)
    send_sigkill(v)
    assert oom_reaper.wake_oom_reaper(k, v, mm)
    assert k.wait_until(lambda: k.reaper_status().raced_exit == 1 and k.reaper_status().idle, 5)
    st = k.reaper_status()
    assert st.reaped == 0 and st.failed == 0 and st.skipped == 0 and mm.get_mm_rss() > 0
    assert not mm.flags & MMF.MMF_OOM_REAPED
    assert mm.mmap_sem.down_write_trylock()  # released
    mm.mmap_sem.up_write()
    assert (mm.mm_users.read(), mm.mm_count.read()) == (users, count)  # nothing leaked
    hold.complete()
    assert k.wait_until(exited(v), 5)
