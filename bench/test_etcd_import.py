"""Reading and importing a snapshot saved from real etcd, beside etcd's own
tools on the same file in the same run.

- status: ``pykv snapshot status`` (the pure-Python bbolt reader walking
  every bucket, CRC-32C of every key and value) against ``etcdctl snapshot
  status`` (Go's bbolt doing the same);
- restore: ``pykv snapshot restore`` (bbolt reader, mvccpb decoding, LMDB
  bulk load, WAL) against ``etcdctl snapshot restore`` (copy the file, drop
  membership, rebuild the index of every key, write a WAL).

Both sides run as CLI processes, so each figure includes one interpreter or
Go binary start. Units: keys of the snapshot per second.
Rerun: ``python -m pytest bench/test_etcd_import.py -s -q -p no:cacheprovider``
(``PYKV_BENCH_KEYS`` keys, 100,000 by default).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.e2e.harness import ROOT, ServerProcess, etcdctl

KEYS = int(os.environ.get("PYKV_BENCH_KEYS", "100000"))
VALUE = b"v" * 100
TXN_OPS = 128  # etcd's --max-txn-ops default


@pytest.fixture(scope="module")
def etcd_snapshot(tmp_path_factory):
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        pytest.skip("etcd/etcdctl are not installed")
    import grpc

    from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    tmp = tmp_path_factory.mktemp("etcd-import-bench")
    server = ServerProcess(tmp / "etcd", etcd=True).start()
    try:
        with grpc.insecure_channel(server.endpoint) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            for start in range(0, KEYS, TXN_OPS):
                kv.Txn(rpc_pb2.TxnRequest(success=[
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"key/%08d" % i,
                                                                     value=VALUE))
                    for i in range(start, min(start + TXN_OPS, KEYS))]), timeout=30)
        path = tmp / "etcd.db"
        etcdctl(server.endpoint, "snapshot", "save", str(path))
    finally:
        server.stop()
    return path


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, cwd=str(ROOT),
                   env=dict(os.environ, ETCDCTL_API="3"))


def test_status_of_an_etcd_snapshot(compare, etcd_snapshot):
    path = str(etcd_snapshot)

    def pykv_status() -> float:
        _run(sys.executable, "-m", "pykv", "snapshot", "status", path)
        return KEYS

    def etcdctl_status() -> float:
        _run("etcdctl", "snapshot", "status", path)
        return KEYS

    compare(f"snapshot status of an etcd snapshot, {KEYS:,} keys",
            {"pykv snapshot status": pykv_status, "etcdctl snapshot status": etcdctl_status},
            reference="etcdctl snapshot status", rounds=3, unit="keys/s")


def test_restore_of_an_etcd_snapshot(compare, etcd_snapshot, tmp_path):
    path = str(etcd_snapshot)
    targets = {"pykv snapshot restore": tmp_path / "pykv.etcd",
               "etcdctl snapshot restore": tmp_path / "etcd.etcd"}

    def clear(label: str) -> None:
        shutil.rmtree(targets[label], ignore_errors=True)

    def pykv_restore() -> float:
        _run(sys.executable, "-m", "pykv", "snapshot", "restore", path, "--quiet",
             "--data-dir", str(targets["pykv snapshot restore"]))
        return KEYS

    def etcdctl_restore() -> float:
        _run("etcdctl", "snapshot", "restore", path,
             "--data-dir", str(targets["etcdctl snapshot restore"]))
        return KEYS

    compare(f"restore of an etcd snapshot, {KEYS:,} keys",
            {"pykv snapshot restore": pykv_restore, "etcdctl snapshot restore": etcdctl_restore},
            reference="etcdctl snapshot restore", rounds=3, unit="keys/s", setup=clear)
