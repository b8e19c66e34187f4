"""``mm_struct``: the address space, its VMAs, RSS counters and refcounts.

Two reference counts, as in the kernel:

* ``mm_users`` counts users of the *address space* (threads, the reaper
  while it reaps). The last ``mmput`` tears the address space down
  (``exit_mmap``) and drops the users' shared ``mm_count`` reference.
* ``mm_count`` pins the *struct*. The last ``mmdrop`` frees it. The OOM
  reaper pins a victim's mm this way so that the struct survives a
  concurrent exit while not delaying the teardown of its memory.

Touching a freed mm raises ``UseAfterFree`` at once (the lab's check).

Semantics: Linux 4.6's kernel/fork.c and mm/mmap.c (mmput -> exit_mmap ->
mmdrop, the mm_count reference the users share). The helper names
``mmgrab`` and ``mmget`` are 4.11's (f1f1007644ff and its companion) and
``mmget_not_zero`` was posted in May 2016 (Oleg Nesterov, userfaultfd),
after 4.6; 4.6 writes the same operations as ``atomic_inc(&mm->mm_count)``,
``atomic_inc(&mm->mm_users)`` and ``atomic_inc_not_zero(&mm->mm_users)``,
which is what these do. 4.6's last ``mmput`` also runs the uprobes, aio,
ksm and khugepaged teardown, none modelled but aio: a scenario may give an
mm AIO in flight (``MM.aio_in_flight``), and the last mmput's ``exit_aio``
then blocks until it completes. 4.14's exit_mmap hand-over to the reaper
(MMF_OOM_SKIP, then down_write/up_write of mmap_sem) is behind
``PolicyOps.reaper_exit_mmap_concurrent``.

File and shmem pages (a deliberate simplification): the model has no page
cache and no reclaim, and every page a VMA maps is owned by its mm, so
unmapping a file or shmem VMA (``exit_mmap``, ``do_munmap``, the reaper on a
private file mapping) frees its pages to the zone. In Linux 4.6 the pages
stay in the page cache or in tmpfs: a clean unmapped file page is then
among the first things direct reclaim takes back, which is what freeing it
at once stands for; a dirty one needs writeback first (not modelled, nor is
``zap_details.ignore_dirty``). A shmem VMA stands for a shared anonymous
mapping, whose object dies with its last mapping, as here; a tmpfs file or
SysV segment that outlives its mappings is not modelled. Keeping these
pages would need a page-cache owner that outlives the mm and a reclaim step
in the allocator's slow path; no stock scenario or soak workload maps file
or shmem memory, so no verdict depends on it.
"""

from __future__ import annotations

import enum
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from .atomic import Atomic, atomic_dec_and_test, atomic_inc, atomic_inc_not_zero
from .completion import Completion
from .cpu import SpinLock
from .errors import ModelBug, PlugPulled, UseAfterFree
from .events import Ev
from .rwsem import RwSemaphore
from .sched import current, return_to_user
from .zone import AllocFlags

if TYPE_CHECKING:
    from .kernel import Kernel
    from .sched import Task

PTRS_PER_PTE = 512


class VmaKind(enum.Enum):
    ANON_PRIVATE = "anon"
    FILE_PRIVATE = "file-private"
    FILE_SHARED = "file-shared"
    SHMEM_SHARED = "shmem"
    HUGETLB = "hugetlb"

    @property
    def shared(self) -> bool:
        return self in (VmaKind.FILE_SHARED, VmaKind.SHMEM_SHARED)


class MMF(enum.IntFlag):
    """``mm->flags`` bits the model uses. MMF_OOM_REAPED is 4.7's: the
    reaper has unmapped this mm, so ``oom_badness`` gives it 0 points (4.9
    renamed it MMF_OOM_SKIP). MMF_OOM_NOT_REAPABLE is 4.8's: the reaper
    failed on this mm once (the second failure gives it up)."""

    MMF_OOM_REAPED = 1 << 21
    MMF_OOM_SKIP = 1 << 21  # 4.9's name for the same bit (an alias)
    MMF_OOM_NOT_REAPABLE = 1 << 22
    #: 4.14's bit 22 (4.8's MMF_OOM_NOT_REAPABLE was gone by then; an alias):
    #: the reaper sets it before unmapping, for a kthread's copy_from_user
    #: on a use_mm'd mm to fail instead of reading zeroed pages. Nothing in
    #: the model reads it.
    MMF_UNSTABLE = 1 << 22
    #: 5.0's (9bcdeb51bd7d, id not re-verified): the mm was queued for the
    #: reaper once already (``PolicyOps.reap_queued_once``); from 5.18 on
    #: ``queue_oom_reaper`` sets it when it arms the delayed reap.
    MMF_OOM_REAP_QUEUED = 1 << 25


