#!/usr/bin/env python3
"""The benchmark regression gate: rerun the suites, compare same-run ratios with baselines.

    python bench/gate.py            # full gate (make bench-gate), several minutes
    python bench/gate.py --quick    # the short version CI runs (about 2 minutes)
    python bench/gate.py --record   # measure anew and rewrite bench/baselines.json

Every gated figure is a ratio of pykv to a reference measured in the same
pytest run (raw LMDB, a plain write+fdatasync loop, real etcd run alternately,
...), so it holds when this shared machine is slower or faster as a whole.
The gate runs the suites ``--repeat`` times (separate pytest processes) and
compares the median ratio with the committed baseline: a figure fails when
it falls more than its margin below it. The table shows every run's ratio
(the spread) so that noise stays visible.

Margins come from measured spread: ``--record`` runs each suite several
times and sets each figure's margin to 3x the widest spread of its runs in
this and the last few recordings (see ``margin_from_spread``), at least the
mode's floor. A figure too noisy for its mode's ceiling is still shown,
but marked "watch" and never fails the gate.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASELINES = ROOT / "bench" / "baselines.json"


@dataclass(frozen=True)
class Figure:
    """One gated ratio. ``value`` and ``reference`` name a benchmark and what to read from it:
    ``<pytest node id>#<extra_info key>`` (a rate: higher is faster) or ``<node id>#median``
    (a time: its inverse is the rate). With no reference, ``value`` is a ratio already."""

    name: str
    what: str
    value: str
    reference: str | None = None
    quick: bool = False  # part of the quick (CI) gate

    def tests(self) -> set[str]:
        return {ref.partition("#")[0] for ref in (self.value, self.reference) if ref}


def _server(workload: str, quick: bool = False) -> list[Figure]:
    test = f"bench/test_server.py::test_server_beside_etcd[{workload}]"
    return [Figure(f"server.{workload}.throughput", f"{workload}: pykv req/s / etcd req/s, alternated",
                   f"{test}#ratio", quick=quick),
            Figure(f"server.{workload}.cpu", f"{workload}: etcd CPU per op / pykv CPU per op",
                   f"{test}#cpu_ratio", quick=quick)]


_EMBEDDED = "bench/test_embedded.py::"
_MVCC = "bench/test_mvcc.py::"
_RAFT = "bench/test_raft.py::"
_WAL = "bench/test_wal.py::"
_WAL_SYNC = f"{_WAL}test_append_sync_256b_records_1_4_16_threads#"

FIGURES: list[Figure] = [
    Figure("wal.append_sync_1", "append+sync from 1 writer vs a plain write+fdatasync loop",
           f"{_WAL_SYNC}wal, 1 writer", f"{_WAL_SYNC}plain write+fdatasync loop", quick=True),
    Figure("wal.append_sync_16", "append+sync from 16 writers (group commit) vs the same loop",
           f"{_WAL_SYNC}wal, 16 writers", f"{_WAL_SYNC}plain write+fdatasync loop", quick=True),
    Figure("wal.append", "append of 1,000-record batches vs os.write of the joined payloads",
           f"{_WAL}test_append_without_sync_batches_of_1000#wal.append",
           f"{_WAL}test_append_without_sync_batches_of_1000#os.write of joined payloads", quick=True),
    Figure("wal.crc32c", "CRC-32C GB/s vs the crc32c package", f"{_WAL}test_crc32c_throughput#pykv",
           f"{_WAL}test_crc32c_throughput#crc32c package", quick=True),
    Figure("wal.recovery", "WAL.open recovery scan vs reading + crc32c of the same files",
           f"{_WAL}test_recovery_scan_of_1m_records#WAL.open",
           f"{_WAL}test_recovery_scan_of_1m_records#read + crc32c every byte", quick=True),
    Figure("raft.batch100", "3-node cluster, batches of 100, vs building + appending the entries",
           f"{_RAFT}test_cluster_commits_batches_of_100#median", f"{_RAFT}test_reference_floor#median",
           quick=True),
    Figure("raft.single", "3-node cluster, one proposal per round, vs the same floor",
           f"{_RAFT}test_cluster_commits_single_proposals#median", f"{_RAFT}test_reference_floor#median",
           quick=True),
    Figure("raft.encode", "encode_entries vs marshal.dumps", f"{_RAFT}test_encode_entries#median",
           f"{_RAFT}test_reference_marshal_dumps#median", quick=True),
    Figure("raft.decode", "decode_entries vs marshal.loads", f"{_RAFT}test_decode_entries#median",
           f"{_RAFT}test_reference_marshal_loads#median", quick=True),
    Figure("embedded.put_1", "pykv.open durable puts, 1 thread, vs sqlite3 WAL+FULL",
           f"{_EMBEDDED}test_durable_puts_one_thread#pykv/sqlite3", quick=True),
    Figure("embedded.put_16", "pykv.open durable puts, 16 threads, vs sqlite3 WAL+FULL",
           f"{_EMBEDDED}test_durable_puts_sixteen_threads#pykv/sqlite3", quick=True),
    Figure("mvcc.apply", "apply 1,000-put batches vs raw lmdb puts",
           f"{_MVCC}test_apply_1000_put_batches#pykv", f"{_MVCC}test_apply_1000_put_batches#reference",
           quick=True),
    Figure("mvcc.get_value", "get_value vs raw lmdb, a read txn per get",
           f"{_MVCC}test_point_get#pykv", f"{_MVCC}test_point_get#reference", quick=True),
    Figure("mvcc.get_keyvalue", "get() -> KeyValue vs raw lmdb, a read txn per get",
           f"{_MVCC}test_point_get#get() -> KeyValue", f"{_MVCC}test_point_get#reference", quick=True),
    Figure("mvcc.range_raw", "range of 1,000 keys as protobuf bytes vs a raw cursor scan",
           f"{_MVCC}test_range_1000_keys#as protobuf bytes, range_raw()",
           f"{_MVCC}test_range_1000_keys#reference", quick=True),
    Figure("mvcc.range_items", "range of 1,000 keys as (key, value) pairs vs a raw cursor scan",
           f"{_MVCC}test_range_1000_keys#as (key, value) pairs, kvs.items()",
           f"{_MVCC}test_range_1000_keys#reference", quick=True),
    Figure("mvcc.watch", "one put to 2,000 watchers vs appending to 2,000 deques",
           f"{_MVCC}test_watch_delivery_to_1000_watchers#pykv",
           f"{_MVCC}test_watch_delivery_to_1000_watchers#reference", quick=True),
    Figure("mvcc.snapshot", "snapshot write + restore vs LMDB's compacting copy",
           f"{_MVCC}test_snapshot_write_and_restore#pykv",
           f"{_MVCC}test_snapshot_write_and_restore#reference"),
    # Two etcd servers alone differ by up to 15% (bench/results/bench_tool.md) and
    # pykv's ratio moved from 0.36 to 1.29 over five short runs: full gate only.
    *_server("put-1"), *_server("put-16"), *_server("put-256"),
    *_server("range-l"), *_server("range-s"), *_server("txn-put"),
]


@dataclass(frozen=True)
class Mode:
    """How short a gate run is, and how wide its margins may be."""

    name: str
    env: dict[str, str]
    repeat: int  # pytest runs per gate run
    record_repeat: int  # pytest runs when recording baselines
    margin_floor: float  # no margin is narrower than this
    margin_ceiling: float  # a figure whose spread needs more is only watched

    def figures(self) -> list[Figure]:
        return [f for f in FIGURES if f.quick or self.name == "full"]


MODES = {
    "quick": Mode("quick", {"PYKV_BENCH_KEYS": "100000", "PYKV_BENCH_ROUNDS": "3",
                            "PYKV_BENCH_WAL_SYNC_OPS": "200", "PYKV_BENCH_WAL_RECORDS": "200000",
                            "PYKV_BENCH_SERVER_S": "2", "PYKV_BENCH_SERVER_ROUNDS": "2"},
                  repeat=3, record_repeat=5, margin_floor=0.5, margin_ceiling=0.7),
    "full": Mode("full", {"PYKV_BENCH_KEYS": "1000000", "PYKV_BENCH_ROUNDS": "5",
                          "PYKV_BENCH_WAL_SYNC_OPS": "800", "PYKV_BENCH_WAL_RECORDS": "1000000",
                          "PYKV_BENCH_SERVER_S": "3", "PYKV_BENCH_SERVER_ROUNDS": "2"},
                 repeat=3, record_repeat=5, margin_floor=0.25, margin_ceiling=0.5),
}


class GateError(Exception):
    """The gate could not measure (a suite failed or a figure is missing)."""


# --- reading figures out of pytest-benchmark JSON ---------------------------------------------


def read_rate(benchmarks: dict[str, dict], ref: str) -> float | None:
    """The rate ``ref`` names in one run's benchmarks (by node id); None if that test did not run."""
    test, _, key = ref.partition("#")
    bench = benchmarks.get(test)
    if bench is None:
        return None
    if key == "median":
        return 1.0 / bench["stats"]["median"]
    if key not in bench["extra_info"]:
        raise GateError(f"{test} recorded no {key!r} (it has: {', '.join(bench['extra_info'])})")
    return float(bench["extra_info"][key])


