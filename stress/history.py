"""The reaper's history, replayed: every scenario under every policy, on the
controlled CPU, as a matrix of observed against expected outcomes.

A cell is one episode of one scenario under one design, scheduled by a fixed
PCT seed, so the matrix is the same on every run and every machine. It
matches when the observed outcome is one the scenario declares EXPECTED or
ACCEPTABLE for that design.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from kthreads import Policy, Sched, SchedConfig
from kthreads.kernel import POLICY_OPS

from .episode import EpisodeConfig, Interrupted, run_episode
from .outcomes import Grade, Outcome
from .scenarios import SCENARIOS, Scenario

#: Short names for the matrix's cells.
ABBREV = {Outcome.NO_OOM: "no_oom", Outcome.VICTIM_EXITED: "VE", Outcome.RECOVERED_BY_REAPER: "RBR",
          Outcome.LOCKUP: "L", Outcome.REAP_FAILED_LOCKUP: "RFL", Outcome.OOM_PANIC: "P",
          Outcome.UNDETERMINED: "?"}


@dataclass(frozen=True)
class Cell:
    scenario: str
    policy: Policy
    expected: tuple[Outcome, ...]
    acceptable: tuple[Outcome, ...]
    observed: Outcome
    label: str  # outcome with its shape: lockup:mutex
    explanation: str
    error: str | None

    @property
    def match(self) -> bool:
        return self.error is None and (self.observed in self.expected or self.observed in self.acceptable)

    @property
    def short(self) -> str:
        text = ABBREV.get(self.observed, self.observed.value)
        if ":" in self.label:
            text += ":" + self.label.split(":", 1)[1]
        return text if self.match else f"{text}!"

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "policy": self.policy.value,
                "expected": [o.value for o in self.expected + self.acceptable],
                "observed": self.label, "match": self.match}


def run_cell(sc: Scenario, policy: Policy, sched: SchedConfig) -> Cell:
    res = run_episode(sc, EpisodeConfig(policy=policy, sched=sched))
    grades = sc.grades.get(policy, {})
    expected = tuple(o for o, g in grades.items() if g is Grade.EXPECTED)
    acceptable = tuple(o for o, g in grades.items() if g is Grade.ACCEPTABLE)
    return Cell(sc.name, policy, expected, acceptable, res.outcome, res.label, res.explanation,
                res.error or ("; ".join(res.breaches) if res.breaches else None))


def run_history(policies: Sequence[Policy], scenarios: Sequence[Scenario], sched: SchedConfig,
                stop: Callable[[], bool] = lambda: False,
                progress: Callable[[Cell], None] = lambda cell: None) -> list[Cell]:
    """Every scenario under every policy, in order; ``Interrupted`` if ``stop()``."""
    cells = []
    for sc in scenarios:
        for policy in policies:
            if stop():
                raise Interrupted()
            cell = run_cell(sc, policy, sched)
            progress(cell)
            cells.append(cell)
    return cells


def default_sched(seed: int = 0) -> SchedConfig:
    return SchedConfig(Sched.PCT, seed=seed)


def matrix_text(cells: Sequence[Cell], policies: Sequence[Policy]) -> list[str]:
    """Rows scenarios, columns designs in order; "!" marks a cell that differs."""
    names = list(dict.fromkeys(c.scenario for c in cells))
    by = {(c.scenario, c.policy): c for c in cells}
    header = ["scenario", *(p.value for p in policies)]
    rows = [header] + [[n, *(by[(n, p)].short if (n, p) in by else "-" for p in policies)] for n in names]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def to_json(cells: Sequence[Cell], policies: Sequence[Policy], sched: SchedConfig) -> dict[str, Any]:
    return {
        "policies": [{"name": p.value, "commit": POLICY_OPS[p].commit, "title": POLICY_OPS[p].title}
                     for p in policies],
        "scenarios": list(dict.fromkeys(c.scenario for c in cells)),
        "sched": {"strategy": sched.strategy.value, "seed": sched.seed, "pct_depth": sched.pct_depth},
        "cells": [c.to_json() for c in cells],
        "match": all(c.match for c in cells),
    }


def to_html(cells: Sequence[Cell], policies: Sequence[Policy]) -> str:
    """A table to project: rows scenarios, columns designs headed by their
    commits, a cell's expectation and explanation on hover."""
    e = html.escape
    names = list(dict.fromkeys(c.scenario for c in cells))
    by = {(c.scenario, c.policy): c for c in cells}
    head = "".join(f'<th title="{e(POLICY_OPS[p].title)}: {e(POLICY_OPS[p].change)}">{e(p.value)}<br>'
                   f'<small>{e(POLICY_OPS[p].commit)}</small></th>' for p in policies)
    body = []
    for n in names:
        tds = []
        for p in policies:
            c = by.get((n, p))
            if c is None:
                tds.append("<td>-</td>")
                continue
            want = ", ".join(o.value for o in c.expected + c.acceptable) or "(none declared)"
            tip = f"{c.label}; expected {want}. {c.explanation}" + (f" Error: {c.error}" if c.error else "")
            cls = "ok" if c.match else "bad"
            tds.append(f'<td class="{cls} {e(c.observed.value)}" title="{e(tip)}">{e(c.short)}</td>')
        sc = SCENARIOS.get(n)
        title = e(sc.summary) if sc is not None else ""
        body.append(f'<tr><th title="{title}">{e(n)}</th>{"".join(tds)}</tr>')
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>The OOM reaper's history, replayed</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #999; padding: 0.3em 0.5em; text-align: center; }}
tbody th {{ text-align: left; }}
td.lockup, td.reap_failed_lockup {{ background: #f4c7c3; }}
td.recovered_by_reaper {{ background: #b7e1cd; }}
td.victim_exited, td.no_oom {{ background: #e8f0fe; }}
td.oom_panic {{ background: #fce8b2; }}
td.bad {{ outline: 3px solid #d00; font-weight: bold; }}
</style></head><body>
<h1>The OOM reaper's history, replayed</h1>
<p>Each column is a kernel tree, each the one before it plus one change; each cell one episode on the
controlled CPU. RBR: recovered by the reaper; VE: the victim exited; L: lockup (with its shape);
RFL: the reaper gave up and the system locked up; P: panic. A cell marked ! differs from what the
scenario expects under that design. Hover for details.</p>
<table><thead><tr><th>scenario</th>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
