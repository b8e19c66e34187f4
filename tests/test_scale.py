"""A big run: 1,000 tasks on a 10^6-page zone boot, sleep and shut down cleanly."""

import time

from kthreads import Completion, Kernel, VmaSpec
from util import park_killable

TASKS = 1000
PAGES = 1_000_000


def test_a_thousand_tasks_on_a_million_pages_shut_down_cleanly():
    """Each exiting mm is checked in O(1) (no zone scan) and the shutdown
    deadline grows with the number of threads, so the report is clean."""
    t0 = time.monotonic()
    k = Kernel(nr_pages=PAGES)
    never = Completion("never")
    tasks = []
    try:
        for i in range(TASKS):
            tasks.append(k.fork(f"t{i}", park_killable(never), vmas=[VmaSpec(pages=8, size=16)]))
        assert k.wait_until(lambda: all(t.state_letter == "D" for t in tasks), 60)
        assert k.zone.nr_free == PAGES - TASKS * (8 + 1)
        booted = time.monotonic() - t0
    finally:
        report = k.shutdown()
    assert report.clean, report.format()
    assert report.joined == TASKS + 1  # and khungtaskd
    assert k.check_quiescent() == []
    assert all(t.exit_reason == "plug pulled" for t in tasks)
    print(f"\n{TASKS} tasks on {PAGES:,} pages: booted in {booted:.2f} s, "
          f"shut down in {report.real_seconds:.2f} s, total {time.monotonic() - t0:.2f} s")


def test_the_default_shutdown_deadline_grows_with_the_threads():
    assert Kernel(hung_task_timeout=0, shutdown_timeout=0.5).shutdown_deadline() == 0.5
    k = Kernel(hung_task_timeout=0)
    try:
        assert k.shutdown_deadline() == 5.0
        for i in range(1200):  # never started: shutdown runs them down
            k.fork(f"t{i}", lambda t: None, start=False)
        assert k.shutdown_deadline() == 1200 * 0.005
    finally:
        report = k.shutdown()
    assert report.clean and report.joined == 1200