def ratio_of(figure: Figure, benchmarks: dict[str, dict]) -> float | None:
    value = read_rate(benchmarks, figure.value)
    if figure.reference is None or value is None:
        return value
    reference = read_rate(benchmarks, figure.reference)
    return None if reference is None else value / reference


def run_suites(tests: list[str], env: dict[str, str], log: pathlib.Path) -> tuple[dict[str, dict], str]:
    """Run ``tests`` in one pytest process; return its benchmarks by node id and its summary."""
    with tempfile.TemporaryDirectory(prefix="pykv-gate-") as tmp:
        out = pathlib.Path(tmp) / "bench.json"
        command = [sys.executable, "-m", "pytest", *tests, "-q", "-s", "-rs", "-p", "no:cacheprovider",
                   "-o", "addopts=", f"--benchmark-json={out}", "--benchmark-disable-gc"]
        proc = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                              text=True)
        with open(log, "a") as f:
            f.write(f"$ {' '.join(command)}\n{proc.stdout}{proc.stderr}\n")
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0:
            raise GateError(f"benchmark run failed (pytest exit {proc.returncode}: {summary}); "
                            f"output in {log}")
        data = json.loads(out.read_text())
    return {b["fullname"]: b for b in data["benchmarks"]}, proc.stdout


# --- comparing ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    figure: Figure
    ratios: list[float]  # one per run
    baseline: dict | None  # the figure's entry in the baselines file
    verdict: str = ""
    change: float | None = None  # now / baseline - 1

    @property
    def now(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


def judge(figure: Figure, ratios: list[float], baseline: dict | None) -> Verdict:
    """FAIL when the median ratio fell more than the margin below the baseline."""
    v = Verdict(figure, ratios, baseline)
    if not ratios:
        v.verdict = "skipped"
    elif baseline is None:
        v.verdict = "no baseline"
    else:
        v.change = v.now / baseline["ratio"] - 1
        if v.change < -baseline["margin"]:
            v.verdict = "watch (fell)" if not baseline["gated"] else "FAIL"
        elif v.change > baseline["margin"]:
            v.verdict = "better: re-record?"
        else:
            v.verdict = "ok" if baseline["gated"] else "watch"
    return v


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"


def render(verdicts: list[Verdict], mode: Mode, skipped_lines: list[str]) -> str:
    rows = [("figure", "baseline", "now", f"runs ({len(verdicts[0].ratios) if verdicts else 0})",
             "change", "margin", "verdict")]
    for v in verdicts:
        b = v.baseline
        rows.append((v.figure.name, _fmt(b["ratio"]) if b else "-", _fmt(v.now),
                     " ".join(_fmt(r) for r in v.ratios) or "-",
                     f"{v.change:+.0%}" if v.change is not None else "-",
                     f"-{b['margin']:.0%}" if b else "-", v.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"bench gate ({mode.name}): each figure is pykv / a reference measured in the same run "
             "(higher is better)", ""]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j in (0, 3, 6) else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    failed = [v for v in verdicts if v.verdict == "FAIL"]
    lines.append("")
    for v in failed:
        b = v.baseline
        lines.append(f"FAIL {v.figure.name}: {v.figure.what}: ratio {_fmt(v.now)} is {-v.change:.0%} "
                     f"below the baseline {_fmt(b['ratio'])} (recorded {b['recorded']}); the margin "
                     f"is {b['margin']:.0%}")
    lines.extend(skipped_lines)
    lines.append(f"bench gate: {len(failed)} failed, {sum(v.verdict in ('ok', 'better: re-record?') for v in verdicts)} "
                 f"passed, {sum(v.verdict.startswith('watch') for v in verdicts)} watched, "
                 f"{sum(v.verdict in ('skipped', 'no baseline') for v in verdicts)} not measured")
    return "\n".join(lines)


SPREADS_KEPT = 4  # recordings whose spread still counts for a figure's margin


def spread_of(ratios: list[float]) -> float:
    """The second-largest relative distance of a run from the median: the gate judges
    the median of several runs, which one disturbed run cannot move far, so one
    outlier while recording must not widen the margin either."""
    median = statistics.median(ratios)
    if not median:
        return math.inf
    distances = sorted(abs(r - median) / median for r in ratios)
    return distances[-2] if len(distances) > 1 else 0.0


def margin_from_spread(ratios: list[float], mode: Mode,
                       past_spreads: list[float] | tuple[float, ...] = ()) -> tuple[float, bool]:
    """3x the widest spread of this recording and the previous ones, at least the floor;
    gated if that is under the ceiling.

    Past recordings count because the noise is the machine's, not the code's: a
    quiet afternoon must not narrow a margin that a busy morning showed was needed.
    """
    spread = max([spread_of(ratios), *past_spreads])
    if math.isinf(spread):
        return mode.margin_ceiling, False
    margin = max(mode.margin_floor, math.ceil(round(3 * spread * 100, 6)) / 100)  # whole percents
    return min(margin, mode.margin_ceiling), margin <= mode.margin_ceiling


# --- the command -------------------------------------------------------------------------------


def measure(mode: Mode, figures: list[Figure], repeat: int, log: pathlib.Path) -> tuple[
        dict[str, list[float]], list[str]]:
    tests = sorted({t for f in figures for t in f.tests()})
    ratios: dict[str, list[float]] = {f.name: [] for f in figures}
    skipped: list[str] = []
    for i in range(repeat):
        print(f"bench gate ({mode.name}): run {i + 1}/{repeat} of {len(tests)} benchmarks ...",
              file=sys.stderr, flush=True)
        benchmarks, output = run_suites(tests, mode.env, log)
        for f in figures:
            r = ratio_of(f, benchmarks)
            if r is not None:
                ratios[f.name].append(r)
        skipped = sorted({line for line in output.splitlines() if line.startswith("SKIPPED")})
    return ratios, skipped


def load_baselines(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def record(mode: Mode, ratios: dict[str, list[float]], path: pathlib.Path) -> dict:
    data = load_baselines(path)
    previous = data.get(mode.name, {}).get("figures", {})
    # Figures not measured this time (--only) keep their baselines.
    known = {f.name for f in mode.figures()}
    entries = {name: entry for name, entry in previous.items() if name in known}
    today = datetime.date.today().isoformat()
    for f in mode.figures():
        runs = ratios.get(f.name) or []
        if not runs:
            continue
        past = previous.get(f.name, {}).get("spreads", [])[-(SPREADS_KEPT - 1):]
        margin, gated = margin_from_spread(runs, mode, past)
        entries[f.name] = {"what": f.what, "ratio": round(statistics.median(runs), 4),
                           "runs": [round(r, 4) for r in runs], "margin": margin, "gated": gated,
                           "spreads": [*past, round(spread_of(runs), 4)], "recorded": today}
    data[mode.name] = {
        "settings": {**mode.env, "repeat": mode.repeat},
        "recorded": {"date": today, "host": f"{os.cpu_count()} cores, {platform.platform()}",
                     "python": platform.python_version(), "load_average_1m": round(os.getloadavg()[0], 1),
                     "commit": _commit()},
        "figures": entries,
    }
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short gate CI runs")
    parser.add_argument("--record", action="store_true",
                        help="measure and rewrite the baselines of this mode instead of judging")
    parser.add_argument("--repeat", type=int, default=0, help="pytest runs (default: the mode's)")
    parser.add_argument("--only", default="", help="comma-separated figure name prefixes")
    parser.add_argument("--baselines", type=pathlib.Path, default=BASELINES)
    parser.add_argument("--log", type=pathlib.Path, default=None,
                        help="where the suites' output goes (default: a temp file)")
    args = parser.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]
    figures = mode.figures()
    if args.only:
        prefixes = tuple(p.strip() for p in args.only.split(",") if p.strip())
        figures = [f for f in figures if f.name.startswith(prefixes)]
        if not figures:
            print(f"bench gate: no {mode.name} figure starts with {args.only!r}", file=sys.stderr)
            return 2
    repeat = args.repeat or (mode.record_repeat if args.record else mode.repeat)
    log = args.log or pathlib.Path(tempfile.gettempdir()) / f"pykv-bench-gate-{os.getpid()}.log"
    log.write_text("")
    try:
        ratios, skipped = measure(mode, figures, repeat, log)
    except GateError as exc:
        print(f"bench gate: {exc}", file=sys.stderr)
        return 2
    if args.record:
        baselines = record(mode, ratios, args.baselines)[mode.name]["figures"]
        print(f"recorded {len(baselines)} {mode.name} baselines in {args.baselines}")
    else:
        baselines = load_baselines(args.baselines).get(mode.name, {}).get("figures", {})
        expected = load_baselines(args.baselines).get(mode.name, {}).get("settings", {})
        if {k: v for k, v in expected.items() if k in mode.env} != mode.env:
            print(f"bench gate: the {mode.name} baselines were recorded with other settings "
                  f"({expected}); re-record them (python bench/gate.py --record"
                  f"{' --quick' if args.quick else ''})", file=sys.stderr)
            return 2
    verdicts = [judge(f, ratios[f.name], baselines.get(f.name)) for f in figures]
    print(render(verdicts, mode, skipped))
    print(f"(suites' output: {log})")
    return 1 if any(v.verdict == "FAIL" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
