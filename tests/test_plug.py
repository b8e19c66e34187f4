"""Once the plug is pulled the model decides nothing: no kill, no report, no count."""

import threading

import pytest

from kthreads import (GFP_KERNEL, Completion, Ev, Kernel, OomControl, PlugPulled, VmaSpec,
                      out_of_memory)
from util import park_uninterruptible

DECISIONS = {Ev.OOM_INVOKE, Ev.OOM_ABORT, Ev.OOM_KILL, Ev.MARK_VICTIM, Ev.OOM_CURRENT_VICTIM,
             Ev.WAKE_REAPER, Ev.REAP_DROPPED, Ev.HUNG_TASK, Ev.ALLOC_STALL, Ev.PRINTK}


def test_an_allocator_holding_oom_lock_kills_nobody_once_the_plug_is_pulled():
    """The allocator is preempted holding oom_lock; the plug is pulled; it
    then calls the OOM killer, with a big process still there to kill."""
    k = Kernel(nr_pages=1024)
    never, holding = Completion("never"), Completion("holding")
    outcome: list[str] = []
    k.fork("victim", park_uninterruptible(never), vmas=[VmaSpec(pages=500)])

    def allocator(t):
        if not k.oom_lock.trylock():  # as __alloc_pages_may_oom takes it
            outcome.append("oom_lock busy")
            return
        try:
            holding.complete()
            try:
                never.wait_for_completion()  # preempted here until the plug is pulled
            except PlugPulled:
                pass
            try:
                out_of_memory(k, OomControl(GFP_KERNEL))
                outcome.append("decided")
            except PlugPulled:
                outcome.append("refused")
                raise
        finally:
            k.oom_lock.unlock()

    k.fork("allocator", allocator)
    assert holding.wait(2)
    report = k.shutdown()
    assert report.clean, report.format()
    assert outcome == ["refused"]
    s = k.stats
    assert (s.oom_invocations, s.oom_kills, s.oom_aborts, s.task_exits) == (0, 0, 0, 0)
    names = [e.name for e in k.tracer.events()]
    assert not DECISIONS & set(names[names.index(Ev.SHUTDOWN):])
    assert k.dmesg() == [] and k.check_quiescent() == []


def test_pulling_the_plug_waits_for_a_decision_in_progress():
    k = Kernel(hung_task_timeout=0)
    inside, shutting = threading.Event(), threading.Event()
    plug_seen: list[bool] = []

    def decide() -> None:
        with k.decision():
            inside.set()
            shutting.wait(5)  # the harness is now calling shutdown()
            plug_seen.append(k.plug_pulled)
            k.printk("decided")

    def stop() -> None:
        shutting.set()
        k.shutdown()

    th = threading.Thread(target=decide)
    th.start()
    assert inside.wait(5)
    st = threading.Thread(target=stop)
    st.start()
    st.join(10)
    th.join(10)
    assert plug_seen == [False]  # never pulled under a decision
    names = [e.name for e in k.tracer.events()]
    assert names.index(Ev.PRINTK) < names.index(Ev.SHUTDOWN)
    with pytest.raises(PlugPulled):
        with k.decision():
            pass
    assert k.printk("too late") is None
    assert [line.text for line in k.dmesg()] == ["decided"]


def test_exits_while_unwinding_are_not_counted():
    k = Kernel(hung_task_timeout=0)
    never = Completion()
    done = k.fork("done", lambda t: None)
    done.thread.join(2)  # its whole exit, counters included, is over
    assert not done.thread.is_alive() and k.stats.task_exits == 1
    progress = k.stats.last_progress
    k.fork("parked", park_uninterruptible(never), vmas=[VmaSpec(pages=4)])
    assert k.shutdown().clean
    assert k.stats.task_exits == 1 and k.stats.last_progress == progress


def test_decisions_run_concurrently_until_the_plug_closes_the_gate():
    # The reaper reaps while an allocator is in the OOM killer: two decisions
    # in flight at once, neither waiting for the other.
    k = Kernel(hung_task_timeout=0)
    first_in, second_in = threading.Event(), threading.Event()
    both: list[bool] = []

    def first() -> None:
        with k.decision():
            first_in.set()
            both.append(second_in.wait(5))

    th = threading.Thread(target=first)
    th.start()
    assert first_in.wait(5)
    with k.decision():  # enters while the first is still inside
        second_in.set()
    th.join(5)
    assert both == [True]
    assert k.shutdown().clean
    with pytest.raises(PlugPulled):
        with k.decision():
            pass
