"""Replaying a log's events: per-pid tracks (sleeps, lock holds, allocations,
kills), lock state with wait queues, the OOM killer's and the reaper's
bookkeeping, and the state everything was in where the replay stopped.

It knows the model only through its event vocabulary (``kthreads.Ev``) and
the fields the model records. A task is a kthread only if its
``task_newtask`` event says so; a track whose birth was lost is ``UNKNOWN``.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from kthreads import Ev

from .log import MAX_NOTED, Event, FieldError, FlightLog

#: Events that mean the system made progress (the model's ``note_progress``):
#: a page was allocated, or a task exited.
PROGRESS = frozenset({Ev.MM_PAGE_ALLOC, Ev.ALLOC_SUCCESS, Ev.SCHED_PROCESS_EXIT})
#: The reaper is done with an mm it was handed.
#: After these the run is over: the rest of the log is the harness, or unwinding.
END_OF_RUN = frozenset({Ev.SHUTDOWN, Ev.VERDICT})


class TaskKind(enum.Enum):
    USER = "user"
    KTHREAD = "kthread"
    UNKNOWN = "unknown"  # its task_newtask event was lost


@dataclass
class Segment:
    start: float
    end: float | None
    what: str  # state letter, "alloc", or a lock name for holds
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Track:
    pid: int
    comm: str
    tgid: int
    kind: TaskKind
    mm: int | None
    born: float
    died: float | None = None
    exiting_since: float | None = None
    sleeps: list[Segment] = field(default_factory=list)
    allocs: list[Segment] = field(default_factory=list)
    holds: list[Segment] = field(default_factory=list)
    memdie_since: float | None = None
    sigkill_at: float | None = None
    waiting: tuple[int, bool] | None = None  # (lock id, read) while queued on a lock

    @property
    def kthread(self) -> bool:
        return self.kind is TaskKind.KTHREAD

    @property
    def alive(self) -> bool:
        return self.died is None

    @property
    def sleep(self) -> Segment | None:
        return self.sleeps[-1] if self.sleeps and self.sleeps[-1].end is None else None

    @property
    def alloc(self) -> Segment | None:
        return self.allocs[-1] if self.allocs and self.allocs[-1].end is None else None

    @property
    def uninterruptible(self) -> bool:
        """Asleep in TASK_UNINTERRUPTIBLE (D, not killable) right now."""
        s = self.sleep
        return s is not None and s.what == "D" and not s.detail.get("killable")

    def who(self) -> str:
        return f"pid {self.pid} ({self.comm})"

    def doing(self) -> str:
        """What it was doing where the replay stopped, for sentences."""
        if self.alloc is not None:
            return f"in the page allocator since {self.alloc.start:.3f} s"
        if self.sleep is not None:
            return f"in {self.sleep.what} on {self.sleep.detail.get('wchan')} since {self.sleep.start:.3f} s"
        return "running"


@dataclass
class LockState:
    lock_id: int
    name: str
    kind: str
    holders: Counter[int] = field(default_factory=Counter)  # pid -> holds
    writer: int | None = None
    queue: list[int] = field(default_factory=list)  # waiting pids, in the order they queued

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class Marker:
    t: float
    kind: str  # an Ev value: oom_kill, start_task_reaping, hung_task, verdict, panic, ...
    pid: int
    text: str


class Replay:
    """The state of the run rebuilt event by event, up to the end of the run."""

    def __init__(self, log: FlightLog) -> None:
        self.log = log
        self.tracks: dict[int, Track] = {}
        self.locks: dict[int, LockState] = {}
        self.markers: list[Marker] = []
        self.problems: list[str] = []  # records that could not be replayed
        self.malformed = 0
        self.aborts = 0
        self.kills: list[dict[str, Any]] = []  # oom_kill fields plus pid, t
        self.reaped_mms: dict[int, tuple[float, int]] = {}  # mm -> (t, pages)
        self.mreleases: list[dict[str, Any]] = []  # process_mrelease calls: fields plus pid, t
        self.robust_zapped: dict[int, float] = {}  # pid -> when its exit read a zapped robust list head
        self.failed: list[tuple[int, int | None]] = []  # (pid, mm)
        self.dropped: dict[int, Any] = {}  # mm -> busy_with pid
        self.forbidden_mms: set[int] = set()
        self.marked: set[int] = set()  # pids ever given TIF_MEMDIE (killed, or only marked)
        self.freed_mms: set[int] = set()
        self.reaper_busy: dict[int, int] = {}  # mm handed to the reaper, not done yet -> victim pid
        self.hung: dict[int, float] = {}  # pid -> when khungtaskd reported it
        self.panic: str | None = None
        self.verdict: dict[str, Any] | None = None
        self.oopses: list[str] = []
        self.last_progress: float | None = None
        self.last_event: Event | None = None
        self.t_end = 0.0
        self.handlers: dict[Ev, Callable[[Event], None]] = {
            Ev.TASK_NEWTASK: self.on_task_newtask,
            Ev.SCHED_PROCESS_EXIT_START: self.on_exit_start,
            Ev.SCHED_PROCESS_EXIT: self.on_exit,
            Ev.SCHED_SLEEP: self.on_sleep,
            Ev.SCHED_WAKE: self.on_wake,
            Ev.LOCK_CONTENDED: self.on_lock_contended,
            Ev.LOCK_ACQUIRE: self.on_lock_acquire,
            Ev.LOCK_RELEASE: self.on_lock_release,
            Ev.ALLOC_SLOWPATH: self.on_alloc_slowpath,
            Ev.ALLOC_SUCCESS: self.on_alloc_success,
            Ev.ALLOC_FAIL: self.on_alloc_fail,
            Ev.ALLOC_RETRY: self.on_alloc_retry,
            Ev.MM_FREE: self.on_mm_free,
            Ev.OOM_ABORT: self.on_oom_abort,
            Ev.MARK_VICTIM: self.on_mark_victim,
            Ev.EXIT_OOM_VICTIM: self.on_exit_oom_victim,
            Ev.SIGNAL_GENERATE: self.on_signal_generate,
            Ev.OOM_KILL: self.on_oom_kill,
            Ev.WAKE_REAPER: self.on_wake_reaper,
            Ev.START_TASK_REAPING: self.on_start_task_reaping,
            Ev.SKIP_TASK_REAPING: self.on_skip_task_reaping,
            Ev.FINISH_TASK_REAPING: self.on_finish_task_reaping,
            Ev.REAP_RACED_EXIT: self.on_reap_raced_exit,
            Ev.REAP_FAILED: self.on_reap_failed,
            Ev.REAP_DROPPED: self.on_reap_dropped,
            Ev.HUNG_TASK: self.on_hung_task,
            Ev.PROCESS_MRELEASE: self.on_process_mrelease,
            Ev.EXIT_ROBUST_LIST: self.on_exit_robust_list,
            Ev.OOPS: self.on_oops,
            Ev.PANIC: self.on_panic,
            Ev.VERDICT: self.on_verdict,
        }

    # -- driving -----------------------------------------------------------------
    def run(self) -> "Replay":
        for e in self.log.events:
            ev = e.ev
            if ev is Ev.SHUTDOWN:  # the plug was pulled: the rest is unwinding
                self.t_end = max(self.t_end, e.t)  # nothing progressed up to here
                break
            self.t_end = max(self.t_end, e.t)
            if ev not in END_OF_RUN:
                self.last_event = e
            if ev in PROGRESS:
                self.last_progress = e.t
            handler = self.handlers.get(ev) if ev is not None else None
            if handler is not None:
                try:
                    handler(e)
                except (FieldError, TypeError, ValueError, KeyError, AttributeError,
                        ArithmeticError) as err:
                    self.malformed += 1
                    if self.malformed <= MAX_NOTED:
                        self.problems.append(f"line {e.line}: malformed {e.name} record skipped "
                                             f"({type(err).__name__}: {str(err)[:60]})")
            if ev in END_OF_RUN:
                break  # the episode is over; what follows is the harness, not the kernel
        if self.malformed > MAX_NOTED:
            self.problems.append(f"... and {self.malformed - MAX_NOTED} more malformed records skipped")
        return self

    def track(self, e: Event) -> Track:
        t = self.tracks.get(e.pid)
        if t is None:  # its birth was lost: we cannot tell what it was
            t = self.tracks[e.pid] = Track(e.pid, e.comm, e.pid, TaskKind.UNKNOWN, None, e.t)
        return t

    def lock(self, e: Event) -> LockState:
        lock_id = e.integer("lock_id", 0)
        lk = self.locks.get(lock_id)
        if lk is None:
            name = e.text("lock") or e.text("wchan") or f"lock#{lock_id}"
            lk = self.locks[lock_id] = LockState(lock_id, name, e.text("kind") or "lock")
        kind = e.text("kind")
        if kind and kind != "?":
            lk.kind = kind
        return lk

    def users(self) -> list[Track]:
        """Tasks that are not kernel threads (including those of unknown kind)."""
        return [t for t in self.tracks.values() if t.kind is not TaskKind.KTHREAD]

    def has_reaper(self) -> bool:
        return any(t.comm == "oom_reaper" and t.kthread for t in self.tracks.values())

    def _dequeue(self, t: Track) -> None:
        if t.waiting is not None:
            lk = self.locks.get(t.waiting[0])
            if lk is not None and t.pid in lk.queue:
                lk.queue.remove(t.pid)
            t.waiting = None

    # -- tasks -------------------------------------------------------------------
    def on_task_newtask(self, e: Event) -> None:
        kind = TaskKind.KTHREAD if e.flag("kthread") else TaskKind.USER
        self.tracks[e.pid] = Track(e.pid, e.comm, e.integer("tgid", e.pid), kind, e.integer("mm"), e.t)

    def on_exit_start(self, e: Event) -> None:
        self.track(e).exiting_since = e.t

    def on_exit(self, e: Event) -> None:
        t = self.track(e)
        t.died = e.t
        self._dequeue(t)
        for seg in (t.sleep, t.alloc):
            if seg is not None:
                seg.end = e.t
        for hold in t.holds:
            if hold.end is None:
                hold.end = e.t

    def on_sleep(self, e: Event) -> None:
        t = self.track(e)
        detail = dict(e.fields)
        detail["lock_id"] = e.integer("lock_id", 0)
        detail["killable"] = e.flag("killable")
        state = e.text("state", "D")
        if t.sleep is not None:
            t.sleep.end = e.t
        t.sleeps.append(Segment(e.t, None, state, detail))

    def on_wake(self, e: Event) -> None:
        t = self.track(e)
        self.hung.pop(e.pid, None)  # as khungtaskd forgets a task once it is scheduled
        if t.sleep is not None:
            t.sleep.end = e.t
        self._dequeue(t)  # granted (the acquire follows) or gave up

    # -- locks -------------------------------------------------------------------
    def on_lock_contended(self, e: Event) -> None:
        lk = self.lock(e)
        t = self.track(e)
        self._dequeue(t)
        t.waiting = (lk.lock_id, e.flag("read"))
        lk.queue.append(t.pid)

    def on_lock_acquire(self, e: Event) -> None:
        lk = self.lock(e)
        t = self.track(e)
        read = e.flag("read")
        self._dequeue(t)
        lk.holders[e.pid] += 1
        if not read:
            lk.writer = e.pid
        t.holds.append(Segment(e.t, None, lk.name, {"lock_id": lk.lock_id, "read": read, "kind": lk.kind}))

    def on_lock_release(self, e: Event) -> None:
        lk = self.lock(e)
        t = self.track(e)
        if lk.holders[e.pid] > 0:
            lk.holders[e.pid] -= 1
        if not lk.holders[e.pid]:
            del lk.holders[e.pid]
        if lk.writer == e.pid:
            lk.writer = None
        for hold in reversed(t.holds):
            if hold.end is None and hold.detail.get("lock_id") == lk.lock_id:
                hold.end = e.t
                break

    # -- memory ------------------------------------------------------------------
    def on_alloc_slowpath(self, e: Event) -> None:
        self.track(e).allocs.append(Segment(e.t, None, "alloc", {"gfp": e.integer("gfp", 0)}))

    def _alloc_done(self, e: Event, how: str) -> None:
        seg = self.track(e).alloc
        if seg is not None:
            seg.end = e.t
            seg.detail["result"] = how

    def on_alloc_success(self, e: Event) -> None:
        self._alloc_done(e, "page")

    def on_alloc_fail(self, e: Event) -> None:
        self._alloc_done(e, "failed")

    def on_alloc_retry(self, e: Event) -> None:
        """A looping slow path's iterations, counted instead of recorded."""
        self.aborts += e.integer("aborts", 0)

    def on_mm_free(self, e: Event) -> None:
        self.freed_mms.add(e.integer("mm"))

    # -- the OOM killer and the reaper -----------------------------------------------
    def on_oom_abort(self, e: Event) -> None:
        self.aborts += 1

    def on_mark_victim(self, e: Event) -> None:
        t = self.track(e)
        if t.memdie_since is None:
            t.memdie_since = e.t
        self.marked.add(t.pid)

    def on_exit_oom_victim(self, e: Event) -> None:
        self.track(e).memdie_since = None

    def on_signal_generate(self, e: Event) -> None:
        tgid = self.track(e).tgid
        for t in self.tracks.values():
            if t.tgid == tgid and t.alive and t.sigkill_at is None:
                t.sigkill_at = e.t

    def on_oom_kill(self, e: Event) -> None:
        mm = e.integer("mm")
        self.kills.append(dict(e.fields, pid=e.pid, t=e.t, mm=mm))
        if not e.flag("can_oom_reap", True):
            self.forbidden_mms.add(mm)
        self._marker(e, f"OOM kill of pid {e.pid} ({e.comm}), score {e.get('points')}")

    def _marker(self, e: Event, text: str) -> None:
        self.markers.append(Marker(e.t, e.name, e.pid, text))

    def on_wake_reaper(self, e: Event) -> None:
        self.reaper_busy[e.integer("mm")] = e.pid
        self._marker(e, f"wake_oom_reaper: pid {e.pid} queued in mm_to_reap")

    def on_start_task_reaping(self, e: Event) -> None:
        self._marker(e, f"oom_reaper starts reaping pid {e.pid}")

    def on_skip_task_reaping(self, e: Event) -> None:
        if e.get("reason") == "MMF_OOM_SKIP":
            # 4.14: exit_mmap unmapped the mm first; the reaper is done.
            self._reaper_done(e.integer("mm"), e.pid)
            self._marker(e, f"oom_reaper: pid {e.pid}'s mm already MMF_OOM_SKIP (exit_mmap first)")
            return
        self._marker(e, f"oom_reaper: down_read_trylock failed on pid {e.pid} (try {e.get('attempt')})")

    def on_finish_task_reaping(self, e: Event) -> None:
        mm = e.integer("mm")
        if e.integer("pages", 0):
            self.last_progress = e.t  # as the model: memory freed is progress
        if e.get("partial"):  # 4.19+: a VMA's notifier would block; the reaper tries again
            self._marker(e, f"oom_reaper reaped pid {e.pid} in part: {e.get('pages')} pages")
            return
        self._reaper_done(mm, e.pid)
        self.reaped_mms[mm] = (e.t, e.integer("pages", 0))
        self._marker(e, f"oom_reaper reaped pid {e.pid}: {e.get('pages')} pages")

    def on_process_mrelease(self, e: Event) -> None:
        self.mreleases.append(dict(e.fields, pid=e.pid, t=e.t))
        if e.integer("pages", 0):
            self.last_progress = e.t  # as the model: memory freed is progress
            self._marker(e, f"process_mrelease by pid {e.pid} reaped pid {e.get('target')}: "
                            f"{e.get('pages')} pages" + ("" if e.flag("reaped") else " (in part)"))

    def on_exit_robust_list(self, e: Event) -> None:
        if e.flag("zapped"):
            self.robust_zapped[e.pid] = e.t
            self._marker(e, f"pid {e.pid}'s exit read a zapped robust list head")

    def mrelease_reaps(self) -> list[dict[str, Any]]:
        """process_mrelease calls that freed memory (a whole mm, or part of
        one when a VMA's notifier would block: -EAGAIN)."""
        return [m for m in self.mreleases if isinstance(m.get("pages"), int) and m["pages"] > 0]

    def orphaned_futex_waiters(self) -> list[Track]:
        """Live tasks asleep on a futex whose owner died after reading a
        zapped robust list head (the model's ``orphaned_futex_waiters``)."""
        out = []
        for t in self.users():
            s = t.sleep
            if not t.alive or s is None or s.detail.get("kind") != "futex":
                continue
            owners = s.detail.get("owners") or []
            if any(isinstance(o, int) and o in self.robust_zapped for o in owners):
                out.append(t)
        return out

    def _reaper_done(self, mm: int | None, pid: int) -> None:
        """The reaper is done with a victim: by its mm, or (a task-based
        reaper, 36324a99 on, that found no mm left) by its pid."""
        if mm is not None and mm in self.reaper_busy:
            del self.reaper_busy[mm]
            return
        for key in [k for k, v in self.reaper_busy.items() if v == pid]:
            del self.reaper_busy[key]

    def on_reap_raced_exit(self, e: Event) -> None:
        self._reaper_done(e.integer("mm"), e.pid)

    def on_reap_failed(self, e: Event) -> None:
        mm = e.integer("mm")
        self._reaper_done(mm, e.pid)
        self.failed.append((e.pid, mm))
        self._marker(e, f"oom_reaper gave up on pid {e.pid} after {e.get('attempts')} tries")

    def on_reap_dropped(self, e: Event) -> None:
        self.dropped[e.integer("mm")] = e.get("busy_with")
        self._marker(e, f"wake_oom_reaper dropped pid {e.pid}: mm_to_reap busy with pid {e.get('busy_with')}")

    def on_hung_task(self, e: Event) -> None:
        self.hung[e.pid] = e.t
        self._marker(e, f"INFO: task {e.comm}:{e.pid} blocked for more than {e.get('seconds')} seconds")

    def on_oops(self, e: Event) -> None:
        self.oopses.append(f"pid {e.pid} ({e.comm}): {e.get('kind')}: {e.get('text')}")
        self._marker(e, f"oops in pid {e.pid} ({e.comm}): {e.get('kind')}")

    def on_panic(self, e: Event) -> None:
        self.panic = str(e.get("text"))
        self._marker(e, f"panic: {self.panic}")

    def on_verdict(self, e: Event) -> None:
        self.verdict = dict(e.fields, t=e.t)
        # The model's own count at the verdict includes the rounds a looping
        # allocator had not summarised yet: the one number everybody quotes.
        self.aborts = e.integer("oom_aborts", self.aborts)
        self._marker(e, f"verdict: {e.get('outcome')}")


def replay(log: FlightLog) -> Replay:
    return Replay(log).run()
