"""Deciding how a run ended from its replay alone: the outcome, the lockup
shape, the wait-for chain and the sentence that tells it.

The rules, all read from events:

* a ``panic`` event: ``oom_panic``;
* every user task exited: ``no_oom``, ``recovered_by_reaper`` or
  ``victim_exited``;
* some task alive: a lockup only with evidence, as the model's verdict has
  it: no progress (no page allocated, no task exited) for at least the
  lockup window before the end (the header's ``lockup_window``, else
  ``hung_task_timeout``), the reaper not holding an mm, and either a
  ``hung_task`` report for a task still in D or (no task in
  TASK_UNINTERRUPTIBLE) every live task asleep or looping in the allocator.
  Without that evidence: ``undetermined``, saying where the log ends and
  what was going on there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kthreads import GFP, Policy
from kthreads.kernel import POLICY_OPS

from ..outcomes import Outcome, Shape
from ..verdict import SHAPE_WAIT
from .replay import LockState, Replay, Track

#: An event's timestamp is taken when it is recorded, a moment after the
#: progress it reports; when another thread runs in between (a GIL switch is
#: 5 ms of real time, a quarter of a model second at speed 50) the log shows
#: the progress later than the model saw it. This fraction of the window is
#: forgiven, so that a stall the model called a lockup is one here too.
WINDOW_SLACK = 0.2
MAX_HOPS = 8
EnumT = TypeVar("EnumT", bound=enum.Enum)


@dataclass
class Diagnosis:
    outcome: Outcome
    shape: Shape | None
    sentence: str
    victims: list[int]
    chain: list[int]  # pids from the victim to the task looping in the allocator
    locks: list[str]  # the lock behind each hop of the chain
    partial: bool
    problems: list[str] = field(default_factory=list)

    def headline(self) -> str:
        """'lockup (mutex)'."""
        return f"{self.outcome.value}" + (f" ({self.shape.value})" if self.shape else "")


def _victim_mm(r: Replay, pid: int) -> int | None:
    for kill in r.kills:
        if kill.get("pid") == pid:
            return kill.get("mm")
    t = r.tracks.get(pid)
    return t.mm if t else None


def _nofs(t: Track) -> bool:
    return t.alloc is not None and not int(t.alloc.detail.get("gfp") or 0) & GFP.FS


def _self_victim_mms(r: Replay) -> set[int | None]:
    """The mms of victims marked without a kill (TIF_MEMDIE, no oom_kill
    record) under a design that hands such victims to nobody: before 4.7's
    try_oom_reaper (``PolicyOps.reap_self_victims``)."""
    try:
        if POLICY_OPS[Policy(r.log.header.get("policy"))].reap_self_victims:
            return set()
    except (ValueError, KeyError):
        return set()
    killed = {kill.get("pid") for kill in r.kills}
    # Reaped later after all (through a kill of its process): not unqueued.
    return {_victim_mm(r, pid) for pid in r.marked if pid not in killed} - set(r.reaped_mms)


def exiting_task_rule(policy: object) -> bool:
    """Whether the log's policy aborts the OOM scan on an exiting task (4.5's rule)."""
    try:
        return bool(POLICY_OPS[Policy(policy)].exiting_task_aborts_scan)
    except (ValueError, KeyError):
        return False


def _blockers(r: Replay, exiting_aborts: bool = False) -> list[Track]:
    """The tasks the OOM killer waits for: TIF_MEMDIE victims, else, under 4.5's
    rule only (``PolicyOps.exiting_task_aborts_scan``), exiting tasks asleep on
    an rw_semaphore (mmap_sem in exit_mm). 4.6 scores an exiting task like
    the others, so there it blocks nobody."""
    live = [t for t in r.users() if t.alive]
    memdie = [t for t in live if t.memdie_since is not None]
    if memdie or not exiting_aborts:
        return memdie
    return [t for t in live if t.exiting_since is not None and t.sleep is not None
            and t.sleep.detail.get("kind") == "rw_semaphore"]


def next_hop(r: Replay, t: Track, lk: LockState) -> tuple[Track | None, str]:
    """Whom ``t``, queued on ``lk``, waits for, and how to say it.

    Behind other waiters on an rw_semaphore not held for write, ``t`` waits
    for the head of the queue: a writer (a reader at the head would have
    been granted already), which in turn waits for the holders. Otherwise it
    waits for the holders (the first one, when several readers hold it)."""
    queue = [pid for pid in lk.queue if pid in r.tracks and r.tracks[pid].alive]
    if lk.kind == "rw_semaphore" and lk.writer is None and t.pid in queue and queue.index(t.pid) > 0:
        head = r.tracks[queue[0]]
        mode = "read" if head.waiting is not None and head.waiting[1] else "write"
        return head, f"behind {head.who()} queued for {mode}"
    holders = [r.tracks[pid] for pid in lk.holders if pid in r.tracks]
    if lk.kind == "rw_semaphore" and lk.writer is not None and lk.writer in r.tracks:
        return r.tracks[lk.writer], f"held for write by {r.tracks[lk.writer].who()}"
    if not holders:
        return None, "with no holder"
    if lk.kind == "rw_semaphore":
        desc = f"held for read by {', '.join(h.who() for h in holders)}"
        writers = [r.tracks[pid] for pid in queue if pid != t.pid
                   and r.tracks[pid].waiting is not None and not r.tracks[pid].waiting[1]]
        if writers:
            desc += f", with {writers[0].who()} queued for write"
        return holders[0], desc
    return holders[0], f"held by {holders[0].who()}"


def wait_chain(r: Replay, start: Track) -> tuple[list[Track], list[LockState], str]:
    """Follow 'waits for' from ``start`` to an allocator or a dead end; the text of each hop."""
    tasks, locks, parts = [start], [], []
    t: Track = start
    while len(tasks) <= MAX_HOPS:
        if t.alloc is not None:
            nofs = " with GFP_NOFS, which never calls the OOM killer" if _nofs(t) else ""
            parts.append(f"which has looped in the page allocator since {t.alloc.start:.3f} s{nofs}")
            break
        s = t.sleep
        lk = r.locks.get(int(s.detail.get("lock_id") or 0)) if s is not None else None
        if lk is None:
            if t is not start:
                parts.append(f"which is {'asleep in ' + str(s.detail.get('wchan')) if s else 'running'}")
            break
        after, desc = next_hop(r, t, lk)
        verb = "waiting" if t is start else "which waits"
        parts.append(f"{verb} for {lk.describe()} {desc}")
        if after is None:
            break
        locks.append(lk)
        if after.pid in {x.pid for x in tasks}:
            break  # a cycle: a deadlock
        tasks.append(after)
        t = after
    return tasks, locks, ", ".join(parts)


def _reaper_status(r: Replay, victim: Track | None) -> str:
    if not r.has_reaper():
        return "oom_reaper: not running"
    if victim is None:
        return "oom_reaper: idle"
    mm = _victim_mm(r, victim.pid)
    if any(pid == victim.pid or m == mm for pid, m in r.failed):
        return (f"oom_reaper: gave up on pid {victim.pid}: every down_read_trylock(mmap_sem) "
                f"failed, 10 tries HZ/10 apart (patch 1 printed nothing about it)")
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


@dataclass(frozen=True)
class Evidence:
    """Why the replay's end is, or is not, a lockup."""

    locked_up: bool
    missing: list[str]  # what a lockup would need and the log does not show


