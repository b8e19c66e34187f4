"""khungtaskd: reports TASK_UNINTERRUPTIBLE tasks that have not run for hung_task_timeout."""

from kthreads import Completion
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
    events = [e for e in k.tracer.events() if e[2] == "hung_task"]
    assert events[0][3] == d.pid and events[0][5]["wchan_kind"] == "completion"
    never.complete_all()


def test_timeout_zero_disables_khungtaskd(boot):
    k = boot(hung_task_timeout=0)
    assert "khungtaskd" not in k.kthreads
