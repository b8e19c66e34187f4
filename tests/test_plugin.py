"""The pytest plugin, exercised through pytester in a subprocess."""

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from stress.postmortem import analyze, format_text, load_jsonl

ROOT = Path(__file__).resolve().parent.parent

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


def test_teardown_fails_a_test_whose_thread_does_not_stop_and_shows_its_stack(pytester):
    pytester.makepyfile('''
import threading
import pytest
from kthreads import Completion, PlugPulled

@pytest.mark.kernel_config(shutdown_timeout=0.3)
def test_stubborn(kernel, sequencer):
    def stubborn(t):
        try:
            Completion("never").wait_for_completion_killable()
        except PlugPulled:
            threading.Event().wait(2)  # ignores the plug, blocks outside the model
            raise
    s = kernel.fork("stubborn", stubborn)
    sequencer.until("stubborn sleeps", lambda: s.state_letter == "D")
''')
    res = pytester.runpytest_subprocess()
    res.assert_outcomes(passed=1, errors=1)
    out = res.stdout.str()
    assert "kernel teardown: threads not joined: stubborn/100" in out
    assert "threading.Event().wait(2)  # ignores the plug" in out.split("1 threads did not stop:")[1]


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


def readme_example() -> str:
    """README's plugin example ("Your own lockup tests: the pytest plugin"), read
    from README itself so that the two never drift apart. README promises that
    it passes, and that with policy="none" its report reads
    "lockup (mutex): pid 101 (victim) ..."."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Your own lockup tests: the pytest plugin", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


README_EXAMPLE = readme_example()


def test_readmes_example_passes_as_written(pytester):
    pytester.makepyfile(README_EXAMPLE)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def log_path(out: str) -> str:
    return re.search(r"flight recorder: (\S+\.jsonl)", out).group(1)


def test_readmes_example_under_policy_none_reports_the_promised_lockup(pytester):
    """The Sequencer's default 5 s step at speed 50: the failing step is 250
    model seconds in. Linux 4.6's khungtaskd reports the victim at its second
    check, two timeouts after boot: at 240 s with the kernel's default 120 s
    timeout, too close to 250 for a busy machine, so the example runs with a
    60 s timeout (report at 120 s), and the model's verdict is a lockup."""
    example, n = re.subn(r'kernel_config\(policy="patch1"(, hung_task_timeout=\d+)?\)',
                         'kernel_config(policy="none", hung_task_timeout=60)', README_EXAMPLE)
    assert n == 1
    pytester.makepyfile(example)
    res = pytester.runpytest_subprocess("-p", "no:randomly")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "'both exited' did not happen within 5 s" in out
    assert "lockup (mutex): pid 101 (victim) has been in D state" in out
    assert "waiting for mutex inode_lock held by pid 100 (writer)" in out and "oom_reaper: not running" in out
    log = load_jsonl(log_path(out))
    assert not log.partial and log.header["test"].endswith("::test_the_reaper_breaks_lockup_a")


def test_a_plain_failure_with_live_tasks_is_not_called_a_lockup(pytester):
    pytester.makepyfile('''
from kthreads import TASK_INTERRUPTIBLE, Completion, sleep_on

def test_plain_failure(kernel, sequencer):
    done = Completion("done")
    t = kernel.fork("sleeper", lambda t: sleep_on(TASK_INTERRUPTIBLE, done, done.completion_done))
    sequencer.until("it sleeps", lambda: t.state_letter == "S")
    assert False, "the test's own failure"
''')
    res = pytester.runpytest_subprocess("-p", "no:randomly")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "the test's own failure" in out
    assert re.search(r"undetermined: the log ends at [0-9.]+ s with 1 task alive "
                     r"\(pid 100 \(sleeper\) in S on done since [0-9.]+ s\); no lockup evidence: ", out)
    assert "lockup (" not in out
    # A log from a test says so in its header, and in the post-mortem's first line.
    first = format_text(analyze(load_jsonl(log_path(out)))).splitlines()[0]
    assert ": test test_a_plain_failure_with_live_tasks_is_not_called_a_lockup.py::test_plain_failure, " \
        "policy none, " in first and "?" not in first


def test_the_sequencers_step_timeout_comes_from_a_marker(pytester):
    pytester.makepyfile('''
import pytest

@pytest.mark.sequencer_timeout(0.2)
def test_short_steps(kernel, sequencer):
    assert sequencer.timeout == 0.2
    sequencer.until("never", lambda: False)

def test_default_steps(kernel, sequencer):
    assert sequencer.timeout == 5.0

@pytest.mark.sequencer_timeout("soon")
def test_bad_timeout(kernel, sequencer):
    pass

@pytest.mark.kernel_config(polcy="none")
def test_bad_kernel_config(kernel):
    pass
''')
    res = pytester.runpytest_subprocess("-p", "no:randomly")
    res.assert_outcomes(passed=1, failed=1, errors=2)
    out = res.stdout.str()
    assert "step 1 'never' did not happen within 0.2 s" in out
    assert "sequencer_timeout: expected one positive number of seconds, got ('soon',)" in out
    assert "kernel_config: KernelConfig.__init__() got an unexpected keyword argument 'polcy'" in out
    assert "During handling" not in out
    assert "def kernel(" not in out and "def _step_timeout(" not in out  # one line, no plugin traceback


def test_the_same_tests_run_on_the_controlled_cpu(pytester):
    # The plugin, the sequencer and their waits are the same in both modes;
    # on the controlled CPU the interleaving, and so the outcome, is decided.
    controlled = LOCKUP_TEST.replace("from kthreads import", "from kthreads import Sched, SchedConfig,") \
        .replace('policy="patch1")', 'policy="patch1", sched=SchedConfig(Sched.PCT, seed=3))') \
        .replace('hung_task_timeout=2)', 'hung_task_timeout=2, sched=SchedConfig(Sched.RANDOM, seed=1))')
    assert controlled.count("SchedConfig(Sched.") == 2
    pytester.makepyfile(controlled)
    res = pytester.runpytest_subprocess("-p", "no:randomly", "-rA")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "lockup (mutex): pid" in out and "waiting for mutex inode_lock held by pid" in out
    assert "'victim exits' did not happen within 1 s" in out


def test_a_step_nothing_can_bring_about_fails_at_once_naming_the_blocked_tasks(pytester):
    pytester.makepyfile('''
import pytest
from kthreads import Mutex, Sched, SchedConfig

@pytest.mark.kernel_config(hung_task_timeout=0, sched=SchedConfig(Sched.PCT, seed=0))
def test_abba(kernel, sequencer):
    a, b = Mutex("a", kernel), Mutex("b", kernel)

    def ab(t):
        with a:
            sequencer.wait("both hold one")
            with b:
                pass

    def ba(t):
        with b:
            sequencer.wait("both hold one")
            with a:
                pass

    t1, t2 = kernel.fork("ab", ab), kernel.fork("ba", ba)
    sequencer.until("each holds one", lambda: a.owner is t1 and b.owner is t2)
    sequencer.release("both hold one")
    sequencer.until("both exited", lambda: t1.state_letter == t2.state_letter == "X", timeout=3600)
''')
    res = pytester.runpytest_subprocess("-p", "no:randomly", "--durations=1")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert ("step 3 'both exited' did not happen and cannot: blocked: ab/100 (D) on b held by 101; "
            "ba/101 (D) on a held by 100") in out
