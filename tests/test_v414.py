"""Policy v4.14: Linux 4.14's changes on top of ``v4.9``, on the controlled CPU."""

import re

import pytest

from kthreads import GFP_KERNEL, GFP_NOFS, Completion, Ev, Mutex, Policy, VmaSpec, alloc_pages
from kthreads.kernel import POLICY_OPS
from kthreads.mm import MMF, exit_aio, mmdrop, mmgrab
from kthreads.designs import V49Ops, V414Ops
from stress import Outcome
from stress.ftrace import TraceInput, ftrace_lines
from util import assert_first_to_set, CONTROLLED, exited, park_killable, run_controlled as run, recorded as events, dmesg_texts as texts, pages_left, stall_warnings

V414_FLAGS = ("reaper_exit_mmap_concurrent", "header_nodemask", "stall_warning_nodemask",
              "hung_task_all_locks_once_per_scan")
#: Flags an earlier design already had as a knob, which 4.14 is the first to set.
V414_ALSO = ("oom_reaper_tracepoints", "mutex_handoff")


# -- the policy itself ----------------------------------------------------------------------
def test_v414_is_v49_plus_its_flags_and_no_earlier_design_has_one():
    assert Policy.V4_14.previous is Policy.V4_9 and Policy.parse("v4.14") is Policy.V4_14
    ops = POLICY_OPS[Policy.V4_14]
    assert ops is V414Ops and issubclass(ops, V49Ops)
    assert ops.release == "4.14.0" and ops.commit == "v4.14" and ops.signal_oom_mm
    assert ops.reaper_takes_oom_lock and ops.reaper_sets_oom_skip and not ops.rwsem_handoff
    assert_first_to_set(Policy.V4_14, V414_FLAGS + V414_ALSO)


