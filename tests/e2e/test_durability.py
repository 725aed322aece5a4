"""Crashes lose no acknowledged write; restarts continue where they stopped."""

from __future__ import annotations

import random
import threading
import time

import grpc
import pytest

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc


def _kv(server):
    channel = grpc.insecure_channel(server.endpoint)
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel, rpc_pb2_grpc.KVStub(channel)


def _writer(server, prefix: str, acked: list, stop: threading.Event) -> None:
    channel, kv = _kv(server)
    i = 0
    try:
        while not stop.is_set():
            key = f"{prefix}/{i:06d}".encode()
            value = f"value-{prefix}-{i}".encode()
            try:
                response = kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
            except grpc.RpcError:
                return  # the server is gone: this write is not acknowledged
            acked.append((key, value, response.header.revision))
            i += 1
    finally:
        channel.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_loses_no_acknowledged_write(fresh_pykv, tmp_path, seed):
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    server = fresh_pykv(data_dir)
    acked: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=_writer, args=(server, f"w{n}", acked, stop))
               for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.5, 2.0))
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert acked, "no write was acknowledged before the kill"

    restarted = fresh_pykv(data_dir)
    channel, kv = _kv(restarted)
    try:
        revisions = [revision for _, _, revision in acked]
        assert len(set(revisions)) == len(revisions), "two writes got the same revision"
        found = kv.Range(rpc_pb2.RangeRequest(key=b"w", range_end=b"x"), timeout=10)
        stored = {item.key: (item.value, item.mod_revision) for item in found.kvs}
        missing = [(k, r) for k, v, r in acked if stored.get(k) != (v, r)]
        assert not missing, f"{len(missing)} acknowledged writes lost or changed: {missing[:5]}"
        # Revisions continue: no gap below what was kept, no reuse above it.
        after = kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"restart"), timeout=10)
        assert after.header.revision == found.header.revision + 1
        assert after.header.revision > max(revisions)
        assert found.count == found.header.revision - 1  # one revision per put, from 2
    finally:
        channel.close()


def test_clean_restart_keeps_data_and_revisions(fresh_pykv, tmp_path):
    data_dir = tmp_path / "data"
    server = fresh_pykv(data_dir)
    channel, kv = _kv(server)
    for i in range(50):
        kv.Put(rpc_pb2.PutRequest(key=b"k%02d" % i, value=b"v%d" % i), timeout=5)
    last = kv.Put(rpc_pb2.PutRequest(key=b"k00", value=b"again"), timeout=5).header.revision
    channel.close()
    assert server.stop() == 0

    server = fresh_pykv(data_dir)
    channel, kv = _kv(server)
    try:
        got = kv.Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l"), timeout=5)
        assert got.count == 50 and got.header.revision == last
        assert got.kvs[0].value == b"again" and got.kvs[0].version == 2
        assert kv.Put(rpc_pb2.PutRequest(key=b"x", value=b"y"), timeout=5).header.revision == \
            last + 1
    finally:
        channel.close()


def test_second_server_on_the_same_data_dir_is_refused(fresh_pykv, tmp_path):
    data_dir = tmp_path / "data"
    fresh_pykv(data_dir)
    with pytest.raises(RuntimeError, match="in use by another process"):
        fresh_pykv(data_dir, extra_args=())


def test_snapshot_save_then_restore_serves_the_same_data(fresh_pykv, tmp_path):
    import json
    import subprocess
    import sys

    from tests.e2e.harness import ROOT, etcdctl, etcdctl_json

    server = fresh_pykv(tmp_path / "a")
    for i in range(30):
        etcdctl(server.endpoint, "put", f"/snap/{i:02d}", f"value-{i}")
    etcdctl(server.endpoint, "del", "/snap/00")
    before = etcdctl_json(server.endpoint, "get", "/snap/", "--prefix")
    snapshot = tmp_path / "s.db"
    etcdctl(server.endpoint, "snapshot", "save", str(snapshot))
    status = subprocess.run([sys.executable, "-m", "pykv", "snapshot", "status", str(snapshot),
                             "-w", "json"], capture_output=True, text=True, cwd=ROOT, check=True)
    info = json.loads(status.stdout)
    assert info["revision"] == before["header"]["revision"] and info["totalKey"] == 29
    restored = tmp_path / "restored"
    subprocess.run([sys.executable, "-m", "pykv", "snapshot", "restore", str(snapshot),
                    "--data-dir", str(restored)], capture_output=True, cwd=ROOT, check=True)
    again = subprocess.run([sys.executable, "-m", "pykv", "snapshot", "restore", str(snapshot),
                            "--data-dir", str(restored)], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 1 and "exists" in again.stderr
    server2 = fresh_pykv(restored)
    after = etcdctl_json(server2.endpoint, "get", "/snap/", "--prefix")
    assert after["kvs"] == before["kvs"] and after["header"]["revision"] == \
        before["header"]["revision"]
    etcdctl(server2.endpoint, "put", "/snap/new", "x")
    damaged = bytearray(snapshot.read_bytes())
    damaged[100] ^= 0xFF
    (tmp_path / "bad.db").write_bytes(bytes(damaged))
    bad = subprocess.run([sys.executable, "-m", "pykv", "snapshot", "restore",
                          str(tmp_path / "bad.db"), "--data-dir", str(tmp_path / "x")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "SHA-256 mismatch" in bad.stderr
