"""The page allocator: one zone, gfp flags, and a slow path that loops.

The slow path follows Linux 4.6's ``__alloc_pages_slowpath``:

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
"""

from __future__ import annotations

import enum
import threading
from typing import TYPE_CHECKING

from .errors import BadPageState, PlugPulled
from .sched import (Task, TaskState, current, schedule_timeout,
                    schedule_timeout_uninterruptible)
from .trace import LogLevel

if TYPE_CHECKING:
    from .kernel import Kernel


class GFP(enum.IntFlag):
    """gfp bits with their Linux 4.6 values (``___GFP_*`` in include/linux/gfp.h)."""

    HIGHMEM = 0x02
    MOVABLE = 0x08
    HIGH = 0x20
    IO = 0x40
    FS = 0x80
    COLD = 0x100
    NOWARN = 0x200
    NOFAIL = 0x800
    NORETRY = 0x1000
    MEMALLOC = 0x2000
    ZERO = 0x8000
    NOMEMALLOC = 0x10000
    HARDWALL = 0x20000
    ATOMIC = 0x80000
    DIRECT_RECLAIM = 0x400000
    KSWAPD_RECLAIM = 0x2000000


# The kernel's spellings. Module-level on purpose: inside a class body Python
# would mangle a name that starts with two underscores.
__GFP_HIGHMEM = GFP.HIGHMEM
__GFP_MOVABLE = GFP.MOVABLE
__GFP_HIGH = GFP.HIGH
__GFP_IO = GFP.IO
__GFP_FS = GFP.FS
__GFP_NOWARN = GFP.NOWARN
__GFP_NOFAIL = GFP.NOFAIL
__GFP_NORETRY = GFP.NORETRY
__GFP_NOMEMALLOC = GFP.NOMEMALLOC
__GFP_ZERO = GFP.ZERO
__GFP_HARDWALL = GFP.HARDWALL
__GFP_ATOMIC = GFP.ATOMIC
__GFP_DIRECT_RECLAIM = GFP.DIRECT_RECLAIM
__GFP_KSWAPD_RECLAIM = GFP.KSWAPD_RECLAIM
__GFP_RECLAIM = GFP.DIRECT_RECLAIM | GFP.KSWAPD_RECLAIM

GFP_ATOMIC = GFP.HIGH | GFP.ATOMIC | GFP.KSWAPD_RECLAIM
GFP_NOWAIT = GFP.KSWAPD_RECLAIM
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | GFP.IO
GFP_KERNEL = __GFP_RECLAIM | GFP.IO | GFP.FS
GFP_USER = GFP_KERNEL | GFP.HARDWALL
GFP_HIGHUSER = GFP_USER | GFP.HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | GFP.MOVABLE

