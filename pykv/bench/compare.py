"""``pykv bench compare``: the same workloads against two servers, in alternation.

Each side is an endpoint (host:port) or a server to start here with the same
settings: ``etcd`` (from PATH) or ``pykv`` (``pykv serve``). Rounds alternate
the order (A,B then B,A, ...) so that drift on a shared, noisy machine falls
on both sides alike. The result is a table of ratios on the terminal and,
with ``--out``, a Markdown report with PNG plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from .config import BenchConfig

HELP = "run the same workloads against two endpoints and report the ratios"
DESCRIPTION = __doc__


@dataclass(frozen=True)
class Preset:
    """A named workload with its concurrency; the rest comes from the command line."""

    name: str
    workload: str
    clients: int = 16
    conns: int = 4
    serializable: bool = False
    watchers: int = 100
    streams: int = 10
    summary: str = ""


PRESETS = {p.name: p for p in (
    Preset("put-1", "put", clients=1, conns=1, summary="put, 1 client"),
    Preset("put-16", "put", clients=16, conns=4, summary="put, 16 clients"),
    Preset("put-256", "put", clients=256, conns=16, summary="put, 256 clients"),
    Preset("range-l", "range", summary="linearizable range, 16 clients"),
    Preset("range-s", "range", serializable=True, summary="serializable range, 16 clients"),
    Preset("txn-put", "txn-put", summary="txn of one put, 16 clients"),
    Preset("watch", "watch", clients=1, conns=2, summary="put->event latency, 100 watchers / 10 streams"),
    Preset("lease-keepalive", "lease-keepalive", summary="lease keepalive, 16 clients"),
    Preset("mixed", "mixed", summary="90% range / 10% put, 16 clients"),
)}
DEFAULT_PRESETS = ("put-1", "put-16", "put-256", "range-l", "range-s", "txn-put", "watch",
                   "lease-keepalive", "mixed")


def preset_config(preset: Preset, endpoint: str, *, duration_s: float = 0.0, total: int = 0,
                  val_size: int = 256, key_space: int = 100000, put_rate: float = 100.0,
                  procs: int = 0) -> BenchConfig:
    """The run ``preset`` describes against ``endpoint``, with etcd's performance-doc sizes
    (8 B keys, 256 B values). Give exactly one of ``duration_s`` or ``total`` (for watch:
    the puts). ``procs`` 0 means one generator process per core, at most one per client."""
    watch = preset.workload == "watch"
    units = preset.streams if watch else preset.clients
    config = BenchConfig(preset.workload, endpoints=[endpoint], clients=preset.clients,
                         conns=preset.conns, procs=procs or max(1, min(units, os.cpu_count() or 1)),
                         total=total, duration_s=duration_s, key_size=8,
                         val_size=max(val_size, 20) if watch else val_size, key_space=key_space,
                         serializable=preset.serializable)
    if watch:
        config.watchers, config.streams, config.put_rate = preset.watchers, preset.streams, put_rate
    config.validate()
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--a", required=True, metavar="SIDE",
                        help="first side: host:port, 'etcd' or 'pykv' (started here)")
    parser.add_argument("--b", required=True, metavar="SIDE", help="second side, as --a")
    parser.add_argument("--a-name", default="", help="label of the first side (default: from --a)")
    parser.add_argument("--b-name", default="", help="label of the second side")
    parser.add_argument("--workloads", default=",".join(DEFAULT_PRESETS),
                        help=f"comma-separated presets: {', '.join(PRESETS)}")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side and workload")
    parser.add_argument("--watch-puts", type=int, default=200,
                        help="puts of the watch workload (at --put-rate)")
    parser.add_argument("--put-rate", type=float, default=100.0, help="puts per second for watch")
    parser.add_argument("--read-ratio", type=float, default=0.9, help="reads in the mixed workload")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="write report.md and PNG plots into this directory")
    parser.add_argument("--etcd-binary", default="etcd", help="etcd to start for side 'etcd'")
    parser.add_argument("--pykv-args", default="",
                        help="extra flags for a pykv serve started here (e.g. '--max-txn-ops 256')")
    parser.add_argument("--etcd-args", default="", help="extra flags for an etcd started here")
    # etcd's published performance matrix uses 8-byte keys and 256-byte values.
    parser.set_defaults(val_size=256, key_space=100000)


_DEFAULT_TOTAL = 2000


@dataclass
class DiskFloor:
    """fdatasync latency of the directory the started servers write to (same run)."""

    directory: str
    p50_ms: float
    p99_ms: float


@dataclass
class Side:
    name: str
    endpoint: str
    pid: int | None
    version: str = ""


@dataclass
class WorkloadComparison:
    preset: Preset
    runs: dict[str, list[dict]] = field(default_factory=dict)  # side name -> run JSONs

    def rps(self, side: str) -> float:
        return statistics.mean(r["main"]["requests_per_s"] if r["main"] else 0.0
                               for r in self.runs[side])

    def generator_cpu(self, side: str) -> float:
        """The generator's CPU in % of one core, mean over rounds."""
        return statistics.mean(r["generator"]["cpu_percent_of_core"] for r in self.runs[side])

    def server_cpu_us_per_op(self, side: str) -> float | None:
        """Server CPU microseconds per counted operation, over all rounds; None if unmeasured."""
        runs = [r for r in self.runs[side] if r["server"] and r["main"]]
        ops = sum(r["main"]["count"] for r in runs)
        return 1e6 * sum(r["server"]["cpu_s"] for r in runs) / ops if ops else None

    def pct(self, side: str, name: str) -> float:
        return statistics.mean(r["main"]["percentiles_s"][name] if r["main"] else 0.0
                               for r in self.runs[side])


