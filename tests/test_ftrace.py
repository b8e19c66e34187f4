"""The ftrace view: the kernel's text format, the current task in the first
column, and nothing 4.6 did not have."""

import io
import json
import re

import pytest

from kthreads import Policy, SchedConfig
from stress import SCENARIOS, get_scenario
from stress.cli import main
from stress.cli.parser import ExitStatus
from stress.episode import EpisodeConfig, run_episode
from stress.ftrace import TraceInput, ftrace_lines, prev_state, stamp, task_column, write_ftrace
from stress.postmortem import load_jsonl

from util import CONTROLLED

#: The TP_printk formats of the events a 4.6 trace holds, as the kernel's
#: include/trace/events/*.h have them.
TP_PRINTK = {
    "sched_switch": "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d "
                    "next_prio=%d",
    "sched_wakeup": "comm=%s pid=%d prio=%d target_cpu=%03d",
    "sched_process_exit": "comm=%s pid=%d prio=%d",
    "sched_process_hang": "comm=%s pid=%d",
    "task_newtask": "pid=%d comm=%s clone_flags=%lx oom_score_adj=%hd",
    "signal_generate": "sig=%d errno=%d code=%d comm=%s pid=%d grp=%d res=%d",
    "console": "%s",
}
#: 4.13's oom tracepoints (include/trace/events/oom.h), which a design with
#: ``oom_reaper_tracepoints`` (v4.14 on) prints; each is "pid=%d".
TP_PRINTK.update({name: "pid=%d" for name in ("mark_victim", "wake_reaper", "start_task_reaping",
                                              "finish_task_reaping", "skip_task_reaping")})
#: ftrace's context, trace_print_context() with irq-info: "%16s-%-5d [%03d] " then
#: the four latency flags, then " %5lu.%06lu: ".
CONTEXT = re.compile(r"^(?P<comm>[ \S]{16})-(?P<pid>\d+) *\[(?P<cpu>\d{3})\] (?P<flags>[.dXNnHhs0-9]{4}) "
                     r"(?P<secs>[ \d]{5,})\.(?P<us>\d{6}): (?P<event>\w+): (?P<args>.*)$")
HEADER = [
    "# tracer: nop",
    "#",
    None,  # entries-in-buffer/entries-written
    "#",
    "#                              _-----=> irqs-off",
    "#                             / _----=> need-resched",
    "#                            | / _---=> hardirq/softirq",
    "#                            || / _--=> preempt-depth",
    "#                            ||| /     delay",
    "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION",
    "#              | |       |   ||||       |         |",
]


def printk_regex(fmt: str) -> re.Pattern[str]:
    """A TP_printk format as a regex: each conversion matches what printf prints for it."""
    conv = {"%s": r"\S*", "%d": r"-?\d+", "%hd": r"-?\d+", "%03d": r"\d{3}", "%lx": r"[0-9a-f]+"}
    out, i = "", 0
    for m in re.finditer(r"%(?:03d|hd|lx|d|s)", fmt):
        out += re.escape(fmt[i:m.start()]) + conv[m.group(0)]
        i = m.end()
    out += re.escape(fmt[i:])
    if fmt == "%s":
        out = r".*"
    return re.compile(f"^{out}$")


FORMATS = {name: printk_regex(fmt) for name, fmt in TP_PRINTK.items()}


def trace_of(name, policy, sched=CONTROLLED):
    res = run_episode(get_scenario(name), EpisodeConfig(sched=sched, policy=policy))
    return res, ftrace_lines(TraceInput.from_kernel(res.kernel))


def parsed(lines):
    out = []
    for line in lines:
        m = CONTEXT.match(line)
        assert m, f"not ftrace's format: {line!r}"
        out.append(m)
    return out


CASES = [(name, policy) for name in SCENARIOS for policy in Policy]


@pytest.mark.parametrize("name, policy", CASES, ids=[f"{n}-{p.value}" for n, p in CASES])
def test_every_line_has_ftraces_context_and_its_events_tp_printk_format(name, policy):
    res, lines = trace_of(name, policy)
    assert lines
    for m in parsed(lines):
        event, args = m.group("event"), m.group("args")
        assert event in FORMATS, f"{event} is not a 4.6 tracepoint the lab prints"
        assert FORMATS[event].match(args), (event, args)
        assert m.group("flags") == "...." and m.group("cpu") == "000"
        assert len(m.group("comm").lstrip()) <= 15  # TASK_COMM_LEN, with its NUL


