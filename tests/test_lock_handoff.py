"""How a released lock reaches a queued waiter: Linux 4.6 wakes it and lets
it compete (a newcomer may take the lock first), hand-off (mutex 4.10,
rwsem 5.3) grants it.

Every interleaving here is decided: the tasks run on a controlled CPU under
PCT of depth 1, which never lowers a priority and runs the highest-priority
ready task, and each test gives its tasks fixed priorities. A task that wakes
a lower-priority one therefore runs on, exactly as a waker that keeps its CPU.
"""

import random
import threading

import pytest

from kthreads import (Completion, Errno, Kernel, Mutex, RwSemaphore, Sched, SchedConfig,
                      send_sigkill)
from kthreads.handoff import LOCK_HANDOFF, handoff_for
from util import exited

#: Strict priorities: PCT with no change point.
STRICT = SchedConfig(Sched.PCT, seed=0, pct_depth=1)


def strict_boot(boot) -> Kernel:
    return boot(sched=STRICT, hung_task_timeout=0)  # no khungtaskd: only the test's tasks


def prioritise(*tasks) -> None:
    """The first task outranks the second, and so on (all of them forked
    by the controller, which holds the CPU until it waits: none has run)."""
    for i, t in enumerate(tasks):
        t.runner.prio = 1.9 - 0.1 * i


def asleep_on(task, lock):
    return lambda: task.state_letter == "D" and task.wchan is lock


# -- mutex ----------------------------------------------------------------------------
@pytest.mark.parametrize("handoff", [False, True])
def test_a_newcomer_takes_a_46_mutex_from_its_woken_waiter_but_not_with_handoff(boot, handoff):
    k = strict_boot(boot)
    m = Mutex("m", k, handoff=handoff)
    go, go2 = Completion("go"), Completion("go2")
    log: list[tuple] = []

    def holder(t):
        m.lock()
        go.wait_for_completion()
        m.unlock()  # 4.6: wakes W; hand-off: W owns the mutex now
        log.append(("H unlocked", m.waiter_pids(), m.owner_pids()))
        m.lock()  # the newcomer
        log.append(("H locked", m.waiter_pids()))
        go2.wait_for_completion()  # lets W run while H holds the mutex
        m.unlock()

    def waiter(t):
        m.lock()
        log.append((f"{t.comm} locked", m.waiter_pids()))
        m.unlock()

    h = k.fork("H", holder)
    w = k.fork("W", waiter)
    x = k.fork("X", waiter)
    prioritise(h, w, x)
    assert k.wait_until(lambda: m.owner is h and asleep_on(h, go)(), 5)
    assert k.wait_until(lambda: asleep_on(w, m)() and asleep_on(x, m)(), 5)
    assert m.waiter_pids() == [w.pid, x.pid]
    switches = w.nvcsw
    go.complete()
    if not handoff:
        # H took the mutex back; W, woken, ran, lost, and sleeps again at
        # the head of the queue (4.6 dequeues a waiter only once it has it).
        assert k.wait_until(lambda: asleep_on(h, go2)() and w.nvcsw > switches
                            and asleep_on(w, m)(), 5)
        assert m.owner is h and m.waiter_pids() == [w.pid, x.pid]
        go2.complete()
        assert k.wait_until(exited(h, w, x), 5)
        assert log == [("H unlocked", [w.pid, x.pid], []), ("H locked", [w.pid, x.pid]),
                       ("W locked", [x.pid]), ("X locked", [])]
    else:
        assert k.wait_until(lambda: asleep_on(h, go2)(), 5)  # after W and X
        go2.complete()
        assert k.wait_until(exited(h, w, x), 5)
        assert log == [("H unlocked", [x.pid], [w.pid]), ("W locked", [x.pid, h.pid]),
                       ("X locked", [h.pid]), ("H locked", [])]


@pytest.mark.parametrize("handoff", [False, True])
def test_a_46_mutex_trylock_succeeds_while_the_woken_waiter_has_not_run(boot, handoff):
    k = strict_boot(boot)
    m = Mutex("m", k, handoff=handoff)
    go = Completion("go")
    got: list[bool] = []

    def holder(t):
        m.lock()
        go.wait_for_completion()
        m.unlock()
        got.append(m.trylock())
        if got[0]:
            m.unlock()

    def waiter(t):
        with m:
            pass

    h = k.fork("H", holder)
    w = k.fork("W", waiter)
    prioritise(h, w)
    assert k.wait_until(lambda: asleep_on(w, m)() and asleep_on(h, go)(), 5)
    go.complete()
    assert k.wait_until(exited(h, w), 5)
    assert got == [not handoff]
    assert m.owner is None and m.waiter_pids() == []


