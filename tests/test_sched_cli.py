"""The two scheduling modes from the command line: --sched, --sched-seed,
--pct-depth, the schedule and event digest in the JSON, and --replay of a
recorded run or soak episode, exact for controlled runs and followed for free
ones; bad values are one line and exit 2."""

import json
from pathlib import Path

import pytest

from kthreads import MODEL_VERSION
from stress.cli import ExitStatus, main


def run_json(tmp_path: Path, *args: str, name: str = "r.json", any_outcome: bool = False) -> dict:
    """Run and read the JSON back. ``any_outcome``: a free run, whose outcome
    real threads decide (second-victim's is not the declared one in about 1-2%
    of free runs), may also exit UNEXPECTED; the JSON is written either way."""
    out = tmp_path / name
    rc = main(["run", *args, "-q", "--json", str(out)])
    assert rc == ExitStatus.OK or (any_outcome and rc == ExitStatus.UNEXPECTED), rc
    return json.loads(out.read_text())


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # one line, never a traceback
    return lines[0]


def test_run_json_names_the_schedule_digest_and_pct_bound(tmp_path):
    d = run_json(tmp_path, "lockup-mutex", "--policy", "none", "--sched", "pct", "--sched-seed", "4",
                 "--pct-depth", "2")
    assert d["sched"] == "pct" and d["sched_seed"] == 4
    assert d["schedule"]["kind"] == "switches" and d["schedule"]["version"] == MODEL_VERSION
    assert len(d["event_digest"]) == 32
    st = d["sched_stats"]
    assert st["pct_depth"] == 2
    assert st["pct_k"] <= st["pct_steps"] == 5000
    assert d["pct_bound"] == pytest.approx(1 / (st["pct_n"] * 5000))


def test_two_controlled_runs_are_identical_and_a_free_one_records_its_event_order(tmp_path):
    a = run_json(tmp_path, "second-victim", "--sched", "random", "--sched-seed", "7", name="a.json")
    b = run_json(tmp_path, "second-victim", "--sched", "random", "--sched-seed", "7", name="b.json")
    assert a["event_digest"] == b["event_digest"] and a["schedule"] == b["schedule"]
    free = run_json(tmp_path, "second-victim", name="f.json", any_outcome=True)
    assert free["sched"] == "free" and free["pct_bound"] is None
    assert free["breaches"] == [] and free["error"] is None  # whatever the outcome
    assert free["schedule"]["kind"] == "events"
    assert all(len(run) == 3 for run in free["schedule"]["actors"])


@pytest.mark.parametrize("source", ["--json", "--log"])
def test_run_replay_of_a_controlled_run_gives_the_same_digest(tmp_path, capsys, source):
    rec = tmp_path / ("rec.json" if source == "--json" else "rec.jsonl")
    assert main(["run", "mmap-sem-queued-writer", "--sched", "pct", "--sched-seed", "2", "-q",
                 source, str(rec), "--json" if source == "--log" else "--log",
                 str(tmp_path / "other")]) == ExitStatus.OK
    recorded = json.loads((rec if source == "--json" else tmp_path / "other").read_text())
    capsys.readouterr()
    again = run_json(tmp_path, "--replay", str(rec), name="again.json")
    assert again["event_digest"] == recorded["event_digest"]
    assert again["sched"] == "replay" and again["outcome"] == recorded["outcome"]
    assert "the same event digest: REPRODUCED" in capsys.readouterr().out


def test_run_replay_of_a_free_run_follows_its_event_order(tmp_path, capsys):
    log = tmp_path / "free.jsonl"
    assert main(["run", "lockup-mutex", "--policy", "none", "-q", "--log", str(log)]) == ExitStatus.OK
    capsys.readouterr()
    again = run_json(tmp_path, "--replay", str(log))
    assert again["sched"] == "follow" and again["outcome"] == "lockup"
    assert again["sched_stats"]["follow_diverged_at_event"] is None
    assert "(free run): lockup:mutex, recorded lockup:mutex" in capsys.readouterr().out


