"""process_mrelease(2) and the pidfds it takes: a userspace killer's reaper (Linux 5.15).

A low-memory killer in userspace (Android's lmkd, systemd-oomd) kills with
``pidfd_send_signal`` and then calls ``process_mrelease(pidfd, 0)`` to reap
the victim's address space itself, synchronously, instead of waiting for
the victim to run its exit. Return values (negated errno, as the syscall's):

* 0: reaped, or the work was done already (MMF_OOM_SKIP: reaped, or its
  exit_mmap is past the unmap);
* -EINVAL: ``flags`` is not 0, or the process is not dying (not killed and
  not exiting) and its mm is not MMF_OOM_SKIP;
* -ESRCH: the process is gone, or none of its threads has an mm any more;
* -EINTR: a fatal signal came while waiting for mmap_sem (the wait is
  killable);
* -EAGAIN: part of the mm could not be reaped (an mmu notifier would block
  on a VMA: ``VmaSpec.notifier_blocks``);
* -ENOSYS: a design before 5.15.

The semantics are those of 6.6's mm/oom_kill.c (the text read for
docs/HISTORY-DESIGNS.md §1.11); 5.15.0's first version (884a7e5964e0, id
not re-verified) pinned the mm with mmgrab as here, but tested
MMF_OOM_SKIP (returning 0) before ``task_will_free_mem`` and did not test
it again under mmap_sem; a later fix added the recheck. Both return the
same values in every case the lab can build. pidfd_open (5.3)
and pidfd_send_signal (5.1) are taken to exist exactly where
process_mrelease does (``PolicyOps.process_mrelease_syscall``): no design
between 4.14 and 5.15 is modelled, so on the older ones they are -ENOSYS
and a killer falls back to kill(2) (``send_sigkill``).

The syscall prints nothing and fires no tracepoint in 5.15 (the oom
tracepoints are the reaper's); the lab records a ``process_mrelease`` event
and a ``# lab`` line for each call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import Errno
from .events import Ev
from .mm import MMF, mmdrop, mmgrab
from .oom_kill import find_lock_task_mm, task_will_free_mem
from .oom_reaper import __oom_reap_task_mm
from .sched import Task, TaskState, current, send_sigkill

if TYPE_CHECKING:
    from .kernel import Kernel

SIGKILL = 9


@dataclass(frozen=True, eq=False)
class Pidfd:
    """A pidfd: a file pinning the struct pid of a thread-group leader. The
    model keeps the task itself, as the pid's ``PIDTYPE_TGID`` link would
    lead to it while the task is not yet released."""

    task: Task


def _released(task: Task) -> bool:
    """The task was reaped by its parent: its pid leads nowhere (ESRCH, as
    5.15's ``pidfd_get_task``/``pidfd_open`` find no task for the pid)."""
    return bool(task.state & TaskState.EXIT_DEAD)


def pidfd_open(kernel: "Kernel", pid: int, flags: int = 0) -> Pidfd | int:
    """5.3's ``pidfd_open(pid, flags)``: a pidfd, or -EINVAL (flags, or not
    a thread-group leader), -ESRCH (no such pid), -ENOSYS (before 5.15 in
    the lab; see the module docstring)."""
    if not kernel.policy_ops.process_mrelease_syscall:
        return -Errno.ENOSYS
    if flags:
        return -Errno.EINVAL
    task = kernel.find_task_by_pid(pid)
    if task is None or _released(task):
        return -Errno.ESRCH
    if task.group_leader is not task:
        return -Errno.EINVAL
    return Pidfd(task)


def pidfd_send_signal(kernel: "Kernel", pidfd: Pidfd, sig: int = SIGKILL, flags: int = 0) -> int:
    """5.1's ``pidfd_send_signal`` for SIGKILL only: 0, -EINVAL (another
    signal, or flags), -ESRCH (the process is gone), -ENOSYS."""
    if not kernel.policy_ops.process_mrelease_syscall:
        return -Errno.ENOSYS
    if sig != SIGKILL or flags:
        return -Errno.EINVAL
    if _released(pidfd.task):
        return -Errno.ESRCH
    send_sigkill(pidfd.task)
    return 0


def process_mrelease(kernel: "Kernel", pidfd: Pidfd, flags: int = 0) -> int:
    """``process_mrelease(pidfd, flags)``: see the module docstring for the
    values. Called from a task's body; it may sleep (killably) on the
    victim's mmap_sem."""
    res = _MreleaseResult()
    ret = _process_mrelease(kernel, pidfd, flags, res)
    me = current()
    task = pidfd.task
    name = f"-{Errno(-ret).name}" if ret else "0"
    kernel.tracer.record(Ev.PROCESS_MRELEASE, me.pid if me else 0, me.comm if me else "",
                         target=task.pid, flags=flags, ret=ret, pages=res.pages, reaped=res.reaped)
    kernel.lab(f"process_mrelease(pidfd of pid {task.pid} ({task.comm}), {flags}) = {name}", me)
    return ret


@dataclass
class _MreleaseResult:
    """What one call freed (the lab's record; the syscall returns only its value)."""

    pages: int = 0  # freed by this call
    reaped: bool = False  # every reapable VMA was unmapped


def _process_mrelease(kernel: "Kernel", pidfd: Pidfd, flags: int, res: _MreleaseResult) -> int:
    """The syscall's body (6.6's ``SYSCALL_DEFINE2(process_mrelease, ...)``;
    see the module docstring), filling ``res`` for the lab's record."""
    if not kernel.policy_ops.process_mrelease_syscall:
        return -Errno.ENOSYS
    if flags:
        return -Errno.EINVAL
    task = pidfd.task
    if _released(task):
        return -Errno.ESRCH  # pidfd_get_task: the pid has no task any more
    ret = 0
    # A thread that still has the mm, during the group's exit too.
    with find_lock_task_mm(task) as p:
        if p is None:
            return -Errno.ESRCH
        mm = p.mm
        mmgrab(mm)
        reap = task_will_free_mem(p)
        if not reap and not mm.flags & MMF.MMF_OOM_SKIP:
            ret = -Errno.EINVAL  # alive and not dying: an error only if nothing was done already
    try:
        if not reap:
            return ret
        if mm.mmap_sem.down_read_killable() != 0:
            return -Errno.EINTR
        try:
            # MMF_OOM_SKIP again, under mmap_sem: exit_mmap sets it before
            # its down_write, so seeing it clear here means the VMAs are
            # still there to reap.
            if not mm.flags & MMF.MMF_OOM_SKIP:
                with kernel.decision():
                    freed, complete = __oom_reap_task_mm(kernel, mm)
                    res.pages, res.reaped = freed, complete
                    with kernel.stats.lock:
                        kernel.stats.mrelease_pages += freed
                        if complete:
                            kernel.stats.mrelease_reaps += 1
                    kernel.lab(f"process_mrelease: {freed} pages of pid {task.pid} ({task.comm}) freed"
                               + ("" if complete else "; a VMA's mmu notifier would block: -EAGAIN"))
                    if freed:
                        kernel.note_progress()
                    kernel.poke()
                if not complete:
                    ret = -Errno.EAGAIN
        finally:
            mm.mmap_sem.up_read()
    finally:
        mmdrop(mm)
    return ret
