"""khungtaskd as Linux 4.6 has it: one check per hung_task_timeout, a task
reported when its switch count did not move between two checks (one to two
timeouts after it went to sleep), again at every later check, with its own
locks; ten printed reports a boot, the event recorded at every check.

Every timing test runs on the controlled CPU: model time is virtual and
moves only to the next timer, so each check happens at exactly k x timeout.
"""

import gc
import sys

import pytest

from kthreads import (Completion, Ev, Kernel, Mutex, model_call_traces, sched_show_task,
                      schedule_timeout_uninterruptible)
from kthreads import hung_task
from kthreads.hung_task import HUNG_TASK_WARNINGS, UTS_VERSION
from kthreads.lockdep import debug_show_held_locks
from kthreads.stacktrace import kernel_call_trace, print_trace
from util import CONTROLLED, park_killable, park_uninterruptible

T = 2.0  # hung_task_timeout, model seconds
EPS = 1e-6  # float slack on virtual model time


def controlled_kernel(boot, **kw) -> Kernel:
    return boot(sched=CONTROLLED, hung_task_timeout=T, **kw)


def run_to(k: Kernel, model_seconds: float) -> None:
    """Let virtual time pass until ``model_seconds`` (every timer on the way fires)."""
    assert k.wait_until(lambda: k.clock.now() >= model_seconds - EPS, 10 * model_seconds / k.clock.speed,
                        idle_ok=True)


def after_check(k: Kernel, n: int) -> None:
    """Run until khungtaskd has completed its ``n``-th check."""
    state = k.khungtaskd
    assert k.wait_until(lambda: state.checks >= n, 10 * (n + 1) * T / k.clock.speed, idle_ok=True)


def hung_events(k: Kernel, pid: int) -> list[float]:
    return [e.t for e in k.tracer.events() if e.name == Ev.HUNG_TASK and e.pid == pid]


def reports(k: Kernel, comm: str, pid: int) -> int:
    return sum(line.text == f"INFO: task {comm}:{pid} blocked for more than {int(T)} seconds."
               for line in k.dmesg())


def test_a_task_is_reported_one_to_two_timeouts_after_it_sleeps_never_sooner(boot):
    """Checks come at T, 2T, 3T...; a task is reported at the second check
    after it entered D, whatever its phase against khungtaskd's cadence."""
    k = controlled_kernel(boot)
    never = Completion()
    entered: dict[int, float] = {}
    tasks = []
    for phase in (0.0, 0.25 * T, 0.99 * T, 1.5 * T):  # model seconds at which each one sleeps
        run_to(k, phase)
        t = k.fork(f"d{len(tasks)}", park_uninterruptible(never))
        assert k.wait_until(lambda: t.state_letter == "D", 1)
        entered[t.pid] = k.clock.now()
        tasks.append(t)
    after_check(k, 4)
    for t in tasks:
        first = hung_events(k, t.pid)[0]
        waited = first - entered[t.pid]
        assert T - EPS <= waited <= 2 * T + EPS, (t.comm, entered[t.pid], first)
        assert first == pytest.approx(round(first / T) * T)  # at a check, on the cadence
        assert k.hung_tasks[t.pid] == pytest.approx(first)
    # The first check after a task went to sleep only noted its switch count.
    late = tasks[-1]  # asleep at 1.5 T: the check at 2 T saw it first, the one at 3 T reported it
    assert hung_events(k, late.pid)[0] == pytest.approx(3 * T)
    never.complete_all()


def test_khungtaskd_checks_once_per_timeout(boot):
    k = controlled_kernel(boot)
    never = Completion()
    t = k.fork("stuck", park_uninterruptible(never))
    after_check(k, 5)
    assert hung_events(k, t.pid) == pytest.approx([2 * T, 3 * T, 4 * T, 5 * T])
    assert k.khungtaskd.last_checked == pytest.approx(5 * T)
    never.complete_all()


