"""`pykv serve --frontends 2`: gRPC front-end processes in front of the core."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time

import pytest

from tests.e2e.harness import etcdctl, etcdctl_json


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def fronted(fresh_pykv):
    return fresh_pykv(extra_args=("--frontends", "2"))


def test_everyday_etcdctl_through_front_ends(fronted, tmp_path):
    endpoint = fronted.endpoint
    for i in range(20):  # many connections: the kernel spreads them over both front ends
        etcdctl(endpoint, "put", f"/fe/{i:02d}", f"v{i}")
    got = etcdctl_json(endpoint, "get", "/fe/", "--prefix", "--keys-only")
    assert got["count"] == 20
    script = b'value("/fe/00") = "v0"\n\nput /fe/00 changed\n\n\n'
    assert b"SUCCESS" in etcdctl(endpoint, "txn", input=script).stdout
    lease = etcdctl(endpoint, "lease", "grant", "30").stdout.split()[1].decode()
    kept = subprocess.run(["timeout", "3", "etcdctl", f"--endpoints={endpoint}", "lease",
                           "keep-alive", lease], capture_output=True,
                          env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    assert f"lease {lease} keepalived with TTL(30)".encode() in kept.stdout
    watch = subprocess.Popen(["etcdctl", f"--endpoints={endpoint}", "watch", "/fe/w", "-w", "json"],
                             stdout=subprocess.PIPE, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    try:
        time.sleep(0.7)
        etcdctl(endpoint, "put", "/fe/w", "event")
        line = watch.stdout.readline()
        event = json.loads(line)["Events"][0]
        assert base64.b64decode(event["kv"]["value"]) == b"event"
    finally:
        watch.kill()
        watch.wait()
    path = tmp_path / "snap.db"
    etcdctl(endpoint, "snapshot", "save", str(path))
    assert path.stat().st_size % 512 == 32
    big = etcdctl(endpoint, "put", "/fe/big", input=b"x" * (1536 * 1024 + 1), check=False)
    assert b"etcdserver: request is too large" in big.stderr


def test_a_dead_front_end_is_replaced_and_sigterm_stops_them_all(fronted):
    core = fronted.process.pid
    before = _children(core)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = _children(core)
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"front end not replaced: {_children(core)}")
    time.sleep(1.0)
    etcdctl(fronted.endpoint, "put", "/fe/after", "restart")
    children = _children(core)
    assert fronted.stop() == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"
