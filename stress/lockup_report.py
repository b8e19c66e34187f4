"""The verdict and, for a lockup, the full report, recorded in the flight
recorder (structured) and in the lab's stream (text marked "# lab", never
dmesg: no kernel printed it) before shutdown.

The text borrows the kernel's formats where they fit (``sched_show_task``'s
lines, with the kernel call trace the model's stack stands for; lockdep's
lock dump), and adds what no kernel would print: each task's own Python
stack (a "model stack of" line), and the locks of tasks in TASK_RUNNING,
which 4.6's lock dump skips."""

from __future__ import annotations

from typing import Any

from kthreads import Ev, Kernel, Task, debug_show_all_locks, model_call_traces, sched_show_task
from kthreads.stacktrace import model_stack_line

from .outcomes import Outcome, Shape
from .verdict import blocking_tasks, chain_from, story_victim


def task_report(t: Task, stack: list[str]) -> dict[str, Any]:
    w = t.wchan
    return {"pid": t.pid, "tgid": t.tgid, "comm": t.comm, "state": t.state_letter,
            "tif_memdie": t.tif_memdie, "sigkill": t.sigkill_pending, "exiting": t.exiting,
            "wchan": getattr(w, "name", w), "owners": w.owner_pids() if hasattr(w, "owner_pids") else [],
            "allocating_since": t.alloc_since, "stack": stack}


def record_verdict(k: Kernel, outcome: Outcome, shape: Shape | None, explanation: str,
                   aborts: int | None = None) -> None:
    """The lockup report (for a lockup), then the verdict, last: the record a
    post-mortem ends at, so that it survives the longest in a small ring.
    ``aborts`` is the OOM killer's abort count the explanation quotes."""
    aborts = k.stats.oom_aborts if aborts is None else aborts
    blockers = blocking_tasks(k)
    chain = chain_from(k, story_victim(blockers, shape)) if blockers else []
    if outcome.is_lockup:
        record_lockup_report(k, chain, aborts)
    k.tracer.record(Ev.VERDICT, 0, "", outcome=outcome.value, shape=shape.value if shape else None,
                    explanation=explanation, victims=[t.pid for t in blockers], chain=chain,
                    oom_aborts=aborts)


def record_lockup_report(k: Kernel, chain: list[dict[str, Any]], aborts: int) -> None:
    """Every live task, the locks, the reaper: structured, and as kernel-style text."""
    rs = k.reaper_status()
    reaper = None if not rs.running else {
        "busy_with": rs.busy_with,
        "reaped": rs.reaped, "failed": rs.failed, "dropped": rs.dropped,
        "raced_exit": rs.raced_exit, "skipped": rs.skipped}
    live = [t for t in k.tasks() if t.state_letter not in "ZX"]
    stacks = model_call_traces(live)  # every stack in one read
    locks = debug_show_all_locks(k, running=True)  # the running tasks' locks too
    k.tracer.record(Ev.LOCKUP_REPORT, 0, "",
                    tasks=[task_report(t, stacks[t.pid].lab_trace()) for t in live],
                    locks=locks, oom_aborts=aborts, reaper=reaper,
                    chain=chain, last_progress=k.stats.last_progress)
    since = f"{k.stats.last_progress:.6f} s" if k.stats.last_progress else "boot"
    # The harness's report, not the kernel's: into the lab's stream, never dmesg.
    k.lab(f"Lockup report: no allocation, exit or reap since {since}; OOM killer aborts: {aborts}")
    for t in live:
        if t.state_letter == "D" or t.alloc_since is not None:
            for line in sched_show_task(t, stacks[t.pid]):
                k.lab(line)
            k.lab(model_stack_line(t, stacks[t.pid]))
    for line in locks:
        if line:
            k.lab(line)
