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
its docstring says otherwise (36324a99, bc448e89, 03049269 and the
changes of 4.7, 4.8, 4.9 and 4.14, each behind a ``PolicyOps`` flag).
``ReapRequest``, ``ReaperState``, the events and the lab's lines are the
lab's machinery; the designs that boot this reaper are in ``designs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .atomic import Cell, cmpxchg
from .cpu import SpinLock
from .errors import PlugPulled
from .events import Ev
from .lockdep import debug_show_all_locks
from .mm import (MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MMF, mmdrop, mmget, mmget_not_zero, mmgrab,
                 mmput, mmput_async, unmap_page_range)
from .gfp import PAGE_KB
from .oom_kill import exit_oom_victim, find_lock_task_mm, process_shares_mm
from .sched import (OOM_SCORE_ADJ_MIN, Task, TaskState, fatal_signal_pending, schedule_timeout_idle, sleep_on,
                    wake_up_process)
from .snapshot import ReaperStatus
from .stacktrace import sched_show_task
from .timer import TimerList, add_timer, jiffies_now
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel

#: aac45363 writes the literal 10; the name is bc448e89's.
MAX_OOM_REAP_RETRIES = 10


@dataclass(frozen=True)
class ReapRequest:
    """What the OOM killer hands the reaper. Patch 1 hands it the mm (pinned
    with mm_count; the task is kept here for the lab's lines only); from
    36324a99 on it hands it the task, whose mm is looked up at each try."""

    mm: MM | None
    task: Task | None
    pid: int
    comm: str


@dataclass(eq=False)
class ReaperState:
    """The reaper's slot, thread and bookkeeping; the harness reads it only
    through ``Kernel.reaper_status()``."""

    mm_to_reap: Cell[ReapRequest]  # patch1's mm_to_reap, 36324a99's task_to_reap
    task: Task  # the oom_reaper kthread
    # 03049269 on: oom_reaper_list instead of the slot, pushed and popped at
    # its head (LIFO) under oom_reaper_lock; ``busy`` is the one being reaped.
    queue: list[ReapRequest] | None = None
    busy: ReapRequest | None = None
    list_lock: SpinLock = field(default_factory=lambda: SpinLock("oom_reaper_lock"))
    popped: list[int] = field(default_factory=list)  # pids in the order the reaper took them
    # The lab's gate standing for the freezer (e2679606 made the reaper's wait
    # freezable): while it is set the reaper takes no new victim. Written by
    # the harness only (``freeze_oom_reaper``, ``thaw_oom_reaper``).
    frozen: bool = False
    # 5.18: victims whose delayed reap is armed (queue_oom_reaper's timer has
    # not fired yet). Under list_lock: armed from an OOM kill, disarmed by
    # the timer softirq.
    armed: int = 0
    last_mm: MM | None = None  # the mm of the current request's last try (36324a99 on)
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
    # Marked without a kill (a self-victim, or a chosen task already exiting)
    # by a design that hands such victims to nobody (before 4.7's try_oom_reaper).
    self_victim_mm_ids: set[int] = field(default_factory=set)

    def status(self) -> ReaperStatus:
        # Each read once: the reaper may clear them meanwhile. A victim on
        # oom_reaper_list that the reaper has not popped yet counts as its
        # work too: between a push and the pop the reaper is not idle.
        if self.queue is not None:
            waiting = list(self.queue)  # one copy: the list may change under us
            req = self.busy or (waiting[0] if waiting else None)  # popped from the head
        else:
            req = self.mm_to_reap.read()
        mm = None
        if req is not None:
            mm = req.mm if req.mm is not None else (req.task.mm if req.task is not None else None)
        return ReaperStatus(
            running=True, busy_with=req.pid if req is not None else None, armed=self.armed,
            busy_mm=mm.id if mm is not None else None, attempts=self.attempts,
            skipped=self.skipped, reaped=self.reaped, failed=self.failed, dropped=self.dropped,
            raced_exit=self.raced_exit, pages_reaped=self.pages_reaped,
            reaped_mm_ids=frozenset(self.reaped_mm_ids),
            dropped_mm_ids=frozenset(self.dropped_mm_ids),
            forbidden_mm_ids=frozenset(self.forbidden_mm_ids),
            self_victim_mm_ids=frozenset(self.self_victim_mm_ids),
            failed_mm_ids=frozenset(mm.id for mm in list(self.failed_mms)),
            failed_live_mm_ids=frozenset(mm.id for mm in list(self.failed_mms) if not mm.freed))


