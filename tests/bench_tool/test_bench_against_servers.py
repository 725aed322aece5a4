"""pykv bench against real etcd and against pykv serve: what it reports matches what it did.

Small totals keep this directory at seconds, not minutes. Every test writes
under its own prefix so that counting keys on the server checks the tool.
The workload tests run against both servers (``endpoint``); the tests of the
tool's own options run against etcd only.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from pykv.api.etcdserverpb import rpc_pb2
from pykv.bench import requests as rq
from pykv.bench.channels import sync_channel
from pykv.bench.config import BenchConfig, TLSConfig
from pykv.bench.report import render_text, to_json
from pykv.bench.runner import BenchError, run
from pykv.bench.servers import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def count_keys(endpoint: str, prefix: bytes) -> int:
    channel = sync_channel(endpoint, TLSConfig())
    try:
        raw = channel.unary_unary(rq.KV_RANGE)(rq.count_request(prefix), timeout=10)
    finally:
        channel.close()
    return rpc_pb2.RangeResponse.FromString(raw).count


def check_consistent(report: dict, label: str, expected: int) -> None:
    """Counts, histogram, percentiles and the time series agree with each other."""
    op = report["ops"][label]
    assert op["count"] == expected
    assert sum(b["count"] for b in op["histogram"]) == expected
    pcts = list(op["percentiles_s"].values())
    assert list(op["percentiles_s"]) == ["10", "25", "50", "75", "90", "95", "99", "99.9"]
    assert op["fastest_s"] <= pcts[0] and pcts == sorted(pcts) and pcts[-1] <= op["slowest_s"]
    assert op["fastest_s"] > 0
    assert round(sum(report["throughput_per_100ms"][label]) * 0.1) == expected
    assert op["requests_per_s"] == pytest.approx(expected / report["total_s"])


def test_put_writes_as_many_keys_as_requests_reported(endpoint):
    prefix = "/t-put/"
    config = BenchConfig("put", endpoints=[endpoint], clients=8, conns=2, procs=2, total=300,
                         key_size=len(prefix) + 6, val_size=16, key_space=1000, seq_keys=True,
                         prefix=prefix)
    report = to_json(run(config))
    assert report["errors"] == {}
    assert report["requests"] == 300 and report["procs"] == 2 and report["conns"] == 2
    check_consistent(report, "put", 300)
    assert count_keys(endpoint, prefix.encode()) == 300
    assert report["generator"]["cpu_s"] > 0
    assert report["server"] is not None and report["server"]["cpu_s"] > 0


def test_txn_put_writes_every_op_of_every_txn(endpoint):
    prefix = "/t-txn/"
    config = BenchConfig("txn-put", endpoints=[endpoint], clients=4, procs=2, total=40,
                         txn_ops=3, key_size=len(prefix) + 4, key_space=120, seq_keys=True,
                         prefix=prefix)
    report = to_json(run(config))
    assert report["errors"] == {}
    check_consistent(report, "txn-put", 40)
    assert count_keys(endpoint, prefix.encode()) == 40 * 3


@pytest.mark.parametrize("serializable", [False, True], ids=["linearizable", "serializable"])
def test_range_reads_the_key_it_wrote_first(endpoint, serializable):
    prefix = "/t-range-%d/" % serializable
    config = BenchConfig("range", endpoints=[endpoint], clients=4, procs=2, total=200,
                         serializable=serializable, key_size=len(prefix) + 2, prefix=prefix)
    report = to_json(run(config))
    assert report["errors"] == {}
    check_consistent(report, "range", 200)
    assert count_keys(endpoint, prefix.encode()) == 1
    assert report["config"]["serializable"] is serializable


def test_watch_delivers_every_put_to_every_watcher(endpoint):
    prefix = "/t-watch/"
    config = BenchConfig("watch", endpoints=[endpoint], procs=2, conns=2, total=40,
                         watchers=12, streams=4, put_rate=400, val_size=32,
                         key_size=len(prefix) + 2, prefix=prefix)
    result = run(config)
    report = to_json(result)
    assert report["errors"] == {}
    assert report["extra"] == {"watch_events": 40 * 12, "watch_puts": 40}
    check_consistent(report, "watch", 40 * 12)
    assert report["ops"]["put"]["count"] == 40
    # Delivery takes at least as long as the put's own commit, at the median.
    assert report["ops"]["watch"]["percentiles_s"]["50"] > 0
    assert "Events delivered: 480 of 480 expected" in render_text(result)


def test_lease_keepalive_counts_round_trips_and_revokes_its_leases(endpoint):
    channel = sync_channel(endpoint, TLSConfig())
    list_leases = channel.unary_unary(
        "/etcdserverpb.Lease/LeaseLeases",
        request_serializer=rpc_pb2.LeaseLeasesRequest.SerializeToString,
        response_deserializer=rpc_pb2.LeaseLeasesResponse.FromString)
    before = {lease.ID for lease in list_leases(rpc_pb2.LeaseLeasesRequest(), timeout=10).leases}
    config = BenchConfig("lease-keepalive", endpoints=[endpoint], clients=4, procs=2,
                         total=200)
    report = to_json(run(config))
    after = {lease.ID for lease in list_leases(rpc_pb2.LeaseLeasesRequest(), timeout=10).leases}
    channel.close()
    assert report["errors"] == {}
    check_consistent(report, "lease-keepalive", 200)
    assert after == before


def test_mixed_splits_reads_and_writes_by_the_ratio(endpoint):
    prefix = "/t-mixed/"
    config = BenchConfig("mixed", endpoints=[endpoint], clients=4, procs=2, total=400,
                         read_ratio=0.75, key_size=len(prefix) + 3, key_space=50, prefix=prefix)
    report = to_json(run(config))
    reads, writes = report["ops"]["range"]["count"], report["ops"]["put"]["count"]
    assert reads + writes == 400 == report["main"]["count"]
    assert 0.6 < reads / 400 < 0.9
    assert count_keys(endpoint, prefix.encode()) <= writes


def test_rate_limit_spreads_requests_over_time(etcd_endpoint):
    config = BenchConfig("range", endpoints=[etcd_endpoint], clients=4, procs=2, total=60, rate=120,
                         serializable=True, prefix="/t-rate/", key_size=10)
    report = to_json(run(config))
    # Two workers at 60/s each: the last of each one's 30 requests may not start before 29/60 s
    # (unlimited, 60 requests take a few ms).
    assert report["total_s"] >= 29 / 60
    assert report["requests"] == 60


def test_duration_mode_runs_until_the_deadline(etcd_endpoint):
    config = BenchConfig("range", endpoints=[etcd_endpoint], clients=2, procs=1, duration_s=0.5,
                         serializable=True, prefix="/t-dur/", key_size=10)
    report = to_json(run(config))
    assert report["requests"] > 0 and report["errors"] == {}
    assert report["total_s"] >= 0.5
    check_consistent(report, "range", report["requests"])


def test_workers_report_their_event_loop(etcd_endpoint):
    try:
        import uvloop  # noqa: F401
        auto = "uvloop"
    except ImportError:
        auto = "asyncio"
    for loop, expected in (("asyncio", "asyncio"), ("auto", auto)):
        config = BenchConfig("range", endpoints=[etcd_endpoint], total=20, loop=loop,
                             serializable=True, prefix="/t-loop/", key_size=10)
        assert to_json(run(config))["generator"]["loop"] == expected


def _bench_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pykv", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_prints_etcd_style_summary_and_cpu_use(etcd_endpoint):
    out = _bench_cli("put", "--endpoints", etcd_endpoint, "--total", "100", "--clients", "4",
                     "--prefix", "/t-cli/", "--key-size", "12")
    assert out.returncode == 0, out.stderr
    for line in ("Summary:", "Requests/sec:", "Response time histogram:", "Latency distribution:",
                 "99.9% in", "Generator: ", "% of one core", "Server (pid "):
        assert line in out.stdout


def test_cli_json_is_one_parsable_document(etcd_endpoint):
    out = _bench_cli("range", "--endpoints", etcd_endpoint, "--total", "50", "--json",
                     "--consistency", "s", "--prefix", "/t-json/", "--key-size", "12")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["workload"] == "range" and report["requests"] == 50
    assert report["config"]["serializable"] is True



def test_cli_json_put_reports_as_many_requests_as_keys_written(endpoint):
    prefix = "/t-cli-json-put/"
    out = _bench_cli("put", "--endpoints", endpoint, "--total", "150", "--clients", "6", "--json",
                     "--seq-keys", "--key-space", "150", "--prefix", prefix, "--key-size", "20")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["requests"] == report["main"]["count"] == 150 and report["error_count"] == 0
    check_consistent(report, "put", 150)
    assert count_keys(endpoint, prefix.encode()) == 150

def test_unreachable_endpoint_is_a_clear_error():
    config = BenchConfig("put", endpoints=[f"127.0.0.1:{free_port()}"], total=10, dial_timeout_s=0.5)
    with pytest.raises(BenchError, match="cannot connect to 127.0.0.1:.* within 0.5 s"):
        run(config)


@pytest.mark.parametrize("args, message", [
    (["put", "--total", "5", "--duration", "1"], "exactly one of --total N or --duration"),
    (["put", "--key-size", "2", "--key-space", "1000"], "too few for --key-space 1000"),
    (["txn-put", "--txn-ops", "4", "--key-space", "2"], "cannot exceed --key-space"),
    (["put", "--clients", "0"], "--clients must be at least 1"),
    (["put", "--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], "cannot read --cert"),
    (["put", "--insecure-skip-tls-verify"], "not supported"),
    (["put", "--user", "root"], "--user must be NAME:PASSWORD"),
])
def test_bad_arguments_are_refused_with_a_reason(args, message):
    out = _bench_cli(*args, "--endpoints", "127.0.0.1:1", "--dial-timeout", "0.2")
    assert out.returncode == 2
    assert message in out.stderr
