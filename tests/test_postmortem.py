"""postmortem: diagnosis from the log alone agrees with the model; bad logs; HTML."""

import html.parser
import json
import shutil
import struct
import subprocess
import zlib

import pytest

from kthreads import Completion, Kernel, Policy, RwSemaphore
from stress import SCENARIOS, SOAK_TIMING, EpisodeConfig, WorkloadDriver, WorkloadParams, get_scenario, run_episode
from stress.cli import ExitStatus, main
from stress.explain import wait_chain
from stress.outcomes import Outcome, Shape
from stress.postmortem import analyze, dump_jsonl, format_text, load_jsonl, render_html, replay
from stress.postmortem import wait_chain as postmortem_chain
from stress.scenarios import sleeps_on
from stress.sequencer import Sequencer
from stress.verdict import chain_from
from util import CONTROLLED, records, write

CASES = [(name, policy) for name in SCENARIOS for policy in Policy]


def verdict_of(log):
    return next(e.fields for e in log.events if e.name == "verdict")


def assert_agrees(log):
    a = analyze(log)
    v = verdict_of(log)
    d = a.diagnosis
    assert d.outcome == v["outcome"], (d.sentence, v)
    assert d.shape == v["shape"], (d.sentence, v)
    if "lockup" in d.outcome and v["chain"]:
        assert d.victims[0] in v["victims"]
        model_chain = [hop["pid"] for hop in v["chain"]]
        assert d.chain == model_chain, (d.sentence, v["chain"])
        assert d.locks == [hop["waits_on"] for hop in v["chain"] if hop.get("waits_for")]
        assert str(d.chain[0]) in d.sentence and f"aborted {a.oom_aborts} times" in d.sentence
    return a


@pytest.mark.parametrize("name, policy", CASES, ids=[f"{n}-{p.value}" for n, p in CASES])
def test_diagnosis_from_the_log_equals_the_models_verdict(name, policy, tmp_path):
    path = tmp_path / "e.jsonl"
    res = run_episode(get_scenario(name), EpisodeConfig(sched=CONTROLLED, policy=policy), log_path=str(path))
    a = assert_agrees(load_jsonl(path))
    assert a.diagnosis.outcome == res.outcome.value


def test_wording_per_shape(tmp_path):
    def diag(name, policy):
        p = tmp_path / f"{name}-{policy}.jsonl"
        run_episode(get_scenario(name), EpisodeConfig(sched=CONTROLLED, policy=policy), log_path=str(p))
        return analyze(load_jsonl(p)).diagnosis.sentence

    s = diag("lockup-mutex", "none")
    assert "has been in D state for" in s and "waiting for mutex inode_lock held by pid" in s
    assert "looped in the page allocator since" in s and "oom_reaper: not running" in s
    assert "held for write by pid" in diag("mmap-sem-writer", "none")
    assert "queued for write" in diag("mmap-sem-queued-writer", "none")
    assert "gave up on pid" in diag("mmap-sem-writer", "patch1")
    assert "mm_to_reap was busy" in diag("second-victim", "patch1")


def test_soak_episodes_agree_too(tmp_path):
    """Whatever each episode's outcome (real threads decide it), the log tells the same story."""
    for seed in range(40):
        for policy in Policy:
            path = tmp_path / f"seed{seed}-{policy.value}.jsonl"
            res = run_episode(WorkloadDriver.from_seed(seed, WorkloadParams()),
                              EpisodeConfig(sched=CONTROLLED, policy=policy, seed=seed, timing=SOAK_TIMING), log_path=path)
            log = load_jsonl(path)
            assert log.header["lockup_window"] == SOAK_TIMING.window
            assert format_text(analyze(log)).splitlines()[0].endswith(
                f"soak seed {seed}, policy {policy.value}, {len(log.events)} events, "
                f"{analyze(log).t_end:.3f} model seconds")
            assert_agrees(log)
            assert analyze(log).diagnosis.outcome == res.outcome


@pytest.fixture(scope="module")
def lockup_log(tmp_path_factory):
    p = tmp_path_factory.mktemp("pm") / "lockup.jsonl"
    run_episode(get_scenario("lockup-mutex"), EpisodeConfig(sched=CONTROLLED, policy="none"), log_path=str(p))
    return p


