"""The OOM killer (mm/oom_kill.c, as of Linux 4.6: aac45363 and its parent).

Its one assumption, which the reaper exists to rescue: a victim that has been
sent SIGKILL and given TIF_MEMDIE exits soon and frees its memory. Until it
does, ``select_bad_process`` refuses to choose anybody else
(OOM_SCAN_ABORT), so a victim that cannot run blocks every later OOM kill.

An exiting task is scored like any other (4.6: Johannes Weiner's "mm:
oom_kill: don't ignore oom score on exiting tasks", merged ahead of
aac45363); if it is chosen it is only marked, not killed. 4.5's rule, which
aborted the scan for it, is kept for the designs that had it
(``PolicyOps.exiting_task_aborts_scan``).

Not modelled, each taken as its default or absent: ``panic_on_oom``
(``check_panic_on_oom``: the sysctl is 0), ``oom_kill_allocating_task``
(0), the OOM notifier chain, ``oom_killer_disabled``, SysRq-f, memcg and
cpuset/mempolicy constraints (one zone: ``totalpages`` is its size, and
there is no swap space), sacrificing a child for its parent (the model
has no parent/child tree), ``oom_task_origin`` (OOM_SCAN_SELECT: no task is
marked so), the 3% CAP_SYS_ADMIN bonus (no credentials), and coredumps
(``SIGNAL_GROUP_COREDUMP`` is never set).

Every function here follows mm/oom_kill.c at aac45363 (read whole) unless
its docstring says otherwise; Linux 4.7's changes (policy ``v4.7``, read in
v4.7's mm/oom_kill.c), 4.8's (``v4.8``, read in a 4.8-stable copy) and
4.9's (``v4.9``, 4.10's text as a proxy) are behind ``PolicyOps`` flags,
each named where it acts, and so is the 4.19-5.x output of ``v5.15`` and
``v5.18`` (the header, dump_tasks, the summary and kill lines, the no-victim
panic: read in a 5.10.13 copy, 5.15/5.18 inferred). The parent, aac45363^ (policy ``none``), is
taken to be the same OOM killer without the reaper and its wake-up (what
aac45363 adds); the parent itself was not read at the source. Events and
``Kernel.lab`` lines are the lab's.
"""

from __future__ import annotations

import enum
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from .atomic import atomic_dec_return, atomic_inc
from .errors import OomPanic
from .events import Ev
from .gfp import PAGE_KB, __GFP_FS, __GFP_NOFAIL, format_gfp, gfp_value
from .mm import MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, MMF, mmdrop, mmgrab
from .ratelimit import ___ratelimit
from .sched import (OOM_SCORE_ADJ_MIN, PF, Task, current, fatal_signal_pending, schedule_timeout_killable,
                    send_sigkill)
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel


class OomScan(enum.Enum):
    """4.6's ``enum oom_scan_t`` (aac45363)."""

    OOM_SCAN_OK = 0
    OOM_SCAN_CONTINUE = 1
    OOM_SCAN_ABORT = 2
    OOM_SCAN_SELECT = 3


@dataclass(frozen=True)
class OomControl:
    """4.6's ``struct oom_control`` reduced to what one zone needs: no
    zonelist, nodemask or memcg."""

    gfp_mask: int
    order: int = 0


def is_global_init(p: Task) -> bool:
    """4.6's test, tgid 1."""
    return p.tgid == 1  # pid 1 is reserved: the model boots no init task


def oom_unkillable_task(p: Task) -> bool:
    """4.6's, without the memcg and nodemask arguments (no memcg, one node):
    init and kernel threads are never chosen."""
    return is_global_init(p) or p.is_kthread


@contextmanager
def find_lock_task_mm(p: Task) -> Iterator[Task | None]:
    """A thread of ``p``'s group that still has an mm, with its task_lock
    held (4.6's find_lock_task_mm, as a context manager).

    exit_mm() clears ``task->mm`` under the same lock, so while we hold it
    the mm cannot be torn down under us, and a TIF_MEMDIE set here is seen
    by the exiting task's exit_oom_victim().
    """
    for t in p.thread_group():
        t.alloc_lock.acquire()
        if t.mm is not None:
            try:
                yield t
            finally:
                t.alloc_lock.release()
            return
        t.alloc_lock.release()
    yield None


