"""``struct rw_semaphore`` (mmap_sem): readers-writer semaphore.

Semantics the OOM reaper story depends on:

* waiters are served FIFO;
* a *queued* writer makes new readers wait and makes ``down_read_trylock``
  fail (in the kernel the waiting bias turns the count negative), which is
  how a writer stuck behind a reader that loops in the allocator also
  defeats the reaper;
* on release, a writer at the head of the queue gets the lock alone;
  readers at the head are all granted together, up to the first writer.

Ownership is handed to waiters under ``_wait_lock``, so a woken waiter never
has to race for the lock again.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from .cpu import monotonic, sched_point
from .errors import Errno, LockBug
from .handoff import HandoffLock
from .lockdep import lock_acquired, lock_contended, lock_released
from .sched import (SleepResult, Task, TaskState, Waiter, this_thread, current_holder, holder_name,
                    holder_pid)

if TYPE_CHECKING:
    from .kernel import Kernel


class RwSemaphore(HandoffLock):
    kind = "rw_semaphore"

    __slots__ = ("name", "owner", "_readers", "_waiters", "_wait_lock", "lock_id", "__weakref__")

    def __init__(self, name: str = "rw_semaphore", kernel: "Kernel | None" = None) -> None:
        self.name = name
        self.owner: object = None  # the writer, if write-held
        # Readers, once per hold (a recursive read appears twice). A list:
        # append/remove are the cheapest bookkeeping on the read fast path.
        self._readers: list[object] = []
        self._waiters: deque[Waiter] = deque()
        # Protects owner, _readers and _waiters. Every grant happens under it,
        # so "writer xor readers" is decided in one place at a time.
        self._wait_lock = threading.Lock()
        self.lock_id = kernel.register_lock(self) if kernel is not None else 0

    def __repr__(self) -> str:
        return (f"<rwsem {self.name} writer={holder_name(self.owner) if self.owner else None} "
                f"readers={len(self._readers)} waiters={len(self._waiters)}>")

    # -- read side ----------------------------------------------------------
    def down_read_trylock(self) -> bool:
        sched_point()
        try:
            me = this_thread.holder
        except AttributeError:
            me = current_holder()
        wl = self._wait_lock
        wl.acquire()
        if self.owner is None and not self._waiters:
            self._readers.append(me)
            wl.release()
            if me.__class__ is Task:
                lock_acquired(me, self, True, sys._getframe(1).f_code)
            return True
        wl.release()
        return False

    def down_read(self) -> None:
        """Sleeps TASK_UNINTERRUPTIBLE behind a writer or a queued writer."""
        sched_point()
        try:
            me = this_thread.holder
        except AttributeError:
            me = current_holder()
        wl = self._wait_lock
        wl.acquire()
        if self.owner is None and not self._waiters:  # fast path, as the trylock
            self._readers.append(me)
            wl.release()
            if me.__class__ is Task:
                lock_acquired(me, self, True, sys._getframe(1).f_code)
            return
        wl.release()
        self._down(False, TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(1).f_code)

    def down_read_killable(self) -> int:
        res = self._down(False, TaskState.TASK_KILLABLE, None, sys._getframe(1).f_code)
        return 0 if res is SleepResult.WOKEN else -Errno.EINTR

    def up_read(self) -> None:
        sched_point()
        try:
            me = this_thread.holder
        except AttributeError:
            me = current_holder()
        wl = self._wait_lock
        wl.acquire()
        rd = self._readers
        try:
            rd.remove(me)
        except ValueError:
            wl.release()
            raise LockBug(f"{holder_name(me)} up_read()s {self.name} it does not hold for read") from None
        woken = self._grant_locked() if not rd and self._waiters else None
        wl.release()
        if me.__class__ is Task:
            lock_released(me, self)
        if woken:
            for w in woken:
                w.wake()

    # -- write side ---------------------------------------------------------
    def down_write_trylock(self) -> bool:
        sched_point()
        me = current_holder()
        with self._wait_lock:
            if self.owner is not None or self._readers or self._waiters:
                return False
            self.owner = me
        if isinstance(me, Task):
            lock_acquired(me, self, False, sys._getframe(1).f_code)
        return True

    def down_write(self) -> None:
        sched_point()
        try:
            me = this_thread.holder
        except AttributeError:
            me = current_holder()
        wl = self._wait_lock
        wl.acquire()
        if self.owner is None and not self._readers and not self._waiters:
            self.owner = me
            wl.release()
            if me.__class__ is Task:
                lock_acquired(me, self, False, sys._getframe(1).f_code)
            return
        wl.release()
        self._down(True, TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(1).f_code)

    def down_write_killable(self) -> int:
        res = self._down(True, TaskState.TASK_KILLABLE, None, sys._getframe(1).f_code)
        return 0 if res is SleepResult.WOKEN else -Errno.EINTR

    def up_write(self) -> None:
        sched_point()
        try:
            me = this_thread.holder
        except AttributeError:
            me = current_holder()
        wl = self._wait_lock
        wl.acquire()
        if self.owner is not me:
            wl.release()
            raise LockBug(f"{holder_name(me)} up_write()s {self.name} written by "
                          f"{holder_name(self.owner) if self.owner else 'nobody'}")
        self.owner = None
        woken = self._grant_locked() if self._waiters else None
        wl.release()
        if me.__class__ is Task:
            lock_released(me, self)
        if woken:
            for w in woken:
                w.wake()

    # -- Python API ---------------------------------------------------------
    def acquire_read(self, blocking: bool = True, timeout: float = -1) -> bool:
        """``timeout`` in real seconds, as threading's; waits uninterruptibly."""
        at = sys._getframe(1).f_code
        if not blocking:
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            return self.down_read_trylock()
        return self._down(False, TaskState.TASK_UNINTERRUPTIBLE, _deadline(timeout), at) \
            is SleepResult.WOKEN

    def acquire_write(self, blocking: bool = True, timeout: float = -1) -> bool:
        at = sys._getframe(1).f_code
        if not blocking:
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            return self.down_write_trylock()
        return self._down(True, TaskState.TASK_UNINTERRUPTIBLE, _deadline(timeout), at) \
            is SleepResult.WOKEN

    def release_read(self) -> None:
        self.up_read()

    def release_write(self) -> None:
        self.up_write()

    @contextmanager
    def read(self) -> Iterator["RwSemaphore"]:
        self._down(False, TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(2).f_code)
        try:
            yield self
        finally:
            self.up_read()

    @contextmanager
    def write(self) -> Iterator["RwSemaphore"]:
        self._down(True, TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(2).f_code)
        try:
            yield self
        finally:
            self.up_write()

    # -- introspection ------------------------------------------------------
    def readers(self) -> list[object]:
        return list(dict.fromkeys(self._readers))

    def holders(self) -> list[object]:
        return [self.owner] if self.owner is not None else self.readers()

    def owner_pids(self) -> list[int]:
        return [p for p in (holder_pid(h) for h in self.holders()) if p is not None]

    def waiter_pids(self) -> list[int]:
        return [p for p in (holder_pid(w.holder) for w in list(self._waiters)) if p is not None]

    def has_queued_writer(self) -> bool:
        return any(w.write for w in list(self._waiters))

    def is_write_locked(self) -> bool:
        return self.owner is not None

    # -- internals ----------------------------------------------------------
    def _down(self, write: bool, state: TaskState, deadline: float | None, at: object) -> SleepResult:
        sched_point()
        me = current_holder()
        with self._wait_lock:
            if self.owner is me:
                raise LockBug(f"possible recursive locking: {holder_name(me)} takes "
                              f"{self.name} it holds for write")
            if write:
                free = self.owner is None and not self._readers and not self._waiters
                if free:
                    self.owner = me
            else:
                free = self.owner is None and not self._waiters
                if free:
                    self._readers.append(me)
            w = None
            if not free:
                w = Waiter(me, write)
                self._waiters.append(w)
        if w is not None:
            if isinstance(me, Task):
                lock_contended(me, self, not write)
            res = self._wait_for_grant(w, state, deadline)
            if res is not SleepResult.WOKEN:
                return res
        if isinstance(me, Task):
            lock_acquired(me, self, not write, at)
        return SleepResult.WOKEN

    def _ungrant_locked(self, w: Waiter) -> None:
        if w.write:
            self.owner = None
        else:
            self._readers.remove(w.holder)

    def _grant_locked(self) -> list[Waiter]:
        """Grant the lock to the head of the queue; caller holds _wait_lock."""
        if self.owner is not None or not self._waiters:
            return []
        q = self._waiters
        if q[0].write:
            if self._readers:
                return []
            w = q.popleft()
            self.owner = w.holder
            w.granted = True
            return [w]
        granted = []
        rd = self._readers
        while q and not q[0].write:
            w = q.popleft()
            rd.append(w.holder)
            w.granted = True
            granted.append(w)
        return granted


def _deadline(timeout: float | None) -> float | None:
    if timeout is None or timeout < 0:
        return None
    return monotonic() + timeout


def down_read(sem: RwSemaphore) -> None:
    sem.down_read()


def down_read_trylock(sem: RwSemaphore) -> bool:
    return sem.down_read_trylock()


def down_read_killable(sem: RwSemaphore) -> int:
    return sem.down_read_killable()


def up_read(sem: RwSemaphore) -> None:
    sem.up_read()


def down_write(sem: RwSemaphore) -> None:
    sem.down_write()


def down_write_trylock(sem: RwSemaphore) -> bool:
    return sem.down_write_trylock()


def down_write_killable(sem: RwSemaphore) -> int:
    return sem.down_write_killable()


def up_write(sem: RwSemaphore) -> None:
    sem.up_write()
