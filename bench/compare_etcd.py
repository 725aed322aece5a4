#!/usr/bin/env python3
"""Record pykv against etcd 3.4 on this machine: bench/results/pykv-vs-etcd.md.

    python bench/compare_etcd.py                 # (make bench-compare) ~15 minutes
    python bench/compare_etcd.py --no-check-perf --duration 3 --rounds 2
    python bench/compare_etcd.py --pykv-args '--grpc-server grpcio'

Two parts, both run against a fresh ``pykv serve`` and a fresh etcd from PATH
with the same settings (single member, fsync on, data in the same temp
filesystem, loopback):

1. ``pykv bench compare``: put with 1, 16 and 256 clients, linearizable and
   serializable range, txn-put and watch, rounds alternating the order of the
   servers, with the generator's CPU and each server's CPU per operation;
2. ``etcdctl check perf --load=s|m|l`` (60 s each) against each server, on a
   fresh server per run: its PASS/FAIL lines, the throughput and latency it
   reports, and the CPU that etcdctl and the server used.

The page it writes is the latest recorded comparison (the README quotes it);
the full report of part 1 with its plots goes to ``--report-dir``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pykv.bench import procstat, servers  # noqa: E402

WORKLOADS = "put-1,put-16,put-256,range-l,range-s,txn-put,watch"
CHECK_PERF_TIMEOUT_S = 180


# --- etcdctl check perf --------------------------------------------------------------------------


@dataclass
class CheckPerf:
    """One ``etcdctl check perf`` run, as etcdctl printed it."""

    server: str
    load: str
    verdict: str  # the last line: PASS or FAIL
    lines: list[str]  # its PASS/FAIL lines, verbatim
    writes_per_s: float | None = None
    slowest_s: float | None = None
    stddev_s: float | None = None
    output_tail: str = ""  # the end of etcdctl's output, as printed
    etcdctl_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    wall_s: float = 0.0

    @property
    def server_cpu_us_per_write(self) -> float | None:
        if self.server_cpu_s is None or not self.writes_per_s or not self.wall_s:
            return None
        return 1e6 * self.server_cpu_s / (self.writes_per_s * self.wall_s)


_NUMBER = r"([0-9.]+)"


def parse_check_perf(server: str, load: str, output: str) -> CheckPerf:
    """Read etcdctl 3.4's check perf output (its progress bar lines are skipped).

    etcdctl prints ``PASS: Throughput is 150 writes/s`` or ``FAIL: Throughput too low:
    6491 writes/s``; ``PASS: Slowest request took 0.2s`` or ``Slowest request took too
    long: 0.78s`` and ``PASS: Stddev is 0.02s`` or ``Stddev too high: 0.3s`` (those two
    failures carry no FAIL prefix); ``FAIL: too many errors`` with ``FAIL: ERROR(...) -> n``;
    then ``PASS`` or ``FAIL`` alone (etcd's ctlv3/command/check.go).
    """
    # The progress bar ends without a newline, so the first verdict may share its line.
    found = (re.search(r"(?:PASS|FAIL)\b.*|Slowest request.*|Stddev.*", line)
             for line in output.replace("\r", "\n").splitlines())
    verdict_lines = [m.group(0).strip() for m in found if m]
    result = CheckPerf(server, load, verdict="FAIL", lines=verdict_lines)
    for line in verdict_lines:
        if m := re.search(r"Throughput (?:is|too low:) " + _NUMBER + " writes/s", line):
            result.writes_per_s = float(m.group(1))
        elif m := re.search(r"Slowest request took(?: too long:)? " + _NUMBER + "s", line):
            result.slowest_s = float(m.group(1))
        elif m := re.search(r"Stddev (?:is|too high:) " + _NUMBER + "s", line):
            result.stddev_s = float(m.group(1))
    if verdict_lines and verdict_lines[-1] in ("PASS", "FAIL"):
        result.verdict = verdict_lines[-1]
    return result


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_check_perf(kind: str, load: str, pykv_args: list[str], etcd_args: list[str]) -> CheckPerf:
    """``etcdctl check perf --load=<load>`` against a fresh server of ``kind``.

    etcdctl's CPU is the growth of this process's reaped-children CPU while it
    runs: the server (also our child) is not reaped until after the reading.
    """
    with servers.start(kind, extra_args=pykv_args if kind == "pykv" else etcd_args) as server:
        server_before, children_before = procstat.tree_cpu_seconds(server.pid), _children_cpu_s()
        started = time.monotonic()
        try:
            proc = subprocess.run(["etcdctl", "--endpoints", server.endpoint, "check", "perf",
                                   f"--load={load}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env={**os.environ, "ETCDCTL_API": "3"},
                                  timeout=CHECK_PERF_TIMEOUT_S)
            output = proc.stdout
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
                else (exc.stdout or "")
            output += f"\nFAIL: etcdctl did not finish within {CHECK_PERF_TIMEOUT_S} s"
        wall = time.monotonic() - started
        etcdctl_cpu = _children_cpu_s() - children_before
        server_after = procstat.tree_cpu_seconds(server.pid)
    result = parse_check_perf(kind, load, output)
    result.output_tail = output[-1500:]
    result.wall_s, result.etcdctl_cpu_s = wall, etcdctl_cpu
    result.server_cpu_s = procstat.cpu_between(server_before, server_after) if server_after else None
    return result


# --- the page ------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def workload_rows(summary: dict) -> list[str]:
    """One Markdown row per workload from ``pykv bench compare --json``."""
    rows = []
    for name, entry in summary["workloads"].items():
        runs = entry["runs"]
        cells = {}
        for side in ("pykv", "etcd"):
            side_runs = runs[side]
            ops = sum(r["main"]["count"] for r in side_runs if r["main"])
            cpu = sum(r["server"]["cpu_s"] for r in side_runs if r["server"])
            cells[side] = {
                "rps": _mean([r["main"]["requests_per_s"] for r in side_runs if r["main"]]),
                "p50": _mean([r["main"]["percentiles_s"]["50"] * 1e3 for r in side_runs if r["main"]]),
                "p99": _mean([r["main"]["percentiles_s"]["99"] * 1e3 for r in side_runs if r["main"]]),
                "gen": _mean([r["generator"]["cpu_percent_of_core"] for r in side_runs]),
                "srv": _mean([r["server"]["cpu_percent_of_core"] for r in side_runs if r["server"]]),
                "per_op": 1e6 * cpu / ops if ops else 0.0,
                "errors": sum(r["error_count"] for r in side_runs),
            }
        p, e = cells["pykv"], cells["etcd"]
        ratios = [a["requests_per_s"] / b["requests_per_s"]
                  for a, b in zip(runs["pykv"], runs["etcd"]) if b["requests_per_s"]]
        rows.append(
            f"| {name} | {p['rps']:,.0f} | {e['rps']:,.0f} | **{entry['ratio_rps']:.2f}** "
            f"({', '.join(f'{r:.2f}' for r in ratios)}) | {p['p50']:.2f} / {e['p50']:.2f} | "
            f"{p['p99']:.2f} / {e['p99']:.2f} | {p['gen']:.0f}% / {e['gen']:.0f}% | "
            f"{p['srv']:.0f}% / {e['srv']:.0f}% | {p['per_op']:.0f} / {e['per_op']:.0f} | "
            f"{p['errors']} / {e['errors']} |")
    return rows


def check_perf_rows(results: list[CheckPerf]) -> list[str]:
    rows = []
    for r in results:
        per_write = r.server_cpu_us_per_write
        rows.append(
            f"| {r.load} | {r.server} | **{r.verdict}** | {_fmt(r.writes_per_s, '{:,.0f}')} | "
            f"{_fmt(r.slowest_s, '{:.3f}')} | {_fmt(r.stddev_s, '{:.3f}')} | "
            f"{100 * r.etcdctl_cpu_s / r.wall_s:.0f}% | "
            f"{_fmt(r.server_cpu_s and 100 * r.server_cpu_s / r.wall_s, '{:.0f}%')} | "
            f"{_fmt(per_write, '{:.0f}')} | {'<br>'.join(r.lines) or '(no verdict lines)'} |")
    return rows


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def render_page(summary: dict, checks: list[CheckPerf], args: argparse.Namespace, meta: dict) -> str:
    lines = [
        "# pykv against etcd 3.4 on this machine",
        "",
        f"Recorded {meta['date']} with `{meta['command']}` (`make bench-compare`) at pykv commit "
        f"`{meta['commit']}`.",
        "",
        f"- Host: {meta['host']}; 1-minute load average {meta['load_before']:.1f} before, "
        f"{meta['load_after']:.1f} after (other engineers' work shares these 2 cores).",
        f"- Servers, both started fresh here, single member, fsync on, loopback: "
        f"{summary['b'].get('version') or 'etcd'} and `pykv serve`"
        f"{' ' + args.pykv_args if args.pykv_args else ''}.",
        f"- Same-run reference, 256 B append + fdatasync in the servers' filesystem: "
        f"p50 {summary['disk_floor']['p50_ms']:.2f} ms, p99 {summary['disk_floor']['p99_ms']:.2f} ms.",
        f"- Load generator: `pykv bench` (Python grpc.aio clients in worker processes on the same "
        f"host); {args.rounds} rounds of {args.duration:g} s per server and workload, the servers' "
        "order alternating round by round; 8 B keys, 256 B values, 100,000-key space.",
        "",
        "## Workloads",
        "",
        "| workload | pykv req/s | etcd req/s | pykv / etcd (per round) | p50 ms (pykv / etcd) | "
        "p99 ms (pykv / etcd) | generator CPU (pykv / etcd runs) | server CPU | "
        "server CPU per op, us | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *workload_rows(summary),
        "",
        "Workloads: put-1/16/256 = puts from 1, 16, 256 clients; range-l / range-s = linearizable / "
        "serializable single-key range, 16 clients; txn-put = a txn of one put, 16 clients; watch = "
        "100 watchers on 10 streams, puts at 100/s, figures are events delivered/s and the "
        "put-to-event latency. CPU is % of one core over the run; server CPU counts all the "
        "server's processes. Two identical etcd servers differ by up to ~15% in throughput on this "
        "host (bench/results/bench_tool.md): read ratios within that band as equal.",
        "",
    ]
    if checks:
        lines += [
            "## etcdctl check perf",
            "",
            "etcdctl 3.4's own yardstick (60 s of puts; `s`: 50 clients at 150 writes/s, `m`: 200 "
            "at 1,000/s, `l`: 500 at 8,000/s; PASS needs more than 90% of that rate, no errors, "
            "the slowest request within 0.5 s and a stddev within 0.1 s: etcd's "
            "`ctlv3/command/check.go`). Each run against a fresh server; etcdctl runs on the same "
            "2 cores.",
            "",
            "| load | server | verdict | writes/s | slowest s | stddev s | etcdctl CPU | server CPU | "
            "server CPU per write, us | etcdctl's lines |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
            *check_perf_rows(checks),
            "",
        ]
    report_dir = args.report_dir.resolve()
    shown = report_dir.relative_to(ROOT) if report_dir.is_relative_to(ROOT) else report_dir
    lines += ["## Rerun", "", "```sh", "make bench-compare", "```", "",
              f"The full report with latency distributions and timelines: `{shown}/report.md` "
              "(not committed).", ""]
    return "\n".join(lines)


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server and workload")
    parser.add_argument("--workloads", default=WORKLOADS)
    parser.add_argument("--check-perf", default="s,m,l", help="etcdctl check perf loads")
    parser.add_argument("--no-check-perf", action="store_true", help="skip etcdctl check perf")
    parser.add_argument("--pykv-args", default="", help="extra flags for pykv serve")
    parser.add_argument("--etcd-args", default="", help="extra flags for etcd")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results" / "pykv-vs-etcd.md")
    parser.add_argument("--report-dir", type=pathlib.Path, default=ROOT / "build" / "bench-compare")
    args = parser.parse_args(argv)
    for tool in ("etcd", "etcdctl"):
        if shutil.which(tool) is None:
            print(f"compare_etcd: {tool} is not on PATH (Debian: apt-get install etcd-server "
                  "etcd-client)", file=sys.stderr)
            return 2
    meta = {"date": datetime.datetime.now().isoformat(timespec="minutes"),
            "command": " ".join(["python bench/compare_etcd.py", *(
                shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))]),
            "commit": _commit(), "load_before": os.getloadavg()[0],
            "host": f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"}

    command = [sys.executable, "-m", "pykv", "bench", "compare", "--a", "pykv", "--b", "etcd",
               "--workloads", args.workloads, "--rounds", str(args.rounds),
               "--duration", str(args.duration), "--out", str(args.report_dir), "--json"]
    if args.pykv_args:
        command += ["--pykv-args", args.pykv_args]
    if args.etcd_args:
        command += ["--etcd-args", args.etcd_args]
    print(f"compare_etcd: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(f"compare_etcd: pykv bench compare failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    summary = json.loads(proc.stdout)

    checks: list[CheckPerf] = []
    if not args.no_check_perf:
        for load in [x.strip() for x in args.check_perf.split(",") if x.strip()]:
            for kind in ("pykv", "etcd") if len(checks) % 4 == 0 else ("etcd", "pykv"):
                print(f"compare_etcd: etcdctl check perf --load={load} against {kind}", file=sys.stderr,
                      flush=True)
                checks.append(run_check_perf(kind, load, shlex.split(args.pykv_args),
                                             shlex.split(args.etcd_args)))
                print("  " + " | ".join(checks[-1].lines), file=sys.stderr, flush=True)
    meta["load_after"] = os.getloadavg()[0]
    page = render_page(summary, checks, args, meta)
    args.out.write_text(page)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "disk_floor": summary["disk_floor"],
         "workloads": {name: {"ratio_rps": w["ratio_rps"]} for name, w in summary["workloads"].items()},
         "check_perf": [asdict(c) for c in checks]}, indent=1) + "\n")
    print(page)
    print(f"compare_etcd: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
