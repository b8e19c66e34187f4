"""khungtaskd: reports TASK_UNINTERRUPTIBLE tasks that have not run for hung_task_timeout."""

import gc
import sys

from kthreads import Completion, Ev, model_call_traces, sched_show_task
from util import park_killable, park_uninterruptible


def test_only_uninterruptible_sleepers_are_reported_after_the_timeout(boot):
    k = boot(hung_task_timeout=1.0)
    never = Completion()
    d = k.fork("stuck", park_uninterruptible(never))
    kl = k.fork("killable", park_killable(never))
    assert k.wait_until(lambda: d.pid in k.hung_tasks, 3)
    reported_at = k.hung_tasks[d.pid]
    assert reported_at >= 1.0  # not before the timeout (model seconds)
    text = [line.text for line in k.dmesg()]
    assert f"INFO: task stuck:{d.pid} blocked for more than 1 seconds." in text
    assert '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.' in text
    assert any(t.startswith("stuck           D") for t in text)
    assert "Showing all locks held in the system:" in text
    # A TASK_KILLABLE sleeper is not TASK_UNINTERRUPTIBLE: never reported.
    assert kl.pid not in k.hung_tasks
    events = [e for e in k.tracer.events() if e.name == Ev.HUNG_TASK]
    assert events[0].pid == d.pid and events[0].fields["wchan_kind"] == "completion"
    never.complete_all()


def test_timeout_zero_disables_khungtaskd(boot):
    k = boot(hung_task_timeout=0)
    assert k.khungtaskd is None and dict(k.hung_tasks) == {}
    assert not any(t.is_kthread for t in k.tasks())


def test_nothing_is_printed_once_the_ten_warnings_are_used(boot):
    """sysctl_hung_task_warnings: ten reports per boot, then silence (the
    hung_task event is still recorded)."""
    k = boot(hung_task_timeout=1.0)
    state = k.khungtaskd
    never = Completion()

    def after_a_full_pass(predicate) -> None:
        """Wait for ``predicate``, then for the check pass that made it true to end."""
        assert k.wait_until(predicate, 5)
        passes = state.checks
        assert k.wait_until(lambda: state.checks > passes, 5)

    first = [k.fork(f"d{i}", park_uninterruptible(never)) for i in range(10)]
    after_a_full_pass(lambda: all(t.pid in k.hung_tasks for t in first))
    assert state.warnings_left == 0
    printed = len(k.dmesg())
    assert sum("blocked for more than" in line.text for line in k.dmesg()) == 10
    late = [k.fork(f"late{i}", park_uninterruptible(never)) for i in range(2)]
    after_a_full_pass(lambda: all(t.pid in k.hung_tasks for t in late))
    assert len(k.dmesg()) == printed  # no report and no lock dump any more
    recorded = {e.pid for e in k.tracer.events() if e.name == Ev.HUNG_TASK}
    assert {t.pid for t in first + late} <= recorded
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
        assert any("wait_for_completion" in f for f in traces[t.pid])
        assert sched_show_task(t, traces[t.pid])[2:] == [f" {f}" for f in traces[t.pid]]
    never.complete_all()
