"""Held-lock bookkeeping and the lock dump, after lockdep's (Linux 4.6).

Every task keeps the locks it holds, in acquisition order, with the function
that took them (lockdep's ``held_locks`` and ``acquire_ip``): ``task.held_locks``
means *really held*, and the post-mortem, snapshots, wait-for chains and
exit's check rely on that.

4.6 lockdep pushes a lock onto the task's held_locks at ``mutex_acquire()`` /
``rwsem_acquire[_read]()``, which come *before* the sleep in
``__mutex_lock_common()`` and ``down_read()``/``down_write()``, so a task
asleep waiting for a lock already lists it ("1 lock held by victim/101").
The model keeps that lock apart, as ``task.lockdep_acquiring`` (set by the
slow path before it sleeps, cleared once the lock is taken or given up);
``lockdep_held(task)`` is lockdep's list, and the dumps print it.

The bookkeeping hooks (``lock_acquired`` and the rest) and their events are
the lab's; only what the dumps print stands for 4.6 lockdep output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import LockBug
from .events import Ev

if TYPE_CHECKING:
    from .kernel import Kernel
    from .sched import Task


#: (lock, read, code object of the function that took it). A plain tuple:
#: building it is on every lock fast path, and a dataclass costs 4x more.
HeldLock = tuple


def held_lock_name(h: HeldLock) -> str:
    return getattr(h[0], "name", repr(h[0]))


def held_lock_at(h: HeldLock) -> str:
    at = h[2]
    return at if isinstance(at, str) else at.co_name


def lock_acquired(task: "Task", lock: object, read: bool, at: object) -> None:
    task.held_locks.append((lock, read, at))
    task.kernel.tracer.record(Ev.LOCK_ACQUIRE, task.pid, task.comm, lock=getattr(lock, "name", "?"),
                              lock_id=getattr(lock, "lock_id", 0), kind=getattr(lock, "kind", "?"),
                              read=read)


def lock_acquiring(task: "Task", lock: object, read: bool, at: object) -> None:
    """The slow path of a lock is about to sleep for ``lock``: what 4.6's
    ``mutex_acquire()``/``rwsem_acquire[_read]()`` recorded before it."""
    task.lockdep_acquiring = (lock, read, at)


def lock_acquired_after_wait(task: "Task", lock: object) -> None:
    """The lock ``task`` slept for is its now. The same entry moves from
    ``lockdep_acquiring`` to ``held_locks`` (appended first, so a dump
    racing with this sees it once: ``lockdep_held`` skips a duplicate)."""
    h = task.lockdep_acquiring
    if h is None or h[0] is not lock:
        raise LockBug(f"{task.comm}/{task.pid} acquired {getattr(lock, 'name', lock)} "
                      f"it was not waiting for")
    task.held_locks.append(h)
    task.lockdep_acquiring = None
    task.kernel.tracer.record(Ev.LOCK_ACQUIRE, task.pid, task.comm, lock=getattr(lock, "name", "?"),
                              lock_id=getattr(lock, "lock_id", 0), kind=getattr(lock, "kind", "?"),
                              read=h[1])


def lock_gave_up(task: "Task", lock: object) -> None:
    """The wait for ``lock`` failed (a signal, a deadline, the plug): 4.6's
    ``mutex_release()`` on the -EINTR path. Records nothing: the wake event
    already says the sleep ended."""
    h = task.lockdep_acquiring
    if h is not None and h[0] is lock:
        task.lockdep_acquiring = None


def lockdep_held(task: "Task") -> list[HeldLock]:
    """The task's held locks as 4.6 lockdep lists them: those it holds, in
    acquisition order, then the one it is asleep acquiring, if any."""
    held = list(task.held_locks)
    acq = task.lockdep_acquiring
    if acq is not None and not any(h is acq for h in held):
        held.append(acq)
    return held


def lock_contended(task: "Task", lock: object, read: bool) -> None:
    """``task`` queues for ``lock``: who holds it now, and for what."""
    task.kernel.tracer.record(Ev.LOCK_CONTENDED, task.pid, task.comm, lock=getattr(lock, "name", "?"),
                              lock_id=getattr(lock, "lock_id", 0), kind=getattr(lock, "kind", "?"),
                              read=read, owners=lock.owner_pids())


def lock_released(task: "Task", lock: object) -> None:
    held = task.held_locks
    task.kernel.tracer.record(Ev.LOCK_RELEASE, task.pid, task.comm, lock=getattr(lock, "name", "?"),
                              lock_id=getattr(lock, "lock_id", 0))
    if held and held[-1][0] is lock:  # released in LIFO order: the usual case
        held.pop()
        return
    for i in range(len(held) - 2, -1, -1):
        if held[i][0] is lock:
            del held[i]
            return
    raise LockBug(f"{task.comm}/{task.pid} releases {getattr(lock, 'name', lock)} it does not hold")


def _print_held_locks(task: "Task", held: list[HeldLock]) -> list[str]:
    """lockdep_print_held_locks() (4.6): the header line exact, one line per
    lock simplified: 4.6 also prints the lock class's usage bits and the
    acquire address with its symbol; the model prints the lock's name and
    the function that took it."""
    n = len(held)
    lines = [f"{n} lock{'s' if n > 1 else ''} held by {task.comm}/{task.pid}:"]
    for i, h in enumerate(held):
        lines.append(f" #{i}: ({held_lock_name(h)}), at: {held_lock_at(h)}")
    return lines


def debug_show_all_locks(kernel: "Kernel") -> list[str]:
    """The lines of lockdep's debug_show_all_locks() (Linux 4.6): every task
    with a lock in lockdep's view, including one it is asleep acquiring."""
    lines = ["Showing all locks held in the system:"]
    for task in kernel.tasks():
        held = lockdep_held(task)
        if held:
            lines.extend(_print_held_locks(task, held))
    lines.append("")
    lines.append("=============================================")
    return lines


def debug_show_held_locks(task: "Task") -> list[str]:
    """The lines of lockdep's debug_show_held_locks(task) (Linux 4.6): the
    locks of one task only, in lockdep's view (a lock it is asleep acquiring
    counts), or "no locks held by comm/pid." when it has none. This is what
    4.6's khungtaskd prints for each hung task."""
    held = lockdep_held(task)
    if not held:
        return [f"no locks held by {task.comm}/{task.pid}."]
    return _print_held_locks(task, held)
