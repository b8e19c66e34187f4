"""Policy v5.15: process_mrelease for a userspace killer, on top of ``v4.14``, on the
controlled CPU. Its 5.x output formats are tests/test_v515_formats.py's."""

import pytest

from kthreads import GFP_KERNEL, Completion, Errno, Policy, Task, VmaSpec, alloc_pages, send_sigkill
from kthreads.designs import V414Ops, V515Ops
from kthreads.kernel import POLICY_OPS
from kthreads.mm import MMF
from kthreads.mrelease import SIGKILL, Pidfd, pidfd_open, pidfd_send_signal, process_mrelease
from stress import EpisodeConfig, Outcome, get_scenario, run_episode
from stress.postmortem import analyze, load_jsonl
from util import (CONTROLLED, SCHEDS, assert_first_to_set, exited, park_killable, park_uninterruptible,
                  run_controlled as run, recorded as events, dmesg_texts as texts, pages_left, stuck_victim)

EINVAL, ESRCH, EINTR, EAGAIN, ENOSYS = (-Errno.EINVAL, -Errno.ESRCH, -Errno.EINTR, -Errno.EAGAIN,
                                       -Errno.ENOSYS)


def test_v515_is_v414_plus_process_mrelease():
    assert Policy.V5_15.previous is Policy.V4_14 and Policy.parse("v5.15") is Policy.V5_15
    ops = POLICY_OPS[Policy.V5_15]
    assert ops is V515Ops and issubclass(ops, V414Ops) and ops.release == "5.15.0"
    assert ops.rwsem_handoff and not ops.reaper_takes_oom_lock and not ops.warns_alloc_stalls
    assert_first_to_set(Policy.V5_15, ("process_mrelease_syscall", "reaper_nonblocking_notifiers"))


# -- the scenario: 0, EINVAL and ESRCH -------------------------------------------------------
@pytest.mark.parametrize("policy", [Policy.V5_15, Policy.V5_18])
def test_userspace_killer_reaps_with_process_mrelease(policy, tmp_path):
    log = tmp_path / "uk.jsonl"
    res = run("userspace-killer", policy)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    k = res.kernel
    calls = events(k, "process_mrelease", res.roles["lmkd"])
    # flags 1, then the live victim, then after the SIGKILL, then once it is gone.
    assert [e.fields["flags"] for e in calls] == [1, 0, 0, 0]
    assert [e.fields["ret"] for e in calls] == [EINVAL, EINVAL, 0, ESRCH]
    assert [e.fields["reaped"] for e in calls] == [False, False, True, False]
    assert calls[2].fields["pages"] > 900 and k.stats.mrelease_reaps == 1
    # No kernel OOM kill and no kernel reaper work: the syscall did it all,
    # and it prints nothing in dmesg (the lab's stream shows the calls).
    assert res.counters["oom_kills"] == 0 and k.reaper_status().reaped == 0
    assert not any("oom_reaper" in t or "process_mrelease" in t for t in texts(k))
    assert any("process_mrelease(pidfd of pid" in line and "= -EINVAL" in line for line in res.console)
    assert "process_mrelease reaped" in res.explanation
    # The post-mortem tells the same story from the log alone.
    run_episode(get_scenario("userspace-killer"), EpisodeConfig(sched=CONTROLLED, policy=policy),
                log_path=str(log))
    d = analyze(load_jsonl(log)).diagnosis
    assert d.outcome is Outcome.RECOVERED_BY_REAPER and "called process_mrelease" in d.sentence


@pytest.mark.parametrize("policy", [Policy.V4_14, Policy.PATCH1, Policy.NONE])
def test_userspace_killer_before_515_can_only_kill_and_locks_up(policy):
    res = run("userspace-killer", policy)
    assert res.outcome is Outcome.LOCKUP and res.shape == "no_victim"
    k = res.kernel
    assert not events(k, "process_mrelease") and k.stats.mrelease_reaps == 0
    victim = k.find_task_by_pid(res.roles["victim"])
    assert victim.signal.group_exit  # kill(2) got there; the victim sleeps in D regardless
    assert any(t.startswith(f"INFO: task victim:{victim.pid} blocked for more than") for t in texts(k))