class MMCounter(enum.IntEnum):
    MM_FILEPAGES = 0
    MM_ANONPAGES = 1
    MM_SWAPENTS = 2
    MM_SHMEMPAGES = 3


MM_FILEPAGES = MMCounter.MM_FILEPAGES
MM_ANONPAGES = MMCounter.MM_ANONPAGES
MM_SWAPENTS = MMCounter.MM_SWAPENTS
MM_SHMEMPAGES = MMCounter.MM_SHMEMPAGES

_RSS_OF_KIND = {
    VmaKind.ANON_PRIVATE: MM_ANONPAGES,
    VmaKind.FILE_PRIVATE: MM_FILEPAGES,
    VmaKind.FILE_SHARED: MM_FILEPAGES,
    VmaKind.SHMEM_SHARED: MM_SHMEMPAGES,
    VmaKind.HUGETLB: None,  # hugetlb pages are not in the RSS counters
}


@dataclass(frozen=True)
class VmaSpec:
    """How a VMA looks when a process is created (pages already faulted in)."""

    kind: VmaKind = VmaKind.ANON_PRIVATE
    pages: int = 0
    size: int | None = None  # vm size in pages; default: ``pages``
    locked: bool = False  # VM_LOCKED (mlock)
    swap: int = 0  # swapped-out pages (anon): swap entries, not zone pages
    #: An mmu notifier registered on the mm (a KVM guest's memory, say)
    #: cannot invalidate this range without sleeping: 4.19's nonblocking
    #: ``mmu_notifier_invalidate_range_start_nonblock`` fails on it, so the
    #: reaper and process_mrelease skip it (``PolicyOps.reaper_nonblocking_notifiers``).
    #: Earlier designs zap it like any other: their reapers call the
    #: notifiers blocking (4.14's skip of any mm with notifiers is not modelled).
    notifier_blocks: bool = False

    def __post_init__(self) -> None:
        size = self.pages if self.size is None else self.size
        if self.pages < 0 or self.swap < 0 or size < self.pages + self.swap:
            raise ValueError(f"bad VMA spec {self}: need 0 <= pages + swap <= size")


@dataclass(eq=False)
class VMA:
    kind: VmaKind
    start: int
    size: int
    locked: bool = False
    pages: list[int] = field(default_factory=list)
    swap: int = 0
    notifier_blocks: bool = False  # see VmaSpec

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def is_hugetlb(self) -> bool:
        return self.kind is VmaKind.HUGETLB

    @property
    def is_anonymous(self) -> bool:
        return self.kind is VmaKind.ANON_PRIVATE


class MM:
    """An ``mm_struct``."""

    def __init__(self, kernel: "Kernel", owner: "Task | None" = None) -> None:
        self.kernel = kernel
        self.id = 0  # set by register_mm: the kernel numbers its mms
        self.mm_users = Atomic(1, "mm_users")
        # The users collectively hold one mm_count reference, dropped by the
        # last mmput: that is why a fresh mm starts at 1/1.
        self.mm_count = Atomic(1, "mm_count")
        self.mmap_sem = RwSemaphore("&mm->mmap_sem", kernel)
        self.owner = owner
        self._vmas: list[VMA] = []
        self._rss = [0, 0, 0, 0]
        self._pgtables: list[int] = []
        # page_table_lock: zapping and faulting the same VMA concurrently
        # (reaper vs. page fault vs. exit_mmap) must not install, free or
        # count a page twice.
        self.page_table_lock = SpinLock("page_table_lock")
        self.freed = False
        # mm->flags: set_bit / test_bit, each a single store or load here.
        self.flags = MMF(0)
        self._next_addr = 0
        # The lab's stand-in for in-flight AIO (mm->ioctx_table): when set,
        # the last mmput's exit_aio sleeps uninterruptibly until it is
        # completed. Set by a scenario (exit-aio-self), None otherwise.
        self.aio_in_flight: Completion | None = None
        self.id = kernel.register_mm(self)

    def __repr__(self) -> str:
        state = "freed" if self.freed else f"users={self.mm_users.read()} count={self.mm_count.read()}"
        return f"<mm#{self.id} {state}>"

    def check(self) -> None:
        if self.freed:
            raise UseAfterFree(f"use-after-free of mm#{self.id} "
                               f"(owner {self.owner.comm if self.owner else '?'})")

    # -- accessors (every one checks for use-after-free) --------------------
    @property
    def vmas(self) -> list[VMA]:
        self.check()
        return list(self._vmas)

    def get_mm_counter(self, member: MMCounter) -> int:
        self.check()
        return self._rss[member]

    def get_mm_rss(self) -> int:
        self.check()
        r = self._rss
        return r[MM_FILEPAGES] + r[MM_ANONPAGES] + r[MM_SHMEMPAGES]

    @property
    def total_vm(self) -> int:
        self.check()
        return sum(v.size for v in self._vmas)

    @property
    def nr_ptes(self) -> int:
        self.check()
        return len(self._pgtables)

    @property
    def nr_pages_mapped(self) -> int:
        self.check()
        return sum(len(v.pages) for v in self._vmas) + len(self._pgtables)

    # -- building -----------------------------------------------------------
    def _new_vma(self, kind: VmaKind, size: int, locked: bool) -> VMA:
        vma = VMA(kind, self._next_addr, size, locked)
        self._next_addr += size + 16  # a guard gap between mappings
        return vma

    def populate(self, spec: VmaSpec) -> VMA:
        """Set-up time: map a VMA with its pages already faulted in.

        Takes pages straight from the free list (no watermarks, no reclaim):
        this is the state of the machine before the story starts.
        """
        self.check()
        size = spec.pages if spec.size is None else spec.size
        vma = self._new_vma(spec.kind, size, spec.locked)
        vma.notifier_blocks = spec.notifier_blocks
        zone = self.kernel.zone
        need = spec.pages + pgtables_for(size)
        pfns = zone.rmqueue_bulk(self, need, AllocFlags.ALLOC_NO_WATERMARKS)
        if pfns is None:
            raise ValueError(f"zone too small: mapping {need} pages needs more than the "
                             f"{zone.nr_free} free")
        self._pgtables.extend(pfns[spec.pages:])
        vma.pages.extend(pfns[:spec.pages])
        vma.swap = spec.swap
        self._account(vma.kind, len(vma.pages))
        self._rss[MM_SWAPENTS] += spec.swap
        self._vmas.append(vma)
        return vma

    def _account(self, kind: VmaKind, delta: int) -> None:
        member = _RSS_OF_KIND[kind]
        if member is not None:
            self._rss[member] += delta


