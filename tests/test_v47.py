"""Policy v4.7: each of Linux 4.7's changes on top of ``queue``, on the controlled CPU."""

import pytest

from kthreads import (GFP_KERNEL, GFP_NOFS, Completion, Ev, OomControl, Policy, VmaSpec, alloc_pages,
                      mark_oom_victim, oom_badness, select_bad_process, send_sigkill)
from kthreads.kernel import POLICY_OPS
from kthreads.mm import MMF, mmget, mmput_async, vm_mmap_write_lock
from kthreads.oom_kill import OomScan, signal_oom_victims, task_will_free_mem
from kthreads.designs import QueueOps, V47Ops
from kthreads.oom_reaper import try_oom_reaper
from stress import Outcome
from util import assert_first_to_set, CONTROLLED, exited, park_killable, park_uninterruptible, run_controlled as run, recorded, pages_left, stuck_victim

V47_FLAGS = ("nofs_check_in_out_of_memory", "mmf_oom_reaped", "reaper_clears_memdie_always",
             "reaper_takes_oom_lock", "oom_scan_processes", "task_will_free_mem_group",
             "reap_self_victims", "reaper_mmput_async", "killable_mmap_writers")


def events(res, name, pid=None):
    return recorded(res.kernel, name, pid)


# -- the policy itself ----------------------------------------------------------------------
def test_v47_is_queue_plus_its_flags_and_no_earlier_design_has_one():
    assert Policy.V4_7.previous is Policy.QUEUE and Policy.parse("v4.7") is Policy.V4_7
    ops = POLICY_OPS[Policy.V4_7]
    assert ops is V47Ops and issubclass(ops, QueueOps)
    assert ops.release == "4.7.0" and ops.commit == "v4.7" and ops.reaper_list and ops.oom_reaper_reports
    assert_first_to_set(Policy.V4_7, V47_FLAGS)


# -- the GFP_NOFS test in out_of_memory, after the self-victim shortcut (3da88fb3) ----------
@pytest.mark.parametrize("name, holder", [("mmap-sem-writer", "mmapper"),
                                          ("mmap-sem-queued-writer", "faulter")])
def test_a_killed_nofs_allocator_gets_the_reserves_from_v47_on(name, holder):
    res = run(name, Policy.V4_7)
    assert res.outcome in (Outcome.VICTIM_EXITED, Outcome.RECOVERED_BY_REAPER)
    pid = res.roles[holder]
    # The mmap_sem holder, SIGKILLed with its group, became a self-victim.
    assert events(res, Ev.OOM_CURRENT_VICTIM, pid) and events(res, Ev.MARK_VICTIM, pid)
    assert res.counters["oom_kills"] == 1  # the victim only: nobody killed for GFP_NOFS
    old = run(name, Policy.QUEUE)
    assert old.outcome is Outcome.REAP_FAILED_LOCKUP
    # 4.6: a GFP_NOFS allocation never reaches out_of_memory, killed or not.
    assert not events(old, Ev.OOM_INVOKE, old.roles[holder])
    assert not events(old, Ev.OOM_CURRENT_VICTIM, old.roles[holder])


