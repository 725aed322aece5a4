"""Latency statistics and their rendering, after etcd's ``pkg/report``.

The text summary has etcd benchmark's shape (Summary, Response time
histogram, Latency distribution, Error distribution) so that the two tools'
outputs can be read side by side; the same figures are available as JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
# Quantiles kept for plotting latency distributions (dense in the tail).
CDF_QUANTILES = tuple(i / 100 for i in range(1, 100)) + (0.995, 0.999, 0.9995, 0.9999)
HISTOGRAM_BUCKETS = 10
_BAR = "∎"
_BAR_WIDTH = 40


def percentile_values(sorted_s: list[float]) -> list[float]:
    """etcd's percentile rule: the element at ceil(p*(n+1)/100)-1, clamped to the list."""
    n = len(sorted_s)
    if n == 0:
        return [0.0] * len(PERCENTILES)
    out = []
    for p in PERCENTILES:
        index = min(max(math.ceil(p * (n + 1) / 100.0) - 1, 0), n - 1)
        out.append(sorted_s[index])
    return out


def histogram(sorted_s: list[float]) -> list[tuple[float, int]]:
    """(upper bound, count) for 10 equal-width buckets from fastest to slowest, plus the
    slowest itself, as etcd draws it; each latency counts in the first bucket it fits."""
    if not sorted_s:
        return []
    fastest, slowest = sorted_s[0], sorted_s[-1]
    width = (slowest - fastest) / HISTOGRAM_BUCKETS
    bounds = [fastest + width * i for i in range(HISTOGRAM_BUCKETS)] + [slowest]
    counts = [0] * len(bounds)
    bucket = 0
    for latency in sorted_s:
        while latency > bounds[bucket] and bucket < len(bounds) - 1:
            bucket += 1
        counts[bucket] += 1
    return list(zip(bounds, counts))


@dataclass
class LatencyStats:
    """Figures for one kind of operation; times in seconds."""

    count: int
    total_s: float
    fastest_s: float = 0.0
    slowest_s: float = 0.0
    average_s: float = 0.0
    stddev_s: float = 0.0
    percentiles_s: list[float] = field(default_factory=list)
    histogram: list[tuple[float, int]] = field(default_factory=list)
    cdf: list[tuple[float, float]] = field(default_factory=list)  # (quantile, latency)

    @property
    def rps(self) -> float:
        return self.count / self.total_s if self.total_s > 0 else 0.0

    @classmethod
    def from_latencies(cls, latencies_s: list[float], total_s: float) -> "LatencyStats":
        data = sorted(latencies_s)
        stats = cls(count=len(data), total_s=total_s)
        if data:
            average = math.fsum(data) / len(data)
            stats.fastest_s, stats.slowest_s, stats.average_s = data[0], data[-1], average
            stats.stddev_s = math.sqrt(math.fsum((x - average) ** 2 for x in data) / len(data))
            stats.percentiles_s = percentile_values(data)
            stats.histogram = histogram(data)
            n = len(data)
            stats.cdf = [(q, data[min(int(q * n), n - 1)]) for q in CDF_QUANTILES]
        return stats

    def to_json(self) -> dict:
        return {
            "count": self.count,
            "requests_per_s": self.rps,
            "fastest_s": self.fastest_s,
            "slowest_s": self.slowest_s,
            "average_s": self.average_s,
            "stddev_s": self.stddev_s,
            "percentiles_s": {_pct_name(p): v for p, v in zip(PERCENTILES, self.percentiles_s)},
            "histogram": [{"le_s": bound, "count": count} for bound, count in self.histogram],
            "cdf": [[q, v] for q, v in self.cdf],
        }

    def render(self, precision: int = 4) -> str:
        """etcd benchmark's text: Summary, histogram, latency distribution."""
        if not self.count:
            return "\nSummary:\n  no successful requests.\n"
        f = f"{{:{precision}.{precision}f}}"
        lines = ["", "Summary:",
                 f"  Total:\t{f.format(self.total_s)} secs.",
                 f"  Slowest:\t{f.format(self.slowest_s)} secs.",
                 f"  Fastest:\t{f.format(self.fastest_s)} secs.",
                 f"  Average:\t{f.format(self.average_s)} secs.",
                 f"  Stddev:\t{f.format(self.stddev_s)} secs.",
                 f"  Requests/sec:\t{f.format(self.rps)}",
                 "", "Response time histogram:"]
        peak = max(count for _, count in self.histogram)
        for bound, count in self.histogram:
            bar = _BAR * (count * _BAR_WIDTH // peak if peak else 0)
            lines.append(f"  {f.format(bound)} [{count}]\t|{bar}")
        lines += ["", "Latency distribution:"]
        for p, value in zip(PERCENTILES, self.percentiles_s):
            if value > 0:
                lines.append(f"  {_pct_name(p)}% in {value * 1000:.3f} ms.")
        return "\n".join(lines) + "\n"


def _pct_name(p: float) -> str:
    return f"{p:g}"


def render_errors(errors: dict[str, int]) -> str:
    if not errors:
        return ""
    lines = ["", "Error distribution:"]
    lines += [f"  [{count}]\t{text}" for text, count in sorted(errors.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines) + "\n"
