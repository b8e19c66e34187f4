"""Every scenario under every policy: outcome from the model's state and from the log."""

import re

import pytest

from kthreads import Policy
from kthreads.kernel import POLICY_OPS
from stress import EpisodeConfig, Outcome, SCENARIOS, get_scenario, run_episode
from stress.outcomes import Shape
from stress.postmortem import load_jsonl
from util import CONTROLLED, SCHEDS

CASES = [(name, policy) for name in SCENARIOS for policy in Policy]


def log_has(res, text):
    return any(text in line for line in res.dmesg)


def lab_has(res, text):
    """A line of the lab's stream (never dmesg) holds ``text``."""
    return any(line.startswith("# lab") and text in line for line in res.console)

#: Scenarios whose kills are a userspace killer's signals: the OOM killer never runs.
USERSPACE_KILLERS = ("userspace-killer", "mrelease-blocked")


def events(res, name):
    """The flight recorder's events of that (lab) name, up to the shutdown."""
    out = []
    for e in res.kernel.tracer.events():
        if e.name == "shutdown":
            break
        if e.name == name:
            out.append(e)
    return out


@pytest.mark.parametrize("sched", SCHEDS, ids=[f"{s.strategy.value}{s.seed}" for s in SCHEDS])
@pytest.mark.parametrize("name, policy", CASES, ids=[f"{n}-{p.value}" for n, p in CASES])
def test_scenario_outcome_is_the_declared_one(name, policy, sched):
    sc = get_scenario(name)
    res = run_episode(sc, EpisodeConfig(sched=sched, policy=policy))
    assert res.error is None
    assert res.breaches == []
    assert res.grade.ok, (res.outcome, res.explanation, res.dmesg[-20:])
    victim = res.roles.get("victim")
    # The same verdict, read back from the kernel's own log lines.
    if res.outcome is Outcome.OOM_PANIC:
        panic = ("System is deadlocked on memory" if POLICY_OPS[policy].panic_deadlocked_on_memory
                 else "Out of memory and no killable processes...")
        assert log_has(res, f"Kernel panic - not syncing: {panic}")
        return
    if (name, policy) == ("exiting-task", Policy.V4_5):
        # 4.5 waits for the exiting task and kills nobody.
        assert res.counters["oom_kills"] == 0 and not log_has(res, "Killed process")
        return
    if name == "self-victim":
        # Killed by another process and marked by out_of_memory's shortcut,
        # which prints no kill line: the OOM killer itself kills nobody.
        assert res.counters["oom_kills"] == 0 and not log_has(res, "Kill process")
    elif name in USERSPACE_KILLERS:
        # lmkd kills with a signal (pidfd_send_signal or kill): the OOM killer never runs.
        assert res.counters["oom_kills"] == 0 and not log_has(res, "Killed process")
    else:
        comm = res.kernel.find_task_by_pid(victim).comm
        assert log_has(res, f"Killed process {victim} ({comm})")
    if policy is Policy.V4_5 and res.counters["oom_kills"]:
        # 4.5's header has no flag names (a0795cd4 came in 4.6-rc1); no kill, no header.
        assert log_has(res, " invoked oom-killer: gfp_mask=0x") and not log_has(res, "(GFP_")
    if POLICY_OPS[policy].oom_reaper_reports:
        # bc448e89 on: the kernel's own lines, and no lab line for the same thing.
        assert not lab_has(res, "oom_reaper: reaped pid") and not lab_has(res, "oom_reaper: gave up")
        if res.outcome is Outcome.RECOVERED_BY_REAPER and name not in ("second-victim", *USERSPACE_KILLERS):
            assert log_has(res, f"oom_reaper: reaped process {victim} (victim")
        if res.outcome is Outcome.REAP_FAILED_LOCKUP:
            i = next(i for i, line in enumerate(res.dmesg)
                     if f"oom_reaper: unable to reap pid:{victim} (victim)" in line)
            assert res.dmesg[i + 2].endswith("Showing all locks held in the system:")
    else:
        # Patch 1 prints nothing about the reaper (bc448e89 added both lines):
        # the lab's stream shows its work instead.
        assert not log_has(res, "oom_reaper")
        if res.outcome is Outcome.RECOVERED_BY_REAPER:
            assert lab_has(res, f"oom_reaper: reaped pid {victim} (victim)")
        if res.outcome is Outcome.REAP_FAILED_LOCKUP:
            assert lab_has(res, f"oom_reaper: gave up on pid {victim} (victim) after 10 failed down_read_trylock")
    if res.outcome in (Outcome.LOCKUP, Outcome.REAP_FAILED_LOCKUP):
        assert res.recovered_at is None and res.recovery_seconds is None  # nothing recovered
        if res.shape != "futex":  # an orphaned futex waiter sleeps in S: khungtaskd ignores it
            assert any(re.search(r"INFO: task .* blocked for more than \d+ seconds\.", line) for line in res.dmesg)
        if name not in USERSPACE_KILLERS and res.shape != "futex":  # no OOM at all / the OOM ended
            assert res.counters["oom_aborts"] > 0
    if res.outcome is Outcome.LOCKUP and policy is Policy.PATCH1:
        # The victim everybody waits for was reaped only where the shape says
        # so: reaped, in vain, and still TIF_MEMDIE (reaped-not-enough).
        assert lab_has(res, f"oom_reaper: reaped pid {victim} (") == (res.shape in (Shape.MUTEX_REAPED, Shape.FUTEX))
    if res.outcome.is_lockup:
        # The harness's lockup report is the lab's, not the kernel's.
        assert lab_has(res, "Lockup report: no allocation, exit or reap since")
        assert not log_has(res, "Lockup report")
    if policy in (Policy.V4_5, Policy.NONE):
        assert not lab_has(res, "oom_reaper")
        assert "reaped" not in res.counters