def wake_oom_reaper(kernel: "Kernel", victim: "Task", mm: MM, from_timer: bool = False) -> bool:
    """Hand the victim to the reaper; False if it was refused (the slot was
    busy, or the task is queued already), if there is no reaper, or once the
    plug is pulled (nothing is queued then).

    aac45363's ``wake_oom_reaper(mm)``: mm_count pin, cmpxchg NULL -> mm,
    wake on success, mmdrop on a busy slot. 36324a99 hands over the task
    instead (``task_to_reap``, pinned with get_task_struct, which Python's
    references stand for). 03049269 and its follow-ups push it at the head
    of ``oom_reaper_list`` (LIFO) unless it is there already (af8e15cc, not
    re-verified); from 5.0 (``reap_queued_once``) unless its mm was ever
    queued (MMF_OOM_REAP_QUEUED). 5.18's timer callback (``from_timer``)
    pushes without that test: queue_oom_reaper made it when arming. The
    victim's pid and comm ride along for the lab's lines; the
    ``reap_dropped`` event is the lab's."""
    state = kernel.reaper
    if state is None:
        return False
    try:
        with kernel.decision():
            if state.queue is not None:
                return _push_reap(kernel, state, victim, from_timer)
            return _queue_reap(kernel, state, victim, mm)
    except PlugPulled:
        return False


def try_oom_reaper(kernel: "Kernel", tsk: "Task") -> bool:
    """4.7's ``try_oom_reaper`` (3ef22dff, id not re-verified; the text is
    v4.7's): queue a victim that skipped the regular kill (a self-victim, or
    a chosen task already exiting) unless its mm is shared with a process
    that is not dying (neither SIGKILL pending nor its group exiting):
    reaping would pull memory from under a live process. False when not
    queued."""
    mm = tsk.mm
    if mm is None:
        return False
    if mm.mm_users.read() > 1:
        for p in kernel.processes():
            if not process_shares_mm(p, mm):
                continue
            if fatal_signal_pending(p) or p.signal.group_exit:
                continue
            kernel.lab(f"oom_reaper: pid {tsk.pid} ({tsk.comm}) not queued: its mm is shared with "
                       f"pid {p.pid} ({p.comm}), which is not dying", tsk)
            return False
    return wake_oom_reaper(kernel, tsk, mm)


#: 5.18's OOM_REAPER_DELAY, in units of HZ: the reap waits two seconds.
OOM_REAPER_DELAY_SECONDS = 2


def queue_oom_reaper(kernel: "Kernel", tsk: "Task") -> bool:
    """5.18's ``queue_oom_reaper`` (e4a38402, id not re-verified; the text
    read is 6.6's): arm a timer that hands the victim to the reaper in
    OOM_REAPER_DELAY (2*HZ), once per mm (MMF_OOM_REAP_QUEUED on
    ``signal->oom_mm``). The delay gives a victim that can exit by itself
    the time to do so, and so to run its robust-futex cleanup on memory
    the reaper has not zapped yet. False when not armed."""
    state = kernel.reaper
    mm = tsk.signal.oom_mm
    if state is None or mm is None:
        return False
    try:
        with kernel.decision():
            # test_and_set_bit(MMF_OOM_REAP_QUEUED): every caller holds
            # oom_lock (oom_kill_process, out_of_memory's shortcut), so
            # two OOM kills cannot both arm a timer for the same mm.
            if mm.flags & MMF.MMF_OOM_REAP_QUEUED:
                return False
            mm.flags |= MMF.MMF_OOM_REAP_QUEUED
            # oom_reaper_lock: the softirq disarms (decrements) concurrently.
            with state.list_lock:
                state.armed += 1
            hz = kernel.clock.hz
            expires = jiffies_now(kernel.clock) + OOM_REAPER_DELAY_SECONDS * hz
            add_timer(kernel, TimerList(lambda: _oom_reaper_timer(kernel, tsk), expires, "oom_reaper_timer"))
            kernel.lab(f"oom_reaper: pid {tsk.pid} ({tsk.comm}) will be queued in {OOM_REAPER_DELAY_SECONDS}*HZ "
                       f"(queue_oom_reaper's timer, jiffy {expires})", tsk)
            return True
    except PlugPulled:
        return False