@pytest.mark.parametrize("policy", [Policy.QUEUE, Policy.V4_7])
def test_an_unkilled_nofs_allocator_reaches_out_of_memory_under_v47_but_kills_nobody(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    never = Completion("never")
    hog = k.fork("hog", park_killable(never), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    got = []
    w = k.fork("writer", lambda t: got.append(alloc_pages(GFP_NOFS)))
    assert k.wait_until(lambda: w.alloc_since is not None and k.clock.now() >= 0.5, 10)
    if policy is Policy.V4_7:  # it gets to out_of_memory, which stops at the gfp test
        assert k.stats.oom_invocations >= 3
    else:  # 4.6: __alloc_pages_may_oom stops it first ("keep looping as per tradition")
        assert k.stats.oom_invocations == 0
    assert k.stats.oom_kills == 0 and k.stats.oom_victims_marked == 0 and not hog.sigkill_pending
    never.complete_all()
    assert k.wait_until(exited(hog, w), 10)
    assert got[0] is not None


# -- try_oom_reaper: self-victims are reaped (3ef22dff) ---------------------------------------
def test_a_self_victim_is_handed_to_the_reaper_from_v47_on():
    res = run("self-victim", Policy.V4_7)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    victim = res.roles["victim"]
    assert events(res, Ev.OOM_CURRENT_VICTIM, victim) and events(res, Ev.WAKE_REAPER, victim)
    assert victim in res.kernel.reaper.popped
    old = run("self-victim", Policy.QUEUE)
    assert old.outcome is Outcome.LOCKUP
    assert not events(old, Ev.WAKE_REAPER, victim) and victim not in old.kernel.reaper.popped


def test_try_oom_reaper_refuses_while_a_sharer_of_the_mm_is_not_dying(boot):
    k = boot(policy=Policy.V4_7, sched=CONTROLLED, hung_task_timeout=0)
    never, hold = Completion("never"), Completion("hold")
    a = k.fork("a", park_uninterruptible(hold), vmas=[VmaSpec(pages=50)])
    b = k.fork("b", park_killable(never), share_mm_with=a)
    assert k.wait_until(lambda: a.state_letter == "D" and b.state_letter == "D", 5)
    send_sigkill(a)  # a is dying (but asleep in D); b, sharing its mm, is not
    assert not try_oom_reaper(k, a)  # reaping would rob b
    assert k.reaper.popped == [] and not k.reaper.queue
    assert any("not queued" in line.text and f"pid {b.pid} (b)" in line.text for line in k.tracer.lab_lines())
    send_sigkill(b)
    assert try_oom_reaper(k, a)  # now every sharer is dying
    assert k.wait_until(lambda: k.reaper_status().reaped == 1 and k.reaper_status().idle, 5)
    assert a.mm.get_mm_rss() == 0
    hold.complete()
    assert k.wait_until(exited(a, b), 5)


def test_try_oom_reaper_without_an_mm_queues_nothing(boot):
    k = boot(policy=Policy.V4_7, sched=CONTROLLED, hung_task_timeout=0)
    t = k.fork("t", lambda t: None)
    assert k.wait_until(exited(t), 5)
    assert not try_oom_reaper(k, t) and k.reaper.popped == []


# -- MMF_OOM_REAPED, and TIF_MEMDIE cleared after every reap ---------------------------------
@pytest.mark.parametrize("policy", [Policy.QUEUE, Policy.V4_7])
def test_a_reaped_mm_is_marked_under_v47_where_46_set_the_adj(policy):
    res = run("lockup-mutex", policy)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    victim = res.kernel.find_task_by_pid(res.roles["victim"])
    (mm,) = [m for m in res.kernel.mms() if m.id in res.kernel.reaper.reaped_mm_ids]
    if policy is Policy.V4_7:
        assert mm.flags & MMF.MMF_OOM_REAPED and victim.signal.oom_score_adj == 0
    else:  # 36324a99: the task hidden with -1000, the mm not marked
        assert not mm.flags & MMF.MMF_OOM_REAPED and victim.signal.oom_score_adj == -1000
    # Either way the reaper cleared the victim's TIF_MEMDIE.
    assert events(res, Ev.EXIT_OOM_VICTIM, victim.pid)


def test_oom_badness_gives_a_reaped_mm_no_points_under_v47_only(boot, monkeypatch):
    k = boot(policy=Policy.V4_7, sched=CONTROLLED, hung_task_timeout=0)
    never = Completion("never")
    p = k.fork("p", park_killable(never), vmas=[VmaSpec(pages=100)])
    assert oom_badness(p, k.zone.nr_pages) == 101
    p.mm.flags |= MMF.MMF_OOM_REAPED
    assert oom_badness(p, k.zone.nr_pages) == 0
    monkeypatch.setattr(k.policy_ops, "mmf_oom_reaped", False)  # 4.6: the bit does not exist
    assert oom_badness(p, k.zone.nr_pages) == 101
    never.complete_all()
    assert k.wait_until(exited(p), 5)


@pytest.mark.parametrize("policy", [Policy.QUEUE, Policy.V4_7])
def test_tif_memdie_is_cleared_after_a_failed_reap_from_v47_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    release = Completion("release")
    v, m = stuck_victim(k, release)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(lambda: k.reaper_status().failed >= 1, 10)
    reaper = k.reaper.task.pid

    def cleared():
        return [e for e in k.tracer.events() if e.name == Ev.EXIT_OOM_VICTIM and e.pid == v.pid and e.cur == reaper]

    if policy is Policy.V4_7:
        assert k.wait_until(lambda: cleared(), 5)  # by the reaper, although nothing was reaped
        assert k.reaper_status().reaped == 0
        # The OOM killer then chooses the exiting victim again: only marked
        # (its group is exiting), and queued once more by try_oom_reaper.
        assert k.wait_until(lambda: len([e for e in k.tracer.events()
                                         if e.name == Ev.WAKE_REAPER and e.pid == v.pid]) >= 2, 10)
        assert k.stats.oom_kills == 1
    else:  # 4.6: the victim keeps TIF_MEMDIE, and every later OOM aborts on it
        assert k.wait_until(lambda: k.stats.oom_aborts >= 3 and k.reaper_status().idle, 5)
        assert not cleared() and v.tif_memdie
    release.complete()
    assert k.wait_until(exited(v, m, a), 10)
    assert k.oom_victims.read() == 0


# -- the reaper under oom_lock, and mmput_async (ec8d7c14) -------------------------------
@pytest.mark.parametrize("policy", [Policy.QUEUE, Policy.V4_7])
def test_the_reaper_holds_oom_lock_and_drops_its_mm_with_mmput_async_under_v47(policy):
    res = run("lockup-mutex", policy)
    reaper = res.kernel.reaper.task.pid
    took = [e for e in events(res, Ev.LOCK_ACQUIRE, reaper) if e.fields.get("lock") == "oom_lock"]
    puts = {e.name for e in res.kernel.tracer.events() if e.cur == reaper and e.name in ("mmput", "mmput_async")}
    if policy is Policy.V4_7:
        assert took and puts == {"mmput_async"}
    else:
        assert not took and puts == {"mmput"}


def test_mmput_async_of_the_last_reference_tears_the_mm_down(boot):
    # The model's __mmput never blocks, so mmput_async runs it in the caller.
    k = boot(policy=Policy.V4_7, sched=CONTROLLED, hung_task_timeout=0)
    p = k.fork("p", lambda t: None, vmas=[VmaSpec(pages=40)], start=False)
    mm = p.mm
    mmget(mm)
    free = k.zone.nr_free
    mmput_async(mm)  # not the last: nothing happens
    assert not mm.freed and k.zone.nr_free == free
    k.start(p)
    assert k.wait_until(exited(p), 5)
    assert mm.mm_users.read() == 0 or not mm.freed
    assert mm.freed and k.zone.nr_free == free + 41


# -- the scan over processes, and task_will_free_mem over the thread group ----------------------
def test_the_v47_scan_walks_processes_and_aborts_on_signal_oom_victims(boot):
    k = boot(policy=Policy.V4_7, sched=CONTROLLED, hung_task_timeout=0)
    never = Completion("never")
    p = k.fork("p", park_killable(never), vmas=[VmaSpec(pages=300)])
    t = k.clone_thread(p, "p-thread", park_killable(never))
    q = k.fork("q", park_killable(never), vmas=[VmaSpec(pages=100)])
    assert k.wait_until(lambda: all(x.state_letter == "D" for x in (p, t, q)), 5)
    oc = OomControl(GFP_KERNEL)
    assert select_bad_process(k, oc)[0] is p  # the leader, never the thread
    mark_oom_victim(k, t)
    assert signal_oom_victims(p) == 1
    assert select_bad_process(k, oc) == (OomScan.OOM_SCAN_ABORT, 0)
    never.complete_all()
    assert k.wait_until(exited(p, t, q), 5)
    assert k.oom_victims.read() == 0 and signal_oom_victims(p) == 0


@pytest.mark.parametrize("policy", [Policy.QUEUE, Policy.V4_7])
def test_an_exiting_task_with_a_live_thread_is_killed_not_only_marked_under_v47(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    release, leave = Completion("release"), Completion("leave")

    def mmapper(t):
        with t.mm.mmap_sem.write():
            release.wait_for_completion()

    e = k.fork("exiter", lambda t: leave.wait_for_completion_killable(),
               vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    m = k.clone_thread(e, "mmapper", mmapper)
    assert k.wait_until(lambda: e.mm.mmap_sem.owner is m, 5)
    leave.complete()
    assert k.wait_until(lambda: e.exiting and e.state_letter == "D", 5)
    # 4.6: PF_EXITING is enough; 4.7: the whole group must be going down.
    assert task_will_free_mem(e) is (policy is Policy.QUEUE)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(lambda: e.tif_memdie, 5)
    if policy is Policy.V4_7:
        assert m.sigkill_pending and "Killed process" in k.dmesg_text() and k.stats.oom_kills == 1
        assert task_will_free_mem(e)  # killed: SIGNAL_GROUP_EXIT
    else:
        assert not m.sigkill_pending and "Killed process" not in k.dmesg_text()
    release.complete()
    assert k.wait_until(exited(e, m, a), 10)


# -- killable mmap_sem writers (916633a4, dc0ef0df) -----------------------------------------
@pytest.mark.parametrize("policy", [Policy.QUEUE, Policy.V4_7])
def test_a_sigkilled_mmap_writer_leaves_the_queue_under_v47(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    go, never = Completion("go"), Completion("never")
    got = []

    def reader(t):  # a page fault: mmap_sem for read across a wait
        with t.mm.mmap_sem.read():
            go.wait_for_completion()

    def writer(t):  # mmap(): the syscall's write lock
        with vm_mmap_write_lock(t.mm):
            got.append(True)

    v = k.fork("victim", park_killable(never), vmas=[VmaSpec(pages=20)])
    r = k.clone_thread(v, "faulter", reader)
    sem = v.mm.mmap_sem
    assert k.wait_until(lambda: r in sem.readers(), 5)
    w = k.clone_thread(v, "mmapper", writer)
    assert k.wait_until(lambda: w.state_letter == "D" and w.wchan is sem, 5)
    send_sigkill(v)
    if policy is Policy.V4_7:  # -EINTR, and the task dies on its way out
        assert k.wait_until(exited(w), 5)
        assert w.exit_reason == "SIGKILL" and not sem.has_queued_writer()
    else:  # down_write: SIGKILL cannot wake it, and the main thread's exit_mm queues behind it
        assert k.wait_until(lambda: v.exiting and v.wchan is sem and v.state_letter == "D", 5)
        assert w.state_letter == "D" and sem.has_queued_writer()
    go.complete()
    assert k.wait_until(exited(v, r, w), 5)
    assert got == ([] if policy is Policy.V4_7 else [True])


def test_an_uncontended_mmap_writer_takes_the_lock_under_v47(boot):
    k = boot(policy=Policy.V4_7, sched=CONTROLLED, hung_task_timeout=0)
    got = []

    def writer(t):
        with vm_mmap_write_lock(t.mm) as mm:
            got.append(mm.mmap_sem.owner is t)
        got.append(t.mm.mmap_sem.owner is None)

    w = k.fork("w", writer, vmas=[VmaSpec(pages=5)])
    assert k.wait_until(exited(w), 5)
    assert got == [True, True] and w.exit_reason == "exit"
