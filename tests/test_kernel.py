"""Kernel lifecycle: shutdown unwinds every kind of sleeper; snapshots; bad input."""

import dataclasses
import threading
import types

import pytest

import kthreads
from kthreads import (GFP_KERNEL, GFP_NOFS, Completion, Errno, Kernel, KernelConfig, Mutex,
                      RwSemaphore, ShutdownError, VmaSpec, alloc_pages, schedule_timeout_killable,
                      send_sigkill)
from util import park_killable, park_uninterruptible


def test_shutdown_unwinds_every_kind_of_sleeper_and_returns_every_page():
    k = Kernel(nr_pages=1024)
    m, sem = Mutex("m", k), RwSemaphore("sem", k)
    never = Completion("never")
    held = Completion("held")

    def mutex_holder(t):
        with m:
            with sem.write():
                held.complete()
                never.wait_for_completion()

    def allocator(gfp):
        return lambda t: alloc_pages(gfp)

    k.fork("holder", mutex_holder, vmas=[VmaSpec(pages=1000)])
    try:
        assert held.wait(2)
        assert k.zone.nr_free < k.zone.wmark_min
        tasks = [
            k.fork("d-mutex", lambda t: m.lock()),
            k.fork("k-mutex", lambda t: m.lock_killable()),
            k.fork("d-rwsem", lambda t: sem.down_read()),
            k.fork("d-completion", park_uninterruptible(never)),
            k.fork("k-completion", park_killable(never)),
            k.fork("sleeper", lambda t: schedule_timeout_killable(10 ** 9)),
            k.fork("nofs-loop", allocator(GFP_NOFS)),
            k.fork("kernel-loop", allocator(GFP_KERNEL), oom_score_adj=-1000),
        ]
        assert k.wait_until(lambda: all(t.state_letter in "DS" or t.alloc_since is not None
                                        for t in tasks), 3)
        assert tasks[-1].alloc_since is not None and tasks[-2].alloc_since is not None
    finally:
        report = k.shutdown()
    assert report.clean and report.joined == 10  # nine tasks and khungtaskd
    assert all(not t.thread.is_alive() for t in tasks)
    assert k.check_quiescent() == []
    assert k.shutdown() is report  # idempotent


def test_shutdown_names_a_thread_that_does_not_stop():
    k = Kernel()
    foreign = threading.Event()  # not a model primitive: the plug cannot reach it
    t = k.fork("rogue", lambda t: foreign.wait(30))
    try:
        report = k.shutdown(timeout=0.05)
        assert not report.clean
        assert report.stuck[0].name == f"rogue/{t.pid}"
        assert "foreign.wait" in report.stuck[0].stack or "wait" in report.stuck[0].stack
        assert "did not stop" in report.format()
    finally:
        foreign.set()
        t.thread.join(5)


def test_context_manager_raises_when_a_thread_is_left_behind():
    foreign = threading.Event()
    with pytest.raises(ShutdownError, match="rogue"):
        with Kernel(shutdown_timeout=0.05) as k:
            t = k.fork("rogue", lambda t: foreign.wait(30))
    foreign.set()
    t.thread.join(5)


def test_unstarted_tasks_are_run_down_at_shutdown():
    k = Kernel()
    t = k.fork("never-started", lambda t: None, vmas=[VmaSpec(pages=5)], start=False)
    mm = t.mm
    assert k.shutdown().clean
    assert t.exit_reason == "plug pulled" and mm.freed
    assert k.check_quiescent() == []


def test_a_body_that_raises_is_an_oops_and_the_task_still_exits(boot):
    k = boot()

    def broken(t):
        raise KeyError("bug in a task body")

    t = k.fork("broken", broken, vmas=[VmaSpec(pages=3)])
    assert k.wait_until(lambda: t.state_letter == "X", 2)
    assert t.exit_reason == "oops" and "KeyError" in k.oopses[0]
    assert k.breaches == []
    assert any("oops: broken/" in p and "KeyError" in p for p in k.check_quiescent())
    k.oopses.clear()  # expected here: the fixture's teardown check would fail the test


def test_snapshot_is_frozen_and_describes_the_run(boot):
    k = boot(nr_pages=512)
    done = Completion()
    p = k.fork("proc", park_killable(done), vmas=[VmaSpec(pages=50)])
    assert k.wait_until(lambda: p.state_letter == "D", 2)
    snap = k.snapshot()
    tp = snap.task(p.pid)
    assert (tp.comm, tp.state, tp.wchan_kind, tp.mm) == ("proc", "D", "completion", p.mm.id)
    assert snap.mm(p.mm.id).anon_rss == 50 and snap.zone.nr_pages == 512
    assert snap.policy == "none"
    with pytest.raises(dataclasses.FrozenInstanceError):
        tp.state = "R"
    with pytest.raises(KeyError):
        snap.task(99999)
    assert "proc" in snap.format()
    done.complete()


@pytest.mark.parametrize("kw, msg", [
    (dict(policy="bogus"), "unknown policy 'bogus'; valid: v4.5, none, patch1"),
    (dict(hung_task_timeout=-1), "hung_task_timeout"),
    (dict(nr_pages=4), "at least 16 pages"),
    (dict(speed=1e9), "floor"),
])
def test_bad_configuration_is_rejected_with_a_clear_message(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Kernel(**kw)


def test_fork_after_shutdown_is_refused():
    k = Kernel()
    k.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        k.fork("late", lambda t: None)


def test_config_object_and_overrides_combine():
    k = Kernel(KernelConfig(nr_pages=256), hz=250, speed=20)
    assert k.zone.nr_pages == 256 and k.clock.hz == 250
    k.shutdown()


def test_completion_killable_waits_return_eintr_or_raise_sigkill(boot):
    """wait_for_completion_killable() is the kernel's (-EINTR, the caller
    unwinds); wait_killable() raises SigKill, so the body unwinds by itself."""
    k = boot()
    never = Completion()
    results: list[int] = []
    after: list[str] = []

    def kernel_style(t):
        results.append(never.wait_for_completion_killable())
        after.append("kernel_style went on")

    def pythonic(t):
        never.wait_killable()
        after.append("pythonic went on")  # never reached: SigKill unwinds

    a, b = k.fork("kernel_style", kernel_style), k.fork("pythonic", pythonic)
    assert k.wait_until(lambda: a.state_letter == "D" and b.state_letter == "D", 2)
    send_sigkill(a)
    send_sigkill(b)
    assert k.wait_until(lambda: a.state_letter == "X" and b.state_letter == "X", 2)
    assert results == [-Errno.EINTR] and after == ["kernel_style went on"]
    assert a.exit_reason == b.exit_reason == "SIGKILL"  # a at its return to user space
    done = Completion()
    done.complete()
    c = k.fork("completed", lambda t: done.wait_killable())
    assert k.wait_until(lambda: c.state_letter == "X", 2) and c.exit_reason == "exit"


def test_every_public_name_is_in_all_and_importable():
    public = {n for n in dir(kthreads) if not n.startswith("_") and n != "logger"
              and not isinstance(getattr(kthreads, n), types.ModuleType)}
    assert public == set(kthreads.__all__)
    assert len(kthreads.__all__) == len(set(kthreads.__all__))
    for name in ("Ev", "TraceEvent", "ReaperStatus", "do_munmap", "model_call_traces"):
        assert name in kthreads.__all__
