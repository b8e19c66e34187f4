"""struct mutex: ownership, FIFO queue, killable vs uninterruptible waits. 4.6's
wake-then-compete and 4.10's hand-off: test_lock_handoff.py."""

import threading

import pytest

from kthreads import Completion, Errno, LockBug, Mutex, return_to_user, send_sigkill


def sleeping_on(k, task, lock):
    return lambda: task.state_letter == "D" and task.wchan is lock


def test_trylock_owner_and_unlock_from_a_harness_thread():
    m = Mutex("m")
    assert m.trylock()
    assert m.owner is threading.current_thread()
    assert not m.trylock()
    m.unlock()
    assert m.owner is None and not m.is_locked()


def test_unlock_by_non_owner_and_recursive_lock_are_bugs():
    m = Mutex("m")
    with pytest.raises(LockBug, match="owned by nobody"):
        m.unlock()
    m.lock()
    with pytest.raises(LockBug, match="recursive"):
        m.lock()
    m.unlock()


def test_waiters_get_the_mutex_in_fifo_order(boot):
    k = boot()
    m = Mutex("inode_lock", k)
    go = Completion("go")
    order: list[str] = []

    def holder(t):
        with m:
            go.wait_for_completion()

    def waiter(t):
        with m:
            order.append(t.comm)

    a = k.fork("A", holder)
    assert k.wait_until(lambda: m.owner is a, 2)
    waiters = []
    for name in ("B", "C", "D"):
        w = k.fork(name, waiter)
        assert k.wait_until(sleeping_on(k, w, m), 2)  # queued before the next one starts
        waiters.append(w)
    assert m.waiter_pids() == [w.pid for w in waiters]
    go.complete()
    assert k.wait_until(lambda: len(order) == 3, 2)
    assert order == ["B", "C", "D"]


def test_killable_wait_returns_eintr_but_uninterruptible_ignores_sigkill(boot):
    k = boot()
    m = Mutex("inode_lock", k)
    release = Completion("release")
    results: dict[str, int] = {}

    def holder(t):
        with m:
            release.wait_for_completion()

    def killable(t):
        results["killable"] = m.lock_killable()
        return_to_user(t)

    def uninterruptible(t):
        m.lock()
        results["uninterruptible"] = 0
        m.unlock()
        return_to_user(t)  # the pending SIGKILL is noticed here, not before

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: m.owner is h, 2)
    kw = k.fork("killable", killable)
    uw = k.fork("uninterruptible", uninterruptible)
    assert k.wait_until(lambda: sleeping_on(k, kw, m)() and sleeping_on(k, uw, m)(), 2)
    send_sigkill(kw)
    send_sigkill(uw)
    assert k.wait_until(lambda: kw.state_letter == "X", 2)
    assert results["killable"] == -Errno.EINTR
    assert kw.exit_reason == "SIGKILL"
    # SIGKILL does not wake an uninterruptible sleeper.
    snap = k.snapshot().task(uw.pid)
    assert snap.state == "D" and snap.sigkill_pending and snap.waits_for == (h.pid,)
    assert m.waiter_pids() == [uw.pid]
    release.complete()
    assert k.wait_until(lambda: uw.state_letter == "X", 2)
    assert results["uninterruptible"] == 0 and uw.exit_reason == "SIGKILL"


def test_killable_context_manager_raises_sigkill(boot):
    k = boot()
    m = Mutex("m", k)
    release = Completion()
    entered = []

    def holder(t):
        with m:
            release.wait_for_completion()

    def victim(t):
        with m.killable():
            entered.append(True)

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: m.owner is h, 2)
    v = k.fork("victim", victim)
    assert k.wait_until(sleeping_on(k, v, m), 2)
    send_sigkill(v)
    assert k.wait_until(lambda: v.state_letter == "X", 2)
    assert v.exit_reason == "SIGKILL" and not entered
    release.complete()


def test_acquire_with_timeout_from_a_harness_thread(boot):
    k = boot()
    m = Mutex("m", k)
    release = Completion()

    def holder(t):
        with m:
            release.wait_for_completion()

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: m.owner is h, 2)
    assert not m.acquire(timeout=0.02)
    assert not m.acquire(blocking=False)
    with pytest.raises(ValueError):
        m.acquire(blocking=False, timeout=1)
    assert m.waiter_pids() == []  # the timed-out waiter left the queue
    release.complete()
    assert m.acquire(timeout=2)
    m.release()


def test_lock_dump_lists_holders_in_lockdep_format(boot):
    from kthreads import debug_show_all_locks
    from kthreads.kallsyms import ip_sym

    k = boot()
    a, b = Mutex("inode_lock", k), Mutex("i_mmap_lock", k)
    release = Completion()

    def holder(t):
        with a:
            with b:
                release.wait_for_completion()

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: b.owner is h, 2)
    lines = debug_show_all_locks(k)
    assert lines[:2] == ["", "Showing all locks held in the system:"]
    i = lines.index(f"2 locks held by holder/{h.pid}:")
    at = ip_sym("generic_file_write_iter", "mutex_lock_nested")  # taken by a task body
    assert lines[i + 1] == f" #0:  (inode_lock){{+.+.+.}}, at: {at}"
    assert lines[i + 2] == f" #1:  (i_mmap_lock){{+.+.+.}}, at: {at}"
    release.complete()