def lockup_evidence(r: Replay, window: float | None) -> Evidence:
    missing = []
    need = max(0.0, (window or 0.0) * (1 - WINDOW_SLACK))
    last = r.last_progress if r.last_progress is not None else 0.0
    stalled = r.t_end - last
    if stalled < need:
        since = f"the last allocation, exit or reap at {last:.3f} s" if r.last_progress is not None else "boot"
        missing.append(f"no progress for only {stalled:.3f} s (since {since}), less than the "
                       f"{window:g} s lockup window")
    if r.reaper_busy:
        pids = ", ".join(f"pid {pid}" for pid in r.reaper_busy.values())
        missing.append(f"the oom_reaper was still working on {pids}")
    hung = [t for pid in r.hung if (t := r.tracks.get(pid)) is not None and t.alive
            and t.sleep is not None and t.sleep.what == "D"]
    if not hung:
        live = [t for t in r.users() if t.alive]
        # As the model's verdict: killable sleepers, which khungtaskd ignores,
        # stuck behind a task that loops in the allocator.
        if any(t.uninterruptible for t in live):
            missing.append("no hung-task report for a task still in D")
        elif r.orphaned_futex_waiters():
            # As the model's verdict: a waiter on a robust futex whose owner's
            # exit read a zapped list head, nobody able to run.
            if not all(t.sleep is not None or t.alloc is not None for t in live):
                missing.append("a task waits on an orphaned robust futex, but another can still run")
        elif not any(t.alloc is not None for t in live):
            missing.append("no hung-task report, and nobody loops in the allocator")
        elif not all(t.sleep is not None or t.alloc is not None for t in live):
            missing.append("no hung-task report, and a task can still run")
    return Evidence(not missing, missing)