def test_lockup_mutex_patch1_reaps_while_the_victim_still_sleeps_and_every_page_returns(tmp_path):
    from stress.postmortem import load_jsonl

    res = run_episode(get_scenario("lockup-mutex"), EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1),
                      log_path=str(tmp_path / "l.jsonl"))
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    v, w = res.roles["victim"], res.roles["writer"]
    log = load_jsonl(tmp_path / "l.jsonl").events
    kill = next(e.seq for e in log if e.name == "oom_kill")
    finish = next(e.seq for e in log if e.name == "finish_task_reaping")
    victim_wakes = next(e.seq for e in log if e.name == "sched_wake" and e.pid == v)
    writer_gets = next(e.seq for e in log if e.name == "alloc_success" and e.pid == w)
    # The memory came back while the victim still slept in D on inode_lock;
    # then the writer's allocation succeeded, and only then the victim woke
    # (in the log's order: on the controlled CPU no time passes while tasks run).
    assert kill < finish < writer_gets < victim_wakes
    assert res.kill_at <= res.freed_at <= res.recovered_at
    assert res.counters["pages_reaped"] > 900
    assert res.breaches == []  # includes "every page back in the zone" after shutdown
    assert events(res, "finish_task_reaping") and events(res, "mark_victim")


def test_reaper_retries_ten_times_hz_over_10_apart_then_gives_up():
    cfg = EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1)
    res = run_episode(get_scenario("mmap-sem-writer"), cfg)
    assert res.outcome is Outcome.REAP_FAILED_LOCKUP
    skips = events(res, "skip_task_reaping")
    assert len(skips) == 10 and res.counters["reaper_skipped"] == 10
    times = [e.t for e in skips]
    gaps = [b - a for a, b in zip(times, times[1:])]
    hz_over_10 = 0.1  # model seconds at any HZ
    assert all(g >= hz_over_10 * 0.99 for g in gaps), gaps
    assert all(g < hz_over_10 * 5 for g in gaps), gaps  # a loaded machine, but not a lost wake
    assert len(events(res, "reap_failed")) == 1


