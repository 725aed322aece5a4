#!/usr/bin/env python3
"""The memory of a server after 100k keys of 256 bytes, pykv beside etcd.

Issue 5 asks for the resident memory of the server process after 100,000
keys with 256-byte values, beside etcd's, measured in the same run. Each
server is started fresh (pykv.bench.servers), loaded with `pykv bench put
--seq-keys --total 100000 --val-size 256`, and its RSS (the whole process
tree: pykv's front ends, if any, count too) is read from /proc after the load
and after a 5 s settle. Run: ``python bench/rss_100k.py [--pykv-args ...]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pykv.bench import servers  # noqa: E402


def tree_rss_kib(pid: int) -> int:
    pids = [pid]
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    pids += [int(p) for p in out.stdout.split()]
    total = 0
    for p in pids:
        for line in pathlib.Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def measure(kind: str, keys: int, extra_args: list[str]) -> dict:
    with servers.start(kind, extra_args=extra_args if kind == "pykv" else None) as server:
        idle = tree_rss_kib(server.pid)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "pykv", "bench", "put", "--endpoints",
                        server.endpoint, "--clients", "64", "--conns", "8", "--total", str(keys),
                        "--seq-keys", "--key-size", "8", "--val-size", "256", "--no-progress",
                        "--json"], check=True, capture_output=True, cwd=ROOT)
        loaded_s = time.monotonic() - started
        after = tree_rss_kib(server.pid)
        time.sleep(5)
        settled = tree_rss_kib(server.pid)
        return {"server": kind, "keys": keys, "rss_idle_mib": round(idle / 1024, 1),
                "rss_after_load_mib": round(after / 1024, 1),
                "rss_settled_mib": round(settled / 1024, 1), "load_s": round(loaded_s, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--pykv-args", default="", help="extra flags for pykv serve")
    args = parser.parse_args()
    rows = [measure(kind, args.keys, args.pykv_args.split()) for kind in ("pykv", "etcd")]
    print(json.dumps(rows, indent=1))
    pykv_row, etcd_row = rows
    print(f"pykv / etcd settled RSS: "
          f"{pykv_row['rss_settled_mib'] / etcd_row['rss_settled_mib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
