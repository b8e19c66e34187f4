"""How fast does the reaper break lockup A? (benchmarks/recovery.py)

Runs the ``lockup-mutex`` scenario under ``patch1`` many times and reads, from
each episode's event ring, three latencies after the OOM kill:

* kill -> reaper starts   (``start_task_reaping``): waking a kernel thread;
* kill -> pages freed     (``finish_task_reaping``): plus unmapping ~960 pages;
* kill -> allocation ok   (the writer's ``alloc_success``): plus the 4.6 OOM
  killer's one-jiffy sleep holding oom_lock after a kill, and the writer's
  next slow-path round (one jiffy of direct-reclaim time in the model).

Model time is derived from the monotonic clock, so a model interval divided
by the speed factor is real time. The floor is measured in the same run: the
latency of waking a thread blocked on a bare ``threading.Event``.

    python benchmarks/recovery.py [--episodes 200] [--speed 50] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from kthreads import Ev, Policy
from stress import EpisodeConfig, Outcome, Timing, get_scenario, run_episode


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def event_wake_floor(n: int = 2000) -> list[float]:
    """Real seconds from Event.set() to the waiter running, n samples."""
    go, back = threading.Event(), threading.Event()
    stamp: list[float] = [0.0]
    out: list[float] = []

    def waiter() -> None:
        for _ in range(n):
            go.wait(5)
            go.clear()
            out.append(time.perf_counter() - stamp[0])
            back.set()

    t = threading.Thread(target=waiter)
    t.start()
    for _ in range(n):
        stamp[0] = time.perf_counter()
        go.set()
        back.wait(5)  # the signalling thread then blocks, as the OOM killer sleeps
        back.clear()
    t.join(10)
    return out


def measure(episodes: int, speed: float, hz: int) -> dict[str, list[float]]:
    sc = get_scenario("lockup-mutex")
    series: dict[str, list[float]] = {"kill_to_reap_start": [], "kill_to_freed": [], "kill_to_alloc": []}
    bad = 0
    for i in range(episodes):
        res = run_episode(sc, EpisodeConfig(policy=Policy.PATCH1, seed=i, timing=Timing(speed=speed, hz=hz)))
        if res.outcome is not Outcome.RECOVERED_BY_REAPER or res.recovery_seconds is None:
            bad += 1
            continue
        start = next(e.t for e in res.kernel.tracer.events() if e.name == Ev.START_TASK_REAPING)
        series["kill_to_reap_start"].append(start - res.kill_at)
        series["kill_to_freed"].append(res.freed_at - res.kill_at)
        series["kill_to_alloc"].append(res.recovered_at - res.kill_at)
    if bad:
        print(f"WARNING: {bad} of {episodes} episodes did not recover by the reaper", file=sys.stderr)
    return series


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--speed", type=float, default=50.0)
    ap.add_argument("--hz", type=int, default=100)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--switch-interval", type=float, default=None, metavar="SECS",
                    help="sys.setswitchinterval() for the run (default: leave as is)")
    args = ap.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.episodes < 1:
        ap.error("--episodes must be at least 1")
    floor = event_wake_floor()
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    t0 = time.monotonic()
    series = measure(args.episodes, args.speed, args.hz)
    wall = time.monotonic() - t0
    jiffy_us = 1e6 / (args.hz * args.speed)
    print(f"lockup-mutex under patch1: {args.episodes} episodes in {wall:.1f} s "
          f"(HZ={args.hz}, speed {args.speed:g}: one jiffy = {jiffy_us:.0f} us real); "
          f"sys.getswitchinterval()={sys.getswitchinterval()}")
    print(f"floor: threading.Event wake latency p50 {f50 * 1e6:.0f} us, p99 {f99 * 1e6:.0f} us "
          f"({len(floor)} samples)\n")
    print(f"{'interval':<22} {'p50 us':>9} {'p99 us':>9} {'max us':>9} {'p50 jif':>8} {'p99 jif':>8}"
          f" {'p99/floor p99':>14}")
    out = {"floor_p50_us": f50 * 1e6, "floor_p99_us": f99 * 1e6, "episodes": args.episodes,
           "speed": args.speed, "hz": args.hz, "intervals": {}}
    for name, xs in series.items():
        if not xs:
            continue
        real = [x / args.speed for x in xs]
        p50, p99, mx = percentile(real, 0.5), percentile(real, 0.99), max(real)
        print(f"{name:<22} {p50 * 1e6:9.0f} {p99 * 1e6:9.0f} {mx * 1e6:9.0f} "
              f"{p50 * 1e6 / jiffy_us:8.2f} {p99 * 1e6 / jiffy_us:8.2f} {p99 / f99:14.1f}")
        out["intervals"][name] = {"p50_us": p50 * 1e6, "p99_us": p99 * 1e6, "max_us": mx * 1e6,
                                  "mean_us": statistics.mean(real) * 1e6}
    alloc = out["intervals"].get("kill_to_alloc")
    if alloc:
        budget = 10 * f99 * 1e6 + 2 * jiffy_us
        print(f"\ngoal: kill->alloc p99 <= 10 x floor p99 + the model's two one-jiffy sleeps "
              f"(post-kill sleep, reclaim round) = {budget:.0f} us: "
              f"{'MET' if alloc['p99_us'] <= budget else 'NOT MET'} ({alloc['p99_us']:.0f} us)")
        out["goal_budget_us"] = budget
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
