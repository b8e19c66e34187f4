"""rw_semaphore (mmap_sem): trylock rules, FIFO queue and reader grants, killable waits,
exclusion (4.6 and hand-off). Wake-then-compete itself: test_lock_handoff.py."""

import random
import threading

import pytest

from kthreads import Completion, Errno, LockBug, RwSemaphore, send_sigkill


def in_d_on(task, sem):
    return lambda: task.state_letter == "D" and task.wchan is sem


def hold(sem, mode, release: Completion):
    def body(t):
        if mode == "w":
            sem.down_write()
            release.wait_for_completion()
            sem.up_write()
        else:
            sem.down_read()
            release.wait_for_completion()
            sem.up_read()
    return body


def test_read_trylock_fails_while_a_writer_holds(boot):
    k = boot()
    sem = RwSemaphore("&mm->mmap_sem", k)
    release = Completion()
    w = k.fork("writer", hold(sem, "w", release))
    assert k.wait_until(lambda: sem.owner is w, 2)
    assert not sem.down_read_trylock()
    assert not sem.acquire_read(blocking=False)
    assert not sem.down_write_trylock()
    release.complete()
    assert k.wait_until(lambda: sem.owner is None, 2)
    assert sem.down_read_trylock()
    sem.up_read()


def test_a_queued_writer_makes_read_trylock_fail_and_new_readers_wait(boot):
    k = boot()
    sem = RwSemaphore("&mm->mmap_sem", k)
    release_r, release_w = Completion(), Completion()
    r = k.fork("reader", hold(sem, "r", release_r))
    assert k.wait_until(lambda: r in sem.readers(), 2)
    assert sem.down_read_trylock()  # readers share while nobody queues
    sem.up_read()
    w = k.fork("writer", hold(sem, "w", release_w))
    assert k.wait_until(in_d_on(w, sem), 2)
    assert sem.has_queued_writer()
    # The writer only waits, yet a new reader can neither trylock nor get in.
    assert not sem.down_read_trylock()
    r2 = k.fork("reader2", hold(sem, "r", release_r))
    assert k.wait_until(in_d_on(r2, sem), 2)
    assert sem.waiter_pids() == [w.pid, r2.pid]
    release_r.complete()  # first reader leaves -> writer, then reader2
    assert k.wait_until(lambda: sem.owner is w, 2)
    assert r2.state_letter == "D"
    release_w.complete()
    assert k.wait_until(lambda: r2 in sem.readers(), 2)
    release_r.complete()


def test_readers_at_the_head_are_granted_together_up_to_a_writer(boot):
    k = boot()
    sem = RwSemaphore("sem", k)
    rel_w, rel_r, rel_w2 = Completion(), Completion(), Completion()
    w = k.fork("w", hold(sem, "w", rel_w))
    assert k.wait_until(lambda: sem.owner is w, 2)
    readers = []
    for i in range(3):
        r = k.fork(f"r{i}", hold(sem, "r", rel_r))
        assert k.wait_until(in_d_on(r, sem), 2)
        readers.append(r)
    w2 = k.fork("w2", hold(sem, "w", rel_w2))
    assert k.wait_until(in_d_on(w2, sem), 2)
    late = k.fork("late", hold(sem, "r", rel_r))
    assert k.wait_until(in_d_on(late, sem), 2)
    rel_w.complete()
    assert k.wait_until(lambda: set(sem.readers()) == set(readers), 2)
    assert sem.waiter_pids() == [w2.pid, late.pid]  # FIFO: late stays behind w2
    rel_r.complete_all()
    assert k.wait_until(lambda: sem.owner is w2, 2)
    rel_w2.complete()
    assert k.wait_until(lambda: not sem.holders() and not sem.waiter_pids(), 2)


def test_down_write_killable_returns_eintr_and_lets_the_readers_behind_it_in(boot):
    k = boot()
    sem = RwSemaphore("sem", k)
    rel = Completion()
    results = {}
    r = k.fork("reader", hold(sem, "r", rel))
    assert k.wait_until(lambda: r in sem.readers(), 2)

    def killable_writer(t):
        results["w"] = sem.down_write_killable()

    w = k.fork("writer", killable_writer)
    assert k.wait_until(in_d_on(w, sem), 2)
    r2 = k.fork("reader2", hold(sem, "r", rel))
    assert k.wait_until(in_d_on(r2, sem), 2)
    send_sigkill(w)
    assert k.wait_until(lambda: w.state_letter == "X", 2)
    assert results["w"] == -Errno.EINTR
    # With the writer gone from the queue, reader2 joins the first reader.
    assert k.wait_until(lambda: r2 in sem.readers(), 2)
    rel.complete_all()


