"""What does the flight recorder cost? (benchmarks/recorder.py)

Runs the same soak seeds in this process with the recorder on and off,
interleaved (on, off, on, off, ...), and prints episodes/s for each and the
ratio. The goal: with the recorder on, throughput within 20% of off.

    python benchmarks/recorder.py [--episodes 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from kthreads import Policy
from stress.episode import Keep
from stress.soak import SoakSettings, run_one


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=300, help="episodes per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.rounds < 1:
        ap.error("--episodes and --rounds must be positive")
    base = SoakSettings(keep=Keep.NONE)
    best = {True: 0.0, False: 0.0}
    for r in range(args.rounds):
        for trace in (True, False) if r % 2 == 0 else (False, True):
            s = replace(base, trace=trace)
            t0 = time.monotonic()
            for i in range(args.episodes):
                run_one(i, (Policy.NONE, Policy.PATCH1)[i % 2], s)
            rate = args.episodes / (time.monotonic() - t0)
            best[trace] = max(best[trace], rate)
            print(f"round {r + 1}: recorder {'on ' if trace else 'off'} {rate:7.1f} episodes/s", flush=True)
    ratio = best[True] / best[False]
    print(f"\nbest of {args.rounds}: on {best[True]:.1f} eps/s, off {best[False]:.1f} eps/s: "
          f"on/off = {ratio:.3f} ({100 * (1 - ratio):.1f}% slower); goal: within 20%: "
          f"{'MET' if ratio >= 0.8 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