def test_the_report_repeats_at_every_check_while_the_task_stays_hung(boot):
    k = controlled_kernel(boot)
    never = Completion()
    t = k.fork("stuck", park_uninterruptible(never))
    after_check(k, 2)
    assert reports(k, "stuck", t.pid) == 1
    after_check(k, 4)
    assert reports(k, "stuck", t.pid) == 3  # at 2T, 3T and 4T: 4.6 remembers nothing it reported
    assert len(hung_events(k, t.pid)) == 3
    assert k.hung_tasks[t.pid] == pytest.approx(2 * T)  # the lab's map keeps the first report
    assert k.khungtaskd.warnings_left == HUNG_TASK_WARNINGS - 3
    # Woken, the task leaves the map at the next check.
    never.complete_all()
    assert k.wait_until(lambda: t.state_letter == "X", 1)
    after_check(k, 5)
    assert t.pid not in k.hung_tasks


def test_a_task_whose_switch_count_moves_between_checks_is_never_reported(boot):
    """Asleep in D nearly all the time, but woken every T/2: its count moves
    between any two checks, so it is not hung."""
    k = controlled_kernel(boot)
    stop = []

    def napper(task):
        while not stop:
            schedule_timeout_uninterruptible(T / 2 * k.clock.hz)

    t = k.fork("napper", napper)
    after_check(k, 4)
    assert t.state_letter == "D" and t.pid not in k.hung_tasks and hung_events(k, t.pid) == []
    stop.append(True)
    assert k.wait_until(lambda: t.state_letter == "X", 1)


def test_a_report_shows_the_hung_tasks_own_locks_not_everyones(boot, monkeypatch):
    k = controlled_kernel(boot)
    never, other = Completion(), Completion()
    inode_lock, idle_lock = Mutex("inode_lock", k), Mutex("idle_lock", k)
    dumped: list[int] = []
    real = hung_task.debug_show_held_locks

    def spy(task):
        dumped.append(task.pid)
        return real(task)

    monkeypatch.setattr(hung_task, "debug_show_held_locks", spy)

    def holds_and_sleeps(task):
        with inode_lock:
            never.wait_for_completion()

    def holds_and_sleeps_killably(task):
        with idle_lock:
            other.wait_killable()

    d = k.fork("stuck", holds_and_sleeps)
    bare = k.fork("bare", park_uninterruptible(never))
    kl = k.fork("killable", holds_and_sleeps_killably)
    after_check(k, 2)
    assert dumped == [d.pid, bare.pid]  # once per report, for the reported task only
    text = [line.text for line in k.dmesg()]
    i = text.index(f"INFO: task stuck:{d.pid} blocked for more than {int(T)} seconds.")
    assert text[i + 1] == f"      Not tainted {k.policy_ops.release} {UTS_VERSION}" == "      Not tainted 4.5.0+ #1"
    assert text[i + 2] == '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.'
    assert text[i + 3].startswith("stuck           D")
    own = debug_show_held_locks(d)
    assert own[0] == f"1 lock held by stuck/{d.pid}:" and own[1].startswith(" #0:  (inode_lock){+.+.+.}, at: ")
    j = text.index(own[0], i)
    assert text[j:j + len(own)] == own
    assert f"no locks held by bare/{bare.pid}." in text
    # Not the killable sleeper's lock, and no system-wide dump.
    assert not any("idle_lock" in line or f"killable/{kl.pid}" in line for line in text)
    assert "Showing all locks held in the system:" not in text
    never.complete_all()
    other.complete_all()


def test_only_uninterruptible_sleepers_are_reported(boot):
    k = controlled_kernel(boot)
    never = Completion()
    d = k.fork("stuck", park_uninterruptible(never))
    kl = k.fork("killable", park_killable(never))
    after_check(k, 3)
    assert d.pid in k.hung_tasks
    # A TASK_KILLABLE sleeper is not TASK_UNINTERRUPTIBLE: never reported.
    assert kl.pid not in k.hung_tasks and hung_events(k, kl.pid) == []
    e = next(e for e in k.tracer.events() if e.name == Ev.HUNG_TASK)
    assert e.pid == d.pid and e.fields["wchan_kind"] == "completion" and e.fields["seconds"] == int(T)
    assert e.fields["blocked_since"] == pytest.approx(T)  # the check that noted its count
    never.complete_all()


