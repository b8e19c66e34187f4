"""One-paragraph explanations of an episode, from the model's state at its end."""

from __future__ import annotations

from kthreads import GFP, Ev, Kernel, Task

from .outcomes import Outcome
from .verdict import blocking_tasks, chain_from, orphaned_futex_waiters


def _who(t: Task) -> str:
    return f"{t.comm} (pid {t.pid})"


def wait_chain(k: Kernel, start: Task) -> str:
    """'sleeps in D on mutex inode_lock held by writer (pid 100) which has looped in the page allocator ...'"""
    parts = []
    for hop in chain_from(k, start):
        state = hop["state"]
        if "allocating_since" in hop:
            parts.append(f"has looped in the page allocator since {hop['allocating_since']:.3f} s")
            break
        what = hop.get("waits_on")
        if "holders" not in hop:  # not a lock: nobody to follow
            kind = f"{hop['kind']} " if "kind" in hop else ""
            parts.append(f"sleeps in {state}" + (f" on {kind}{what}" if what else ""))
            break
        lock = f"{hop['kind']} {what}"
        ahead = k.find_task_by_pid(hop["behind"]) if hop.get("behind") is not None else None
        if ahead is not None:  # queued behind a writer, which waits for the holders
            parts.append(f"sleeps in {state} on {lock} behind {_who(ahead)}, queued for write, which")
            continue
        holders = [o for o in (k.find_task_by_pid(p) for p in hop["holders"]) if o is not None]
        if not holders:
            parts.append(f"sleeps in {state} on {lock} with no holder")
            break
        if hop["held_for_write"]:
            held = "held for write"
        elif hop["kind"] == "rw_semaphore":
            held = "held for read" + (" with a writer queued" if hop["queued_writer"] else "")
        else:
            held = "held"
        parts.append(f"sleeps in {state} on {lock} {held} by " + ", ".join(_who(o) for o in holders)
                     + " which")
    return " ".join(parts).removesuffix(" which")


def explain(k: Kernel, outcome: Outcome, kill_at: float | None, aborts: int | None = None) -> str:
    """``aborts``: the OOM killer's abort count to quote (default: as it stands now)."""
    aborts = k.stats.oom_aborts if aborts is None else aborts
    rs = k.reaper_status()
    if outcome is Outcome.OOM_PANIC:
        return f"Nothing was killable: the kernel panicked ({k.panic_reason})."
    if outcome is Outcome.NO_OOM:
        return "Memory never ran out: no OOM kill."
    if outcome in (Outcome.LOCKUP, Outcome.REAP_FAILED_LOCKUP):
        blockers = blocking_tasks(k)
        sentences = []
        for v in blockers:
            if v.tif_memdie:
                flags = "has TIF_MEMDIE" + (" and SIGKILL pending" if v.sigkill_pending else "")
            else:
                flags = "is exiting with its mm"
            sentences.append(f"{_who(v)} {flags} but {wait_chain(k, v)}.")
        orphans = orphaned_futex_waiters(k.tasks())
        f = orphans[0].wchan if orphans else None  # once: it may be woken meanwhile
        if not blockers and getattr(f, "kind", None) == "futex":
            owner = f.owner
            return (f"{_who(orphans[0])} sleeps in FUTEX_WAIT on {f.name}, whose owner "
                    f"{_who(owner) if owner is not None else '?'} died without marking it OWNER_DIED: "
                    f"its exit read a zero robust list head (the reaper had zapped that page "
                    f"{'first' if rs.reaped else 'or it was never mapped'}), so nobody will wake it. "
                    f"No page was allocated, no task exited and nothing was reaped since "
                    f"{k.stats.last_progress:.3f} s.")
        if not blockers:
            loopers = [t for t in k.tasks() if t.alloc_since is not None]
            nofs = [t for t in loopers if t.alloc_gfp is not None and not t.alloc_gfp & GFP.FS]
            sentences.append(f"No OOM victim: {len(loopers)} tasks loop in the page allocator"
                             + (f", {len(nofs)} with GFP_NOFS, which never invokes the OOM killer"
                                if nofs else "") + f"; {len(k.hung_tasks)} tasks are hung.")
            return " ".join(sentences)
        why = "a TIF_MEMDIE victim still lives" if any(v.tif_memdie for v in blockers) \
            else "an exiting task still has its mm"
        since = f"{k.stats.last_progress:.3f} s" if k.stats.last_progress else "boot"
        sentences.append(f"The OOM killer aborted {aborts} times because {why}; "
                         f"no page was allocated, no task exited and nothing was reaped since {since}.")
        if not rs.running:
            sentences.append(f"oom_reaper: not running (policy {k.policy.value}).")
        elif outcome is Outcome.REAP_FAILED_LOCKUP:
            sentences.append("oom_reaper: every down_read_trylock(mmap_sem) failed, "
                             "10 tries HZ/10 apart, and it gave up without a word (patch 1 "
                             "printed nothing; 'unable to reap' came with bc448e89).")
        elif rs.dropped:
            sentences.append(f"oom_reaper: busy with another mm when this victim was killed, "
                             f"so mm_to_reap refused it ({rs.dropped} dropped): never reaped.")
        elif k.stats.oom_kills and rs.reaped == 0 and rs.failed == 0 and \
                any(e.name == Ev.OOM_REAP_FORBIDDEN for e in k.tracer.events()):
            sentences.append("oom_reaper: never woken for this victim "
                             "(its mm is shared with a process that may not be killed).")
        elif any(v.mm is not None and v.mm.id in rs.self_victim_mm_ids for v in blockers):
            sentences.append("oom_reaper: never handed this victim: it was marked without a kill "
                             "(SIGKILL pending or exiting), and no design before 4.7's "
                             "try_oom_reaper queues such a victim.")
        elif rs.reaped:
            sentences.append(f"oom_reaper: reaped {rs.reaped} mm(s), yet the lockup persists.")
        return " ".join(sentences)
    since = "" if kill_at is None else " after the OOM kill at %.3f s" % kill_at
    if outcome is Outcome.RECOVERED_BY_REAPER and k.stats.mrelease_pages and not rs.reaped:
        return (f"process_mrelease reaped {k.stats.mrelease_pages} pages of a process a userspace killer "
                f"had killed, while it could not run; the allocation that was looping succeeded, the "
                f"lock holder went on, and the victim then exited.")
    if outcome is Outcome.RECOVERED_BY_REAPER:
        return (f"oom_reaper reaped {rs.pages_reaped} pages{since} while the victim could not run; "
                f"the allocation that was looping succeeded, the lock holder went on, and the "
                f"victim then exited.")
    if outcome is Outcome.VICTIM_EXITED:
        return f"The victim exited on its own{since} and freed its memory."
    return "No verdict before the deadline."
