"""Randomized workloads for soak runs: a seed fully determines one.

A workload is plain data (processes, their threads, and each thread's list
of "syscalls"), generated from a seed; ``build`` turns it into tasks on a
fresh Kernel. The threads then race for real, so the *outcome* of a seed can
vary from run to run; the workload never does.

The workload itself can never deadlock: mutexes are taken in ascending
order, and mmap_sem is never held together with a mutex. Any lockup comes
from memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from kthreads import (GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOFS, Kernel, Mutex, SigKill, Task,
                      VmaSpec, alloc_pages, free_page, handle_mm_fault, return_to_user,
                      schedule_timeout_killable, schedule_timeout_uninterruptible)


#: Zone pages a workload needs per process, at least (see WorkloadParams).
PAGES_PER_PROCESS = 8


@dataclass(frozen=True)
class WorkloadParams:
    """Knobs of the generator; every one has a ``soak`` flag."""

    processes: tuple[int, int] = (3, 6)
    max_threads: int = 3  # per process
    zone_pages: tuple[int, int] = (384, 1024)
    pressure: float = 1.6  # memory wanted / zone size
    locks: int = 2
    syscalls: tuple[int, int] = (2, 6)  # per thread
    nofs: float = 0.25  # share of allocations that are GFP_NOFS
    killable: float = 0.2  # share of mutex waits that are killable
    mix: tuple[tuple[str, float], ...] = (
        ("locked_alloc", 4.0), ("lock_wait", 4.0), ("fault", 2.0), ("mmap", 1.0),
        ("alloc", 0.5), ("free", 0.3), ("sleep", 0.3))

    def __post_init__(self) -> None:
        lo, hi = self.processes
        if not 1 <= lo <= hi <= 64:
            raise ValueError(f"processes must satisfy 1 <= min <= max <= 64, got {lo}..{hi}")
        if not 1 <= self.max_threads <= 16:
            raise ValueError(f"max_threads must be in 1..16, got {self.max_threads}")
        zlo, zhi = self.zone_pages
        if not 128 <= zlo <= zhi <= 1 << 20:
            raise ValueError(f"zone pages must satisfy 128 <= min <= max, got {zlo}..{zhi}")
        # Every process brings a resident page and a page-table page on top of
        # the 80% of the zone that is resident at boot: with fewer than 8 zone
        # pages a process the workload may not fit at boot (8 always fitted,
        # checked over 300 seeds for 6 to 64 processes and any pressure).
        if zlo < PAGES_PER_PROCESS * hi:
            raise ValueError(f"--zone-pages {zlo} is too small for --processes up to {hi}: a workload "
                             f"needs at least {PAGES_PER_PROCESS} pages a process "
                             f"(--zone-pages >= {PAGES_PER_PROCESS * hi})")
        if not 0.1 <= self.pressure <= 10:
            raise ValueError(f"pressure must be in 0.1..10, got {self.pressure}")
        if not 0 <= self.locks <= 32:
            raise ValueError(f"locks must be in 0..32, got {self.locks}")
        if not 0 <= self.nofs <= 1 or not 0 <= self.killable <= 1:
            raise ValueError("nofs and killable are shares between 0 and 1")
        if not any(w > 0 for _, w in self.mix):
            raise ValueError("the syscall mix needs a positive weight")


@dataclass(frozen=True)
class Syscall:
    kind: str
    pages: int = 0
    locks: tuple[int, ...] = ()
    killable: bool = False
    nofs: bool = False
    jiffies: int = 0


@dataclass(frozen=True)
class ThreadSpec:
    comm: str
    syscalls: tuple[Syscall, ...]


@dataclass(frozen=True)
class ProcessSpec:
    comm: str
    oom_score_adj: int
    resident: int  # anon pages faulted in at fork
    room: int  # extra anon VMA room for page faults and "mmap" work
    threads: tuple[ThreadSpec, ...]


@dataclass(frozen=True)
class Workload:
    seed: int
    zone_pages: int
    locks: int
    processes: tuple[ProcessSpec, ...] = field(default_factory=tuple)

    @property
    def demand(self) -> int:
        return sum(p.resident + sum(s.pages for t in p.threads for s in t.syscalls)
                   for p in self.processes)


def generate(seed: int, params: WorkloadParams = WorkloadParams()) -> Workload:
    rng = random.Random(seed)
    zone = rng.randint(*params.zone_pages)
    nproc = rng.randint(*params.processes)
    kinds, weights = zip(*params.mix)
    budget = int(zone * params.pressure)
    # Most of the memory is resident from the start, split
    # unevenly so that there is a clear "biggest" process, like in real life.
    shares = sorted((rng.random() ** 2 for _ in range(nproc)), reverse=True)
    total = sum(shares)
    resident_budget = int(zone * 0.8)
    dynamic_budget = max(nproc, budget - resident_budget)
    procs = []
    for i in range(nproc):
        multi = rng.random() >= 0.5  # drawn whatever max_threads is: seeds stay comparable
        nthreads = rng.randint(2, params.max_threads) if multi and params.max_threads >= 2 else 1
        threads = []
        for j in range(nthreads):
            calls = []
            for _ in range(rng.randint(*params.syscalls)):
                kind = rng.choices(kinds, weights)[0]
                calls.append(_syscall(rng, kind, params, dynamic_budget, nproc))
            threads.append(ThreadSpec(f"p{i}" if j == 0 else f"p{i}t{j}", tuple(calls)))
        room = sum(s.pages for t in threads for s in t.syscalls if s.kind in ("fault", "mmap"))
        # Mostly 0; some processes protected. (A positive adj makes small
        # processes the victims, whose reaped memory may not be enough.)
        adj = 0 if rng.random() < 0.7 else rng.choice((-500, -200, 100))
        procs.append(ProcessSpec(f"p{i}", adj, max(1, int(resident_budget * shares[i] / total)),
                                 room, tuple(threads)))
    return Workload(seed, zone, params.locks, tuple(procs))


def _syscall(rng: random.Random, kind: str, params: WorkloadParams, budget: int,
             nproc: int) -> Syscall:
    pages = max(1, int(rng.expovariate(1.0) * budget / (nproc * 4)))
    nofs = rng.random() < params.nofs
    if kind in ("locked_alloc", "lock_wait") and params.locks:
        first = rng.randrange(params.locks)
        locks = (first,) if rng.random() < 0.7 or first == params.locks - 1 else \
            (first, rng.randrange(first + 1, params.locks))
        killable = rng.random() < params.killable
        if kind == "locked_alloc":
            return Syscall(kind, min(pages, 8), locks, killable, nofs)
        return Syscall(kind, 0, locks, killable, False, rng.randint(1, 4))
    if kind in ("locked_alloc", "lock_wait", "alloc"):
        return Syscall("alloc", min(pages, 8), nofs=nofs)
    if kind in ("fault", "mmap"):
        return Syscall(kind, pages, nofs=nofs)
    if kind == "sleep":
        return Syscall(kind, jiffies=rng.randint(1, 3))
    return Syscall("free")


# -- turning a workload into tasks ------------------------------------------------
def build(k: Kernel, w: Workload) -> list[Task]:
    locks = [Mutex(f"lock{i}", k) for i in range(w.locks)]
    tasks: list[Task] = []
    for p in w.processes:
        leader = k.fork(p.comm, thread_body(p.threads[0], locks), start=False,
                        vmas=[VmaSpec(pages=p.resident, size=p.resident + p.room + 1)],
                        oom_score_adj=p.oom_score_adj)
        tasks.append(leader)
        for t in p.threads[1:]:
            tasks.append(k.clone_thread(leader, t.comm, thread_body(t, locks), start=False))
    for t in tasks:  # start together: the memory is there before anybody runs
        k.start(t)
    return tasks


def thread_body(spec: ThreadSpec, locks: list[Mutex]) -> Callable[[Task], None]:
    def body(t: Task) -> None:
        for sc in spec.syscalls:
            SYSCALLS[sc.kind](t, sc, locks)
            return_to_user(t)
    return body


def _gfp(sc: Syscall) -> int:
    return GFP_NOFS if sc.nofs else GFP_KERNEL


def _take(locks: list[Mutex], sc: Syscall) -> list[Mutex]:
    held = []
    try:
        for i in sc.locks:
            m = locks[i]
            if sc.killable:
                if m.lock_killable():
                    raise SigKill()
            else:
                m.lock()
            held.append(m)
    except BaseException:
        _drop(held)
        raise
    return held


def _drop(held: list[Mutex]) -> None:
    for m in reversed(held):
        m.unlock()


def sys_locked_alloc(t: Task, sc: Syscall, locks: list[Mutex]) -> None:
    held = _take(locks, sc)
    try:
        for _ in range(sc.pages):
            if alloc_pages(_gfp(sc)) is None:
                break
    finally:
        _drop(held)


def sys_lock_wait(t: Task, sc: Syscall, locks: list[Mutex]) -> None:
    held = _take(locks, sc)
    try:
        schedule_timeout_uninterruptible(sc.jiffies, "lock_wait")  # IO under the lock
    finally:
        _drop(held)


def _fault_into(t: Task, sc: Syscall) -> None:
    mm = t.mm
    vma = mm.vmas[0]
    gfp = GFP_NOFS if sc.nofs else GFP_HIGHUSER_MOVABLE
    for _ in range(sc.pages):
        if len(vma.pages) >= vma.size or not handle_mm_fault(mm, vma, gfp):
            break


def sys_fault(t: Task, sc: Syscall, locks: list[Mutex]) -> None:
    with t.mm.mmap_sem.read():
        _fault_into(t, sc)


def sys_mmap(t: Task, sc: Syscall, locks: list[Mutex]) -> None:
    with t.mm.mmap_sem.write():  # mmap(): populate under the write lock
        _fault_into(t, sc)


def sys_alloc(t: Task, sc: Syscall, locks: list[Mutex]) -> None:
    for _ in range(sc.pages):
        if alloc_pages(_gfp(sc)) is None:
            break


def sys_free(t: Task, sc: Syscall, locks: list[Mutex]) -> None:
    for pfn in list(t.kernel_pages)[: len(t.kernel_pages) // 2 + 1]:
        free_page(pfn)


def sys_sleep(t: Task, sc: Syscall, locks: list[Mutex]) -> None:
    schedule_timeout_killable(sc.jiffies, "nanosleep")


SYSCALLS: dict[str, Callable[[Task, Syscall, list[Mutex]], None]] = {
    "locked_alloc": sys_locked_alloc, "lock_wait": sys_lock_wait, "fault": sys_fault,
    "mmap": sys_mmap, "alloc": sys_alloc, "free": sys_free, "sleep": sys_sleep,
}
