"""The page allocator's policy: the fast path and a slow path that loops.

The zone itself (pages, free list, watermarks) is ``zone.py``; gfp flags are
``gfp.py``. The slow path follows Linux 4.6's ``__alloc_pages_slowpath``:

1. retry at the min watermark; a TIF_MEMDIE task may go below it
   (ALLOC_NO_WATERMARKS: the memory reserves);
2. a TIF_MEMDIE task that still finds nothing fails (unless __GFP_NOFAIL):
   the only way a small allocation fails;
3. direct reclaim: the model has nothing reclaimable, but the scan costs a
   jiffy of runnable time, so a looping allocator never spins on the GIL;
4. ``__alloc_pages_may_oom``: ``oom_lock`` is only *tried*; on failure the
   task sleeps one jiffy uninterruptibly and retries (counted as progress).
   Holding it, a last attempt at the high watermark, then: a !__GFP_FS
   allocation (GFP_NOFS) never calls the OOM killer and "keeps looping as
   per tradition"; everybody else calls ``out_of_memory()``;
5. go to 1. A small allocation is "too small to fail": it loops for ever.

Recording such a loop event by event would fill the flight recorder in
seconds (about HZ iterations a model second, half a dozen events each), so
iterations after the first are counted, not recorded, unless something
happens in them (``AllocRetry``; new event ``alloc_retry``).

mm/page_alloc.c at v4.6 could not be read; the slow path follows lore
excerpts of 4.6's ``__alloc_pages_may_oom`` and recollection (see
KERNEL-HISTORY.md). The retry accounting (``AllocRetry``), task-owned pages
and the events are the lab's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PlugPulled
from .events import Ev
from .gfp import GFP, __GFP_DIRECT_RECLAIM, __GFP_FS, __GFP_NOFAIL, __GFP_NOMEMALLOC, \
    __GFP_NORETRY, __GFP_NOWARN, format_gfp, gfp_value
from .oom_kill import OomControl, out_of_memory
from .ratelimit import ___ratelimit
from .sched import Task, TaskState, current, schedule_timeout, schedule_timeout_uninterruptible
from .trace import HeldEvent, LogLevel
from .zone import AllocFlags

if TYPE_CHECKING:
    from .kernel import Kernel

#: Events an iteration of the slow path's retry loop records when nothing
#: happens in it; later iterations drop them and are counted instead.
ALLOC_RETRY_ROUTINE = frozenset({Ev.SCHED_SLEEP, Ev.SCHED_WAKE, Ev.LOCK_ACQUIRE, Ev.LOCK_RELEASE,
                                 Ev.OOM_INVOKE, Ev.OOM_ABORT})
#: A looping allocator records an alloc_retry summary this often (model
#: seconds), or after this many counted iterations, whichever comes first.
ALLOC_RETRY_PERIOD = 1.0
ALLOC_RETRY_BATCH = 1000

def get_page_from_freelist(kernel: "Kernel", owner: object, flags: AllocFlags) -> int | None:
    """One zone, one order-0 page at the given watermark (4.6's walks the
    zonelist with cpusets, fairness and dirty limits: none modelled)."""
    pfn = kernel.zone.rmqueue(owner, flags)
    if pfn is not None:
        kernel.note_progress()
    return pfn


def alloc_pages(gfp: int, order: int = 0, owner: object = None) -> int | None:
    """Allocate one page for the current task; None only where the kernel fails.
    4.6's ``__alloc_pages_nodemask``: the fast path at the low watermark,
    then the slow path.

    ``owner`` is the mm the page will be mapped into; by default the page
    belongs to the task itself (freed with ``free_page`` or at exit).
    """
    task = current()
    if task is None:
        raise RuntimeError("alloc_pages() called outside a task")
    if order != 0:
        raise ValueError("the model allocates order-0 pages only")
    kernel = task.kernel
    if kernel.plug_pulled:
        raise PlugPulled()
    own = task if owner is None else owner
    pfn = get_page_from_freelist(kernel, own, AllocFlags.ALLOC_WMARK_LOW)
    if pfn is None:
        pfn = __alloc_pages_slowpath(kernel, task, GFP(gfp), order, own)
    else:
        kernel.tracer.record(Ev.MM_PAGE_ALLOC, task.pid, task.comm, gfp=int(gfp), pfn=pfn)
    if pfn is not None and owner is None:
        task.kernel_pages.append(pfn)
    return pfn


def free_page(pfn: int) -> None:
    """Free a page the current task allocated for itself (the lab's
    task-owned pages; the kernel's free_page takes no owner)."""
    task = current()
    if task is None:
        raise RuntimeError("free_page() called outside a task")
    task.kernel.zone.free_page(pfn, task)
    task.kernel_pages.remove(pfn)
    task.kernel.tracer.record(Ev.MM_PAGE_FREE, task.pid, task.comm, pfn=pfn)
    task.kernel.poke()


@dataclass(eq=False)
class AllocRetry:
    """One slow-path call's loop: what its summary events report.

    The first iteration is recorded in full. Every later one holds its
    routine events back (``ALLOC_RETRY_ROUTINE``: the one-jiffy naps, the
    oom_lock trylock and release, oom_invoke, oom_abort) and, if nothing else
    happened in it, drops them and is only counted here. An iteration that
    does anything else (a kill, a stall warning, a failure) is recorded in
    full, after a summary of the iterations counted before it.
    ``alloc_retry`` events carry the counts: every ``ALLOC_RETRY_PERIOD``
    model seconds (or ``ALLOC_RETRY_BATCH`` counted iterations) while the
    loop lasts, ahead of a fully recorded iteration, and once when it ends.
    So the oom_abort events plus the ``aborts`` of the alloc_retry events
    are every abort, and a log cut mid-loop misses at most one period's.
    """

    kernel: "Kernel"
    task: Task
    since: float  # model time the slow path started
    summary_at: float  # next periodic summary
    stall_at: float  # next "page allocation stalls" warning
    loops: int = 0  # iterations done
    retries: int = 0  # iterations only counted, since the last summary
    aborts: int = 0  # oom_abort events among them
    invocations: int = 0  # oom_invoke events among them

    def count(self, dropped: list[HeldEvent] | None) -> None:
        """Account an iteration whose events were dropped (None: recorded)."""
        if dropped is None:
            return
        self.retries += 1
        for e in dropped:
            if e.name == Ev.OOM_ABORT:
                self.aborts += 1
            elif e.name == Ev.OOM_INVOKE:
                self.invocations += 1

    def summarise(self, final: bool = False) -> None:
        """Record the counts since the last summary as one alloc_retry event."""
        if self.retries:
            task = self.task
            self.kernel.tracer.record(Ev.ALLOC_RETRY, task.pid, task.comm, loops=self.loops,
                                      retries=self.retries, aborts=self.aborts,
                                      invocations=self.invocations, since=self.since,
                                      final=final)
            self.retries = self.aborts = self.invocations = 0
        self.summary_at = self.kernel.clock.now() + ALLOC_RETRY_PERIOD


def __alloc_pages_slowpath(kernel: "Kernel", task: Task, gfp: GFP, order: int,
                           owner: object) -> int | None:
    """4.6's slow path (see the module docstring), looping until a step
    says it is done; no ``warn_alloc_failed`` line when it fails."""
    clock = kernel.clock
    tracer = kernel.tracer
    start = clock.now()
    loop = AllocRetry(kernel, task, start, start + ALLOC_RETRY_PERIOD,
                      start + kernel.config.alloc_stall_secs)
    task.alloc_since, task.alloc_gfp = start, gfp
    tracer.record(Ev.ALLOC_SLOWPATH, task.pid, task.comm, gfp=int(gfp), order=order)
    pfn: int | None = None
    try:
        while True:
            held = loop.loops > 0 and tracer.hold_back(ALLOC_RETRY_ROUTINE, loop.summarise)
            try:
                done, pfn = __alloc_pages_slowpath_once(kernel, task, gfp, order, owner, loop)
            finally:
                if held:
                    loop.count(tracer.release_held())
            loop.loops += 1
            if done:
                break
            now = clock.now()
            if now >= loop.summary_at or loop.retries >= ALLOC_RETRY_BATCH:
                loop.summarise()
    finally:
        task.alloc_since = task.alloc_gfp = None
        loop.summarise(final=True)
    if pfn is None:
        with kernel.decision(), kernel.stats.lock:
            kernel.stats.alloc_failed += 1
    else:
        tracer.record(Ev.ALLOC_SUCCESS, task.pid, task.comm, waited=clock.now() - start)
    return pfn


def __alloc_pages_slowpath_once(kernel: "Kernel", task: Task, gfp: GFP, order: int,
                                owner: object, loop: AllocRetry) -> tuple[bool, int | None]:
    """One iteration of 4.6's retry loop: (done, page). Not modelled:
    kswapd, compaction, the PF_MEMALLOC recursion check, ALLOC_HIGH and
    ALLOC_HARDER, and reclaim progress (direct reclaim never frees here)."""
    pfn = get_page_from_freelist(kernel, owner, AllocFlags.ALLOC_WMARK_MIN)
    if pfn is None and task.tif_memdie and not gfp & __GFP_NOMEMALLOC:
        # TIF_MEMDIE lets the victim dip into the reserves below min.
        pfn = get_page_from_freelist(kernel, owner, AllocFlags.ALLOC_NO_WATERMARKS)
    if pfn is not None:
        return True, pfn
    if not gfp & __GFP_DIRECT_RECLAIM:
        return True, None
    # "Avoid allocations with no watermarks from looping endlessly."
    if task.tif_memdie and not gfp & __GFP_NOFAIL:
        kernel.tracer.record(Ev.ALLOC_FAIL, task.pid, task.comm, gfp=int(gfp),
                             reason="TIF_MEMDIE and reserves exhausted")
        return True, None
    # Direct reclaim: nothing to reclaim here, but the scan takes time.
    schedule_timeout(TaskState.TASK_RUNNING, 1, "__alloc_pages_direct_reclaim")
    if gfp & __GFP_NORETRY:  # "Do not loop if specifically requested"
        return True, None
    pfn = __alloc_pages_may_oom(kernel, task, gfp, order, owner)
    if pfn is not None:
        return True, pfn
    now = kernel.clock.now()
    if kernel.policy_ops.warns_alloc_stalls and now >= loop.stall_at and not gfp & __GFP_NOWARN:
        warn_alloc_stall(kernel, task, now - loop.since, order, gfp)
        loop.stall_at += kernel.config.alloc_stall_secs
    return False, None


def warn_alloc_stall(kernel: "Kernel", task: Task, seconds: float, order: int, gfp: int) -> None:
    """The stall warning of 4.9 to 4.14 (63f53dea added it, 400e2249 removed
    it in 4.15; ids not re-verified), printed only by designs whose
    ``warns_alloc_stalls`` says so; neither 4.6 tree prints it. 4.9's
    ``warn_alloc``: "%s: page allocation stalls for %ums, order:%u" and
    ", mode:%#x(%pGg)" (TROVON v4.9 page_alloc.c, per KERNEL-FORMATS.md),
    rate-limited by ``nopage_rs`` (DEFAULT_RATELIMIT_INTERVAL/BURST); its
    ``dump_stack()`` and ``show_mem()`` are not printed (as in the OOM
    header). The mask is printed in the tree's numbering (``gfp_layout``:
    v4.9 4.6's, GFP_NOFS 0x2400040; v4.14 4.10's, 0x1400040). A decision:
    no warning once the plug is pulled."""
    with kernel.decision():
        with kernel.stats.lock:
            kernel.stats.alloc_stalls += 1
        kernel.tracer.record(Ev.ALLOC_STALL, task.pid, task.comm, ms=int(seconds * 1000),
                             order=order)
        if not ___ratelimit(kernel, kernel.nopage_rs, "warn_alloc"):
            return
        layout = kernel.policy_ops.gfp_layout  # the tree's ___GFP_* numbering
        kernel.printk(f"{task.comm}: page allocation stalls for {int(seconds * 1000)}ms, "
                      f"order:{order}, mode:{gfp_value(gfp, layout):#x}({format_gfp(gfp, layout)})"
                      + (", nodemask=(null)" if kernel.policy_ops.stall_warning_nodemask else ""),
                      LogLevel.KERN_WARNING, task)


def __alloc_pages_may_oom(kernel: "Kernel", task: Task, gfp: GFP, order: int,
                          owner: object) -> int | None:
    """4.6's: oom_lock trylock, a last try at the high watermark, no OOM
    kill for !__GFP_FS (unless __GFP_NOFAIL), ``out_of_memory``, then the
    reserves for __GFP_NOFAIL. 4.7 (``nofs_check_in_out_of_memory``,
    verified in v4.7's page_alloc.c) calls ``out_of_memory`` for !__GFP_FS
    too, which tests the mask after its self-victim shortcut. Its order, lowmem, __GFP_THISNODE and
    ``pm_suspended_storage`` exits cannot arise (order 0, one zone)."""
    # A trylock: an allocator must not sleep on oom_lock behind the OOM
    # killer, which itself sleeps a jiffy holding it after a kill.
    if not kernel.oom_lock.trylock():
        schedule_timeout_uninterruptible(1, "__alloc_pages_may_oom")
        return None
    try:
        # Somebody else may have freed memory while we waited: a last try at
        # the high watermark before killing anything.
        pfn = get_page_from_freelist(kernel, owner, AllocFlags.ALLOC_WMARK_HIGH)
        if pfn is not None:
            return pfn
        if not gfp & __GFP_NOFAIL and not gfp & __GFP_FS and \
                not kernel.policy_ops.nofs_check_in_out_of_memory:
            # The OOM killer cannot be invoked for IO-less reclaim "but keep
            # looping as per tradition". From 4.7 on (3da88fb3) out_of_memory
            # makes this test itself, after giving a killed task the reserves.
            return None
        out_of_memory(kernel, OomControl(gfp_mask=gfp, order=order))
        if gfp & __GFP_NOFAIL:
            return get_page_from_freelist(kernel, owner, AllocFlags.ALLOC_NO_WATERMARKS)
        return None
    finally:
        kernel.oom_lock.unlock()
