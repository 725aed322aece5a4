"""Run many simulation seeds over worker processes and sum up the results."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from tests.sim.sim import InvariantViolation, run_seed


def _run_one(args: tuple[int, int]) -> tuple[int, dict | None, str | None]:
    seed, steps = args
    try:
        return seed, run_seed(seed, steps), None
    except InvariantViolation as exc:
        return seed, None, str(exc)


@dataclass
class Summary:
    results: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def totals(self) -> Counter:
        totals: Counter = Counter()
        for result in self.results:
            for key, value in result.items():
                if key not in ("seed", "digest"):
                    totals[key] += value
        return totals

    def report(self, elapsed_s: float) -> str:
        totals = self.totals()
        seeds = len(self.results) + len(self.failures)
        lines = [f"{seeds} seeds, {len(self.failures)} failed, {elapsed_s:.1f} s wall"]
        lines.append("  " + ", ".join(f"{key}={value}" for key, value in sorted(totals.items())))
        return "\n".join(lines)


def run_seeds(seeds: Iterable[int], steps: int, workers: int) -> Summary:
    summary = Summary()
    jobs = [(seed, steps) for seed in seeds]
    if workers <= 1:
        outcomes = map(_run_one, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers)
        outcomes = pool.imap_unordered(_run_one, jobs, chunksize=4)
    try:
        for seed, result, failure in outcomes:
            if failure is not None:
                summary.failures.append(failure)
            else:
                summary.results.append(result)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    summary.results.sort(key=lambda r: r["seed"])
    summary.failures.sort()
    return summary