def _oom_reaper_timer(kernel: "Kernel", tsk: "Task") -> None:
    """5.18's timer callback (``wake_oom_reaper(struct timer_list *)``, in
    softirq context): if exit_mmap has set MMF_OOM_SKIP meanwhile, the
    victim managed on its own and nothing is queued; otherwise push it on
    ``oom_reaper_list`` and wake the reaper (``trace_wake_reaper`` is
    fired there)."""
    state = kernel.reaper
    mm = tsk.signal.oom_mm
    try:
        if mm.flags & MMF.MMF_OOM_SKIP:
            with kernel.decision():
                kernel.lab(f"oom_reaper: pid {tsk.pid} ({tsk.comm}) not queued when its timer fired: "
                           f"MMF_OOM_SKIP is set (its exit_mmap got there first)", state.task)
        else:
            wake_oom_reaper(kernel, tsk, mm, from_timer=True)
    except PlugPulled:
        pass  # shutting down: queue nothing
    finally:
        # After the push: the reaper counts as busy from the arming on.
        with state.list_lock:
            state.armed -= 1
        kernel.poke()


def _queue_reap(kernel: "Kernel", state: ReaperState, victim: "Task", mm: MM) -> bool:
    if kernel.policy_ops.reap_task:
        req = ReapRequest(None, victim, victim.pid, victim.comm)
    else:
        # Pin the struct with mm_count, not mm_users: the victim's own exit
        # must still be able to tear the address space down while it waits.
        mmgrab(mm)
        req = ReapRequest(mm, None, victim.pid, victim.comm)
    # cmpxchg, NULL -> request only. Two OOM kills racing for the slot (two
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
    busy_text = f"pid {busy.pid} ({busy.comm})" if busy is not None else "another victim"
    slot = "task_to_reap" if kernel.policy_ops.reap_task else "mm_to_reap"
    kernel.lab(f"oom_reaper: {slot} is busy with {busy_text}; pid {victim.pid} "
               f"({victim.comm}) will not be reaped (a single slot)", victim)
    if req.mm is not None:
        mmdrop(mm)
    return False


def _push_reap(kernel: "Kernel", state: ReaperState, victim: "Task", from_timer: bool = False) -> bool:
    queue = state.queue
    assert queue is not None
    if kernel.policy_ops.reap_queued_once and not from_timer:
        # 5.0's test_and_set_bit(MMF_OOM_REAP_QUEUED, &oom_mm->flags): an mm
        # is queued once in its life, not just once at a time. Every caller
        # holds oom_lock (the OOM killer's paths), so test and set cannot split.
        oom_mm = victim.signal.oom_mm
        if oom_mm is None or oom_mm.flags & MMF.MMF_OOM_REAP_QUEUED:
            return False
        oom_mm.flags |= MMF.MMF_OOM_REAP_QUEUED
    # oom_reaper_lock: the OOM killer pushes while the reaper pops; without
    # it a push racing a pop could lose one of the two list updates.
    # 4.9 (``signal_oom_mm``): the request carries signal->oom_mm, pinned
    # for as long as it waits (the kernel's get_task_struct keeps the signal
    # struct, and so its oom_mm pin, alive). The OOM killer's caller pins
    # the mm too, or is its user, so it is not freed between test and pin;
    # a victim whose group is gone and whose mm is freed has nothing to reap.
    oom_mm = victim.signal.oom_mm if kernel.policy_ops.signal_oom_mm else None
    if oom_mm is not None and oom_mm.freed:
        oom_mm = None
    if oom_mm is not None:
        mmgrab(oom_mm)
    with state.list_lock:
        queued = any(r.task is victim for r in queue)  # already queued (af8e15cc)
        if not queued:
            queue.insert(0, ReapRequest(oom_mm, victim, victim.pid, victim.comm))
        depth = len(queue)
    if queued:
        if oom_mm is not None:
            mmdrop(oom_mm)  # after the spinlock: an mm reference is an event
        return False
    kernel.tracer.record(Ev.WAKE_REAPER, victim.pid, victim.comm,
                         mm=victim.mm.id if victim.mm is not None else None)
    if depth > 1 or state.busy is not None:
        kernel.lab(f"oom_reaper: pid {victim.pid} ({victim.comm}) queued on oom_reaper_list, "
                   f"{depth} waiting (the list is popped from its head)", victim)
    wake_up_process(state.task)
    return True


