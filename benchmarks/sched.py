"""What does controlled scheduling cost, and what does it buy? (benchmarks/sched.py)

The model runs in two modes (``kthreads.cpu``): *free*, real threads as the
OS and the GIL run them, model time scaled from real time; and *controlled*,
every task still its own thread but exactly one running model code at a
time, handing the CPU over only at scheduling points, model time virtual.
Three measurements, each against a baseline taken in the same run, because
absolute numbers on a small shared machine mean little:

1. Episode throughput. Soak workloads (``SoakSettings()`` defaults) on seeds
   ``0 .. --seeds-1``, under ``none`` and ``patch1``, once free and once
   controlled (``--strategy``, PCT by default, schedule seed = workload
   seed), one process, sequential. The two modes are *interleaved* seed by
   seed (which runs first alternates), so a burst of load from elsewhere
   hits both alike. Printed: episodes/s of each mode, the ratio
   controlled/free (goal ``GOAL_THROUGHPUT``x), the lockups each mode found
   on those seeds, and CPU seconds per episode (a free episode mostly waits
   for real time to pass; a controlled one never waits for time).

2. The scheduler's unit costs, in microseconds per operation (min of
   ``--repeats`` interleaved rounds; median shown as a noise indicator),
   each as a ratio to the baseline, a bare ``threading.Lock`` hand-off
   between two plain threads (ping-pong; the controlled CPU's baton is the
   same primitive):

   * a scheduling point that does not switch: one task alone calling
     ``kthreads.cpu.sched_point()``, and ``Atomic.inc()`` (a point plus the
     atomic's own lock), on a controlled kernel and on a free one;
   * one switch: two tasks on a controlled kernel handing the CPU to each
     other with ``Cpu.yield_to`` (the very path a strategy's switch at a
     point takes: ``Cpu._switch``);
   * one blocking hand-off: two tasks ping-ponging on a pair of
     ``Completion``s (a point, a sleep, a wake and a switch per hand-off),
     on a controlled kernel and on a free one.

   From these and the per-episode step and switch counts, the share of a
   controlled episode's wall time that is scheduling is estimated.

3. Episodes to the first find of each lockup shape, per mode: seeds
   0, 1, 2, ... until the first ``lockup:mutex`` under ``none`` and the first
   ``reap_failed_lockup`` (any shape: ``reap_failed_lockup:mmap_sem``, ...)
   under ``patch1``, capped at ``--max-seeds`` episodes and
   ``--max-search-seconds`` of wall time per search. Printed: the seed
   count and the wall seconds to the first find.

Anomalies (an episode whose ``res.error`` is set, invariant breaches, a
FORBIDDEN grade, an UNDETERMINED outcome, a controlled CPU that stalled, an
exception out of ``run_episode``) are counted and listed at the end; they
never stop the run. Every thread is joined (``run_episode`` and
``Kernel.shutdown`` do that); a micro-benchmark whose threads do not finish
is reported, not waited for.

Run::

    .venv/bin/python benchmarks/sched.py [--seeds 300] [--max-seeds 3000]
        [--repeats 5] [--points 200000] [--handoffs 20000] [--strategy pct]
        [--skip-throughput] [--skip-micro] [--skip-search] [--json FILE]

Exit status: 0 when it ran (goals are reported, not enforced), 2 on bad
arguments, 1 if the JSON file could not be written.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

try:
    import kthreads
except ImportError:  # run as a script without PYTHONPATH=.: use the checkout it sits in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import kthreads

from kthreads import Atomic, Completion, Kernel, Policy, Sched, SchedConfig
from kthreads.cpu import RunState, this_thread, sched_point
from stress.episode import EpisodeConfig, EpisodeResult, WorkloadDriver, run_episode
from stress.outcomes import Grade, Outcome
from stress.soak.settings import SoakSettings

DEFAULT_SEEDS = 300
DEFAULT_MAX_SEEDS = 3000
DEFAULT_MAX_SEARCH_SECONDS = 60.0
DEFAULT_REPEATS = 5
DEFAULT_POINTS = 200_000
DEFAULT_HANDOFFS = 20_000
WARMUP_HANDOFFS = 200  # hand-offs before the timed ones (threads started, code specialised)
JOIN_SLACK = 30.0  # real seconds a micro-benchmark's threads get beyond a generous estimate

GOAL_THROUGHPUT = 3.0  # controlled episodes/s at least this many times free's

MODES = ("free", "controlled")
POLICIES = (Policy.NONE, Policy.PATCH1)


class BenchError(RuntimeError):
    """A micro-benchmark could not be taken (a thread hung or failed)."""


# -- episodes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A lockup shape to look for: a label, or every shape of an outcome."""

    policy: Policy
    text: str  # as printed
    match: Callable[[EpisodeResult], bool]