@pytest.mark.parametrize("policy", [Policy.V4_9, Policy.V4_14])
def test_a_mutex_built_under_v414_hands_itself_off(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    assert Mutex("m", k).handoff is (policy is Policy.V4_14)


# -- exit-aio-self: the reaper no longer needs an mm_users reference ------------------------
@pytest.mark.parametrize("policy, outcome", [(Policy.PATCH1, Outcome.LOCKUP), (Policy.QUEUE, Outcome.LOCKUP),
                                             (Policy.V4_7, Outcome.OOM_PANIC),
                                             (Policy.V4_9, Outcome.OOM_PANIC),
                                             (Policy.V4_14, Outcome.RECOVERED_BY_REAPER)])
def test_exit_aio_self_is_reaped_only_from_v414_on(policy, outcome):
    res = run("exit-aio-self", policy)
    assert res.outcome is outcome
    k = res.kernel
    v = k.find_task_by_pid(res.roles["victim1"])
    status = k.reaper_status()
    reaped = [t for t in texts(k) if re.fullmatch(rf"oom_reaper: reaped process {v.pid} \(victim1\), now "
                                                  r"anon-rss:0kB, file-rss:0kB, shmem-rss:0kB", t)]
    if policy is Policy.V4_14:
        assert status.reaped == 1 and status.raced_exit == 0 and len(reaped) == 1
        mm = v.signal.oom_mm
        # MMF_UNSTABLE before the unmap, MMF_OOM_SKIP after (by the reaper
        # and by exit_mmap), and the mm freed once exit_aio returned.
        assert mm.flags & MMF.MMF_UNSTABLE and mm.flags & MMF.MMF_OOM_SKIP and mm.freed
        assert k.stats.oom_kills == 1
        assert all(k.find_task_by_pid(pid).state_letter in "ZX" for pid in res.roles.values())
    else:
        assert status.reaped == 0 and not reaped
        if policy is not Policy.PATCH1:  # a task-based reaper finds no thread with an mm
            assert status.raced_exit >= 1


def test_the_reap_of_exit_aio_self_happens_with_no_mm_user_left():
    res = run("exit-aio-self", Policy.V4_14)
    k = res.kernel
    v = k.find_task_by_pid(res.roles["victim1"])
    mm_id = v.signal.oom_mm.id
    names = [e.name for e in k.tracer.events() if e.fields.get("mm") == mm_id or e.pid == v.pid]
    # victim1's last mmput (mm_users 1 -> 0) comes before the reaper starts,
    # and exit_mmap only after it finished (exit_aio waited for aio's page).
    start = names.index(Ev.START_TASK_REAPING)
    assert names.index(Ev.FINISH_TASK_REAPING) > start
    assert names.index(Ev.EXIT_MMAP) > start
    assert not events(k, Ev.REAP_RACED_EXIT)


# -- exit_mmap and the reaper: MMF_OOM_SKIP and the down_write/up_write hand-over ------------
@pytest.mark.parametrize("policy", [Policy.V4_9, Policy.V4_14])
def test_a_reaper_late_for_exit_mmap_backs_off_on_mmf_oom_skip_from_v414_on(policy):
    res = run("mmap-sem-writer", policy)
    k = res.kernel
    skips = [e for e in events(k, Ev.SKIP_TASK_REAPING) if e.fields.get("reason") == "MMF_OOM_SKIP"]
    if policy is Policy.V4_14:
        assert skips and k.reaper_status().raced_exit == 0
        assert any("MMF_OOM_SKIP already set" in line for line in res.console)
    else:
        assert not skips and k.reaper_status().raced_exit >= 1


@pytest.mark.parametrize("policy", [Policy.V4_9, Policy.V4_14])
def test_a_victims_exit_mmap_waits_for_a_reader_of_mmap_sem_from_v414_on(boot, policy):
    """The reaper's read hold stands in a reader that took no mm_users
    reference: under 4.14 the victim's exit_mmap sets MMF_OOM_SKIP and
    then waits (down_write) for it before freeing the page tables."""
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=0)
    never, release = Completion("never"), Completion("release")
    v = k.fork("victim", park_killable(never), vmas=[VmaSpec(pages=pages_left(k, k.zone.wmark_min // 2))])
    mm = v.mm
    assert k.wait_until(lambda: v.state_letter == "D", 5)

    def reader(t):  # a pin on the struct only, and mmap_sem for read
        with mm.mmap_sem.read():
            release.wait_for_completion()

    mmgrab(mm)  # the harness keeps the struct for the asserts
    r = k.fork("reader", reader, oom_score_adj=-1000)
    assert k.wait_until(lambda: r in mm.mmap_sem.readers(), 5)
    a = k.fork("allocator", lambda t: alloc_pages(GFP_KERNEL), oom_score_adj=-1000)
    assert k.wait_until(lambda: mm.mm_users.read() == 0, 5, idle_ok=True)
    if policy is Policy.V4_14:
        assert k.wait_until(lambda: v.state_letter == "D" and v.wchan is mm.mmap_sem, 5, idle_ok=True)
        assert mm.flags & MMF.MMF_OOM_SKIP and not mm.freed and mm._pgtables
    release.complete()
    assert k.wait_until(exited(v, r, a), 5)
    assert not mm._pgtables and not mm._vmas
    if policy is Policy.V4_14:
        assert mm.flags & MMF.MMF_OOM_SKIP
    mmdrop(mm)


def test_exit_aio_returns_at_once_without_aio_in_flight(boot):
    k = boot(policy=Policy.V4_14, sched=CONTROLLED, hung_task_timeout=0)
    done = Completion("done")
    v = k.fork("v", park_killable(done), vmas=[VmaSpec(pages=4)])
    assert k.wait_until(lambda: v.state_letter == "D", 5)
    assert v.mm.aio_in_flight is None
    exit_aio(v.mm)  # no AIO: nothing to wait for, even from the harness
    done.complete()
    assert k.wait_until(exited(v), 5)


# -- 4.14's output --------------------------------------------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_9, Policy.V4_14])
def test_the_oom_header_has_the_nodemask_from_v414_on(policy):
    res = run("lockup-mutex", policy)
    header = next(t for t in texts(res.kernel) if "invoked oom-killer" in t)
    if policy is Policy.V4_14:
        # 4.10 dropped __GFP_OTHER_NODE: 4.14's GFP_KERNEL is 0x14000c0.
        assert header == ("writer invoked oom-killer: gfp_mask=0x14000c0(GFP_KERNEL), nodemask=(null),  "
                          "order=0, oom_score_adj=0")
    else:
        assert header == "writer invoked oom-killer: gfp_mask=0x24000c0(GFP_KERNEL), order=0, oom_score_adj=0"


@pytest.mark.parametrize("policy", [Policy.V4_9, Policy.V4_14])
def test_the_stall_warning_has_the_nodemask_from_v414_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, nr_pages=1024, hung_task_timeout=0, alloc_stall_secs=0.5)
    lines = stall_warnings(k)
    tail = ", nodemask=\\(null\\)" if policy is Policy.V4_14 else ""
    mode = "0x1400040" if policy is Policy.V4_14 else f"{int(GFP_NOFS):#x}"  # each tree's numbering
    assert lines and all(re.fullmatch(r"nofs: page allocation stalls for \d+ms, order:0, "
                                      rf"mode:{mode}\(GFP_NOFS\){tail}", s) for s in lines)


@pytest.mark.parametrize("policy", [Policy.V4_9, Policy.V4_14])
def test_the_oom_tracepoints_are_in_the_ftrace_from_v414_on(policy):
    res = run("lockup-mutex", policy)
    k, pid = res.kernel, res.roles["victim"]
    lines = ftrace_lines(TraceInput.from_kernel(k))
    marks = [s for s in lines if re.search(rf": (mark_victim|wake_reaper|start_task_reaping|"
                                           rf"finish_task_reaping): pid={pid}$", s)]
    if policy is Policy.V4_14:
        assert {m.split(": ")[1] for m in marks} == {"mark_victim", "wake_reaper", "start_task_reaping",
                                                     "finish_task_reaping"}
    else:
        assert not marks


@pytest.mark.parametrize("policy", [Policy.V4_9, Policy.V4_14])
def test_khungtaskd_dumps_all_locks_once_per_scan_from_v414_on(boot, policy):
    k = boot(policy=policy, sched=CONTROLLED, hung_task_timeout=2)
    lock, go = Mutex("i_mutex", k), Completion("go")

    def holder(t):
        with lock:
            go.wait_killable()

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: lock.owner is h, 5)
    w1 = k.fork("waiter1", lambda t: lock.lock() or lock.unlock())
    w2 = k.fork("waiter2", lambda t: lock.lock() or lock.unlock())
    assert k.wait_until(lambda: sum("INFO: task waiter" in s for s in texts(k)) >= 2, 10, idle_ok=True)
    lines = texts(k)
    first = next(i for i, s in enumerate(lines) if "INFO: task waiter" in s)
    second = next(i for i, s in enumerate(lines) if i > first and "INFO: task waiter" in s)
    dumps = [i for i, s in enumerate(lines) if s == "Showing all locks held in the system:"]
    if policy is Policy.V4_14:
        # One scan found both: both reports, then one dump.
        assert dumps and dumps[0] > second
        assert "Not tainted 4.14.0 " in lines[first + 1]
    else:  # 4.9: a dump after each report
        assert dumps[:2] and first < dumps[0] < second < dumps[1]
    go.complete_all()
    assert k.wait_until(exited(h, w1, w2), 5)
