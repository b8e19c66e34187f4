"""Benchmark ``kthreads.Zone``: bytes per page, and ns per page to allocate and free.

Every figure is printed next to a baseline measured in the same run, as a
ratio (this box is noisy: trust same-run ratios, see docs/PERF-NOTES.md):

* memory: tracemalloc's count of what a 10^6-page zone keeps, against a
  plain ``[None] * pages`` list (8 bytes a page) and against the zone's
  previous layout (a Python list of owners plus a Python list of free pfns);
* time: ``rmqueue`` + ``free_page`` per page, and the batched
  ``rmqueue_bulk`` + ``free_pages``, against the previous layout's
  single-page operations (the same lock, a list pop and an owner store),
  minimum over repeats.

    python benchmarks/zone.py [--pages N] [--ops N] [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kthreads import AllocFlags, Zone  # noqa: E402


class ListZone:
    """The previous layout: owner per page in a list, free pfns in a list."""

    def __init__(self, nr_pages: int) -> None:
        self.lock = threading.Lock()
        self._free: list[int] = list(range(nr_pages - 1, -1, -1))
        self.owner: list[object] = [None] * nr_pages

    def rmqueue(self, owner: object) -> int | None:
        with self.lock:
            if not self._free:
                return None
            pfn = self._free.pop()
            self.owner[pfn] = owner
            return pfn

    def free_page(self, pfn: int, owner: object) -> None:
        with self.lock:
            if self.owner[pfn] is not owner:
                raise ValueError("bad page")
            self.owner[pfn] = None
            self._free.append(pfn)


def traced_bytes(build: Callable[[], object]) -> int:
    """Bytes still allocated by ``build()``'s result (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        obj = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del obj
    return after - before


def best_ns(fn: Callable[[], None], per: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, time.perf_counter_ns() - t0)
    return best / per


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=100_000, help="pages allocated and freed per timing")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    n, ops = args.pages, min(args.ops, args.pages // 2)

    zone_b = traced_bytes(lambda: Zone(n))
    list_b = traced_bytes(lambda: [None] * n)
    old_b = traced_bytes(lambda: ListZone(n))
    print(f"memory at {n:,} pages (tracemalloc, bytes per page)")
    print(f"  Zone                      {zone_b / n:7.2f}")
    print(f"  plain [None] * pages      {list_b / n:7.2f}   Zone / list = {zone_b / list_b:.2f}x")
    print(f"  previous layout (2 lists) {old_b / n:7.2f}   Zone / previous = {zone_b / old_b:.3f}x")

    z, oz = Zone(n), ListZone(n)
    owner = object()
    flags = AllocFlags.ALLOC_NO_WATERMARKS

    def zone_single() -> None:
        pfns = [z.rmqueue(owner, flags) for _ in range(ops)]
        for p in pfns:
            z.free_page(p, owner)

    def zone_bulk() -> None:
        z.free_pages(z.rmqueue_bulk(owner, ops, flags), owner)

    def old_single() -> None:
        pfns = [oz.rmqueue(owner) for _ in range(ops)]
        for p in pfns:
            oz.free_page(p, owner)

    base = best_ns(old_single, ops, args.repeat)
    single = best_ns(zone_single, ops, args.repeat)
    bulk = best_ns(zone_bulk, ops, args.repeat)
    print(f"alloc + free, ns per page (best of {args.repeat}, {ops:,} pages each)")
    print(f"  previous layout, one page at a time   {base:7.0f}   (baseline)")
    print(f"  Zone rmqueue + free_page              {single:7.0f}   {single / base:.2f}x")
    print(f"  Zone rmqueue_bulk + free_pages        {bulk:7.0f}   {bulk / base:.2f}x")

    t0 = time.perf_counter()
    problems = z.check_conservation()
    conservation = time.perf_counter() - t0
    t0 = time.perf_counter_ns()
    for _ in range(10_000):
        z.pages_owned_by(owner)
    owned_ns = (time.perf_counter_ns() - t0) / 10_000
    print(f"check_conservation at {n:,} pages: {conservation * 1000:.0f} ms ({problems or 'clean'}); "
          f"pages_owned_by: {owned_ns:.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
