"""``struct mutex``: a sleeping lock with a single owner (Linux 4.6's
kernel/locking/mutex.c, read in a stored 4.6 copy), with 4.10's hand-off as
an option.

The kernel-named methods and functions follow 4.6 unless their docstrings
say otherwise; the Python API (``acquire``, ``with``, ``killable()``, real-
second deadlines) and the introspection methods are the lab's.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from .cpu import monotonic, sched_point
from .errors import Errno, LockBug, SigKill
from .handoff import SleepingLock, handoff_for
from .lockdep import lock_acquired, lock_released
from .sched import (SleepResult, Task, TaskState, Waiter, current_holder, holder_name,
                    holder_pid)

if TYPE_CHECKING:
    from .kernel import Kernel


class Mutex(SleepingLock):
    """A kernel mutex, as Linux 4.6 has it (``handoff=False``, the default).

    * ``mutex_unlock()`` frees the mutex and *wakes* the first waiter; it
      does not give it the mutex. The woken waiter retries when it runs
      (the ``for (;;)`` loop of ``__mutex_lock_common``), and a task that
      comes first takes the mutex: a ``mutex_trylock()`` or a ``mutex_lock()``
      whose fast path finds it free. The loser sleeps again and keeps its
      place at the head of ``wait_list`` (4.6 removes a waiter from the list
      only once it has the mutex, or gives up on a signal).
    * 4.6's optimistic spinning (``mutex_optimistic_spin``, spinning on a
      running owner) is not modelled: a newcomer takes a free mutex or
      queues. Spinning only widens the window in which a newcomer steals.
    * ``handoff=True``: Linux 4.10's hand-off ("locking/mutex: Add lock
      handoff to avoid starvation"), in its strongest form. 4.10 hands the
      mutex over only after the top waiter was woken and lost once; the
      model grants it to the first waiter at every unlock, so a trylock
      fails while anybody waits and nobody overtakes the queue.

    The owner is always known, which is what the wait-for chain in a dump
    is built from. A task asleep in ``lock()`` lists the mutex in lockdep's
    dumps already (4.6's ``mutex_acquire()`` comes before the sleep), not in
    ``held_locks`` (see ``lockdep``).
    """

    kind = "mutex"

    def __init__(self, name: str = "mutex", kernel: "Kernel | None" = None,
                 handoff: bool | None = None) -> None:
        self.name = name
        self.owner: object = None
        # Protects owner and the wait list (the kernel's wait_lock spinlock).
        self._wait_lock = threading.Lock()
        self._waiters: deque[Waiter] = deque()
        self._unrun: set[Waiter] = set()  # see SleepingLock
        self.handoff = handoff_for(kernel, "mutex_handoff") if handoff is None else handoff
        self.lock_id = kernel.register_lock(self) if kernel is not None else 0

    def __repr__(self) -> str:
        return f"<mutex {self.name} owner={holder_name(self.owner) if self.owner else None}>"

    # -- kernel API ---------------------------------------------------------
    def lock(self) -> None:
        """mutex_lock(): sleeps TASK_UNINTERRUPTIBLE; SIGKILL cannot wake it."""
        self._lock(TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(1).f_code)

    def lock_killable(self) -> int:
        """mutex_lock_killable(): 0, or -EINTR if SIGKILL arrived while waiting
        (with the mutex free it is taken, signal or not, as in 4.6)."""
        res = self._lock(TaskState.TASK_KILLABLE, None, sys._getframe(1).f_code)
        return 0 if res is SleepResult.WOKEN else -Errno.EINTR

    def trylock(self) -> bool:
        """mutex_trylock(): True if taken. 4.6 takes a free mutex even while
        waiters are queued (a woken one has not run yet); with hand-off a
        queued waiter is served first."""
        sched_point()
        me = current_holder()
        with self._wait_lock:
            if self.owner is not None or (self.handoff and self._waiters):
                return False
            self.owner = me
        if isinstance(me, Task):
            lock_acquired(me, self, False, sys._getframe(1).f_code)
        return True

    def unlock(self) -> None:
        """mutex_unlock(): free the mutex and wake the first waiter (4.6), or
        hand the mutex to it (hand-off)."""
        sched_point()
        me = current_holder()
        with self._wait_lock:
            if self.owner is not me:
                raise LockBug(f"{holder_name(me)} unlocks mutex {self.name} owned by "
                              f"{holder_name(self.owner) if self.owner else 'nobody'}")
            self.owner = None
            woken = self._wake_locked() if self._waiters else ()
        if isinstance(me, Task):
            lock_released(me, self)
        for w in woken:
            w.wake()

    def is_locked(self) -> bool:
        return self.owner is not None

    # -- Python API ---------------------------------------------------------
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """threading.Lock-style: uninterruptible, ``timeout`` in real seconds."""
        at = sys._getframe(1).f_code
        if not blocking:
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            return self.trylock()
        deadline = None if timeout is None or timeout < 0 else monotonic() + timeout
        return self._lock(TaskState.TASK_UNINTERRUPTIBLE, deadline, at) is SleepResult.WOKEN

    def release(self) -> None:
        self.unlock()

    def __enter__(self) -> "Mutex":
        self._lock(TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(1).f_code)
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    @contextmanager
    def killable(self) -> Iterator["Mutex"]:
        """``with m.killable():`` takes it with lock_killable; SIGKILL raises SigKill."""
        if self._lock(TaskState.TASK_KILLABLE, None, sys._getframe(2).f_code) \
                is not SleepResult.WOKEN:
            raise SigKill()
        try:
            yield self
        finally:
            self.unlock()

    # -- introspection ------------------------------------------------------
    def owner_pids(self) -> list[int]:
        pid = holder_pid(self.owner)
        return [pid] if pid is not None else []

    def waiter_pids(self) -> list[int]:
        return [p for p in (holder_pid(w.holder) for w in list(self._waiters)) if p is not None]

    def holders(self) -> list[object]:
        return [self.owner] if self.owner is not None else []

    # -- internals ----------------------------------------------------------
    def _lock(self, state: TaskState, deadline: float | None, at: object) -> SleepResult:
        """__mutex_lock_common() (4.6): take a free mutex, else queue at the
        tail and sleep until the mutex is ours (see the class docstring)."""
        sched_point()
        if self._unrun:
            self._let_granted_run()
        me = current_holder()
        with self._wait_lock:
            if self.owner is None and not (self.handoff and self._waiters):
                self.owner = me
                w = None
            elif self.owner is me:
                raise LockBug(f"possible recursive locking: {holder_name(me)} takes mutex "
                              f"{self.name} it already holds")
            else:
                w = Waiter(me)
                self._waiters.append(w)
        if w is not None:
            return self._sleep_for(w, False, state, deadline, at)
        if isinstance(me, Task):
            lock_acquired(me, self, False, at)
        return SleepResult.WOKEN

    def _try_take_locked(self, w: Waiter) -> bool:
        """A woken waiter's retry (4.6): the mutex is its if nobody has it."""
        if self.owner is None:
            self.owner = w.holder
            return True
        return False

    def _wake_locked(self) -> list[Waiter]:
        if self.owner is not None or not self._waiters:
            return []
        nxt = self._waiters[0]
        if self.handoff:
            self._waiters.popleft()
            self.owner = nxt.holder
            self._grant_locked(nxt)
        return [nxt]  # 4.6: woken, still queued; it takes the mutex itself if it can

    def _ungrant_locked(self, w: Waiter) -> None:
        self.owner = None


def mutex_lock(m: Mutex) -> None:
    m.lock()


def mutex_lock_killable(m: Mutex) -> int:
    return m.lock_killable()


def mutex_trylock(m: Mutex) -> bool:
    return m.trylock()


def mutex_unlock(m: Mutex) -> None:
    m.unlock()
