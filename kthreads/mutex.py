"""``struct mutex``: sleeping lock with a single owner and FIFO hand-off."""

from __future__ import annotations

import sys
import threading
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from .cpu import monotonic, sched_point
from .errors import Errno, LockBug, SigKill
from .handoff import HandoffLock
from .lockdep import lock_acquired, lock_contended, lock_released
from .sched import (SleepResult, Task, TaskState, Waiter, current_holder, holder_name,
                    holder_pid)

if TYPE_CHECKING:
    from .kernel import Kernel


class Mutex(HandoffLock):
    """A kernel mutex.

    Unlock hands the mutex straight to the first waiter (FIFO), so a task that
    has just released it cannot barge back in ahead of the queue. The owner is
    always known, which is what the wait-for chain in a dump is built from.
    """

    kind = "mutex"

    def __init__(self, name: str = "mutex", kernel: "Kernel | None" = None) -> None:
        self.name = name
        self.owner: object = None
        # Protects owner and the wait list (the kernel's wait_lock spinlock).
        self._wait_lock = threading.Lock()
        self._waiters: deque[Waiter] = deque()
        self.lock_id = kernel.register_lock(self) if kernel is not None else 0

    def __repr__(self) -> str:
        return f"<mutex {self.name} owner={holder_name(self.owner) if self.owner else None}>"

    # -- kernel API ---------------------------------------------------------
    def lock(self) -> None:
        """mutex_lock(): sleeps TASK_UNINTERRUPTIBLE; SIGKILL cannot wake it."""
        self._lock(TaskState.TASK_UNINTERRUPTIBLE, None, sys._getframe(1).f_code)

    def lock_killable(self) -> int:
        """mutex_lock_killable(): 0, or -EINTR if SIGKILL arrived while waiting."""
        res = self._lock(TaskState.TASK_KILLABLE, None, sys._getframe(1).f_code)
        return 0 if res is SleepResult.WOKEN else -Errno.EINTR

    def trylock(self) -> bool:
        """mutex_trylock(): True if taken."""
        sched_point()
        me = current_holder()
        with self._wait_lock:
            if self.owner is not None or self._waiters:
                return False
            self.owner = me
        if isinstance(me, Task):
            lock_acquired(me, self, False, sys._getframe(1).f_code)
        return True

    def unlock(self) -> None:
        """mutex_unlock(): hand the mutex to the first waiter, if any."""
        sched_point()
        me = current_holder()
        with self._wait_lock:
            if self.owner is not me:
                raise LockBug(f"{holder_name(me)} unlocks mutex {self.name} owned by "
                              f"{holder_name(self.owner) if self.owner else 'nobody'}")
            self.owner = None
            woken = self._grant_locked()  # FIFO hand-off to the first waiter
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
        sched_point()
        me = current_holder()
        with self._wait_lock:
            if self.owner is None and not self._waiters:
                self.owner = me
                w = None
            elif self.owner is me:
                raise LockBug(f"possible recursive locking: {holder_name(me)} takes mutex "
                              f"{self.name} it already holds")
            else:
                w = Waiter(me)
                self._waiters.append(w)
        if w is not None:
            if isinstance(me, Task):
                lock_contended(me, self, False)
            res = self._wait_for_grant(w, state, deadline)
            if res is not SleepResult.WOKEN:
                return res
        if isinstance(me, Task):
            lock_acquired(me, self, False, at)
        return SleepResult.WOKEN

    def _grant_locked(self) -> list[Waiter]:
        if self.owner is not None or not self._waiters:
            return []
        nxt = self._waiters.popleft()
        self.owner = nxt.holder
        nxt.granted = True
        return [nxt]

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