def test_second_victim_is_dropped_because_the_slot_is_busy():
    res = run_episode(get_scenario("second-victim"), EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1))
    assert res.outcome is Outcome.LOCKUP
    assert res.counters["reap_dropped"] == 1
    dropped = events(res, "reap_dropped")
    assert dropped and dropped[0].pid == res.roles["victim"]
    assert lab_has(res, "oom_reaper: mm_to_reap is busy with pid ") and lab_has(res, "will not be reaped (a single slot)")
    assert "mm_to_reap refused it" in res.explanation


def test_shared_mm_unkillable_is_killed_but_never_reaped():
    res = run_episode(get_scenario("shared-mm-unkillable"), EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1))
    assert res.outcome is Outcome.LOCKUP
    assert events(res, "oom_reap_forbidden") and not events(res, "wake_reaper")
    assert res.counters["reaper_attempts"] == 0


def test_exit_race_never_touches_a_freed_mm():
    for seed in range(5):
        res = run_episode(get_scenario("exit-race"), EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1, seed=seed))
        assert res.outcome in (Outcome.VICTIM_EXITED, Outcome.RECOVERED_BY_REAPER)
        assert res.breaches == [] and res.error is None
        assert res.counters["reaper_skipped"] >= 1
        assert res.counters["reap_raced_exit"] + res.counters["reaped"] == 1


def test_no_killable_task_panics_promptly():
    res = run_episode(get_scenario("no-killable-task"), EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1))
    assert res.outcome is Outcome.OOM_PANIC
    assert res.model_seconds < 2.0  # well before any lockup window


def test_unknown_scenario_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown scenario 'nope'; valid: lockup-mutex, "):
        get_scenario("nope")


def test_an_episode_returns_its_kernel_and_shutdown_report():
    res = run_episode(get_scenario("lockup-mutex"), EpisodeConfig(sched=CONTROLLED, policy=Policy.NONE))
    assert res.kernel is not None and res.kernel.plug_pulled
    assert res.kernel.reaper_status().reaped == 0 and not res.kernel.reaper_status().running
    assert res.shutdown.startswith("shutdown: joined ")
    assert "kernel" not in res.to_json() and res.to_json()["scenario"] == "lockup-mutex"


@pytest.mark.parametrize("policy", [Policy.NONE, Policy.PATCH1])
def test_exiting_task_recovers_in_both_46_trees_by_killing_the_biggest(policy):
    res = run_episode(get_scenario("exiting-task"), EpisodeConfig(sched=CONTROLLED, policy=policy))
    assert res.error is None and res.breaches == [] and res.grade.ok
    assert res.outcome in (Outcome.VICTIM_EXITED, Outcome.RECOVERED_BY_REAPER)
    exiter, victim = res.roles["exiter"], res.roles["victim"]
    assert res.counters["oom_kills"] == 1
    # The exiting task was scored (its row is in the task dump), not waited for.
    assert log_has(res, f"Out of memory: Kill process {victim} (victim) score ")
    assert any(line.endswith(" exiter") and f"[{exiter:5d}]" in line for line in res.dmesg)
    assert not log_has(res, f"Kill process {exiter} ")


def test_exiting_task_locks_up_under_45():
    # What the 4.5 tree shows: the OOM killer waits for the exiting task, which
    # waits for its own mmapper, which waits for memory. No kill at all.
    res = run_episode(get_scenario("exiting-task"), EpisodeConfig(sched=CONTROLLED, policy=Policy.V4_5))
    assert res.error is None and res.breaches == []
    assert res.outcome is Outcome.LOCKUP and res.shape is Shape.MMAP_SEM
    assert res.counters["oom_kills"] == 0 and res.counters["oom_aborts"] > 0
    assert not log_has(res, "Kill process")
    assert f"exiter (pid {res.roles['exiter']}) is exiting with its mm" in res.explanation
    assert "because an exiting task still has its mm" in res.explanation
    assert log_has(res, "      Not tainted 4.5.0 #1")  # the v4.5 tag's uname -r