def pgtables_for(size: int) -> int:
    return (size + PTRS_PER_PTE - 1) // PTRS_PER_PTE


# -- refcounting (kernel/fork.c) --------------------------------------------
def _ref_event(mm: MM, name: str, value: int) -> None:
    t = current()
    mm.kernel.tracer.record(name, t.pid if t else 0, t.comm if t else "", mm=mm.id, value=value)


def mmget(mm: MM) -> None:
    mm.check()
    _ref_event(mm, "mmget", atomic_inc(mm.mm_users))


def mmget_not_zero(mm: MM) -> bool:
    """Take an address-space reference unless the last user already left.

    The caller must hold an ``mm_count`` pin: that keeps the struct alive,
    while ``mm_users`` may already be zero (exit_mmap running or done).
    """
    mm.check()
    ok = atomic_inc_not_zero(mm.mm_users)
    _ref_event(mm, "mmget_not_zero", mm.mm_users.read() if ok else 0)
    return ok


def mmgrab(mm: MM) -> None:
    mm.check()
    _ref_event(mm, "mmgrab", atomic_inc(mm.mm_count))


def mmdrop(mm: MM) -> None:
    mm.check()
    last = atomic_dec_and_test(mm.mm_count)
    _ref_event(mm, "mmdrop", mm.mm_count.read())
    if last:
        __mmdrop(mm)


def __mmdrop(mm: MM) -> None:
    mm.freed = True
    mm.kernel.tracer.record(Ev.MM_FREE, 0, "", mm=mm.id)
    mm.kernel.note_mm_freed(mm)


def mmput(mm: MM) -> None:
    """Drop an address-space reference; the last one tears the mm down
    (4.6's mmput: exit_mmap, then mmdrop). Runs in the caller, the reaper
    included before 4.7 (``mmput_async``)."""
    mm.check()
    last = atomic_dec_and_test(mm.mm_users)
    _ref_event(mm, "mmput", mm.mm_users.read())
    if last:
        __mmput(mm)


def __mmput(mm: MM) -> None:
    """The teardown of a last ``mmput``: 4.7 split it out of ``mmput`` for
    ``mmput_async`` (ec8d7c14, id not re-verified). 4.6 and 4.7 also run
    uprobe_clear_state, exit_aio, ksm_exit and khugepaged_exit here, and
    exit_aio can sleep for in-flight AIO; none is modelled, so in the model
    it never blocks, unless a scenario gives the mm AIO in flight
    (``exit_aio``)."""
    exit_aio(mm)
    exit_mmap(mm)
    mmdrop(mm)


def exit_aio(mm: MM) -> None:
    """The lab's stand-in for exit_aio (fs/aio.c): the last mmput waits,
    uninterruptibly, for the AIO still in flight on the mm, before
    exit_mmap. The kernel kills each ioctx and waits for its requests;
    here one completion stands for all of them (``MM.aio_in_flight``),
    and an mm without one returns at once."""
    done = mm.aio_in_flight
    if done is not None:
        try:
            done.wait_for_completion()
        except PlugPulled:
            pass  # shutting down: tear the mm down without waiting


