#!/usr/bin/env python3
"""Baseline figures of real etcd under ``pykv bench``, for bench/results/bench_tool.md.

    python bench/etcd_baseline.py [--duration 5] > table.md

Starts a fresh single-member etcd from PATH (fsync on, data in a temp dir),
measures the disk's append+fdatasync latency in that directory before and
after (the reference in the same run), then runs each workload for
--duration seconds and prints one Markdown table row per workload, with the
CPU the generator and etcd used.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pykv.bench import servers  # noqa: E402
from pykv.bench.config import BenchConfig  # noqa: E402
from pykv.bench.disk import fdatasync_latency  # noqa: E402
from pykv.bench.runner import run  # noqa: E402

# (name, workload, settings): etcd's performance doc uses 8 B keys and 256 B values.
CASES = [
    ("put, 1 client", "put", dict(clients=1, conns=1)),
    ("put, 16 clients", "put", dict(clients=16, conns=4)),
    ("put, 256 clients", "put", dict(clients=256, conns=16)),
    ("range linearizable, 16 clients", "range", dict(clients=16, conns=4)),
    ("range serializable, 16 clients", "range", dict(clients=16, conns=4, serializable=True)),
    ("txn-put, 16 clients", "txn-put", dict(clients=16, conns=4)),
    ("watch, 100 watchers / 10 streams, 100 puts/s", "watch",
     dict(watchers=100, streams=10, conns=2, put_rate=100.0)),
    ("lease-keepalive, 16 clients", "lease-keepalive", dict(clients=16, conns=4)),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per workload")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    with servers.start("etcd") as etcd:
        floor_before = fdatasync_latency(etcd.data_dir.parent)
        rows = []
        for name, workload, settings in CASES:
            units = settings.get("streams", settings.get("clients", 1))
            config = BenchConfig(workload, endpoints=[etcd.endpoint], duration_s=args.duration,
                                 key_size=8, val_size=256, key_space=100000,
                                 procs=max(1, min(units, cores)), **settings)
            result = run(config, server_pid=etcd.pid)
            stats = result.main
            assert stats is not None, f"{name}: no request succeeded: {result.errors}"
            wall = result.total_s
            rows.append(
                f"| {name} | {stats.rps:,.0f} | {stats.percentiles_s[2] * 1e3:.2f} | "
                f"{stats.percentiles_s[6] * 1e3:.2f} | {stats.percentiles_s[7] * 1e3:.2f} | "
                f"{result.procs} | {100 * result.generator_cpu_s / wall:.0f}% | "
                f"{100 * (result.server_cpu_s or 0) / wall:.0f}% | {sum(result.errors.values())} |")
            print(f"done: {name}", file=sys.stderr)
        floor_after = fdatasync_latency(etcd.data_dir.parent)
    load_after = os.getloadavg()[0]
    version = os.popen("etcd --version").readline().strip()
    print(f"{version}; {cores} cores; {args.duration:g} s per workload; 8 B keys, 256 B values, "
          f"100000-key space, random keys; 1-minute load average {load_before:.1f} before, "
          f"{load_after:.1f} after (other work shares this host).\n")
    print("Reference, same run: 256 B append + fdatasync in etcd's data filesystem: "
          f"p50 {floor_before.percentiles_s[2] * 1e3:.2f} ms / p99 "
          f"{floor_before.percentiles_s[6] * 1e3:.2f} ms before the workloads, "
          f"p50 {floor_after.percentiles_s[2] * 1e3:.2f} ms / p99 "
          f"{floor_after.percentiles_s[6] * 1e3:.2f} ms after.\n")
    print("| workload | req/s | p50 ms | p99 ms | p99.9 ms | generator procs | generator CPU | "
          "etcd CPU | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
