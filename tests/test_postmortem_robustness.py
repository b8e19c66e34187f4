"""Odd logs found in review: each gives a clear error or a partial analysis, never a traceback."""

import json
import os

import pytest

from kthreads import Kernel, VmaSpec
from stress import EpisodeConfig, get_scenario, run_episode
from stress.cli import ExitStatus, main
from stress.outcomes import Outcome
from stress.postmortem import LogError, analyze, dump_jsonl, format_text, load_jsonl, render_html
from util import CONTROLLED, records, write


@pytest.fixture(scope="module")
def lockup(tmp_path_factory):
    p = tmp_path_factory.mktemp("rb") / "lockup.jsonl"
    run_episode(get_scenario("mmap-sem-writer"), EpisodeConfig(sched=CONTROLLED, policy="patch1"), log_path=str(p))
    return p


def test_a_log_path_with_braces_is_a_path_not_a_template(tmp_path):
    k = Kernel()
    k.shutdown()
    p = dump_jsonl(k, tmp_path / "a{b}{time}.jsonl", {})
    assert p.name == "a{b}{time}.jsonl" and load_jsonl(p).header["policy"] == "none"


def test_line_separators_inside_strings_do_not_split_records(tmp_path):
    k = Kernel()
    t = k.fork("na\u2028me\u0085", lambda t: None, vmas=[VmaSpec(pages=2)])
    k.wait_until(lambda: t.state_letter == "X", 2)
    k.shutdown()
    log = load_jsonl(dump_jsonl(k, tmp_path / "u.jsonl", {}))
    assert not log.problems and analyze(log).diagnosis.outcome == "no_oom"


def test_the_replay_stops_at_the_verdict_even_without_a_shutdown_record(lockup, tmp_path):
    recs = [r for r in records(lockup) if r["record"]["extra"]["event"] != "shutdown"]
    a = analyze(load_jsonl(write(tmp_path / "noshut.jsonl", recs)))
    assert a.diagnosis.outcome == "reap_failed_lockup" and a.diagnosis.shape == "mmap_sem"