def mmput_async(mm: MM) -> None:
    """4.7's ``mmput_async`` (ec8d7c14, "mm, oom_reaper: do not mmput
    synchronously from the oom reaper context"; id not re-verified): drop a
    reference, and if it was the last, queue ``__mmput`` on a workqueue
    (``mm->async_put_work``) so that the caller, the oom_reaper, never
    sleeps in the teardown. Here ``__mmput`` never blocks (see it), so
    deferring it would change only which thread runs exit_mmap: the model
    runs it in the caller. A lab with a blocking ``__mmput`` (exit_aio) must
    give this a worker thread."""
    mm.check()
    last = atomic_dec_and_test(mm.mm_users)
    _ref_event(mm, "mmput_async", mm.mm_users.read())
    if last:
        __mmput(mm)


@contextmanager
def vm_mmap_write_lock(mm: MM) -> Iterator[MM]:
    """mmap_sem for write as an mm syscall takes it (vm_mmap_pgoff,
    vm_munmap, brk, mprotect...): ``down_write`` in 4.6,
    ``down_write_killable`` from 4.7 (``PolicyOps.killable_mmap_writers``:
    916633a4 and dc0ef0df, ids not re-verified). A SIGKILL while waiting
    makes the syscall return -EINTR: the task then dies on its way back to
    user space (``return_to_user`` raises SigKill). The helper is the lab's;
    the lock calls are the kernel's."""
    sem = mm.mmap_sem
    if mm.kernel.policy_ops.killable_mmap_writers:
        if sem.down_write_killable() != 0:
            return_to_user()  # -EINTR: the pending SIGKILL unwinds the task here
            raise ModelBug("down_write_killable returned -EINTR with no fatal signal pending")
    else:
        sem.down_write()
    try:
        yield mm
    finally:
        sem.up_write()


def exit_mmap(mm: MM) -> None:
    """Unmap every VMA and free the page tables (the last user is gone), as
    4.6's exit_mmap. Its munlock pass over VM_LOCKED VMAs is not modelled:
    their pages are freed like the others, as they end up in 4.6.

    File and shmem pages go back to the zone too: see the module docstring."""
    mm.check()
    freed = 0
    for vma in list(mm._vmas):
        freed += unmap_page_range(mm, vma)
    if mm.kernel.policy_ops.reaper_exit_mmap_concurrent:
        _exit_mmap_oom_handover(mm)
    with mm.page_table_lock:
        pgtables, mm._pgtables = mm._pgtables, []
        mm._vmas = []
    mm.kernel.zone.free_pages(pgtables, mm)
    mm.kernel.tracer.record(Ev.EXIT_MMAP, 0, "", mm=mm.id, pages=freed + len(pgtables))
    mm.kernel.poke()


def _exit_mmap_oom_handover(mm: MM) -> None:
    """4.14's exit_mmap after unmap_vmas (212925802454, id not re-verified;
    the hunk as docs/HISTORY-DESIGNS.md §1.10 quotes it): set MMF_OOM_SKIP,
    then, if the task doing the last mmput is an OOM victim
    (``tsk_is_oom_victim(current)``), take and drop mmap_sem for write so
    that a reap holding it for read ends before the page tables and the
    VMA list are freed. A last mmput by a task that is not a victim skips
    the wait (4.14's hole, closed in 4.15 by MMF_OOM_VICTIM); the reaper's
    mm_count pin keeps the struct valid, so in the model it then reaps an
    already empty list."""
    # MMF_OOM_SKIP before down_write: a reaper that gets the read lock after
    # our up_write sees the bit and backs off instead of walking VMAs that
    # are about to be freed.
    mm.flags |= MMF.MMF_OOM_SKIP
    cur = current()
    if cur is not None and cur.signal.oom_mm is not None:
        try:
            mm.mmap_sem.down_write()
        except PlugPulled:
            return  # shutting down: free without waiting for the reaper
        mm.mmap_sem.up_write()


def unmap_page_range(mm: MM, vma: VMA) -> int:
    """Zap a VMA's pages and swap entries; return the pages freed (file and
    shmem pages included: no page cache, see the module docstring). Stands
    for 4.6's unmap_page_range with the reaper's zap_details
    (check_swap_entries: swap entries are dropped too); ``ignore_dirty``
    and the mmu_gather batching are not modelled."""
    mm.check()
    with mm.page_table_lock:
        pages, vma.pages = vma.pages, []
        swap, vma.swap = vma.swap, 0
        mm._account(vma.kind, -len(pages))
        mm._rss[MM_SWAPENTS] -= swap
    mm.kernel.zone.free_pages(pages, mm)
    return len(pages)