def task_will_free_mem(p: Task) -> bool:
    """Linux 4.6's (include/linux/oom.h): ``p`` is exiting and not dumping
    core, so it should free its memory soon. The coredump exception (a
    coredumping task may sleep long in exit_mm) cannot arise: the model has
    no coredumps. 4.7 (``policy_ops.task_will_free_mem_group``, 98748bd7,
    not re-verified) also wants the whole thread group going down: ``p`` is
    its group's only live thread, or the group was killed
    (SIGNAL_GROUP_EXIT, the model's ``signal.group_exit``). 4.8's, which
    looks at every process sharing the mm, is ``task_will_free_mem_48``
    (``policy_ops.task_will_free_mem_mm``)."""
    if p.kernel.policy_ops.task_will_free_mem_mm:
        return task_will_free_mem_48(p)
    if not p.flags & PF.PF_EXITING:
        return False
    if not p.kernel.policy_ops.task_will_free_mem_group:
        return True
    return thread_group_empty(p) or p.signal.group_exit


def __task_will_free_mem(p: Task) -> bool:
    """4.8's helper: ``p``'s group is going down, as SIGNAL_GROUP_EXIT (the
    model's ``signal.group_exit``, set by a group SIGKILL) or as its only
    thread being PF_EXITING. The coredump test cannot fire (no coredumps)."""
    return p.signal.group_exit or (thread_group_empty(p) and bool(p.flags & PF.PF_EXITING))


def task_will_free_mem_48(p: Task) -> bool:
    """4.8's ``task_will_free_mem`` (moved into mm/oom_kill.c; ``policy_ops.
    task_will_free_mem_mm``): ``p`` has an mm not yet MMF_OOM_REAPED, its
    group is going down, and so is every other process sharing the mm; so
    nobody pins the mm and the reaper may take it. 4.8 reads ``ret``
    uninitialised when mm_users > 1 but no other process shares the mm
    (threads only); the model returns True there."""
    mm = p.mm
    if mm is None or not __task_will_free_mem(p):
        return False
    if mm.flags & MMF.MMF_OOM_REAPED:
        return False  # drained by the reaper already: little more to free
    if mm.mm_users.read() <= 1:
        return True
    for q in p.kernel.processes():
        if q.signal is p.signal or not process_shares_mm(q, mm):
            continue
        if not __task_will_free_mem(q):
            return False
    return True


def thread_group_empty(p: Task) -> bool:
    """No other live thread in ``p``'s group (the kernel's test is on the
    thread list, from which an exited thread is unlinked)."""
    dead = p.state.EXIT_DEAD | p.state.EXIT_ZOMBIE
    return all(t is p or t.state & dead for t in p.thread_group())


def signal_oom_victims(p: Task) -> int:
    """4.7's ``atomic_read(&p->signal->oom_victims)``: how many threads of
    ``p``'s group hold TIF_MEMDIE. The kernel keeps a counter that
    mark_oom_victim and exit_oom_victim move with the flag; the model counts
    the flags, which is the same number at every instant."""
    return sum(1 for t in p.thread_group() if t.tif_memdie)


def tsk_is_oom_victim(p: Task) -> bool:
    """4.9's: ``p``'s group was made an OOM victim (``signal->oom_mm`` is
    set; ``PolicyOps.signal_oom_mm``). It stays one until the group is gone."""
    return p.signal.oom_mm is not None


