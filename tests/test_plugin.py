"""The pytest plugin, exercised through pytester in a subprocess."""

from importlib.metadata import entry_points

import pytest

pytestmark = pytest.mark.skipif(
    not any(e.name == "oom_lab" for e in entry_points(group="pytest11")),
    reason="the package is not installed (pip install -e .), so its pytest11 entry point is not either")

LOCKUP_TEST = '''
import pytest
from kthreads import GFP_KERNEL, Mutex, VmaSpec, alloc_pages

def build_lockup_a(kernel, sequencer):
    inode_lock = Mutex("inode_lock", kernel)

    def writer(t):
        with inode_lock:
            sequencer.wait("allocate")
            alloc_pages(GFP_KERNEL)

    def victim(t):
        with inode_lock:
            pass

    w = kernel.fork("writer", writer, vmas=[VmaSpec(pages=40)])
    sequencer.until("writer holds inode_lock", lambda: inode_lock.owner is w)
    v = kernel.fork("victim", victim, vmas=[VmaSpec(pages=960)])
    sequencer.until("victim sleeps on inode_lock", lambda: v.state_letter == "D")
    sequencer.release("allocate")
    return w, v

@pytest.mark.kernel_config(policy="patch1")
def test_the_reaper_breaks_lockup_a(kernel, sequencer):
    w, v = build_lockup_a(kernel, sequencer)
    sequencer.until("both exited", lambda: w.state_letter == "X" and v.state_letter == "X")
    assert kernel.reaper_status().reaped == 1

@pytest.mark.kernel_config(policy="none", hung_task_timeout=2)
def test_without_the_reaper_it_locks_up(kernel, sequencer):
    w, v = build_lockup_a(kernel, sequencer)
    sequencer.until("victim exits", lambda: v.state_letter == "X", timeout=1.0)
'''


def test_a_passing_and_a_failing_lockup_test(pytester):
    pytester.makepyfile(LOCKUP_TEST)
    res = pytester.runpytest_subprocess("-p", "no:randomly", "-rA")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    # The failing test's report carries the post-mortem and the log's path.
    assert "oom-lab post-mortem" in out
    assert "flight recorder: " in out and ".jsonl" in out
    assert "lockup (mutex): pid" in out and "waiting for mutex inode_lock held by pid" in out
    assert "'victim exits' did not happen within 1 s" in out


def test_an_exception_in_a_task_body_fails_the_test(pytester):
    pytester.makepyfile('''
def test_body_asserts(kernel, sequencer):
    def body(t):
        assert 1 == 2, "a broken task body"
    t = kernel.fork("broken", body)
    sequencer.until("it exited", lambda: t.state_letter == "X")
''')
    res = pytester.runpytest_subprocess()
    res.assert_outcomes(passed=1, errors=1)
    assert "kernel teardown: oops: broken/" in res.stdout.str()


def test_teardown_fails_a_test_that_breaks_an_invariant(pytester):
    pytester.makepyfile('''
from kthreads import MM, mmget

def test_leaks_an_mm(kernel):
    mm = MM(kernel)
    mmget(mm)  # two users, nobody will put them: the mm outlives the kernel
''')
    res = pytester.runpytest_subprocess()
    res.assert_outcomes(passed=1, errors=1)
    assert "kernel teardown: mms never freed: mm#1" in res.stdout.str()


def test_a_gate_nobody_releases_breaks_the_sequence_instead_of_hanging(pytester):
    pytester.makepyfile('''
def test_gate(kernel, sequencer):
    t = kernel.fork("waiter", lambda t: sequencer.wait("never", timeout=0.2))
    sequencer.until("waiter exited", lambda: t.state_letter == "X")
    assert sequencer.broken and "gate 'never', never released" in sequencer.broken
    assert "StepTimeout" in kernel.oopses[0]
    kernel.oopses.clear()  # expected; teardown fails any test whose task bodies oopsed
''')
    res = pytester.runpytest_subprocess()
    res.assert_outcomes(passed=1)
