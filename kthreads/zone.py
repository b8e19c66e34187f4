"""The zone: its pages, free list, watermarks and the owner of every page.

The allocator's policy (watermark choice, the slow path, the OOM killer) is in
``page_alloc.py``; this module only hands pages out and takes them back, and
checks that none is lost, freed twice or freed by somebody who does not own it.

Memory: four bytes per page, whatever the zone size. One C ``int`` per page,
``_map[pfn]``, stands in for ``struct page``:

* an owned page holds its owner's id (> 0): a small integer the zone hands out
  to each owner (an mm, or a task for its own kernel pages) while it owns
  pages, with a registry mapping ids back to owners and counting their pages;
* a free page holds the link to the next free page, ``~next`` (<= 0; the last
  one holds ``~-1 == 0``). The free list runs through the free pages
  themselves, as the kernel's runs through ``page->lru``: a LIFO stack.
  Pages never handed out yet are not on it: they are the pfns from
  ``_fresh`` up, all 0, taken in order once the list is empty. So a new zone
  costs one zeroed array and no per-page work, and pages come out as from
  a stack that started full: 0, 1, 2, ..., freed pages first.

Per-owner counts make "how many pages does this mm still own" O(1), so an
exiting mm never scans the zone.

Kernel semantics (Linux 4.6): the watermark test is ``__zone_watermark_ok``'s
for an order-0 page with no lowmem reserve (free pages must stay above the
mark; ALLOC_NO_WATERMARKS skips it), and the default low and high marks are
min + min/4 and min + min/2, as 4.6's ``__setup_per_zone_wmarks`` gives
for a small zone. The default ``min`` (nr_pages/32) is the lab's choice, not
``min_free_kbytes``' formula. The owner map, the ownership checks and the
page ids are the lab's machinery.
"""

from __future__ import annotations

import enum
import threading
from array import array

from .cpu import sched_point
from .errors import BadPageState

#: ``_head`` when no page is free; a free page linking to it ends the list.
NO_PAGE = -1


class AllocFlags(enum.Enum):
    """Which watermark an allocation must stay above (ALLOC_WMARK_*)."""

    ALLOC_WMARK_MIN = "min"
    ALLOC_WMARK_LOW = "low"
    ALLOC_WMARK_HIGH = "high"
    ALLOC_NO_WATERMARKS = "none"


