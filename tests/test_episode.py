"""The one episode lifecycle: ad-hoc scenarios, the rule for a thread that does
not stop, stopping from outside, and an episode with no verdict."""

import threading

import pytest

from kthreads import Completion, PlugPulled, Policy, SleepResult, TaskState, schedule_timeout
from stress import EpisodeConfig, Grade, Interrupted, Outcome, Scenario, Timing, run_episode
from stress.verdict import locked_up


def test_an_ad_hoc_scenario_needs_only_a_name_and_a_driver():
    def drive(k, seq, rng):
        done = Completion("done")
        t = k.fork("sleeper", lambda task: done.wait_for_completion_killable())
        seq.until("sleeper sleeps", lambda: t.state_letter == "D")
        done.complete()
        return {"sleeper": t}

    res = run_episode(Scenario("ad-hoc", drive), EpisodeConfig(policy=Policy.NONE))
    assert res.outcome is Outcome.NO_OOM and res.error is None and res.breaches == []
    assert res.grade is Grade.FORBIDDEN  # no grades declared: the result only reports
    assert res.roles == {"sleeper": 100}


def test_a_thread_that_does_not_stop_is_an_invariant_breach_with_its_stack():
    release = threading.Event()

    def stubborn(task):
        never = Completion("never")
        try:
            never.wait_for_completion_killable()
        except PlugPulled:
            release.wait(30)  # a body that ignores the plug and blocks outside the model
            raise

    def drive(k, seq, rng):
        # A kernel thread: no user task, so the episode is over at once (no_oom),
        # and only its shutdown can go wrong.
        t = k.kthread_run("stubborn", stubborn)
        seq.until("stubborn sleeps", lambda: t.state_letter == "D")
        return {"stubborn": t}

    grades = {Policy.NONE: {Outcome.NO_OOM: Grade.EXPECTED}}
    res = run_episode(Scenario("stubborn", drive, grades=grades),
                      EpisodeConfig(policy=Policy.NONE, shutdown_timeout=0.5))
    try:
        assert res.outcome is Outcome.NO_OOM
        assert any(b.startswith("threads not joined: stubborn/") for b in res.breaches), res.breaches
        assert res.grade is Grade.FORBIDDEN and not res.expected  # EXPECTED but for the breach
        assert "stubborn" in res.shutdown and "release.wait" in res.shutdown
    finally:
        release.set()
        for th in res.kernel.threads():
            th.join(5)


def test_a_stop_request_unwinds_the_episode_and_joins_every_thread():
    def drive(k, seq, rng):
        never = Completion("never")
        return {"sleeper": k.fork("sleeper", lambda task: never.wait_for_completion_killable())}

    with pytest.raises(Interrupted):
        run_episode(Scenario("stopped", drive), EpisodeConfig(policy=Policy.PATCH1), stop=lambda: True)
    # The autouse no_thread_leaks fixture checks that every kernel thread is gone.


@pytest.mark.slow
def test_an_episode_that_never_ends_is_undetermined_at_its_real_time_deadline():
    def busy(task):
        while True:  # runnable for ever: neither an exit nor a lockup
            assert schedule_timeout(TaskState.TASK_RUNNING, 1) is SleepResult.TIMED_OUT

    def drive(k, seq, rng):
        return {"busy": k.fork("busy", busy)}

    timing = Timing(speed=100, hung_task_timeout=1)
    res = run_episode(Scenario("busy", drive), EpisodeConfig(policy=Policy.NONE, timing=timing))
    assert res.outcome is Outcome.UNDETERMINED
    assert res.error.startswith(f"no verdict within {timing.deadline:.1f} s of real time")
    assert res.breaches == []


def test_tasks_that_all_sleep_with_nobody_in_the_allocator_are_idle_not_locked_up(boot):
    k = boot(policy="none", speed=50, hung_task_timeout=1)
    done = Completion("done")
    t = k.fork("sleeper", lambda task: done.wait_for_completion_killable())
    assert k.wait_until(lambda: t.state_letter == "D" and k.clock.now() > 3.0, 5)
    assert not locked_up(k, [t], window=1.5)  # 3 s with no progress, but nobody wants memory
    done.complete()
