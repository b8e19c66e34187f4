"""gfp flags: the ``GFP`` bits, the ``GFP_*`` combinations, and ``%pGg`` formatting.

The model's own values are Linux 4.6's (include/linux/gfp.h); every check the
model makes uses them. What a tree *prints* is that tree's encoding: the
``___GFP_*`` bits were renumbered after 4.9 (``GfpLayout``), and
``gfp_value``/``format_gfp`` translate the model's mask into the layout a
policy names (``PolicyOps.gfp_layout``) before printing ``%#x`` and ``%pGg``.
Pages are 4 KiB (``PAGE_KB``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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

PAGE_KB = 4  # K(x): pages to kB with 4 KiB pages


class GfpLayout(enum.Enum):
    """Which tree's ``___GFP_*`` numbering a policy prints (``PolicyOps.gfp_layout``).

    * ``V4_6``: 4.4-4.9 (v4.5, the 4.6-window trees, v4.7, v4.8, v4.9): the
      model's own values. ___GFP_OTHER_NODE 0x800000, ___GFP_WRITE 0x1000000,
      ___GFP_KSWAPD_RECLAIM 0x2000000: the pre-image of 41b6167e8f74 "mm: get
      rid of __GFP_OTHER_NODE" (Michal Hocko, posted 2017-01-02, after v4.9's
      release; find_string id 2514565221). GFP_KERNEL 0x24000c0. Not read at
      the v4.5 or v4.9 tags themselves.
    * ``V4_14``: 4.10-4.17 (v4.14): ___GFP_OTHER_NODE gone, ___GFP_WRITE
      0x800000, ___GFP_KSWAPD_RECLAIM 0x1000000; __GFP_COLD still 0x100.
      Read in a 4.14 copy (harveydong/linux-4.14-comment include/linux/gfp.h,
      read_file id 34979427833; its Makefile was not stored). GFP_KERNEL
      0x14000c0, GFP_HIGHUSER_MOVABLE 0x14200ca. (4.18-5.0 packed the bits
      again, Shakeel Butt's "mm: save two stranding bit in gfp_mask",
      id 30289872649: GFP_KERNEL 0x6000c0; no policy has that layout.)
    * ``V5_15``: Alexey Dobriyan's "mm: shuffle GFP_* flags" (2019-01-09,
      id 23640816935; 5.1 by date, not read at a tag): ___GFP_ZERO 0x100,
      ___GFP_ATOMIC 0x200, ___GFP_DIRECT_RECLAIM 0x400, ___GFP_KSWAPD_RECLAIM
      0x800, ___GFP_NOWARN 0x2000 ... ___GFP_HARDWALL 0x100000; and
      GFP_HIGHUSER_MOVABLE includes ``__GFP_SKIP_KASAN_POISON`` (0x1000000,
      defined in every config). Read in a 5.15.100 copy (zcjie1/linux-5.15.100,
      id 9705551608), and real 5.15 logs print "gfp_mask=0x1100cca
      (GFP_HIGHUSER_MOVABLE)" (find_string id 55092265425, 5.15.0-1013-oracle).
      GFP_KERNEL 0xcc0, GFP_HIGHUSER_MOVABLE 0x1100cca. __GFP_COLD is gone
      (4.15's "mm: remove __GFP_COLD", not read): the model's COLD bit has
      no counterpart and is not printed.
    * ``V5_18``: as V5_15, but the KASAN bits are defined only with
      CONFIG_KASAN_HW_TAGS (arm64), 0 on x86_64: f49d9c5bb15c "kasan, mm:
      only define ___GFP_SKIP_KASAN_POISON with HW_TAGS" (v6 of the series on
      5.17-rc1, id 9590172989; mainline ids cited by a fix posted 2022-03-27,
      id 25687545589, inside the 5.18 merge window: 5.18 **inferred from the
      dates**, no 5.18 gfp.h read). GFP_HIGHUSER_MOVABLE 0x100cca, as 5.3-5.13
      and 6.x logs print it (ids 53085564940, 11414884631).
    """

    V4_6 = "4.6"
    V4_14 = "4.14"
    V5_15 = "5.15"
    V5_18 = "5.18"


@dataclass(frozen=True)
class GfpEncoding:
    """One layout: the tree's value of each of the model's bits (0: the tree
    has no such flag), the bits the tree's GFP_HIGHUSER_MOVABLE adds to
    GFP_HIGHUSER|__GFP_MOVABLE, and its ``%pGg`` table in the tree's values."""

    bits: dict[GFP, int]
    highuser_movable_extra: int
    names: tuple[tuple[int, str], ...]