def oom_badness(p: Task, totalpages: int) -> int:
    """Points for ``p``: 0 means not eligible, otherwise at least 1.

    Linux 4.6's (aac45363) arithmetic: rss + swap entries + page-table
    pages, then ``adj *= totalpages / 1000`` in integers, the division first.
    So on a machine of fewer than 1000 pages ``oom_score_adj`` counts for
    nothing (only OOM_SCORE_ADJ_MIN, which makes a task ineligible), and
    from 1000 pages up it counts in steps of whole thousands of pages.

    Not modelled: ``nr_pmds`` (the model allocates no PMD pages, so it is 0
    here and in ``dump_tasks``; a real process has at least one) and the 3%
    CAP_SYS_ADMIN bonus, ``points -= points * 3 / 100`` (the model has no
    credentials: no task gets it, although ``dump_tasks`` prints uid 0).
    """
    if oom_unkillable_task(p):
        return 0
    adj = p.signal.oom_score_adj
    with find_lock_task_mm(p) as t:
        if t is None or adj == OOM_SCORE_ADJ_MIN:
            return 0
        mm = t.mm
        # 4.7: a reaped mm has nothing left worth killing for.
        if p.kernel.policy_ops.mmf_oom_reaped and mm.flags & MMF.MMF_OOM_REAPED:
            return 0
        points = mm.get_mm_rss() + mm.get_mm_counter(MM_SWAPENTS) + mm.nr_ptes
    # "Normalize to oom_score_adj units": totalpages / 1000 first, in integers.
    points += adj * (totalpages // 1000)
    return points if points > 0 else 1


def oom_scan_process_thread(kernel: "Kernel", oc: OomControl, task: Task) -> OomScan:
    """Linux 4.6's (aac45363) rules: an unkillable task or one without an mm
    is skipped, a live TIF_MEMDIE task aborts the scan, anybody else is
    scored. SysRq-f's exemption and ``oom_task_origin`` are not modelled.

    An exiting task is scored like the others: Johannes Weiner's "mm:
    oom_kill: don't ignore oom score on exiting tasks" (6a618957, 4.6-rc1;
    the id is not re-verified) removed 4.5's ``task_will_free_mem`` abort,
    because an exiting task stuck on something the allocating context holds
    would block every OOM kill. Designs whose
    ``policy_ops.exiting_task_aborts_scan`` is set keep the 4.5 rule.
    """
    if oom_unkillable_task(task):
        return OomScan.OOM_SCAN_CONTINUE
    if kernel.policy_ops.oom_evaluate_task:
        # 4.9: a released process is off the task list (the model keeps it,
        # EXIT_DEAD); a victim is passed over once its oom_mm is
        # MMF_OOM_SKIP (reaped, or given up), and aborts the scan before.
        if task.state & task.state.EXIT_DEAD:
            return OomScan.OOM_SCAN_CONTINUE
        if tsk_is_oom_victim(task):
            if task.signal.oom_mm.flags & MMF.MMF_OOM_SKIP:
                return OomScan.OOM_SCAN_CONTINUE
            return OomScan.OOM_SCAN_ABORT
        return OomScan.OOM_SCAN_OK
    if kernel.policy_ops.oom_scan_processes:
        # 4.7: ``task`` is a process; a victim anywhere in it aborts the
        # scan, and one without an mm scores 0 in oom_badness.
        if not signal_oom_victims(task):
            return OomScan.OOM_SCAN_OK
        # 4.8 (``oom_scan_skips_reaped``): unless its mm is MMF_OOM_REAPED
        # (reaped, given up, or pinned by a kthread/init): then go past it.
        if kernel.policy_ops.oom_scan_skips_reaped:
            with find_lock_task_mm(task) as t:
                if t is not None and t.mm.flags & MMF.MMF_OOM_REAPED:
                    return OomScan.OOM_SCAN_CONTINUE
        return OomScan.OOM_SCAN_ABORT
    # This task already has access to memory reserves and is being killed:
    # don't let anybody else at them (the assumption the lockup breaks).
    if task.tif_memdie:
        return OomScan.OOM_SCAN_ABORT
    if task.mm is None:
        return OomScan.OOM_SCAN_CONTINUE
    # 4.5: an exiting task that still has its mm is about to free it, so
    # wait for it rather than kill somebody else.
    if kernel.policy_ops.exiting_task_aborts_scan and task_will_free_mem(task):
        return OomScan.OOM_SCAN_ABORT
    return OomScan.OOM_SCAN_OK


def select_bad_process(kernel: "Kernel", oc: OomControl) -> tuple[Task | None | OomScan, int]:
    """The eligible thread with the most points, None, or OOM_SCAN_ABORT;
    and its score, ``chosen_points * 1000 / totalpages`` as Linux 4.6
    returns it through ``*ppoints`` (what "score %u" prints)."""
    totalpages = kernel.zone.nr_pages
    chosen, chosen_points = None, 0
    by_process = kernel.policy_ops.oom_scan_processes
    # 4.6 walks every thread (for_each_process_thread), 4.7 every process.
    for p in (kernel.processes() if by_process else kernel.tasks()):
        if not by_process and p.state & (p.state.EXIT_DEAD | p.state.EXIT_ZOMBIE):
            continue
        scan = oom_scan_process_thread(kernel, oc, p)
        if scan is OomScan.OOM_SCAN_CONTINUE:
            continue
        if scan is OomScan.OOM_SCAN_ABORT:
            return OomScan.OOM_SCAN_ABORT, 0
        points = oom_badness(p, totalpages)
        if not points or points < chosen_points:
            continue
        # Prefer a thread group leader on a tie, as 4.6 does (4.7 scans
        # leaders only: the later one wins; 4.9's oom_evaluate_task keeps
        # the test, so there the first one stays).
        if (not by_process or kernel.policy_ops.oom_evaluate_task) and points == chosen_points and \
                chosen is not None and chosen.group_leader is chosen:
            continue
        chosen, chosen_points = p, points
    return chosen, chosen_points * 1000 // totalpages


#: The x86_64 page size in bytes: 5.x's dump_tasks prints page-table bytes.
PAGE_SIZE = PAGE_KB * 1024


def dump_tasks(kernel: "Kernel") -> None:
    """4.6's table, header and row formats exact. uid is printed as 0 and
    nr_pmds as 0 (no credentials, no PMD pages).

    4.19-5.x (``policy_ops.dump_tasks_pgtables_bytes``; 5.10.13's dump_tasks
    and dump_task, read): first "Tasks state (memory values in pages):",
    then the header with ``pgtables_bytes`` for nr_ptes/nr_pmds and the row
    ``"[%7d] %5d %5d %8lu %8lu %8ld %8lu         %5hd %s"``. The model's
    ``mm_pgtables_bytes()`` is its page-table pages times PAGE_SIZE (4096):
    a stand-in (the kernel counts PTE and PMD tables, and a real process
    has upper levels too)."""
    five = kernel.policy_ops.dump_tasks_pgtables_bytes
    if five:
        kernel.printk("Tasks state (memory values in pages):", LogLevel.KERN_INFO)
        kernel.printk("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
                      LogLevel.KERN_INFO)
    else:
        kernel.printk("[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name",
                      LogLevel.KERN_INFO)
    for p in kernel.processes():
        if oom_unkillable_task(p):
            continue
        with find_lock_task_mm(p) as t:
            if t is None:
                continue
            mm = t.mm
            swap, adj = mm.get_mm_counter(MM_SWAPENTS), p.signal.oom_score_adj
            if five:
                line = (f"[{t.pid:7d}] {0:5d} {t.tgid:5d} {mm.total_vm:8d} {mm.get_mm_rss():8d} "
                        f"{mm.nr_ptes * PAGE_SIZE:8d} {swap:8d}         {adj:5d} {t.comm}")
            else:
                line = (f"[{t.pid:5d}] {0:5d} {t.tgid:5d} {mm.total_vm:8d} {mm.get_mm_rss():8d} "
                        f"{mm.nr_ptes:7d} {0:7d} {swap:8d}         {adj:5d} {t.comm}")
        kernel.printk(line, LogLevel.KERN_INFO)


def dump_oom_summary(kernel: "Kernel", p: Task) -> None:
    """4.19-5.x's one-line summary (``policy_ops.oom_summary_line``): 5.10.13's
    dump_oom_summary, cpuset_print_current_mems_allowed and
    mem_cgroup_print_oom_context, read. ``pr_info("oom-kill:constraint=%s,
    nodemask=%*pbl")``: CONSTRAINT_NONE (no cpuset or mempolicy limit),
    nodemask NULL, which ``%*pbl`` prints "(null)"; ``",cpuset=%s,
    mems_allowed=%*pbl"``: the root cpuset, whose cgroup name is "/", and node
    0; ``",global_oom"`` (no memcg OOM) and ``",task_memcg=%s"``, the root
    memcg's path "/"; then ``",task=%s,pid=%d,uid=%d"`` of ``p`` (the chosen
    process, oc->chosen), uid 0 (no credentials). Assumed, not read: a
    kernel built with CONFIG_CPUSETS and CONFIG_MEMCG (without them each
    piece prints nothing), and what ``pr_cont_cgroup_name`` /
    ``pr_cont_cgroup_path`` print for the root ("/", as real logs show)."""
    kernel.printk("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
                  f"global_oom,task_memcg=/,task={p.comm},pid={p.pid},uid=0", LogLevel.KERN_INFO, current())


def dump_header(kernel: "Kernel", oc: OomControl, p: Task | None) -> None:
    """Linux 4.6's header: the "invoked oom-killer" line and ``dump_tasks``.
    4.6 also prints the cpuset line, ``dump_stack()`` and ``show_mem()``'s
    report (dozens of counters per zone and order); the model prints none of
    them and shows the zone's watermarks in the lab's stream instead, so
    that dmesg holds only lines in 4.6's formats. ``oom_kill_process``
    rate-limits the header; the panic path does not.

    4.19-5.x (``policy_ops.oom_summary_line``; 5.10.13's dump_header, read):
    the line has no nodemask (``header_nodemask`` off), no cpuset line
    follows it, and after dump_stack, show_mem (both left out here, as
    above) and dump_tasks comes, when there is a victim ``p``, the one-line
    summary (``dump_oom_summary``). The "COMPACTION is disabled!!!" line
    (only for order > 0 without CONFIG_COMPACTION) and the unreclaimable
    slab dump are not modelled: the model's allocations are order 0 and it
    has no slab."""
    cur = current()
    comm = cur.comm if cur else "harness"
    adj = cur.signal.oom_score_adj if cur else 0
    # 4.5 prints the bare mask ("gfp_mask=0x%x"); the 4.6 trees add the
    # flags' names ("%#x(%pGg)", a0795cd4). Both in the tree's numbering
    # (``gfp_layout``: 0x24000c0, 0x14000c0 or 0xcc0 for GFP_KERNEL).
    layout = kernel.policy_ops.gfp_layout
    value = gfp_value(oc.gfp_mask, layout)
    gfp = (f"{value:#x}({format_gfp(oc.gfp_mask, layout)})" if kernel.policy_ops.header_gfp_names
           else f"0x{value:x}")
    # 4.11-4.18 (``header_nodemask``): ", nodemask=(null)" (no nodemask in
    # the model), then pr_cont's two spaces before "order".
    where = ", nodemask=(null),  " if kernel.policy_ops.header_nodemask else ", "
    kernel.printk(f"{comm} invoked oom-killer: gfp_mask={gfp}{where}order={oc.order}, oom_score_adj={adj}",
                  LogLevel.KERN_WARNING, cur)
    z = kernel.zone
    kernel.lab(f"show_mem() omitted (4.6 prints per-zone counters here); the zone: free:{z.nr_free * PAGE_KB}kB "
               f"min:{z.wmark_min * PAGE_KB}kB low:{z.wmark_low * PAGE_KB}kB "
               f"high:{z.wmark_high * PAGE_KB}kB present:{z.nr_pages * PAGE_KB}kB", cur)
    dump_tasks(kernel)
    if p is not None and kernel.policy_ops.oom_summary_line:
        dump_oom_summary(kernel, p)


def mark_oom_victim(kernel: "Kernel", tsk: Task) -> None:
    """Give ``tsk`` TIF_MEMDIE: access to the reserves, and OOM_SCAN_ABORT
    for everybody else. aac45363's, without ``__thaw_task`` (no freezer) and
    the WARN on ``oom_killer_disabled``; the ``mark_victim`` event is the
    lab's (the tracepoint of that name is 4.13's)."""
    if tsk.tif_memdie:  # test_and_set_tsk_thread_flag
        return
    tsk.tif_memdie = True
    # 4.9 (``signal_oom_mm``): the group's first mark keeps its mm, pinned
    # with mm_count, for the reaper and the scan; the caller holds
    # task_lock (or is ``tsk``), so ->mm cannot go meanwhile.
    if kernel.policy_ops.signal_oom_mm and tsk.signal.oom_mm is None and tsk.mm is not None:
        tsk.signal.oom_mm = tsk.mm
        tsk.signal.oom_mm_pinned = True
        mmgrab(tsk.mm)
    atomic_inc(kernel.oom_victims)
    kernel.stats.oom_victims_marked += 1  # inside the caller's decision, under oom_lock
    kernel.tracer.record(Ev.MARK_VICTIM, tsk.pid, tsk.comm)
    kernel.poke()


def exit_oom_victim(kernel: "Kernel", tsk: Task) -> None:
    """``exit_oom_victim``: clear TIF_MEMDIE and drop ``oom_victims``. At
    aac45363 it takes no argument and only the exiting task calls it; from
    36324a99 on the reaper calls it on its victim too, so it became
    test-and-clear (``test_and_clear_tsk_thread_flag``)."""
    # task_lock stands for the atomic test-and-clear: the exiting victim and
    # the reaper must not both drop oom_victims for one flag.
    with tsk.alloc_lock:
        if not tsk.tif_memdie:
            return
        tsk.tif_memdie = False
    if atomic_dec_return(kernel.oom_victims) == 0:
        kernel.poke()  # oom_victims_wait: nothing in the model waits on it yet
    kernel.tracer.record(Ev.EXIT_OOM_VICTIM, tsk.pid, tsk.comm)


def process_shares_mm(p: Task, mm: MM) -> bool:
    """4.6's: any thread of ``p`` uses ``mm``."""
    return any(t.mm is mm for t in p.thread_group())


def oom_kill_process(kernel: "Kernel", oc: OomControl, p: Task, points: int,
                     message: str = "Out of memory") -> None:
    """Kill ``p`` and every process sharing its mm, or, if ``p`` is already
    exiting, only mark it. A decision: raises PlugPulled once the plug is
    pulled."""
    with kernel.decision():
        _oom_kill_process(kernel, oc, p, points, message)


def _oom_kill_process(kernel: "Kernel", oc: OomControl, p: Task, points: int,
                      message: str) -> None:
    """Linux 4.6's (aac45363) ``oom_kill_process``.

    If ``p`` still has its mm and ``task_will_free_mem(p)``, it is only given
    TIF_MEMDIE, under task_lock, "so it can die quickly": no header, no
    "Kill process" line, no SIGKILL, no other process killed and no reaper
    woken (4.7 wakes the reaper here too). The OOM killer then waits for it
    like for any victim (OOM_SCAN_ABORT), so an exiting task that cannot
    finish its exit still locks the machine up this way.

    Otherwise the header (``dump_header``) is printed only if the kernel's
    ``oom_rs`` ratelimit allows it: at most DEFAULT_RATELIMIT_BURST (10)
    headers per DEFAULT_RATELIMIT_INTERVAL (5 * HZ). A suppressed header
    prints nothing at all; the count of suppressed ones comes later, as
    "oom_kill_process: N callbacks suppressed", at the first kill after the
    interval ran out (``___ratelimit``). The "Kill process" and "Killed
    process" lines are never rate-limited. Not modelled: sacrificing a child
    with another mm for its parent (the model has no parent/child tree).

    5.x's lines (``policy_ops.killed_line_with_message``; 5.10.13's
    __oom_kill_process, read): no "Kill process ... or sacrifice child", the
    kill line is "%s: Killed process %d (%s) total-vm:... shmem-rss:%lukB,
    UID:%u pgtables:%lukB oom_score_adj:%hd", and a chosen process with no
    thread left holding an mm gets "%s: OOM victim %d (%s) is already
    exiting. Skip killing the task" (pr_info) where 4.6 returns silently.
    Only the printing follows 5.x here: the order of the kill, the mark and
    the sharers' kills is the design's, as before.
    Under ``none`` (aac45363^) the same, except that no reaper is woken:
    that is ``policy_ops.after_kill``.
    """
    # task_lock(p): exit_mm() clears ->mm under it, so an exiting task that
    # still has its mm here sees TIF_MEMDIE when it gets to exit_oom_victim.
    # 4.8's test has no p->mm of its own: task_will_free_mem checks it.
    with p.alloc_lock:
        mark_only = p.mm is not None and task_will_free_mem(p)
        if mark_only:
            mark_oom_victim(kernel, p)
            mm = p.mm
    if mark_only:
        # 4.7 (``reap_self_victims``) queues it for the reaper too
        # (try_oom_reaper); the kernel does that still under task_lock, the
        # model after it (no other lock is taken under a task's alloc_lock).
        # Earlier designs do nothing here.
        if mm is not None:
            kernel.policy_ops.after_kill(kernel, p, mm, True, self_victim=True)
        return
    if ___ratelimit(kernel, kernel.oom_rs, "oom_kill_process"):
        dump_header(kernel, oc, p)
    five = kernel.policy_ops.killed_line_with_message
    if not five:
        kernel.printk(f"{message}: Kill process {p.pid} ({p.comm}) score {points} or sacrifice child",
                      LogLevel.KERN_ERR, current())
    with find_lock_task_mm(p) as victim:
        if victim is None:
            # 5.x's __oom_kill_process says so; 4.6 returns silently.
            if five:
                kernel.printk(f"{message}: OOM victim {p.pid} ({p.comm}) is already exiting. "
                              "Skip killing the task", LogLevel.KERN_INFO, current())
            return
        mm = victim.mm
        # Pin the struct: once task_lock is dropped the victim may exit and
        # drop its last mm_users reference, but we still compare and report it.
        mmgrab(mm)
        # Linux 4.6 (aac45363): SIGKILL first, then TIF_MEMDIE, both under
        # task_lock, "to prevent the OOM victim from depleting the memory
        # reserves from the user space under its control".
        send_sigkill(victim)
        mark_oom_victim(kernel, victim)
        # Printed still under task_lock, as 4.6 does (and 5.x).
        rss = (f"total-vm:{mm.total_vm * PAGE_KB}kB, "
               f"anon-rss:{mm.get_mm_counter(MM_ANONPAGES) * PAGE_KB}kB, "
               f"file-rss:{mm.get_mm_counter(MM_FILEPAGES) * PAGE_KB}kB, "
               f"shmem-rss:{mm.get_mm_counter(MM_SHMEMPAGES) * PAGE_KB}kB")
        if five:
            # 5.x: the message, the uid (0: no credentials), the page tables
            # in kB (mm_pgtables_bytes >> 10: the model's PTE pages, as in
            # dump_tasks) and the victim's oom_score_adj.
            kernel.printk(f"{message}: Killed process {victim.pid} ({victim.comm}) {rss}, UID:0 "
                          f"pgtables:{mm.nr_ptes * PAGE_SIZE >> 10}kB "
                          f"oom_score_adj:{victim.signal.oom_score_adj}", LogLevel.KERN_ERR, current())
        else:
            kernel.printk(f"Killed process {victim.pid} ({victim.comm}) {rss}", LogLevel.KERN_ERR, current())
    kernel.stats.oom_kills += 1

    # Kill every other process sharing the victim's mm. A sharer we may not
    # kill keeps using the memory, so then the mm must not be reaped: in
    # aac45363 that is a kthread (use_mm), init, or an OOM_SCORE_ADJ_MIN
    # process, none of which is killed.
    # 4.8 (``oom_kill_all_sharers``) kills the OOM_SCORE_ADJ_MIN ones too;
    # a kthread or init sharer then hides the mm (MMF_OOM_REAPED) instead.
    kill_all = kernel.policy_ops.oom_kill_all_sharers
    can_oom_reap = True
    for q in kernel.processes():
        if q.signal is victim.signal or not process_shares_mm(q, mm):
            continue
        if kill_all and q.is_kthread and kernel.policy_ops.reap_kthread_shared_mm:
            continue  # 4.9/4.10: no use_mm user reads user memory: reap anyway
        if kill_all and (q.is_kthread or is_global_init(q)):
            can_oom_reap = False
            mm.flags |= MMF.MMF_OOM_REAPED
            kernel.tracer.record(Ev.OOM_REAP_FORBIDDEN, q.pid, q.comm, mm=mm.id, victim=victim.pid)
            kernel.printk(f"oom killer {victim.pid} ({victim.comm}) has mm pinned by {q.pid} ({q.comm})",
                          LogLevel.KERN_INFO, current())
            continue
        if not kill_all and (q.is_kthread or is_global_init(q) or
                             q.signal.oom_score_adj == OOM_SCORE_ADJ_MIN):
            can_oom_reap = False
            kernel.tracer.record(Ev.OOM_REAP_FORBIDDEN, q.pid, q.comm, mm=mm.id,
                                 victim=victim.pid)
            continue
        send_sigkill(q)
    kernel.tracer.record(Ev.OOM_KILL, victim.pid, victim.comm, points=points, mm=mm.id,
                         can_oom_reap=can_oom_reap, by=current().pid if current() else 0)
    kernel.policy_ops.after_kill(kernel, victim, mm, can_oom_reap)
    mmdrop(mm)


def panic(kernel: "Kernel", message: str) -> None:
    """The first line 4.6's panic() prints, "Kernel panic - not syncing: %s"
    (the same in 5.x; 5.10.13's kernel/panic.c not read); the rest (stack,
    the "end Kernel panic" line, the reboot timeout) is not modelled."""
    kernel.printk(f"Kernel panic - not syncing: {message}", LogLevel.KERN_ERR, current())
    kernel.panic(message)
    raise OomPanic(message)


def out_of_memory(kernel: "Kernel", oc: OomControl) -> bool:
    """Kill something (or find a reason not to); the caller holds oom_lock.
    aac45363's ``out_of_memory``, returning True as it does whenever it
    gets past ``oom_killer_disabled`` (never set here).

    A decision: once the plug is pulled it raises PlugPulled and does
    nothing, not even count the invocation.
    """
    with kernel.decision():
        killed = _out_of_memory(kernel, oc)
    if killed:
        # Give the victim a good chance to exit before anybody allocates
        # again. (Linux 4.6 sleeps here holding oom_lock.)
        schedule_timeout_killable(1, "out_of_memory")
    return True


def _out_of_memory(kernel: "Kernel", oc: OomControl) -> bool:
    """The decision itself; True when it killed a process. aac45363's
    order: the self-victim shortcut, then the scan, a panic if nobody is
    eligible, nothing on OOM_SCAN_ABORT, else the kill. 4.7 queues the
    self-victim for the reaper (``after_kill``: try_oom_reaper) and tests
    for !__GFP_FS right after the shortcut (``nofs_check_in_out_of_memory``). Not modelled: the
    notifier chain, constraints, ``check_panic_on_oom`` and
    ``oom_kill_allocating_task`` (see the module docstring). With nobody
    eligible, 4.6 panics "Out of memory and no killable processes..."; 5.x
    (``panic_deadlocked_on_memory``) prints that as a warning and panics
    "System is deadlocked on memory"."""
    cur = current()
    kernel.stats.oom_invocations += 1
    kernel.tracer.record(Ev.OOM_INVOKE, cur.pid if cur else 0, cur.comm if cur else "",
                         gfp=int(oc.gfp_mask), order=oc.order)
    # If current already has SIGKILL pending or is exiting, let it have the
    # reserves so that it can get out of the way quickly.
    # 4.8 (``task_will_free_mem_mm``): the test is task_will_free_mem alone,
    # which a group SIGKILL satisfies and which looks at every mm sharer.
    if kernel.policy_ops.task_will_free_mem_mm:
        shortcut = cur is not None and task_will_free_mem(cur)
    else:
        shortcut = cur is not None and cur.mm is not None and \
            (fatal_signal_pending(cur) or task_will_free_mem(cur))
    if shortcut:
        mark_oom_victim(kernel, cur)
        kernel.tracer.record(Ev.OOM_CURRENT_VICTIM, cur.pid, cur.comm)
        kernel.policy_ops.after_kill(kernel, cur, cur.mm, True, self_victim=True)
        return False
    # 4.7 (3da88fb3): the !__GFP_FS test moved here from
    # __alloc_pages_may_oom, after the shortcut above, so that a killed
    # GFP_NOFS allocator gets the reserves; nobody is killed for one.
    if kernel.policy_ops.nofs_check_in_out_of_memory and oc.gfp_mask and \
            not oc.gfp_mask & (__GFP_FS | __GFP_NOFAIL):
        return False
    p, points = select_bad_process(kernel, oc)
    if p is None:
        dump_header(kernel, oc, None)
        if kernel.policy_ops.panic_deadlocked_on_memory:
            # 5.x (5.10.13's out_of_memory, read): a warning, then the panic
            # for a global (not sysrq, not memcg) OOM, which this always is.
            kernel.printk("Out of memory and no killable processes...", LogLevel.KERN_WARNING, cur)
            panic(kernel, "System is deadlocked on memory")
        panic(kernel, "Out of memory and no killable processes...")
    if p is OomScan.OOM_SCAN_ABORT:
        kernel.stats.oom_aborts += 1
        holders = [t.pid for t in kernel.tasks() if t.tif_memdie]
        kernel.tracer.record(Ev.OOM_ABORT, cur.pid if cur else 0, cur.comm if cur else "",
                             memdie=holders)
        kernel.poke()
        return False
    oom_kill_process(kernel, oc, p, points)
    return True
