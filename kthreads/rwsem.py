"""``struct rw_semaphore`` (mmap_sem): readers-writer semaphore, as Linux
4.6's rwsem-xadd (kernel/locking/rwsem-xadd.c) has it, with 5.3's hand-off
as an option.

Semantics the OOM reaper story depends on:

* waiters queue FIFO;
* a *queued* task makes new readers wait and makes ``down_read_trylock``
  fail (in the kernel the waiting bias turns the count negative), which is
  how a writer stuck behind a reader that loops in the allocator also
  defeats the reaper;
* on release, the readers at the head of the queue are granted the lock
  together, up to the first writer, by the releaser (4.6's
  ``__rwsem_do_wake`` adds their read bias and clears ``waiter->task``
  before it wakes them: they never race for it);
* a writer at the head is only *woken* (``__rwsem_do_wake``: "do not grant
  it the lock yet as we want other writers to be able to steal it"). It
  takes the lock itself when it runs (``rwsem_try_write_lock`` in the loop
  of ``rwsem_down_write_failed``), and a ``down_write`` that comes first
  takes it instead (its optimistic spin or its own first
  ``rwsem_try_write_lock``); the woken writer then sleeps again and keeps
  its place at the head, since a 4.6 writer leaves ``wait_list`` only once
  it has the lock. A reader does not steal: the waiting bias sends it to the
  queue. ``down_write_trylock`` does not steal either: it wants the count
  at 0, and the queued writer keeps the waiting bias in it.

``handoff=True`` is Linux 5.3's hand-off ("locking/rwsem: Implement lock
handoff to prevent lock starvation"), in its strongest form: the releaser
grants the lock to a writer at the head as well, so nobody overtakes the
queue (5.3 hands off only once the first waiter has waited about 4 ms).

Not modelled: 4.6's optimistic spinning of writers on a running writer
(it only widens the window in which a newcomer writer steals). A waiter
that leaves the queue (deadline, or the killable variants' signal) wakes
the queue behind it whatever it was; 4.7's ``down_write_killable`` does
that, 4.15's ``down_read_killable`` only drops the waiting bias when it was
the last (harmless extra wake-ups). Sources: a stored copy of 4.6's
mutex.c, and rwsem-xadd.c as of 3.15 plus recollection of the 4.6 changes
(4.6's own file could not be read here): the reader grant and the writer
wake above are the same in both.

Lockdep: a task asleep in ``down_read``/``down_write`` lists the rwsem in
lockdep's dumps already (4.6's ``rwsem_acquire[_read]()`` comes before the
sleep), not in ``held_locks`` (see ``lockdep``).

The Python API (``acquire_read``, ``read()``, ``write()``, deadlines) and
the introspection methods are the lab's; the kernel-named ones follow 4.6
unless their docstrings say otherwise.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from .cpu import monotonic, sched_point
from .errors import Errno, LockBug
from .handoff import SleepingLock, handoff_for
from .lockdep import lock_acquired, lock_released
from .sched import (SleepResult, Task, TaskState, Waiter, this_thread, current_holder, holder_name,
                    holder_pid)

if TYPE_CHECKING:
    from .kernel import Kernel


class RwSemaphore(SleepingLock):
    """An rw_semaphore: 4.6's by default, 5.3's hand-off with ``handoff=True``
    (or a policy's ``rwsem_handoff``); see the module docstring."""

    kind = "rw_semaphore"

    __slots__ = ("name", "owner", "_readers", "_waiters", "_wait_lock", "handoff", "lock_id",
                 "_unrun", "__weakref__")

    def __init__(self, name: str = "rw_semaphore", kernel: "Kernel | None" = None,
                 handoff: bool | None = None) -> None:
        self.name = name
        self.owner: object = None  # the writer, if write-held
        # Readers, once per hold (a recursive read appears twice). A list:
        # append/remove are the cheapest bookkeeping on the read fast path.
        self._readers: list[object] = []
        self._waiters: deque[Waiter] = deque()
        # Protects owner, _readers and _waiters. Every grant and every take
        # happens under it, so "writer xor readers" is decided in one place
        # at a time.
        self._wait_lock = threading.Lock()
        # False: 4.6, a release only wakes a writer at the head, who then
        # competes for the lock; True: 5.3's hand-off (module docstring).
        self.handoff = handoff_for(kernel, "rwsem_handoff") if handoff is None else handoff
        self._unrun: set[Waiter] = set()  # see SleepingLock
        self.lock_id = kernel.register_lock(self) if kernel is not None else 0

    def __repr__(self) -> str:
        return (f"<rwsem {self.name} writer={holder_name(self.owner) if self.owner else None} "
                f"readers={len(self._readers)} waiters={len(self._waiters)}>")

    # -- read side ----------------------------------------------------------
    def down_read_trylock(self) -> bool:
        """down_read_trylock() (4.6): fails while a writer holds the lock or
        anybody is queued (the waiting bias makes the count negative)."""
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
        """down_read() (4.6): sleeps TASK_UNINTERRUPTIBLE behind a writer or
        any queued task, until a release grants it the lock."""
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
        """down_read_killable(): 0, or -EINTR if SIGKILL came while waiting.
        Not in 4.6: it came in Linux 4.15 (76f8507f7a64, "locking/rwsem: Add
        down_read_killable()", v4.14-rc4-65; why it was added was not
        verified at the source); the model offers it for the later designs."""
        res = self._down(False, TaskState.TASK_KILLABLE, None, sys._getframe(1).f_code)
        return 0 if res is SleepResult.WOKEN else -Errno.EINTR

    def up_read(self) -> None:
        """up_read(): the last reader out wakes the queue (4.6's rwsem_wake)."""
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
        woken = self._wake_locked() if not rd and self._waiters else None
        wl.release()
        if me.__class__ is Task:
            lock_released(me, self)
        if woken:
            for w in woken:
                w.wake()

    # -- write side ---------------------------------------------------------
    def down_write_trylock(self) -> bool:
        """down_write_trylock() (4.6): only from a count of 0, so not while
        anybody holds the lock or waits for it."""
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
        """down_write() (4.6): takes a lock nobody holds even when a woken
        writer is queued (the steal); otherwise queues, TASK_UNINTERRUPTIBLE."""
        sched_point()
        try:
            me = this_thread.holder
        except AttributeError:
            me = current_holder()
        wl = self._wait_lock
        wl.acquire()
        if self.owner is None and not self._readers and not (self._waiters and self.handoff):
            self.owner = me
            wl.release()
            if me.__class__ is Task:
                lock_acquired(me, self, False, sys._getframe(1).f_code)
            return
        wl.release()
        self._down(True, TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(1).f_code)

    def down_write_killable(self) -> int:
        """down_write_killable(): 0, or -EINTR if SIGKILL came while waiting.
        Not in 4.6: it came in Linux 4.7 (916633a40370, Michal Hocko, so that
        mmap_sem writers can be killed; id not re-verified); the model offers
        it for the later designs."""
        res = self._down(True, TaskState.TASK_KILLABLE, None, sys._getframe(1).f_code)
        return 0 if res is SleepResult.WOKEN else -Errno.EINTR

    def up_write(self) -> None:
        """up_write(): wakes the queue (4.6's rwsem_wake, __rwsem_do_wake)."""
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
        woken = self._wake_locked() if self._waiters else None
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
        """The slow paths, rwsem_down_read_failed() and
        rwsem_down_write_failed() (4.6), after one more look at the lock."""
        sched_point()
        if self._unrun:
            self._let_granted_run()
        me = current_holder()
        woken: list[Waiter] = []
        with self._wait_lock:
            if self.owner is me:
                raise LockBug(f"possible recursive locking: {holder_name(me)} takes "
                              f"{self.name} it holds for write")
            q = self._waiters
            if write:
                # 4.6: a writer takes a lock nobody holds, queue or not
                # (rwsem_try_write_lock needs only "no active lockers").
                free = self.owner is None and not self._readers and not (q and self.handoff)
                if free:
                    self.owner = me
            else:
                free = self.owner is None and not q
                if free:
                    self._readers.append(me)
            w = None
            if not free:
                w = Waiter(me, write)
                q.append(w)
                if self.owner is None and (len(q) > 1 if write else
                                           not self._readers or len(q) == 1):
                    # A writer queueing behind others while readers hold the
                    # lock lets the readers at the head join them (4.6's
                    # RWSEM_WAKE_READERS); a reader queueing while nobody
                    # holds it wakes the head (RWSEM_WAKE_ANY).
                    woken = self._wake_locked()
        for x in woken:
            x.wake()
        if w is not None:
            return self._sleep_for(w, not write, state, deadline, at)
        if isinstance(me, Task):
            lock_acquired(me, self, not write, at)
        return SleepResult.WOKEN

    def _competes(self, w: Waiter) -> bool:
        return w.write  # 4.6 readers are granted by the waker; writers take it

    def _try_take_locked(self, w: Waiter) -> bool:
        """A woken writer's retry, rwsem_try_write_lock() (4.6): the lock is
        its if nobody holds it, wherever it stands in the queue."""
        if self.owner is None and not self._readers:
            self.owner = w.holder
            return True
        return False

    def _ungrant_locked(self, w: Waiter) -> None:
        if w.write:
            self.owner = None
        else:
            self._readers.remove(w.holder)

    def _wake_locked(self) -> list[Waiter]:
        """__rwsem_do_wake() (4.6), the caller holding _wait_lock: readers at
        the head are granted together, up to the first writer; a writer at
        the head is woken once nobody holds the lock, and granted it too
        only with hand-off."""
        q = self._waiters
        if self.owner is not None or not q:
            return []
        head = q[0]
        if head.write:
            if self._readers:
                return []
            if self.handoff:
                q.popleft()
                self.owner = head.holder
                self._grant_locked(head)
            return [head]
        granted = []
        rd = self._readers
        while q and not q[0].write:
            w = q.popleft()
            rd.append(w.holder)
            self._grant_locked(w)
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
    """Not in 4.6 (4.15): see ``RwSemaphore.down_read_killable``."""
    return sem.down_read_killable()


def up_read(sem: RwSemaphore) -> None:
    sem.up_read()


def down_write(sem: RwSemaphore) -> None:
    sem.down_write()


def down_write_trylock(sem: RwSemaphore) -> bool:
    return sem.down_write_trylock()


def down_write_killable(sem: RwSemaphore) -> int:
    """Not in 4.6 (4.7): see ``RwSemaphore.down_write_killable``."""
    return sem.down_write_killable()


def up_write(sem: RwSemaphore) -> None:
    sem.up_write()
