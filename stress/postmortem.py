"""Post-mortems from a flight-recorder log alone.

The analyzer replays the events of a JSONL log (stress.flight) to rebuild a
per-pid timeline (sleeps, lock holds, allocations, kills, reaps) and the state
at the end of the log, then explains how the episode ended. It never looks at
the model's own verdict record to decide; tests compare the two.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .flight import Event, FlightLog

GFP_FS = 0x80


@dataclass
class Segment:
    start: float
    end: float | None
    what: str  # state letter, or a lock name for holds
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Track:
    pid: int
    comm: str
    tgid: int
    kthread: bool
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
    def alive(self) -> bool:
        return self.died is None

    @property
    def sleep(self) -> Segment | None:
        return self.sleeps[-1] if self.sleeps and self.sleeps[-1].end is None else None

    @property
    def alloc(self) -> Segment | None:
        return self.allocs[-1] if self.allocs and self.allocs[-1].end is None else None

    def who(self) -> str:
        return f"pid {self.pid} ({self.comm})"


@dataclass
class LockState:
    lock_id: int
    name: str
    kind: str
    holders: Counter = field(default_factory=Counter)  # pid -> holds
    writer: int | None = None

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class Marker:
    t: float
    kind: str  # oom_kill, start_task_reaping, finish_task_reaping, skip_task_reaping, reap_failed,
    #            reap_dropped, hung_task, verdict, panic
    pid: int
    text: str


@dataclass
class Diagnosis:
    outcome: str
    shape: str | None
    sentence: str
    victims: list[int]
    chain: list[int]  # pids from the victim to the task looping in the allocator
    locks: list[str]  # lock names along the chain
    partial: bool
    problems: list[str]


@dataclass
class Analysis:
    log: FlightLog
    tracks: dict[int, Track]
    locks: dict[int, LockState]
    markers: list[Marker]
    t_end: float
    oom_aborts: int
    diagnosis: Diagnosis
    model_verdict: dict[str, Any] | None

    def users(self) -> list[Track]:
        return [t for t in self.tracks.values() if not t.kthread]


class _Replay:
    def __init__(self, log: FlightLog) -> None:
        self.log = log
        self.tracks: dict[int, Track] = {}
        self.locks: dict[int, LockState] = {}
        self.markers: list[Marker] = []
        self.aborts = 0
        self.kills: list[dict[str, Any]] = []  # oom_kill fields plus pid, t
        self.reaped_mms: dict[int, tuple[float, int]] = {}  # mm -> (t, pages)
        self.failed: list[tuple[int, int | None]] = []  # (pid, mm)
        self.dropped: dict[int, Any] = {}  # mm -> busy_with pid
        self.forbidden_mms: set[int] = set()
        self.freed_mms: set[int] = set()
        self.panic: str | None = None
        self.verdict: dict[str, Any] | None = None
        self.oopses: list[str] = []
        self.t_end = 0.0

    def track(self, e: Event) -> Track:
        t = self.tracks.get(e.pid)
        if t is None:  # its birth was lost when the ring wrapped
            t = self.tracks[e.pid] = Track(e.pid, e.comm, e.pid, e.pid < 100, None, e.t)
        return t

    def lock(self, f: dict[str, Any]) -> LockState:
        lid = int(f.get("lock_id") or 0)
        lk = self.locks.get(lid)
        if lk is None:
            lk = self.locks[lid] = LockState(lid, str(f.get("lock", f.get("wchan", "?"))),
                                             str(f.get("kind", "?")))
        if f.get("kind"):
            lk.kind = str(f["kind"])
        return lk

    def run(self, problems: list[str]) -> None:
        for e in self.log.events:
            if e.name == "shutdown":  # the plug was pulled: the rest is unwinding
                break
            self.t_end = max(self.t_end, e.t)
            handler = getattr(self, "on_" + e.name, None)
            if handler is None:
                continue
            try:
                handler(e)
            except (TypeError, ValueError, KeyError, AttributeError) as err:
                problems.append(f"line {e.line}: malformed {e.name} record skipped "
                                f"({type(err).__name__}: {str(err)[:60]})")
            if e.name in ("verdict", "lockup_report"):
                break  # the episode is over; what follows is the harness, not the kernel

    # -- tasks ---------------------------------------------------------------
    def on_task_newtask(self, e: Event) -> None:
        f = e.fields
        self.tracks[e.pid] = Track(e.pid, e.comm, int(f.get("tgid", e.pid)), bool(f.get("kthread")),
                                   f.get("mm"), e.t)

    def on_sched_process_exit_start(self, e: Event) -> None:
        self.track(e).exiting_since = e.t

    def on_sched_process_exit(self, e: Event) -> None:
        t = self.track(e)
        t.died = e.t
        for seg in (t.sleep, t.alloc):
            if seg is not None:
                seg.end = e.t
        for h in t.holds:
            if h.end is None:
                h.end = e.t

    def on_sched_sleep(self, e: Event) -> None:
        f = e.fields
        t = self.track(e)
        if t.sleep is not None:
            t.sleep.end = e.t
        t.sleeps.append(Segment(e.t, None, str(f.get("state", "D")), dict(f)))

    def on_sched_wake(self, e: Event) -> None:
        t = self.track(e)
        if t.sleep is not None:
            t.sleep.end = e.t
        t.waiting = None

    # -- locks ---------------------------------------------------------------
    def on_lock_contended(self, e: Event) -> None:
        lk = self.lock(e.fields)
        self.track(e).waiting = (lk.lock_id, bool(e.get("read")))

    def on_lock_acquire(self, e: Event) -> None:
        lk = self.lock(e.fields)
        t = self.track(e)
        lk.holders[e.pid] += 1
        if not e.get("read"):
            lk.writer = e.pid
        t.waiting = None
        t.holds.append(Segment(e.t, None, lk.name, {"lock_id": lk.lock_id, "read": bool(e.get("read")),
                                                     "kind": lk.kind}))

    def on_lock_release(self, e: Event) -> None:
        lk = self.lock(e.fields)
        t = self.track(e)
        if lk.holders[e.pid] > 0:
            lk.holders[e.pid] -= 1
            if not lk.holders[e.pid]:
                del lk.holders[e.pid]
        if lk.writer == e.pid:
            lk.writer = None
        for h in reversed(t.holds):
            if h.end is None and h.detail.get("lock_id") == lk.lock_id:
                h.end = e.t
                break

    # -- memory --------------------------------------------------------------
    def on_alloc_slowpath(self, e: Event) -> None:
        self.track(e).allocs.append(Segment(e.t, None, "alloc", {"gfp": e.get("gfp", 0)}))

    def _alloc_done(self, e: Event, how: str) -> None:
        a = self.track(e).alloc
        if a is not None:
            a.end = e.t
            a.detail["result"] = how

    def on_alloc_success(self, e: Event) -> None:
        self._alloc_done(e, "page")

    def on_alloc_fail(self, e: Event) -> None:
        self._alloc_done(e, "failed")

    def on_mm_free(self, e: Event) -> None:
        self.freed_mms.add(e.get("mm"))

    # -- the OOM killer and the reaper -------------------------------------------
    def on_oom_abort(self, e: Event) -> None:
        self.aborts += 1

    def on_mark_victim(self, e: Event) -> None:
        t = self.track(e)
        if t.memdie_since is None:
            t.memdie_since = e.t

    def on_exit_oom_victim(self, e: Event) -> None:
        self.track(e).memdie_since = None

    def on_signal_generate(self, e: Event) -> None:
        tgid = self.track(e).tgid
        for t in self.tracks.values():
            if t.tgid == tgid and t.alive and t.sigkill_at is None:
                t.sigkill_at = e.t

    def on_oom_kill(self, e: Event) -> None:
        self.kills.append(dict(e.fields, pid=e.pid, t=e.t))
        if not e.get("can_oom_reap", True):
            self.forbidden_mms.add(e.get("mm"))
        self.markers.append(Marker(e.t, "oom_kill", e.pid, f"OOM kill of pid {e.pid} ({e.comm}), "
                                   f"{e.get('points')} points"))

    def _marker(self, e: Event, text: str) -> None:
        self.markers.append(Marker(e.t, e.name, e.pid, text))

    def on_wake_reaper(self, e: Event) -> None:
        self._marker(e, f"wake_oom_reaper: pid {e.pid} queued in mm_to_reap")

    def on_start_task_reaping(self, e: Event) -> None:
        self._marker(e, f"oom_reaper starts reaping pid {e.pid}")

    def on_skip_task_reaping(self, e: Event) -> None:
        self._marker(e, f"oom_reaper: down_read_trylock failed on pid {e.pid} (try {e.get('attempt')})")

    def on_finish_task_reaping(self, e: Event) -> None:
        self.reaped_mms[e.get("mm")] = (e.t, int(e.get("pages", 0)))
        self._marker(e, f"oom_reaper reaped pid {e.pid}: {e.get('pages')} pages")

    def on_reap_failed(self, e: Event) -> None:
        self.failed.append((e.pid, e.get("mm")))
        self._marker(e, f"oom_reaper: unable to reap pid {e.pid} after {e.get('attempts')} tries")

    def on_reap_dropped(self, e: Event) -> None:
        self.dropped[e.get("mm")] = e.get("busy_with")
        self._marker(e, f"wake_oom_reaper dropped pid {e.pid}: mm_to_reap busy with pid {e.get('busy_with')}")

    def on_hung_task(self, e: Event) -> None:
        self._marker(e, f"INFO: task {e.comm}:{e.pid} blocked for more than {e.get('seconds')} seconds")

    def on_oops(self, e: Event) -> None:
        self.oopses.append(f"pid {e.pid} ({e.comm}): {e.get('kind')}: {e.get('text')}")
        self._marker(e, f"oops in pid {e.pid} ({e.comm}): {e.get('kind')}")

    def on_panic(self, e: Event) -> None:
        self.panic = str(e.get("text"))
        self._marker(e, f"panic: {self.panic}")

    def on_verdict(self, e: Event) -> None:
        self.verdict = dict(e.fields, t=e.t)
        self._marker(e, f"verdict: {e.get('outcome')}")


# -- the diagnosis --------------------------------------------------------------
def _victim_mm(r: _Replay, pid: int) -> int | None:
    for k in r.kills:
        if k.get("pid") == pid:
            return k.get("mm")
    t = r.tracks.get(pid)
    return t.mm if t else None


def _blockers(r: _Replay) -> list[Track]:
    users = [t for t in r.tracks.values() if not t.kthread and t.alive]
    memdie = [t for t in users if t.memdie_since is not None]
    if memdie:
        return memdie
    return [t for t in users if t.exiting_since is not None and t.sleep is not None
            and t.sleep.detail.get("kind") == "rw_semaphore"]


def _chain(r: _Replay, start: Track) -> tuple[list[Track], list[LockState], str]:
    """Follow 'waits for a lock held by' from ``start``; the text of each hop."""
    tasks, locks, parts = [start], [], []
    t: Track | None = start
    seen = {start.pid}
    while t is not None and len(tasks) <= 8:
        if t.alloc is not None:
            gfp = int(t.alloc.detail.get("gfp") or 0)
            nofs = "" if gfp & GFP_FS else " with GFP_NOFS, which never calls the OOM killer"
            parts.append(f"which has looped in the page allocator since {t.alloc.start:.1f} s{nofs}")
            break
        s = t.sleep
        if s is None or not s.detail.get("lock_id"):
            if t is not start:
                parts.append(f"which is {'asleep in ' + str(s.detail.get('wchan')) if s else 'running'}")
            break
        lk = r.locks.get(int(s.detail["lock_id"]))
        if lk is None:
            break
        locks.append(lk)
        holders = [r.tracks[p] for p in lk.holders if p in r.tracks]
        if lk.kind == "rw_semaphore" and lk.writer is not None and lk.writer in r.tracks:
            h = r.tracks[lk.writer]
            desc = f"held for write by {h.who()}"
        elif holders:
            h = holders[0]
            queued = [x for x in r.tracks.values() if x.alive and x.waiting == (lk.lock_id, False)]
            if lk.kind == "rw_semaphore":
                desc = f"held for read by {', '.join(x.who() for x in holders)}"
                if queued:
                    desc += f", with {queued[0].who()} queued for write"
            else:
                desc = f"held by {h.who()}"
        else:
            queued = [x for x in r.tracks.values() if x.alive and x.waiting == (lk.lock_id, False)
                      and x is not t]
            desc = "with no holder" + (f", behind {queued[0].who()} queued for write" if queued else "")
            parts.append(f"{'waits' if t is not start else 'waiting'} for {lk.describe()} {desc}")
            break
        verb = "waiting" if t is start else "which waits"
        parts.append(f"{verb} for {lk.describe()} {desc}")
        if h.pid in seen:
            break
        seen.add(h.pid)
        tasks.append(h)
        t = h
    return tasks, locks, ", ".join(parts)


def _reaper_status(r: _Replay, victim: Track | None) -> str:
    if not any(t.comm == "oom_reaper" and t.kthread for t in r.tracks.values()):
        return "oom_reaper: not running"
    if victim is None:
        return "oom_reaper: idle"
    mm = _victim_mm(r, victim.pid)
    if any(pid == victim.pid or m == mm for pid, m in r.failed):
        return (f"oom_reaper: unable to reap pid {victim.pid}: every down_read_trylock(mmap_sem) "
                f"failed, 10 tries HZ/10 apart")
    if mm in r.dropped:
        return f"oom_reaper: never queued pid {victim.pid}: mm_to_reap was busy with pid {r.dropped[mm]}"
    if mm in r.forbidden_mms:
        return (f"oom_reaper: not woken for pid {victim.pid}: its mm is shared with an "
                f"OOM_SCORE_ADJ_MIN process")
    if mm in r.reaped_mms:
        t, pages = r.reaped_mms[mm]
        return (f"oom_reaper: reaped pid {victim.pid} at {t:.1f} s ({pages} pages), but patch 1 keeps "
                f"TIF_MEMDIE and the memory went to other allocations")
    return "oom_reaper: idle"


def diagnose(r: _Replay, partial: bool, problems: list[str]) -> Diagnosis:
    users = [t for t in r.tracks.values() if not t.kthread]
    if r.panic is not None:
        return Diagnosis("oom_panic", None, f"Nothing was killable: panic ({r.panic}).", [], [], [],
                         partial, problems)
    if users and all(not t.alive for t in users):
        victims = sorted({k["pid"] for k in r.kills})
        if not r.kills and not any(t.memdie_since for t in users) and \
                not any(m.kind == "oom_kill" for m in r.markers):
            return Diagnosis("no_oom", None, "No OOM kill: every task ran to its end.", [], [], [],
                             partial, problems)
        if r.reaped_mms:
            mm, (t, pages) = next(iter(r.reaped_mms.items()))
            kill_t = r.kills[0]["t"] if r.kills else t
            return Diagnosis("recovered_by_reaper", None,
                             f"oom_reaper freed {pages} pages {1000 * (t - kill_t):.0f} ms after the OOM "
                             f"kill, while the victim could not run; the looping allocation then "
                             f"succeeded and every task exited.", victims, [], [], partial, problems)
        kill_t = r.kills[0]["t"] if r.kills else 0.0
        v = r.tracks.get(victims[0]) if victims else None
        gone = f" and exited {1000 * ((v.died or kill_t) - kill_t):.0f} ms later" if v else ""
        return Diagnosis("victim_exited", None,
                         f"The victim was killed at {kill_t:.1f} s{gone}, on its own; its memory "
                         f"came back.", victims, [], [], partial, problems)
    outcome = "lockup"
    if any(m is not None and m not in r.freed_mms for _, m in r.failed):
        outcome = "reap_failed_lockup"
    blockers = _blockers(r)
    if not blockers:
        loopers = [t for t in users if t.alive and t.alloc is not None]
        nofs = [t for t in loopers if not int(t.alloc.detail.get("gfp") or 0) & GFP_FS]
        text = (f"No OOM victim: {len(loopers)} tasks loop in the page allocator "
                f"({', '.join(t.who() for t in loopers)})"
                + (f", {len(nofs)} of them with GFP_NOFS, which never invokes the OOM killer" if nofs else "")
                + f"; {sum(1 for t in users if t.alive and t.sleep is not None)} tasks sleep.")
        return Diagnosis(outcome, "no_victim", text, [], [t.pid for t in loopers], [], partial, problems)
    kinds = [b.sleep.detail.get("kind") if b.sleep is not None else None for b in blockers]
    has_reaper = any(t.comm == "oom_reaper" and t.kthread for t in r.tracks.values())
    if "rw_semaphore" in kinds:
        shape = "mmap_sem"
    elif "mutex" in kinds:
        mms = {_victim_mm(r, b.pid) for b, kind in zip(blockers, kinds) if kind == "mutex"}
        if has_reaper and all(m in r.dropped or m in r.forbidden_mms for m in mms):
            shape = "mutex_unreaped"
        elif has_reaper and all(m in r.reaped_mms for m in mms):
            shape = "mutex_reaped"
        else:
            shape = "mutex"
    else:
        shape = "other"
    # Tell the story of the victim whose wait gives the shape its name.
    want = {"mmap_sem": "rw_semaphore", "other": None}.get(shape, "mutex")
    v = next((b for b, kind in zip(blockers, kinds) if kind == want), blockers[0])
    chain, locks, hops = _chain(r, v)
    state = v.sleep.what if v.sleep is not None else ("R" if v.alloc is not None else "?")
    since = v.sleep.start if v.sleep is not None else (v.alloc.start if v.alloc else r.t_end)
    why = f"pid {v.pid} has TIF_MEMDIE" if v.memdie_since is not None else \
        f"pid {v.pid} is exiting with its mm"
    sentence = (f"{v.who()} has been in {state} state for {r.t_end - since:.0f} s {hops}; "
                f"the OOM killer aborted {r.aborts} times because {why}; {_reaper_status(r, v)}")
    return Diagnosis(outcome, shape, sentence, [b.pid for b in blockers], [t.pid for t in chain],
                     [lk.name for lk in locks], partial, problems)


def analyze(log: FlightLog) -> Analysis:
    r = _Replay(log)
    problems = list(log.problems)
    r.run(problems)
    lost = log.header.get("lost") or 0
    if lost:
        problems.insert(0, f"the ring wrapped: the {lost} oldest events were lost")
    if not log.events:
        d = Diagnosis("undetermined", None, "The log holds no events.", [], [], [], True, problems)
    elif lost:
        d = _diagnose_wrapped(r, problems)
    else:
        d = diagnose(r, bool(problems), problems)
    if r.oopses:
        d.sentence += " Task bodies died of exceptions: " + "; ".join(r.oopses[:3]) + "."
    return Analysis(log, r.tracks, r.locks, sorted(r.markers, key=lambda m: m.t), r.t_end, r.aborts,
                    d, r.verdict)


def _diagnose_wrapped(r: _Replay, problems: list[str]) -> Diagnosis:
    """The beginning of the run is gone (births, kills, locks taken): replaying
    what is left would invent a story. Say what the model recorded at its
    verdict, if that survived, as a partial analysis."""
    v = r.verdict
    if v is None:
        return Diagnosis("undetermined", None, "Too much of the log was lost to the ring wrapping, "
                         "and no verdict record survived; rerun with a larger ring_size.",
                         [], [], [], True, problems)
    chain = [hop for hop in v.get("chain") or [] if isinstance(hop, dict)]
    text = str(v.get("explanation") or "") or f"The model's verdict: {v.get('outcome')}."
    problems.append("outcome taken from the verdict record: the replay lacks the beginning of the run")
    return Diagnosis(str(v.get("outcome")), v.get("shape"), text, list(v.get("victims") or []),
                     [int(h["pid"]) for h in chain if "pid" in h],
                     [str(h["waits_on"]) for h in chain if h.get("holders")], True, problems)


# -- text ----------------------------------------------------------------------
def format_text(a: Analysis) -> str:
    h = a.log.header
    out = [f"post-mortem of {a.log.path}: {h.get('scenario') or 'soak seed ' + str(h.get('seed', '?'))}, "
           f"policy {h.get('policy')}, {len(a.log.events)} events, {a.t_end:.3f} model seconds"]
    if a.diagnosis.partial:
        out.append("PARTIAL ANALYSIS: " + "; ".join(a.diagnosis.problems or ["incomplete log"]))
    d = a.diagnosis
    out.append(f"\noutcome: {d.outcome}" + (f" ({d.shape})" if d.shape else ""))
    out.append(f"diagnosis: {d.sentence}")
    out.append("\ntimeline (model seconds):")
    for t in sorted(a.tracks.values(), key=lambda t: t.pid):
        end = f"exited {t.died:.3f}" if t.died is not None else "alive at the end"
        bits = [f"pid {t.pid:<5} {t.comm:<12} {'kthread ' if t.kthread else ''}born {t.born:.3f}, {end}"]
        if t.memdie_since is not None:
            bits.append(f"TIF_MEMDIE since {t.memdie_since:.3f}")
        if t.sigkill_at is not None:
            bits.append(f"SIGKILL at {t.sigkill_at:.3f}")
        long_sleeps = [s for s in t.sleeps if (s.end or a.t_end) - s.start >= 0.05 and s.what == "D"]
        for s in long_sleeps[-3:]:
            bits.append(f"D on {s.detail.get('wchan')} {s.start:.3f}-{'end' if s.end is None else f'{s.end:.3f}'}")
        loops = [x for x in t.allocs if (x.end or a.t_end) - x.start >= 0.05]
        for x in loops[-2:]:
            bits.append(f"in the allocator {x.start:.3f}-{'end' if x.end is None else f'{x.end:.3f}'}")
        held = sorted({x.what for x in t.holds if x.end is None})
        if held:
            bits.append("holds " + ", ".join(held))
        out.append("  " + "; ".join(bits))
    if a.markers:
        out.append("\nevents:")
        for m in a.markers:
            if m.kind == "skip_task_reaping":
                continue
            out.append(f"  {m.t:10.6f}  {m.text}")
    return "\n".join(out)


def to_json(a: Analysis) -> dict[str, Any]:
    d = a.diagnosis
    return {
        "log": a.log.path, "header": a.log.header, "partial": d.partial, "problems": d.problems,
        "outcome": d.outcome, "shape": d.shape, "diagnosis": d.sentence, "victims": d.victims,
        "chain": d.chain, "locks": d.locks, "oom_aborts": a.oom_aborts, "t_end": a.t_end,
        "tasks": [{"pid": t.pid, "comm": t.comm, "tgid": t.tgid, "kthread": t.kthread, "born": t.born,
                   "died": t.died, "tif_memdie_since": t.memdie_since, "sigkill_at": t.sigkill_at,
                   "sleeps": [[s.start, s.end, s.what, s.detail.get("wchan")] for s in t.sleeps],
                   "allocating": [[x.start, x.end] for x in t.allocs],
                   "holds": [[x.start, x.end, x.what] for x in t.holds]}
                  for t in sorted(a.tracks.values(), key=lambda t: t.pid)],
        "markers": [{"t": m.t, "kind": m.kind, "pid": m.pid, "text": m.text} for m in a.markers],
        "model_verdict": a.model_verdict,
    }