def test_a_woken_46_killable_waiter_takes_a_free_mutex_despite_sigkill(boot):
    """4.6's loop tries the mutex before it looks at signals: woken with the
    mutex free, a killable waiter takes it even though SIGKILL is pending."""
    k = strict_boot(boot)
    m = Mutex("m", k)
    go = Completion("go")
    res: list[int] = []

    def holder(t):
        m.lock()
        go.wait_for_completion()
        m.unlock()  # wakes W, who runs only once H is done (lower priority)
        send_sigkill(w)

    def waiter(t):
        res.append(m.lock_killable())
        if res[0] == 0:
            m.unlock()

    h = k.fork("H", holder)
    w = k.fork("W", waiter)
    prioritise(h, w)
    assert k.wait_until(lambda: asleep_on(w, m)() and asleep_on(h, go)(), 5)
    go.complete()
    assert k.wait_until(exited(h, w), 5)
    assert res == [0] and w.sigkill_pending
    assert m.owner is None and m.waiter_pids() == []


def test_a_killed_waiter_leaves_the_queue_and_the_next_one_gets_the_mutex(boot):
    k = strict_boot(boot)
    m = Mutex("m", k)
    go, go2 = Completion("go"), Completion("go2")
    order: list[str] = []

    def holder(t):
        m.lock()
        go.wait_for_completion()
        send_sigkill(a)
        go2.wait_for_completion()  # A notices the signal while H holds the mutex
        order.append(f"queue {m.waiter_pids()}")
        m.unlock()

    def killable(t):
        order.append(f"a {m.lock_killable()}")

    def waiter(t):
        with m:
            order.append("b")

    h = k.fork("H", holder)
    a = k.fork("A", killable)
    b = k.fork("B", waiter)
    prioritise(h, a, b)
    assert k.wait_until(lambda: asleep_on(a, m)() and asleep_on(b, m)(), 5)
    go.complete()
    assert k.wait_until(lambda: a.state_letter == "X" and asleep_on(h, go2)(), 5)
    go2.complete()
    assert k.wait_until(exited(h, a, b), 5)
    assert order == [f"a {-Errno.EINTR}", f"queue [{b.pid}]", "b"]


# -- rwsem --------------------------------------------------------------------------------
@pytest.mark.parametrize("handoff", [False, True])
def test_a_newcomer_down_write_takes_a_46_rwsem_from_the_woken_writer_but_not_with_handoff(
        boot, handoff):
    k = strict_boot(boot)
    sem = RwSemaphore("&mm->mmap_sem", k, handoff=handoff)
    go, go2 = Completion("go"), Completion("go2")
    log: list[tuple] = []

    def holder(t):
        sem.down_write()
        go.wait_for_completion()
        sem.up_write()  # 4.6: wakes W; hand-off: W owns it now
        # Queued or woken, W keeps the waiting bias: no trylock succeeds.
        log.append(("H up_write", sem.waiter_pids(), sem.owner_pids(),
                    sem.down_read_trylock(), sem.down_write_trylock()))
        sem.down_write()  # the newcomer
        log.append(("H down_write", sem.waiter_pids()))
        go2.wait_for_completion()
        sem.up_write()

    def writer(t):
        sem.down_write()
        log.append(("W down_write", sem.waiter_pids()))
        sem.up_write()

    h = k.fork("H", holder)
    w = k.fork("W", writer)
    prioritise(h, w)
    assert k.wait_until(lambda: asleep_on(w, sem)() and asleep_on(h, go)(), 5)
    switches = w.nvcsw
    go.complete()
    if not handoff:
        assert k.wait_until(lambda: asleep_on(h, go2)() and w.nvcsw > switches
                            and asleep_on(w, sem)(), 5)
        assert sem.owner is h and sem.waiter_pids() == [w.pid]  # W lost, kept its place
        go2.complete()
        assert k.wait_until(exited(h, w), 5)
        assert log == [("H up_write", [w.pid], [], False, False), ("H down_write", [w.pid]),
                       ("W down_write", [])]
    else:
        assert k.wait_until(lambda: asleep_on(h, go2)(), 5)  # after W
        go2.complete()
        assert k.wait_until(exited(h, w), 5)
        assert log == [("H up_write", [], [w.pid], False, False), ("W down_write", [h.pid]),
                       ("H down_write", [])]
    assert not sem.holders() and not sem.waiter_pids()


def test_a_new_reader_queues_behind_a_woken_46_writer_instead_of_stealing(boot):
    k = strict_boot(boot)
    sem = RwSemaphore("sem", k)
    go = Completion("go")
    log: list[str] = []

    def holder(t):
        sem.down_read()
        go.wait_for_completion()
        sem.up_read()  # the last reader out wakes W, who has not run yet
        log.append(f"free, queue {sem.waiter_pids()}")
        sem.down_read()  # the waiting bias sends this reader to the queue
        log.append("H read")
        sem.up_read()

    def writer(t):
        sem.down_write()
        log.append("W write")
        sem.up_write()

    h = k.fork("H", holder)
    w = k.fork("W", writer)
    prioritise(h, w)
    assert k.wait_until(lambda: asleep_on(w, sem)() and asleep_on(h, go)(), 5)
    go.complete()
    assert k.wait_until(exited(h, w), 5)
    assert log == [f"free, queue [{w.pid}]", "W write", "H read"]