def test_a_wrapped_ring_is_partial_and_never_a_confident_wrong_story(tmp_path):
    p = tmp_path / "w.jsonl"
    run_episode(get_scenario("lockup-mutex"), EpisodeConfig(sched=CONTROLLED, policy="none"), log_path=str(p))
    recs = records(p)
    header, events = recs[0], recs[1:]
    kept = events[len(events) // 2:]
    header["record"]["extra"]["fields"]["lost"] = len(events) - len(kept)
    a = analyze(load_jsonl(write(tmp_path / "cut.jsonl", [header] + kept)))
    d = a.diagnosis
    assert d.partial and "ring wrapped" in d.problems[0]
    assert d.outcome == "lockup" and d.shape == "mutex"  # from the verdict record, said so
    assert any("taken from the verdict record" in p for p in d.problems)
    no_verdict = [r for r in kept if r["record"]["extra"]["event"] not in ("verdict", "lockup_report")]
    a = analyze(load_jsonl(write(tmp_path / "cut2.jsonl", [header] + no_verdict)))
    assert a.diagnosis.outcome == "undetermined" and a.diagnosis.partial


def test_duplicated_lines_are_skipped_and_noted(lockup, tmp_path):
    recs = records(lockup)
    a1 = analyze(load_jsonl(lockup))
    a2 = analyze(load_jsonl(write(tmp_path / "dup.jsonl", recs[:1] + recs[1:] + recs[1:])))
    assert a2.oom_aborts == a1.oom_aborts and a2.diagnosis.partial
    assert any("duplicate of event" in p for p in a2.diagnosis.problems)


def test_malformed_fields_are_skipped_with_their_line(lockup, tmp_path, capsys):
    recs = records(lockup)
    for r in recs:
        ex = r["record"]["extra"]
        if ex["event"] == "finish_task_reaping" or ex["event"] == "mm_free":
            ex["fields"]["mm"] = [1]
        if ex["event"] == "lock_acquire":
            ex["fields"]["lock_id"] = "not a number"
    recs[0]["record"]["extra"]["fields"]["events"] = "3"
    p = write(tmp_path / "bad.jsonl", recs)
    assert main(["postmortem", str(p)]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert "PARTIAL ANALYSIS" in out and "malformed lock_acquire record skipped" in out


def test_a_fifo_is_refused_not_waited_on(tmp_path, capsys):
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(LogError, match="not a regular file"):
        load_jsonl(fifo)
    assert main(["postmortem", str(fifo)]) == ExitStatus.USAGE


def test_a_header_only_log_is_undetermined(tmp_path):
    k = Kernel()
    k.shutdown()
    p = tmp_path / "h.jsonl"
    dump_jsonl(k, p, {})
    recs = records(p)[:1]
    a = analyze(load_jsonl(write(tmp_path / "only.jsonl", recs)))
    assert a.diagnosis.outcome == "undetermined"


def test_html_escapes_everything_from_the_log(lockup, tmp_path):
    recs = records(lockup)
    for r in recs:
        ex = r["record"]["extra"]
        if ex["event"] == "sched_sleep":
            ex["fields"]["owners"] = ["<script>alert(1)</script>"]
            ex["fields"]["wchan"] = "<img src=x onerror=alert(1)>"
        ex["comm"] = "<b>&" + ex["comm"]
    page = render_html(analyze(load_jsonl(write(tmp_path / "x.jsonl", recs))))
    assert "<script>" not in page and "<img" not in page and "<b>&" not in page


def event_line(**extra):
    """One log line whose record.extra is a sched_wake of pid 100, with ``extra`` replacing fields."""
    base = {"event": "sched_wake", "t": 1.0, "seq": 10 ** 6, "pid": 100, "comm": "x", "fields": {}}
    return json.dumps({"record": {"extra": {**base, **extra}}}, allow_nan=True)


@pytest.mark.parametrize("line, reason", [
    (event_line(seq=1e400), "seq is not an integer: inf"),
    (event_line(seq="7"), "seq is not an integer"),
    (event_line(pid=None), "pid is not an integer"),
    (event_line(t=float("nan")), "t is not a finite number: nan"),
    (event_line(t=float("inf")), "t is not a finite number: inf"),
    (event_line(t=True), "t is not a finite number"),
    (event_line(fields=[1, 2]), "fields is not an object"),
    (event_line(fields="ab"), "fields is not an object"),
    (event_line(event=7), "event is not a name"),
    (event_line(event={"a": 1}), "event is not a name"),
    (event_line(comm=["x"]), "comm is not a string"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    ('{"record": {"extra": {"seq": ' + "9" * 5000 + "}}}", "not JSON"),
    ('"just a string"', "no record.extra object"),
])
def test_a_malformed_line_is_skipped_counted_and_named_never_a_traceback(lockup, tmp_path, capsys, line,
                                                                          reason):
    lines = lockup.read_text().split("\n")
    lines.insert(5, line)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines))
    assert main(["postmortem", str(bad)]) == ExitStatus.OK
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and err == ""
    assert "PARTIAL ANALYSIS: 1 line skipped (1 corrupt); " in out
    assert f"line 6: corrupt record skipped ({reason}" in out
    log = load_jsonl(bad)
    assert log.skipped_lines == 1 and log.partial
    assert analyze(log).diagnosis.outcome is analyze(load_jsonl(lockup)).diagnosis.outcome


def test_a_malformed_header_is_one_error_line(tmp_path, capsys):
    p = tmp_path / "h.jsonl"
    p.write_text(json.dumps({"record": {"extra": {"event": "header", "t": 0, "seq": -1, "pid": 0,
                                                  "comm": "", "fields": [1]}}}) + "\n")
    assert main(["postmortem", str(p)]) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m stress: error: {p}:1: not a flight-recorder log (fields is not an object)"]


def test_nonsense_in_header_counts_is_ignored_and_noted(lockup, tmp_path):
    recs = records(lockup)
    recs[0]["record"]["extra"]["fields"].update(lost="many", events=-3, lockup_window="long")
    a = analyze(load_jsonl(write(tmp_path / "h.jsonl", recs)))
    assert a.diagnosis.partial and a.log.lost == 0
    assert "header: lost is not a count (many), ignored" in a.diagnosis.problems
    assert a.log.lockup_window == a.log.header["hung_task_timeout"]


def test_many_bad_lines_are_counted_not_listed(lockup, tmp_path):
    lines = lockup.read_text().split("\n")
    bad = tmp_path / "many.jsonl"
    bad.write_text("\n".join(lines[:3] + ["garbage"] * 5000 + lines[3:]))
    log = load_jsonl(bad)
    assert log.skipped_lines == 5000 and len(log.problems) <= 25
    assert log.problems[0] == "5000 lines skipped (5000 corrupt)"
    assert "... and 4980 more lines skipped" in log.problems


def test_an_oversized_line_is_skipped_without_reading_it_whole(lockup, tmp_path, monkeypatch):
    monkeypatch.setattr("stress.postmortem.log.MAX_LINE_BYTES", 20_000)
    lines = lockup.read_text().split("\n")
    lines.insert(4, '{"record": "' + "x" * 50_000 + '"}')
    bad = tmp_path / "big.jsonl"
    bad.write_text("\n".join(lines))
    log = load_jsonl(bad)
    assert "line 5: record longer than 20000 bytes skipped" in log.problems
    assert log.skipped_lines == 1 and len(log.events) == len(load_jsonl(lockup).events)


def test_a_log_with_more_events_than_anyone_writes_is_read_up_to_a_limit(lockup, tmp_path, monkeypatch):
    monkeypatch.setattr("stress.postmortem.log.MAX_EVENTS", 50)
    log = load_jsonl(lockup)
    assert len(log.events) == 50 and log.partial
    assert any("holds more than 50 events; the rest was not read" in p for p in log.problems)
    assert analyze(log).diagnosis.partial


def test_a_field_of_the_wrong_type_skips_only_its_record(lockup, tmp_path, capsys):
    recs = records(lockup)
    for r in recs:
        ex = r["record"]["extra"]
        if ex["event"] == "sched_sleep":
            ex["fields"]["lock_id"] = float("inf")  # written as Infinity
    p = tmp_path / "inf.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["postmortem", str(p)]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert "malformed sched_sleep record skipped (FieldError: lock_id is not an integer: inf)" in out


def test_the_text_header_names_where_the_log_came_from(lockup, tmp_path):
    recs = records(lockup)
    fields = recs[0]["record"]["extra"]["fields"]
    assert format_text(analyze(load_jsonl(lockup))).startswith(
        f"post-mortem of {lockup}: scenario mmap-sem-writer, seed 0, policy patch1, ")
    for key in ("scenario", "seed", "policy"):
        fields.pop(key)
    text = format_text(analyze(load_jsonl(write(tmp_path / "anon.jsonl", recs))))
    assert "a run that did not record its origin, policy not recorded" in text.splitlines()[0]
    assert "?" not in text.splitlines()[0]
    fields["seed"] = 12
    text = format_text(analyze(load_jsonl(write(tmp_path / "soak.jsonl", recs))))
    assert ": soak seed 12, " in text.splitlines()[0]


@pytest.mark.parametrize("verdict_fields", [
    {"outcome": "lockup", "chain": 5},
    {"outcome": "lockup", "victims": "101", "chain": [{"pid": 101, "waits_for": [100]}]},
    {"outcome": ["lockup"], "shape": {"x": 1}, "chain": [None, 3, {"pid": "x"}]},
])
def test_a_malformed_verdict_record_in_a_wrapped_log_is_read_as_far_as_it_goes(lockup, tmp_path, capsys,
                                                                              verdict_fields):
    recs = records(lockup)
    recs[0]["record"]["extra"]["fields"]["lost"] = 1  # the ring wrapped: the verdict record decides
    for r in recs:
        if r["record"]["extra"]["event"] == "verdict":
            r["record"]["extra"]["fields"] = verdict_fields
    path = write(tmp_path / "wrapped.jsonl", recs)
    assert main(["postmortem", str(path)]) == ExitStatus.OK
    assert "PARTIAL ANALYSIS" in capsys.readouterr().out