def __oom_reap_vmas(kernel: "Kernel", state: ReaperState, req: ReapRequest) -> bool:
    """One attempt: True when done (reaped, or nothing left to reap).
    aac45363's ``__oom_reap_vmas``: mm_users taken only if not zero, then
    the mmap_sem trylock, then hugetlb and VM_LOCKED VMAs skipped and
    anonymous or private ones unmapped, then mmput. The "reaped process"
    line is bc448e89's and printed only if ``oom_reaper_reports`` says so.
    4.7's ``__oom_reap_task`` holds ``oom_lock`` across the attempt
    (``reaper_takes_oom_lock``, a blocking mutex_lock) and drops the mm
    with ``mmput_async`` after unlocking it (``reaper_mmput_async``).

    A decision: once the plug is pulled the reaper reaps nothing more.
    """
    ops = kernel.policy_ops
    taken: list[MM] = []  # the mm_users reference this attempt took, if any
    if ops.reaper_takes_oom_lock:
        # oom_lock: the OOM killer must not select (and find the victim's
        # mm not yet reaped, nor MMF_OOM_REAPED set) in the middle of a reap.
        kernel.oom_lock.lock()
    try:
        with kernel.decision():
            return _reap_once(kernel, state, req, taken)
    finally:
        if ops.reaper_takes_oom_lock:
            kernel.oom_lock.unlock()
        # Possibly the last user: then exit_mmap runs here, in the reaper,
        # or (4.7's mmput_async) on a worker.
        for mm in taken:
            (mmput_async if ops.reaper_mmput_async else mmput)(mm)


def _target_mm(kernel: "Kernel", state: ReaperState, req: ReapRequest) -> MM | None:
    """The mm to reap with an mm_users reference taken, or None when there is
    nothing left to reap. Patch 1 has the mm (pinned); from 36324a99 on the
    reaper looks for a thread of the victim that still has one
    (find_lock_task_mm), and takes the reference under its task_lock."""
    if req.task is None:
        mm = req.mm
        # atomic_inc_not_zero(mm_users): the victim may have dropped its last
        # user reference already. Then exit_mmap is (or was) freeing
        # everything and reaping would race with it:
        #   oom_reaper                          victim
        #                                       mmput: mm_users 1 -> 0
        #   mmget_not_zero: fails, done         exit_mmap: frees the pages
        # The mm_count pin keeps the struct itself valid for this check.
        got = mm if mmget_not_zero(mm) else None
    elif req.mm is not None:
        # 4.9: signal->oom_mm, whichever thread still has it, or none: the
        # mm_count pin for the attempt (dropped after the trylock).
        mm = got = req.mm
        mmgrab(got)
    elif kernel.policy_ops.reaper_mmget_after_trylock:
        # 4.8: only mm_count is pinned here (the caller's trylock comes
        # first, then mmget_not_zero in _reap_once).
        with find_lock_task_mm(req.task) as p:
            got = p.mm if p is not None else None
            if got is not None:
                mmgrab(got)
        mm = got
    elif kernel.policy_ops.reaper_takes_oom_lock:
        # 4.7: under task_lock a thread's ->mm has a user (that thread), so
        # a plain increment is enough.
        with find_lock_task_mm(req.task) as p:
            mm = got = p.mm if p is not None else None
            if got is not None:
                mmget(got)
    else:
        with find_lock_task_mm(req.task) as p:
            mm = p.mm if p is not None else None
            got = mm if mm is not None and mmget_not_zero(mm) else None
    if got is None:
        _raced_exit(kernel, state, req, mm)
    return got