TARGETS = (
    Target(Policy.NONE, "lockup:mutex", lambda r: r.label == "lockup:mutex"),
    Target(Policy.PATCH1, "reap_failed_lockup:*",
           lambda r: r.outcome is Outcome.REAP_FAILED_LOCKUP),
)


@dataclass
class Anomalies:
    items: list[str] = field(default_factory=list)

    def note(self, where: str, text: str) -> None:
        self.items.append(f"{where}: {text}")


def sched_for(mode: str, strategy: Sched, seed: int) -> SchedConfig:
    return SchedConfig(strategy, seed=seed) if mode == "controlled" else SchedConfig()


def one_episode(st: SoakSettings, policy: Policy, seed: int, sched: SchedConfig,
                anomalies: Anomalies, where: str) -> tuple[EpisodeResult | None, float, float,
                                                           dict[str, Any]]:
    """One soak episode: (result or None, wall s, CPU s of the process, sched summary).

    The result's kernel is dropped before returning (only its summary is kept)."""
    drv = WorkloadDriver.from_seed(seed, st.params)
    cfg = EpisodeConfig(policy=policy, seed=seed, timing=st.timing, trace=st.trace, sched=sched)
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        res = run_episode(drv, cfg, keep=st.keep)
    except Exception as e:  # a harness failure: report it, go on
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        anomalies.note(where, f"seed {seed}: run_episode raised {type(e).__name__}: {e}")
        return None, wall, cpu, {}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary: dict[str, Any] = {}
    k = res.kernel
    if k is not None:
        summary = k.sched_summary()
        stuck = k.stuck_report() if k.cpu is not None else None
        if k.cpu is not None and k.cpu.stall:
            anomalies.note(where, f"seed {seed}: controlled CPU stalled: {stuck}")
    if res.error is not None:
        anomalies.note(where, f"seed {seed} ({res.label}): error: {res.error}")
    for b in res.breaches:
        anomalies.note(where, f"seed {seed} ({res.label}): breach: {b}")
    if res.grade is Grade.FORBIDDEN and not res.breaches:
        anomalies.note(where, f"seed {seed}: FORBIDDEN label {res.label}")
    if res.outcome is Outcome.UNDETERMINED and res.error is None:
        anomalies.note(where, f"seed {seed}: undetermined outcome")
    res.detached()
    return res, wall, cpu, summary


@dataclass
class ModeRun:
    episodes: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    labels: Counter = field(default_factory=Counter)
    label_wall: Counter = field(default_factory=Counter)  # wall seconds by label
    lockups: int = 0
    failed: int = 0  # run_episode raised
    steps: int = 0
    switches: int = 0
    events: int = 0
    virtual_seconds: float = 0.0
    model_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.episodes / self.wall if self.wall > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        n = max(self.episodes, 1)
        return {"episodes": self.episodes, "wall_seconds": self.wall, "cpu_seconds": self.cpu,
                "episodes_per_s": self.rate, "lockups": self.lockups, "failed": self.failed,
                "labels": dict(sorted(self.labels.items())),
                "wall_ms_by_label": {k: self.label_wall[k] / v * 1e3
                                     for k, v in sorted(self.labels.items())},
                "mean_steps": self.steps / n, "mean_switches": self.switches / n,
                "mean_events": self.events / n, "mean_model_seconds": self.model_seconds / n}


