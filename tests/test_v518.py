"""Policy v5.18: the reap delayed by 2*HZ through a timer, and mlocked VMAs reaped,
on top of ``v5.15``, on the controlled CPU."""

import pytest

from kthreads import GFP_KERNEL, Completion, Policy, VmaSpec, alloc_pages
from kthreads.designs import V515Ops, V518Ops
from kthreads.kernel import POLICY_OPS
from kthreads.mm import MMF
from kthreads.oom_reaper import freeze_oom_reaper, thaw_oom_reaper
from kthreads.timer import TimerList, add_timer
from stress import Outcome
from util import assert_first_to_set, CONTROLLED, exited, pages_left, park_uninterruptible, run_controlled as run, recorded as events


def test_v518_is_v515_plus_the_delay_and_mlocked_reaping():
    assert Policy.V5_18.previous is Policy.V5_15 and Policy.parse("v5.18") is Policy.V5_18
    ops = POLICY_OPS[Policy.V5_18]
    assert ops is V518Ops and issubclass(ops, V515Ops) and ops.release == "5.18.0"
    assert_first_to_set(Policy.V5_18, ("reaper_delay", "reap_mlocked_vmas"))


# -- the delay ----------------------------------------------------------------------------
@pytest.mark.parametrize("policy, delay", [(Policy.V5_15, 0.0), (Policy.V5_18, 2.0)])
def test_lockup_mutex_is_reaped_two_seconds_after_the_kill_under_v518(policy, delay):
    res = run("lockup-mutex", policy)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    k = res.kernel
    kill = events(k, "oom_kill")[0]
    wake = events(k, "wake_reaper")[0]
    start = events(k, "start_task_reaping")[0]
    # 2*HZ after the kill, to the jiffy (HZ=100 here), and not before.
    assert wake.t - kill.t == pytest.approx(delay, abs=0.011)
    assert start.t >= wake.t
    if policy is Policy.V5_18:
        # The timer's callback runs in the lab's ksoftirqd/0, which queues
        # the victim and wakes the reaper; MMF_OOM_REAP_QUEUED stays set.
        softirq = next(t for t in k.tasks() if t.comm == "ksoftirqd/0")
        assert wake.cur == softirq.pid and softirq.is_kthread
        assert k.timers.fired == 1 and k.timers.armed() == 0
        victim = k.find_task_by_pid(res.roles["victim"])
        assert victim.signal.oom_mm.flags & MMF.MMF_OOM_REAP_QUEUED
    else:
        # Started by the first timer only, so no design without one runs it.
        assert k.timers.task is None and not any(t.comm == "ksoftirqd/0" for t in k.tasks())