# %pGg decodes composite names first, then single bits.
_GFP_NAMES: tuple[tuple[int, str], ...] = (
    (GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (GFP_HIGHUSER, "GFP_HIGHUSER"),
    (GFP_USER, "GFP_USER"),
    (GFP_KERNEL, "GFP_KERNEL"),
    (GFP_NOFS, "GFP_NOFS"),
    (GFP_ATOMIC, "GFP_ATOMIC"),
    (GFP_NOIO, "GFP_NOIO"),
    (GFP_NOWAIT, "GFP_NOWAIT"),
) + tuple((int(f), f"__GFP_{f.name}") for f in GFP)

PAGE_KB = 4  # K(x): pages to kB with 4 KiB pages


def format_gfp(gfp: int) -> str:
    """``%pGg``: ``GFP_KERNEL|__GFP_NOFAIL``."""
    rest, names = int(gfp), []
    for mask, name in _GFP_NAMES:
        if mask and rest & mask == mask:
            names.append(name)
            rest &= ~mask
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


def parse_gfp(text: str) -> GFP:
    """``"GFP_NOFS|__GFP_NOFAIL"`` -> flags (for CLIs and scenario files)."""
    table = {name: mask for mask, name in _GFP_NAMES}
    out = 0
    for part in text.split("|"):
        part = part.strip()
        if part not in table:
            raise ValueError(f"unknown gfp flag {part!r}; valid: {', '.join(sorted(table))}")
        out |= table[part]
    return GFP(out)


class AllocFlags(enum.Enum):
    ALLOC_WMARK_MIN = "min"
    ALLOC_WMARK_LOW = "low"
    ALLOC_WMARK_HIGH = "high"
    ALLOC_NO_WATERMARKS = "none"


class Zone:
    """One zone of ``nr_pages`` pages with per-page ownership.

    ``owner[pfn]`` is None for a free page, otherwise the object that owns it
    (an mm, or a task for its own kernel pages), so conservation and double
    frees can be checked at any moment.
    """

    def __init__(self, nr_pages: int, wmark_min: int | None = None,
                 wmark_low: int | None = None, wmark_high: int | None = None) -> None:
        if nr_pages < 16:
            raise ValueError(f"a zone needs at least 16 pages, got {nr_pages}")
        mn = max(2, nr_pages // 32) if wmark_min is None else wmark_min
        low = mn + max(1, mn // 4) if wmark_low is None else wmark_low
        high = mn + max(2, mn // 2) if wmark_high is None else wmark_high
        if not 0 < mn <= low <= high < nr_pages:
            raise ValueError(f"watermarks must satisfy 0 < min <= low <= high < pages, "
                             f"got min={mn} low={low} high={high} pages={nr_pages}")
        self.nr_pages = nr_pages
        self.wmark = {AllocFlags.ALLOC_WMARK_MIN: mn, AllocFlags.ALLOC_WMARK_LOW: low,
                      AllocFlags.ALLOC_WMARK_HIGH: high, AllocFlags.ALLOC_NO_WATERMARKS: 0}
        # zone->lock: the free list and the owner array change together, so a
        # page is never on the free list while owned (or owned twice).
        self.lock = threading.Lock()
        self._free: list[int] = list(range(nr_pages - 1, -1, -1))
        self.owner: list[object] = [None] * nr_pages
        self.nr_allocated = 0  # successful rmqueue() calls, ever
        self.nr_freed = 0

    @property
    def nr_free(self) -> int:
        return len(self._free)

    @property
    def wmark_min(self) -> int:
        return self.wmark[AllocFlags.ALLOC_WMARK_MIN]

    @property
    def wmark_low(self) -> int:
        return self.wmark[AllocFlags.ALLOC_WMARK_LOW]

    @property
    def wmark_high(self) -> int:
        return self.wmark[AllocFlags.ALLOC_WMARK_HIGH]

    def rmqueue(self, owner: object, flags: AllocFlags) -> int | None:
        """Take one page if the watermark allows it (zone_watermark_ok)."""
        mark = self.wmark[flags]
        with self.lock:
            free = self._free
            if len(free) <= mark or not free:
                return None
            pfn = free.pop()
            self.owner[pfn] = owner
            self.nr_allocated += 1
            return pfn

    def free_page(self, pfn: int, owner: object) -> None:
        """__free_pages(): the page must be owned by ``owner``."""
        with self.lock:
            cur = self.owner[pfn]
            if cur is None:
                raise BadPageState(f"BUG: Bad page state: pfn {pfn} freed twice")
            if cur is not owner:
                raise BadPageState(f"BUG: Bad page state: pfn {pfn} freed by {owner!r}, "
                                   f"owned by {cur!r}")
            self.owner[pfn] = None
            self._free.append(pfn)
            self.nr_freed += 1

    def free_pages(self, pfns: list[int], owner: object) -> None:
        """Free a batch under one zone->lock hold (free_pages_and_swap_cache).

        Every page is checked before any is freed, so a bad batch leaves the
        zone untouched.
        """
        if not pfns:
            return
        with self.lock:
            own = self.owner
            for pfn in pfns:
                cur = own[pfn]
                if cur is not owner:
                    state = "freed twice" if cur is None else f"freed by {owner!r}, owned by {cur!r}"
                    raise BadPageState(f"BUG: Bad page state: pfn {pfn} {state}")
            if len(set(pfns)) != len(pfns):
                raise BadPageState("BUG: Bad page state: a page twice in one batch")
            for pfn in pfns:
                own[pfn] = None
            self._free.extend(pfns)
            self.nr_freed += len(pfns)

    def check_conservation(self) -> list[str]:
        """Every page free or owned, never both, never twice on the free list."""
        with self.lock:
            free = list(self._free)
            owners = list(self.owner)
        problems = []
        if len(set(free)) != len(free):
            problems.append("a page is on the free list twice")
        owned = sum(1 for o in owners if o is not None)
        if len(free) + owned != self.nr_pages:
            problems.append(f"pages not conserved: free {len(free)} + in use {owned} "
                            f"!= total {self.nr_pages}")
        bad = [p for p in free if owners[p] is not None]
        if bad:
            problems.append(f"{len(bad)} pages both free and owned (first pfn {bad[0]})")
        return problems

    def pages_owned_by(self, owner: object) -> int:
        return sum(1 for o in list(self.owner) if o is owner)


def get_page_from_freelist(kernel: "Kernel", owner: object, flags: AllocFlags) -> int | None:
    pfn = kernel.zone.rmqueue(owner, flags)
    if pfn is not None:
        kernel.note_progress()
    return pfn


def alloc_pages(gfp: int, order: int = 0, owner: object = None) -> int | None:
    """Allocate one page for the current task; None only where the kernel fails.

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
        kernel.tracer.record("mm_page_alloc", task.pid, task.comm, gfp=int(gfp), pfn=pfn)
    if pfn is not None and owner is None:
        task.kernel_pages.append(pfn)
    return pfn


def free_page(pfn: int) -> None:
    """Free a page the current task allocated for itself."""
    task = current()
    if task is None:
        raise RuntimeError("free_page() called outside a task")
    task.kernel.zone.free_page(pfn, task)
    task.kernel_pages.remove(pfn)
    task.kernel.tracer.record("mm_page_free", task.pid, task.comm, pfn=pfn)
    task.kernel.poke()


def __alloc_pages_slowpath(kernel: "Kernel", task: Task, gfp: GFP, order: int,
                           owner: object) -> int | None:
    clock = kernel.clock
    start = clock.now()
    stall_at = start + kernel.config.alloc_stall_secs
    task.alloc_since, task.alloc_gfp = start, gfp
    kernel.tracer.record("alloc_slowpath", task.pid, task.comm, gfp=int(gfp), order=order)
    try:
        while True:
            pfn = get_page_from_freelist(kernel, owner, AllocFlags.ALLOC_WMARK_MIN)
            if pfn is None and task.tif_memdie and not gfp & __GFP_NOMEMALLOC:
                # TIF_MEMDIE lets the victim dip into the reserves below min.
                pfn = get_page_from_freelist(kernel, owner, AllocFlags.ALLOC_NO_WATERMARKS)
            if pfn is not None:
                break
            if not gfp & __GFP_DIRECT_RECLAIM:
                break
            # "Avoid allocations with no watermarks from looping endlessly."
            if task.tif_memdie and not gfp & __GFP_NOFAIL:
                kernel.tracer.record("alloc_fail", task.pid, task.comm, gfp=int(gfp),
                                     reason="TIF_MEMDIE and reserves exhausted")
                break
            # Direct reclaim: nothing to reclaim here, but the scan takes time.
            schedule_timeout(TaskState.TASK_RUNNING, 1, "__alloc_pages_direct_reclaim")
            if gfp & __GFP_NORETRY:  # "Do not loop if specifically requested"
                break
            pfn = __alloc_pages_may_oom(kernel, task, gfp, order, owner)
            if pfn is not None:
                break
            now = clock.now()
            if now >= stall_at and not gfp & __GFP_NOWARN:
                warn_alloc_stall(kernel, task, now - start, order)
                stall_at += kernel.config.alloc_stall_secs
    finally:
        task.alloc_since = task.alloc_gfp = None
    if pfn is None:
        kernel.stats.alloc_failed += 1
    else:
        kernel.tracer.record("alloc_success", task.pid, task.comm,
                             waited=clock.now() - start)
    return pfn


def warn_alloc_stall(kernel: "Kernel", task: Task, seconds: float, order: int) -> None:
    kernel.stats.alloc_stalls += 1
    kernel.tracer.record("alloc_stall", task.pid, task.comm, ms=int(seconds * 1000), order=order)
    kernel.printk(f"{task.comm}: page allocation stalls for {int(seconds * 1000)}ms, order:{order}",
                  LogLevel.KERN_WARNING, task)


def __alloc_pages_may_oom(kernel: "Kernel", task: Task, gfp: GFP, order: int,
                          owner: object) -> int | None:
    from .oom_kill import OomControl, out_of_memory

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
        if not gfp & __GFP_NOFAIL and not gfp & __GFP_FS:
            # The OOM killer cannot be invoked for IO-less reclaim "but keep
            # looping as per tradition".
            return None
        out_of_memory(kernel, OomControl(gfp_mask=gfp, order=order))
        if gfp & __GFP_NOFAIL:
            return get_page_from_freelist(kernel, owner, AllocFlags.ALLOC_NO_WATERMARKS)
        return None
    finally:
        kernel.oom_lock.unlock()
