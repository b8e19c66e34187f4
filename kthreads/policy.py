"""Kernel designs the lab can boot: the ``Policy`` enum and the base ops.

A policy is chosen per ``Kernel``. Its ops decide which kernel threads start
at boot and what the OOM killer does with a victim's mm after the kill. The
base class is the design without a reaper; each design's module subclasses
it, and ``kernel.py`` maps every ``Policy`` to its ops class.

The ops classes are the lab's machinery; each flag below names the kernel
version or commit whose behaviour it switches on.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .gfp import GfpLayout
from .kallsyms import KernelSymbols

if TYPE_CHECKING:
    from .kernel import Kernel
    from .mm import MM
    from .sched import Task


class Policy(str, enum.Enum):
    """The designs, in the order of the kernel's history: each is the one
    before it plus one change (``PolicyOps.commit`` and ``title`` say which)."""

    #: Linux 4.5: no reaper, and 4.5's OOM rules (an exiting task with an mm
    #: aborts the scan; the header prints the gfp mask without names).
    V4_5 = "v4.5"
    #: aac45363^: 4.6-rc1's mm merge just before the reaper, so that the A/B
    #: differs by the reaper alone (Johannes Weiner's "don't ignore oom score
    #: on exiting tasks" is already in).
    NONE = "none"
    #: aac45363, "mm, oom: introduce oom reaper": the first of the merged
    #: series (the commit order in 4.6-rc1; see KERNEL-HISTORY.md).
    PATCH1 = "patch1"
    #: 36324a99: the reaper clears TIF_MEMDIE after a successful reap.
    TIFMEMDIE = "tifmemdie"
    #: bc448e89: the reaper reports success and failure in dmesg.
    REPORT = "report"
    #: 03049269 (+ follow-ups): a LIFO list of victims instead of one slot.
    QUEUE = "queue"
    #: Linux 4.7: the GFP_NOFS test moved into out_of_memory after the
    #: self-victim shortcut, self-victims reaped, MMF_OOM_REAPED, TIF_MEMDIE
    #: cleared after every reap attempt, killable mmap_sem writers,
    #: mmput_async.
    V4_7 = "v4.7"
    #: Linux 4.8: every process sharing the victim's mm is killed, sharers
    #: share one oom_score_adj, task_will_free_mem looks at every sharer,
    #: a reaped mm is skipped by the scan, and a twice-failed mm is given up.
    V4_8 = "v4.8"
    #: Linux 4.9: the victim's mm kept in signal->oom_mm and reaped through
    #: it; MMF_OOM_SKIP after every reap, success or failure; the reaper no
    #: longer clears TIF_MEMDIE; the page allocation stall warning.
    V4_9 = "v4.9"
    #: Linux 4.14: the reaper and exit_mmap run concurrently (212925802454):
    #: no mm_users reference, exit_mmap sets MMF_OOM_SKIP and waits for the
    #: reaper; MMF_UNSTABLE; the 4.13 oom tracepoints; 4.10's mutex hand-off;
    #: 4.14's output formats (nodemask=(null)).
    V4_14 = "v4.14"
    #: Linux 5.15: ``process_mrelease(pidfd, flags)`` lets a userspace
    #: killer reap the mm of a process it killed; 5.3's rwsem hand-off; and
    #: the 4.15-5.15 output (no stall warning, the oom-kill summary line,
    #: "Killed process ... UID: pgtables: oom_score_adj:", 5.9's
    #: sched_show_task, khungtaskd's continuous blocked time).
    V5_15 = "v5.15"
    #: Linux 5.18: the reap is delayed by 2*HZ through a timer, so that a
    #: dying task can run its robust-futex cleanup first; mlocked VMAs are
    #: reaped too.
    V5_18 = "v5.18"

    @property
    def previous(self) -> "Policy | None":
        """The design this one changes (None for the first)."""
        members = list(type(self))
        i = members.index(self)
        return members[i - 1] if i else None

    @classmethod
    def parse(cls, text: str) -> "Policy":
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown policy {text!r}; valid: "
                             f"{', '.join(p.value for p in cls)}") from None


class PolicyOps:
    """What differs between designs. The base class is ``none``."""

    policy = Policy.NONE
    #: The tree: a commit (or a release tag), its title, and what it changed
    #: from the design before it, for ``python -m stress policies``.
    commit = "aac45363^"
    title = "4.6-rc1's mm merge, just before 'mm, oom: introduce oom reaper'"
    #: One line for banners.
    label = "Linux 4.6-rc1 at aac45363^: no oom_reaper"
    change = ("4.5's exiting-task abort gone (Johannes Weiner, 'mm: oom_kill: don't ignore oom score on "
              "exiting tasks'); the OOM header names the gfp flags (a0795cd4, not re-verified)")
    #: What ``uname -r`` says: khungtaskd's taint line prints it. The commits
    #: between v4.5 and v4.6-rc1 build as "4.5.0+" (the Makefile says 4.5.0
    #: until rc1; not verified at those commits).
    release = "4.5.0+"
    #: The OOM header prints the gfp mask with its flag names, "%#x(%pGg)":
    #: a0795cd4, "mm, oom: print symbolic gfp_flags in oom warning", in the
    #: 4.6-rc1 mm batch (not re-verified). 4.5 prints "gfp_mask=0x%x".
    header_gfp_names = True
    #: "%s: page allocation stalls for %ums, order:%u, mode:%#x(%pGg)" came in
    #: 4.9 (63f53dea, "mm: warn about allocations which stall for too long")
    #: and went in 4.15 (400e2249; neither id re-verified at the source):
    #: neither 4.6 tree prints it.
    warns_alloc_stalls = False
    #: The tree has the oom tracepoints mark_victim, wake_reaper,
    #: start_task_reaping, finish_task_reaping and skip_task_reaping (each
    #: ``pid=%d``): Roman Gushchin's, 4.13. Neither 4.6 tree has them.
    oom_reaper_tracepoints = False
    #: The reaper prints "oom_reaper: reaped process %d (%s), now anon-rss:..."
    #: and "oom_reaper: unable to reap pid:%d (%s)" with debug_show_all_locks():
    #: bc448e89, "mm, oom_reaper: report success/failure" (4.6-rc1, after the
    #: reaper itself). Patch 1 prints neither.
    oom_reaper_reports = False
    #: 4.5's rule in oom_scan_process_thread: a task that is exiting
    #: (PF_EXITING) and still has its mm aborts the scan (OOM_SCAN_ABORT), so
    #: the OOM killer waits for it instead of killing anybody. Johannes
    #: Weiner's "mm: oom_kill: don't ignore oom score on exiting tasks"
    #: (6a618957, id not re-verified; merged in 4.6-rc1 before aac45363)
    #: removed it: in both 4.6
    #: trees an exiting task is scored like the others. True only for a 4.5
    #: design, where an exiting task stuck in exit_mm locks the machine up.
    exiting_task_aborts_scan = False
    #: Lock hand-off (kthreads/handoff.py). 4.6 wakes a queued waiter and lets
    #: it compete; a mutex hands itself to a starved waiter from 4.10 on,
    #: an rwsem from 5.3 on. Read when a Mutex / RwSemaphore is built.
    mutex_handoff = False
    rwsem_handoff = False
    #: The reaper is handed the task, not the mm, and after a successful reap
    #: clears its TIF_MEMDIE and sets its oom_score_adj to -1000: 36324a99.
    reap_task = False
    #: The reaper takes victims from a LIFO list, not a single slot: 03049269.
    reaper_list = False

    # -- Linux 4.7 (each verified in v4.7's mm/oom_kill.c and page_alloc.c
    # -- as stored for docs/HISTORY-DESIGNS.md; the commit ids are not) ----
    #: ``__alloc_pages_may_oom`` no longer stops a !__GFP_FS allocation
    #: before the OOM killer; ``out_of_memory`` tests it instead, *after*
    #: the self-victim shortcut. So a SIGKILLed task looping in GFP_NOFS
    #: gets TIF_MEMDIE and the reserves, and can finish its allocation and
    #: die; an unkilled GFP_NOFS allocator still kills nobody. 3da88fb3,
    #: "mm, oom: move GFP_NOFS check to out_of_memory" (id not re-verified;
    #: its 4.7 placement is).
    nofs_check_in_out_of_memory = False
    #: The reaper sets MMF_OOM_REAPED on the mm after a successful reap and
    #: ``oom_badness`` gives such an mm 0 points; the reaper no longer sets
    #: ``oom_score_adj`` to -1000, nor clears TIF_MEMDIE inside the attempt
    #: (``reaper_clears_memdie_always`` does, after it). "mm, oom_reaper:
    #: hide oom reaped tasks from OOM killer more carefully" (bb8a4b7f, id
    #: not re-verified).
    mmf_oom_reaped = False
    #: ``oom_reap_task`` ends, success or failure, with
    #: ``tsk->oom_reaper_list = NULL; exit_oom_victim(tsk)``: a victim the
    #: reaper could not reap stops blocking the OOM killer too, which may
    #: then choose it again (or another). "mm, oom_reaper: clear TIF_MEMDIE
    #: for all tasks queued for oom_reaper" (449d777d, id and title not
    #: re-verified; the behaviour is in v4.7's text).
    reaper_clears_memdie_always = False
    #: ``__oom_reap_task`` holds ``oom_lock`` (a blocking mutex_lock) across
    #: the attempt, so a reap never runs while the OOM killer selects: "oom_reaper:
    #: close race with exiting task" (e2fe1456, id not re-verified).
    reaper_takes_oom_lock = False
    #: ``select_bad_process`` walks processes (for_each_process), not
    #: threads, and aborts on ``signal->oom_victims`` (a victim anywhere in
    #: the thread group), with no ``!task->mm`` test and no tie-break for
    #: the group leader. In the v4.7 text; commit not identified.
    oom_scan_processes = False
    #: ``task_will_free_mem`` needs the whole thread group going down
    #: (single-threaded, or SIGNAL_GROUP_EXIT) besides PF_EXITING:
    #: 98748bd7, "oom: consider multi-threaded tasks in task_will_free_mem"
    #: (id not re-verified; 4.7's oom.h was not read, see HISTORY-DESIGNS §1.7).
    task_will_free_mem_group = False
    #: ``try_oom_reaper``: a victim that skipped the kill (a self-victim
    #: with SIGKILL pending or exiting, or a chosen task already exiting) is
    #: queued for the reaper too, unless a process sharing its mm is not
    #: dying. 3ef22dff, "oom, oom_reaper: try to reap tasks which skip
    #: regular OOM killer path" (id not re-verified).
    reap_self_victims = False
    #: The reaper drops its mm reference with ``mmput_async``: a last
    #: reference hands ``__mmput`` (exit_aio, ksm, exit_mmap...) to a
    #: workqueue so that the reaper never blocks in it. ec8d7c14, "mm,
    #: oom_reaper: do not mmput synchronously from the oom reaper context"
    #: (id not re-verified). The model's ``__mmput`` never blocks (no aio,
    #: uprobes, ksm or khugepaged), so ``mmput_async`` runs it in the
    #: caller: the flag changes nothing observable yet.
    reaper_mmput_async = False
    #: mm syscalls (mmap, munmap, brk, mprotect...) wait for mmap_sem with
    #: ``down_write_killable``: a SIGKILLed waiter leaves the queue with
    #: -EINTR instead of holding up the readers behind it. 916633a4
    #: ("locking/rwsem: provide down_write_killable()") and dc0ef0df ("mm:
    #: make mmap_sem for write waits killable for mm syscalls"), ids not
    #: re-verified. Read by ``mm.vm_mmap_write_lock``, which scenario and
    #: workload code uses where a task stands for an mm syscall.
    killable_mmap_writers = False

    # -- Linux 4.8 (read in a 4.8-stable mm/oom_kill.c, WindRiver 4.8.18, as
    # -- docs/HISTORY-DESIGNS.md §1.8 and KERNEL-FORMATS.md say; the 4.8.0
    # -- tag itself and the commit ids are not re-verified) ---------------
    #: ``oom_kill_process`` SIGKILLs every other process sharing the
    #: victim's mm, OOM_SCORE_ADJ_MIN ones included; only a kernel thread
    #: (use_mm) or init is spared, and then the mm is not reaped but marked
    #: MMF_OOM_REAPED, so the OOM killer moves on, with "oom killer %d (%s)
    #: has mm pinned by %d (%s)". 97fd49c2, "mm, oom: kill all tasks sharing
    #: the mm" (id not re-verified).
    oom_kill_all_sharers = False
    #: Processes sharing an mm share one ``oom_score_adj``: writing it to one
    #: writes it to every other sharer (not init, not a kthread) with "updating
    #: oom_score_adj for %d (%s) from %d to %d because it shares mm with %d
    #: (%s). Report if this is unexpected." 44a70ade, "mm, oom_adj: make sure
    #: processes sharing mm have same view of oom_score_adj" (id and the
    #: line's wording not re-verified). Read by ``Kernel.set_oom_score_adj``
    #: (the /proc write); ``Kernel.fork``'s ``oom_score_adj`` is a value the
    #: process is created with, not a write, and is not propagated.
    shared_oom_score_adj = False
    #: 4.8's ``task_will_free_mem(task)``: the task has an mm not yet
    #: MMF_OOM_REAPED, its group is exiting (SIGNAL_GROUP_EXIT, or a single
    #: PF_EXITING thread) and so is every other process sharing the mm. The
    #: self-victim shortcut in ``out_of_memory`` is this test alone (a
    #: SIGKILL sets SIGNAL_GROUP_EXIT, so it covers fatal_signal_pending),
    #: and it and ``oom_kill_process``'s exiting branch call wake_oom_reaper
    #: directly (try_oom_reaper is gone). 1af8bb43, "mm, oom: fortify
    #: task_will_free_mem()", and its series (ids from memory, not re-verified).
    task_will_free_mem_mm = False
    #: The scan goes past a victim process whose mm is MMF_OOM_REAPED
    #: (OOM_SCAN_CONTINUE) instead of aborting on it: 1b51e65e, "mm, oom:
    #: hide mm which is shared with kthread or global init", and 696453e6,
    #: "mm, oom: task_will_free_mem should skip oom_reaped tasks" (ids from
    #: memory, not re-verified).
    oom_scan_skips_reaped = False
    #: The reaper's second failure on the same mm gives up on it: the first
    #: sets MMF_OOM_NOT_REAPABLE, the second prints "oom_reaper: giving up
    #: pid:%d (%s)" after "unable to reap" and sets MMF_OOM_REAPED (4.8
    #: only: 4.9 sets MMF_OOM_SKIP after any attempt). 11a410d5, "mm, oom_reaper:
    #: do not attempt to reap a task more than twice" (id from memory, not
    #: re-verified).
    reaper_gives_up_twice = False
    #: ``__oom_reap_task`` pins the mm with mm_count, takes the trylock, and
    #: only then takes an mm_users reference (``mmget_not_zero``; if the
    #: victim dropped the last one meanwhile, nothing is reaped and the try
    #: counts as done). 4.8's text; the commit is not identified.
    reaper_mmget_after_trylock = False

    # -- Linux 4.9 (no 4.9 mm/oom_kill.c was read: docs/HISTORY-DESIGNS.md
    # -- §1.9 used 4.10's as a proxy, so each is "4.9 or 4.10" unless a
    # -- flag says otherwise; the ids are from memory, not re-verified) --
    #: ``mark_oom_victim`` keeps the victim's mm in ``signal->oom_mm`` (an
    #: mm_count pin, taken once, dropped with the signal struct) and
    #: ``tsk_is_oom_victim`` is "oom_mm is set"; the reaper works on that mm
    #: (no find_lock_task_mm), so a victim whose threads are gone is still
    #: reaped while another process keeps its mm. 26db62f1, "oom: keep mm
    #: of the killed task available".
    signal_oom_mm = False
    #: The scan (``oom_evaluate_task``): a victim process (tsk_is_oom_victim)
    #: whose oom_mm is MMF_OOM_SKIP is passed over, any other victim aborts
    #: the scan; on equal points the first process found stays chosen (it
    #: is a group leader). 7c5f64f8, "mm: oom: deduplicate victim selection
    #: code for memcg and global oom".
    oom_evaluate_task = False
    #: ``oom_reap_task`` ends, reaped or not, by setting MMF_OOM_SKIP (4.8's
    #: MMF_OOM_REAPED renamed) on the mm: the OOM killer then goes past the
    #: victim. TIF_MEMDIE is left alone (``exit_oom_victim`` is the exiting
    #: task's own again, 38531201, "mm, oom: enforce exit_oom_victim on
    #: current task") and the two strikes are gone. The hand-over of
    #: MMF_OOM_SKIP to exit_mmap (212925802454) is 4.14's
    #: (``reaper_exit_mmap_concurrent``).
    reaper_sets_oom_skip = False
    #: A kernel thread sharing the victim's mm (use_mm) no longer forbids the
    #: reap: it is neither killed nor a reason to hide the mm; only init is
    #: (MMF_UNSTABLE tells such a kthread the memory is gone; the model has
    #: none that reads it). "oom, oom_reaper: allow to reap mm shared by the
    #: kthreads" (4.9 or 4.10 [U]).
    reap_kthread_shared_mm = False
    #: khungtaskd prints ``debug_show_all_locks()`` after each report instead
    #: of the hung task's own locks (TROVON v4.9 hung_task.c, per
    #: KERNEL-FORMATS.md; the commit not identified).
    hung_task_shows_all_locks = False
    #: ``sched_show_task`` no longer prints the saved-PC column: 8243d559,
    #: "sched/core: Remove pointless printout in sched_show_task()", v4.9-rc
    #: (per KERNEL-FORMATS.md).
    sched_show_task_no_pc = False

    # -- Linux 4.14 (docs/HISTORY-DESIGNS.md §1.10; the hunks of 212925802454
    # -- as quoted there, the rest from memory of v4.14's text: [U]) -------
    #: The reaper and ``exit_mmap`` run concurrently: 212925802454, "mm, oom:
    #: let oom_reap_task and exit_mmap run concurrently" (id from the notes,
    #: not re-verified at the source). ``__oom_reap_task_mm`` works on
    #: ``signal->oom_mm`` under ``oom_lock`` with no mm_users reference (no
    #: mmget, no mmput/mmput_async, so no "raced exit": a victim that already
    #: dropped its last user is still reaped); after the trylock it backs off
    #: (skip_task_reaping) when MMF_OOM_SKIP is set, and sets MMF_UNSTABLE
    #: before the unmap. ``exit_mmap`` sets MMF_OOM_SKIP after unmap_vmas and,
    #: when the exiting task is an OOM victim (``tsk_is_oom_victim(current)``),
    #: takes and drops mmap_sem for write before it frees the page tables and
    #: the VMA list, so it waits for a reap in progress.
    reaper_exit_mmap_concurrent = False
    #: The OOM header prints ``nodemask=(null)`` between the gfp mask and the
    #: order, with two spaces before ``order`` (``pr_cont(",  order=%d, ...")``;
    #: 4.11 to 4.18, per KERNEL-FORMATS.md, whose author remembered the two
    #: spaces but could not see them in the copy read: not re-verified).
    header_nodemask = False
    #: The stall warning ends ``, nodemask=(null)`` (4.14's ``warn_alloc``
    #: takes the nodemask; TROVON v4.14 page_alloc.c per KERNEL-FORMATS.md).
    #: 4.14 also moved the check before direct reclaim; the model's stall
    #: clock does not distinguish the two places, so only the text changes.
    stall_warning_nodemask = False
    #: khungtaskd prints ``debug_show_all_locks()`` once per scan, after the
    #: reports, if it printed one (``hung_task_show_lock``), not after each:
    #: 401c636a0eeb, "kernel/hung_task.c: show all hung tasks before panic"
    #: (in TROVON's v4.14 hung_task.c per KERNEL-FORMATS.md).
    hung_task_all_locks_once_per_scan = False

    # -- Linux 5.15 (docs/HISTORY-DESIGNS.md §1.11 and KERNEL-FORMATS.md: no
    # -- copy at the v5.15 tag was read; the 5.10.13 text and 6.6's
    # -- process_mrelease stand in, so each is "in 5.15" by inference) ----
    #: The ``process_mrelease(pidfd, flags)`` syscall (884a7e5964e0, "mm:
    #: introduce process_mrelease system call", 5.15; id not re-verified):
    #: a userspace killer reaps the address space of a process it killed,
    #: synchronously, waiting for mmap_sem killably. Without it the call is
    #: -ENOSYS. ``oom_reaper.process_mrelease``.
    process_mrelease_syscall = False
    #: After "oom_reaper: unable to reap", the victim's stack
    #: (``sched_show_task``) before the lock dump (David Rientjes, "mm, oom:
    #: dump stack of victim when reaping failed", 5.6); and no "unable to
    #: reap" at all when MMF_OOM_SKIP is set by then (exit_mmap got there:
    #: 4.19 or so). Both from the 5.10.13 text.
    reaper_failure_shows_task = False
    #: dump_header prints the gfp line without a nodemask, then dump_stack,
    #: show_mem and dump_tasks, and ends, when there is a victim, with the
    #: one-line summary "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),
    #: cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=%s,pid=%d,uid=%d"
    #: (ef8444ea01d7, 4.19; id not re-verified).
    oom_summary_line = False
    #: dump_tasks starts with "Tasks state (memory values in pages):" and its
    #: columns are "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes
    #: swapents oom_score_adj name" (4.19-5.x; 5.10.13's text).
    dump_tasks_pgtables_bytes = False
    #: No "Kill process %d (%s) score %u or sacrifice child" (the children
    #: heuristic went in bbbe48029720, 5.1; id not re-verified); the kill
    #: line is "%s: Killed process %d (%s) total-vm:... shmem-rss:%lukB,
    #: UID:%u pgtables:%lukB oom_score_adj:%hd" (5.10.13's text).
    killed_line_with_message = False
    #: With nothing to kill: dump_header, pr_warn("Out of memory and no
    #: killable processes...") and panic("System is deadlocked on memory")
    #: (5.10.13's text; the commit not identified).
    panic_deadlocked_on_memory = False
    #: khungtaskd reports the continuous blocked time,
    #: ``(jiffies - t->last_switch_time) / HZ``, and checks every
    #: ``min(check_interval ?: timeout, timeout)`` seconds, reporting a task
    #: once it has been blocked for ``timeout`` (a0be55dee71d and the
    #: last_switch_time change, 4.19/4.20; ids not re-verified).
    hung_task_blocked_time = False
    #: sched_show_task's 5.9 line: "task:%-15.15s state:%c stack:%5lu
    #: pid:%5d ppid:%6d flags:0x%08lx" (cc172ff301d8).
    sched_show_task_labelled = False
    #: x86_64's call trace prints each return address as ``" %s%pB"`` with
    #: no ``[<%p>]`` before the symbol (5.10.13's arch/x86/kernel/dumpstack.c,
    #: read; the change is said to be 4.15's, bb5e5ce545f2, not verified, so
    #: v4.14 keeps the address).
    call_trace_no_address = False
    #: The task stack is named in the call trace: ``" <TASK>"`` after "Call
    #: Trace:" and ``" </TASK>"`` after its last entry (stack_type_name()
    #: returns "TASK", read in a 6.6 dumpstack_64.c; the hunk was posted by
    #: Peter Zijlstra on 2021-09-17, after 5.15-rc1, so 5.16: v5.18 only;
    #: the merge release inferred from the date, not read at a tag).
    call_trace_task_markers = False
    #: lockdep's usage string has no reclaim_fs pair: "{+.+.}" where 4.6
    #: printed "{+.+...}" (d92a8cfcb37e, "locking/lockdep: Rework
    #: FS_RECLAIM annotation", v4.13-rc4-164: 4.14; lockdep_states.h at 4.14
    #: not read).
    lockdep_usage_no_reclaim_fs = False
    #: lockdep's print_lock() is ``"%px"`` (the lock's address), then
    #: ``" (%s){%s}-{%d:%d}"`` (name, usage, wait types), then ``", at: %pS"``
    #: with no ``[<%p>]``; and lockdep_print_held_locks() prints only the
    #: "N locks held by" line for a task running on another CPU. All read in
    #: 5.10.13's kernel/locking/lockdep.c; the address is Tetsuo Handa's
    #: "lockdep: Show address of struct lockdep_map at print_lock()" (2018,
    #: 4.17 by date), %px Paul McKenney's (2019), the wait types 5.7's.
    lockdep_print_lock_instance = False
    #: mm->mmap_sem is mm->mmap_lock (5.8's mmap locking API; the field is
    #: mmap_lock in 5.10.13's mm/oom_kill.c), so lockdep names the class
    #: "&mm->mmap_lock" (init_rwsem's #sem).
    mmap_lock_name = False

    # -- Per-tree encodings of what the output prints (KERNEL-FORMATS.md §1a
    # -- and §7): each tree's numbers and names for the model's values --------
    #: The ``___GFP_*`` numbering the OOM header and the stall warning print
    #: the model's gfp mask in (``%#x`` and ``%pGg``): ``gfp.GfpLayout``
    #: (4.4-4.9's by default; v4.14 4.10's, GFP_KERNEL 0x14000c0; v5.15 and
    #: v5.18 5.1's, GFP_KERNEL 0xcc0, with 5.15's GFP_HIGHUSER_MOVABLE
    #: 0x1100cca and 5.18's 0x100cca). Sources in the enum's docstring.
    gfp_layout: GfpLayout = GfpLayout.V4_6
    #: Whose function names call traces and lockdep's ``at:`` print:
    #: ``kallsyms.KernelSymbols`` (4.6's by default; v4.14 4.14's with
    #: ``__schedule`` and ``__mutex_lock``; v5.15/v5.18 5.x's
    #: ``entry_SYSCALL_64_after_hwframe``, ``rwsem_down_read_slowpath``,
    #: ``asm_exc_page_fault``...). Evidence and inferences in ``kallsyms.RENAMES``.
    kernel_symbols: KernelSymbols = KernelSymbols.V4_6

    # -- Linux 5.18 (docs/HISTORY-DESIGNS.md §1.12; behaviour read in 6.6's
    # -- mm/oom_kill.c, the release inferred) ----------------------------
    #: ``queue_oom_reaper`` arms a per-task timer for ``OOM_REAPER_DELAY``
    #: (2*HZ) instead of queueing at once; the timer queues the victim
    #: unless its mm is MMF_OOM_SKIP by then, and MMF_OOM_REAP_QUEUED keeps
    #: a victim from being armed twice. e4a38402, "oom_kill.c: futex: delay
    #: the OOM reaper to allow time for proper futex cleanup" (id not
    #: re-verified): a robust futex list in reaped memory reads as zeroes.
    reaper_delay = False
    #: The reaper (and process_mrelease) unmap mlocked VMAs too: a213e5cf71cb,
    #: "mm/munlock: delete munlock_vma_pages_all(), allow oomreap" (id and
    #: release not re-verified; 5.18 by inference).
    reap_mlocked_vmas = False

    # -- Reaper mechanics later than 4.14 (the lead's; each with its release) --
    #: The reaper asks each VMA's mmu notifiers to invalidate without
    #: blocking and skips a VMA that cannot (``VmaSpec.notifier_blocks``),
    #: failing the attempt, so it is retried, and process_mrelease returns
    #: -EAGAIN: 93065ac753e4, "mm, oom: distinguish blockable mode for mmu
    #: notifiers" (4.19; id not re-verified).
    reaper_nonblocking_notifiers = False
    #: ``wake_oom_reaper`` queues a victim only if its ``signal->oom_mm`` was
    #: never queued before (``test_and_set_bit(MMF_OOM_REAP_QUEUED)``),
    #: instead of af8e15cc's "not on the list right now": 9bcdeb51bd7d, "oom,
    #: oom_reaper: do not enqueue same task twice" (5.0; id not re-verified).
    #: A victim the reaper already popped is not reaped twice.
    reap_queued_once = False

    def boot(self, kernel: "Kernel") -> None:
        """Start the design's kernel threads."""

    def shutdown(self, kernel: "Kernel") -> None:
        """Release what the design holds once every thread is joined."""

    def after_kill(self, kernel: "Kernel", victim: "Task", mm: "MM", can_oom_reap: bool,
                   self_victim: bool = False) -> None:
        """Called by the OOM killer once ``victim`` is marked and signalled."""



class V45Ops(PolicyOps):
    """Linux 4.5: no reaper; an exiting task that still has its mm aborts the
    OOM scan, and the header prints the bare gfp mask (both from the v4.5
    tag's mm/oom_kill.c as the issue's research found it; the kill lines
    themselves were not read at v4.5 and are taken to be 4.6's)."""

    policy = Policy.V4_5
    commit = "v4.5"
    title = "Linux 4.5"
    label = "Linux 4.5: no oom_reaper"
    change = "the baseline: no oom_reaper; an exiting task with an mm aborts the OOM scan"
    release = "4.5.0"
    header_gfp_names = False
    exiting_task_aborts_scan = True
