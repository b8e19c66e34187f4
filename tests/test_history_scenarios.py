"""#11's scenarios that tell the designs apart, each under the designs it
separates: the fact that differs, not only the outcome label.

All on the controlled CPU (``util.CONTROLLED`` or every schedule of
``util.SCHEDS``), so each assertion holds on every run.
"""

import re

import pytest

from kthreads import Kernel, Policy
from kthreads.oom_reaper import freeze_oom_reaper, thaw_oom_reaper
from stress import EpisodeConfig, Outcome, get_scenario, run_episode
from stress.outcomes import Shape
from util import CONTROLLED, SCHEDS

SCHED_IDS = [f"{s.strategy.value}{s.seed}" for s in SCHEDS]


def run(name, policy, sched=CONTROLLED):
    res = run_episode(get_scenario(name), EpisodeConfig(sched=sched, policy=policy))
    assert res.error is None and res.breaches == [], (res.error, res.breaches)
    assert res.grade.ok, (res.outcome, res.explanation)
    return res


def events(res, name):
    """The flight recorder's events of that name, up to the verdict."""
    out = []
    for e in res.kernel.tracer.events():
        if e.name in ("verdict", "shutdown"):
            break
        if e.name == name:
            out.append(e)
    return out


def killed(res):
    """Pids the OOM killer killed, in order."""
    return [e.pid for e in events(res, "oom_kill")]


def reaper_pid(res):
    return next(t.pid for t in res.kernel.tasks() if t.comm == "oom_reaper")


def reaped_line(res, pid):
    """The reaper's success line for ``pid``: dmesg from bc448e89 on, the lab's before."""
    for line in res.console:
        if re.search(rf"oom_reaper: reaped (process|pid) {pid} \(", line):
            return line
    return None


# -- reaped-not-enough: patch1 -> tifmemdie -----------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_5, Policy.NONE])
def test_reaped_not_enough_without_a_reaper_is_lockup_a(policy):
    res = run("reaped-not-enough", policy)
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MUTEX
    assert killed(res) == [res.roles["victim"]]


@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
def test_reaped_not_enough_patch1_reaps_in_vain_and_keeps_tif_memdie(sched):
    res = run("reaped-not-enough", Policy.PATCH1, sched)
    v = res.roles["victim"]
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MUTEX_REAPED
    # Reaped: most of the zone came back ...
    assert reaped_line(res, v) is not None
    assert res.counters["pages_reaped"] > res.kernel.zone.nr_pages // 2
    # ... and went to the writer; the victim kept TIF_MEMDIE, so one kill only.
    assert killed(res) == [v]
    assert not [e for e in events(res, "exit_oom_victim") if e.pid == v]
    assert "victim (pid" in res.explanation and "TIF_MEMDIE" in res.explanation


@pytest.mark.parametrize("policy", [Policy.TIFMEMDIE, Policy.REPORT, Policy.QUEUE])
@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
def test_reaped_not_enough_tifmemdie_clears_it_and_kills_on(policy, sched):
    res = run("reaped-not-enough", policy, sched)
    v, b, w = res.roles["victim"], res.roles["bystander"], res.roles["writer"]
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    # 36324a99: the reaper itself cleared the victim's TIF_MEMDIE, before the
    # second kill, so the OOM killer could choose bystander, then writer.
    cleared = [e for e in events(res, "exit_oom_victim") if e.pid == v]
    assert len(cleared) == 1 and cleared[0].cur == reaper_pid(res)
    assert killed(res) == [v, b, w]
    second_kill = events(res, "oom_kill")[1]
    assert cleared[0].seq < second_kill.seq
    assert reaped_line(res, v) is not None


