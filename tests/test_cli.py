"""python -m stress: demo, list, run --json, bad input, Ctrl-C."""

import json
import re
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stress.cli import ExitStatus, main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "stress", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_demo_shows_the_lockup_then_the_reaper_breaking_it():
    t0 = time.monotonic()
    p = run_cli()
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr  # the kernel log streams to stderr, summaries to stdout
    assert "Out of memory: Kill process" in out
    assert "INFO: task victim:" in out and "blocked for more than 10 seconds." in out
    # Patch 1 printed nothing when it reaped: the lab says so, marked as its own.
    assert "oom_reaper: reaped process" not in out
    assert re.search(r"^# lab +[0-9.]+  oom_reaper: reaped pid 101 \(victim\)", out, re.M)
    table = out.split("=== verdicts")[1]
    assert "lockup-mutex  none    lockup" in table
    assert "lockup-mutex  patch1  recovered_by_reaper  recovered_by_reaper  EXPECTED" in table
    assert wall < 15  # the goal is 5 s; this bounds a loaded CI machine


def test_list_names_every_scenario(capsys):
    from stress import SCENARIOS

    assert main(["list"]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(SCENARIOS)


def test_run_writes_json(tmp_path, capsys):
    f = tmp_path / "r.json"
    rc = main(["run", "mmap-sem-writer", "--policy", "patch1", "--json", str(f), "-q"])
    assert rc == ExitStatus.OK
    d = json.loads(f.read_text())
    assert {"scenario", "policy", "outcome", "shape", "label", "expected", "model_seconds",
            "wall_seconds", "explanation", "dmesg", "trace", "counters"} <= set(d)
    assert (d["scenario"], d["policy"], d["outcome"], d["expected"]) == \
        ("mmap-sem-writer", "patch1", "reap_failed_lockup", True)
    assert d["model_seconds"] > 3.0 and d["wall_seconds"] > 0
    out = capsys.readouterr().out
    assert "# verdict: reap_failed_lockup" in out


@pytest.mark.parametrize("args, needle", [
    (["run", "nope"], "unknown scenario 'nope'; valid: lockup-mutex"),
    (["run", "lockup-mutex", "--policy", "v9"], "unknown policy 'v9'; valid: v4.5, none, patch1"),
    (["run", "lockup-mutex", "--speed", "-3"], "argument --speed: must be > 0 and <= 100, got -3"),
    (["run", "lockup-mutex", "--speed", "1e9"], "must be > 0 and <= 100"),
    (["run", "lockup-mutex", "--speed", "fast"], "argument --speed: must be a number"),
    (["run", "lockup-mutex", "--speed", "nan"], "must be a finite number"),
    (["run", "lockup-mutex", "--seed", "-1"], "argument --seed: must be between 0"),
    (["run", "lockup-mutex", "--hz", "5000"], "argument --hz: must be between 100 and 1000"),
    (["run", "lockup-mutex", "--hz", "1000", "--speed", "50"], "floor"),
    (["run", "lockup-mutex", "--lockup-window", "1"], "--lockup-window 1 is shorter than --hung-task-timeout 2"),
    (["run", "lockup-mutex", "--speed", "0.01"], "a verdict can take 900 s of real time"),
    (["run", "lockup-mutex", "--json", "/nonexistent-dir/x.json"], "no such directory"),
    (["run", "lockup-mutex", "--json", "/tmp"], "--json /tmp: is a directory"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, needle, capsys):
    assert main(args) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_a_flag_error_names_the_help_of_its_own_command(capsys):
    assert main(["run", "lockup-mutex", "--speed", "x"]) == ExitStatus.USAGE
    assert "(see 'python -m stress run --help')" in capsys.readouterr().err
    assert main(["soak", "--pressure", "0"]) == ExitStatus.USAGE
    assert "argument --pressure:" in capsys.readouterr().err


def test_demo_flags_without_a_command_run_the_demo(capsys):
    assert main(["--speed", "20", "-q", "--hung-task-timeout", "2"]) == ExitStatus.OK
    assert "speed 20x" in capsys.readouterr().out


def test_a_usage_error_creates_no_output_file(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["run", "nope", "--json", str(out)]) == ExitStatus.USAGE
    assert main(["run", "lockup-mutex", "--speed", "0.01", "--json", str(out)]) == ExitStatus.USAGE
    assert not out.exists()


def test_outputs_may_not_name_each_other_or_an_input(tmp_path, capsys):
    log = tmp_path / "l.jsonl"
    assert main(["run", "lockup-mutex", "--log", str(log), "--json", str(log)]) == ExitStatus.USAGE
    assert "--json and --log name the same file" in capsys.readouterr().err
    assert main(["run", "lockup-mutex", "-q", "--log", str(log)]) == ExitStatus.OK
    before = log.read_bytes()
    assert main(["postmortem", str(log), "--json", str(log)]) == ExitStatus.USAGE
    assert f"--json {log} would overwrite the input LOG" in capsys.readouterr().err
    assert log.read_bytes() == before


@pytest.mark.parametrize("args", [["run", "lockup-mutex", "-q", "--json", "/dev/full"],
                                  ["run", "lockup-mutex", "-q", "--log", "/dev/full"]])
def test_a_failed_write_is_one_line_naming_the_file_after_the_verdict(args, capsys):
    assert main(args) == ExitStatus.UNEXPECTED
    captured = capsys.readouterr()
    assert "# verdict: recovered_by_reaper (EXPECTED)" in captured.out
    assert captured.err.strip().splitlines() == \
        ["python -m stress: error: cannot write /dev/full: No space left on device"]


def test_a_failed_html_write_keeps_the_post_mortem_on_stdout(tmp_path, capsys):
    log = tmp_path / "l.jsonl"
    assert main(["run", "lockup-mutex", "-q", "--log", str(log)]) == ExitStatus.OK
    capsys.readouterr()
    assert main(["postmortem", str(log), "--html", "/dev/full"]) == ExitStatus.UNEXPECTED
    captured = capsys.readouterr()
    assert "outcome: recovered_by_reaper" in captured.out
    assert captured.err.strip().splitlines() == \
        ["python -m stress: error: cannot write /dev/full: No space left on device"]


def test_help_exits_0(capsys):
    assert main(["run", "--help"]) == 0
    assert "SCENARIO" in capsys.readouterr().out


def test_a_closed_stdout_ends_quietly():
    p = subprocess.Popen([sys.executable, "-m", "stress", "run", "lockup-mutex"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()  # what `| head -1` reads, then it goes away
        p.stdout.close()
        err = p.stderr.read()
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert first.startswith("=== lockup-mutex under policy patch1")
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert rc == ExitStatus.PIPE_CLOSED


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_joins_every_thread_and_writes_nothing(tmp_path, sig):
    out = tmp_path / "r.json"
    # A lockup under 'none' at speed 1 takes seconds of real time to be declared.
    p = subprocess.Popen([sys.executable, "-m", "stress", "run", "lockup-mutex", "--policy", "none",
                          "--speed", "1", "--json", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in p.stderr:  # the kernel log: the lockup has started at the kill
            if "Killed process" in line:
                break
        t0 = time.monotonic()
        p.send_signal(sig)
        rc = p.wait(timeout=10)
        assert time.monotonic() - t0 < 3.0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert rc == 128 + sig
    name = signal.Signals(sig).name
    assert f"interrupted by {name}; every thread was joined" in p.stderr.read()
    assert "# verdict" not in p.stdout.read()  # stopped before any verdict
    assert not out.exists()  # no half-written result


def test_ctrl_c_while_importing_exits_130_without_a_traceback():
    # Make the CLI's import raise KeyboardInterrupt, as a Ctrl-C there would.
    code = ("import runpy, sys\n"
            "class Interrupting:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'stress.cli':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupting())\n"
            "runpy.run_module('stress', run_name='__main__', alter_sys=True)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 130
    assert p.stderr.strip() == "python -m stress: interrupted"


def test_importing_the_package_loads_nothing_until_a_name_is_used():
    code = ("import sys, stress\n"
            "print('kthreads' in sys.modules, 'stress.cli' in sys.modules)\n"
            "stress.run_episode\n"
            "print('stress.episode' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.stdout.split() == ["False", "False", "True"], p.stderr


def test_an_output_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, capsys):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    assert main(["run", "lockup-mutex", "-q", "--json", str(link)]) == ExitStatus.OK
    assert link.is_symlink() and json.loads(target.read_text())["scenario"] == "lockup-mutex"


def test_a_flight_recorder_that_cannot_be_written_is_one_line_not_a_traceback_per_record(tmp_path):
    log = tmp_path / "l.jsonl"

    def small_files() -> None:  # in the child: a 16 KiB file size limit, EFBIG instead of SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    p = subprocess.run([sys.executable, "-m", "stress", "run", "lockup-mutex", "-q", "--log", str(log)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, preexec_fn=small_files)
    assert p.returncode == ExitStatus.UNEXPECTED
    assert p.stderr.strip().splitlines() == [f"python -m stress: error: cannot write {log}: File too large"]
    assert not log.exists()  # nothing half-written left behind


def test_a_stop_signal_after_the_verdict_still_writes_every_file(tmp_path, capsys, monkeypatch):
    import stress.cli.episodes as episodes

    shown = episodes.print_episode

    def print_then_interrupt(res, out):
        shown(res, out)
        os.kill(os.getpid(), signal.SIGTERM)  # lands while the result is being shown

    monkeypatch.setattr(episodes, "print_episode", print_then_interrupt)
    out, log = tmp_path / "r.json", tmp_path / "l.jsonl"
    assert main(["run", "lockup-mutex", "-q", "--json", str(out), "--log", str(log)]) == 128 + signal.SIGTERM
    assert json.loads(out.read_text())["outcome"] == "recovered_by_reaper" and log.exists()
    assert "interrupted by SIGTERM; every thread was joined" in capsys.readouterr().err


def test_every_report_quotes_the_same_abort_count(tmp_path, capsys):
    out, log = tmp_path / "r.json", tmp_path / "l.jsonl"
    assert main(["run", "lockup-nofs", "--policy", "none", "-q", "--json", str(out), "--log", str(log)]) == 0
    d = json.loads(out.read_text())
    aborts = d["counters"]["oom_aborts"]
    assert aborts > 0 and f"aborted {aborts} times" in d["explanation"]
    capsys.readouterr()
    assert main(["postmortem", str(log)]) == 0
    assert f"aborted {aborts} times" in capsys.readouterr().out


def test_a_small_ring_keeps_the_verdict_and_says_it_wrapped(tmp_path, capsys):
    log = tmp_path / "l.jsonl"
    assert main(["run", "lockup-mutex", "--policy", "none", "-q", "--ring-size", "40",
                 "--log", str(log)]) == 0
    assert "the ring wrapped: its" in capsys.readouterr().out
    assert main(["postmortem", str(log)]) == 0
    out = capsys.readouterr().out
    assert "PARTIAL ANALYSIS" in out and "outcome: lockup (mutex)" in out


@pytest.mark.parametrize("args, needle", [
    (["run", "lockup-mutex", "--bogus"], "unrecognized arguments: --bogus (see 'python -m stress run --help')"),
    (["run", "lockup-mutex", "--json", "-"], "--json needs a file name, got '-'"),
    (["run", "lockup-mutex", "--log", ""], "--log needs a file name, got ''"),
])
def test_more_bad_input(args, needle, capsys):
    assert main(args) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
