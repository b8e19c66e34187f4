"""lockdep's view of a task's locks (Linux 4.6): a lock the task is asleep
acquiring counts as held, since mutex_acquire()/rwsem_acquire*() come before
the sleep; ``task.held_locks`` keeps meaning the locks really held."""

import pytest

from kthreads import (Completion, Errno, LockBug, Mutex, RwSemaphore, debug_show_all_locks,
                      send_sigkill)
from kthreads.lockdep import debug_show_held_locks, lock_acquired_after_wait, lockdep_held
from util import exited


def asleep_on(task, lock):
    return lambda: task.state_letter == "D" and task.wchan is lock


def test_a_task_blocked_on_a_mutex_shows_it_as_held_in_lockdeps_dump(boot):
    k = boot()
    m = Mutex("inode_lock", k)
    release = Completion()

    def holder(t):
        with m:
            release.wait_for_completion()

    def victim(t):
        with m:
            pass

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: m.owner is h, 2)
    v = k.fork("victim", victim)
    assert k.wait_until(asleep_on(v, m), 2)
    assert v.held_locks == []  # really held: nothing
    assert [e[0] for e in lockdep_held(v)] == [m]
    assert debug_show_held_locks(v) == [f"1 lock held by victim/{v.pid}:",
                                        " #0: (inode_lock), at: victim"]
    lines = debug_show_all_locks(k)
    assert f"1 lock held by holder/{h.pid}:" in lines
    i = lines.index(f"1 lock held by victim/{v.pid}:")
    assert lines[i + 1] == " #0: (inode_lock), at: victim"
    release.complete()
    assert k.wait_until(exited(h, v), 2)
    assert v.lockdep_acquiring is None and v.held_locks == []
    assert debug_show_held_locks(v) == [f"no locks held by victim/{v.pid}."]


def test_the_waited_lock_comes_after_the_held_ones_and_moves_to_held_once_taken(boot):
    k = boot()
    inode, sem = Mutex("inode_lock", k), RwSemaphore("&mm->mmap_sem", k)
    release, hold_on = Completion(), Completion()

    def writer(t):
        sem.down_write()
        release.wait_for_completion()
        sem.up_write()

    def victim(t):
        with inode:
            sem.down_read()
            hold_on.wait_for_completion()
            sem.up_read()

    w = k.fork("writer", writer)
    assert k.wait_until(lambda: sem.owner is w, 2)
    v = k.fork("victim", victim)
    assert k.wait_until(asleep_on(v, sem), 2)
    assert debug_show_held_locks(v) == [f"2 locks held by victim/{v.pid}:",
                                        " #0: (inode_lock), at: victim",
                                        " #1: (&mm->mmap_sem), at: victim"]
    assert lockdep_held(v)[1][1] is True  # a read acquisition
    assert [e[0] for e in v.held_locks] == [inode]
    release.complete()
    assert k.wait_until(lambda: asleep_on(v, hold_on)(), 2)
    # Taken: the same entry is in held_locks now, listed once.
    assert v.lockdep_acquiring is None
    assert [e[0] for e in v.held_locks] == [inode, sem]
    assert debug_show_held_locks(v)[0] == f"2 locks held by victim/{v.pid}:"
    hold_on.complete()
    assert k.wait_until(exited(w, v), 2)


@pytest.mark.parametrize("kind", ["mutex", "rwsem_write", "rwsem_read"])
def test_a_killable_wait_that_fails_drops_the_lock_from_lockdeps_view(boot, kind):
    k = boot()
    lock = Mutex("m", k) if kind == "mutex" else RwSemaphore("sem", k)
    release = Completion()
    res: list[int] = []

    def holder(t):
        if kind == "mutex":
            lock.lock()
        else:
            lock.down_write()
        release.wait_for_completion()
        if kind == "mutex":
            lock.unlock()
        else:
            lock.up_write()

    def victim(t):
        if kind == "mutex":
            res.append(lock.lock_killable())
        elif kind == "rwsem_write":
            res.append(lock.down_write_killable())
        else:
            res.append(lock.down_read_killable())
        t.lockdep_after = debug_show_held_locks(t)

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: lock.owner is h, 2)
    v = k.fork("victim", victim)
    assert k.wait_until(asleep_on(v, lock), 2)
    assert debug_show_held_locks(v)[0] == f"1 lock held by victim/{v.pid}:"
    send_sigkill(v)
    assert k.wait_until(lambda: v.state_letter == "X", 2)
    assert res == [-Errno.EINTR]
    assert v.lockdep_after == [f"no locks held by victim/{v.pid}."]
    assert v.lockdep_acquiring is None
    release.complete()
    assert k.wait_until(exited(h), 2)


def test_acquiring_a_lock_the_task_was_not_waiting_for_is_a_model_bug(boot):
    k = boot()
    m = Mutex("m", k)
    t = k.fork("idle", lambda t: None)
    assert k.wait_until(exited(t), 2)
    with pytest.raises(LockBug, match="was not waiting for"):
        lock_acquired_after_wait(t, m)  # a model bug, reported, not silently recorded
    assert t.held_locks == [] and lockdep_held(t) == []