# -- mlocked-victim: patch1 -> tifmemdie ----------------------------------------------
def unlocked_pages(res):
    z = res.kernel.zone
    return max(1, z.wmark_min // 2 - 8)


@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
def test_mlocked_victim_patch1_frees_only_the_unlocked_pages_and_locks_up(sched):
    res = run("mlocked-victim", Policy.PATCH1, sched)
    v = res.roles["victim"]
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MUTEX_REAPED
    finish = [e for e in events(res, "finish_task_reaping") if e.pid == v]
    assert [e.fields["pages"] for e in finish] == [unlocked_pages(res)]
    # VM_LOCKED was skipped: the mlocked memory is still the victim's.
    line = reaped_line(res, v)
    assert line is not None and "now anon-rss:0kB" not in line
    assert killed(res) == [v]


@pytest.mark.parametrize("policy", [Policy.TIFMEMDIE, Policy.REPORT, Policy.QUEUE])
@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
def test_mlocked_victim_needs_a_second_kill_once_tif_memdie_is_cleared(policy, sched):
    res = run("mlocked-victim", policy, sched)
    v, b = res.roles["victim"], res.roles["bystander"]
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    finish = [e for e in events(res, "finish_task_reaping") if e.pid == v]
    assert [e.fields["pages"] for e in finish] == [unlocked_pages(res)]
    # Two kills: the mlocked victim's reap was too small, the bystander's exit was not.
    assert killed(res) == [v, b]
    assert res.counters["oom_kills"] == 2


def test_mlocked_victim_without_a_reaper_is_lockup_a():
    res = run("mlocked-victim", Policy.NONE)
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MUTEX
    assert killed(res) == [res.roles["victim"]]


# -- three-victims: report -> queue -----------------------------------------------------
def abc(res):
    return res.roles["victimA"], res.roles["victimB"], res.roles["victimC"]


@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
def test_three_victims_queue_pops_them_last_first(sched):
    res = run("three-victims", Policy.QUEUE, sched)
    a, b, c = abc(res)
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    assert killed(res)[:3] == [a, b, c]
    # LIFO: C, B, A (the writer, killed later, may be popped between them).
    popped = res.kernel.reaper.popped
    assert [p for p in popped if p in (a, b, c)] == [c, b, a]
    # C still had its mm and was reaped; A and B had exited (their memory
    # lives on in their helpers, which a task-based reaper cannot see).
    assert reaped_line(res, c) is not None
    raced = [e.pid for e in events(res, "reap_raced_exit")]
    assert [p for p in raced if p in (a, b)] == [b, a]
    assert res.counters["reap_dropped"] == 0
    # A reader sees the order in the lab's stream too.
    lab = [line for line in res.console if line.startswith("# lab") and "oom_reaper:" in line]
    assert any(f"pid {c} (victimC) queued on oom_reaper_list, 3 waiting" in line for line in lab)
    taken = {f"oom_reaper: reaped process {c} (victimC)": c,
             f"oom_reaper: pid {b} (victimB) has no mm user left": b,
             f"oom_reaper: pid {a} (victimA) has no mm user left": a}
    order = [pid for line in res.console for text, pid in taken.items() if text in line]
    assert order == [c, b, a]


@pytest.mark.parametrize("policy", [Policy.PATCH1, Policy.TIFMEMDIE, Policy.REPORT])
@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
def test_three_victims_single_slot_drops_b_and_c(policy, sched):
    res = run("three-victims", policy, sched)
    a, b, c = abc(res)
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MUTEX_UNREAPED
    assert killed(res) == [a, b, c]
    assert [e.pid for e in events(res, "reap_dropped")] == [b, c]
    assert reaped_line(res, c) is None
    if policy is Policy.PATCH1:
        # The slot pins A's mm, which lives on in A's helper: reaped, in vain.
        assert res.counters["reaped"] == 1 and reaped_line(res, a) is not None
    else:
        # 36324a99's slot holds the task: A has exited, nothing to reap.
        assert res.counters["reaped"] == 0
        assert [e.pid for e in events(res, "reap_raced_exit")] == [a]


@pytest.mark.parametrize("policy", [Policy.V4_5, Policy.NONE])
def test_three_victims_without_a_reaper(policy):
    res = run("three-victims", policy)
    a, b, c = abc(res)
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MUTEX
    assert killed(res) == [a, b, c]


def test_freezer_gate_is_a_no_op_without_a_reaper_and_holds_the_queue():
    k = Kernel(nr_pages=256, policy=Policy.NONE)
    try:
        freeze_oom_reaper(k)  # no reaper: nothing to freeze, no error
        thaw_oom_reaper(k)
    finally:
        k.shutdown()
    k = Kernel(nr_pages=256, policy=Policy.QUEUE)
    try:
        freeze_oom_reaper(k)
        assert k.reaper.frozen
        thaw_oom_reaper(k)
        assert not k.reaper.frozen
    finally:
        k.shutdown()


# -- self-victim: no 4.6 tree reaps it -----------------------------------------------
@pytest.mark.parametrize("policy", [Policy.V4_5, Policy.NONE, Policy.PATCH1, Policy.TIFMEMDIE,
                                    Policy.REPORT, Policy.QUEUE])
def test_self_victim_is_marked_by_the_shortcut_and_never_reaped(policy):
    res = run("self-victim", policy)
    v = res.roles["victim"]
    # Without a reaper the shape is plain mutex; with one, never handed to it.
    unreaped = policy not in (Policy.V4_5, Policy.NONE)
    assert res.outcome is Outcome.LOCKUP and res.shape is (Shape.MUTEX_UNREAPED if unreaped else Shape.MUTEX)
    # SIGKILL came from 'kill', TIF_MEMDIE from out_of_memory's shortcut:
    # no OOM kill, and no 4.6 tree hands the self-victim to the reaper.
    assert res.counters["oom_kills"] == 0
    assert [e.pid for e in events(res, "signal_generate")] == [v]
    assert events(res, "signal_generate")[0].cur == res.roles["kill"]
    assert [e.pid for e in events(res, "oom_current_victim")] == [v]
    assert [e.pid for e in events(res, "mark_victim")] == [v]
    assert events(res, "wake_reaper") == []
    assert res.counters.get("reaper_attempts", 0) == 0
    assert res.counters["oom_aborts"] > 0
    assert not any("Kill process" in line for line in res.dmesg)


# -- mmap-sem-killable-writer: queue -> v4.7 ------------------------------------------
def mmapper_write_sleeps(res):
    """The mmapper's sleeps on mmap_sem, as (killable, ...) per sleep."""
    m = res.roles["mmapper"]
    return [e.fields["killable"] for e in events(res, "sched_sleep")
            if e.pid == m and e.fields.get("kind") == "rw_semaphore"]


@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
def test_killable_writer_leaves_the_queue_and_the_reapers_trylock_succeeds_under_v47(sched):
    res = run("mmap-sem-killable-writer", Policy.V4_7, sched)
    v, m = res.roles["victim"], res.roles["mmapper"]
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    assert killed(res) == [v]  # one kill: ps is never a victim
    # down_write_killable: the mmapper slept killably, and SIGKILL took it out
    # of the queue (-EINTR) without its ever holding mmap_sem for write.
    assert mmapper_write_sleeps(res) == [True]
    assert not [e for e in events(res, "lock_acquire") if e.pid == m and not e.fields["read"]]
    (exit_m,) = [e for e in events(res, "sched_process_exit") if e.pid == m]
    assert exit_m.fields["reason"] == "SIGKILL"
    # The reaper's trylock may fail while the writer is still queued, never after.
    skips = [e for e in events(res, "skip_task_reaping") if e.pid == v]
    assert all(e.seq < exit_m.seq for e in skips)
    (start,) = [e for e in events(res, "start_task_reaping") if e.pid == v]
    assert start.seq > exit_m.seq
    assert events(res, "reap_failed") == []
    assert reaped_line(res, v) is not None and res.counters["pages_reaped"] > res.kernel.zone.nr_pages // 2


@pytest.mark.parametrize("policy", [Policy.PATCH1, Policy.TIFMEMDIE, Policy.REPORT, Policy.QUEUE])
def test_queued_uninterruptible_writer_fails_every_trylock_in_46(policy):
    res = run("mmap-sem-killable-writer", policy)
    v, m = res.roles["victim"], res.roles["mmapper"]
    assert res.outcome is Outcome.REAP_FAILED_LOCKUP and res.shape is Shape.MMAP_SEM
    assert killed(res) == [v]
    # down_write: TASK_UNINTERRUPTIBLE, so the SIGKILL leaves the writer queued.
    assert mmapper_write_sleeps(res) == [False]
    # SIGKILLed with its group, it was still queued at the verdict.
    assert not [e for e in events(res, "sched_process_exit") if e.pid == m]
    # Every one of the reaper's ten trylocks failed; it never started a reap.
    assert len([e for e in events(res, "skip_task_reaping") if e.pid == v]) == 10
    assert [e.pid for e in events(res, "reap_failed")] == [v]
    assert events(res, "start_task_reaping") == []
    # The victim's main thread waits in exit_mm behind the queued writer,
    # which waits for ps, looping in the allocator with the lock held for read.
    assert f"behind mmapper (pid {m}), queued for write" in res.explanation
    assert f"by ps (pid {res.roles['ps']}) which has looped in the page allocator" in res.explanation


@pytest.mark.parametrize("policy", [Policy.V4_5, Policy.NONE])
def test_killable_writer_scenario_without_a_reaper_is_lockup_b(policy):
    res = run("mmap-sem-killable-writer", policy)
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MMAP_SEM
    assert killed(res) == [res.roles["victim"]]
    assert mmapper_write_sleeps(res) == [False]


# -- exit-aio-self: the victim's own last mmput blocks in exit_aio ---------------------------
@pytest.mark.parametrize("sched", SCHEDS, ids=SCHED_IDS)
@pytest.mark.parametrize("policy", [Policy.NONE, Policy.PATCH1, Policy.QUEUE, Policy.V4_7, Policy.V4_9,
                                    Policy.V4_14])
def test_exit_aio_self_is_reaped_through_oom_mm_only_from_v414_on(policy, sched):
    res = run("exit-aio-self", policy, sched)
    v = res.roles["victim1"]
    # One kill in every design: victim1, the only killable process.
    assert killed(res) == [v]
    if policy is Policy.V4_14:
        # No mm_users reference needed: the reap starts after victim1's last
        # mmput, while exit_aio waits, and exit_mmap runs only after it.
        assert res.outcome is Outcome.RECOVERED_BY_REAPER
        assert [e.pid for e in events(res, "finish_task_reaping")] == [v]
        assert reaped_line(res, v) is not None
        assert events(res, "reap_raced_exit") == []
    else:
        assert events(res, "start_task_reaping") == []
        if policy is Policy.NONE:
            assert res.outcome is Outcome.LOCKUP and res.shape is Shape.OTHER
        elif policy in (Policy.PATCH1, Policy.QUEUE):
            # mmget_not_zero fails (patch 1) or find_lock_task_mm finds no mm:
            # TIF_MEMDIE stays on victim1 in exit_aio, and OOM aborts on it.
            assert res.outcome is Outcome.LOCKUP and res.shape is Shape.OTHER
            assert [e.pid for e in events(res, "reap_raced_exit")] == [v]
        else:
            # 4.7/4.8 clear TIF_MEMDIE after the attempt, 4.9 sets
            # MMF_OOM_SKIP: the next OOM finds nobody killable.
            assert res.outcome is Outcome.OOM_PANIC
            assert [e.pid for e in events(res, "reap_raced_exit")] == [v]
