"""What Mutex and RwSemaphore share: a wait queue, and the two ways a
released lock can reach a queued waiter. ``SleepingLock`` is the lab's
machinery; the two modes stand for the kernel versions named below.

* **Wake, then compete** (Linux 4.6, the default): the releaser only wakes
  the waiter at the head of the queue. The woken task takes the lock itself
  when it runs, and whoever comes first (a trylock, a fresh lock call) may
  take it before; the loser goes back to sleep where it was in the queue.
  4.6's ``struct mutex`` works this way for every waiter, 4.6's rwsem-xadd
  for writers (``__rwsem_do_wake`` grants *readers* on the waker's side even
  in 4.6: see ``RwSemaphore``).
* **Hand-off** (``handoff=True``): the releaser grants the lock to the head
  of the queue under ``_wait_lock``, so nobody can take it in between. The
  kernel grew this later: the mutex in 4.10 ("locking/mutex: Add lock
  handoff to avoid starvation") and the rwsem in 5.3 ("locking/rwsem:
  Implement lock handoff to prevent lock starvation"). Both kernels hand off
  only once a waiter has been starved (the mutex's top waiter after it was
  woken and lost once, the rwsem's first waiter after about 4 ms); the
  model hands off at every release, the strongest form: a queued waiter is
  never overtaken. (The commit ids were not checked here.)

A lock built with a ``Kernel`` takes its mode from the policy: a mutex from
``PolicyOps.mutex_handoff`` (a 4.10+ design sets it), an rwsem from
``PolicyOps.rwsem_handoff`` (5.3+). One built without a kernel takes
``LOCK_HANDOFF``; an explicit ``handoff=`` argument wins over both.

Free mode and the GIL: a waiter granted the lock by a waker (4.6's readers,
or anybody with hand-off) holds it from that moment, but under the GIL it
runs only once the running thread blocks or its switch interval ends. On
the SMP machines 4.6 ran on it would run on another CPU at once. A task
that would now queue behind such a grant (typically the waker itself, a
few operations later) first lets it run (``_let_granted_run``): without
that, every later operation queues behind the one before and costs an OS
wake-up (a lock convoy; ``benchmarks/rwsem.py``'s contended mix ran 10-20x
slower). The lock's state is not touched meanwhile: whatever follows is
an interleaving 4.6 allows (the task was preempted just before it queued).
A controlled CPU never does this: its strategy alone decides who runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from .cpu import this_cpu
from .lockdep import lock_acquired_after_wait, lock_acquiring, lock_contended, lock_gave_up
from .sched import SleepResult, Task, TaskState, Waiter, sleep_on

#: The mode of a lock built without a kernel: 4.6's, wake then compete.
LOCK_HANDOFF = False

#: How many times a task about to queue behind a grant that has not run yet
#: gives up the GIL first (free mode). Each ``time.sleep(0)`` lets another
#: thread run; after that the task queues whatever the grant did.
GRANTED_YIELDS = 3


def handoff_for(kernel: object, attr: str) -> bool:
    """The hand-off mode a lock built for ``kernel`` gets: its policy's
    ``attr`` (``mutex_handoff`` or ``rwsem_handoff``; a policy without it
    is 4.6's, False)."""
    if kernel is None:
        return LOCK_HANDOFF
    ops = getattr(kernel, "policy_ops", None)
    return bool(getattr(ops, attr, LOCK_HANDOFF))


class SleepingLock:
    """A sleeping lock with a FIFO wait queue of ``Waiter``.

    Subclasses say what a waiter may take on its own (``_try_take_locked``),
    what a release wakes or grants (``_wake_locked``) and how to give back a
    lock a waiter got but will never use (``_ungrant_locked``). Every one of
    them runs under ``_wait_lock``; the wake-ups they return are done after
    it is dropped.
    """

    __slots__ = ()
    _wait_lock: threading.Lock
    _waiters: deque[Waiter]
    handoff: bool
    # Waiters granted the lock by a waker that have not returned from their
    # sleep yet. A set: add and discard are single atomic operations, so a
    # waker (under _wait_lock) and the granted sleeper (without it, on its
    # way out of sleep_on) never lose each other's update; the slow paths
    # only test whether it is empty.
    _unrun: set[Waiter]

    def _grant_locked(self, w: Waiter) -> None:
        """``w`` has the lock from now on; caller holds _wait_lock."""
        self._unrun.add(w)
        w.granted = True

    def _let_granted_run(self) -> None:
        """Free mode: before queueing behind grants whose tasks have not run
        yet, let them run (see the module docstring). Nothing on a
        controlled CPU."""
        if this_cpu() is not None:
            return
        unrun = self._unrun
        for _ in range(GRANTED_YIELDS):
            time.sleep(0)  # gives up the GIL: a granted sleeper may take it
            if not unrun:
                return

    def _until(self, w: Waiter) -> Callable[[], bool]:
        """What the sleeper rechecks after every wake: granted by a waker,
        or (wake-then-compete) taken by itself."""
        if self.handoff or not self._competes(w):
            return w.is_granted

        def took_it() -> bool:
            # Under _wait_lock: a release or a newcomer racing with this
            # retry sees either the lock still taken or ours.
            with self._wait_lock:
                if w.granted:
                    return True
                if self._try_take_locked(w):
                    self._waiters.remove(w)
                    w.granted = True
                    return True
                return False
        return took_it

    def _sleep_for(self, w: Waiter, read: bool, state: TaskState, deadline: float | None,
                   at: object) -> SleepResult:
        """The slow path once ``w`` is queued: lockdep's view, then the wait.

        4.6 lockdep records the lock at ``mutex_acquire()`` /
        ``rwsem_acquire[_read]()``, before the task sleeps for it, and drops
        it again if the wait fails (``mutex_release()`` on -EINTR). The model
        keeps that apart from ``held_locks`` (locks really held) as the
        task's ``lockdep_acquiring``."""
        task = w.holder if w.holder.__class__ is Task else None
        if task is None:
            return self._wait(w, state, deadline)
        lock_acquiring(task, self, read, at)
        try:
            try:
                lock_contended(task, self, read)
            except BaseException:
                self._abandon(w)  # not asleep yet, but queued: leave the queue
                raise
            res = self._wait(w, state, deadline)
        except BaseException:
            lock_gave_up(task, self)
            raise
        if res is SleepResult.WOKEN:
            lock_acquired_after_wait(task, self)
        else:
            lock_gave_up(task, self)
        return res

    def _wait(self, w: Waiter, state: TaskState, deadline: float | None) -> SleepResult:
        """Sleep until ``w`` has the lock, a signal ``state`` lets in, or
        the deadline. On failure ``w`` has left the queue."""
        try:
            try:
                res = sleep_on(state, self, self._until(w), deadline)
            finally:
                self._unrun.discard(w)  # running again, granted or not
        except BaseException:
            # Unwinding (plug pulled): leave the queue, or pass on a lock
            # that was handed to us (or that we took) meanwhile.
            self._abandon(w)
            raise
        if res is SleepResult.WOKEN:
            return res
        with self._wait_lock:
            # A grant after the discard above would stay in _unrun for good.
            self._unrun.discard(w)
            # A release may have handed us the lock after the signal or the
            # deadline woke us: then we own it and must report success.
            if w.granted:
                return SleepResult.WOKEN
            self._waiters.remove(w)
            # A waiter leaving may unblock the ones behind it (4.7's
            # down_write_killable failure path wakes the queue). In the
            # wake-then-compete mode it may also have swallowed the wake of
            # a release that came between its last retry and its signal
            # check (the kernel does both under wait_lock; the model's
            # sleep_on does not): waking the new head again covers that.
            woken = self._wake_locked() if self._waiters else []
        for x in woken:
            x.wake()
        return res

    def _abandon(self, w: Waiter) -> None:
        with self._wait_lock:
            self._unrun.discard(w)
            if w.granted:
                self._ungrant_locked(w)
            else:
                self._waiters.remove(w)
            woken = self._wake_locked() if self._waiters else []
        for x in woken:
            x.wake()

    def _competes(self, w: Waiter) -> bool:
        """Whether ``w`` takes the lock itself when woken (wake-then-compete)."""
        return True

    def _try_take_locked(self, w: Waiter) -> bool:
        """``w`` takes the lock if it is free for it; caller holds _wait_lock."""
        raise NotImplementedError

    def _wake_locked(self) -> list[Waiter]:
        """What a release does to the queue: the waiters to wake (granted
        first, in hand-off mode or for 4.6's readers); caller holds _wait_lock."""
        raise NotImplementedError

    def _ungrant_locked(self, w: Waiter) -> None:
        """Give back a grant its waiter will never use; caller holds _wait_lock."""
        raise NotImplementedError
