"""Run the Raft simulation from the command line (the long mode).

    python -m tests.sim --seeds 10000            # seeds 0..9999, all cores
    python -m tests.sim --seed 1234 --steps 5000 # one seed, with its statistics

A failing seed prints its number, its options and the command that
reproduces it exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tests.sim.runner import run_seeds
from tests.sim.sim import run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="run this one seed and print its statistics")
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds (default 200)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--steps", type=int, default=2000, help="steps (ticks) per seed")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.seed is not None:
        result = run_seed(args.seed, args.steps)
        for key, value in result.items():
            print(f"{key}: {value}")
        return 0
    started = time.perf_counter()
    summary = run_seeds(range(args.start, args.start + args.seeds), args.steps, args.workers)
    elapsed = time.perf_counter() - started
    for failure in summary.failures:
        print(failure, file=sys.stderr)
    print(summary.report(elapsed))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
