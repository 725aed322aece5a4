"""Shared helpers of the benchmark suites.

This machine is shared and noisy, so every figure is reported beside a
reference measured in the same run: ``compare`` runs the candidates and the
reference interleaved, round by round, keeps each one's best round (the
least disturbed by other load), prints one line per candidate with its
ratio to the reference, and records the figures in ``benchmark.extra_info``.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest


def rate_of(fn: Callable[[], float]) -> float:
    """Units per second of one call; fn returns how many units it did."""
    start = time.perf_counter()
    units = fn()
    return units / (time.perf_counter() - start)


@pytest.fixture
def compare(benchmark):
    """compare(name, {label: fn}, reference=label, rounds=5, unit="ops/s",
    setup=None, warmup=0) -> {label: best rate}. Each fn returns the units
    it did; setup (if given) runs before every call, untimed; ``warmup``
    untimed rounds of every fn come first (a store's first writes into an
    empty file are not what it does afterwards)."""

    def run(name: str, fns: dict[str, Callable[[], float]], reference: str, rounds: int = 5,
            unit: str = "ops/s", setup: Callable[[str], None] | None = None,
            warmup: int = 0) -> dict[str, float]:
        best = dict.fromkeys(fns, 0.0)
        for round_ in range(warmup + rounds):
            for label, fn in fns.items():
                if setup:
                    setup(label)
                rate = rate_of(fn)
                if round_ >= warmup:
                    best[label] = max(best[label], rate)
        ref = best[reference]
        after = f", after {warmup} untimed" if warmup else ""
        print(f"\n{name} ({unit}, best of {rounds} interleaved rounds{after})")
        for label, value in best.items():
            ratio = "" if label == reference else f"  ratio {value / ref:.2f}"
            print(f"  {label:28s} {value:16,.0f}{ratio}")
            benchmark.extra_info[label] = value
        benchmark.extra_info.update({"reference": reference, "unit": unit})
        # pytest-benchmark wants a timed call: one quick extra round of the
        # reference (the figures that matter are printed and in extra_info).
        if setup:
            setup(reference)
        benchmark.pedantic(fns[reference], rounds=1, iterations=1)
        return best

    return run