def test_the_reaper_is_not_idle_while_a_delayed_reap_is_armed_or_queued(boot):
    """The harness may not call a lockup while the timer is pending, nor
    between the timer's push and the reaper's pop: the reaper will still
    free memory."""
    k = boot(policy=Policy.V5_18, sched=CONTROLLED, hung_task_timeout=0)
    done = Completion("done")
    v = k.fork("victim", park_uninterruptible(done), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    assert k.wait_until(lambda: v.state_letter == "D", 5)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(lambda: k.reaper_status().armed == 1, 5)
    status = k.reaper_status()
    assert v.tif_memdie and not status.idle and status.reaped == 0 and status.busy_with is None
    # Frozen, the reaper cannot pop: after the timer the victim waits on the list.
    freeze_oom_reaper(k)
    assert k.wait_until(lambda: k.timers.fired == 1, 5)
    status = k.reaper_status()
    assert status.armed == 0 and status.busy_with == v.pid and not status.idle
    thaw_oom_reaper(k)
    assert k.wait_until(lambda: exited(a)() and k.reaper_status().idle, 5)
    assert k.reaper_status().reaped == 1
    done.complete()
    assert k.wait_until(exited(v), 5)


def test_robust_futex_v518_drops_the_reap_the_victims_exit_made_pointless():
    res = run("robust-futex", Policy.V5_18)
    assert res.outcome is Outcome.VICTIM_EXITED
    k = res.kernel
    assert not events(k, "start_task_reaping") and not events(k, "wake_reaper")
    assert k.reaper_status().reaped == 0 and k.timers.fired == 1
    assert any("not queued when its timer fired: MMF_OOM_SKIP is set" in line for line in res.console)
    walk = events(k, "exit_robust_list", res.roles["owner"])
    assert len(walk) == 1 and walk[0].fields["walked"] == 1 and not walk[0].fields["zapped"]


@pytest.mark.parametrize("policy", [Policy.PATCH1, Policy.V4_14, Policy.V5_15])
def test_robust_futex_is_orphaned_by_an_immediate_reaper(policy):
    res = run("robust-futex", policy)
    assert res.outcome is Outcome.LOCKUP and res.shape == "futex"
    k = res.kernel
    walk = events(k, "exit_robust_list", res.roles["owner"])
    assert len(walk) == 1 and walk[0].fields["zapped"] and walk[0].fields["walked"] == 0
    # The reap came before the owner's exit, and nobody was ever woken off the futex.
    reaped = events(k, "finish_task_reaping")[0]
    assert reaped.t < walk[0].t
    waiter = res.roles["waiter"]
    wait = events(k, "futex_wait", waiter)
    assert len(wait) == 1 and wait[0].fields["owner"] == res.roles["owner"]
    assert not [e for e in events(k, "sched_wake", waiter) if e.pos > wait[0].pos]
    assert "FUTEX_WAIT on robust_mutex" in res.explanation


@pytest.mark.parametrize("policy", [Policy.V4_5, Policy.NONE])
def test_robust_futex_without_a_reaper_the_waiter_gets_owner_died(policy):
    res = run("robust-futex", policy)
    assert res.outcome is Outcome.VICTIM_EXITED
    walk = events(res.kernel, "exit_robust_list", res.roles["owner"])
    assert walk[0].fields["walked"] == 1 and not walk[0].fields["zapped"]


# -- mlocked memory -----------------------------------------------------------------------
@pytest.mark.parametrize("policy, kills", [(Policy.TIFMEMDIE, 2), (Policy.V5_15, 2), (Policy.V5_18, 1)])
def test_mlocked_victim_needs_one_kill_once_mlocked_memory_is_reaped(policy, kills):
    res = run("mlocked-victim", policy)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    assert res.counters["oom_kills"] == kills
    finish = events(res.kernel, "finish_task_reaping", res.roles["victim"])
    # 5.18 frees the victim's mlocked VMA too: hundreds of pages, not eight.
    assert (finish[0].fields["pages"] > 500) is (policy is Policy.V5_18)


# -- the timer base -------------------------------------------------------------------------
def test_timers_run_in_expiry_order_at_their_jiffy_in_ksoftirqd(boot):
    k = boot(policy=Policy.V5_15, sched=CONTROLLED, hung_task_timeout=0)
    ran: list[tuple[str, int]] = []
    now = k.clock.jiffies()
    for name, after in (("late", 30), ("early", 10), ("mid", 20)):
        add_timer(k, TimerList(lambda name=name: ran.append((name, k.clock.jiffies())), now + after, name))
    assert k.wait_until(lambda: len(ran) == 3, 5)
    assert [n for n, _ in ran] == ["early", "mid", "late"]
    assert [j - now for _, j in ran] == [10, 20, 30]
    assert k.timers.fired == 3 and k.timers.armed() == 0


def test_the_first_timer_starts_ksoftirqd_and_a_kernel_without_one_never_does(boot):
    k = boot(policy=Policy.V5_18, sched=CONTROLLED, hung_task_timeout=0)
    assert k.timers.task is None and not any(t.comm == "ksoftirqd/0" for t in k.tasks())
    fired: list[int] = []
    add_timer(k, TimerList(lambda: fired.append(1), k.clock.jiffies() + 1))
    assert k.wait_until(lambda: fired == [1], 5)
    assert [t.comm for t in k.tasks()].count("ksoftirqd/0") == 1