def _raced_exit(kernel: "Kernel", state: ReaperState, req: ReapRequest, mm: MM | None) -> None:
    """The victim had no mm user left: nothing to reap (the lab's note)."""
    state.raced_exit += 1
    kernel.tracer.record(Ev.REAP_RACED_EXIT, req.pid, req.comm, mm=mm.id if mm is not None else None)
    kernel.lab(f"oom_reaper: pid {req.pid} ({req.comm}) has no mm user left (it exited "
               f"before the reaper got there): nothing to reap", state.task)


def _reap_once(kernel: "Kernel", state: ReaperState, req: ReapRequest, taken: list[MM]) -> bool:
    mm = _target_mm(kernel, state, req)
    if mm is None:
        return True
    # 4.14 (``reaper_exit_mmap_concurrent``): signal->oom_mm with no
    # mm_users reference at all; the attempt's mm_count pin goes after the
    # trylock, as 4.8's, and wake_oom_reaper's pin keeps the struct.
    concurrent = req.mm is not None and kernel.policy_ops.reaper_exit_mmap_concurrent
    late_get = (req.task is not None and kernel.policy_ops.reaper_mmget_after_trylock
                and not concurrent)
    if not (late_get or concurrent):
        taken.append(mm)  # the caller drops it, whatever happens here
    state.last_mm = mm
    state.attempts += 1
    try:
        if not mm.mmap_sem.down_read_trylock():
            state.skipped += 1
            kernel.tracer.record(Ev.SKIP_TASK_REAPING, req.pid, req.comm, mm=mm.id,
                                 attempt=state.attempts)
            return False
        # 4.8: mm_users only now, so that mmput_async runs only after a
        # reap; the victim may have dropped its last reference meanwhile.
        if late_get:
            if not mmget_not_zero(mm):
                mm.mmap_sem.up_read()
                _raced_exit(kernel, state, req, mm)
                return True
            taken.append(mm)
    finally:
        if late_get or concurrent:
            mmdrop(mm)  # the mm_count pin of _target_mm; mm_users (if taken) keeps it
    if concurrent and mm.flags & MMF.MMF_OOM_SKIP:
        return _exit_mmap_got_there(kernel, state, req, mm)
    return _reap_locked(kernel, state, req, mm)


def _exit_mmap_got_there(kernel: "Kernel", state: ReaperState, req: ReapRequest, mm: MM) -> bool:
    """4.14's back-off (212925802454, id not re-verified): MMF_OOM_SKIP seen
    under mmap_sem for read means exit_mmap has unmapped the mm and is
    about to free its page tables; drop the lock (exit_mmap's down_write
    waits for it), fire skip_task_reaping, and count the attempt done."""
    mm.mmap_sem.up_read()
    kernel.tracer.record(Ev.SKIP_TASK_REAPING, req.pid, req.comm, mm=mm.id,
                         attempt=state.attempts, reason="MMF_OOM_SKIP")
    kernel.lab(f"oom_reaper: pid {req.pid} ({req.comm}): MMF_OOM_SKIP already set (its exit_mmap "
               f"unmapped the mm first): nothing to reap", state.task)
    return True