@pytest.mark.parametrize("name, policy", CASES, ids=[f"{n}-{p.value}" for n, p in CASES])
def test_the_first_column_is_always_the_task_the_switches_say_is_running(name, policy):
    """On the controlled uniprocessor each switch hands the CPU from its prev to its
    next: every line in between fired on next's behalf, and the next switch's prev is it."""
    _, lines = trace_of(name, policy)
    running = None
    for m in parsed(lines):
        pid = int(m.group("pid"))
        if running is not None:
            assert pid == running, m.group(0)
        if m.group("event") == "sched_switch":
            fields = dict(kv.split("=", 1) for kv in m.group("args").replace(" ==> ", " ").split())
            assert int(fields["prev_pid"]) == pid
            running = int(fields["next_pid"])


def test_the_current_task_fires_the_event_not_the_task_it_is_about():
    res, lines = trace_of("lockup-mutex", Policy.NONE)
    w, v = res.roles["writer"], res.roles["victim"]
    kill = next(line for line in lines if ": signal_generate: " in line)
    assert task_column("writer", w) in kill and f"comm=victim pid={v} " in kill  # the OOM killer runs in writer
    hang = next(line for line in lines if ": sched_process_hang: " in line)
    assert hang.lstrip().startswith("khungtaskd-") and hang.endswith(f"comm=victim pid={v}")
    console = [line for line in lines if ": console: " in line]
    assert any("Out of memory: Kill process" in line and task_column("writer", w) in line for line in console)


def test_46_trees_have_no_oom_reaper_tracepoint_and_the_lab_events_never_appear():
    res, lines = trace_of("lockup-mutex", Policy.PATCH1)
    text = "\n".join(lines)
    for name in ("mark_victim", "wake_reaper", "start_task_reaping", "finish_task_reaping",
                 "skip_task_reaping", "reap_dropped", "reap_failed", "hung_task", "oom_reap_forbidden", "lab"):
        assert f": {name}: " not in text
    # The reaper still shows: it is switched in after the kill, and nothing else says why.
    assert re.search(r"==> next_comm=oom_reaper next_pid=\d+", text)


def test_a_policy_whose_tree_had_the_413_tracepoints_prints_them_as_pid_only(monkeypatch):
    from kthreads.designs import Patch1Ops

    res = run_episode(get_scenario("lockup-mutex"), EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1))
    monkeypatch.setattr(Patch1Ops, "oom_reaper_tracepoints", True)
    lines = ftrace_lines(TraceInput.from_kernel(res.kernel))
    v = res.roles["victim"]
    marks = [line for line in lines if ": mark_victim: " in line]
    assert marks and all(line.endswith(f": mark_victim: pid={v}") for line in marks)
    start = next(line for line in lines if ": start_task_reaping: " in line)
    assert start.lstrip().startswith("oom_reaper-") and start.endswith(f"pid={v}")


def test_the_file_has_ftraces_header_and_counts_its_lines(tmp_path):
    res = run_episode(get_scenario("mmap-sem-writer"), EpisodeConfig(sched=CONTROLLED, policy=Policy.PATCH1))
    path = tmp_path / "trace"
    with open(path, "w") as f:
        n = write_ftrace(TraceInput.from_kernel(res.kernel), f)
    lines = path.read_text().splitlines()
    for want, got in zip(HEADER, lines):
        if want is not None:
            assert got == want
    assert lines[2] == f"# entries-in-buffer/entries-written: {n}/{n}   #P:1"
    body = [line for line in lines if not line.startswith("#")]
    assert len(body) == n and all(CONTEXT.match(line) for line in body)
    notes = [line for line in lines[len(HEADER):] if line.startswith("#")]
    assert notes and all(line.startswith("# lab: ") for line in notes)  # the lab's, marked


def test_a_free_run_has_no_switches_and_says_so():
    res, lines = trace_of("lockup-mutex", Policy.PATCH1, sched=SchedConfig())
    assert not any(": sched_switch: " in line or ": sched_wakeup: " in line for line in lines)
    assert any(": signal_generate: " in line for line in lines)
    buf = io.StringIO()
    write_ftrace(TraceInput.from_kernel(res.kernel), buf)
    assert "# lab: a free run (real threads): no sched_switch or sched_wakeup was recorded" in buf.getvalue()


@pytest.mark.parametrize("state, text", [(0, "R"), (1, "S"), (2, "D"), (0x82, "D|K"), (0x402, "D|N"),
                                         (0x40, "x"), (0x800, "R+"), (0x10, "Z")])
def test_prev_state_prints_as_46s_print_flags(state, text):
    assert prev_state(state) == text


def test_context_columns():
    assert task_column("writer", 100) == "          writer-100  "
    assert task_column("a-very-long-command-name", 7) == " a-very-long-com-7    "  # 15 + NUL
    assert stamp(12.5) == "   12.500000" and stamp(0.0000014) == "    0.000001"


