"""Policy v4.9: each of Linux 4.9's changes on top of ``v4.8``, on the controlled CPU."""

import re

import pytest

from kthreads import GFP_KERNEL, GFP_NOFS, Completion, Ev, Mutex, OomControl, Policy, VmaSpec, alloc_pages
from kthreads.kernel import POLICY_OPS
from kthreads.mm import MMF
from kthreads.oom_kill import OomScan, oom_scan_process_thread, select_bad_process, tsk_is_oom_victim
from kthreads.designs import V48Ops, V49Ops
from kthreads.sched import PF
from stress import Outcome
from util import assert_first_to_set, CONTROLLED, exited, park_uninterruptible, run_controlled as run, recorded as events, dmesg_texts as texts, pages_left, stall_warnings, stuck_victim

V49_FLAGS = ("signal_oom_mm", "oom_evaluate_task", "reaper_sets_oom_skip", "reap_kthread_shared_mm",
             "warns_alloc_stalls", "hung_task_shows_all_locks", "sched_show_task_no_pc")
#: 4.8's flags that 4.9 turns off again (and v4.7's TIF_MEMDIE clearing).
V49_OFF = ("reaper_clears_memdie_always", "reaper_gives_up_twice", "oom_scan_skips_reaped")


# -- the policy itself ----------------------------------------------------------------------
def test_v49_is_v48_plus_its_flags_and_no_earlier_design_has_one():
    assert Policy.V4_9.previous is Policy.V4_8 and Policy.parse("v4.9") is Policy.V4_9
    ops = POLICY_OPS[Policy.V4_9]
    assert ops is V49Ops and issubclass(ops, V48Ops)
    assert ops.release == "4.9.0" and ops.commit == "v4.9" and ops.oom_kill_all_sharers
    assert_first_to_set(Policy.V4_9, V49_FLAGS)
    for flag in V49_OFF:
        assert getattr(ops, flag) is False and getattr(V48Ops, flag) is True, flag


# -- signal->oom_mm: reaped through whoever still holds the mm --------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_8, Policy.V4_9])
def test_three_victims_are_all_reaped_last_first_through_oom_mm_from_v49_on(policy):
    res = run("three-victims", policy)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    k = res.kernel
    reaped = [int(m.group(1)) for t in texts(k) if (m := re.search(r"oom_reaper: reaped process (\d+)", t))]
    c, b, a = res.roles["victimC"], res.roles["victimB"], res.roles["victimA"]
    # LIFO, as from 03049269 on; then the writer, killed last, which exits
    # by itself before the reaper gets to it (the episode waits for that pop).
    assert k.reaper.popped == [c, b, a, res.roles["writer"]]
    if policy is Policy.V4_9:
        # victimA and victimB are gone, but their helpers keep the mm: reaped.
        assert reaped == [c, b, a]
        assert k.reaper_status().raced_exit == 1
    else:  # 4.8: find_lock_task_mm finds no thread of A or B with an mm
        assert reaped == [c] and k.reaper_status().raced_exit == 3


