"""Latency statistics follow etcd's pkg/report definitions."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from pykv.bench.stats import PERCENTILES, LatencyStats, histogram, percentile_values


def test_percentiles_use_etcds_rank_rule():
    # etcd: index ceil(p*(n+1)/100)-1, clamped; for n=10: p10 -> ceil(1.1)-1=1, p50 -> ceil(5.5)-1=5,
    # p90 -> ceil(9.9)-1=9, p99 -> ceil(10.89)-1=10 -> clamped to 9.
    data = [float(i) for i in range(10)]
    got = dict(zip(PERCENTILES, percentile_values(data)))
    assert got[10.0] == 1.0
    assert got[25.0] == 2.0  # ceil(2.75)-1
    assert got[50.0] == 5.0
    assert got[90.0] == 9.0
    assert got[99.9] == 9.0


def test_histogram_has_eleven_bounds_from_fastest_to_slowest():
    data = sorted([0.001, 0.002, 0.002, 0.003, 0.010])
    bins = histogram(data)
    assert len(bins) == 11
    assert bins[0][0] == 0.001 and bins[-1][0] == 0.010
    assert sum(count for _, count in bins) == len(data)
    assert bins[0][1] == 1  # only the fastest sits at the first bound


@given(st.lists(st.floats(min_value=1e-6, max_value=10.0, allow_nan=False), min_size=1, max_size=300))
def test_stats_are_consistent_for_any_sample(latencies):
    stats = LatencyStats.from_latencies(latencies, total_s=2.0)
    assert stats.count == len(latencies)
    assert stats.fastest_s == min(latencies) and stats.slowest_s == max(latencies)
    assert stats.fastest_s <= stats.average_s * (1 + 1e-9) and stats.average_s <= stats.slowest_s * (1 + 1e-9)
    assert stats.percentiles_s == sorted(stats.percentiles_s)
    assert stats.fastest_s <= stats.percentiles_s[0] and stats.percentiles_s[-1] <= stats.slowest_s
    assert sum(count for _, count in stats.histogram) == len(latencies)
    assert math.isclose(stats.rps, len(latencies) / 2.0)


def test_render_has_etcd_benchmark_sections():
    text = LatencyStats.from_latencies([0.001, 0.002, 0.004], total_s=1.0).render()
    for section in ("Summary:", "Total:", "Slowest:", "Fastest:", "Average:", "Stddev:",
                    "Requests/sec:", "Response time histogram:", "Latency distribution:"):
        assert section in text
    assert "  50% in 2.000 ms." in text
    assert "Requests/sec:\t3.0000" in text