class Zone:
    """One zone of ``nr_pages`` pages with per-page ownership.

    Owners are compared by identity. Every page is either on the free list or
    owned, never both, so conservation and double frees can be checked at any
    moment.
    """

    def __init__(self, nr_pages: int, wmark_min: int | None = None,
                 wmark_low: int | None = None, wmark_high: int | None = None) -> None:
        if nr_pages < 16:
            raise ValueError(f"a zone needs at least 16 pages, got {nr_pages}")
        if nr_pages >= 2 ** 31 - 1:
            raise ValueError(f"a zone holds fewer than 2**31 - 1 pages, got {nr_pages}")
        mn = max(2, nr_pages // 32) if wmark_min is None else wmark_min
        low = mn + max(1, mn // 4) if wmark_low is None else wmark_low
        high = mn + max(2, mn // 2) if wmark_high is None else wmark_high
        if not 0 < mn <= low <= high < nr_pages:
            raise ValueError(f"watermarks must satisfy 0 < min <= low <= high < pages, "
                             f"got min={mn} low={low} high={high} pages={nr_pages}")
        self.nr_pages = nr_pages
        self.wmark = {AllocFlags.ALLOC_WMARK_MIN: mn, AllocFlags.ALLOC_WMARK_LOW: low,
                      AllocFlags.ALLOC_WMARK_HIGH: high, AllocFlags.ALLOC_NO_WATERMARKS: 0}
        # zone->lock: the map, the free list head, the free count and the
        # owner registry change together, so a page is never on the free list
        # while owned (or owned twice), and an owner id is never handed to a
        # second owner while pages still carry it.
        self.lock = threading.Lock()
        self._map = array("i", [0]) * nr_pages
        self._head = NO_PAGE  # the free list: pages freed since boot
        self._fresh = 0  # pages from here up have never been handed out
        self._nr_free = nr_pages
        # The owner registry: id(owner) -> owner id -> owner and its page count.
        # Id 0 is never handed out (it would read as a free page's link).
        self._ids: dict[int, int] = {}
        self._owners: list[object] = [None]
        self._owned: list[int] = [0]
        self._spare_ids: list[int] = []
        self.nr_allocated = 0  # pages handed out, ever
        self.nr_freed = 0

    @property
    def nr_free(self) -> int:
        return self._nr_free

    @property
    def wmark_min(self) -> int:
        return self.wmark[AllocFlags.ALLOC_WMARK_MIN]

    @property
    def wmark_low(self) -> int:
        return self.wmark[AllocFlags.ALLOC_WMARK_LOW]

    @property
    def wmark_high(self) -> int:
        return self.wmark[AllocFlags.ALLOC_WMARK_HIGH]

    # -- the owner registry (caller holds zone->lock) ---------------------------
    def _get_id(self, owner: object) -> int:
        oid = self._ids.get(id(owner))
        if oid is None:
            if self._spare_ids:
                oid = self._spare_ids.pop()
                self._owners[oid] = owner
            else:
                oid = len(self._owners)
                self._owners.append(owner)
                self._owned.append(0)
            # Keyed by id(): the registry holds the owner, so no other live
            # object can have its id while it is registered.
            self._ids[id(owner)] = oid
        return oid

    def _put(self, oid: int, pages: int) -> None:
        left = self._owned[oid] - pages
        self._owned[oid] = left
        if left == 0:  # owns nothing any more: give the id back
            del self._ids[id(self._owners[oid])]
            self._owners[oid] = None
            self._spare_ids.append(oid)

    # -- taking pages -------------------------------------------------------------
    def rmqueue(self, owner: object, flags: AllocFlags) -> int | None:
        """Take one page if the watermark allows it (zone_watermark_ok)."""
        sched_point()
        mark = self.wmark[flags]
        lock = self.lock
        lock.acquire()
        try:
            if self._nr_free <= mark:
                return None
            m = self._map
            pfn = self._head
            if pfn != NO_PAGE:
                self._head = ~m[pfn]
            else:
                pfn = self._fresh
                self._fresh = pfn + 1
            oid = self._ids.get(id(owner)) or self._get_id(owner)
            m[pfn] = oid
            self._owned[oid] += 1
            self._nr_free -= 1
            self.nr_allocated += 1
            return pfn
        finally:
            lock.release()

    def rmqueue_bulk(self, owner: object, count: int, flags: AllocFlags) -> list[int] | None:
        """Take ``count`` pages under one zone->lock hold, all or none (the
        lab's set-up helper; the kernel's rmqueue_bulk refills per-cpu
        lists and is not modelled)."""
        sched_point()
        mark = self.wmark[flags]
        with self.lock:
            if count <= 0 or self._nr_free - count < mark:
                return [] if count == 0 else None
            m = self._map
            oid = self._get_id(owner)
            pfns = []
            head = self._head
            while head != NO_PAGE and len(pfns) < count:
                pfns.append(head)
                nxt = ~m[head]
                m[head] = oid
                head = nxt
            self._head = head
            fresh = self._fresh
            more = count - len(pfns)
            if more:
                pfns.extend(range(fresh, fresh + more))
                m[fresh:fresh + more] = array("i", [oid]) * more
                self._fresh = fresh + more
            self._owned[oid] += count
            self._nr_free -= count
            self.nr_allocated += count
            return pfns

    # -- giving pages back --------------------------------------------------------
    def _bad(self, pfn: int, owner: object) -> BadPageState:
        """The BUG for freeing ``pfn`` as ``owner`` (caller holds zone->lock)."""
        if not 0 <= pfn < self.nr_pages:
            return BadPageState(f"BUG: Bad page state: pfn {pfn} outside the zone")
        cur = self._map[pfn]
        if cur <= 0:
            return BadPageState(f"BUG: Bad page state: pfn {pfn} freed twice")
        return BadPageState(f"BUG: Bad page state: pfn {pfn} freed by {owner!r}, "
                            f"owned by {self._owners[cur]!r}")

    def free_page(self, pfn: int, owner: object) -> None:
        """__free_pages(): the page must be owned by ``owner``."""
        sched_point()
        lock = self.lock
        lock.acquire()
        try:
            oid = self._ids.get(id(owner))
            m = self._map
            if not 0 <= pfn < self.nr_pages or oid is None or m[pfn] != oid:
                raise self._bad(pfn, owner)
            m[pfn] = ~self._head
            self._head = pfn
            self._nr_free += 1
            self.nr_freed += 1
            owned = self._owned
            if owned[oid] > 1:
                owned[oid] -= 1
            else:
                self._put(oid, 1)
        finally:
            lock.release()

    def free_pages(self, pfns: list[int], owner: object) -> None:
        """Free a batch under one zone->lock hold (free_pages_and_swap_cache).

        Every page is checked before any is freed, so a bad batch leaves the
        zone untouched.
        """
        sched_point()
        if not pfns:
            return
        n = self.nr_pages
        with self.lock:
            m = self._map
            oid = self._ids.get(id(owner))
            for pfn in pfns:
                if not 0 <= pfn < n or oid is None or m[pfn] != oid:
                    raise self._bad(pfn, owner)
            if len(set(pfns)) != len(pfns):
                raise BadPageState("BUG: Bad page state: a page twice in one batch")
            head = self._head
            for pfn in pfns:
                m[pfn] = ~head
                head = pfn
            self._head = head
            self._nr_free += len(pfns)
            self.nr_freed += len(pfns)
            self._put(oid, len(pfns))

    # -- introspection --------------------------------------------------------------
    def pages_owned_by(self, owner: object) -> int:
        """How many pages ``owner`` holds, in O(1)."""
        with self.lock:
            oid = self._ids.get(id(owner))
            return self._owned[oid] if oid is not None else 0

    def page_owner(self, pfn: int) -> object | None:
        """Who owns ``pfn`` (None: free)."""
        with self.lock:
            v = self._map[pfn]
            return self._owners[v] if v > 0 else None

    def check_conservation(self) -> list[str]:
        """Every page free or owned, never both, never twice on the free list,
        and the counters agree with the pages. O(nr_pages): for checks, not
        for the model's paths."""
        with self.lock:
            m = array("i", self._map)
            head, fresh, nr_free = self._head, self._fresh, self._nr_free
            claimed = sum(self._owned)
        n = self.nr_pages
        problems = []
        seen = bytearray(n)
        on_list = 0
        pfn = head
        while pfn != NO_PAGE:
            if not 0 <= pfn < fresh:
                problems.append(f"the free list points outside the pages handed out (pfn {pfn})")
                break
            if seen[pfn]:
                problems.append("a page is on the free list twice")
                break
            if m[pfn] > 0:
                problems.append(f"a page is both free and owned (pfn {pfn})")
                break
            seen[pfn] = 1
            on_list += 1
            pfn = ~m[pfn]
        owned = sum(map((0).__lt__, m))
        never = n - fresh
        if any(m[fresh:]):
            problems.append("a page never handed out is not blank")
        if on_list + never + owned != n:
            problems.append(f"pages not conserved: free {on_list + never} + in use {owned} "
                            f"!= total {n}")
        if on_list + never != nr_free:
            problems.append(f"nr_free says {nr_free}, the free list and the pages never "
                            f"handed out hold {on_list + never}")
        if claimed != owned:
            problems.append(f"per-owner counts add up to {claimed}, {owned} pages are owned")
        return problems