@pytest.mark.parametrize("handoff", [False, True])
def test_the_releaser_grants_the_readers_at_the_head_before_they_run(boot, handoff):
    """4.6's __rwsem_do_wake grants readers on the waker's side, with or
    without hand-off: they hold the lock before they have run."""
    k = strict_boot(boot)
    sem = RwSemaphore("sem", k, handoff=handoff)
    go = Completion("go")
    seen: list[tuple] = []

    def holder(t):
        sem.down_write()
        go.wait_for_completion()
        sem.up_write()
        seen.append((sorted(p for p in sem.owner_pids()), sem.waiter_pids(),
                     [r.state_letter for r in (r1, r2)]))

    def reader(t):
        sem.down_read()
        sem.up_read()

    def writer(t):
        sem.down_write()
        sem.up_write()

    h = k.fork("H", holder)
    r1, r2 = k.fork("R1", reader), k.fork("R2", reader)
    w2 = k.fork("W2", writer)
    r3 = k.fork("R3", reader)
    prioritise(h, r1, r2, w2, r3)
    for t in (r1, r2, w2, r3):  # queued in this order
        assert k.wait_until(asleep_on(t, sem), 5)
    go.complete()
    assert k.wait_until(exited(h, r1, r2, w2, r3), 5)
    assert seen == [(sorted([r1.pid, r2.pid]), [w2.pid, r3.pid], ["D", "D"])]


# -- free mode: the same semantics with real threads ------------------------------------
@pytest.mark.parametrize("handoff", [False, True])
def test_mutex_exclusion_holds_under_a_6_thread_randomized_stress(boot, handoff):
    k = boot()
    m = Mutex("m", k, handoff=handoff)
    inside = [0]
    violations: list[int] = []
    done = [0] * 6
    start = Completion("start")

    def critical():
        inside[0] += 1
        if inside[0] != 1:
            violations.append(inside[0])
        inside[0] -= 1

    def worker(i):
        def body(t):
            rng = random.Random(2000 + i)
            start.wait_for_completion()
            for _ in range(800):
                op = rng.random()
                if op < 0.6:
                    with m:
                        critical()
                elif op < 0.8:
                    if m.trylock():
                        critical()
                        m.unlock()
                elif m.lock_killable() == 0:
                    critical()
                    m.unlock()
                done[i] += 1
        return body

    tasks = [k.fork(f"m{i}", worker(i)) for i in range(6)]
    start.complete_all()
    assert k.wait_until(exited(*tasks), 25)
    assert violations == [] and done == [800] * 6
    assert m.owner is None and m.waiter_pids() == [] and not m._unrun


def test_a_harness_thread_times_out_behind_a_held_46_mutex_and_leaves_the_queue(boot):
    k = boot()
    m = Mutex("m", k)
    release = Completion()

    def holder(t):
        with m:
            release.wait_for_completion()

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: m.owner is h, 2)
    got = []
    other = threading.Thread(target=lambda: got.append(m.acquire(timeout=0.02)))
    other.start()
    other.join(5)
    assert got == [False] and m.waiter_pids() == [] and not m._waiters
    release.complete()
    assert m.acquire(timeout=2)
    m.release()


# -- the policy hook -----------------------------------------------------------------------
def test_the_lock_mode_comes_from_the_policy_or_the_4_6_default(boot):
    assert LOCK_HANDOFF is False
    assert handoff_for(None, "mutex_handoff") is False

    class Ops:
        mutex_handoff = True

    class FakeKernel:
        policy_ops = Ops()

    assert handoff_for(FakeKernel(), "mutex_handoff") is True
    assert handoff_for(FakeKernel(), "rwsem_handoff") is False  # not set: 4.6
    assert handoff_for(object(), "mutex_handoff") is False  # no policy: 4.6
    k = boot()
    assert k.policy_ops.mutex_handoff is False and k.policy_ops.rwsem_handoff is False
    assert Mutex("a", k).handoff is False and RwSemaphore("b", k).handoff is False
    assert k.oom_lock.handoff is False
    # What a later design does: a 4.10+ policy hands mutexes off, 5.3+ rwsems too.
    k.policy_ops.mutex_handoff = True
    assert Mutex("a", k).handoff is True and RwSemaphore("b", k).handoff is False
    k.policy_ops.rwsem_handoff = True
    assert RwSemaphore("b", k).handoff is True
    t = k.fork("p", lambda t: None, start=False)
    assert t.mm.mmap_sem.handoff is True  # a new mm's mmap_sem follows the policy
    k.start(t)
    assert k.wait_until(exited(t), 2)
    # An explicit argument wins over the policy.
    assert Mutex("a", k, handoff=False).handoff is False
    assert RwSemaphore("b", k, handoff=False).handoff is False
    assert Mutex("a", handoff=True).handoff is True