def test_run_and_postmortem_write_the_same_trace(tmp_path, capsys):
    log, a, b = tmp_path / "l.jsonl", tmp_path / "a.trace", tmp_path / "b.trace"
    assert main(["run", "lockup-mutex", "--policy", "patch1", "--sched", "pct", "-q",
                 "--log", str(log), "--ftrace", str(a)]) == ExitStatus.OK
    assert main(["postmortem", str(log), "--ftrace", str(b)]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert f"trace written to {a}" in out and f"trace written to {b}" in out
    assert a.read_text() == b.read_text()
    assert "sched_switch" in a.read_text()
    assert load_jsonl(log).sched  # the switches travel in the log


def test_a_log_without_positions_is_refused_in_one_line(tmp_path, capsys):
    log = tmp_path / "l.jsonl"
    assert main(["run", "lockup-mutex", "--policy", "none", "--sched", "pct", "-q", "--log", str(log)]) == 0
    old = tmp_path / "old.jsonl"
    lines = []
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        rec["record"]["extra"].pop("pos", None)  # as format 1 wrote them
        lines.append(json.dumps(rec))
    old.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    rc = main(["postmortem", str(old), "--ftrace", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == ExitStatus.USAGE and len(err.strip().splitlines()) == 1
    assert "no event positions" in err and not (tmp_path / "t").exists()


def test_bad_ftrace_paths_are_usage_errors(tmp_path, capsys):
    log = tmp_path / "l.jsonl"
    rc = main(["run", "lockup-mutex", "-q", "--log", str(log), "--ftrace", str(log)])
    assert rc == ExitStatus.USAGE and "name the same file" in capsys.readouterr().err
    rc = main(["run", "lockup-mutex", "-q", "--ftrace", str(tmp_path / "no" / "such" / "dir" / "t")])
    assert rc == ExitStatus.USAGE and "no such directory" in capsys.readouterr().err
    assert main(["run", "lockup-mutex", "--policy", "none", "--sched", "pct", "-q", "--log", str(log)]) == 0
    rc = main(["postmortem", str(log), "--ftrace", str(log)])
    assert rc == ExitStatus.USAGE and "would overwrite the input" in capsys.readouterr().err


@pytest.mark.parametrize("name, policy", [("lockup-mutex", Policy.NONE), ("second-victim", Policy.PATCH1)])
def test_a_task_runs_only_after_a_switch_to_it_and_time_passes_only_on_the_idle_task(name, policy):
    """Every stretch of a task on the CPU begins with a switch to it, and a
    timer's wake-up (from <idle>) fires only while the idle task runs."""
    _, lines = trace_of(name, policy)
    running, last_t = None, 0.0
    for m in parsed(lines):
        t = int(m.group("secs")) + int(m.group("us")) / 1e6
        assert t >= last_t  # time never goes back
        last_t = t
        args = m.group("args")
        if m.group("event") == "sched_switch":
            fields = dict(kv.split("=", 1) for kv in args.replace(" ==> ", " ").split())
            assert fields["prev_pid"] != fields["next_pid"]  # no switch from a task to itself
            running = int(fields["next_pid"])
        elif m.group("event") == "sched_wakeup" and int(m.group("pid")) == 0:
            assert running in (None, 0), m.group(0)


def test_a_task_napping_in_task_running_is_never_woken():
    """Direct reclaim's nap is TASK_RUNNING: try_to_wake_up traces nothing for
    it, so a looping allocator shows no stream of wake-ups."""
    res, lines = trace_of("lockup-mutex", Policy.NONE)
    w = res.roles["writer"]
    wakes = [line for line in lines if ": sched_wakeup: " in line and f" pid={w} " in line]
    naps = res.counters["oom_aborts"]
    assert naps > 100 and len(wakes) < 10


def test_task_newtask_prints_the_parents_comm():
    _, lines = trace_of("mmap-sem-writer", Policy.PATCH1)
    news = [line for line in lines if ": task_newtask: " in line]
    assert any("comm=kthreadd " in line and "clone_flags=800711" in line for line in news)  # oom_reaper
    thread = next(line for line in news if "clone_flags=3d0f00" in line)
    assert "comm=victim " in thread  # mmapper, a thread of victim, before it was named


def test_a_partial_log_says_its_switches_are_missing(tmp_path, capsys):
    log = tmp_path / "l.jsonl"
    assert main(["run", "lockup-mutex", "--policy", "none", "--sched", "pct", "-q", "--log", str(log)]) == 0
    lines = log.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(line for line in lines if '"sched_records"' not in line or line is lines[0]) + "\n")
    out = tmp_path / "t"
    assert main(["postmortem", str(cut), "--ftrace", str(out)]) == ExitStatus.OK
    text = out.read_text()
    assert "scheduler records are missing from the log (it is partial)" in text
    assert ": sched_switch: " not in text
