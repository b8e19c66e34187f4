"""Frozen views of a running kernel, for tests, dumps and post-mortems.

Taken without stopping the world: each field is read once, so a snapshot is
consistent per object, not across objects (like /proc).

Lab machinery: the views and their fields are the lab's, not a kernel
interface (the state letters are those of 4.6's ``sched_show_task``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lockdep import held_lock_name
from .mm import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS

if TYPE_CHECKING:
    from .kernel import Kernel
    from .mm import MM
    from .sched import Task


@dataclass(frozen=True)
class TaskSnapshot:
    pid: int
    tgid: int
    comm: str
    state: str  # R S D Z X
    kthread: bool
    exiting: bool
    tif_memdie: bool
    sigkill_pending: bool
    oom_score_adj: int
    mm: int | None  # mm id
    wchan: str | None  # what it sleeps on
    wchan_kind: str | None  # mutex, rw_semaphore, completion, or a function
    waits_for: tuple[int, ...]  # pids owning what it sleeps on
    held_locks: tuple[str, ...]
    in_allocator_since: float | None  # model seconds; None when not in the slow path
    nvcsw: int
    exit_reason: str | None


@dataclass(frozen=True)
class LockSnapshot:
    name: str
    kind: str
    writer: int | None  # owner pid (mutex owner, or rwsem writer)
    readers: tuple[int, ...]
    waiters: tuple[int, ...]
    queued_writer: bool


@dataclass(frozen=True)
class MMSnapshot:
    id: int
    owner: int | None
    freed: bool
    mm_users: int
    mm_count: int
    total_vm: int
    anon_rss: int
    file_rss: int
    shmem_rss: int
    swapents: int
    nr_ptes: int


@dataclass(frozen=True)
class ZoneSnapshot:
    nr_pages: int
    nr_free: int
    wmark_min: int
    wmark_low: int
    wmark_high: int
    nr_allocated: int
    nr_freed: int


@dataclass(frozen=True)
class StatsSnapshot:
    oom_invocations: int
    oom_kills: int
    oom_aborts: int
    alloc_failed: int
    alloc_stalls: int
    task_exits: int
    last_progress: float


@dataclass(frozen=True)
class ReaperStatus:
    """The oom_reaper's bookkeeping, read-only. Under a policy without a
    reaper ``running`` is False and every count is zero."""

    running: bool = False
    busy_with: int | None = None  # pid of the victim whose mm sits in mm_to_reap
    busy_mm: int | None = None  # that mm's id
    attempts: int = 0  # trylock attempts on the current (or last) mm
    skipped: int = 0  # failed trylocks, ever
    reaped: int = 0  # mms reaped
    failed: int = 0  # gave up after MAX_OOM_REAP_RETRIES
    dropped: int = 0  # victims not queued: the slot was busy
    raced_exit: int = 0  # the victim's last user left before the reaper got there
    pages_reaped: int = 0
    reaped_mm_ids: frozenset[int] = frozenset()
    dropped_mm_ids: frozenset[int] = frozenset()
    forbidden_mm_ids: frozenset[int] = frozenset()  # shared with an unkillable process: never queued
    self_victim_mm_ids: frozenset[int] = frozenset()  # marked without a kill, never queued (before 4.7)
    failed_mm_ids: frozenset[int] = frozenset()
    failed_live_mm_ids: frozenset[int] = frozenset()  # failed, and the mm is still not freed
    armed: int = 0  # 5.18: victims whose delayed reap (queue_oom_reaper's timer) is still to come

    @property
    def idle(self) -> bool:
        """Nothing in the slot and no delayed reap armed: the reaper can no
        longer free memory by itself."""
        return self.busy_with is None and self.busy_mm is None and self.armed == 0


@dataclass(frozen=True)
class KernelSnapshot:
    seconds: float
    jiffies: int
    policy: str
    tasks: tuple[TaskSnapshot, ...]
    locks: tuple[LockSnapshot, ...]
    mms: tuple[MMSnapshot, ...]
    zone: ZoneSnapshot
    stats: StatsSnapshot
    oom_victims: int
    panic: str | None
    reaper: ReaperStatus

    def task(self, pid: int) -> TaskSnapshot:
        for t in self.tasks:
            if t.pid == pid:
                return t
        raise KeyError(f"no task with pid {pid}")

    def lock(self, name: str) -> LockSnapshot:
        for lk in self.locks:
            if lk.name == name:
                return lk
        raise KeyError(f"no lock named {name!r}")

    def mm(self, mm_id: int) -> MMSnapshot:
        for m in self.mms:
            if m.id == mm_id:
                return m
        raise KeyError(f"no mm #{mm_id}")

    def format(self) -> str:
        """A ps-like table plus locks and the zone, for humans."""
        lines = [f"[{self.seconds:12.6f}] policy={self.policy} zone: {self.zone.nr_free}/"
                 f"{self.zone.nr_pages} pages free (min {self.zone.wmark_min}) "
                 f"oom kills={self.stats.oom_kills} aborts={self.stats.oom_aborts}",
                 f"{'PID':>5} {'TGID':>5} S {'COMM':<16} FLAGS              WCHAN"]
        for t in self.tasks:
            flags = ",".join(f for f, on in (("MEMDIE", t.tif_memdie), ("SIGKILL", t.sigkill_pending),
                                             ("EXITING", t.exiting), ("KTHREAD", t.kthread)) if on)
            wchan = t.wchan or ""
            if t.waits_for:
                wchan += f" (owner {','.join(map(str, t.waits_for))})"
            if t.in_allocator_since is not None:
                wchan = f"page allocator since {t.in_allocator_since:.3f}s"
            lines.append(f"{t.pid:5d} {t.tgid:5d} {t.state} {t.comm:<16} {flags:<18} {wchan}")
        for lk in self.locks:
            if lk.writer is None and not lk.readers and not lk.waiters:
                continue
            role = "owner" if lk.kind == "mutex" else "writer"
            who = f"{role} {lk.writer}" if lk.writer is not None else f"readers {list(lk.readers)}"
            lines.append(f"  {lk.kind} {lk.name}: {who}, waiters {list(lk.waiters)}")
        return "\n".join(lines)


def describe_wchan(w: object) -> tuple[str | None, str | None, tuple[int, ...]]:
    if w is None:
        return None, None, ()
    if isinstance(w, str):
        return w, "function", ()
    owners = tuple(w.owner_pids()) if hasattr(w, "owner_pids") else ()
    return getattr(w, "name", repr(w)), getattr(w, "kind", type(w).__name__.lower()), owners


def snapshot_task(t: "Task") -> TaskSnapshot:
    wchan, kind, owners = describe_wchan(t.wchan)
    mm = t.mm
    return TaskSnapshot(
        pid=t.pid, tgid=t.tgid, comm=t.comm, state=t.state_letter, kthread=t.is_kthread,
        exiting=t.exiting, tif_memdie=t.tif_memdie, sigkill_pending=t.sigkill_pending,
        oom_score_adj=t.signal.oom_score_adj, mm=mm.id if mm is not None else None,
        wchan=wchan, wchan_kind=kind, waits_for=owners,
        held_locks=tuple(held_lock_name(h) for h in list(t.held_locks)),
        in_allocator_since=t.alloc_since, nvcsw=t.nvcsw, exit_reason=t.exit_reason)


def snapshot_lock(lk: object) -> LockSnapshot:
    writer = getattr(lk, "owner", None)
    readers = lk.readers() if hasattr(lk, "readers") else []
    return LockSnapshot(
        name=lk.name, kind=lk.kind,
        writer=getattr(writer, "pid", None),
        readers=tuple(getattr(r, "pid", -1) for r in readers),
        waiters=tuple(lk.waiter_pids()),
        queued_writer=lk.has_queued_writer() if hasattr(lk, "has_queued_writer") else False)


def snapshot_mm(mm: "MM") -> MMSnapshot:
    owner = mm.owner.pid if mm.owner is not None else None
    if mm.freed:
        return MMSnapshot(mm.id, owner, True, mm.mm_users.read(), mm.mm_count.read(),
                          0, 0, 0, 0, 0, 0)
    return MMSnapshot(
        id=mm.id, owner=owner, freed=False, mm_users=mm.mm_users.read(),
        mm_count=mm.mm_count.read(), total_vm=mm.total_vm,
        anon_rss=mm._rss[MM_ANONPAGES], file_rss=mm._rss[MM_FILEPAGES],
        shmem_rss=mm._rss[MM_SHMEMPAGES], swapents=mm._rss[MM_SWAPENTS],
        nr_ptes=len(mm._pgtables))


def take_snapshot(kernel: "Kernel") -> KernelSnapshot:
    z, s = kernel.zone, kernel.stats
    return KernelSnapshot(
        seconds=kernel.clock.now(), jiffies=kernel.clock.jiffies(), policy=kernel.policy.value,
        tasks=tuple(snapshot_task(t) for t in kernel.tasks()),
        locks=tuple(snapshot_lock(lk) for lk in kernel.locks()),
        mms=tuple(snapshot_mm(m) for m in kernel.mms()),
        zone=ZoneSnapshot(z.nr_pages, z.nr_free, z.wmark_min, z.wmark_low, z.wmark_high,
                          z.nr_allocated, z.nr_freed),
        stats=StatsSnapshot(s.oom_invocations, s.oom_kills, s.oom_aborts, s.alloc_failed,
                            s.alloc_stalls, s.task_exits, s.last_progress),
        oom_victims=kernel.oom_victims.read(), panic=kernel.panic_reason,
        reaper=kernel.reaper_status())