# -- the scenario: EINTR and EAGAIN ---------------------------------------------------------
@pytest.mark.parametrize("policy", [Policy.V5_15, Policy.V5_18])
@pytest.mark.parametrize("sched", SCHEDS, ids=[f"{s.strategy.value}{s.seed}" for s in SCHEDS])
def test_mrelease_blocked_returns_eintr_then_eagain_and_recovers(policy, sched):
    res = run("mrelease-blocked", policy, sched)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    k = res.kernel
    first = events(k, "process_mrelease", res.roles["lmkd"])
    second = events(k, "process_mrelease", res.roles["standby"])
    assert [e.fields["ret"] for e in first] == [EINTR]
    assert first[0].fields["target"] == res.roles["victim2"] and first[0].fields["pages"] == 0
    assert [e.fields["ret"] for e in second] == [EAGAIN]
    # All of victim1 but its 100 pages of guest memory, and no whole-mm reap.
    assert second[0].fields["pages"] > 500 and not second[0].fields["reaped"]
    assert k.stats.mrelease_reaps == 0 and k.stats.mrelease_pages == second[0].fields["pages"]
    # The watchdog killed the first lmkd only after a second without a heartbeat.
    kill = next(e for e in events(k, "signal_generate") if e.pid == res.roles["lmkd"])
    assert kill.t >= 1.0 and res.counters["oom_kills"] == 0


@pytest.mark.parametrize("policy", [Policy.V4_14, Policy.V4_7, Policy.NONE])
def test_mrelease_blocked_before_515_kills_both_and_locks_up(policy):
    res = run("mrelease-blocked", policy)
    assert res.outcome is Outcome.LOCKUP and res.shape == "no_victim"
    k = res.kernel
    assert not events(k, "process_mrelease")
    killed = {e.pid for e in events(k, "signal_generate")}
    assert {res.roles["victim1"], res.roles["victim2"]} <= killed and res.roles["lmkd"] not in killed


# -- EINTR and EAGAIN ----------------------------------------------------------------------
def test_process_mrelease_waits_killably_for_mmap_sem_and_returns_eintr(boot):
    """The victim's mmapper holds its mmap_sem for write (uninterruptibly):
    lmkd's call sleeps in down_read_killable; a SIGKILL to lmkd ends it."""
    k = boot(policy=Policy.V5_15, sched=CONTROLLED, hung_task_timeout=0)
    release = Completion("release")
    v, m = stuck_victim(k, release)
    got: list[int] = []

    def lmkd(t: Task) -> None:
        fd = pidfd_open(k, v.pid)
        assert pidfd_send_signal(k, fd, SIGKILL) == 0
        got.append(process_mrelease(k, fd, 0))

    lm = k.fork("lmkd", lmkd)
    sem = v.mm.mmap_sem
    assert k.wait_until(lambda: lm.wchan is sem and lm.state_letter == "D", 5)
    send_sigkill(lm)  # e.g. the supervisor restarting lmkd
    assert k.wait_until(exited(lm), 5)
    assert got == [EINTR] and k.stats.mrelease_reaps == 0
    release.complete()
    assert k.wait_until(exited(v, m), 5)


def test_process_mrelease_returns_eagain_when_a_notifier_would_block(boot):
    """One VMA of the victim has an mmu notifier that cannot invalidate
    without blocking: it is skipped, the rest is reaped, and the call says
    -EAGAIN."""
    k = boot(policy=Policy.V5_15, sched=CONTROLLED, hung_task_timeout=0)
    done = Completion("done")
    v = k.fork("victim", park_uninterruptible(done),
               vmas=[VmaSpec(pages=200), VmaSpec(pages=50, notifier_blocks=True)])
    assert k.wait_until(lambda: v.state_letter == "D", 5)
    got: list[int] = []

    def lmkd(t: Task) -> None:
        fd = pidfd_open(k, v.pid)
        pidfd_send_signal(k, fd, SIGKILL)
        got.append(process_mrelease(k, fd, 0))
        got.append(process_mrelease(k, fd, 0))  # the same again: the VMA still blocks

    lm = k.fork("lmkd", lmkd)
    assert k.wait_until(exited(lm), 5)
    assert got == [EAGAIN, EAGAIN]
    blocked = v.mm.vmas[1]
    assert [len(vma.pages) for vma in v.mm.vmas] == [0, 50] and blocked.notifier_blocks
    assert k.stats.mrelease_reaps == 0 and k.stats.mrelease_pages == 200
    done.complete()
    assert k.wait_until(exited(v), 5)