def _undetermined(r: Replay, evidence: Evidence, partial: bool, problems: list[str]) -> Diagnosis:
    live = [t for t in r.users() if t.alive]
    shown = "; ".join(f"{t.who()} {t.doing()}" for t in live[:4]) + ("; ..." if len(live) > 4 else "")
    last = f"; the last event: {r.last_event.describe()}" if r.last_event is not None else ""
    sentence = (f"the log ends at {r.t_end:.3f} s with {len(live)} task{'s' if len(live) != 1 else ''} "
                f"alive ({shown}); no lockup evidence: {'; '.join(evidence.missing)}{last}.")
    return Diagnosis(Outcome.UNDETERMINED, None, sentence, [], [], [], partial, problems)


def _all_exited(r: Replay, users: list[Track], partial: bool, problems: list[str]) -> Diagnosis:
    victims = sorted({kill["pid"] for kill in r.kills})
    mreleased = r.mrelease_reaps()
    if mreleased and not r.reaped_mms:
        m = mreleased[0]
        target = r.tracks.get(m.get("target"))
        killer = r.tracks.get(m["pid"])
        return Diagnosis(Outcome.RECOVERED_BY_REAPER, None,
                         f"{killer.who() if killer else 'a task'} called process_mrelease on "
                         f"{target.who() if target else 'its victim'} at {m['t']:.3f} s, which freed "
                         f"{m.get('pages')} pages while the victim could not run; the looping "
                         f"allocation then succeeded and every task exited.",
                         [target.pid] if target else [], [], [], partial, problems)
    if not r.kills and not r.marked:
        return Diagnosis(Outcome.NO_OOM, None, "No OOM kill: every task ran to its end.", [], [], [],
                         partial, problems)
    if not r.kills:
        marked = ", ".join(r.tracks[pid].who() if pid in r.tracks else f"pid {pid}" for pid in sorted(r.marked))
        if r.reaped_mms:  # 4.7's try_oom_reaper: a victim marked without a kill is reaped too
            _, pages = next(iter(r.reaped_mms.values()))
            return Diagnosis(Outcome.RECOVERED_BY_REAPER, None,
                             f"The OOM killer killed nobody: it gave TIF_MEMDIE to {marked}, which was "
                             f"already exiting (or had SIGKILL pending), and handed it to oom_reaper, "
                             f"which freed {pages} pages; every task exited.", sorted(r.marked), [], [],
                             partial, problems)
        return Diagnosis(Outcome.VICTIM_EXITED, None,
                         f"The OOM killer killed nobody: it gave TIF_MEMDIE to {marked}, which was "
                         f"already exiting (or had SIGKILL pending) and then exited; every task "
                         f"exited.", sorted(r.marked), [], [], partial, problems)
    if r.reaped_mms:
        t, pages = next(iter(r.reaped_mms.values()))
        kill_t = r.kills[0]["t"] if r.kills else t
        return Diagnosis(Outcome.RECOVERED_BY_REAPER, None,
                         f"oom_reaper freed {pages} pages {1000 * (t - kill_t):.0f} ms after the OOM "
                         f"kill, while the victim could not run; the looping allocation then "
                         f"succeeded and every task exited.", victims, [], [], partial, problems)
    kill_t = r.kills[0]["t"] if r.kills else 0.0
    v = r.tracks.get(victims[0]) if victims else None
    gone = f" and exited {1000 * ((v.died or kill_t) - kill_t):.0f} ms later" if v else ""
    return Diagnosis(Outcome.VICTIM_EXITED, None,
                     f"The victim was killed at {kill_t:.1f} s{gone}, on its own; its memory "
                     f"came back.", victims, [], [], partial, problems)


def _shape(r: Replay, blockers: list[Track], kinds: list[str | None]) -> Shape:
    if "rw_semaphore" in kinds:
        return Shape.MMAP_SEM
    if "mutex" not in kinds:
        return Shape.OTHER
    if r.has_reaper():
        mms = {_victim_mm(r, b.pid) for b, kind in zip(blockers, kinds) if kind == "mutex"}
        unqueued = _self_victim_mms(r)
        if all(m in r.dropped or m in r.forbidden_mms or m in unqueued for m in mms):
            return Shape.MUTEX_UNREAPED
        if all(m in r.reaped_mms for m in mms):
            return Shape.MUTEX_REAPED
    return Shape.MUTEX