#: The ``%pGg`` table's entries the model's flags can match, in the order of
#: include/trace/events/mmflags.h's ``__def_gfpflag_names`` (read for the 4.5/4.6
#: table, id 1990194485, a 4.8-4.12 one, id 49152971, and a 5.x one, id
#: 20739659247: the same order for these entries). Entries that need a flag
#: the model lacks (GFP_TRANSHUGE*, GFP_TEMPORARY, GFP_KERNEL_ACCOUNT,
#: GFP_DMA*, __GFP_COMP, __GFP_RECLAIMABLE, __GFP_ACCOUNT, __GFP_WRITE...)
#: never match a model mask and are left out. ``format_flags()`` takes each
#: entry whose bits are all set, in order, and prints what is left as "|%#x".
_NAME_ORDER: tuple[str, ...] = (
    "GFP_HIGHUSER_MOVABLE", "GFP_HIGHUSER", "GFP_USER", "GFP_KERNEL", "GFP_NOFS", "GFP_ATOMIC",
    "GFP_NOIO", "GFP_NOWAIT", "__GFP_HIGHMEM", "__GFP_HIGH", "__GFP_ATOMIC", "__GFP_IO", "__GFP_FS",
    "__GFP_COLD", "__GFP_NOWARN", "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_ZERO", "__GFP_NOMEMALLOC",
    "__GFP_MEMALLOC", "__GFP_HARDWALL", "__GFP_MOVABLE", "__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM",
    "__GFP_KSWAPD_RECLAIM")

#: The model's name of each entry, as a mask of model bits.
_MODEL_MASKS: dict[str, int] = {
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER": GFP_HIGHUSER, "GFP_USER": GFP_USER,
    "GFP_KERNEL": GFP_KERNEL, "GFP_NOFS": GFP_NOFS, "GFP_ATOMIC": GFP_ATOMIC, "GFP_NOIO": GFP_NOIO,
    "GFP_NOWAIT": GFP_NOWAIT, "__GFP_RECLAIM": __GFP_RECLAIM,
    **{f"__GFP_{f.name}": int(f) for f in GFP},
}


def _encoding(bits: dict[GFP, int], highuser_movable_extra: int = 0) -> GfpEncoding:
    """A layout from its bit values: every table entry re-encoded, the ones
    naming a flag the tree lacks dropped."""
    def tree(mask: int) -> int:
        return sum(bits[f] for f in GFP if mask & f)

    names = []
    for name in _NAME_ORDER:
        model = _MODEL_MASKS[name]
        if any(model & f and not bits[f] for f in GFP):
            continue  # a flag this tree does not have
        value = tree(model) | (highuser_movable_extra if name == "GFP_HIGHUSER_MOVABLE" else 0)
        names.append((value, name))
    return GfpEncoding(bits, highuser_movable_extra, tuple(names))


#: 4.10-4.17's values (4.14 copy, read_file id 34979427833).
_BITS_4_14 = {GFP.HIGHMEM: 0x02, GFP.MOVABLE: 0x08, GFP.HIGH: 0x20, GFP.IO: 0x40, GFP.FS: 0x80,
              GFP.COLD: 0x100, GFP.NOWARN: 0x200, GFP.NOFAIL: 0x800, GFP.NORETRY: 0x1000,
              GFP.MEMALLOC: 0x2000, GFP.ZERO: 0x8000, GFP.NOMEMALLOC: 0x10000,
              GFP.HARDWALL: 0x20000, GFP.ATOMIC: 0x80000, GFP.DIRECT_RECLAIM: 0x400000,
              GFP.KSWAPD_RECLAIM: 0x1000000}