def measure_throughput(st: SoakSettings, seeds: int, strategy: Sched,
                       anomalies: Anomalies) -> dict[str, dict[str, ModeRun]]:
    """Per policy, per mode: the episodes on seeds 0..seeds-1, interleaved by seed."""
    out = {p.value: {m: ModeRun() for m in MODES} for p in POLICIES}
    for policy in POLICIES:  # warm-up: imports, code specialisation, first-thread costs
        for mode in MODES:
            one_episode(st, policy, 0, sched_for(mode, strategy, 0), anomalies,
                        f"warm-up {mode}/{policy.value}")
    for seed in range(seeds):
        for policy in POLICIES:
            order = MODES if seed % 2 == 0 else MODES[::-1]
            for mode in order:
                res, wall, cpu, summary = one_episode(st, policy, seed,
                                                      sched_for(mode, strategy, seed), anomalies,
                                                      f"throughput {mode}/{policy.value}")
                run = out[policy.value][mode]
                run.episodes += 1
                run.wall += wall
                run.cpu += cpu
                if res is None:
                    run.failed += 1
                    run.labels["(failed)"] += 1
                    continue
                run.labels[res.label] += 1
                run.label_wall[res.label] += wall
                run.lockups += res.outcome.is_lockup
                run.model_seconds += res.model_seconds
                run.steps += summary.get("steps", 0)
                run.switches += summary.get("switches", 0)
                run.events += summary.get("events", 0)
                run.virtual_seconds += summary.get("virtual_seconds", 0.0)
    return out


@dataclass
class Search:
    target: str
    policy: str
    mode: str
    found: bool = False
    seeds_run: int = 0  # episodes run, the finding one included
    seed: int | None = None  # the first seed that showed it
    label: str | None = None
    wall: float = 0.0
    stopped_by: str = ""  # "max-seeds" or "max-search-seconds" when not found

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "policy": self.policy, "mode": self.mode,
                "found": self.found, "episodes": self.seeds_run, "seed": self.seed,
                "label": self.label, "wall_seconds": self.wall, "stopped_by": self.stopped_by}


def search_first(st: SoakSettings, target: Target, mode: str, strategy: Sched, max_seeds: int,
                 max_seconds: float, anomalies: Anomalies) -> Search:
    s = Search(target.text, target.policy.value, mode)
    t0 = time.perf_counter()
    for seed in range(max_seeds):
        if time.perf_counter() - t0 >= max_seconds:
            s.stopped_by = "max-search-seconds"
            break
        res, _, _, _ = one_episode(st, target.policy, seed, sched_for(mode, strategy, seed),
                                   anomalies, f"search {mode}/{target.policy.value}")
        s.seeds_run += 1
        if res is not None and target.match(res):
            s.found, s.seed, s.label = True, seed, res.label
            break
    else:
        s.stopped_by = "max-seeds"
    s.wall = time.perf_counter() - t0
    return s


# -- micro-benchmarks ----------------------------------------------------------------

def controlled_kernel() -> Kernel:
    """A controlled kernel; the calling thread becomes its controller."""
    return Kernel(sched=SchedConfig(Sched.PCT, seed=0), hung_task_timeout=0)


def free_kernel() -> Kernel:
    return Kernel(hung_task_timeout=0)


def run_tasks(make_kernel: Callable[[], Kernel], bodies: Sequence[Callable[[Any], None]],
              done: Callable[[], bool], timeout: float) -> None:
    """Start one kthread per body on a fresh kernel, wait for ``done()``, shut
    the kernel down (every thread joined); ``BenchError`` if anything failed."""
    k = make_kernel()
    try:
        tasks = [k.kthread_run(f"bench{i}", body) for i, body in enumerate(bodies)]
        # On a controlled kernel the wait is what lets the tasks run (virtual
        # time: the bound is generous); on a free one it is a plain wait.
        # Until every body has returned: the plug is pulled only after that.
        ok = k.wait_until(lambda: done() and all(t.exit_reason is not None for t in tasks),
                          timeout)
        if not ok:
            why = k.stuck_report() or "no progress"
            raise BenchError(f"the benchmark tasks did not finish within {timeout:.0f} s ({why})")
    finally:
        report = k.shutdown()
    if not report.clean:
        raise BenchError(f"shutdown: {report.format()}")
    for t in tasks:
        if t.error is not None:
            raise BenchError(f"task {t.comm} failed: {t.error!r}")
        if t.exit_reason != "exit":
            raise BenchError(f"task {t.comm} ended by {t.exit_reason}")


