"""A self-contained HTML timeline of an analysed log: inline SVG, no script,
no network. One row per task, coloured by state over model time, lock holds
as bars beneath, markers for kills, reaps, hung tasks and the verdict, the
event details in hover titles, the diagnosis on top."""

from __future__ import annotations

from html import escape

from kthreads import Ev

from .analysis import Analysis
from .replay import TaskKind
from .report import describe_source

KIND_ORDER = {TaskKind.USER: 0, TaskKind.UNKNOWN: 1, TaskKind.KTHREAD: 2}
STATE_COLOURS = {"R": "#7fbf7f", "S": "#9fc5e8", "D": "#e06666", "alloc": "#f6b26b", "Z": "#cccccc",
                 "X": "#eeeeee"}
MARKER_COLOURS = {Ev.OOM_KILL.value: "#990000", Ev.START_TASK_REAPING.value: "#38761d",
                  Ev.FINISH_TASK_REAPING.value: "#38761d", Ev.SKIP_TASK_REAPING.value: "#b45f06",
                  Ev.REAP_FAILED.value: "#b45f06", Ev.REAP_DROPPED.value: "#b45f06",
                  Ev.WAKE_REAPER.value: "#274e13", Ev.HUNG_TASK.value: "#741b47",
                  Ev.VERDICT.value: "#000000", Ev.PANIC.value: "#000000"}


def render_html(a: Analysis, width: int = 1100) -> str:
    rows = sorted(a.tracks.values(), key=lambda t: (KIND_ORDER[t.kind], t.pid))
    left, row_h, top = 170, 34, 40
    span = max(a.t_end, 1e-6)
    scale = (width - left - 20) / span

    def x(t: float) -> float:
        return left + max(0.0, min(t, span)) * scale

    svg = []
    for i, t in enumerate(rows):
        y = top + i * row_h
        title = (f"pid {t.pid} {t.comm}" + ("" if t.kind is TaskKind.USER else f" ({t.kind.value})")
                 + (f", TIF_MEMDIE since {t.memdie_since:.3f}" if t.memdie_since is not None else "")
                 + (f", SIGKILL at {t.sigkill_at:.3f}" if t.sigkill_at is not None else ""))
        svg.append(f'<g class="row" data-pid="{t.pid}" data-comm="{escape(t.comm)}">'
                   f'<title>{escape(title)}</title>'
                   f'<text class="label" x="4" y="{y + 14}">{t.pid} {escape(t.comm[:14])}</text>')
        end = t.died if t.died is not None else a.t_end

        def bar(cls: str, start: float, stop: float, fill: str, title: str, dy: int = 0,
                h: int = 16, attrs: str = "") -> str:
            return (f'<rect class="{cls}"{attrs} x="{x(start):.1f}" y="{y + dy}" '
                    f'width="{max(0.5, x(stop) - x(start)):.1f}" height="{h}" fill="{fill}">'
                    f'<title>{escape(title)}</title></rect>')

        svg.append(bar("state state-R", t.born, end, STATE_COLOURS["R"],
                       f"pid {t.pid} runnable {t.born:.3f}-{end:.3f}"))
        for seg in t.allocs:
            e = seg.end if seg.end is not None else end
            svg.append(bar("state state-alloc", seg.start, e, STATE_COLOURS["alloc"],
                           f"pid {t.pid} in the page allocator {seg.start:.3f}-{e:.3f}"))
        for seg in t.sleeps:
            e = seg.end if seg.end is not None else end
            if e - seg.start < span / 2000 and seg.end is not None:
                continue  # sub-pixel sleeps (one-jiffy naps) would only add noise
            st = seg.what if seg.what in STATE_COLOURS else "D"
            owners = seg.detail.get("owners") or []
            owners = owners if isinstance(owners, list) else [owners]
            owned = f" owned by {','.join(map(str, owners))}" if owners else ""
            svg.append(bar(f"state state-{st}", seg.start, e, STATE_COLOURS[st],
                           f"pid {t.pid} {st} on {seg.detail.get('wchan')}{owned} {seg.start:.3f}-{e:.3f}"))
        for hold in t.holds:
            e = hold.end if hold.end is not None else end
            mode = " for read" if hold.detail.get("read") else ""
            svg.append(bar("hold", hold.start, e, "#674ea7",
                           f"pid {t.pid} holds {hold.what}{mode} {hold.start:.3f}-{e:.3f}", dy=19, h=5,
                           attrs=f' data-lock="{escape(hold.what)}"'))
        if t.died is not None:
            svg.append(bar("state state-X", t.died, a.t_end, STATE_COLOURS["X"],
                           f"pid {t.pid} exited at {t.died:.3f}"))
        svg.append("</g>")
    height = top + len(rows) * row_h + 20
    for m in a.markers:
        if m.kind == Ev.SKIP_TASK_REAPING.value and len(a.markers) > 200:
            continue
        colour = MARKER_COLOURS.get(m.kind, "#444444")
        row = next((i for i, t in enumerate(rows) if t.pid == m.pid), None)
        y0 = top + row * row_h - 4 if row is not None else top - 8
        svg.append(f'<g class="marker marker-{escape(m.kind)}" data-pid="{m.pid}">'
                   f'<line x1="{x(m.t):.1f}" y1="{top - 10}" x2="{x(m.t):.1f}" y2="{height - 20}" '
                   f'stroke="{colour}" stroke-width="1" stroke-dasharray="3,3"/>'
                   f'<polygon points="{x(m.t) - 5:.1f},{y0 - 6} {x(m.t) + 5:.1f},{y0 - 6} {x(m.t):.1f},{y0 + 2}" '
                   f'fill="{colour}"/><title>{m.t:.6f}: {escape(m.text)}</title></g>')
    ticks = []
    for i in range(11):
        tt = span * i / 10
        anchor = "end" if i == 10 else "middle" if i else "start"  # the last label inside the picture
        ticks.append(f'<text class="tick" x="{x(tt):.1f}" y="{top - 24}" text-anchor="{anchor}">'
                     f'{tt:.2f}s</text>')
    d = a.diagnosis
    legend = " ".join(f'<span class="key" style="background:{c}">{k}</span>' for k, c in STATE_COLOURS.items())
    partial = (f'<p id="partial" class="partial">Partial analysis: {escape("; ".join(d.problems))}</p>'
               if d.partial else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>OOM-reaper lab post-mortem: {escape(d.outcome.value)}</title>
<style>
body {{ font: 14px/1.4 sans-serif; margin: 16px; color: #222; background: #fff; }}
#diagnosis {{ background: #fff2cc; border: 1px solid #e0c068; padding: 8px 12px; }}
.partial {{ color: #990000; }}
svg text {{ font: 11px monospace; fill: #222; }}
.key {{ display: inline-block; padding: 0 8px; margin-right: 4px; border: 1px solid #999; }}
</style></head>
<body>
<h1>Post-mortem: <span id="outcome">{escape(d.headline())}</span></h1>
<p id="diagnosis">{escape(d.sentence)}</p>
{partial}
<p>{escape(describe_source(a))}.
States: {legend}; lock holds are the thin purple bars; dashed lines mark OOM kills, reaps, hung tasks
and the verdict. Hover for details.</p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"
 viewBox="0 0 {width} {height}">
<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa"/>
{''.join(ticks)}
{''.join(svg)}
</svg>
</body></html>
"""
