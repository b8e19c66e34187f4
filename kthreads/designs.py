"""The reaper designs, patch 1 to Linux 4.14: one ``PolicyOps`` subclass each.

Each class is the design before it plus one change (its ``commit``,
``title`` and ``change`` say which), expressed as ``PolicyOps`` flags whose
docstrings name the kernel commits; ``boot`` and ``after_kill`` wire the
reaper of ``oom_reaper.py`` in. ``kernel.py`` maps each ``Policy`` to its
class here (``none`` and ``v4.5`` live in ``policy.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .atomic import Cell
from .gfp import GfpLayout
from .kallsyms import KernelSymbols
from .mm import MM, mmdrop
from .oom_reaper import ReaperState, oom_reaper, queue_oom_reaper, try_oom_reaper, wake_oom_reaper
from .policy import Policy, PolicyOps

if TYPE_CHECKING:
    from .kernel import Kernel
    from .sched import Task


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
        kernel.reaper = ReaperState(Cell(None, "task_to_reap" if self.reap_task else "mm_to_reap"), task,
                                    queue=[] if self.reaper_list else None)
        kernel.start(task)

    def shutdown(self, kernel: "Kernel") -> None:
        # After every thread is joined. Requests are queued only before the
        # plug is pulled and the reaper's loop empties the slot whatever
        # unwinds it, so one is left here only if the reaper thread was run
        # down before it ever entered its loop: give its mm_count pin back.
        req = kernel.reaper.mm_to_reap.xchg(None)
        if req is not None and req.mm is not None:
            mmdrop(req.mm)
        # 4.9's requests pin signal->oom_mm; give back those never popped.
        queue = kernel.reaper.queue or []
        while queue:
            req = queue.pop()
            if req.mm is not None:
                mmdrop(req.mm)

    def after_kill(self, kernel: "Kernel", victim: "Task", mm: MM, can_oom_reap: bool,
                   self_victim: bool = False) -> None:
        # Patch 1 wakes the reaper only from oom_kill_process; a task that
        # becomes a victim by allocating with SIGKILL pending is not reaped.
        if not can_oom_reap:
            kernel.reaper.forbidden_mm_ids.add(mm.id)  # under oom_lock, like every kill
        elif not self_victim:
            wake_oom_reaper(kernel, victim, mm)
        else:
            kernel.reaper.self_victim_mm_ids.add(mm.id)  # the lab's note: never queued


class TifMemdieOps(Patch1Ops):
    """``tifmemdie``: 36324a99, "oom: clear TIF_MEMDIE after oom_reaper
    managed to unmap the address space" (4.6-rc1, second of the series).
    The slot holds the task (``task_to_reap``); each try finds a thread of
    it that still has an mm; a successful reap sets its ``oom_score_adj``
    to OOM_SCORE_ADJ_MIN and clears its TIF_MEMDIE, so the OOM killer can
    choose another victim. Taken from the series' v6 3/9 posting and the
    v4.6 release text (the merged commit itself not re-read)."""

    policy = Policy.TIFMEMDIE
    commit = "36324a99"
    title = "oom: clear TIF_MEMDIE after oom_reaper managed to unmap the address space"
    label = "Linux 4.6-rc1 at 36324a99: the reaper clears TIF_MEMDIE"
    change = ("the slot holds the task; after a successful reap its TIF_MEMDIE is cleared and its "
              "oom_score_adj set to -1000, so the OOM killer may choose another victim")
    reap_task = True


class ReportOps(TifMemdieOps):
    """``report``: bc448e89, "mm, oom_reaper: report success/failure": the
    "oom_reaper: reaped process" line, and "unable to reap pid:" with
    debug_show_all_locks() after the last try. No other change."""

    policy = Policy.REPORT
    commit = "bc448e89"
    title = "mm, oom_reaper: report success/failure"
    label = "Linux 4.6-rc1 at bc448e89: the reaper reports"
    change = "the reaper prints 'reaped process' and 'unable to reap' (with the lock dump)"
    oom_reaper_reports = True


class QueueOps(ReportOps):
    """``queue``: 03049269, "mm, oom_reaper: implement OOM victims queuing",
    with its 4.6-rc1 follow-ups (29c696e1 a singly linked list, bb29902a,
    af8e15cc not queueing a task twice; ids not re-verified). Victims are
    pushed on ``oom_reaper_list`` and popped from its head (LIFO), so no
    victim is dropped. e2679606 made the reaper freezable; the model has no
    freezer."""

    policy = Policy.QUEUE
    commit = "03049269"
    title = "mm, oom_reaper: implement OOM victims queuing"
    label = "Linux 4.6-rc1 at 03049269: a list of victims to reap"
    change = "oom_reaper_list instead of the single slot: every victim is queued (LIFO), none dropped"
    reaper_list = True


class V47Ops(QueueOps):
    """``v4.7``: Linux 4.7's OOM killer and reaper, on top of ``queue``
    (read in v4.7's mm/oom_kill.c and mm/page_alloc.c; each change is a
    flag on ``PolicyOps`` whose docstring names its commit):

    * the !__GFP_FS test moved from ``__alloc_pages_may_oom`` into
      ``out_of_memory``, after the self-victim shortcut: a killed GFP_NOFS
      allocator gets the reserves (``nofs_check_in_out_of_memory``);
    * self-victims and already-exiting chosen tasks are queued for the
      reaper (``try_oom_reaper``: ``reap_self_victims``);
    * a reaped mm is marked MMF_OOM_REAPED and scores 0
      (``mmf_oom_reaped``); TIF_MEMDIE is cleared after every reap, success
      or failure (``reaper_clears_memdie_always``);
    * the reaper holds ``oom_lock`` across an attempt and drops its mm
      reference with ``mmput_async`` (``reaper_takes_oom_lock``,
      ``reaper_mmput_async``; the model's __mmput never blocks, so the
      latter changes nothing observable);
    * the scan walks processes and aborts on ``signal->oom_victims``
      (``oom_scan_processes``); ``task_will_free_mem`` wants the whole
      thread group exiting (``task_will_free_mem_group``; 4.7's oom.h not
      read);
    * mm syscalls take mmap_sem for write killably
      (``killable_mmap_writers``, read by ``mm.vm_mmap_write_lock``).

    Not modelled: 4.7's OOM-detection rework (``should_reclaim_retry``:
    with nothing reclaimable it reaches the OOM killer as the model does),
    the freezer, and ``oom_killer_disable``."""

    policy = Policy.V4_7
    commit = "v4.7"
    title = "Linux 4.7"
    label = "Linux 4.7: killed GFP_NOFS allocators get the reserves; self-victims reaped"
    change = ("GFP_NOFS test moved into out_of_memory after the self-victim shortcut (3da88fb3); "
              "self-victims reaped (try_oom_reaper); MMF_OOM_REAPED and TIF_MEMDIE cleared after "
              "every reap; reaper under oom_lock, mmput_async; killable mmap_sem writers")
    release = "4.7.0"
    nofs_check_in_out_of_memory = True
    mmf_oom_reaped = True
    reaper_clears_memdie_always = True
    reaper_takes_oom_lock = True
    oom_scan_processes = True
    task_will_free_mem_group = True
    reap_self_victims = True
    reaper_mmput_async = True
    killable_mmap_writers = True

    def after_kill(self, kernel: "Kernel", victim: "Task", mm: MM, can_oom_reap: bool,
                   self_victim: bool = False) -> None:
        # 4.7: a victim that skipped the regular kill goes through
        # try_oom_reaper; a killed one is queued as before (or forbidden).
        if self_victim:
            try_oom_reaper(kernel, victim)
        else:
            super().after_kill(kernel, victim, mm, can_oom_reap)


class V48Ops(V47Ops):
    """``v4.8``: Linux 4.8's OOM killer and reaper, on top of ``v4.7`` (read
    in a 4.8-stable mm/oom_kill.c, 4.8.18, per docs/HISTORY-DESIGNS.md §1.8;
    the 4.8.0 tag itself not re-read):

    * every process sharing the victim's mm is killed, OOM_SCORE_ADJ_MIN
      ones included; a kthread or init sharer hides the mm instead
      (MMF_OOM_REAPED, "has mm pinned by"): ``oom_kill_all_sharers``;
    * sharers of an mm share one oom_score_adj (``shared_oom_score_adj``);
    * ``task_will_free_mem`` looks at every sharer and is the whole
      self-victim test; self-victims and exiting chosen tasks go straight to
      wake_oom_reaper (``task_will_free_mem_mm``);
    * the scan goes past a victim whose mm is MMF_OOM_REAPED
      (``oom_scan_skips_reaped``);
    * the second failed reap of an mm gives it up (``reaper_gives_up_twice``);
    * mm_users is taken after the trylock (``reaper_mmget_after_trylock``).
    """

    policy = Policy.V4_8
    commit = "v4.8"
    title = "Linux 4.8"
    label = "Linux 4.8: every mm sharer killed; a reaped or twice-failed mm is skipped"
    change = ("kill all mm sharers, OOM_SCORE_ADJ_MIN ones too (97fd49c2), one oom_score_adj per mm "
              "(44a70ade); task_will_free_mem over the mm's sharers as the self-victim test; the scan "
              "skips MMF_OOM_REAPED victims; 'giving up' after a second failed reap")
    release = "4.8.0"
    oom_kill_all_sharers = True
    shared_oom_score_adj = True
    task_will_free_mem_mm = True
    oom_scan_skips_reaped = True
    reaper_gives_up_twice = True
    reaper_mmget_after_trylock = True

    def after_kill(self, kernel: "Kernel", victim: "Task", mm: MM, can_oom_reap: bool,
                   self_victim: bool = False) -> None:
        # 4.8: task_will_free_mem already checked the sharers, so a
        # self-victim (or exiting chosen task) is handed over directly.
        if self_victim:
            wake_oom_reaper(kernel, victim, mm)
        else:
            Patch1Ops.after_kill(self, kernel, victim, mm, can_oom_reap)


class V49Ops(V48Ops):
    """``v4.9``: Linux 4.9's OOM killer and reaper, on top of ``v4.8``. No 4.9
    mm/oom_kill.c was read (docs/HISTORY-DESIGNS.md §1.9 used 4.10's), so
    each change is "4.9 or 4.10" unless its flag says otherwise:

    * the victim's mm is kept in ``signal->oom_mm`` and the reaper works on
      it (``signal_oom_mm``);
    * the scan passes over a victim whose oom_mm is MMF_OOM_SKIP and aborts
      on any other (``oom_evaluate_task``);
    * every reap ends with MMF_OOM_SKIP, reaped or not; the reaper no longer
      clears TIF_MEMDIE and 4.8's two strikes are gone
      (``reaper_sets_oom_skip``);
    * a kthread sharing the mm no longer stops the reap
      (``reap_kthread_shared_mm``);
    * output: the page allocation stall warning (``warns_alloc_stalls``),
      khungtaskd's all-locks dump (``hung_task_shows_all_locks``) and
      sched_show_task without the saved PC (``sched_show_task_no_pc``).
    """

    policy = Policy.V4_9
    commit = "v4.9"
    title = "Linux 4.9"
    label = "Linux 4.9: victims reaped through signal->oom_mm; MMF_OOM_SKIP after every reap"
    change = ("signal->oom_mm (26db62f1) reaped whoever still holds it; MMF_OOM_SKIP after every reap, "
              "success or failure; TIF_MEMDIE no longer cleared by the reaper; 'page allocation "
              "stalls' (63f53dea); khungtaskd dumps all locks; no saved PC in sched_show_task")
    release = "4.9.0"
    reaper_clears_memdie_always = False
    reaper_gives_up_twice = False
    oom_scan_skips_reaped = False  # oom_evaluate_task's test replaces it
    signal_oom_mm = True
    oom_evaluate_task = True
    reaper_sets_oom_skip = True
    reap_kthread_shared_mm = True
    warns_alloc_stalls = True
    hung_task_shows_all_locks = True
    sched_show_task_no_pc = True


class V414Ops(V49Ops):
    """``v4.14``: Linux 4.14's OOM killer and reaper, on top of ``v4.9``
    (docs/HISTORY-DESIGNS.md §1.10; only the 212925802454 hunks were read,
    the rest is from memory of v4.14's text and marked so in each flag):

    * the reaper and exit_mmap run concurrently
      (``reaper_exit_mmap_concurrent``, 212925802454): no mm_users
      reference, so no raced-exit path and no mmput_async; exit_mmap sets
      MMF_OOM_SKIP and waits for a reap in progress; the reaper backs off
      on MMF_OOM_SKIP and sets MMF_UNSTABLE;
    * the VMA filter is ``can_madv_dontneed_vma`` (VM_LOCKED, VM_HUGETLB,
      VM_PFNMAP): the same VMAs as before in the model, which has no PFN
      mappings;
    * 4.14 gives up at once (after a HZ sleep) on an mm with mmu notifiers;
      the model has no mmu notifiers, so that path is not modelled;
    * the 4.13 oom tracepoints (``oom_reaper_tracepoints``) and 4.10's
      mutex hand-off (``mutex_handoff``);
    * output: ``nodemask=(null)`` in the OOM header and in the stall
      warning (``header_nodemask``, ``stall_warning_nodemask``), and
      khungtaskd's all-locks dump once per scan
      (``hung_task_all_locks_once_per_scan``). The stall check's move
      before direct reclaim is not modelled (the model's stall clock has
      one place).
    """

    policy = Policy.V4_14
    commit = "v4.14"
    title = "Linux 4.14"
    label = "Linux 4.14: the reaper and exit_mmap run concurrently; no mm_users reference"
    change = ("the reaper holds no mm_users reference and exit_mmap hands over with MMF_OOM_SKIP "
              "(212925802454), so a victim whose last mmput blocks is still reaped; MMF_UNSTABLE; "
              "oom tracepoints (4.13); mutex hand-off (4.10); nodemask=(null) in the header "
              "and the stall warning; khungtaskd dumps all locks once per scan")
    release = "4.14.0"
    reaper_exit_mmap_concurrent = True
    oom_reaper_tracepoints = True
    mutex_handoff = True
    header_nodemask = True
    stall_warning_nodemask = True
    hung_task_all_locks_once_per_scan = True
    lockdep_usage_no_reclaim_fs = True
    gfp_layout = GfpLayout.V4_14
    kernel_symbols = KernelSymbols.V4_14


class V515Ops(V414Ops):
    """``v5.15``: Linux 5.15, on top of ``v4.14``. No copy at the v5.15 tag
    was read: docs/HISTORY-DESIGNS.md §1.11 and KERNEL-FORMATS.md use
    5.10.13's mm/oom_kill.c and 6.6's process_mrelease, so each item is
    "in 5.15" by inference:

    * ``process_mrelease(pidfd, flags)`` for a userspace killer
      (``process_mrelease_syscall``, 884a7e5964e0);
    * 5.3's rwsem hand-off (``rwsem_handoff``);
    * the reaper no longer takes ``oom_lock`` (af5679fbc669, "mm, oom:
      remove oom_lock from oom_reaper", 4.19; id not re-verified);
    * 4.19's nonblocking mmu-notifier invalidation
      (``reaper_nonblocking_notifiers``) and 5.0's queue-once rule
      (``reap_queued_once``: MMF_OOM_REAP_QUEUED);
    * output: no stall warning (4.15), the header without nodemask and with
      the oom-kill summary line, 5.x's dump_tasks, "Out of memory: Killed
      process ... UID: pgtables: oom_score_adj:" and no "sacrifice child",
      "System is deadlocked on memory", sched_show_task's 5.9 line, the
      victim's stack after "unable to reap", khungtaskd's continuous
      blocked time.

    Not modelled, because no scenario's outcome depends on it: 4.17's
    exit_mmap that reaps an OOM victim's mm itself before setting
    MMF_OOM_SKIP (27ae357fa82b; it frees the same pages the unmap right
    after would), 4.14's wholesale skip of an mm with mmu notifiers (the
    lab's notifier VMAs matter only from 4.19's nonblocking invalidation
    on), memcg OOM, and the unreclaimable-slab dump."""

    policy = Policy.V5_15
    commit = "v5.15"
    title = "Linux 5.15"
    label = "Linux 5.15: process_mrelease() lets a userspace killer reap"
    change = ("process_mrelease(pidfd, flags) reaps a killed process's mm from userspace (884a7e5964e0); "
              "rwsem hand-off (5.3); the reaper without oom_lock (4.19); 5.x output: the oom-kill summary "
              "line, 'Killed process ... UID: pgtables: oom_score_adj:', no stall warning")
    release = "5.15.0"
    process_mrelease_syscall = True
    reaper_nonblocking_notifiers = True
    reap_queued_once = True
    rwsem_handoff = True
    reaper_takes_oom_lock = False
    reaper_failure_shows_task = True
    warns_alloc_stalls = False
    stall_warning_nodemask = False
    header_nodemask = False
    oom_summary_line = True
    dump_tasks_pgtables_bytes = True
    killed_line_with_message = True
    panic_deadlocked_on_memory = True
    hung_task_blocked_time = True
    sched_show_task_labelled = True
    call_trace_no_address = True
    lockdep_print_lock_instance = True
    mmap_lock_name = True
    gfp_layout = GfpLayout.V5_15
    kernel_symbols = KernelSymbols.V5_15


class V518Ops(V515Ops):
    """``v5.18``: Linux 5.18, on top of ``v5.15`` (docs/HISTORY-DESIGNS.md
    §1.12; behaviour read in 6.6's mm/oom_kill.c, the release inferred):

    * the reap is delayed by ``OOM_REAPER_DELAY`` (2*HZ) through a per-task
      timer armed by ``queue_oom_reaper`` (``reaper_delay``, e4a38402), so a
      victim that can exit by itself runs its robust-futex cleanup before
      its anonymous memory is zapped; MMF_OOM_REAP_QUEUED (5.0's bit, see
      ``reap_queued_once``) is now set when the timer is armed;
    * mlocked VMAs are reaped (``reap_mlocked_vmas``, a213e5cf71cb)."""

    policy = Policy.V5_18
    commit = "v5.18"
    title = "Linux 5.18"
    label = "Linux 5.18: the reap waits 2*HZ for the victim's own exit; mlocked VMAs reaped"
    change = ("queue_oom_reaper arms a 2*HZ timer before the reap (e4a38402: robust futexes), once per mm "
              "(MMF_OOM_REAP_QUEUED, 5.0's, now set when arming); mlocked VMAs reaped (a213e5cf71cb)")
    release = "5.18.0"
    reaper_delay = True
    reap_mlocked_vmas = True
    call_trace_task_markers = True
    gfp_layout = GfpLayout.V5_18

    def after_kill(self, kernel: "Kernel", victim: "Task", mm: MM, can_oom_reap: bool,
                   self_victim: bool = False) -> None:
        # 5.18: every path that used to wake the reaper arms its timer
        # instead: the kill (unless a sharer forbids the reap), a chosen
        # task already exiting, and out_of_memory's self-victim shortcut.
        if not can_oom_reap:
            kernel.reaper.forbidden_mm_ids.add(mm.id)  # under oom_lock, like every kill
        else:
            queue_oom_reaper(kernel, victim)
