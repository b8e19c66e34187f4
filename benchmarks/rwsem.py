"""Benchmark ``kthreads.RwSemaphore`` against ``threading.Lock`` (and ``readerwriterlock``).

Every figure is printed as a ratio against a baseline measured in the same
run, because absolute numbers on a small, shared machine mean little.

Method
------
Uncontended cost (ns per acquire+release pair)
    Each case is a tight loop over bound methods, ``acquire(); release()``,
    run ``--ops`` times with the garbage collector off (as ``timeit`` does).
    The figure includes the loop's own overhead, the same for every case
    (the empty loop is timed too and reported for reference). Cases are
    measured in *interleaved* rounds: each of the ``--repeats`` rounds runs
    every case once (in an order rotated from round to round), so a burst of
    noise hits all cases alike rather than one case's whole series, and the
    figure kept is the MINIMUM of the rounds
    (the median is shown alongside as a noise indicator). Cases:

    * baseline: ``threading.Lock`` ``acquire()`` + ``release()``;
    * ``RwSemaphore`` ``down_read_trylock``+``up_read``, ``down_read``+``up_read``,
      ``down_write``+``up_write``, once from the plain harness thread and once
      from inside a model task (``Kernel.fork``), where every lock operation
      also does lockdep-like ``held_locks`` bookkeeping; one task is forked
      per round and runs the three task cases;
    * ``readerwriterlock`` ``RWLockWrite``, if installed: read trylock
      (``acquire(False)``) + ``release()``, read, write.

Contended mix (ops/s, higher is better)
    ``MIX_THREADS`` plain ``threading.Thread`` workers share one lock for
    ``--mix-seconds``; each op is a read (``READ_FRACTION``) or a write with a
    tiny critical section (read, or increment, a shared counter). Each worker
    follows its own deterministic sequence from ``random.Random(seed + i)``,
    the same for every lock type and round. ``threading.Lock`` is the
    baseline (a mutex for both kinds of op). ``RwSemaphore`` runs twice: as
    Linux 4.6's (the default: a released lock wakes a queued writer, who
    competes for it) and with 5.3's hand-off (``handoff=True``), for
    comparison. Rounds are interleaved across
    lock types too and the BEST (highest ops/s) of ``--mix-repeats`` is
    kept. After each run the write count is checked against the counter,
    and every thread is joined with a timeout (workers are daemon threads,
    so a lost wakeup is reported, never waited for).

Goals (reported, not enforced; the exit status is 0 whenever it ran):

* RwSemaphore read trylock+release (harness thread) within
  ``GOAL_TRYLOCK_VS_LOCK``x of ``threading.Lock`` acquire+release;
* at least ``GOAL_TRYLOCK_VS_RWL``x faster than ``RWLockWrite``'s read
  trylock+release;
* 4-thread mix (4.6 semantics) at least ``GOAL_MIX_VS_RWL``x
  ``RWLockWrite``'s ops/s;
* 4-thread mix (4.6 semantics) at least ``GOAL_MIX_VS_LOCK``x
  ``threading.Lock``'s ops/s (issue #10).

The second and third need ``readerwriterlock`` (``pip install
readerwriterlock``); it is an optional comparison, not a dependency.

Run::

    cd /work/main && PYTHONPATH=. python benchmarks/rwsem.py
    PYTHONPATH=. python benchmarks/rwsem.py --repeats 11 --ops 300000 --json out.json

Exit status: 0 when it ran, 2 on bad arguments, 1 if the JSON file could
not be written.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

try:
    import kthreads
except ImportError:  # run as a script without PYTHONPATH=.: use the checkout it sits in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import kthreads

from kthreads import RwSemaphore

Op = Callable[..., object]

DEFAULT_REPEATS = 7
DEFAULT_OPS = 200_000
DEFAULT_MIX_SECONDS = 1.0
DEFAULT_MIX_REPEATS = 5
DEFAULT_SEED = 1

MIX_THREADS = 4
READ_FRACTION = 0.9
MIX_PATTERN_LEN = 4096  # ops in each worker's repeating sequence
MIX_CHUNK = 64  # ops between two looks at the stop flag
JOIN_SLACK = 10.0  # real seconds a thread gets beyond its expected run time
NOISY_SPREAD = 1.25  # median/min of a case above this: the run was noisy

GOAL_TRYLOCK_VS_LOCK = 6.0
GOAL_TRYLOCK_VS_RWL = 4.0
GOAL_MIX_VS_RWL = 1.0
GOAL_MIX_VS_LOCK = 0.3

_NOARG = object()


class BenchError(RuntimeError):
    """A measurement could not be taken (a thread hung or failed)."""


# -- the optional comparison ----------------------------------------------------

def load_readerwriterlock() -> ModuleType | None:
    """``readerwriterlock.rwlock``, or None when the package is not installed."""
    try:
        from readerwriterlock import rwlock
    except ImportError:
        return None
    return rwlock


def readerwriterlock_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("readerwriterlock")
    except PackageNotFoundError:
        return None


# -- uncontended: timing one case ----------------------------------------------

def time_pairs(acquire: Op, release: Op, n: int, arg: object = _NOARG) -> float:
    """ns per ``acquire(); release()`` (``acquire(arg)`` if given), over ``n`` pairs."""
    it = itertools.repeat(None, n)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if arg is _NOARG:
            t0 = time.perf_counter_ns()
            for _ in it:
                acquire()
                release()
            t1 = time.perf_counter_ns()
        else:
            t0 = time.perf_counter_ns()
            for _ in it:
                acquire(arg)
                release()
            t1 = time.perf_counter_ns()
    finally:
        if gc_was_enabled:
            gc.enable()
    return (t1 - t0) / n


def time_empty_loop(n: int) -> float:
    """ns per iteration of the same loop with two no-op calls: the floor under every case."""
    def nop() -> None:
        pass
    return time_pairs(nop, nop, n)


@dataclass(frozen=True)
class Case:
    """One uncontended measurement: ``setup()`` gives (acquire, release, arg)."""

    key: str
    label: str
    context: str  # "harness thread" or "in a task"
    setup: Callable[[], tuple[Op, Op, object]]


def _lock_case() -> tuple[Op, Op, object]:
    lock = threading.Lock()
    return lock.acquire, lock.release, _NOARG


def _rwsem_read_trylock() -> tuple[Op, Op, object]:
    sem = RwSemaphore("bench")
    if not sem.down_read_trylock():
        raise BenchError("down_read_trylock failed on a free rwsem")
    sem.up_read()
    return sem.down_read_trylock, sem.up_read, _NOARG


def _rwsem_read() -> tuple[Op, Op, object]:
    sem = RwSemaphore("bench")
    return sem.down_read, sem.up_read, _NOARG


def _rwsem_write() -> tuple[Op, Op, object]:
    sem = RwSemaphore("bench")
    return sem.down_write, sem.up_write, _NOARG


def _rwl_cases(rwlock: ModuleType) -> list[Callable[[], tuple[Op, Op, object]]]:
    def read_trylock() -> tuple[Op, Op, object]:
        r = rwlock.RWLockWrite().gen_rlock()
        if not r.acquire(False):
            raise BenchError("RWLockWrite read trylock failed on a free lock")
        r.release()
        return r.acquire, r.release, False  # acquire(blocking=False), positionally

    def read() -> tuple[Op, Op, object]:
        r = rwlock.RWLockWrite().gen_rlock()
        return r.acquire, r.release, _NOARG

    def write() -> tuple[Op, Op, object]:
        w = rwlock.RWLockWrite().gen_wlock()
        return w.acquire, w.release, _NOARG

    return [read_trylock, read, write]


RWSEM_CASES: tuple[tuple[str, str, Callable[[], tuple[Op, Op, object]]], ...] = (
    ("read_trylock", "RwSemaphore down_read_trylock+up_read", _rwsem_read_trylock),
    ("read", "RwSemaphore down_read+up_read", _rwsem_read),
    ("write", "RwSemaphore down_write+up_write", _rwsem_write),
)
RWL_LABELS = (
    ("read_trylock", "RWLockWrite read acquire(False)+release"),
    ("read", "RWLockWrite read acquire+release"),
    ("write", "RWLockWrite write acquire+release"),
)


def harness_cases(rwlock: ModuleType | None) -> list[Case]:
    cases = [Case("lock", "threading.Lock acquire+release", "harness thread", _lock_case)]
    cases += [Case(f"rwsem.harness.{k}", label, "harness thread", setup)
              for k, label, setup in RWSEM_CASES]
    if rwlock is not None:
        cases += [Case(f"rwl.harness.{k}", label, "harness thread", setup)
                  for (k, label), setup in zip(RWL_LABELS, _rwl_cases(rwlock))]
    return cases


def task_cases() -> list[Case]:
    return [Case(f"rwsem.task.{k}", label, "in a task", setup) for k, label, setup in RWSEM_CASES]


def run_cases_in_task(kernel: kthreads.Kernel, cases: Sequence[Case], ops: int,
                      timeout: float) -> dict[str, float]:
    """Fork one model task that times ``cases`` in order; ns/op by case key."""
    out: dict[str, float] = {}

    def body(task: kthreads.Task) -> None:
        for case in cases:
            acquire, release, arg = case.setup()
            out[case.key] = time_pairs(acquire, release, ops, arg)

    task = kernel.fork("bench", body)
    task.thread.join(timeout)
    if task.thread.is_alive():
        raise BenchError(f"the benchmark task did not finish within {timeout:.0f} s")
    if task.error is not None:
        raise BenchError(f"the benchmark task failed: {task.error!r}")
    if task.exit_reason != "exit":
        raise BenchError(f"the benchmark task ended by {task.exit_reason}")
    return out


def measure_uncontended(repeats: int, ops: int, rwlock: ModuleType | None
                        ) -> tuple[list[Case], dict[str, list[float]], list[float]]:
    """Interleaved rounds over every case; samples (ns/op) by case key, and the empty loop's.

    A round times every harness case once, plus one forked task that times
    the task cases; the order is rotated from round to round so that noise
    with a period does not always land on the same case.
    """
    hcases = harness_cases(rwlock)
    tcases = task_cases()
    samples: dict[str, list[float]] = {c.key: [] for c in hcases + tcases}
    loop_floor: list[float] = []
    # Per-pair cost is at worst a few us even in a task: generous, still bounded.
    task_timeout = JOIN_SLACK * 3 + ops * len(tcases) * 50e-6
    # No khungtaskd: nothing else in the model should run while a task is timed.
    kernel = kthreads.Kernel(hung_task_timeout=0)

    def harness_unit(case: Case) -> Callable[[int], None]:
        acq, rel, arg = case.setup()
        return lambda n: samples[case.key].append(time_pairs(acq, rel, n, arg))

    def task_unit(n: int) -> None:
        for key, ns in run_cases_in_task(kernel, tcases, n, task_timeout).items():
            samples[key].append(ns)

    units: list[Callable[[int], None]] = [lambda n: loop_floor.append(time_empty_loop(n))]
    units += [harness_unit(c) for c in hcases]
    units.append(task_unit)
    try:
        for unit in units:  # warm-up: specialise the bytecode, fault everything in
            unit(min(ops, 2000))
        for lst in (*samples.values(), loop_floor):
            lst.clear()
        for r in range(repeats):
            k = r % len(units)
            for unit in units[k:] + units[:k]:
                unit(ops)
    finally:
        report = kernel.shutdown()
        if not report.clean:
            print(f"warning: {report.format()}", file=sys.stderr)
    return hcases + tcases, samples, loop_floor


# -- contended mix ----------------------------------------------------------------

MixOps = tuple[Op, Op, Op, Op]  # read acquire, read release, write acquire, write release


def mix_ops_lock(nthreads: int) -> list[MixOps]:
    lock = threading.Lock()
    return [(lock.acquire, lock.release, lock.acquire, lock.release)] * nthreads


def mix_ops_rwsem(nthreads: int) -> list[MixOps]:
    sem = RwSemaphore("bench-mix", handoff=False)
    return [(sem.down_read, sem.up_read, sem.down_write, sem.up_write)] * nthreads


def mix_ops_rwsem_handoff(nthreads: int) -> list[MixOps]:
    sem = RwSemaphore("bench-mix", handoff=True)
    return [(sem.down_read, sem.up_read, sem.down_write, sem.up_write)] * nthreads


def mix_ops_rwl(rwlock: ModuleType) -> Callable[[int], list[MixOps]]:
    def make(nthreads: int) -> list[MixOps]:
        lock = rwlock.RWLockWrite()
        out: list[MixOps] = []
        for _ in range(nthreads):  # a reader/writer object per thread: they carry state
            r, w = lock.gen_rlock(), lock.gen_wlock()
            out.append((r.acquire, r.release, w.acquire, w.release))
        return out
    return make


def mix_patterns(seed: int, nthreads: int) -> list[list[list[bool]]]:
    """Per thread, its op sequence (True: read) cut in chunks of MIX_CHUNK."""
    out = []
    for i in range(nthreads):
        rng = random.Random(seed + i)
        seq = [rng.random() < READ_FRACTION for _ in range(MIX_PATTERN_LEN)]
        out.append([seq[j:j + MIX_CHUNK] for j in range(0, MIX_PATTERN_LEN, MIX_CHUNK)])
    return out


@dataclass
class MixRun:
    ops: int
    seconds: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds


def _mix_worker(ops: MixOps, chunks: list[list[bool]], barrier: threading.Barrier,
                stop: list[bool], shared: list[int], results: list[Any], idx: int) -> None:
    racq, rrel, wacq, wrel = ops
    writes_in = [sum(1 for r in ch if not r) for ch in chunks]
    nchunks = len(chunks)
    n = writes = 0
    c = 0
    try:
        barrier.wait()
        while not stop[0]:
            chunk = chunks[c]
            for is_read in chunk:
                if is_read:
                    racq()
                    _ = shared[0]
                    rrel()
                else:
                    wacq()
                    shared[0] += 1
                    wrel()
            n += len(chunk)
            writes += writes_in[c]
            c += 1
            if c == nchunks:
                c = 0
        results[idx] = (n, writes, time.perf_counter())
    except BaseException as e:  # reported by the harness
        results[idx] = e


def run_mix_once(make_ops: Callable[[int], list[MixOps]], patterns: list[list[list[bool]]],
                 seconds: float) -> MixRun:
    nthreads = len(patterns)
    per_thread = make_ops(nthreads)
    stop = [False]
    shared = [0]
    results: list[Any] = [None] * nthreads
    started: list[float] = []
    barrier = threading.Barrier(nthreads + 1, action=lambda: started.append(time.perf_counter()),
                                timeout=JOIN_SLACK)
    threads = [threading.Thread(target=_mix_worker, name=f"bench-mix-{i}", daemon=True,
                                args=(per_thread[i], patterns[i], barrier, stop, shared, results, i))
               for i in range(nthreads)]
    for t in threads:
        t.start()
    try:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            raise BenchError("mix workers did not all start") from None
        time.sleep(seconds)
    finally:
        stop[0] = True
        deadline = time.monotonic() + seconds + JOIN_SLACK
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise BenchError(f"mix threads did not finish (lost wakeup?): {', '.join(stuck)}")
    for r in results:
        if isinstance(r, BaseException):
            raise BenchError(f"a mix worker failed: {r!r}")
    total = sum(r[0] for r in results)
    writes = sum(r[1] for r in results)
    if shared[0] != writes:
        raise BenchError(f"lost updates: {writes} writes but the counter reads {shared[0]}")
    return MixRun(total, max(r[2] for r in results) - started[0])


@dataclass
class MixResult:
    runs: list[float] = field(default_factory=list)  # ops/s of each good run
    errors: list[str] = field(default_factory=list)

    @property
    def best(self) -> float | None:
        return max(self.runs) if self.runs else None


def measure_mix(repeats: int, seconds: float, seed: int, rwlock: ModuleType | None
                ) -> dict[str, MixResult]:
    impls: dict[str, Callable[[int], list[MixOps]]] = {"lock": mix_ops_lock, "rwsem": mix_ops_rwsem,
                                                       "rwsem_handoff": mix_ops_rwsem_handoff}
    if rwlock is not None:
        impls["rwl"] = mix_ops_rwl(rwlock)
    patterns = mix_patterns(seed, MIX_THREADS)
    out = {k: MixResult() for k in impls}
    for _ in range(repeats):
        for key, make in impls.items():
            try:
                out[key].runs.append(run_mix_once(make, patterns, seconds).ops_per_s)
            except BenchError as e:
                out[key].errors.append(str(e))
    return out


# -- reporting ----------------------------------------------------------------------

@dataclass(frozen=True)
class Goal:
    text: str
    target: str
    value: float | None  # the measured ratio
    met: bool | None  # None: not measurable in this run
    note: str = ""


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def evaluate_goals(best: dict[str, float], mix: dict[str, MixResult],
                   have_rwl: bool) -> list[Goal]:
    goals = []
    r = _ratio(best.get("rwsem.harness.read_trylock"), best.get("lock"))
    goals.append(Goal("uncontended read trylock+release (harness) vs threading.Lock",
                      f"<= {GOAL_TRYLOCK_VS_LOCK:g}x Lock's ns/op", r,
                      None if r is None else r <= GOAL_TRYLOCK_VS_LOCK))
    skip = "" if have_rwl else "readerwriterlock not installed"
    r = _ratio(best.get("rwl.harness.read_trylock"), best.get("rwsem.harness.read_trylock"))
    goals.append(Goal("read trylock+release speedup vs RWLockWrite",
                      f">= {GOAL_TRYLOCK_VS_RWL:g}x faster", r,
                      None if r is None else r >= GOAL_TRYLOCK_VS_RWL, skip))
    r = _ratio(mix["rwsem"].best, mix["rwl"].best if "rwl" in mix else None)
    goals.append(Goal(f"{MIX_THREADS}-thread mix ops/s (4.6 rwsem) vs RWLockWrite",
                      f">= {GOAL_MIX_VS_RWL:g}x its ops/s", r,
                      None if r is None else r >= GOAL_MIX_VS_RWL,
                      skip or ("a mix measurement failed" if r is None else "")))
    r = _ratio(mix["rwsem"].best, mix["lock"].best)
    goals.append(Goal(f"{MIX_THREADS}-thread mix ops/s (4.6 rwsem) vs threading.Lock",
                      f">= {GOAL_MIX_VS_LOCK:g}x its ops/s", r,
                      None if r is None else r >= GOAL_MIX_VS_LOCK,
                      "a mix measurement failed" if r is None else ""))
    return goals


def environment() -> dict[str, Any]:
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "switchinterval": sys.getswitchinterval(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "readerwriterlock": readerwriterlock_version(),
    }


def worst_spread(samples: dict[str, list[float]]) -> tuple[str, float]:
    """The case whose median is furthest above its min, and that ratio."""
    key = max(samples, key=lambda k: statistics.median(samples[k]) / min(samples[k]))
    return key, statistics.median(samples[key]) / min(samples[key])


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def print_report(env: dict[str, Any], params: dict[str, Any], cases: list[Case],
                 samples: dict[str, list[float]], loop_floor: list[float],
                 mix: dict[str, MixResult], goals: list[Goal]) -> None:
    p = print
    p("kthreads.RwSemaphore benchmark")
    p(f"Python {env['python']} ({env['implementation']}) on {env['platform']}")
    p(f"sys.getswitchinterval() = {env['switchinterval']} s; CPUs: {env['cpus']} "
      f"({env['cpus_usable']} usable)")
    p(f"readerwriterlock: {env['readerwriterlock'] or 'not installed'}")
    p("")
    best = {k: min(v) for k, v in samples.items()}
    lock = best["lock"]
    p(f"Uncontended: {params['ops']} acquire+release pairs per case, {params['repeats']} "
      f"interleaved rounds; min ns/op (median), ratio to threading.Lock (min)")
    p(f"  (empty loop with two no-op calls: {min(loop_floor):.1f} ns/op, included in every figure)")
    p(f"  {'case':<42} {'context':<15} {'min ns/op':>10} {'(median)':>10} {'x Lock':>8}")
    for c in cases:
        v = samples[c.key]
        p(f"  {c.label:<42} {c.context:<15} {best[c.key]:>10.1f} "
          f"{'(' + format(statistics.median(v), '.1f') + ')':>10} {best[c.key] / lock:>7.2f}x")
    key, spread = worst_spread(samples)
    if spread > NOISY_SPREAD:
        p(f"  WARNING: noisy run: {key} median is {spread:.2f}x its min; the mins are still "
          f"compared, but a rerun with more --repeats is safer")
    p("")
    if "rwl.harness.read" in best:
        p("kthreads vs readerwriterlock RWLockWrite (harness thread, min ns/op; speedup = rwl/kthreads)")
        p(f"  {'op':<16} {'RwSemaphore':>12} {'RWLockWrite':>12} {'speedup':>9}")
        for k, _ in RWL_LABELS:
            kt, rw = best[f"rwsem.harness.{k}"], best[f"rwl.harness.{k}"]
            p(f"  {k:<16} {kt:>12.1f} {rw:>12.1f} {rw / kt:>8.2f}x")
        p("")
    else:
        p("readerwriterlock comparison: skipped (not installed; `pip install readerwriterlock` "
          "to compare against its RWLockWrite)")
        p("")
    p(f"Contended mix: {MIX_THREADS} threads, {READ_FRACTION:.0%} read / {1 - READ_FRACTION:.0%} "
      f"write, tiny critical section, {params['mix_seconds']:g} s per run, best of "
      f"{params['mix_repeats']} interleaved runs (seed {params['seed']})")
    p(f"  {'lock type':<42} {'best ops/s':>12} {'(median)':>12} {'x Lock':>8}")
    labels = {"lock": "threading.Lock (mutex for reads and writes)",
              "rwsem": "RwSemaphore down_read/down_write (4.6)",
              "rwsem_handoff": "RwSemaphore with 5.3's hand-off",
              "rwl": "readerwriterlock RWLockWrite"}
    base = mix["lock"].best
    for key, res in mix.items():
        med = statistics.median(res.runs) if res.runs else None
        ratio = _ratio(res.best, base)
        p(f"  {labels[key]:<42} {_fmt(res.best, ',.0f'):>12} "
          f"{'(' + _fmt(med, ',.0f') + ')':>12} {_fmt(ratio, '.2f') + 'x':>8}")
        for err in res.errors:
            p(f"    WARNING: {err}")
    if "rwl" in mix:
        p(f"  RwSemaphore / RWLockWrite: {_fmt(_ratio(mix['rwsem'].best, mix['rwl'].best), '.2f')}x")
    p("")
    p("Goals (reported, not enforced)")
    for g in goals:
        status = "skipped" if g.met is None else ("MET" if g.met else "NOT MET")
        extra = f" ({g.note})" if g.note else ""
        p(f"  [{status:^7}] {g.text}: {_fmt(g.value, '.2f')}x, goal {g.target}{extra}")


def build_json(env: dict[str, Any], params: dict[str, Any], cases: list[Case],
               samples: dict[str, list[float]], loop_floor: list[float],
               mix: dict[str, MixResult], goals: list[Goal]) -> dict[str, Any]:
    lock = min(samples["lock"])
    unc: dict[str, Any] = {}
    for c in cases:
        v = samples[c.key]
        unc[c.key] = {"label": c.label, "context": c.context, "ns_per_op": min(v),
                      "median_ns_per_op": statistics.median(v), "ratio_to_lock": min(v) / lock,
                      "samples_ns_per_op": v}
    mix_out = {k: {"ops_per_s": r.best, "ratio_to_lock": _ratio(r.best, mix["lock"].best),
                   "samples_ops_per_s": r.runs, "errors": r.errors} for k, r in mix.items()}
    return {
        "environment": env,
        "params": params,
        "empty_loop_ns_per_op": min(loop_floor),
        "worst_spread": {"case": worst_spread(samples)[0], "median_over_min": worst_spread(samples)[1]},
        "uncontended": unc,
        "mix": mix_out,
        "goals": [{"goal": g.text, "target": g.target, "ratio": g.value, "met": g.met,
                   "note": g.note} for g in goals],
    }


# -- command line ---------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="benchmarks/rwsem.py",
        description="Benchmark kthreads.RwSemaphore against threading.Lock (and "
                    "readerwriterlock's RWLockWrite when installed).")
    ap.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                    help=f"interleaved rounds of the uncontended cases; min is kept "
                         f"(default {DEFAULT_REPEATS})")
    ap.add_argument("--ops", type=int, default=DEFAULT_OPS,
                    help=f"acquire+release pairs per case per round (default {DEFAULT_OPS})")
    ap.add_argument("--mix-seconds", type=float, default=DEFAULT_MIX_SECONDS,
                    help=f"duration of one contended-mix run (default {DEFAULT_MIX_SECONDS:g})")
    ap.add_argument("--mix-repeats", type=int, default=DEFAULT_MIX_REPEATS,
                    help=f"contended-mix runs per lock type; best is kept "
                         f"(default {DEFAULT_MIX_REPEATS})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"seed of the mix's per-thread op sequences (default {DEFAULT_SEED})")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.ops < 1:
        ap.error("--ops must be >= 1")
    if not 0 < args.mix_seconds <= 600:
        ap.error("--mix-seconds must be in (0, 600]")
    if args.mix_repeats < 1:
        ap.error("--mix-repeats must be >= 1")
    if args.json is not None and not args.json.resolve().parent.is_dir():
        ap.error(f"--json: directory {args.json.resolve().parent} does not exist")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    t0 = time.monotonic()
    rwlock = load_readerwriterlock()
    env = environment()
    if rwlock is None:
        env["readerwriterlock"] = None
    elif env["readerwriterlock"] is None:
        env["readerwriterlock"] = "installed (version unknown)"
    params = {"repeats": args.repeats, "ops": args.ops, "mix_seconds": args.mix_seconds,
              "mix_repeats": args.mix_repeats, "mix_threads": MIX_THREADS,
              "read_fraction": READ_FRACTION, "seed": args.seed}
    cases, samples, loop_floor = measure_uncontended(args.repeats, args.ops, rwlock)
    mix = measure_mix(args.mix_repeats, args.mix_seconds, args.seed, rwlock)
    best = {k: min(v) for k, v in samples.items()}
    goals = evaluate_goals(best, mix, rwlock is not None)
    print_report(env, params, cases, samples, loop_floor, mix, goals)
    print(f"\n(ran in {time.monotonic() - t0:.1f} s)")
    if args.json is not None:
        doc = build_json(env, params, cases, samples, loop_floor, mix, goals)
        try:
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
        except OSError as e:
            print(f"error: cannot write {args.json}: {e}", file=sys.stderr)
            return 1
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
