"""PNG plots for ``pykv bench compare`` (matplotlib, drawn off-screen)."""

from __future__ import annotations

import math
import pathlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .compare import WorkloadComparison

_COLOURS = ("#1f77b4", "#ff7f0e")
_MIN_TIMELINE_BUCKETS = 5  # half a second of 100 ms buckets


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError("the report's plots need matplotlib (pip install matplotlib)") from exc
    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    return plt


def throughput_bars(path: pathlib.Path, comparisons: list["WorkloadComparison"], a: str, b: str) -> None:
    """Grouped horizontal bars: requests/s per workload for both sides, with the ratio."""
    plt = _pyplot()
    names = [c.preset.name for c in comparisons]
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(names) + 1.5))
    height = 0.38
    for i, c in enumerate(comparisons):
        for j, side in enumerate((a, b)):
            value = c.rps(side)
            y = i + (j - 0.5) * height
            ax.barh(y, value, height, color=_COLOURS[j], label=side if i == 0 else None)
            ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
        rb = c.rps(b)
        ratio = c.rps(a) / rb if rb else float("inf")
        ax.text(0, i + height + 0.12, f"{a}/{b} = {ratio:.2f}", fontsize=7, color="#444")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("requests per second (mean over rounds; watch: events/s)")
    ax.set_title("Throughput")
    ax.margins(x=0.15)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panels(count: int, panel_height: float):
    """A grid of up to three panels per row; returns (pyplot, figure, flat list of axes)."""
    plt = _pyplot()
    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, panel_height * rows), squeeze=False)
    return plt, fig, list(axes.flat)


def _save(plt, fig, axes: list, used: int, title: str, path: pathlib.Path) -> None:
    for ax in axes[used:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _nines(q: float) -> float:
    """Position of quantile q on a 'number of nines' axis: 0.9 -> 1, 0.99 -> 2."""
    return -math.log10(max(1.0 - q, 1e-6))


def latency_cdfs(path: pathlib.Path, comparisons: list["WorkloadComparison"], a: str, b: str) -> None:
    """One panel per workload: latency against quantile (tail stretched), every run drawn."""
    plt, fig, axes = _panels(len(comparisons), 3.2)
    ticks = [0.5, 0.9, 0.99, 0.999, 0.9999]
    for ax, c in zip(axes, comparisons):
        for j, side in enumerate((a, b)):
            for k, run in enumerate(c.runs[side]):
                cdf = run["main"]["cdf"] if run["main"] else []
                if not cdf:
                    continue
                xs = [_nines(q) for q, _ in cdf]
                ys = [v * 1000 for _, v in cdf]
                ax.plot(xs, ys, color=_COLOURS[j], alpha=0.9 if k == 0 else 0.45, linewidth=1.4,
                        label=side if k == 0 else None)
        ax.set_yscale("log")
        ax.set_xticks([_nines(t) for t in ticks], [f"p{t * 100:g}" for t in ticks], fontsize=7)
        ax.set_title(c.preset.name, fontsize=10)
        ax.set_ylabel("ms", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _save(plt, fig, axes, len(comparisons), "Latency by quantile (log scale; lower is better)", path)


def timelines(path: pathlib.Path, comparisons: list["WorkloadComparison"], a: str, b: str) -> None:
    """One panel per workload: completions/s per 100 ms bucket in the first round of each side."""
    plt, fig, axes = _panels(len(comparisons), 2.6)
    for ax, c in zip(axes, comparisons):
        drawn = False
        for j, side in enumerate((a, b)):
            runs = c.runs[side]
            if not runs:
                continue
            per_label = runs[0]["throughput_per_100ms"]
            series = per_label.get(runs[0]["workload"]) or next(iter(per_label.values()), [])
            # The last bucket is cut short by the end of the run: leave it out.
            series = series[:-1]
            if len(series) < _MIN_TIMELINE_BUCKETS:
                continue
            ax.plot([(i + 0.5) * 0.1 for i in range(len(series))], series, color=_COLOURS[j],
                    label=side, linewidth=1.2, marker=".", markersize=3)
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "run too short for a timeline\n(use --duration)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=8, color="#666")
        else:
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
        ax.set_title(c.preset.name, fontsize=10)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("req/s", fontsize=8)
        ax.grid(alpha=0.3)
    _save(plt, fig, axes, len(comparisons), "Throughput over time", path)
