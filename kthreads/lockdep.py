"""Held-lock bookkeeping and the lock dump, after lockdep's.

Every task keeps the locks it holds, in acquisition order, with the function
that took them (lockdep's ``held_locks`` and ``acquire_ip``). The dump prints
them in the kernel's "Showing all locks held in the system" format.
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


def debug_show_all_locks(kernel: "Kernel") -> list[str]:
    """The lines of lockdep's debug_show_all_locks()."""
    lines = ["Showing all locks held in the system:"]
    for task in kernel.tasks():
        held = list(task.held_locks)
        if not held:
            continue
        n = len(held)
        lines.append(f"{n} lock{'s' if n > 1 else ''} held by {task.comm}/{task.pid}:")
        for i, h in enumerate(held):
            lines.append(f" #{i}: ({held_lock_name(h)}), at: {held_lock_at(h)}")
    lines.append("")
    lines.append("=============================================")
    return lines


def debug_show_held_locks(task: "Task") -> list[str]:
    """The lines of lockdep's debug_show_held_locks(task) (Linux 4.6): the
    locks of one task only, or "no locks held by comm/pid." when it has none.
    This is what 4.6's khungtaskd prints for each hung task."""
    held = list(task.held_locks)
    if not held:
        return [f"no locks held by {task.comm}/{task.pid}."]
    n = len(held)
    lines = [f"{n} lock{'s' if n > 1 else ''} held by {task.comm}/{task.pid}:"]
    for i, h in enumerate(held):
        lines.append(f" #{i}: ({held_lock_name(h)}), at: {held_lock_at(h)}")
    return lines