def test_down_read_uninterruptible_ignores_sigkill_but_killable_does_not(boot):
    k = boot()
    sem = RwSemaphore("sem", k)
    rel = Completion()
    results = {}
    w = k.fork("writer", hold(sem, "w", rel))
    assert k.wait_until(lambda: sem.owner is w, 2)

    def killable_reader(t):
        results["k"] = sem.down_read_killable()

    def reader(t):
        sem.down_read()
        results["d"] = 0
        sem.up_read()

    a = k.fork("a", killable_reader)
    b = k.fork("b", reader)
    assert k.wait_until(lambda: in_d_on(a, sem)() and in_d_on(b, sem)(), 2)
    send_sigkill(a)
    send_sigkill(b)
    assert k.wait_until(lambda: a.state_letter == "X", 2)
    assert results["k"] == -Errno.EINTR
    assert b.state_letter == "D" and "d" not in results
    rel.complete()
    assert k.wait_until(lambda: b.state_letter == "X", 2)
    assert results["d"] == 0


def test_python_names_context_managers_and_timeouts(boot):
    k = boot()
    sem = RwSemaphore("sem", k)
    with sem.read():
        assert sem.readers() == [threading.current_thread()]
        assert not sem.acquire_write(timeout=0.01)
        assert sem.acquire_read(timeout=0.01)
        sem.release_read()
    with sem.write():
        assert sem.is_write_locked()
        with pytest.raises(LockBug, match="recursive"):
            sem.acquire_read(timeout=0.01)
        got = []
        other = threading.Thread(target=lambda: got.append(sem.acquire_read(timeout=0.01)))
        other.start()
        other.join(5)
        assert got == [False] and not sem.waiter_pids()
    assert sem.acquire_write(blocking=False)
    sem.release_write()
    with pytest.raises(ValueError):
        sem.acquire_read(blocking=False, timeout=1)
    with pytest.raises(LockBug):
        sem.release_read()
    with pytest.raises(LockBug):
        sem.release_write()


@pytest.mark.parametrize("handoff", [False, True])
def test_exclusion_holds_under_an_8_thread_randomized_stress(boot, handoff):
    """8 tasks, random mix of read/write/trylock/killable ops; every critical
    section checks that no writer overlaps any other holder."""
    k = boot()
    sem = RwSemaphore("sem", k, handoff=handoff)
    inside = {"r": 0, "w": 0}
    guard = threading.Lock()
    violations: list[str] = []
    ops_done = [0] * 8
    start = Completion("start")

    def enter(mode):
        with guard:
            inside[mode] += 1
            if inside["w"] > 1 or (inside["w"] and inside["r"]):
                violations.append(f"{mode}: {dict(inside)} writer={sem.owner} readers={sem.readers()}")

    def leave(mode):
        with guard:
            inside[mode] -= 1

    def worker(i):
        def body(t):
            rng = random.Random(1000 + i)
            start.wait_for_completion()
            for _ in range(1500):
                op = rng.random()
                if op < 0.55:
                    sem.down_read(); enter("r"); leave("r"); sem.up_read()
                elif op < 0.75:
                    if sem.down_read_trylock():
                        enter("r"); leave("r"); sem.up_read()
                elif op < 0.90:
                    sem.down_write(); enter("w"); leave("w"); sem.up_write()
                elif op < 0.95:
                    if sem.down_write_trylock():
                        enter("w"); leave("w"); sem.up_write()
                else:
                    if sem.down_write_killable() == 0:
                        enter("w"); leave("w"); sem.up_write()
                ops_done[i] += 1
        return body

    tasks = [k.fork(f"w{i}", worker(i)) for i in range(8)]
    start.complete_all()
    assert k.wait_until(lambda: all(t.state_letter == "X" for t in tasks), 25)
    assert violations == []
    assert ops_done == [1500] * 8
    assert not sem.holders() and not sem.waiter_pids()
    assert not sem._unrun  # every grant was picked up
    assert all(t.exit_reason == "exit" for t in tasks)
    assert k.check_invariants() == []
