"""pykv bench compare, the argument parser, and the endpoints it can start."""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import pytest

from pykv.bench import cli
from pykv.bench.servers import ServerStartError, start

ROOT = pathlib.Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.timeout(180)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pykv bench")
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_subcommand_defaults_do_not_leak_into_each_other():
    # compare and watch change defaults of shared flags; put must keep etcd's.
    put = _parse("put")
    assert (put.val_size, put.key_space) == (8, 1)
    assert _parse("watch").val_size == 32
    compare = _parse("compare", "--a", "x:1", "--b", "y:2")
    assert (compare.val_size, compare.key_space) == (256, 100000)


def test_config_defaults_follow_etcds_benchmark():
    config = cli.config_from_args(_parse("range", "--consistency", "s", "--clients", "3"))
    assert config.total == 10000 and config.duration_s == 0
    assert config.serializable and config.clients == 3 and 1 <= config.procs <= 3


def test_compare_against_two_etcds_writes_a_report_with_plots(etcd_endpoint, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "pykv", "bench", "compare", "--a", etcd_endpoint, "--a-name", "first",
         "--b", "etcd", "--workloads", "put-16,watch", "--total", "120", "--watch-puts", "20",
         "--put-rate", "200", "--rounds", "2", "--out", str(out), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["a"]["name"] == "first" and summary["b"]["name"] == "etcd"
    assert summary["b"]["pid"] and summary["a"]["pid"] is None
    assert summary["disk_floor"]["p99_ms"] >= summary["disk_floor"]["p50_ms"] > 0
    for name in ("put-16", "watch"):
        runs = summary["workloads"][name]["runs"]
        assert len(runs["first"]) == len(runs["etcd"]) == 2
        assert summary["workloads"][name]["ratio_rps"] > 0
    assert all(r["requests"] == 120 for r in summary["workloads"]["put-16"]["runs"]["etcd"])
    assert all(r["extra"]["watch_events"] == 20 * 100
               for r in summary["workloads"]["watch"]["runs"]["first"])
    report = (out / "report.md").read_text()
    assert "| put-16 |" in report and "| watch |" in report and "![latency](latency.png)" in report
    # Both servers run on this host, so both sides' CPU per op is measured.
    assert "server CPU per op, us (first / etcd) |" in report
    put_row = next(line for line in report.splitlines() if line.startswith("| put-16 |"))
    per_op = put_row.strip(" |").rpartition("|")[2].split("/")
    assert all(value.strip().isdigit() and int(value) > 0 for value in per_op), put_row
    for png in ("throughput.png", "latency.png", "timeline.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert set(json.loads((out / "results.json").read_text())) == {"put-16", "watch"}


def test_compare_refuses_unknown_workloads():
    proc = subprocess.run([sys.executable, "-m", "pykv", "bench", "compare", "--a", "x:1", "--b", "y:2",
                           "--workloads", "put-16,nonsense"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "nonsense" in proc.stderr


def test_start_reports_a_server_that_cannot_start(tmp_path):
    fake = tmp_path / "fake-etcd"
    fake.write_text("#!/bin/sh\necho 'cannot start: no disk' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(ServerStartError, match=r"exited with code 3:\n.*no disk"):
        start("etcd", tmp_path / "data", binary=str(fake))

