"""One configuration: validated timing, deadlines that scale with it, one flag table."""

import argparse

import pytest

from stress.config import (DEMO_TIMING, MAX_VERDICT_REAL_SECONDS, RUN_TIMING, SOAK_TIMING, TIMING_FLAGS,
                           WORKLOAD_FLAGS, ConfigError, Timing, add_flags, build, command_line)
from stress.workload import WorkloadParams


def test_the_lockup_window_defaults_to_one_and_a_half_hung_task_timeouts():
    assert RUN_TIMING.window == 3.0 and SOAK_TIMING.window == 1.5
    assert Timing(hung_task_timeout=10).window == 15.0
    assert DEMO_TIMING.window == 12.0  # the demo names its own...
    parser = argparse.ArgumentParser()
    add_flags(parser, TIMING_FLAGS, DEMO_TIMING)
    # ...which follows a timeout given alone, instead of refusing it.
    assert build(DEMO_TIMING, parser.parse_args(["--hung-task-timeout", "20"]), TIMING_FLAGS).window == 30.0
    explicit = parser.parse_args(["--hung-task-timeout", "20", "--lockup-window", "25"])
    assert build(DEMO_TIMING, explicit, TIMING_FLAGS).window == 25.0


@pytest.mark.parametrize("kw, needle", [
    (dict(hung_task_timeout=0), "--hung-task-timeout is whole seconds >= 1"),
    (dict(hung_task_timeout=1.5), "--hung-task-timeout is whole seconds"),
    (dict(hung_task_timeout=5, lockup_window=1), "--lockup-window 1 is shorter than --hung-task-timeout 5"),
    (dict(speed=1000), "floor"),
    (dict(hz=50), "HZ must be between"),
    (dict(ring_size=0), "--ring-size"),
    (dict(speed=0.01), r"a verdict can take 900 s of real time \(lockup window 3 s \+ hung-task detection 4 s"),
])
def test_a_timing_that_cannot_work_is_refused_with_the_numbers(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        Timing(**kw)


@pytest.mark.parametrize("timing", [
    Timing(), SOAK_TIMING, DEMO_TIMING, Timing(speed=0.5, hung_task_timeout=10, lockup_window=12),
    Timing(hung_task_timeout=3600), Timing(lockup_window=7200)])
def test_the_real_time_deadline_scales_with_the_model_time_a_verdict_needs(timing):
    # The deadline is generous (3x plus 2 s) over the model time a verdict
    # needs: window + khungtaskd's detection (4.6 reports a task one to two
    # timeouts after it went to sleep) + the reaper's retries.
    needed = (timing.window + 2 * timing.hung_task_timeout + 1.0) / timing.speed
    assert timing.deadline >= 3 * needed + 2
    assert timing.verdict_real_seconds <= MAX_VERDICT_REAL_SECONDS


def test_one_flag_table_parses_and_prints_back_every_knob():
    parser = argparse.ArgumentParser()
    add_flags(parser, TIMING_FLAGS, RUN_TIMING)
    add_flags(parser, WORKLOAD_FLAGS, WorkloadParams())
    argv = ["--speed", "33.3333333", "--hz", "250", "--hung-task-timeout", "4", "--lockup-window", "7.5",
            "--ring-size", "1000", "--processes", "2-5", "--max-threads", "2", "--zone-pages", "256-512",
            "--pressure", "2.5", "--locks", "3", "--nofs", "0.1234567", "--killable", "0",
            "--mix", "fault=3,free=0.3333333333"]
    args = parser.parse_args(argv)
    timing = build(RUN_TIMING, args, TIMING_FLAGS)
    params = build(WorkloadParams(), args, WORKLOAD_FLAGS)
    assert (timing.speed, timing.hz, timing.hung_task_timeout, timing.lockup_window, timing.ring_size) == \
        (33.3333333, 250, 4, 7.5, 1000)
    assert params.processes == (2, 5) and dict(params.mix)["fault"] == 3 and dict(params.mix)["free"] == 0.3333333333
    # What the table prints parses back to the same values: replay commands are exact.
    again = parser.parse_args(command_line(timing, RUN_TIMING, TIMING_FLAGS)
                              + command_line(params, WorkloadParams(), WORKLOAD_FLAGS))
    assert build(RUN_TIMING, again, TIMING_FLAGS) == timing
    assert build(WorkloadParams(), again, WORKLOAD_FLAGS) == params
    # Flags not given keep the preset; nothing differs, nothing is printed.
    assert build(SOAK_TIMING, parser.parse_args([]), TIMING_FLAGS) == SOAK_TIMING
    assert command_line(SOAK_TIMING, SOAK_TIMING, TIMING_FLAGS) == []


@pytest.mark.parametrize("argv", [["--mix", "fault=nan"], ["--mix", "fault=inf"], ["--pressure", "nan"],
                                  ["--speed", "inf"], ["--nofs", "-0.1"], ["--speed", "0"]])
def test_non_finite_and_out_of_range_values_are_refused_by_the_parser(argv, capsys):
    parser = argparse.ArgumentParser()
    add_flags(parser, TIMING_FLAGS, RUN_TIMING)
    add_flags(parser, WORKLOAD_FLAGS, WorkloadParams())
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert f"argument {argv[0]}:" in capsys.readouterr().err