def _config(args: argparse.Namespace, preset: Preset) -> BenchConfig:
    from .cli import config_from_args

    config = config_from_args(args, preset.workload)
    config.clients, config.conns = preset.clients, preset.conns
    config.procs = args.procs or max(1, min(preset.clients, os.cpu_count() or 1))
    config.serializable = preset.serializable
    config.read_ratio = args.read_ratio
    if preset.workload == "watch":
        config.watchers, config.streams = preset.watchers, preset.streams
        config.procs = args.procs or max(1, min(preset.streams, os.cpu_count() or 1))
        config.put_rate = args.put_rate
        config.val_size = max(config.val_size, 20)
        if config.total:
            config.total = args.watch_puts
    config.validate()
    return config


def _server_version(kind: str, binary: str) -> str:
    if kind != "etcd":
        return ""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out else ""


def run(args: argparse.Namespace) -> int:
    from . import servers
    from .report import to_json
    from .runner import BenchError
    from .runner import run as run_bench

    if not args.total and not args.duration:
        args.total = _DEFAULT_TOTAL
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names or args.rounds < 1:
        print(f"pykv bench compare: unknown workloads {unknown}; choose from {', '.join(PRESETS)}"
              if unknown else "pykv bench compare: need at least one workload and one round",
              file=sys.stderr)
        return 2
    started: list[servers.ServerProcess] = []
    try:
        sides = []
        for spec, label in ((args.a, args.a_name), (args.b, args.b_name)):
            if spec in ("etcd", "pykv"):
                extra = shlex.split(args.pykv_args if spec == "pykv" else args.etcd_args)
                server = servers.start(spec, binary=args.etcd_binary, extra_args=extra)
                started.append(server)
                sides.append(Side(label or spec, server.endpoint, server.pid,
                                  _server_version(spec, args.etcd_binary)))
            else:
                sides.append(Side(label or spec, spec, None))
        if sides[0].name == sides[1].name:
            sides[1].name += " (b)"
        disk = _disk_floor(started[0].data_dir.parent if started else None)
        comparisons = []
        for name in names:
            preset = PRESETS[name]
            comparison = WorkloadComparison(preset, {s.name: [] for s in sides})
            for round_index in range(args.rounds):
                order = sides if round_index % 2 == 0 else sides[::-1]
                for side in order:
                    config = _config(args, preset)
                    config.endpoints = [side.endpoint]
                    if not args.json:
                        print(f"[{name}] round {round_index + 1}/{args.rounds}: {side.name}",
                              file=sys.stderr)
                    result = run_bench(config, progress=False, server_pid=side.pid)
                    comparison.runs[side.name].append(to_json(result))
            comparisons.append(comparison)
    except (ValueError, BenchError, servers.ServerStartError) as exc:
        print(f"pykv bench compare: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in started:
            server.stop()

    a, b = sides[0].name, sides[1].name
    if args.json:
        print(json.dumps({"a": dataclasses.asdict(sides[0]), "b": dataclasses.asdict(sides[1]),
                          "disk_floor": dataclasses.asdict(disk),
                          "workloads": {c.preset.name: {"runs": c.runs, "ratio_rps": _ratio(c, a, b)}
                                        for c in comparisons}}, indent=1))
    else:
        print(render_table(comparisons, a, b))
    if args.out is not None:
        path = write_report(args.out, comparisons, sides, args, disk)
        if not args.json:
            print(f"report: {path}")
    return 0


def _ratio(c: WorkloadComparison, a: str, b: str) -> float:
    rb = c.rps(b)
    return c.rps(a) / rb if rb else float("inf")


def render_table(comparisons: list[WorkloadComparison], a: str, b: str) -> str:
    """Throughput and p99 per workload, with the ratio a/b."""
    header = f"{'workload':<16} {a[:14]:>14} {b[:14]:>14} {'ratio a/b':>10} {'p99 a ms':>10} {'p99 b ms':>10}"
    lines = [header, "-" * len(header)]
    for c in comparisons:
        lines.append(f"{c.preset.name:<16} {c.rps(a):>14,.0f} {c.rps(b):>14,.0f} {_ratio(c, a, b):>10.2f} "
                     f"{c.pct(a, '99') * 1000:>10.2f} {c.pct(b, '99') * 1000:>10.2f}")
    lines.append("(requests/s, mean over rounds; for watch, events delivered/s)")
    return "\n".join(lines)


def _disk_floor(directory: pathlib.Path | None) -> DiskFloor:
    from .disk import fdatasync_latency

    stats = fdatasync_latency(directory)
    return DiskFloor(str(directory or tempfile.gettempdir()), stats.percentiles_s[2] * 1e3,
                     stats.percentiles_s[6] * 1e3)


def _environment(sides: list[Side], disk: DiskFloor) -> list[str]:
    lines = [f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
             f"- Host: {platform.node() or '?'}, {os.cpu_count()} cores, {platform.platform()}, "
             f"Python {platform.python_version()}",
             f"- Disk floor (same run): 256 B append + fdatasync in `{disk.directory}`: "
             f"p50 {disk.p50_ms:.2f} ms, p99 {disk.p99_ms:.2f} ms; a 1-client put cannot beat it"]
    for side in sides:
        detail = f"`{side.endpoint}`" + (f", {side.version}" if side.version else "")
        detail += ", started here" if side.pid else ""
        lines.append(f"- **{side.name}**: {detail}")
    return lines


def write_report(out: pathlib.Path, comparisons: list[WorkloadComparison], sides: list[Side],
                 args: argparse.Namespace, disk: DiskFloor) -> pathlib.Path:
    """Write ``report.md`` plus ``throughput.png``, ``latency.png`` and ``timeline.png``."""
    from . import plots

    out.mkdir(parents=True, exist_ok=True)
    a, b = sides[0].name, sides[1].name
    plots.throughput_bars(out / "throughput.png", comparisons, a, b)
    plots.latency_cdfs(out / "latency.png", comparisons, a, b)
    plots.timelines(out / "timeline.png", comparisons, a, b)
    lines = [f"# {a} vs {b}", "", *_environment(sides, disk),
             f"- Settings: {args.rounds} rounds per side (alternating order), "
             f"{'%d requests' % args.total if args.total else '%g s' % args.duration} per run, "
             f"{args.key_size} B keys, {args.val_size} B values, key space {args.key_space}", "",
             "## Throughput", "", "![throughput](throughput.png)", "",
             f"| workload | what | {a} req/s | {b} req/s | {a} / {b} | p50 ms ({a} / {b}) | "
             f"p99 ms ({a} / {b}) | generator CPU ({a} / {b}) | server CPU ({a} / {b}) | "
             f"server CPU per op, us ({a} / {b}) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in comparisons:
        lines.append(
            f"| {c.preset.name} | {c.preset.summary} | {c.rps(a):,.0f} | {c.rps(b):,.0f} | "
            f"**{_ratio(c, a, b):.2f}** | {c.pct(a, '50') * 1e3:.2f} / {c.pct(b, '50') * 1e3:.2f} | "
            f"{c.pct(a, '99') * 1e3:.2f} / {c.pct(b, '99') * 1e3:.2f} | "
            f"{c.generator_cpu(a):.0f}% / {c.generator_cpu(b):.0f}% | "
            f"{_server_cpu(c, a)} / {_server_cpu(c, b)} | {_cpu_per_op(c, a)} / {_cpu_per_op(c, b)} |")
    lines += ["", "CPU is in % of one core over the run, mean over rounds. The generator runs on the "
              f"same host: with {os.cpu_count()} cores, generator + server near "
              f"{100 * (os.cpu_count() or 1)}% means the figures are CPU-bound here. Server CPU per "
              "op is the server's CPU time (all its processes) over the operations the workload "
              "counts (for watch: events delivered).", "",
              "## Latency distributions", "", "![latency](latency.png)", "",
              "## Throughput over time (100 ms buckets, first round)", "", "![timeline](timeline.png)",
              "", "## Rerun", "", "```sh", "pykv bench compare " + " ".join(_rerun_args(args)), "```", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(
        {c.preset.name: c.runs for c in comparisons}, indent=1))
    return report


def _cpu_per_op(c: WorkloadComparison, side: str) -> str:
    value = c.server_cpu_us_per_op(side)
    return f"{value:.0f}" if value is not None else "n/a"


def _server_cpu(c: WorkloadComparison, side: str) -> str:
    values = [r["server"]["cpu_percent_of_core"] for r in c.runs[side] if r["server"]]
    return f"{statistics.mean(values):.0f}%" if values else "n/a"


def _rerun_args(args: argparse.Namespace) -> list[str]:
    parts = [f"--a {args.a}", f"--b {args.b}", f"--workloads {args.workloads}",
             f"--rounds {args.rounds}"]
    parts.append(f"--total {args.total}" if args.total else f"--duration {args.duration:g}")
    for flag in ("pykv_args", "etcd_args"):
        if getattr(args, flag, ""):
            parts.append(f"--{flag.replace('_', '-')} {shlex.quote(getattr(args, flag))}")
    if args.out is not None:
        parts.append(f"--out {args.out}")
    return parts