def __oom_reap_task_mm(kernel: "Kernel", mm: MM) -> tuple[int, bool]:
    """Unmap what may be dropped behind the owner's back, with mmap_sem held
    for read by the caller: every private (anonymous or private file) VMA
    but hugetlb ones and, until 5.18 (``reap_mlocked_vmas``), mlocked ones.
    Returns the pages freed and whether every such VMA was done: from 4.19
    on (``reaper_nonblocking_notifiers``) a VMA whose mmu notifiers would
    block is skipped and the attempt counts as failed. 4.14 sets
    MMF_UNSTABLE first (``reaper_exit_mmap_concurrent``).

    The name and the return value are 5.x's (``__oom_reap_task_mm``, shared
    by the reaper and process_mrelease); aac45363 to 4.9 unmap inline in
    ``__oom_reap_vmas``/``__oom_reap_task`` with the same filter (4.14 calls
    it ``can_madv_dontneed_vma``: VM_LOCKED, VM_HUGETLB, VM_PFNMAP; the
    model has no PFN mappings)."""
    ops = kernel.policy_ops
    if ops.reaper_exit_mmap_concurrent:
        # 4.14: tell a kthread that use_mm'd this mm that its pages may
        # read as zeroes from now on (nothing in the model reads it).
        mm.flags |= MMF.MMF_UNSTABLE
    freed, complete = 0, True
    for vma in mm.vmas:
        # hugetlb pages need more than a zap; mlocked pages too until 5.18.
        if vma.is_hugetlb or (vma.locked and not ops.reap_mlocked_vmas):
            continue
        # Only private memory is safe to drop behind the owner's back.
        if vma.is_anonymous or not vma.kind.shared:
            if vma.notifier_blocks and ops.reaper_nonblocking_notifiers:
                complete = False  # invalidate_range_start_nonblock: -EAGAIN
                continue
            freed += unmap_page_range(mm, vma)
    return freed, complete


def _rss_text(mm: MM) -> str:
    return (f"anon-rss:{mm.get_mm_counter(MM_ANONPAGES) * PAGE_KB}kB, "
            f"file-rss:{mm.get_mm_counter(MM_FILEPAGES) * PAGE_KB}kB, "
            f"shmem-rss:{mm.get_mm_counter(MM_SHMEMPAGES) * PAGE_KB}kB")