#: 5.1-5.18's values (5.15.100 copy, id 9705551608; no __GFP_COLD).
_BITS_5_X = {GFP.HIGHMEM: 0x02, GFP.MOVABLE: 0x08, GFP.HIGH: 0x20, GFP.IO: 0x40, GFP.FS: 0x80,
             GFP.COLD: 0, GFP.ZERO: 0x100, GFP.ATOMIC: 0x200, GFP.DIRECT_RECLAIM: 0x400,
             GFP.KSWAPD_RECLAIM: 0x800, GFP.NOWARN: 0x2000, GFP.NOFAIL: 0x8000,
             GFP.NORETRY: 0x10000, GFP.MEMALLOC: 0x20000, GFP.NOMEMALLOC: 0x80000,
             GFP.HARDWALL: 0x100000}
#: ___GFP_SKIP_KASAN_POISON in 5.15 (every config; id 9705551608).
SKIP_KASAN_POISON_5_15 = 0x1000000

ENCODINGS: dict[GfpLayout, GfpEncoding] = {
    GfpLayout.V4_6: _encoding({f: int(f) for f in GFP}),
    GfpLayout.V4_14: _encoding(_BITS_4_14),
    GfpLayout.V5_15: _encoding(_BITS_5_X, SKIP_KASAN_POISON_5_15),
    GfpLayout.V5_18: _encoding(_BITS_5_X),
}


def gfp_value(gfp: int, layout: GfpLayout = GfpLayout.V4_6) -> int:
    """The model's mask as ``layout``'s tree encodes it: each model bit moved
    to the tree's value (dropped if the tree has no such flag: COLD from
    4.15 on). A mask holding all of GFP_HIGHUSER_MOVABLE gets the bits the
    tree's GFP_HIGHUSER_MOVABLE adds (5.15: __GFP_SKIP_KASAN_POISON): the
    model only builds that mask from the constant, as the kernel's callers
    do (alloc_page_vma(GFP_HIGHUSER_MOVABLE, ...) in a fault)."""
    enc = ENCODINGS[layout]
    out = sum(enc.bits[f] for f in GFP if gfp & f)
    if gfp & GFP_HIGHUSER_MOVABLE == GFP_HIGHUSER_MOVABLE:
        out |= enc.highuser_movable_extra
    return out


def format_gfp(gfp: int, layout: GfpLayout = GfpLayout.V4_6) -> str:
    """``%pGg`` (new in 4.6, 420adbe9fc1a's table through ``format_flags()``)
    of the model's mask as ``layout``'s tree prints it: "GFP_KERNEL|__GFP_NOFAIL",
    each table entry whose bits are all set, in the table's order, then
    any bits left as "|0x..." (``gfp_value`` for the numbers). Only the
    entries the model's flags can match are kept (``_NAME_ORDER``)."""
    rest, names = gfp_value(gfp, layout), []
    for mask, name in ENCODINGS[layout].names:
        if mask and rest & mask == mask:
            names.append(name)
            rest &= ~mask
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


def parse_gfp(text: str) -> GFP:
    """``"GFP_NOFS|__GFP_NOFAIL"`` -> the model's flags (for CLIs and scenario
    files; the lab's, no kernel counterpart). Names are 4.6's table."""
    out = 0
    for part in text.split("|"):
        part = part.strip()
        if part not in _MODEL_MASKS:
            raise ValueError(f"unknown gfp flag {part!r}; valid: {', '.join(sorted(_MODEL_MASKS))}")
        out |= _MODEL_MASKS[part]
    return GFP(out)
