"""python -m stress: demo, list, run --json, bad input, Ctrl-C."""

import json
import os
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
    assert "oom_reaper: reaped process" in out
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
    assert {"scenario", "policy", "outcome", "expected", "model_seconds", "wall_seconds"} <= set(d)
    assert (d["scenario"], d["policy"], d["outcome"], d["expected"]) == \
        ("mmap-sem-writer", "patch1", "reap_failed_lockup", True)
    assert d["model_seconds"] > 3.0 and d["wall_seconds"] > 0
    out = capsys.readouterr().out
    assert "skip_task_reaping" in out and "# verdict: reap_failed_lockup" in out


@pytest.mark.parametrize("args, needle", [
    (["run", "nope"], "unknown scenario 'nope'; valid: lockup-mutex"),
    (["run", "lockup-mutex", "--policy", "v9"], "unknown policy 'v9'; valid: none, patch1"),
    (["run", "lockup-mutex", "--speed", "-3"], "--speed must be a positive number"),
    (["run", "lockup-mutex", "--speed", "1e9"], "--speed must be at most 100"),
    (["run", "lockup-mutex", "--speed", "fast"], "--speed must be a number"),
    (["run", "lockup-mutex", "--seed", "-1"], "--seed must be between 0"),
    (["run", "lockup-mutex", "--hz", "5000"], "--hz must be between 100 and 1000"),
    (["run", "lockup-mutex", "--hz", "1000", "--speed", "50"], "floor"),
    (["run", "lockup-mutex", "--json", "/nonexistent-dir/x.json"], "cannot write '/nonexistent-dir/x.json'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, needle, capsys):
    assert main(args) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_help_exits_0(capsys):
    assert main(["run", "--help"]) == 0
    assert "SCENARIO" in capsys.readouterr().out


def test_ctrl_c_joins_every_thread_and_exits_130():
    # Real time: a lockup under 'none' at speed 1 takes seconds to be declared.
    p = subprocess.Popen([sys.executable, "-m", "stress", "run", "lockup-mutex", "--policy", "none",
                          "--speed", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # Wait for the kill line, i.e. the lockup has started.
        for line in p.stderr:  # the kernel log
            if "Killed process" in line:
                break
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
        assert time.monotonic() - t0 < 1.5
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert rc == ExitStatus.INTERRUPTED
    assert "interrupted; every thread was joined" in p.stderr.read()
    assert "# verdict" not in p.stdout.read()  # stopped before any verdict
