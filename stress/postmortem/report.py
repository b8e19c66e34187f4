"""An analysis as text (for a terminal or a test report) and as JSON."""

from __future__ import annotations

from typing import Any

from kthreads import Ev

from .analysis import Analysis


def describe_source(a: Analysis) -> str:
    """'test tests/test_x.py::test_y, policy none, 1234 events, 3.000 model seconds'."""
    policy = a.log.header.get("policy")
    policy_text = f"policy {policy}" if isinstance(policy, str) and policy else "policy not recorded"
    return f"{a.log.origin()}, {policy_text}, {len(a.log.events)} events, {a.t_end:.3f} model seconds"


def format_text(a: Analysis) -> str:
    d = a.diagnosis
    out = [f"post-mortem of {a.log.path}: {describe_source(a)}"]
    if d.partial:
        out.append("PARTIAL ANALYSIS: " + "; ".join(d.problems or ["incomplete log"]))
    out.append(f"\noutcome: {d.headline()}")
    out.append(f"diagnosis: {d.sentence}")
    out.append("\ntimeline (model seconds):")
    for t in sorted(a.tracks.values(), key=lambda t: t.pid):
        end = f"exited {t.died:.3f}" if t.died is not None else "alive at the end"
        kind = "" if t.kind.value == "user" else f"{t.kind.value} "
        bits = [f"pid {t.pid:<5} {t.comm:<12} {kind}born {t.born:.3f}, {end}"]
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
    shown = [m for m in a.markers if m.kind != Ev.SKIP_TASK_REAPING.value]
    if shown:
        out.append("\nevents:")
        for m in shown:
            out.append(f"  {m.t:10.6f}  {m.text}")
    return "\n".join(out)


def to_json(a: Analysis) -> dict[str, Any]:
    d = a.diagnosis
    return {
        "log": a.log.path, "source": a.log.origin(), "header": a.log.header, "partial": d.partial,
        "problems": d.problems, "skipped_lines": a.log.skipped_lines,
        "outcome": d.outcome.value, "shape": d.shape.value if d.shape else None, "diagnosis": d.sentence,
        "victims": d.victims, "chain": d.chain, "locks": d.locks, "oom_aborts": a.oom_aborts,
        "t_end": a.t_end,
        "tasks": [{"pid": t.pid, "comm": t.comm, "tgid": t.tgid, "kind": t.kind.value,
                   "kthread": t.kthread, "born": t.born,
                   "died": t.died, "tif_memdie_since": t.memdie_since, "sigkill_at": t.sigkill_at,
                   "sleeps": [[s.start, s.end, s.what, s.detail.get("wchan")] for s in t.sleeps],
                   "allocating": [[x.start, x.end] for x in t.allocs],
                   "holds": [[x.start, x.end, x.what] for x in t.holds]}
                  for t in sorted(a.tracks.values(), key=lambda t: t.pid)],
        "markers": [{"t": m.t, "kind": m.kind, "pid": m.pid, "text": m.text} for m in a.markers],
        "model_verdict": a.model_verdict,
    }