def _timed_loop(fn: Callable[[], object], n: int) -> float:
    """Seconds for n calls of fn, GC off (as timeit)."""
    it = itertools.repeat(None, n)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in it:
            fn()
        return time.perf_counter() - t0
    finally:
        if gc_was:
            gc.enable()


def point_case(controlled: bool, what: str, n: int) -> float:
    """us per call of ``sched_point()`` or ``Atomic.inc()`` by one task alone."""
    out: list[float] = []
    switched: list[int] = []

    def body(task: Any) -> None:
        fn: Callable[[], object] = sched_point if what == "sched_point" else Atomic(0, "bench").inc
        _timed_loop(fn, min(n, 2000))  # warm-up
        cpu = this_thread.cpu
        s0 = cpu.nr_switches if cpu is not None else 0
        out.append(_timed_loop(fn, n))
        switched.append((cpu.nr_switches if cpu is not None else 0) - s0)

    run_tasks(controlled_kernel if controlled else free_kernel, [body], lambda: bool(out),
              JOIN_SLACK + n * 50e-6)
    if switched[0]:
        raise BenchError(f"{what}: {switched[0]} switches while one task ran alone")
    return out[0] / n * 1e6


def yield_case(n: int) -> float:
    """us per switch: two tasks on a controlled kernel handing the CPU to each
    other with ``Cpu.yield_to`` (``Cpu._switch``, as a strategy's switch)."""
    out: list[float] = []
    total = n + WARMUP_HANDOFFS

    def body(task: Any) -> None:
        cpu, me = this_thread.cpu, this_thread.runner
        other = next(r for r in cpu.runners.values() if r is not me and r.task is not None
                     and r.task.comm.startswith("bench"))
        first = me.order < other.order
        t0 = s0 = 0.0
        for i in range(total):
            if first and i == WARMUP_HANDOFFS:
                t0, s0 = time.perf_counter(), cpu.nr_switches
            if other.state is RunState.READY:
                cpu.yield_to(me, other)
        if first:
            out.append((time.perf_counter() - t0) / max(1, cpu.nr_switches - s0))

    run_tasks(controlled_kernel, [body, body], lambda: bool(out), JOIN_SLACK + total * 1e-3)
    return out[0] * 1e6


