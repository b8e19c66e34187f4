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
the lab's; only what the dumps print stands for 4.6 lockdep output, in 4.6's
format (``print_lock``): the lock's name, its class's usage bits, and where
it was taken as a kernel symbol (``kallsyms``: synthetic addresses). Later
trees' forms are behind ``PolicyOps`` flags: 4.14's four usage characters
(``lockdep_usage_no_reclaim_fs``) and 5.x's line with the lock's address
and wait types, ``at: %pS``, header-only running tasks
(``lockdep_print_lock_instance``, 5.10.13's lockdep.c) and "&mm->mmap_lock"
(``mmap_lock_name``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .errors import LockBug
from .events import Ev
from .kallsyms import (KernelSymbols, acquire_symbol, ip_sym, lock_call, lock_instance_address,
                       tree_callee, tree_symbol)

if TYPE_CHECKING:
    from .kernel import Kernel
    from .policy import PolicyOps
    from .sched import Task


#: (lock, read, code object of the function that took it). A plain tuple:
#: building it is on every lock fast path, and a dataclass costs 4x more.
HeldLock = tuple

#: The usage bits lockdep prints for a lock class: per state (hardirq,
#: softirq, reclaim_fs), for write then read, "+" once taken with that
#: state enabled (irqs on; held across a __GFP_FS allocation), "." never.
#: The model does not track them; these are what 4.x logs show for the
#: classes the lab has: oom_lock ``{+.+...}`` (never held across an
#: allocation), mmap_sem ``{++++++}``.
LOCK_USAGE = {"oom_lock": "+.+...", "&mm->mmap_sem": "++++++"}
#: Any other lock: taken in process context with irqs on and held across a
#: GFP_KERNEL allocation, as i_mutex shows (``{+.+.+.}``); an rwsem also
#: for read. The lab's assumption, not tracked.
MUTEX_USAGE = "+.+.+."
RWSEM_USAGE = "++++++"
#: 5.x's wait types, ``-{outer ?: inner:inner}``: a mutex and an rwsem are
#: LD_WAIT_SLEEP (3 without CONFIG_PROVE_RAW_LOCK_NESTING; the enum read in
#: include/linux/lockdep_types.h; that __mutex_init/__init_rwsem pass
#: LD_WAIT_SLEEP as the inner type, with no outer type, is not re-read).
SLEEP_WAIT_TYPES = "3:3"


def held_lock_name(h: HeldLock, ops: "PolicyOps | None" = None) -> str:
    """The lock class's name as lockdep prints it. From 5.8
    (``ops.mmap_lock_name``) mm's rwsem is "&mm->mmap_lock"; the model's
    lock keeps its 4.x name and only the print changes."""
    name = getattr(h[0], "name", repr(h[0]))
    if ops is not None and ops.mmap_lock_name and name == "&mm->mmap_sem":
        return "&mm->mmap_lock"
    return name


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


def lock_usage(lock: object, ops: "PolicyOps | None" = None) -> str:
    """The usage bits 4.6's ``get_usage_chars()`` would give the lock's class
    (see ``LOCK_USAGE``): hardirq, softirq and reclaim_fs, each for write
    then read. From 4.14 (``ops.lockdep_usage_no_reclaim_fs``, d92a8cfcb37e)
    there is no reclaim_fs state, so the last pair goes: "{+.+.}"."""
    usage = LOCK_USAGE.get(getattr(lock, "name", ""))
    if usage is None:
        usage = RWSEM_USAGE if getattr(lock, "kind", "") == "rw_semaphore" else MUTEX_USAGE
    if ops is not None and ops.lockdep_usage_no_reclaim_fs:
        usage = usage[:4]
    return usage


def held_lock_acquire_ip(h: HeldLock, address: bool = True,
                         syms: KernelSymbols = KernelSymbols.V4_6) -> str:
    """Where the lock was taken, as 4.6's ``print_ip_sym(acquire_ip)`` prints
    it: ``[<address>] symbol+0xoff/0xsize`` (5.x's ``%pS``: without the
    address). acquire_ip is the return address
    of the lock call, so the symbol is the caller's: the kernel function the
    model function that took it stands for, or for a lock a task body took,
    the system call that would take it (``kallsyms.user_site``), in the
    names of ``syms``'s tree (``kallsyms.tree_symbol``: 4.14's allocator
    slow path, 5.x's ``do_user_addr_fault``...)."""
    lock, read, at = h
    return ip_sym(tree_symbol(acquire_symbol(at, lock, read), syms),
                  tree_callee(lock_call(lock, read), syms), address)


def print_lock(h: HeldLock, ops: "PolicyOps | None" = None) -> str:
    """4.6's ``print_lock()``: `` (name){usage}, at: [<address>] symbol+0xoff/0xsize``
    (``print_lock_name()`` opens with a space; no ``#N`` name version: locks
    of one name are one class to the model, as every mm's mmap_sem is one
    class to lockdep). 4.14 (``ops.lockdep_usage_no_reclaim_fs``): four
    usage characters.

    5.x (``ops.lockdep_print_lock_instance``; 5.10.13's text, read):
    ``printk("%px", hlock->instance)``, then ``" (%s){%s}-{%d:%d}"`` and
    ``", at: %pS"``: the lock's address (synthetic: ``kallsyms.
    lock_instance_address``), its class, usage and wait types, and where it
    was taken without the ``[<%p>]``. The 4.17-5.0 forms (a hashed ``%p``,
    no wait types) belong to no policy and are not modelled."""
    lock = h[0]
    usage = lock_usage(lock, ops)
    name = held_lock_name(h, ops)
    syms = ops.kernel_symbols if ops is not None else KernelSymbols.V4_6
    if ops is not None and ops.lockdep_print_lock_instance:
        addr = lock_instance_address(getattr(lock, "name", repr(lock)), getattr(lock, "lock_id", 0))
        return (f"{addr:016x} ({name}){{{usage}}}-{{{SLEEP_WAIT_TYPES}}}, "
                f"at: {held_lock_acquire_ip(h, address=False, syms=syms)}")
    return f" ({name}){{{usage}}}, at: {held_lock_acquire_ip(h, syms=syms)}"


def _print_held_locks(task: "Task", held: list[HeldLock], header_only: bool = False) -> list[str]:
    """lockdep_print_held_locks() (4.6): "N lock(s) held by comm/pid:", then
    ``" #%d: "`` and ``print_lock()`` for each, in acquisition order. 5.x
    stops after the first line for a task running elsewhere
    (``header_only``: "It's not reliable to print a task's held locks if it's
    not sleeping and it's not the current task", 5.10.13)."""
    n = len(held)
    lines = [f"{n} lock{'s' if n > 1 else ''} held by {task.comm}/{task.pid}:"]
    if header_only:
        return lines
    ops = task.kernel.policy_ops
    for i, h in enumerate(held):
        lines.append(f" #{i}: {print_lock(h, ops)}")
    return lines


def debug_show_all_locks(kernel: "Kernel", running: bool = False) -> list[str]:
    """The lines of lockdep's debug_show_all_locks() (Linux 4.6): every task
    with a lock in lockdep's view (including one it is asleep acquiring),
    between 4.6's framing: "Showing all locks held in the system:" after a
    newline, and after the tasks a newline, the row of "=" and two newlines
    (each newline a line of its own on the console: the empty strings). The
    tasklist_lock retries ("hm, tasklist_lock locked, retrying...") cannot
    happen here.

    4.6 skips a task in TASK_RUNNING (but the caller): its held locks may be
    changing under the reader. ``running=True`` lists those too: the lab's
    lockup report wants every lock (4.16 or so started printing at least
    their "N locks held by" line). Checked against a stored copy of an
    older lockdep.c with the same loop and later copies with the skip moved
    into lockdep_print_held_locks(); v4.6 itself was not read.

    5.x (``policy_ops.lockdep_print_lock_instance``; 5.10.13, read) prints
    every task with a lock (``p->lockdep_depth``), a running one other than
    the caller by its "N locks held by" line alone. Not modelled there: the
    caller's own ``rcu_read_lock``, which 5.x's loop holds and so lists
    (lockdep has no RCU in the model; real logs show it as the caller's
    last lock)."""
    me = threading.current_thread()
    five = kernel.policy_ops.lockdep_print_lock_instance
    lines = ["", "Showing all locks held in the system:"]
    for task in kernel.tasks():
        elsewhere = task.state_letter == "R" and task.thread is not me
        if not running and elsewhere and not five:
            continue
        held = lockdep_held(task)
        if held:
            lines.extend(_print_held_locks(task, held, header_only=five and elsewhere and not running))
    lines += ["", "=============================================", ""]
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
