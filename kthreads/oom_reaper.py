"""The oom_reaper kernel thread (Linux 4.6, "mm, oom: introduce oom reaper", patch 1).

The OOM killer hands the victim's mm to a dedicated kernel thread through a
single slot, ``mm_to_reap``. The reaper takes the victim's mmap_sem for read
with a *trylock* and unmaps its anonymous and private memory without the
victim having to run. It never sleeps on mmap_sem: if a writer holds it, or
waits for it, the reaper retries 10 times, HZ/10 apart, then gives up.

The slot is a compare-and-swap cell: only a NULL -> mm transition succeeds,
so a second victim killed while the reaper is busy is simply not reaped.

Patch 1 printed nothing, success or failure: "oom_reaper: reaped process"
and "oom_reaper: unable to reap pid:" with the lock dump came with bc448e89
("mm, oom_reaper: report success/failure"), on top of 36324a99's task-based
slot. So under ``patch1`` the reaper's work is shown in the lab's own
stream (``Kernel.lab``), never in dmesg; a policy whose tree printed those
lines sets ``PolicyOps.oom_reaper_reports``.

Every function here follows mm/oom_kill.c at aac45363 (read whole) unless
its docstring says otherwise. ``ReapRequest``, ``ReaperState``, the events,
the lab's lines and ``Patch1Ops`` are the lab's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .atomic import Cell, cmpxchg
from .errors import PlugPulled
from .events import Ev
from .lockdep import debug_show_all_locks
from .mm import (MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, mmdrop, mmget_not_zero, mmgrab,
                 mmput, unmap_page_range)
from .gfp import PAGE_KB
from .policy import Policy, PolicyOps
from .sched import Task, TaskState, schedule_timeout_idle, sleep_on, wake_up_process
from .snapshot import ReaperStatus
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel

#: aac45363 writes the literal 10; the name is bc448e89's.
MAX_OOM_REAP_RETRIES = 10


@dataclass(frozen=True)
class ReapRequest:
    """What sits in ``mm_to_reap``: the mm, and the victim it was killed with
    (the kernel's patch 1 kept only the mm; the task is here for the log)."""

    mm: MM
    pid: int
    comm: str


@dataclass(eq=False)
class ReaperState:
    """The reaper's slot, thread and bookkeeping; the harness reads it only
    through ``Kernel.reaper_status()``."""

    mm_to_reap: Cell[ReapRequest]
    task: Task  # the oom_reaper kthread
    attempts: int = 0  # trylock attempts on the current mm
    skipped: int = 0  # failed trylocks, ever
    reaped: int = 0  # mms reaped
    failed: int = 0  # gave up after MAX_OOM_REAP_RETRIES
    failed_mms: list[MM] = field(default_factory=list)
    dropped: int = 0  # victims not queued because the slot was busy
    raced_exit: int = 0  # the victim's last user left before the reaper got there
    pages_reaped: int = 0
    reaped_mm_ids: set[int] = field(default_factory=set)
    dropped_mm_ids: set[int] = field(default_factory=set)
    forbidden_mm_ids: set[int] = field(default_factory=set)  # shared with the unkillable: never queued

    def status(self) -> ReaperStatus:
        req = self.mm_to_reap.read()  # once: the reaper may clear it meanwhile
        return ReaperStatus(
            running=True, busy_with=req.pid if req is not None else None,
            busy_mm=req.mm.id if req is not None else None, attempts=self.attempts,
            skipped=self.skipped, reaped=self.reaped, failed=self.failed, dropped=self.dropped,
            raced_exit=self.raced_exit, pages_reaped=self.pages_reaped,
            reaped_mm_ids=frozenset(self.reaped_mm_ids),
            dropped_mm_ids=frozenset(self.dropped_mm_ids),
            forbidden_mm_ids=frozenset(self.forbidden_mm_ids),
            failed_mm_ids=frozenset(mm.id for mm in list(self.failed_mms)),
            failed_live_mm_ids=frozenset(mm.id for mm in list(self.failed_mms) if not mm.freed))


def wake_oom_reaper(kernel: "Kernel", victim: "Task", mm: MM) -> bool:
    """Queue ``mm`` for the reaper; False if the slot was busy (not reaped),
    if there is no reaper, or once the plug is pulled (nothing is queued then).
    aac45363's ``wake_oom_reaper(mm)``: mm_count pin, cmpxchg NULL -> mm,
    wake on success, mmdrop on a busy slot. The victim's pid and comm ride
    along for the lab's lines only; the ``reap_dropped`` event is the lab's."""
    state = kernel.reaper
    if state is None:
        return False
    try:
        with kernel.decision():
            return _queue_reap(kernel, state, victim, mm)
    except PlugPulled:
        return False


def _queue_reap(kernel: "Kernel", state: ReaperState, victim: "Task", mm: MM) -> bool:
    # Pin the struct with mm_count, not mm_users: the victim's own exit must
    # still be able to tear the address space down while the request waits.
    mmgrab(mm)
    req = ReapRequest(mm, victim.pid, victim.comm)
    # cmpxchg, NULL -> mm only. Two OOM kills racing for the slot (two
    # allocating CPUs) cannot both win, and a busy slot is never overwritten:
    #   CPU0: cmpxchg(NULL -> mm0) wins     CPU1: cmpxchg(NULL -> mm1) sees mm0
    #   CPU0: wake_up(oom_reaper)            CPU1: mmdrop(mm1)   (not reaped)
    if cmpxchg(state.mm_to_reap, None, req) is None:
        kernel.tracer.record(Ev.WAKE_REAPER, victim.pid, victim.comm, mm=mm.id)
        wake_up_process(state.task)
        return True
    busy = state.mm_to_reap.read()  # once: the reaper may clear it meanwhile
    state.dropped += 1
    state.dropped_mm_ids.add(mm.id)
    kernel.tracer.record(Ev.REAP_DROPPED, victim.pid, victim.comm, mm=mm.id,
                         busy_with=busy.pid if busy is not None else None)
    busy_text = f"pid {busy.pid} ({busy.comm})" if busy is not None else "another mm"
    kernel.lab(f"oom_reaper: mm_to_reap is busy with {busy_text}; pid {victim.pid} "
               f"({victim.comm}) will not be reaped (patch 1 has a single slot)", victim)
    mmdrop(mm)
    return False


def __oom_reap_vmas(kernel: "Kernel", state: ReaperState, req: ReapRequest) -> bool:
    """One attempt: True when done (reaped, or nothing left to reap).
    aac45363's ``__oom_reap_vmas``: mm_users taken only if not zero, then
    the mmap_sem trylock, then hugetlb and VM_LOCKED VMAs skipped and
    anonymous or private ones unmapped. The "reaped process" line is
    bc448e89's and printed only if ``oom_reaper_reports`` says so.

    A decision: once the plug is pulled the reaper reaps nothing more.
    """
    with kernel.decision():
        return _reap_once(kernel, state, req)


def _reap_once(kernel: "Kernel", state: ReaperState, req: ReapRequest) -> bool:
    mm = req.mm
    # atomic_inc_not_zero(mm_users): the victim may have dropped its last
    # user reference already. Then exit_mmap is (or was) freeing everything
    # and reaping would race with it:
    #   oom_reaper                          victim
    #                                       mmput: mm_users 1 -> 0
    #   mmget_not_zero: fails, done         exit_mmap: frees the pages
    # The mm_count pin keeps the struct itself valid for this check.
    if not mmget_not_zero(mm):
        state.raced_exit += 1
        kernel.tracer.record(Ev.REAP_RACED_EXIT, req.pid, req.comm, mm=mm.id)
        kernel.lab(f"oom_reaper: pid {req.pid} ({req.comm}) dropped its last mm user before "
                   f"the reaper got there: exit_mmap frees its memory", state.task)
        return True
    try:
        state.attempts += 1
        if not mm.mmap_sem.down_read_trylock():
            state.skipped += 1
            kernel.tracer.record(Ev.SKIP_TASK_REAPING, req.pid, req.comm, mm=mm.id,
                                 attempt=state.attempts)
            return False
        try:
            kernel.tracer.record(Ev.START_TASK_REAPING, req.pid, req.comm, mm=mm.id)
            freed = 0
            for vma in mm.vmas:
                # hugetlb pages and mlocked VMAs need more than a zap; skip.
                if vma.is_hugetlb or vma.locked:
                    continue
                # Only private memory is safe to drop behind the owner's back.
                if vma.is_anonymous or not vma.kind.shared:
                    freed += unmap_page_range(mm, vma)
            state.reaped += 1
            state.pages_reaped += freed
            state.reaped_mm_ids.add(mm.id)
            rss = (f"anon-rss:{mm.get_mm_counter(MM_ANONPAGES) * PAGE_KB}kB, "
                   f"file-rss:{mm.get_mm_counter(MM_FILEPAGES) * PAGE_KB}kB, "
                   f"shmem-rss:{mm.get_mm_counter(MM_SHMEMPAGES) * PAGE_KB}kB")
            if kernel.policy_ops.oom_reaper_reports:
                kernel.printk(f"oom_reaper: reaped process {req.pid} ({req.comm}), now {rss}",
                              LogLevel.KERN_INFO, state.task)
            else:
                kernel.lab(f"oom_reaper: reaped pid {req.pid} ({req.comm}) on try {state.attempts}: "
                           f"{freed} pages freed, now {rss}", state.task)
            kernel.tracer.record(Ev.FINISH_TASK_REAPING, req.pid, req.comm, mm=mm.id, pages=freed)
            kernel.poke()
        finally:
            mm.mmap_sem.up_read()
        return True
    finally:
        # Possibly the last user: then exit_mmap runs here, in the reaper
        # (the 4.7 series moved this to mmput_async).
        mmput(mm)


def _holders(kernel: "Kernel", sem: object) -> str:
    """'held by pid 100 (mmapper), 1 waiting', for the lab's note on a failed
    reap (the lab's; no kernel counterpart)."""
    def name(pid: int) -> str:
        t = kernel.find_task_by_pid(pid)
        return f"pid {pid} ({t.comm})" if t is not None else f"pid {pid}"
    owners = [name(p) for p in sem.owner_pids()]
    waiting = len(sem.waiter_pids())
    held = f"held by {', '.join(owners)}" if owners else "not held now"
    return f"mmap_sem {held}" + (f", {waiting} waiting" if waiting else "")


def oom_reap_vmas(kernel: "Kernel", state: ReaperState, req: ReapRequest) -> None:
    """aac45363's: up to 10 tries, each failure followed by a HZ/10
    TASK_IDLE sleep (the last one too), then mmdrop of the pin. aac45363
    says nothing when it gives up; the "unable to reap" line and the lock
    dump are bc448e89's (``oom_reaper_reports``)."""
    state.attempts = 0
    hz = kernel.clock.hz
    try:
        tries = 0
        while tries < MAX_OOM_REAP_RETRIES:
            tries += 1
            if __oom_reap_vmas(kernel, state, req):
                return
            schedule_timeout_idle(hz // 10, "oom_reap_vmas")
        with kernel.decision():
            state.failed += 1
            state.failed_mms.append(req.mm)
            kernel.tracer.record(Ev.REAP_FAILED, req.pid, req.comm, mm=req.mm.id, attempts=tries)
            if kernel.policy_ops.oom_reaper_reports:
                kernel.printk(f"oom_reaper: unable to reap pid:{req.pid} ({req.comm})",
                              LogLevel.KERN_INFO, state.task)
                for line in debug_show_all_locks(kernel):
                    kernel.printk(line, LogLevel.KERN_INFO, state.task)
            else:
                sem = req.mm.mmap_sem
                kernel.lab(f"oom_reaper: gave up on pid {req.pid} ({req.comm}) after {tries} "
                           f"failed down_read_trylock(mmap_sem); {_holders(kernel, sem)}", state.task)
    finally:
        mmdrop(req.mm)  # the pin taken by wake_oom_reaper


def oom_reaper(task: "Task") -> None:
    """The kthread's main loop, as aac45363's ``oom_reaper()``: sleep
    (TASK_INTERRUPTIBLE; the freezer is not modelled) until the slot holds
    an mm, reap it, then clear the slot."""
    kernel = task.kernel
    state = kernel.reaper
    cell = state.mm_to_reap
    while True:
        sleep_on(TaskState.TASK_INTERRUPTIBLE, "oom_reaper", lambda: cell.read() is not None)
        req = cell.read()
        try:
            oom_reap_vmas(kernel, state, req)
        finally:
            # Free the slot only when done: until then a new victim must not
            # be queued behind our back.
            cell.write(None)
            kernel.poke()


class Patch1Ops(PolicyOps):
    """``patch1``: aac45363. ``boot`` is its ``oom_init`` (start the
    kthread); ``after_kill`` is the end of its ``oom_kill_process``."""

    commit = "aac45363"
    title = "mm, oom: introduce oom reaper"
    label = "Linux 4.6-rc1 at aac45363: 'mm, oom: introduce oom reaper'"
    change = ("the oom_reaper kthread: a single mm_to_reap slot, 10 down_read_trylock(mmap_sem) tries "
              "HZ/10 apart, unmap the victim's private memory; prints nothing")

    policy = Policy.PATCH1

    def boot(self, kernel: "Kernel") -> None:
        task = kernel.kthread_run("oom_reaper", oom_reaper, start=False)
        kernel.reaper = ReaperState(Cell(None, "mm_to_reap"), task)
        kernel.start(task)

    def shutdown(self, kernel: "Kernel") -> None:
        # After every thread is joined. Requests are queued only before the
        # plug is pulled and the reaper's loop empties the slot whatever
        # unwinds it, so one is left here only if the reaper thread was run
        # down before it ever entered its loop: give its mm_count pin back.
        req = kernel.reaper.mm_to_reap.xchg(None)
        if req is not None:
            mmdrop(req.mm)

    def after_kill(self, kernel: "Kernel", victim: "Task", mm: MM, can_oom_reap: bool,
                   self_victim: bool = False) -> None:
        # Patch 1 wakes the reaper only from oom_kill_process; a task that
        # becomes a victim by allocating with SIGKILL pending is not reaped.
        if not can_oom_reap:
            kernel.reaper.forbidden_mm_ids.add(mm.id)  # under oom_lock, like every kill
        elif not self_victim:
            wake_oom_reaper(kernel, victim, mm)
