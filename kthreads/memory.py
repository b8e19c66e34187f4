"""Page faults and mappings: ``handle_mm_fault``, ``do_mmap``, ``do_munmap``.

They allocate through the page allocator; ``mm.py`` owns the ``mm_struct``
they work on and its refcounts.

Kernel-named stand-ins, much simplified from Linux 4.6's mm/memory.c and
mm/mmap.c: a fault maps one order-0 page (GFP_HIGHUSER_MOVABLE, and a
failed allocation is VM_FAULT_OOM), a mapping is a whole VMA with its page
tables allocated up front, and an unmap removes a whole VMA. The locking
rules the callers follow (mmap_sem for read to fault, for write to map and
unmap) are 4.6's.
"""

from __future__ import annotations

from .gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from .mm import MM, VMA, VmaKind, pgtables_for, unmap_page_range
from .page_alloc import alloc_pages


def handle_mm_fault(mm: MM, vma: VMA, gfp: int = GFP_HIGHUSER_MOVABLE) -> bool:
    """Fault one page into ``vma``; False if the allocation failed (VM_FAULT_OOM).

    The caller holds ``mmap_sem`` for read, as a page fault does.
    """
    mm.check()
    if len(vma.pages) + vma.swap >= vma.size:
        raise ValueError(f"fault beyond the end of a {vma.size}-page VMA")
    pfn = alloc_pages(gfp, 0, owner=mm)
    if pfn is None:
        return False
    with mm.page_table_lock:
        mm.check()
        vma.pages.append(pfn)
        mm._account(vma.kind, 1)
    return True


def do_mmap(mm: MM, kind: VmaKind, size: int, locked: bool = False) -> VMA:
    """Create an empty VMA; allocates its page tables (caller holds mmap_sem for write)."""
    mm.check()
    if size < 1:
        raise ValueError("mmap of an empty range")
    vma = mm._new_vma(kind, size, locked)
    tables: list[int] = []
    try:
        for _ in range(pgtables_for(size)):
            pfn = alloc_pages(GFP_KERNEL, 0, owner=mm)
            if pfn is None:
                raise MemoryError("ENOMEM")
            tables.append(pfn)
    except BaseException:  # ENOMEM, or a SIGKILL/plug unwinding the allocation
        mm.kernel.zone.free_pages(tables, mm)
        raise
    with mm.page_table_lock:
        mm._pgtables.extend(tables)
        mm._vmas.append(vma)
    return vma


def do_munmap(mm: MM, vma: VMA) -> int:
    """Unmap a whole VMA (caller holds mmap_sem for write); return pages freed."""
    mm.check()
    freed = unmap_page_range(mm, vma)
    with mm.page_table_lock:
        mm._vmas.remove(vma)
    mm.kernel.poke()
    return freed