def test_a_truncated_log_gives_a_partial_analysis(lockup_log, tmp_path, capsys):
    data = lockup_log.read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert main(["postmortem", str(cut)]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert "PARTIAL ANALYSIS" in out and "truncated record skipped" in out


def test_garbage_in_the_middle_is_named_and_skipped(lockup_log, tmp_path, capsys):
    lines = lockup_log.read_text().splitlines()
    lines[5] = "{this is not json"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    assert main(["postmortem", str(bad)]) == ExitStatus.OK
    assert "line 6: corrupt record skipped" in capsys.readouterr().out


@pytest.mark.parametrize("content, needle", [
    (b"", "empty log"),
    (b"\x00\xff garbage\nmore", ":1: not a flight-recorder log"),
    (b'{"record": {"extra": {"event": "oom_kill", "t": 1, "seq": 0, "pid": 1, "comm": "x"}}}\n',
     "the first record is 'oom_kill', not the header"),
])
def test_unusable_logs_are_one_clear_error_and_exit_2(content, needle, tmp_path, capsys):
    p = tmp_path / "x.jsonl"
    p.write_bytes(content)
    assert main(["postmortem", str(p)]) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_a_missing_log_is_an_error(capsys):
    assert main(["postmortem", "/nonexistent/x.jsonl"]) == ExitStatus.USAGE
    assert "cannot read" in capsys.readouterr().err


class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_html_structure(lockup_log):
    a = analyze(load_jsonl(lockup_log))
    page = render_html(a)
    p = _Collect()
    p.feed(page)
    rows = [at for tag, at in p.tags if tag == "g" and at.get("class") == "row"]
    assert {int(r["data-pid"]) for r in rows} == set(a.tracks)
    classes = [at.get("class", "") for _, at in p.tags]
    assert any(c == "marker marker-oom_kill" for c in classes)
    assert any(c == "marker marker-hung_task" for c in classes)
    assert any(c == "marker marker-verdict" for c in classes)
    assert any(c == "hold" for c in classes) and any(c == "state state-D" for c in classes)
    assert a.diagnosis.sentence in "".join(p.text)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in page


def png_pixels_vary(png: bytes) -> bool:
    """Decode an 8-bit RGB(A) PNG enough to tell a blank page from a drawn one."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, _, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp + 1
    # Filtered rows still differ from each other when the picture has content.
    rows = {raw[i + 1:i + stride] for i in range(0, len(raw), stride)}
    return len(rows) > 10


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (.ci/run installs it)")
def test_html_renders_in_headless_chromium(lockup_log, tmp_path):
    a = analyze(load_jsonl(lockup_log))
    page = tmp_path / "t.html"
    page.write_text(render_html(a))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=60).stdout
    assert 'id="diagnosis"' in dom and a.diagnosis.sentence.split(";")[0] in dom
    assert dom.count('class="row"') == len(a.tracks) and "marker-oom_kill" in dom
    shot = tmp_path / "t.png"
    subprocess.run(["chromium", *flags, "--window-size=1200,700", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=60)
    assert shot.exists() and png_pixels_vary(shot.read_bytes())


def test_a_chain_longer_than_one_lock_is_told_hop_by_hop(tmp_path):
    """victim -> lock_a (held by middle) -> lock_b (held by writer, looping in the allocator)."""
    from kthreads import GFP_KERNEL, Completion, Kernel, Mutex, VmaSpec, alloc_pages
    from stress.postmortem import dump_jsonl
    from stress.lockup_report import record_verdict
    from stress.outcomes import Outcome
    from stress.verdict import classify, lockup_shape

    k = Kernel(nr_pages=1024, hung_task_timeout=1)
    try:
        a, b, go = Mutex("lock_a", k), Mutex("lock_b", k), Completion()

        def writer(t):
            with b:
                go.wait_for_completion()
                alloc_pages(GFP_KERNEL)

        def middle(t):
            with a:
                with b:
                    pass

        def victim(t):
            with a:
                pass

        w = k.fork("writer", writer, vmas=[VmaSpec(pages=20)])
        assert k.wait_until(lambda: b.owner is w, 2)
        m = k.fork("middle", middle, vmas=[VmaSpec(pages=20)])
        assert k.wait_until(lambda: m.wchan is b, 2)
        v = k.fork("victim", victim, vmas=[VmaSpec(pages=950)])
        assert k.wait_until(lambda: v.wchan is a, 2)
        go.complete()
        users = [w, m, v]
        assert k.wait_until(lambda: v.tif_memdie and k.stats.oom_aborts > 5 and k.hung_tasks, 5)
        assert k.wait_until(lambda: classify(k, users, 1.0) is Outcome.LOCKUP, 5)
        record_verdict(k, Outcome.LOCKUP, lockup_shape(k), "")
    finally:
        k.shutdown()
    log = load_jsonl(dump_jsonl(k, tmp_path / "chain.jsonl", {}))
    d = assert_agrees(log).diagnosis
    assert d.chain == [v.pid, m.pid, w.pid] and d.locks == ["lock_a", "lock_b"]
    assert (f"waiting for mutex lock_a held by pid {m.pid} (middle), which waits for mutex lock_b "
            f"held by pid {w.pid} (writer), which has looped in the page allocator") in d.sentence


def name_of(record):
    return record["record"]["extra"]["event"]


@pytest.fixture(scope="module")
def recovered_log(tmp_path_factory):
    p = tmp_path_factory.mktemp("pm") / "recovered.jsonl"
    res = run_episode(get_scenario("lockup-mutex"), EpisodeConfig(sched=CONTROLLED, policy="patch1"), log_path=str(p))
    assert res.outcome is Outcome.RECOVERED_BY_REAPER
    return p


@pytest.mark.parametrize("cut_after", ["oom_kill", "finish_task_reaping"])
def test_a_truncated_log_of_a_recovered_run_is_undetermined_not_a_lockup(recovered_log, tmp_path, capsys,
                                                                          cut_after):
    """Cut where the victim still sleeps in D on inode_lock: tasks are alive,
    but nothing shows a lockup (no hung task, no stall as long as the window)."""
    recs = records(recovered_log)
    end = next(i for i, r in enumerate(recs) if name_of(r) == cut_after)
    cut = write(tmp_path / "cut.jsonl", recs[:end + 1])
    d = analyze(load_jsonl(cut)).diagnosis
    assert d.outcome is Outcome.UNDETERMINED and d.shape is None and d.partial
    assert d.sentence.startswith("the log ends at ") and "tasks alive" in d.sentence
    assert "no lockup evidence" in d.sentence and "pid 101 (victim) in D on inode_lock" in d.sentence
    assert f"the last event: {cut_after} of pid 101 (victim)" in d.sentence
    assert any("events missing at the end" in p for p in d.problems)
    assert main(["postmortem", str(cut)]) == ExitStatus.OK
    assert "outcome: undetermined\ndiagnosis: the log ends at" in capsys.readouterr().out


def test_a_lockup_log_without_its_verdict_is_a_lockup_from_its_events_alone(lockup_log, tmp_path):
    recs = [r for r in records(lockup_log) if name_of(r) not in ("verdict", "lockup_report")]
    d = analyze(load_jsonl(write(tmp_path / "noverdict.jsonl", recs))).diagnosis
    full = analyze(load_jsonl(lockup_log)).diagnosis
    assert (d.outcome, d.shape, d.chain) == (Outcome.LOCKUP, Shape.MUTEX, full.chain)


def test_without_a_hung_task_report_a_stall_is_undetermined(lockup_log, tmp_path):
    recs = [r for r in records(lockup_log) if name_of(r) != "hung_task"]
    d = analyze(load_jsonl(write(tmp_path / "nohung.jsonl", recs))).diagnosis
    assert d.outcome is Outcome.UNDETERMINED
    assert "no lockup evidence: no hung-task report for a task still in D" in d.sentence


def test_a_stall_shorter_than_the_headers_lockup_window_is_undetermined(lockup_log, tmp_path):
    recs = records(lockup_log)
    recs[0]["record"]["extra"]["fields"]["lockup_window"] = 1000
    d = analyze(load_jsonl(write(tmp_path / "window.jsonl", recs))).diagnosis
    assert d.outcome is Outcome.UNDETERMINED and "less than the 1000 s lockup window" in d.sentence


@pytest.mark.parametrize("holder", ["harness", "task"])
def test_a_reader_behind_a_queued_writer_waits_for_that_writer(holder, tmp_path):
    """Both walkers (the model's and the log's) go reader -> queued writer -> holders."""
    k = Kernel(nr_pages=256)
    try:
        seq = Sequencer(k)
        sem, done = RwSemaphore("sem", k), Completion("done")

        def hold_for_read(t):
            with sem.read():
                done.wait_for_completion_killable()

        if holder == "harness":
            sem.down_read()  # a holder the log cannot see: the rwsem has no task holding it
            holders = []
        else:
            h = k.fork("holder", hold_for_read)
            seq.until("holder holds sem for read", lambda: h in sem.readers())
            holders = [h.pid]
        w = k.fork("writer", lambda t: sem.down_write() or sem.up_write())
        seq.until("writer queues", sleeps_on(w, sem))
        r = k.fork("reader", lambda t: sem.down_read() or sem.up_read())
        seq.until("reader queues behind it", sleeps_on(r, sem))
        model = [hop["pid"] for hop in chain_from(k, r)]
        text = wait_chain(k, r)
        log = load_jsonl(dump_jsonl(k, tmp_path / "rwsem.jsonl", {}))
        replayed = replay(log)
        tasks, locks, hops = postmortem_chain(replayed, replayed.tracks[r.pid])
        assert model == [t.pid for t in tasks] == [r.pid, w.pid, *holders]
        assert [lk.name for lk in locks] == ["sem"] * (1 + len(holders))
        assert f"behind pid {w.pid} (writer) queued for write" in hops
        assert f"on rw_semaphore sem behind writer (pid {w.pid}), queued for write" in text
        if holder == "harness":
            sem.up_read()
        done.complete_all()
        seq.until("everybody exited", lambda: all(t.state_letter == "X" for t in k.tasks() if not t.is_kthread))
    finally:
        k.shutdown()


def test_aborts_counted_by_a_looping_allocator_are_counted_here_too(lockup_log):
    """The allocator's retry loop records its OOM aborts as counts (alloc_retry)."""
    log = load_jsonl(lockup_log)
    a = analyze(log)
    recorded = sum(1 for e in log.events if e.name == "oom_abort")
    report = next(e for e in log.events if e.name == "lockup_report")
    assert recorded < a.oom_aborts <= report.fields["oom_aborts"]
    assert f"the OOM killer aborted {a.oom_aborts} times" in a.diagnosis.sentence
