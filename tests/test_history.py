"""``python -m stress history`` and ``policies``: the designs in the kernel's
order, every scenario under each, a matrix that is the same on every run."""

import json

import pytest

from kthreads import Policy
from kthreads.kernel import POLICY_OPS
from stress import SCENARIOS
from stress.cli import ExitStatus, main
from stress.history import default_sched, matrix_text, run_history
from stress.outcomes import Grade, Outcome
from stress.scenarios import Scenario, expect


def test_policies_are_listed_in_historys_order_with_commit_and_title(capsys):
    assert main(["policies"]) == ExitStatus.OK
    out = capsys.readouterr().out
    starts = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert starts == [p.value for p in Policy]
    for p in Policy:
        ops = POLICY_OPS[p]
        line = next(line for line in out.splitlines() if line.startswith(f"{p.value} "))
        assert line.split()[1] == ops.commit and line.endswith(f"  {ops.title}") and ops.change in out
    assert POLICY_OPS[Policy.PATCH1].commit == "aac45363"


def test_every_design_but_the_first_names_the_one_it_changes():
    assert Policy.V4_5.previous is None
    members = list(Policy)
    for before, after in zip(members, members[1:]):
        assert after.previous is before
        assert issubclass(POLICY_OPS[after], POLICY_OPS[before]) or before is Policy.V4_5


def test_expectations_are_inherited_along_the_history():
    g = expect({Policy.NONE: Outcome.LOCKUP, Policy.PATCH1: Outcome.RECOVERED_BY_REAPER},
               acceptable={Policy.PATCH1: Outcome.VICTIM_EXITED})
    assert g[Policy.V4_5] == {Outcome.LOCKUP: Grade.EXPECTED}  # before the first named: the first's
    last = list(Policy)[-1]
    assert g[last] == {Outcome.RECOVERED_BY_REAPER: Grade.EXPECTED, Outcome.VICTIM_EXITED: Grade.ACCEPTABLE}


def test_history_exits_0_and_its_json_has_every_cell(tmp_path, capsys):
    out, page = tmp_path / "h.json", tmp_path / "h.html"
    rc = main(["history", "-q", "--json", str(out), "--html", str(page)])
    text = capsys.readouterr().out
    assert rc == ExitStatus.OK, text
    d = json.loads(out.read_text())
    assert [p["name"] for p in d["policies"]] == [p.value for p in Policy]
    assert all(p["commit"] and p["title"] for p in d["policies"])
    assert d["scenarios"] == list(SCENARIOS)
    assert len(d["cells"]) == len(Policy) * len(SCENARIOS) and d["match"]
    for cell in d["cells"]:
        assert set(cell) == {"scenario", "policy", "expected", "observed", "match"}
        assert cell["match"] and cell["expected"]
    assert "0 not" in text and "scenario" in text.splitlines()[1]
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert all(f">{p.value}<br><small>{POLICY_OPS[p].commit}</small>" in html for p in Policy)


def test_the_matrix_is_the_same_on_every_run():
    sched = default_sched()
    scenarios = [SCENARIOS["second-victim"], SCENARIOS["exiting-task"]]
    a = run_history(list(Policy), scenarios, sched)
    b = run_history(list(Policy), scenarios, sched)
    assert [(c.label, c.match) for c in a] == [(c.label, c.match) for c in b]
    text = matrix_text(a, list(Policy))
    assert text[0].split() == ["scenario", *(p.value for p in Policy)]


def test_a_cell_that_differs_is_marked_and_fails_the_command(monkeypatch, capsys):
    wrong = Scenario("wrong-expectation", SCENARIOS["lockup-mutex"].drive_fn, "lockup-mutex expecting no OOM",
                     grades=expect({Policy.NONE: Outcome.NO_OOM}))
    monkeypatch.setitem(SCENARIOS, "wrong-expectation", wrong)
    rc = main(["history", "-q", "--scenario", "wrong-expectation", "--policy", "none", "--policy", "patch1"])
    out = capsys.readouterr().out
    assert rc == ExitStatus.UNEXPECTED
    assert "L:mutex!" in out and "RBR!" in out
    assert "wrong-expectation under none: lockup:mutex, expected no_oom" in out


@pytest.mark.parametrize("args, needle", [
    (["history", "--policy", "v9"], "unknown policy 'v9'"),
    (["history", "--scenario", "nope"], "nope"),
    (["history", "--sched-seed", "-1"], "--sched-seed"),
])
def test_bad_history_input_is_one_line_and_exit_2(args, needle, capsys):
    assert main(args) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_history_refuses_an_output_it_cannot_write(tmp_path, capsys):
    rc = main(["history", "--json", str(tmp_path / "no" / "such" / "h.json")])
    assert rc == ExitStatus.USAGE and "no such directory" in capsys.readouterr().err


def test_soak_policy_all_runs_every_design_on_the_same_seeds(tmp_path, capsys):
    out = tmp_path / "s.json"
    rc = main(["soak", "--policy", "all", "--episodes", "2", "--jobs", "1", "--json", str(out)])
    assert rc in (ExitStatus.OK, ExitStatus.UNEXPECTED)
    text = capsys.readouterr().out
    table = text[text.index("lockups by shape, per design"):].splitlines()
    assert table[1].split() == ["lockup", "shape", *(p.value for p in Policy)]
    assert table[-1].split()[:4] == ["locked", "up,", "of", "OOM"] or "locked up, of OOM" in text
    d = json.loads(out.read_text())
    assert list(d["policies"]) == [p.value for p in Policy]
    assert all(d["policies"][p.value]["episodes"] == 2 for p in Policy) and d["seed"] == 0