def completion_case(controlled: bool, n: int) -> float:
    """us per blocking hand-off: two tasks ping-ponging on two Completions."""
    ping, pong = Completion("ping"), Completion("pong")
    out: list[float] = []
    total = n + WARMUP_HANDOFFS

    def a(task: Any) -> None:
        t0 = 0.0
        for i in range(total):
            if i == WARMUP_HANDOFFS // 2:
                t0 = time.perf_counter()
            ping.complete()
            pong.wait_for_completion()
        out.append((time.perf_counter() - t0) / (2 * (total - WARMUP_HANDOFFS // 2)))

    def b(task: Any) -> None:
        for _ in range(total):
            ping.wait_for_completion()
            pong.complete()

    run_tasks(controlled_kernel if controlled else free_kernel, [a, b], lambda: bool(out),
              JOIN_SLACK + total * 2e-3)
    return out[0] * 1e6


def bare_handoff(n: int) -> float:
    """us per hand-off: two plain threads passing control through two Locks
    (one released for the other, then wait on one's own), the baseline."""
    la, lb = threading.Lock(), threading.Lock()
    la.acquire()
    lb.acquire()
    out: list[float] = []
    total = n + WARMUP_HANDOFFS // 2

    def p() -> None:
        t0 = 0.0
        for i in range(total):
            if i == WARMUP_HANDOFFS // 2:
                t0 = time.perf_counter()
            lb.release()
            if not la.acquire(timeout=JOIN_SLACK):
                return
        out.append((time.perf_counter() - t0) / (2 * n))

    def q() -> None:
        for _ in range(total):
            if not lb.acquire(timeout=JOIN_SLACK):
                return
            la.release()

    threads = [threading.Thread(target=p, name="bench-ping", daemon=True),
               threading.Thread(target=q, name="bench-pong", daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_SLACK + n * 1e-3)
    if any(t.is_alive() for t in threads) or not out:
        raise BenchError("the bare Lock ping-pong did not finish (lost hand-off?)")
    return out[0] * 1e6


@dataclass(frozen=True)
class Micro:
    key: str
    label: str
    run: Callable[[int, int], float]  # (points, handoffs) -> us/op


MICROS = (
    Micro("bare_handoff", "bare threading.Lock hand-off, 2 plain threads (baseline)",
          lambda pts, ho: bare_handoff(ho)),
    Micro("point.free", "sched_point(), free kernel (returns at once)",
          lambda pts, ho: point_case(False, "sched_point", pts)),
    Micro("point.controlled", "sched_point(), controlled, no switch",
          lambda pts, ho: point_case(True, "sched_point", pts)),
    Micro("atomic.free", "Atomic.inc(), free kernel",
          lambda pts, ho: point_case(False, "atomic", pts)),
    Micro("atomic.controlled", "Atomic.inc(), controlled, no switch",
          lambda pts, ho: point_case(True, "atomic", pts)),
    Micro("switch.controlled", "switch: Cpu.yield_to between 2 tasks, controlled",
          lambda pts, ho: yield_case(ho)),
    Micro("completion.free", "Completion ping-pong hand-off, free kernel",
          lambda pts, ho: completion_case(False, ho)),
    Micro("completion.controlled", "Completion ping-pong hand-off, controlled",
          lambda pts, ho: completion_case(True, ho)),
)


def measure_micro(repeats: int, points: int, handoffs: int,
                  anomalies: Anomalies) -> dict[str, list[float]]:
    """Interleaved rounds, order rotated each round; us/op samples by key."""
    samples: dict[str, list[float]] = {m.key: [] for m in MICROS}
    for m in MICROS:  # warm-up round, small
        try:
            m.run(min(points, 5000), min(handoffs, 500))
        except Exception as e:
            anomalies.note(f"micro warm-up {m.key}", f"{type(e).__name__}: {e}")
    for r in range(repeats):
        k = r % len(MICROS)
        for m in MICROS[k:] + MICROS[:k]:
            try:
                samples[m.key].append(m.run(points, handoffs))
            except Exception as e:  # BenchError, or a model failure: reported, not raised
                anomalies.note(f"micro {m.key} round {r}", f"{type(e).__name__}: {e}")
    return samples


# -- reporting -------------------------------------------------------------------------

def environment() -> dict[str, Any]:
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    try:
        load: list[float] | None = list(os.getloadavg())
    except (AttributeError, OSError):
        load = None
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "switchinterval": sys.getswitchinterval(),
            "cpus": os.cpu_count(), "cpus_usable": usable, "loadavg": load}


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def print_throughput(tp: dict[str, dict[str, ModeRun]], strategy: Sched, st: SoakSettings,
                     seeds: int) -> dict[str, Any]:
    p = print
    t = st.timing
    p(f"1. Episode throughput: soak workloads, seeds 0..{seeds - 1}, one process, sequential, "
      f"free and controlled ({strategy.value}, schedule seed = workload seed) interleaved "
      f"seed by seed")
    p(f"   (soak timing: speed {t.speed:g}, HZ {t.hz}, hung_task_timeout {t.hung_task_timeout:g} s "
      f"model; free mode waits for scaled real time, controlled mode for none;")
    p("    cpu ms/ep: the process's CPU time, every thread, per episode)")
    p(f"   {'policy':<7} {'mode':<11} {'eps/s':>7} {'wall s':>7} {'wall ms/ep':>10} {'cpu ms/ep':>9} {'lockups':>7} "
      f"{'steps/ep':>9} {'sw/ep':>7}  labels")
    out: dict[str, Any] = {}
    tot = {m: ModeRun() for m in MODES}
    for pol, modes in tp.items():
        for mode in MODES:
            r = modes[mode]
            n = max(r.episodes, 1)
            steps = f"{r.steps / n:9.0f}" if mode == "controlled" else f"{'-':>9}"
            sw = f"{r.switches / n:7.0f}" if mode == "controlled" else f"{'-':>7}"
            labels = ", ".join(f"{k} {v}" for k, v in sorted(r.labels.items(), key=lambda x: -x[1]))
            p(f"   {pol:<7} {mode:<11} {r.rate:7.1f} {r.wall:7.1f} {r.wall / n * 1e3:10.1f} {r.cpu / n * 1e3:9.1f} "
              f"{r.lockups:7d} {steps} {sw}  {labels}")
            tot[mode].episodes += r.episodes
            tot[mode].wall += r.wall
            tot[mode].lockups += r.lockups
        ratio = _ratio(modes["controlled"].rate, modes["free"].rate)
        p(f"   {pol:<7} controlled/free throughput: {_fmt(ratio, '.2f')}x; lockups found: "
          f"free {modes['free'].lockups}, controlled {modes['controlled'].lockups} "
          f"(of {modes['free'].episodes} seeds)")
        f, c = modes["free"], modes["controlled"]
        common = sorted(set(f.labels) & set(c.labels), key=lambda k: -(f.labels[k] + c.labels[k]))
        if common:  # the same kind of episode in both modes: per-episode cost, mix aside
            p(f"   {'':<7} wall ms/ep by label, free/controlled: " + "; ".join(
                f"{k} {f.label_wall[k] / f.labels[k] * 1e3:.1f}/"
                f"{c.label_wall[k] / c.labels[k] * 1e3:.1f}" for k in common))
        out[pol] = {m: modes[m].to_json() for m in MODES}
        out[pol]["ratio_controlled_over_free"] = ratio
    ratio = _ratio(tot["controlled"].rate, tot["free"].rate)
    met = ratio is not None and ratio >= GOAL_THROUGHPUT
    p(f"   both    controlled {tot['controlled'].rate:.1f} eps/s vs free {tot['free'].rate:.1f} "
      f"eps/s: {_fmt(ratio, '.2f')}x; lockups free {tot['free'].lockups}, controlled "
      f"{tot['controlled'].lockups}")
    p(f"   [{'MET' if met else 'NOT MET':^7}] goal: controlled >= {GOAL_THROUGHPUT:g}x free "
      f"episodes/s ({_fmt(ratio, '.2f')}x)")
    out["overall"] = {"free_eps": tot["free"].rate, "controlled_eps": tot["controlled"].rate,
                      "ratio_controlled_over_free": ratio, "goal": GOAL_THROUGHPUT, "met": met,
                      "lockups_free": tot["free"].lockups,
                      "lockups_controlled": tot["controlled"].lockups}
    return out


def print_micro(samples: dict[str, list[float]], repeats: int, points: int, handoffs: int,
                tp: dict[str, dict[str, ModeRun]] | None) -> dict[str, Any]:
    p = print
    best = {k: min(v) for k, v in samples.items() if v}
    base = best.get("bare_handoff")
    p(f"2. Unit costs: min us/op of {repeats} interleaved rounds (median); {points} points per "
      f"point case, {handoffs} hand-offs per hand-off case; ratio to the bare Lock hand-off")
    p(f"   {'case':<58} {'us/op':>8} {'(median)':>10} {'x bare':>8}")
    out: dict[str, Any] = {"cases": {}}
    for m in MICROS:
        v = samples[m.key]
        if not v:
            p(f"   {m.label:<58} {'n/a':>8} {'':>10} {'n/a':>8}  (failed: see anomalies)")
            continue
        med = statistics.median(v)
        r = _ratio(best[m.key], base)
        p(f"   {m.label:<58} {best[m.key]:8.3f} {'(' + format(med, '.3f') + ')':>10} "
          f"{_fmt(r, '.3f') + 'x':>8}")
        out["cases"][m.key] = {"label": m.label, "us_per_op": best[m.key], "median_us_per_op": med,
                               "ratio_to_bare_handoff": r, "samples_us_per_op": v}
    pc, pf = best.get("point.controlled"), best.get("point.free")
    ac, af = best.get("atomic.controlled"), best.get("atomic.free")
    sw = best.get("switch.controlled")
    cc, cf = best.get("completion.controlled"), best.get("completion.free")
    if pc is not None and pf is not None:
        p(f"   a non-switching point adds {pc - pf:.3f} us over free ({_fmt(_ratio(pc, pf), '.1f')}x); "
          f"Atomic.inc controlled/free {_fmt(_ratio(ac, af), '.2f')}x")
    if sw is not None and base is not None:
        p(f"   one switch: {sw:.2f} us = {sw / base:.2f}x the bare hand-off")
    if cc is not None and cf is not None:
        p(f"   Completion hand-off controlled/free: {cc / cf:.2f}x")
    out["derived"] = {"point_overhead_us": None if pc is None or pf is None else pc - pf,
                      "atomic_ratio": _ratio(ac, af), "switch_over_bare": _ratio(sw, base),
                      "completion_ratio": _ratio(cc, cf)}
    if tp is not None and pc is not None and sw is not None:
        p("   estimated scheduling share of a controlled episode (steps x point + switches x "
          "switch, over its wall time):")
        est: dict[str, Any] = {}
        for pol, modes in tp.items():
            r = modes["controlled"]
            if not r.episodes or r.wall <= 0:
                continue
            n = r.episodes
            per = (r.steps / n) * pc + (r.switches / n) * sw  # us
            share = per * 1e-6 / (r.wall / n)
            p(f"     {pol:<7} {r.steps / n:7.0f} steps x {pc:.2f} us + {r.switches / n:5.0f} "
              f"switches x {sw:.2f} us = {per / 1e3:.2f} ms of {r.wall / n * 1e3:.2f} ms/episode "
              f"({share:.0%})")
            est[pol] = {"sched_ms_per_episode": per / 1e3, "wall_ms_per_episode": r.wall / n * 1e3,
                        "share": share}
        out["episode_estimate"] = est
    return out


def print_search(searches: list[Search], max_seeds: int, max_seconds: float) -> list[dict[str, Any]]:
    p = print
    p(f"3. Episodes to the first find (seeds 0, 1, 2, ...; cap {max_seeds} episodes or "
      f"{max_seconds:g} s per search)")
    p(f"   {'shape':<22} {'policy':<7} {'mode':<11} {'episodes':>9} {'wall s':>8}  found")
    for s in searches:
        found = f"seed {s.seed}: {s.label}" if s.found else f"NOT FOUND (stopped by {s.stopped_by})"
        n = str(s.seeds_run) if s.found else f">{s.seeds_run}"
        p(f"   {s.target:<22} {s.policy:<7} {s.mode:<11} {n:>9} {s.wall:8.2f}  {found}")
    p("   (a free search is not reproducible: its first find varies from run to run; a "
      "controlled one is, given the seeds)")
    by = {(s.target, s.mode): s for s in searches}
    for t in TARGETS:
        f, c = by.get((t.text, "free")), by.get((t.text, "controlled"))
        if f is not None and c is not None and f.found and c.found:
            p(f"   {t.text} ({t.policy.value}): controlled needed "
              f"{_fmt(_ratio(c.seeds_run, f.seeds_run), '.2f')}x the episodes and "
              f"{_fmt(_ratio(c.wall, f.wall), '.2f')}x the wall time of free")
    return [s.to_json() for s in searches]


# -- command line ---------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks/sched.py", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                    help=f"seeds per policy and mode for the throughput run (default {DEFAULT_SEEDS})")
    ap.add_argument("--max-seeds", type=int, default=DEFAULT_MAX_SEEDS,
                    help=f"cap of each first-find search, in episodes (default {DEFAULT_MAX_SEEDS})")
    ap.add_argument("--max-search-seconds", type=float, default=DEFAULT_MAX_SEARCH_SECONDS,
                    help=f"cap of each first-find search, in wall seconds "
                         f"(default {DEFAULT_MAX_SEARCH_SECONDS:g})")
    ap.add_argument("--strategy", type=Sched.parse, default=Sched.PCT, metavar="{pct,random}",
                    help="the controlled strategy (default pct)")
    ap.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                    help=f"interleaved rounds of the unit costs; min is kept (default {DEFAULT_REPEATS})")
    ap.add_argument("--points", type=int, default=DEFAULT_POINTS,
                    help=f"calls per point case per round (default {DEFAULT_POINTS})")
    ap.add_argument("--handoffs", type=int, default=DEFAULT_HANDOFFS,
                    help=f"hand-offs per hand-off case per round (default {DEFAULT_HANDOFFS})")
    ap.add_argument("--skip-throughput", action="store_true", help="skip measurement 1")
    ap.add_argument("--skip-micro", action="store_true", help="skip measurement 2")
    ap.add_argument("--skip-search", action="store_true", help="skip measurement 3")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE")
    args = ap.parse_args(argv)
    if args.strategy not in (Sched.PCT, Sched.RANDOM):
        ap.error("--strategy must be pct or random")
    for name in ("seeds", "max_seeds", "repeats", "points", "handoffs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_search_seconds <= 0:
        ap.error("--max-search-seconds must be positive")
    if args.json is not None and not args.json.resolve().parent.is_dir():
        ap.error(f"--json: directory {args.json.resolve().parent} does not exist")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    t0 = time.monotonic()
    env = environment()
    st = SoakSettings()
    anomalies = Anomalies()
    print("kthreads controlled scheduling benchmark")
    print(f"Python {env['python']} ({env['implementation']}) on {env['platform']}")
    print(f"sys.getswitchinterval() = {env['switchinterval']} s; CPUs: {env['cpus']} "
          f"({env['cpus_usable']} usable); load average at start: "
          f"{' '.join(f'{x:.2f}' for x in env['loadavg']) if env['loadavg'] else 'n/a'}")
    print()
    doc: dict[str, Any] = {"environment": env,
                           "params": {"seeds": args.seeds, "max_seeds": args.max_seeds,
                                      "max_search_seconds": args.max_search_seconds,
                                      "strategy": args.strategy.value, "repeats": args.repeats,
                                      "points": args.points, "handoffs": args.handoffs,
                                      "timing": asdict(st.timing)}}
    tp = None
    took: dict[str, float] = {}
    if not args.skip_throughput:
        ts = time.monotonic()
        tp = measure_throughput(st, args.seeds, args.strategy, anomalies)
        doc["throughput"] = print_throughput(tp, args.strategy, st, args.seeds)
        took["throughput"] = time.monotonic() - ts
        print(f"   (took {took['throughput']:.1f} s)\n")
    if not args.skip_micro:
        ts = time.monotonic()
        samples = measure_micro(args.repeats, args.points, args.handoffs, anomalies)
        doc["micro"] = print_micro(samples, args.repeats, args.points, args.handoffs, tp)
        took["micro"] = time.monotonic() - ts
        print(f"   (took {took['micro']:.1f} s)\n")
    if not args.skip_search:
        ts = time.monotonic()
        searches = [search_first(st, t, mode, args.strategy, args.max_seeds,
                                 args.max_search_seconds, anomalies)
                    for t in TARGETS for mode in MODES]
        doc["search"] = print_search(searches, args.max_seeds, args.max_search_seconds)
        took["search"] = time.monotonic() - ts
        print(f"   (took {took['search']:.1f} s)\n")
    doc["section_seconds"] = took
    print(f"Anomalies: {len(anomalies.items) or 'none'}")
    for a in anomalies.items[:50]:
        print(f"   {a}")
    if len(anomalies.items) > 50:
        print(f"   ... and {len(anomalies.items) - 50} more (all in the JSON)")
    doc["anomalies"] = anomalies.items
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        load = "n/a"
    doc["wall_seconds"] = time.monotonic() - t0
    print(f"\n(ran in {doc['wall_seconds']:.1f} s; load average at the end: {load})")
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        except OSError as e:
            print(f"error: cannot write {args.json}: {e}", file=sys.stderr)
            return 1
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the episode in flight was unwound and joined by run_episode
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