def test_replay_files_that_do_not_match_are_refused_in_one_line(tmp_path, capsys):
    rec = tmp_path / "rec.json"
    assert main(["run", "lockup-mutex", "--policy", "none", "--sched", "pct", "-q",
                 "--json", str(rec)]) == ExitStatus.OK
    capsys.readouterr()
    cases = {
        ("run", "exit-race", "--replay", str(rec)): "records scenario lockup-mutex, not exit-race",
        ("run", "--replay", str(rec), "--policy", "patch1"): "records policy none, not patch1",
        ("soak", "--replay", str(rec)): "records scenario lockup-mutex: replay it with 'python -m stress run",
        ("run", "--replay", str(tmp_path / "missing.json")): "cannot read",
    }
    d = json.loads(rec.read_text())
    d["schedule"]["version"] = MODEL_VERSION + 1
    (tmp_path / "future.json").write_text(json.dumps(d))
    cases[("run", "--replay", str(tmp_path / "future.json"))] = f"recorded by model version {MODEL_VERSION + 1}"
    d["schedule"] = {"kind": "switches", "version": MODEL_VERSION, "switches": [[1]]}
    (tmp_path / "bad.json").write_text(json.dumps(d))
    cases[("run", "--replay", str(tmp_path / "bad.json"))] = "must be a list of 2-lists"
    (tmp_path / "text.json").write_text("not json\n")
    cases[("run", "--replay", str(tmp_path / "text.json"))] = "is not a JSON result or a JSONL log"
    for argv, message in cases.items():
        assert main(list(argv)) == ExitStatus.USAGE, argv
        assert message in last_error(capsys), argv


@pytest.mark.parametrize("argv, message", [
    (["run", "lockup-mutex", "--sched", "bogus"], "unknown strategy 'bogus' (choose from free, random, pct)"),
    (["run", "lockup-mutex", "--sched", "replay"], "unknown strategy 'replay'"),
    (["run", "lockup-mutex", "--pct-depth", "0"], "--pct-depth: must be between 1 and 64, got 0"),
    (["soak", "--episodes", "1", "--sched-seed", "-3"], "--sched-seed: must be between 0"),
    (["soak", "--replay", "-4"], "a seed is between 0 and"),
    (["run"], "give a SCENARIO"),
])
def test_bad_scheduling_values_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == ExitStatus.USAGE
    assert message in last_error(capsys)