def test_nothing_is_printed_once_the_ten_warnings_are_used_but_the_event_still_fires(boot):
    """sysctl_hung_task_warnings: ten reports a boot, then silence; every
    check still fires the tracepoint for every hung task."""
    k = controlled_kernel(boot)
    state = k.khungtaskd
    never = Completion()
    first = [k.fork(f"d{i}", park_uninterruptible(never)) for i in range(4)]
    after_check(k, 2)  # the check at 2T reports all four
    after_check(k, 3)  # and the one at 3T all four again: 8 printed
    assert state.warnings_left == HUNG_TASK_WARNINGS - 8
    late = k.fork("late", park_uninterruptible(never))
    after_check(k, 4)  # two of the four printed, the other two silent; late only noted
    assert state.warnings_left == 0
    printed = len(k.dmesg())
    assert sum("blocked for more than" in line.text for line in k.dmesg()) == HUNG_TASK_WARNINGS
    assert [reports(k, t.comm, t.pid) for t in first] == [3, 3, 2, 2]
    after_check(k, 6)
    assert len(k.dmesg()) == printed  # no report and no lock dump any more
    assert late.pid in k.hung_tasks and reports(k, "late", late.pid) == 0
    assert [len(hung_events(k, t.pid)) for t in first] == [5, 5, 5, 5]  # at 2T..6T
    assert hung_events(k, late.pid) == pytest.approx([5 * T, 6 * T])
    never.complete_all()


def test_a_dead_machine_reports_nothing():
    """test_taint(TAINT_DIE): after an oops khungtaskd checks nothing."""
    k = Kernel(sched=CONTROLLED, hung_task_timeout=T)
    never = Completion()

    def oops(task):
        raise RuntimeError("a broken body")

    try:
        t = k.fork("stuck", park_uninterruptible(never))
        after_check(k, 1)
        k.fork("oops", oops)
        assert k.wait_until(lambda: k.oopses, 1)
        after_check(k, 4)
        assert t.pid not in k.hung_tasks and hung_events(k, t.pid) == []
        assert "blocked for more than" not in k.dmesg_text()
        never.complete_all()
    finally:
        report = k.shutdown()
    assert report.clean, report.format()
    problems = k.check_quiescent()
    assert len(problems) == 1 and problems[0].startswith("oops: oops/") and "a broken body" in problems[0]


def test_timeout_zero_disables_khungtaskd(boot):
    k = boot(hung_task_timeout=0)
    assert k.khungtaskd is None and dict(k.hung_tasks) == {}
    assert not any(t.is_kthread for t in k.tasks())


def test_there_is_no_separate_check_interval_knob():
    """Linux 4.6 checks once per hung_task_timeout; the later kernels'
    hung_task_check_interval_secs is not a knob of this lab."""
    with pytest.raises(TypeError, match="hung_task_check_interval"):
        Kernel(hung_task_check_interval=0.5)


def test_in_free_mode_a_hang_is_reported_too(boot):
    """The free mode runs the same loop on real time: assert only what holds
    whatever the OS does (a report comes, never before one timeout)."""
    k = boot(hung_task_timeout=1.0)
    never = Completion()
    d = k.fork("stuck", park_uninterruptible(never))
    assert k.wait_until(lambda: d.pid in k.hung_tasks, 5)
    assert k.hung_tasks[d.pid] >= 1.0
    assert f"INFO: task stuck:{d.pid} blocked for more than 1 seconds." in [line.text for line in k.dmesg()]
    never.complete_all()


def test_call_traces_come_from_one_read_with_the_collector_paused(boot, monkeypatch):
    k = boot(hung_task_timeout=0)
    never = Completion()
    tasks = [k.fork(f"d{i}", park_uninterruptible(never)) for i in range(3)]
    assert k.wait_until(lambda: all(t.state_letter == "D" for t in tasks), 2)
    reads: list[bool] = []
    real = sys._current_frames

    def spy():
        reads.append(gc.isenabled())
        return real()

    monkeypatch.setattr(sys, "_current_frames", spy)
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            traces = model_call_traces(tasks)
            assert gc.isenabled() is enabled  # the previous state is restored
        finally:
            gc.enable()
    assert reads == [False, False]  # one read per call, never with the collector on
    for t in tasks:
        # "Completion.wait_for_completion+N" (3.11+) or "wait_for_completion+N" (3.10).
        assert any(f.split("+")[0].rsplit(".", 1)[-1] == "wait_for_completion" for f in traces[t.pid].lab_trace())
        # sched_show_task prints from the stack it is given: no other read.
        lines = sched_show_task(t, traces[t.pid])
        assert lines[2:] == print_trace(kernel_call_trace(t, traces[t.pid]))
    assert reads == [False, False]
    never.complete_all()
