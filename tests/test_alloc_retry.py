"""A looping allocator is recorded as counts, not one event burst per jiffy."""

from kthreads import (GFP_KERNEL, GFP_NOFS, OOM_SCORE_ADJ_MIN, Completion, Ev, Kernel,
                      TraceEvent, VmaSpec, alloc_pages)
from util import exited, park_uninterruptible

ZONE = 1024


def fill(k: Kernel, free: int) -> int:
    """Pages a process may map (page tables included) to leave ``free`` free."""
    pages = k.zone.nr_free - free
    while pages + (pages + 511) // 512 > k.zone.nr_free - free:
        pages -= 1
    return pages


def of(events: list[TraceEvent], pid: int, *names: str) -> list[TraceEvent]:
    return [e for e in events if e.pid == pid and e.name in names]


def test_a_task_looping_for_seconds_records_a_few_events_per_second():
    """H kills V, then aborts every OOM invocation while V sleeps in D with
    TIF_MEMDIE: about HZ iterations per model second, each of which used to
    record half a dozen events."""
    loop_secs = 5.0
    k = Kernel(nr_pages=ZONE, hung_task_timeout=0, alloc_stall_secs=1000)
    never = Completion("never")
    got: list[int | None] = []
    try:
        v = k.fork("victim", park_uninterruptible(never), vmas=[VmaSpec(pages=fill(k, 8))])
        h = k.fork("holder", lambda t: got.append(alloc_pages(GFP_KERNEL)))
        assert k.wait_until(lambda: k.stats.oom_kills == 1 and h.alloc_since is not None, 2)
        t0, n0 = k.clock.now(), k.tracer.recorded
        # A log cut mid-loop still knows the loop went on: periodic summaries.
        assert k.wait_until(lambda: any(not e.fields["final"] and e.fields["aborts"] > 0 for e in
                                        of(k.tracer.events(), h.pid, Ev.ALLOC_RETRY)), 5)
        assert k.wait_until(lambda: k.clock.now() - t0 >= loop_secs, 5)
        t1, n1 = k.clock.now(), k.tracer.recorded
        # Before: ~6 events per iteration, ~HZ iterations per second.
        assert n1 - n0 <= 2 * (t1 - t0) + 10, f"{n1 - n0} events in {t1 - t0:.1f} model s"
        never.complete_all()  # V exits: its memory ends the loop
        assert k.wait_until(exited(v, h), 3)
    finally:
        assert k.shutdown().clean
    assert got and got[0] is not None
    events = k.tracer.events()
    mine = of(events, h.pid, Ev.ALLOC_SLOWPATH, Ev.ALLOC_RETRY, Ev.ALLOC_SUCCESS,
              Ev.OOM_ABORT, Ev.OOM_INVOKE)
    assert mine[0].name == Ev.ALLOC_SLOWPATH and mine[-1].name == Ev.ALLOC_SUCCESS
    last = mine[-2]
    assert last.name == Ev.ALLOC_RETRY and last.fields["final"]
    retries = of(events, h.pid, Ev.ALLOC_RETRY)
    # Events plus counts give the exact totals the counters keep.
    assert len(of(events, h.pid, Ev.OOM_ABORT)) + sum(e.fields["aborts"] for e in retries) \
        == k.stats.oom_aborts
    assert len(of(events, h.pid, Ev.OOM_INVOKE)) + sum(e.fields["invocations"] for e in retries) \
        == k.stats.oom_invocations
    assert last.fields["loops"] >= sum(e.fields["retries"] for e in retries) + 1
    assert k.check_quiescent() == []


def test_an_iteration_that_decides_something_is_recorded_in_full():
    """V1 is killed first but shares its mm with an unkillable process, so its
    exit frees nothing. The next OOM invocation, in an iteration the slow
    path is only counting, kills V2: that iteration is recorded whole, its
    held-back events first, in order."""
    k = Kernel(nr_pages=ZONE, hung_task_timeout=0, alloc_stall_secs=1000)
    c1, c2, c3 = Completion("c1"), Completion("c2"), Completion("c3")
    v1 = k.fork("v1", park_uninterruptible(c1), vmas=[VmaSpec(pages=600)])  # the biggest
    k.fork("sharer", park_uninterruptible(c3), share_mm_with=v1, oom_score_adj=OOM_SCORE_ADJ_MIN)
    v2 = k.fork("v2", park_uninterruptible(c2), vmas=[VmaSpec(pages=fill(k, 8))])
    h = k.fork("holder", lambda t: alloc_pages(GFP_KERNEL))
    try:
        assert k.wait_until(lambda: v1.tif_memdie and k.stats.oom_aborts > 0, 2)
        aborts = k.stats.oom_aborts
        assert k.wait_until(lambda: k.stats.oom_aborts > aborts + 3, 2)  # quiet iterations
        c1.complete()  # v1 exits; the mm lives on in the sharer: nothing freed
        assert k.wait_until(lambda: k.stats.oom_kills == 2, 3)
        c2.complete()  # v2 exits and frees its memory: the allocation succeeds
        assert k.wait_until(exited(v2, h), 3)
        c3.complete()
    finally:
        assert k.shutdown().clean
    events = k.tracer.events()
    kills = [i for i, e in enumerate(events) if e.name == Ev.OOM_KILL]
    assert [events[i].pid for i in kills] == [v1.pid, v2.pid]
    # The second kill's iteration, read backwards from its "invoked oom-killer"
    # line: H's held-back routine events, then the last summary before it.
    second = next(i for i in range(kills[1], 0, -1)
                  if events[i].name == Ev.PRINTK and "invoked oom-killer" in events[i].fields["text"])
    before = [e.name for e in events[:second] if e.pid == h.pid]
    assert before[-4:] == [Ev.SCHED_SLEEP, Ev.SCHED_WAKE, Ev.LOCK_ACQUIRE, Ev.OOM_INVOKE]
    assert Ev.ALLOC_RETRY in before  # iterations between the kills were counted
    assert k.check_quiescent() == []


def test_a_gfp_nofs_loop_is_counted_too(boot):
    k = boot(nr_pages=ZONE, hung_task_timeout=0, alloc_stall_secs=1000)
    never = Completion()
    k.fork("hog", park_uninterruptible(never), vmas=[VmaSpec(pages=fill(k, 4))])
    t = k.fork("nofs", lambda t: alloc_pages(GFP_NOFS))
    assert k.wait_until(lambda: any(e.fields["retries"] > 0 for e in
                                    of(k.tracer.events(), t.pid, Ev.ALLOC_RETRY)), 5)
    retries = of(k.tracer.events(), t.pid, Ev.ALLOC_RETRY)
    assert all(e.fields["aborts"] == 0 and e.fields["invocations"] == 0 for e in retries)
    assert k.stats.oom_invocations == 0
    never.complete()
