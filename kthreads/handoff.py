"""What Mutex and RwSemaphore share: sleeping until a releaser hands the lock over."""

from __future__ import annotations

import threading
from collections import deque

from .sched import SleepResult, TaskState, Waiter, sleep_on


class HandoffLock:
    """A sleeping lock whose releaser grants it to queued waiters under
    ``_wait_lock``; subclasses say how to release an abandoned grant and what
    to grant when a waiter leaves the queue."""

    __slots__ = ()
    _wait_lock: threading.Lock
    _waiters: deque[Waiter]

    def _wait_for_grant(self, w: Waiter, state: TaskState, deadline: float | None) -> SleepResult:
        try:
            res = sleep_on(state, self, w.is_granted, deadline)
        except BaseException:
            # Unwinding (plug pulled): leave the queue, or pass on a lock
            # that was handed to us while we were being woken.
            self._abandon(w)
            raise
        if res is SleepResult.WOKEN:
            return res
        with self._wait_lock:
            # A release may have handed us the lock after the signal or the
            # deadline woke us: then we own it and must report success.
            if w.granted:
                return SleepResult.WOKEN
            self._waiters.remove(w)
            # A waiter leaving the head of the queue may unblock the ones
            # behind it (down_write_killable's failure path).
            woken = self._grant_locked() if self._waiters else []
        for x in woken:
            x.wake()
        return res

    def _abandon(self, w: Waiter) -> None:
        with self._wait_lock:
            if w.granted:
                self._ungrant_locked(w)
            else:
                self._waiters.remove(w)
            woken = self._grant_locked() if self._waiters else []
        for x in woken:
            x.wake()

    def _grant_locked(self) -> list[Waiter]:
        """Grant what the queue's head may have now; caller holds _wait_lock."""
        raise NotImplementedError

    def _ungrant_locked(self, w: Waiter) -> None:
        """Give back a grant its waiter will never use; caller holds _wait_lock."""
        raise NotImplementedError
