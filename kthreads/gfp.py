"""gfp flags: the ``GFP`` bits, the ``GFP_*`` combinations, and ``%pGg`` formatting.

Values are Linux 4.6's (include/linux/gfp.h). Pages are 4 KiB (``PAGE_KB``).
"""

from __future__ import annotations

import enum


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
    """``%pGg`` (new in 4.5, as 4.6 prints it): ``GFP_KERNEL|__GFP_NOFAIL``,
    composite names first, then single bits. The model's table holds only
    the flags it defines; 4.6's has more (not verified at the source)."""
    rest, names = int(gfp), []
    for mask, name in _GFP_NAMES:
        if mask and rest & mask == mask:
            names.append(name)
            rest &= ~mask
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


def parse_gfp(text: str) -> GFP:
    """``"GFP_NOFS|__GFP_NOFAIL"`` -> flags (for CLIs and scenario files;
    the lab's, no kernel counterpart)."""
    table = {name: mask for mask, name in _GFP_NAMES}
    out = 0
    for part in text.split("|"):
        part = part.strip()
        if part not in table:
            raise ValueError(f"unknown gfp flag {part!r}; valid: {', '.join(sorted(table))}")
        out |= table[part]
    return GFP(out)
