"""bench/compare_etcd.py: the recorded pykv-vs-etcd page and its etcdctl check perf parser."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_compare_etcd", ROOT / "bench" / "compare_etcd.py")
compare_etcd = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = compare_etcd  # dataclasses look their module up there
_spec.loader.exec_module(compare_etcd)

# etcdctl 3.4 output, progress bar included (carriage returns, no newline before the verdicts).
PASSING = (" 0 / 60 B 0.00%\r 60 / 60 Booooooo! 100.00% 1m0sPASS: Throughput is 150 writes/s\n"
           "PASS: Slowest request took 0.145293s\nPASS: Stddev is 0.021090s\nPASS\n")
FAILING = ("60 / 60 Boooo! 100.00% 1m0s\nFAIL: Throughput too low: 6491 writes/s\n"
           "Slowest request took too long: 0.786915s\nStddev too high: 0.304261s\nFAIL\n")
ERRORS = ("FAIL: too many errors\nFAIL: ERROR(context deadline exceeded) -> 12\n"
          "PASS: Throughput is 1001 writes/s\nPASS: Slowest request took 0.4s\nPASS: Stddev is 0.05s\nFAIL\n")


def test_check_perf_pass_lines_and_figures():
    result = compare_etcd.parse_check_perf("pykv", "s", PASSING)
    assert result.verdict == "PASS"
    assert result.lines == ["PASS: Throughput is 150 writes/s", "PASS: Slowest request took 0.145293s",
                            "PASS: Stddev is 0.021090s", "PASS"]
    assert (result.writes_per_s, result.slowest_s, result.stddev_s) == (150, 0.145293, 0.021090)


def test_check_perf_failures_without_the_fail_prefix_are_kept():
    result = compare_etcd.parse_check_perf("etcd", "l", FAILING)
    assert result.verdict == "FAIL"
    assert "Slowest request took too long: 0.786915s" in result.lines
    assert "Stddev too high: 0.304261s" in result.lines
    assert (result.writes_per_s, result.slowest_s, result.stddev_s) == (6491, 0.786915, 0.304261)


def test_check_perf_errors_fail_even_when_the_figures_pass():
    result = compare_etcd.parse_check_perf("pykv", "m", ERRORS)
    assert result.verdict == "FAIL" and result.writes_per_s == 1001
    assert result.lines[:2] == ["FAIL: too many errors", "FAIL: ERROR(context deadline exceeded) -> 12"]


def test_output_without_a_verdict_is_a_failure():
    result = compare_etcd.parse_check_perf("pykv", "s", "Error: context deadline exceeded\n")
    assert result.verdict == "FAIL" and result.lines == [] and result.writes_per_s is None


@pytest.mark.timeout(300)
def test_records_a_page_with_both_servers_figures(tmp_path):
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        pytest.skip("etcd and etcdctl are not on PATH (Debian: apt-get install etcd-server etcd-client)")
    out = tmp_path / "page.md"
    proc = subprocess.run(
        [sys.executable, "bench/compare_etcd.py", "--no-check-perf", "--workloads", "put-16,watch",
         "--duration", "0.5", "--rounds", "2", "--out", str(out), "--report-dir", str(tmp_path / "report")],
        cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    for row in ("| put-16 |", "| watch |"):
        line = next(x for x in page.splitlines() if x.startswith(row))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1].replace(",", "")) > 0 and float(cells[2].replace(",", "")) > 0
        per_op = [float(x) for x in cells[8].split("/")]
        assert all(x > 0 for x in per_op), line  # both servers' CPU per op was measured
        assert cells[9] == "0 / 0"  # no errors on either side
    assert "etcdctl check perf" not in page
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary["workloads"]) == {"put-16", "watch"}
    assert (tmp_path / "report" / "report.md").exists()