def test_mark_oom_victim_keeps_the_mm_until_the_group_is_gone(boot):
    k = boot(policy=Policy.V4_9, sched=CONTROLLED, hung_task_timeout=0)
    hold = Completion("hold")
    v = k.fork("victim", park_uninterruptible(hold), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    t = k.clone_thread(v, "worker", park_uninterruptible(hold))
    mm = v.mm
    assert k.wait_until(lambda: v.state_letter == "D" and t.state_letter == "D", 5)
    assert not tsk_is_oom_victim(v)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(lambda: k.reaper_status().reaped == 1 and k.reaper_status().idle, 5)
    assert tsk_is_oom_victim(v) and tsk_is_oom_victim(t) and v.signal.oom_mm is mm
    assert v.signal.oom_mm_pinned and mm.mm_count.read() >= 2  # the users' one and the signal's
    # The reaper left TIF_MEMDIE alone (4.9) and hid the mm instead.
    assert v.tif_memdie and mm.flags & MMF.MMF_OOM_SKIP
    assert not events(k, Ev.EXIT_OOM_VICTIM, v.pid)
    hold.complete_all()
    assert k.wait_until(exited(v, t, a), 5)
    assert not v.signal.oom_mm_pinned and mm.freed  # the last pin went with the group
    assert v.signal.oom_mm is mm  # the pointer stays, as in a signal struct still referenced


# -- MMF_OOM_SKIP after a failed reap: one strike, and TIF_MEMDIE left alone -----------------
def test_one_failed_reap_hides_the_mm_under_v49(boot):
    k = boot(policy=Policy.V4_9, sched=CONTROLLED, hung_task_timeout=0)
    release = Completion("release")
    v, m = stuck_victim(k, release)
    mm = v.mm
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    # The OOM killer goes past the victim after the first failure and kills
    # the allocator (itself), which gets the reserves and dies.
    assert k.wait_until(exited(a), 10)
    lines = texts(k)
    unable = f"oom_reaper: unable to reap pid:{v.pid} (victim)"
    assert lines.count(unable) == 1 and not any("giving up" in t for t in lines)
    assert "Showing all locks held in the system:" in lines[lines.index(unable) + 2]
    assert mm.flags & MMF.MMF_OOM_SKIP and not mm.flags & MMF.MMF_OOM_NOT_REAPABLE
    assert [e.pid for e in events(k, Ev.OOM_KILL)] == [v.pid, a.pid]
    assert k.reaper_status().failed == 1
    # The reaper never cleared TIF_MEMDIE: the mmapper's group still has it.
    assert any(t.tif_memdie for t in v.thread_group())
    release.complete()
    assert k.wait_until(exited(v, m), 10)
    assert k.oom_victims.read() == 0


# -- the scan (oom_evaluate_task) -----------------------------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_8, Policy.V4_9])
def test_the_scan_looks_at_oom_mm_and_keeps_the_first_of_equals(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    hold = Completion("hold")
    p1 = k.fork("p1", park_uninterruptible(hold), vmas=[VmaSpec(pages=30)])
    p2 = k.fork("p2", park_uninterruptible(hold), vmas=[VmaSpec(pages=30)])
    assert k.wait_until(lambda: p1.state_letter == "D" and p2.state_letter == "D", 5)
    oc = OomControl(GFP_KERNEL)
    chosen, _ = select_bad_process(k, oc)
    assert chosen is (p1 if policy is Policy.V4_9 else p2)  # 4.7/4.8: the later one wins
    if policy is Policy.V4_9:
        p1.signal.oom_mm = p1.mm  # a victim, as mark_oom_victim leaves it (no TIF_MEMDIE needed)
        assert oom_scan_process_thread(k, oc, p1) is OomScan.OOM_SCAN_ABORT
        p1.mm.flags |= MMF.MMF_OOM_SKIP
        assert oom_scan_process_thread(k, oc, p1) is OomScan.OOM_SCAN_CONTINUE
        assert select_bad_process(k, oc)[0] is p2
        p1.signal.oom_mm = None
    hold.complete_all()
    assert k.wait_until(exited(p1, p2), 5)
    if policy is Policy.V4_9:
        p2.signal.oom_mm = p2.mm  # a victim that exited: off the task list
        assert oom_scan_process_thread(k, oc, p2) is OomScan.OOM_SCAN_CONTINUE
        p2.signal.oom_mm = None


# -- a kthread sharing the mm no longer stops the reap --------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_8, Policy.V4_9])
def test_a_kthread_sharer_no_longer_hides_the_mm_under_v49(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    hold, never = Completion("hold"), Completion("never")
    v = k.fork("victim", park_uninterruptible(hold), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    kt = k.fork("kworker", park_uninterruptible(never), share_mm_with=v)
    kt.flags |= PF.PF_KTHREAD  # stands for a kernel thread that did use_mm(victim's mm)
    assert k.wait_until(lambda: v.state_letter == "D" and kt.state_letter == "D", 5)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(exited(a), 10)
    pinned = any("has mm pinned by" in t for t in texts(k))
    if policy is Policy.V4_9:
        assert not pinned and k.reaper_status().reaped == 1
        assert [e.pid for e in events(k, Ev.OOM_KILL)] == [v.pid]  # the reap was enough
    else:
        assert pinned and k.reaper_status().reaped == 0
    assert not kt.sigkill_pending  # never killed
    hold.complete()
    kt.flags &= ~PF.PF_KTHREAD
    never.complete_all()
    assert k.wait_until(exited(v, kt), 10)


# -- 4.9's output ---------------------------------------------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_8, Policy.V4_9])
def test_the_stall_warning_is_printed_from_v49_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, nr_pages=1024, hung_task_timeout=0, alloc_stall_secs=0.5)
    lines = stall_warnings(k)
    if policy is Policy.V4_9:
        assert lines and all(re.fullmatch(r"nofs: page allocation stalls for \d+ms, order:0, "
                                          rf"mode:{int(GFP_NOFS):#x}\(GFP_NOFS\)", s) for s in lines)
        assert k.stats.alloc_stalls == len(lines) >= 2  # every 0.5 s; nopage_rs lets 10 through
    else:
        assert not lines and k.stats.alloc_stalls == 0


@pytest.mark.parametrize("policy", [Policy.V4_8, Policy.V4_9])
def test_khungtaskd_prints_all_locks_and_no_saved_pc_from_v49_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=2)
    lock, go = Mutex("i_mutex", k), Completion("go")

    def holder(t):
        with lock:
            go.wait_killable()

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: lock.owner is h, 5)
    w = k.fork("waiter", lambda t: lock.lock() or lock.unlock())
    assert k.wait_until(lambda: any(f"INFO: task waiter:{w.pid} blocked" in s for s in texts(k)), 10,
                        idle_ok=True)
    lines = texts(k)
    i = next(i for i, s in enumerate(lines) if f"INFO: task waiter:{w.pid} blocked" in s)
    assert f"Not tainted {POLICY_OPS[policy].release} " in lines[i + 1]
    ps = lines[i + 3]
    assert ps.startswith("waiter          D")
    if policy is Policy.V4_9:
        assert re.match(rf"waiter          D    0 {w.pid:5d}      1 0x", ps)
        assert "Showing all locks held in the system:" in lines[i + 3:]
        assert not any(s.startswith("no locks held by") for s in lines[i:])
    else:
        assert re.match(rf"waiter          D [0-9a-f]{{16}}     0 {w.pid:5d}      1 0x", ps)
        assert "Showing all locks held in the system:" not in lines[i:]
    go.complete_all()
    assert k.wait_until(exited(h, w), 5)
