"""Single-node server: ``pykv serve`` beside real etcd, alternated in the same session.

Run:  python -m pytest bench/test_server.py -s -q -p no:cacheprovider
      PYKV_BENCH_SERVER_S=3 (seconds per run), PYKV_BENCH_SERVER_ROUNDS=2 (runs per side).
Results and their reading: bench/results/server.md.

Both servers are started here once per module with the same settings (fresh
data directory in the same filesystem, loopback, fsync on), and every
workload runs against each in alternating order, round by round (pykv, etcd,
then etcd, pykv, ...), so that load from other work on this shared machine
falls on both alike. The reference for every figure is etcd measured in the
same session: ``extra_info`` holds each side's requests/s, server CPU per
operation and latency percentiles (medians over the rounds) and their ratios,
and each round's throughput ratio so that the spread is visible.

The load generator is ``pykv bench`` (Python gRPC clients in worker
processes on the same 2 cores), so absolute figures are lower than etcd's
own Go benchmark would show; the ratios are what travel.
"""

from __future__ import annotations

import os
import shutil
import statistics

import pytest

from pykv.bench.compare import PRESETS, preset_config
from pykv.bench.report import to_json
from pykv.bench.runner import run

SECONDS = float(os.environ.get("PYKV_BENCH_SERVER_S", "3"))
ROUNDS = int(os.environ.get("PYKV_BENCH_SERVER_ROUNDS", "2"))
WORKLOADS = ("put-1", "put-16", "put-256", "range-l", "range-s", "txn-put", "watch")
SIDES = ("pykv", "etcd")


@pytest.fixture(scope="module")
def started_servers():
    """pykv serve and etcd, each on its own fresh data directory."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not on PATH (Debian: apt-get install etcd-server; scripts/test.sh does)")
    from pykv.bench import servers

    running = {}
    try:
        for kind in SIDES:
            running[kind] = servers.start(kind)
        yield running
    finally:
        for server in running.values():
            server.stop()


def _figures(runs: list[dict]) -> dict[str, float]:
    """Medians over one side's rounds: req/s, server CPU per op, p50 and p99."""
    def median(get) -> float:
        return statistics.median(get(r) for r in runs)

    return {
        "rps": median(lambda r: r["main"]["requests_per_s"]),
        "cpu_us_per_op": median(lambda r: 1e6 * r["server"]["cpu_s"] / r["main"]["count"]),
        "p50_ms": median(lambda r: 1e3 * r["main"]["percentiles_s"]["50"]),
        "p99_ms": median(lambda r: 1e3 * r["main"]["percentiles_s"]["99"]),
        "generator_cpu_pct": median(lambda r: r["generator"]["cpu_percent_of_core"]),
    }


@pytest.mark.parametrize("workload", WORKLOADS)
def test_server_beside_etcd(benchmark, started_servers, workload):
    preset = PRESETS[workload]
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}

    def alternate() -> None:
        for round_index in range(ROUNDS):
            for side in SIDES if round_index % 2 == 0 else SIDES[::-1]:
                server = started_servers[side]
                config = preset_config(preset, server.endpoint, duration_s=SECONDS)
                runs[side].append(to_json(run(config, server_pid=server.pid)))

    # The timed call is the whole alternation (its wall time means little);
    # the figures that matter are in extra_info and printed.
    benchmark.pedantic(alternate, rounds=1, iterations=1)

    for side, side_runs in runs.items():
        for r in side_runs:
            assert r["error_count"] == 0, f"{side}: {r['errors']}"
            assert r["main"] and r["main"]["count"] > 0 and r["server"] is not None
    pykv, etcd = _figures(runs["pykv"]), _figures(runs["etcd"])
    round_ratios = [p["main"]["requests_per_s"] / e["main"]["requests_per_s"]
                    for p, e in zip(runs["pykv"], runs["etcd"])]
    info = benchmark.extra_info
    for side, figures in (("pykv", pykv), ("etcd", etcd)):
        for name, value in figures.items():
            info[f"{side}_{name}"] = value
    info["ratio"] = pykv["rps"] / etcd["rps"]
    info["round_ratios"] = round_ratios
    # Higher is better for pykv in both: etcd's CPU or latency over pykv's.
    info["cpu_ratio"] = etcd["cpu_us_per_op"] / pykv["cpu_us_per_op"]
    info["p99_ratio"] = etcd["p99_ms"] / pykv["p99_ms"]
    info.update({"unit": "events/s" if workload == "watch" else "req/s", "seconds": SECONDS,
                 "rounds": ROUNDS, "summary": preset.summary})
    print(f"\n{workload} ({preset.summary}; {ROUNDS} rounds of {SECONDS:g} s per side, alternated): "
          f"pykv {pykv['rps']:,.0f} {info['unit']}, etcd {etcd['rps']:,.0f}, ratio {info['ratio']:.2f} "
          f"(rounds {', '.join(f'{x:.2f}' for x in round_ratios)}); server CPU per op "
          f"pykv {pykv['cpu_us_per_op']:.0f} us, etcd {etcd['cpu_us_per_op']:.0f} us; p99 "
          f"pykv {pykv['p99_ms']:.1f} ms, etcd {etcd['p99_ms']:.1f} ms; generator CPU "
          f"{pykv['generator_cpu_pct']:.0f}% / {etcd['generator_cpu_pct']:.0f}%")
