"""/health, /version and /metrics on --listen-metrics-urls, as etcd serves them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.e2e.harness import etcdctl, free_port


@pytest.fixture
def with_metrics(fresh_pykv):
    port = free_port()
    server = fresh_pykv(extra_args=("--listen-metrics-urls", f"http://127.0.0.1:{port}"))
    return server, f"http://127.0.0.1:{port}"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_health_version_and_metrics(with_metrics):
    server, base = with_metrics
    status, body = get(base + "/health")
    assert status == 200 and json.loads(body) == {"health": "true", "reason": ""}
    status, body = get(base + "/version")
    version = json.loads(body)
    assert status == 200 and version["etcdserver"].startswith("3.")
    etcdctl(server.endpoint, "put", "/m/k", "v")
    status, body = get(base + "/metrics")
    text = body.decode()
    assert status == 200
    assert "etcd_server_has_leader 1" in text
    revision = [line for line in text.splitlines()
                if line.startswith("etcd_debugging_mvcc_current_revision ")]
    assert revision and int(revision[0].split()[1]) >= 2
    assert get(base + "/nope")[0] == 404


def metric_value(text: str, name: str) -> float:
    values = [line.split()[1] for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} missing from /metrics"
    return float(values[0])


def test_metrics_have_the_process_collectors_figures(with_metrics):
    server, base = with_metrics
    status, body = get(base + "/metrics")
    text = body.decode()
    assert status == 200
    # What etcdctl check datascale and etcd dashboards read.
    assert metric_value(text, "process_resident_memory_bytes") > 1 << 20
    assert metric_value(text, "process_virtual_memory_bytes") >= \
        metric_value(text, "process_resident_memory_bytes")
    assert metric_value(text, "process_open_fds") > 0
    assert metric_value(text, "process_cpu_seconds_total") > 0
    assert "# TYPE process_cpu_seconds_total counter" in text


def test_etcdctl_check_datascale_passes(fresh_pykv):
    server = fresh_pykv()
    result = etcdctl(server.endpoint, "check", "datascale", "--load=s", timeout_s=120)
    out = result.stdout.decode()
    assert "PASS: Approximate system memory used" in out, out
    left = etcdctl(server.endpoint, "get", "", "--prefix", "--keys-only", "-w", "json")
    assert json.loads(left.stdout).get("count", 0) == 0  # datascale deletes its keys after