def _reap_locked(kernel: "Kernel", state: ReaperState, req: ReapRequest, mm: MM) -> bool:
    """The unmap itself, with mmap_sem held for read (released here). False
    when part of the mm could not be reaped (4.19's nonblocking notifiers):
    the caller tries again, and nothing is reported."""
    try:
        kernel.tracer.record(Ev.START_TASK_REAPING, req.pid, req.comm, mm=mm.id)
        freed, complete = __oom_reap_task_mm(kernel, mm)
        state.pages_reaped += freed
        if complete:
            state.reaped += 1
            state.reaped_mm_ids.add(mm.id)
            rss = _rss_text(mm)
            if kernel.policy_ops.oom_reaper_reports:
                kernel.printk(f"oom_reaper: reaped process {req.pid} ({req.comm}), now {rss}",
                              LogLevel.KERN_INFO, state.task)
            else:
                kernel.lab(f"oom_reaper: reaped pid {req.pid} ({req.comm}) on try {state.attempts}: "
                           f"{freed} pages freed, now {rss}", state.task)
        else:
            kernel.lab(f"oom_reaper: pid {req.pid} ({req.comm}) reaped in part on try {state.attempts} "
                       f"({freed} pages freed): an mmu notifier would block on a VMA; try again", state.task)
        if complete:
            kernel.tracer.record(Ev.FINISH_TASK_REAPING, req.pid, req.comm, mm=mm.id, pages=freed)
        else:
            kernel.tracer.record(Ev.FINISH_TASK_REAPING, req.pid, req.comm, mm=mm.id, pages=freed,
                                 partial=True)
        if freed:
            # Memory came back: the lockup window starts again from here
            # (a delayed reap may come long after the last allocation).
            kernel.note_progress()
        kernel.poke()
    finally:
        mm.mmap_sem.up_read()
    if not complete:
        return False
    if kernel.policy_ops.mmf_oom_reaped:
        # 4.7: the mm is marked instead; oom_badness gives it 0 points,
        # and TIF_MEMDIE is cleared by oom_reap_task, after the attempts.
        mm.flags |= MMF.MMF_OOM_REAPED
    elif req.task is not None:
        # 36324a99: the victim's memory is gone, so stop treating it as
        # the one everybody waits for. Hide it from the OOM killer (it
        # may well sleep on) and clear its TIF_MEMDIE, which lets the
        # next OOM kill choose somebody else.
        req.task.signal.oom_score_adj = OOM_SCORE_ADJ_MIN
        exit_oom_victim(kernel, req.task)
    return True


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
    dump are bc448e89's (``oom_reaper_reports``). 4.7's ``oom_reap_task``
    then clears the victim's TIF_MEMDIE, reaped or not
    (``reaper_clears_memdie_always``)."""
    state.attempts = 0
    state.last_mm = None
    hz = kernel.clock.hz
    try:
        tries = 0
        while tries < MAX_OOM_REAP_RETRIES:
            tries += 1
            if __oom_reap_vmas(kernel, state, req):
                break
            schedule_timeout_idle(hz // 10, "oom_reap_vmas")
        else:
            _report_failure(kernel, state, req, tries)
        if kernel.policy_ops.reaper_sets_oom_skip and req.mm is not None:
            # 4.9: reaped, or somebody will not let go of mmap_sem: either
            # way hide the mm, so that the OOM killer goes past the victim.
            with kernel.decision():
                req.mm.flags |= MMF.MMF_OOM_SKIP
                kernel.poke()
        if kernel.policy_ops.reaper_clears_memdie_always and req.task is not None:
            with kernel.decision():
                _clear_memdie_after_reap(kernel, state, req)
    finally:
        if req.mm is not None:
            mmdrop(req.mm)  # the pin taken by wake_oom_reaper


def _clear_memdie_after_reap(kernel: "Kernel", state: ReaperState, req: ReapRequest) -> None:
    """4.7's end of ``oom_reap_task``: clear the victim's TIF_MEMDIE whether
    the reap succeeded or not, "because the task shouldn't be sitting on a
    reasonably reclaimable memory anymore or it is not a good candidate for
    the oom victim right now". A victim the reaper failed on may then be
    chosen again: it is killed (a no-op) and queued once more."""
    task = req.task
    assert task is not None
    had = task.tif_memdie
    exit_oom_victim(kernel, task)
    if had and not task.tif_memdie:
        kernel.lab(f"oom_reaper: TIF_MEMDIE of pid {req.pid} ({req.comm}) cleared after the "
                   f"reap attempt; the OOM killer may choose again", state.task)


def _report_failure(kernel: "Kernel", state: ReaperState, req: ReapRequest, tries: int) -> None:
    """After the last failed try: bc448e89's "unable to reap" line and lock
    dump, or the lab's line for a design that printed nothing. From 5.x
    (``reaper_failure_shows_task``; 5.10.13's text) nothing is reported if
    MMF_OOM_SKIP is set by then (exit_mmap has the mm: 4.19 or so), and the
    victim's ``sched_show_task`` comes between the line and the lock dump
    (5.6, "mm, oom: dump stack of victim when reaping failed"). 4.14 has
    no MMF_OOM_SKIP test there (``if (attempts <= MAX_OOM_REAP_RETRIES)
    goto done;`` in the v4.14 text read, search id 24950849892)."""
    mm = req.mm if req.mm is not None else state.last_mm
    ops = kernel.policy_ops
    if ops.reaper_failure_shows_task and mm is not None and mm.flags & MMF.MMF_OOM_SKIP:
        kernel.lab(f"oom_reaper: {tries} failed tries on pid {req.pid} ({req.comm}), but MMF_OOM_SKIP "
                   f"is set (its exit_mmap has the mm): not reported", state.task)
        return
    with kernel.decision():
        state.failed += 1
        if mm is not None:
            state.failed_mms.append(mm)
        kernel.tracer.record(Ev.REAP_FAILED, req.pid, req.comm, mm=mm.id if mm is not None else None,
                             attempts=tries)
        if kernel.policy_ops.oom_reaper_reports:
            kernel.printk(f"oom_reaper: unable to reap pid:{req.pid} ({req.comm})",
                          LogLevel.KERN_INFO, state.task)
            if kernel.policy_ops.reaper_gives_up_twice and req.task is not None:
                _second_strike(kernel, state, req)
            if ops.reaper_failure_shows_task and req.task is not None:
                for line in sched_show_task(req.task):
                    kernel.printk(line, LogLevel.KERN_INFO, state.task)
            for line in debug_show_all_locks(kernel):
                kernel.printk(line, LogLevel.KERN_INFO, state.task)
        else:
            held = f"; {_holders(kernel, mm.mmap_sem)}" if mm is not None else ""
            kernel.lab(f"oom_reaper: gave up on pid {req.pid} ({req.comm}) after {tries} "
                       f"failed down_read_trylock(mmap_sem){held}", state.task)


def _second_strike(kernel: "Kernel", state: ReaperState, req: ReapRequest) -> None:
    """4.8's two strikes (``reaper_gives_up_twice``): the first failure on an
    mm marks it MMF_OOM_NOT_REAPABLE; the second prints "giving up" and
    sets MMF_OOM_REAPED, which hides the mm from the OOM killer (0 points,
    and the scan goes past its victim), so that it can move on."""
    with find_lock_task_mm(req.task) as p:
        if p is None:
            return
        mm = p.mm
        if not mm.flags & MMF.MMF_OOM_NOT_REAPABLE:
            mm.flags |= MMF.MMF_OOM_NOT_REAPABLE
            return
        mm.flags |= MMF.MMF_OOM_REAPED
    kernel.printk(f"oom_reaper: giving up pid:{req.pid} ({req.comm})", LogLevel.KERN_INFO, state.task)


def oom_reaper(task: "Task") -> None:
    """The kthread's main loop, as aac45363's ``oom_reaper()``: sleep
    (TASK_INTERRUPTIBLE; the freezer is not modelled) until the slot holds
    an mm, reap it, then clear the slot."""
    kernel = task.kernel
    state = kernel.reaper
    if state.queue is not None:
        _reap_list(kernel, state)
    cell = state.mm_to_reap
    while True:
        sleep_on(TaskState.TASK_INTERRUPTIBLE, "oom_reaper",
                 lambda: cell.read() is not None and not state.frozen)
        req = cell.read()
        try:
            oom_reap_vmas(kernel, state, req)
        finally:
            # Free the slot only when done: until then a new victim must not
            # be queued behind our back.
            cell.write(None)
            kernel.poke()


def _reap_list(kernel: "Kernel", state: ReaperState) -> None:
    """03049269's loop: sleep until ``oom_reaper_list`` is not empty, pop its
    head under ``oom_reaper_lock``, reap it. Never returns (the plug unwinds it)."""
    queue = state.queue
    assert queue is not None
    while True:
        sleep_on(TaskState.TASK_INTERRUPTIBLE, "oom_reaper", lambda: bool(queue) and not state.frozen)
        # oom_reaper_lock: see _push_reap.
        with state.list_lock:
            req = queue.pop(0) if queue else None
            state.busy = req
        if req is None:
            continue
        state.popped.append(req.pid)
        try:
            oom_reap_vmas(kernel, state, req)
        finally:
            state.busy = None
            kernel.poke()


def freeze_oom_reaper(kernel: "Kernel") -> None:
    """Close the lab's freezer gate: the reaper finishes the victim in hand
    and then takes no new one until ``thaw_oom_reaper``. The kernel's reaper
    waits freezable from e2679606 on (in ``queue``); for the designs before
    it the gate stands for a reaper that is simply late. The lab's."""
    if kernel.reaper is not None:
        kernel.reaper.frozen = True


def thaw_oom_reaper(kernel: "Kernel") -> None:
    """Open the gate and wake the reaper (``__thaw_task``'s wake-up). The
    flag is written before the wake, and the reaper's wait rechecks it after
    every wake, so the thaw cannot be missed. The lab's."""
    state = kernel.reaper
    if state is not None:
        state.frozen = False
        wake_up_process(state.task)
        kernel.poke()