def test_before_419_the_reaper_zaps_a_notifier_vma_like_any_other(boot):
    """The notifier flag matters only from 4.19's nonblocking invalidation
    on: the 4.14 reaper reaps the whole mm."""
    k = boot(policy=Policy.V4_14, sched=CONTROLLED, hung_task_timeout=0)
    done = Completion("done")
    v = k.fork("victim", park_uninterruptible(done),
               vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2 + 52)),
                     VmaSpec(pages=50, notifier_blocks=True)])
    assert k.wait_until(lambda: v.state_letter == "D", 5)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(exited(a), 10)
    assert [len(vma.pages) for vma in v.mm.vmas] == [0, 0] and k.reaper_status().reaped == 1
    done.complete()
    assert k.wait_until(exited(v), 5)


# -- the pidfd calls' refusals --------------------------------------------------------------
def test_pidfd_and_mrelease_refusals(boot):
    k = boot(policy=Policy.V5_15, sched=CONTROLLED, hung_task_timeout=0)
    never = Completion("never")
    p = k.fork("p", park_killable(never), vmas=[VmaSpec(pages=10)])
    th = k.clone_thread(p, "p-thread", park_killable(never))
    assert k.wait_until(lambda: p.state_letter == "D" and th.state_letter == "D", 5)
    assert pidfd_open(k, 99999) == ESRCH
    assert pidfd_open(k, p.pid, flags=1) == EINVAL
    assert pidfd_open(k, th.pid) == EINVAL  # not a thread-group leader
    fd = pidfd_open(k, p.pid)
    assert isinstance(fd, Pidfd) and fd.task is p
    assert pidfd_send_signal(k, fd, sig=15) == EINVAL and not p.sigkill_pending
    assert pidfd_send_signal(k, fd, flags=1) == EINVAL
    send_sigkill(p)
    assert k.wait_until(exited(p, th), 5)
    assert process_mrelease(k, fd, 0) == ESRCH  # no thread with an mm left


def test_before_515_the_syscalls_do_not_exist(boot):
    k = boot(policy=Policy.V4_14, sched=CONTROLLED, hung_task_timeout=0)
    never = Completion("never")
    p = k.fork("p", park_killable(never), vmas=[VmaSpec(pages=10)])
    assert k.wait_until(lambda: p.state_letter == "D", 5)
    assert pidfd_open(k, p.pid) == ENOSYS
    fd = Pidfd(p)  # as if it had one
    assert pidfd_send_signal(k, fd) == ENOSYS and not p.sigkill_pending
    assert process_mrelease(k, fd, 0) == ENOSYS
    send_sigkill(p)
    assert k.wait_until(exited(p), 5)


def test_process_mrelease_after_the_kernel_reaper_is_done_returns_0_and_reaps_nothing(boot):
    """MMF_OOM_SKIP set by the reaper: task_will_free_mem is false, and the
    work counts as done (the design notes' 8d)."""
    k = boot(policy=Policy.V5_15, sched=CONTROLLED, hung_task_timeout=0)
    done = Completion("done")
    v = k.fork("victim", park_uninterruptible(done), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    assert k.wait_until(lambda: v.state_letter == "D", 5)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL))
    assert k.wait_until(lambda: exited(a)() and v.mm.flags & MMF.MMF_OOM_SKIP, 10)
    got: list[int] = []
    lm = k.fork("lmkd", lambda t: got.append(process_mrelease(k, pidfd_open(k, v.pid), 0)))
    assert k.wait_until(exited(lm), 5)
    assert got == [0] and k.stats.mrelease_pages == 0
    done.complete()
    assert k.wait_until(exited(v), 5)