def soak_json(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / name
    rc = main(["soak", "--episodes", "40", "--policy", "none", "--policy", "patch1", "--json", str(out),
               *args])
    assert rc == ExitStatus.OK
    return json.loads(out.read_text())


def test_a_controlled_soak_is_the_same_twice_and_with_one_or_two_workers(tmp_path):
    one = soak_json(tmp_path, "one.json", "--jobs", "1", "--verify-replays", "0")
    again = soak_json(tmp_path, "again.json", "--jobs", "1", "--verify-replays", "0")
    two = soak_json(tmp_path, "two.json", "--jobs", "2", "--verify-replays", "0")
    for pol in ("none", "patch1"):
        tables = [d["policies"][pol]["outcomes"] for d in (one, again, two)]
        assert tables[0] == tables[1] == tables[2]
        digests = {d["policies"][pol]["digest"] for d in (one, again, two)}
        assert len(digests) == 1
    assert one["sched"] == "pct" and one["replay_share"] is None  # no replay attempted


def test_a_controlled_soak_replays_its_lockups_exactly(tmp_path, capsys):
    logs = tmp_path / "logs"
    d = soak_json(tmp_path, "s.json", "--jobs", "1", "--verify-replays", "1", "--log-dir", str(logs))
    assert d["replay_share"] == 1.0
    assert all(c["reproduced"] == c["runs"] for c in d["replay_checks"])
    lockup = next(r for r in d["replays"] if "lockup" in r["outcome"])
    # The printed command and the log both replay it, to the same digest.
    log = logs / f"seed{lockup['seed']}-{lockup['policy']}.jsonl"
    recorded = json.loads(log.read_text().splitlines()[0])["record"]["extra"]["fields"]
    capsys.readouterr()
    out = tmp_path / "replay.json"
    assert main(["soak", "--replay", str(log), "--json", str(out)]) == ExitStatus.OK
    assert "the same event digest: REPRODUCED" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"][0]["event_digest"] == recorded["event_digest"]
    argv = lockup["command"].split()[4:]  # after "python -m stress soak"
    assert main(["soak", *argv, "--json", str(out)]) == ExitStatus.OK
    assert json.loads(out.read_text())["results"][0]["event_digest"] == recorded["event_digest"]


def test_a_free_soak_keeps_its_lockups_logs_and_replays_them_by_event_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    d = soak_json(tmp_path, "s.json", "--sched", "free", "--jobs", "1", "--verify-replays", "1")
    out = capsys.readouterr().out
    assert "free scheduling: the logs of lockups go into soak-logs/" in out
    assert d["sched"] == "free"
    replays = d["replays"]
    for r in replays:
        assert r["command"] == f"python -m stress soak --replay soak-logs/seed{r['seed']}-{r['policy']}.jsonl"
        assert (tmp_path / "soak-logs" / f"seed{r['seed']}-{r['policy']}.jsonl").exists()
    if any("lockup" in r["outcome"] for r in replays):  # whether 40 free seeds lock up is up to the OS
        assert d["replay_share"] is not None and 0.0 <= d["replay_share"] <= 1.0
        assert all("divergences" in c for c in d["replay_checks"])


def test_odd_replay_inputs_are_one_line_and_exit_2(tmp_path, capsys):
    rec = tmp_path / "rec.json"
    assert main(["run", "exit-race", "--sched", "pct", "-q", "--json", str(rec)]) == ExitStatus.OK
    good = json.loads(rec.read_text())
    capsys.readouterr()

    def variant(name: str, change) -> str:
        d = json.loads(json.dumps(good))
        change(d)
        (tmp_path / name).write_text(json.dumps(d))
        return str(tmp_path / name)

    cases = {
        variant("results.json", lambda d: d.clear() or d.update(results=[1])): "holds 1 results",
        variant("version.json", lambda d: d["schedule"].update(version=True)): "model version True",
        variant("pid.json", lambda d: d["schedule"]["switches"].append([10 ** 9, 2 ** 40])):
            "names a pid of",
        variant("timing.json", lambda d: d["timing"].pop("hz")): "the timing lacks hz",
        variant("ring.json", lambda d: d["timing"].update(ring_size="big")): "the timing's ring_size is 'big'",
        variant("nolabel.json", lambda d: d.pop("label")): "no label",
    }
    for path, message in cases.items():
        assert main(["run", "--replay", path]) == ExitStatus.USAGE, path
        assert message in last_error(capsys), path
    free = variant("free.json", lambda d: d["schedule"].update(
        kind="events", actors=[[0, 10 ** 8, 0], [100, 10 ** 8, 0]]))
    assert main(["run", "--replay", free]) == ExitStatus.USAGE
    assert "more than 10000000 events" in last_error(capsys)
    for argv, message in [(["run", "--replay", str(rec), "--seed", "5"], "--seed does not apply to --replay FILE"),
                          (["run", "--replay", str(rec), "--speed", "10", "--sched", "random"],
                           "--sched, --speed do not apply to --replay FILE"),
                          (["soak", "--replay", "\u00b2"], "cannot read"),
                          (["run", "--replay", str(tmp_path)], "cannot read")]:
        assert main(argv) == ExitStatus.USAGE, argv
        assert message in last_error(capsys), argv