def diagnose(r: Replay, window: float | None, partial: bool, problems: list[str]) -> Diagnosis:
    """The diagnosis of a replay whose log kept the whole run (the ring did not wrap)."""
    users = r.users()
    if r.panic is not None:
        return Diagnosis(Outcome.OOM_PANIC, None, f"Nothing was killable: panic ({r.panic}).", [], [], [],
                         partial, problems)
    if all(not t.alive for t in users):
        return _all_exited(r, users, partial, problems)
    evidence = lockup_evidence(r, window)
    if not evidence.locked_up:
        return _undetermined(r, evidence, partial, problems)
    outcome = Outcome.LOCKUP
    if any(m is not None and m not in r.freed_mms for _, m in r.failed):
        outcome = Outcome.REAP_FAILED_LOCKUP
    blockers = _blockers(r, exiting_task_rule(r.log.header.get("policy")))
    orphans = r.orphaned_futex_waiters()
    if not blockers and orphans:
        w = orphans[0]
        owners = [o for o in (w.sleep.detail.get("owners") or []) if o in r.robust_zapped]
        owner = r.tracks.get(owners[0]) if owners else None
        text = (f"{w.who()} has slept in FUTEX_WAIT on {w.sleep.detail.get('wchan')} since "
                f"{w.sleep.start:.3f} s; its owner {owner.who() if owner else '?'} died at "
                f"{owner.died if owner and owner.died is not None else 0:.3f} s and its exit read a "
                f"zapped robust list head"
                + (" (oom_reaper had reaped its memory)" if r.reaped_mms else "")
                + ", so the futex was never marked OWNER_DIED and nobody will wake the waiter.")
        return Diagnosis(outcome, Shape.FUTEX, text, [], [w.pid] + ([owner.pid] if owner else []),
                         [str(w.sleep.detail.get("wchan"))], partial, problems)
    if not blockers:
        loopers = [t for t in users if t.alive and t.alloc is not None]
        nofs = [t for t in loopers if _nofs(t)]
        text = (f"No OOM victim: {len(loopers)} tasks loop in the page allocator "
                f"({', '.join(t.who() for t in loopers)})"
                + (f", {len(nofs)} of them with GFP_NOFS, which never invokes the OOM killer" if nofs else "")
                + f"; {sum(1 for t in users if t.alive and t.sleep is not None)} tasks sleep.")
        return Diagnosis(outcome, Shape.NO_VICTIM, text, [], [t.pid for t in loopers], [], partial, problems)
    kinds = [b.sleep.detail.get("kind") if b.sleep is not None else None for b in blockers]
    shape = _shape(r, blockers, kinds)
    # Tell the story of the victim whose wait gives the shape its name.
    want = SHAPE_WAIT.get(shape)  # the same choice as the model's story_victim
    v = next((b for b, kind in zip(blockers, kinds) if kind == want), blockers[0])
    chain, locks, hops = wait_chain(r, v)
    state = v.sleep.what if v.sleep is not None else ("R" if v.alloc is not None else "an unknown")
    since = v.sleep.start if v.sleep is not None else (v.alloc.start if v.alloc else r.t_end)
    why = f"pid {v.pid} has TIF_MEMDIE" if v.memdie_since is not None else \
        f"pid {v.pid} is exiting with its mm"
    sentence = (f"{v.who()} has been in {state} state for {r.t_end - since:.1f} s {hops}; "
                f"the OOM killer aborted {r.aborts} times because {why}; {_reaper_status(r, v)}")
    return Diagnosis(outcome, shape, sentence, [b.pid for b in blockers], [t.pid for t in chain],
                     [lk.name for lk in locks], partial, problems)


def _parse_enum(kind: type[EnumT], value: Any) -> EnumT | None:
    try:
        return kind(value)
    except (ValueError, TypeError):
        return None


def diagnose_wrapped(r: Replay, problems: list[str]) -> Diagnosis:
    """The beginning of the run is gone (births, kills, locks taken): replaying
    what is left would invent a story. Say what the model recorded at its
    verdict, if that survived, as a partial analysis."""
    v = r.verdict
    if v is None:
        return Diagnosis(Outcome.UNDETERMINED, None,
                         "too much of the log was lost to the ring wrapping, and no verdict record "
                         "survived; rerun with a larger ring_size.", [], [], [], True, problems)
    outcome = _parse_enum(Outcome, v.get("outcome")) or Outcome.UNDETERMINED
    raw_chain, raw_victims = v.get("chain"), v.get("victims")
    chain = [hop for hop in raw_chain if isinstance(hop, dict)] if isinstance(raw_chain, list) else []
    text = str(v.get("explanation") or "") or f"The model's verdict: {outcome.value}."
    problems.append("outcome taken from the verdict record: the replay lacks the beginning of the run")
    victims = [pid for pid in raw_victims if isinstance(pid, int)] if isinstance(raw_victims, list) else []
    return Diagnosis(outcome, _parse_enum(Shape, v.get("shape")), text, victims,
                     [hop["pid"] for hop in chain if isinstance(hop.get("pid"), int)],
                     [str(hop.get("waits_on")) for hop in chain if hop.get("waits_for")], True, problems)
