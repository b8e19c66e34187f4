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
