"""Odd logs found in review: each gives a clear error or a partial analysis, never a traceback."""

import json
import os

import pytest

from kthreads import Kernel, VmaSpec
from stress import EpisodeConfig, get_scenario, run_episode
from stress.cli import ExitStatus, main
from stress.flight import LogError, dump_jsonl, load_jsonl
from stress.postmortem import analyze
from stress.timeline import render_html


@pytest.fixture(scope="module")
def lockup(tmp_path_factory):
    p = tmp_path_factory.mktemp("rb") / "lockup.jsonl"
    run_episode(get_scenario("mmap-sem-writer"), EpisodeConfig(policy="patch1"), log_path=str(p))
    return p


def records(path):
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


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
    run_episode(get_scenario("lockup-mutex"), EpisodeConfig(policy="none"), log_path=str(p))
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
