"""Robust futexes: FUTEX_WAIT on a futex, and ``exit_robust_list`` when the owner exits.

A robust futex is a user-space lock whose owner registers a list of the
locks it holds (``set_robust_list``); the list head lives in the owner's own
memory. When the owner exits, the kernel walks that list (``mm_release``,
at the start of ``exit_mm``), marks each futex it still owns
FUTEX_OWNER_DIED and wakes one waiter, whose ``pthread_mutex_lock`` then
returns EOWNERDEAD. If the head reads as zero, nothing is walked and the
waiters sleep on for ever.

That is what the reaper does to a victim that could still exit by itself:
it zaps the victim's anonymous memory, head page included, before the
victim's exit walks the list. 5.18 delays the reap by 2*HZ for this reason
(e4a38402, "oom_kill.c: futex: delay the OOM reaper to allow time for
proper futex cleanup"; id not re-verified).

Kernel semantics: 4.6's kernel/futex.c and kernel/fork.c (``futex_wait``
sleeps TASK_INTERRUPTIBLE; ``mm_release`` runs ``exit_robust_list``; from
5.5 on ``futex_exit_release``, same place in the exit). The lab keeps a
futex as an object (its word's owner TID and OWNER_DIED bit, its waiters)
and a robust list as the futexes it lists plus the VMA whose page holds the
head: the head "reads as zero" when that VMA has no page mapped (zapped).
Not modelled: the futex hash, PI futexes, the list_op_pending entry, and
the fault a reaped page takes (it reads the zero page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .cpu import SpinLock
from .errors import Errno
from .events import Ev
from .sched import SleepResult, Task, TaskState, current, sleep_on, wake_up_process

if TYPE_CHECKING:
    from .mm import VMA


@dataclass(eq=False)
class Futex:
    """A futex word: the owner's TID (None: unlocked) and FUTEX_OWNER_DIED."""

    name: str
    owner: Task | None = None
    owner_died: bool = False
    waiters: list[Task] = field(default_factory=list)  # queued, oldest first
    # The hash bucket lock (hb->lock): a wake must not slip between a
    # waiter's check of the word and its queueing.
    lock: SpinLock = field(default_factory=lambda: SpinLock("hb->lock"))
    kind: str = "futex"

    def owner_pids(self) -> list[int]:
        """The word's owner, as lock records name holders (the lab's)."""
        return [self.owner.pid] if self.owner is not None else []

    def waiter_pids(self) -> list[int]:
        """The queued waiters, oldest first (the lab's)."""
        return [t.pid for t in list(self.waiters)]

    @property
    def orphaned(self) -> bool:
        """The owner is gone and nobody marked the word OWNER_DIED: the
        waiters can never be woken (the lab's name for it)."""
        o = self.owner
        return o is not None and not self.owner_died and o.state_letter in "ZX"


@dataclass(eq=False)
class RobustList:
    """What ``set_robust_list`` registered: the head's page is in ``vma``
    (anonymous, the owner's own), and the futexes it lists."""

    vma: "VMA"
    futexes: list[Futex]


def set_robust_list(task: Task, vma: "VMA", futexes: list[Futex]) -> None:
    """``set_robust_list(head, len)``, with the futexes taken by ``task``
    (each word gets its TID). ``vma`` must have its page mapped."""
    if not vma.pages:
        raise ValueError("set_robust_list: the head's VMA has no page mapped")
    for f in futexes:
        f.owner = task
    task.robust_list = RobustList(vma, list(futexes))


def futex_wait(futex: Futex) -> int:
    """FUTEX_WAIT: queue on the futex and sleep in TASK_INTERRUPTIBLE until a
    ``futex_wake`` takes us off the queue; 0, or -EINTR if a signal came
    (the caller's return to user then dies on a SIGKILL). Returns at once if
    the word says OWNER_DIED already (4.6's futex_wait: the value check
    under the hash bucket lock, then futex_wait_queue_me)."""
    me = _me()
    with futex.lock:
        if futex.owner_died:
            return 0
        owner = futex.owner
        futex.waiters.append(me)
    me.kernel.tracer.record(Ev.FUTEX_WAIT, me.pid, me.comm, futex=futex.name,
                            owner=owner.pid if owner is not None else None)
    try:
        res = sleep_on(TaskState.TASK_INTERRUPTIBLE, futex, lambda: me not in futex.waiters)
    finally:
        with futex.lock:
            if me in futex.waiters:  # a signal, or the plug: leave the queue
                futex.waiters.remove(me)
    return 0 if res is SleepResult.WOKEN else -Errno.EINTR


def futex_wake(futex: Futex, nr: int = 1) -> int:
    """FUTEX_WAKE: take up to ``nr`` waiters off the queue, oldest first, and
    wake them; how many were woken (4.6's futex_wake and mark_wake_futex)."""
    with futex.lock:
        woken, futex.waiters[:nr] = futex.waiters[:nr], []
    for t in woken:
        wake_up_process(t)
    return len(woken)


def exit_robust_list(task: Task) -> None:
    """Walk ``task``'s robust list at its exit (4.6's ``exit_robust_list``
    with ``handle_futex_death``): each listed futex it still owns gets
    OWNER_DIED and one waiter is woken. A head in a page that was zapped
    reads as zero: the walk finds nothing, and the lab says so."""
    head = task.robust_list
    if head is None:
        return
    task.robust_list = None
    kernel = task.kernel
    if not head.vma.pages:
        kernel.tracer.record(Ev.EXIT_ROBUST_LIST, task.pid, task.comm, walked=0, zapped=True)
        kernel.lab(f"exit_robust_list: pid {task.pid} ({task.comm})'s robust list head reads 0 (its page "
                   f"was zapped): {len(head.futexes)} futex(es) left owned by a dead task, their waiters "
                   f"never woken", task)
        return
    walked = 0
    for f in head.futexes:
        if f.owner is task:
            walked += 1
            f.owner_died = True
            futex_wake(f, 1)
    kernel.tracer.record(Ev.EXIT_ROBUST_LIST, task.pid, task.comm, walked=walked, zapped=False)
    kernel.poke()


def _me() -> Task:
    """The calling task (futex calls are syscalls: never from the harness)."""
    t = current()
    if t is None:
        raise RuntimeError("futex_wait outside a task")
    return t
