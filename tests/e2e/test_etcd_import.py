"""Migrating from etcd: a snapshot saved from REAL etcd restores into pykv
(`pykv snapshot restore etcd.db`), and `pykv serve` on it answers as etcd
did: the same keys with the same revisions, versions and leases, the same
revision, history below it compacted, the next write at revision + 1."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import grpc
import pytest

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.harness import ROOT, ServerProcess, etcdctl, etcdctl_json

BIG_VALUE = bytes(range(256)) * 4096          # 1 MiB, every byte value
LONG_KEY = b"long/" + b"x" * 1000             # past pykv's 480-byte LMDB key limit
BINARY_KEY = b"bin/\x00\xff\x01\x80key"


def pykv_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pykv", *args], capture_output=True,
                            cwd=str(ROOT), timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"pykv {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout.decode()}\n{result.stderr.decode()}")
    return result


def write_history(endpoint: str) -> dict:
    """Writes with history on ``endpoint`` (real etcd): overwrites, deletes,
    a key deleted and created again, a txn (sub revisions), leases (one with
    keys, one without, one revoked), binary and long keys, a 1 MiB value, a
    compaction, and writes after it. Returns facts the test checks."""
    channel = grpc.insecure_channel(endpoint, options=[
        ("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)])
    kv, lease = rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.LeaseStub(channel)
    try:
        for i in range(300):
            kv.Put(rpc_pb2.PutRequest(key=b"k/%04d" % i, value=b"v%d" % i), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=b"k/0001", value=b"second"), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=b"k/0001", value=b"third"), timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k/0002"), timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k/0100", range_end=b"k/0110"),
                       timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k/0003"), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=b"k/0003", value=b"reborn"), timeout=10)
        kv.Txn(rpc_pb2.TxnRequest(success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"txn/%d" % i, value=b"t"))
            for i in range(3)]), timeout=10)
        held = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600), timeout=10).ID
        empty = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=900), timeout=10).ID
        gone = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=300), timeout=10).ID
        for name in (b"leased/a", b"leased/b"):
            kv.Put(rpc_pb2.PutRequest(key=name, value=b"l", lease=held), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=b"leased/gone", value=b"l", lease=gone), timeout=10)
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=gone), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=BINARY_KEY, value=b"\x00\x01\xfe\xff"), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=LONG_KEY, value=b"long"), timeout=10)
        compacted_at = kv.Put(rpc_pb2.PutRequest(key=b"big", value=BIG_VALUE),
                              timeout=10).header.revision
        kv.Compact(rpc_pb2.CompactionRequest(revision=compacted_at - 5, physical=True),
                   timeout=30)
        kv.Put(rpc_pb2.PutRequest(key=b"k/0004", value=b"after compaction"), timeout=10)
        last = kv.Put(rpc_pb2.PutRequest(key=b"k/0005", value=b"last"),
                      timeout=10).header.revision
    finally:
        channel.close()
    return {"held": held, "empty": empty, "gone": gone, "revision": last}


@pytest.fixture(scope="module")
def migrated(etcd_server, tmp_path_factory):
    """(etcd, pykv serving etcd's snapshot, facts, the snapshot, restore's output)."""
    facts = write_history(etcd_server.endpoint)
    tmp = tmp_path_factory.mktemp("etcd-import")
    snapshot = tmp / "etcd.db"
    etcdctl(etcd_server.endpoint, "snapshot", "save", str(snapshot))
    server = ServerProcess(tmp / "restored")
    peer = f"http://127.0.0.1:{server.peer_port}"
    restored = pykv_cli("snapshot", "restore", str(snapshot), "--data-dir", str(server.data_dir),
                        "--name", server.name, "--initial-cluster", f"{server.name}={peer}",
                        "--initial-advertise-peer-urls", peer)
    server.start()
    yield etcd_server, server, facts, snapshot, restored
    assert server.stop() == 0, server.log()


def _kvs(endpoint: str) -> tuple[int, list[tuple]]:
    answer = etcdctl_json(endpoint, "get", "", "--from-key")
    kvs = [(base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")),
            kv["create_revision"], kv["mod_revision"], kv["version"], kv.get("lease", 0))
           for kv in answer["kvs"]]
    return answer["header"]["revision"], kvs


def test_restored_pykv_serves_etcds_keys_with_etcds_revisions(migrated):
    etcd, pykv, facts, _snapshot, _out = migrated
    etcd_revision, etcd_kvs = _kvs(etcd.endpoint)
    pykv_revision, pykv_kvs = _kvs(pykv.endpoint)
    assert etcd_revision == facts["revision"]
    assert pykv_revision == etcd_revision
    assert pykv_kvs == etcd_kvs
    keys = {kv[0] for kv in pykv_kvs}
    assert {BINARY_KEY, LONG_KEY, b"big", b"txn/2", b"leased/a"} <= keys
    assert not {b"k/0002", b"k/0100", b"leased/gone"} & keys
    assert {kv[0]: kv[1] for kv in pykv_kvs}[b"big"] == BIG_VALUE


def test_restored_pykv_has_etcds_leases_with_their_keys_and_full_ttl(migrated):
    etcd, pykv, facts, _snapshot, _out = migrated
    ids = [int(item["id"]) for item in etcdctl_json(pykv.endpoint, "lease", "list")["leases"]]
    etcd_ids = [int(item["id"]) for item in etcdctl_json(etcd.endpoint, "lease", "list")["leases"]]
    assert sorted(ids) == sorted(etcd_ids) == sorted([facts["held"], facts["empty"]])
    ttl = etcdctl_json(pykv.endpoint, "lease", "timetolive", f"{facts['held']:x}", "--keys")
    assert ttl["granted-ttl"] == 600
    assert 590 <= ttl["ttl"] <= 600
    assert sorted(base64.b64decode(k) for k in ttl["keys"]) == [b"leased/a", b"leased/b"]


def test_the_restored_member_is_a_new_one_member_cluster(migrated):
    _etcd, pykv, _facts, _snapshot, out = migrated
    members = etcdctl_json(pykv.endpoint, "member", "list")["members"]
    assert [(m["name"], m["peerURLs"]) for m in members] == [
        (pykv.name, [f"http://127.0.0.1:{pykv.peer_port}"])]
    report = json.loads(out.stdout)
    assert int(report["member-id"], 16) == members[0]["ID"]


def test_history_below_the_snapshot_revision_is_compacted(migrated):
    _etcd, pykv, facts, _snapshot, out = migrated
    revision = facts["revision"]
    below = etcdctl(pykv.endpoint, "get", "k/0001", f"--rev={revision - 1}", check=False)
    assert below.returncode != 0
    assert b"required revision has been compacted" in below.stderr
    at = etcdctl_json(pykv.endpoint, "get", "k/0005", f"--rev={revision}")
    assert base64.b64decode(at["kvs"][0]["value"]) == b"last"
    assert "not carried" in out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["format"] == "etcd"
    assert report["revision"] == report["compact-revision"] == revision


def test_the_next_write_takes_the_next_revision_on_both(migrated):
    etcd, pykv, facts, _snapshot, _out = migrated
    on_pykv = etcdctl_json(pykv.endpoint, "put", "after", "restore")["header"]["revision"]
    on_etcd = etcdctl_json(etcd.endpoint, "put", "after", "restore")["header"]["revision"]
    assert on_pykv == on_etcd == facts["revision"] + 1
    kv = etcdctl_json(pykv.endpoint, "get", "k/0001")["kvs"][0]
    assert (kv["create_revision"], kv["version"]) == (
        etcdctl_json(etcd.endpoint, "get", "k/0001")["kvs"][0]["create_revision"], 3)


def test_snapshot_status_of_an_etcd_file_matches_etcdctl(migrated):
    _etcd, _pykv, _facts, snapshot, _out = migrated
    ours = json.loads(pykv_cli("snapshot", "status", str(snapshot), "-w", "json").stdout)
    theirs = json.loads(subprocess.run(["etcdctl", "snapshot", "status", str(snapshot), "-w",
                                        "json"], capture_output=True, check=True,
                                       env={"ETCDCTL_API": "3"}).stdout)
    assert ours == theirs


def test_a_damaged_etcd_snapshot_is_refused_and_leaves_no_data_dir(migrated, tmp_path):
    _etcd, _pykv, _facts, snapshot, _out = migrated
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(bytes(data))
    target = tmp_path / "never.etcd"
    result = pykv_cli("snapshot", "restore", str(damaged), "--data-dir", str(target), check=False)
    assert result.returncode == 1
    assert b"expected sha256" in result.stderr and str(damaged).encode() in result.stderr
    assert not target.exists()


def test_a_database_without_its_sha256_restores_only_with_skip_hash_check(migrated, tmp_path):
    _etcd, _pykv, facts, snapshot, _out = migrated
    raw = tmp_path / "db"  # as copied out of member/snap/db
    raw.write_bytes(snapshot.read_bytes()[:-32])
    target = tmp_path / "restored.etcd"
    refused = pykv_cli("snapshot", "restore", str(raw), "--data-dir", str(target), check=False)
    assert refused.returncode == 1
    assert b"snapshot missing hash but --skip-hash-check=false" in refused.stderr
    assert not target.exists()
    done = pykv_cli("snapshot", "restore", str(raw), "--data-dir", str(target),
                    "--skip-hash-check")
    assert json.loads(done.stdout)["revision"] == facts["revision"]


def test_a_truncated_or_foreign_file_is_refused_naming_it(migrated, tmp_path):
    _etcd, _pykv, _facts, snapshot, _out = migrated
    half = tmp_path / "half.db"
    half.write_bytes(snapshot.read_bytes()[:(snapshot.stat().st_size // 2) // 4096 * 4096])
    refused = pykv_cli("snapshot", "restore", str(half), "--data-dir", str(tmp_path / "a"),
                       "--skip-hash-check", check=False)
    assert refused.returncode == 1
    assert b"truncated" in refused.stderr and str(half).encode() in refused.stderr
    foreign = tmp_path / "notes.txt"
    foreign.write_bytes(b"hello " * 1000)
    for action in ("restore", "status"):
        refused = pykv_cli("snapshot", action, str(foreign),
                           *(["--data-dir", str(tmp_path / "b")] if action == "restore" else []),
                           check=False)
        assert refused.returncode == 1
        assert b"neither an etcd snapshot" in refused.stderr
        assert str(foreign).encode() in refused.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_long_import_reports_progress(migrated, tmp_path, monkeypatch):
    from pykv.engine import etcd_snapshot

    _etcd, _pykv, facts, snapshot, _out = migrated
    monkeypatch.setattr(etcd_snapshot, "PROGRESS_EVERY_KEYS", 100)
    lines: list[str] = []
    result = etcd_snapshot.import_store(str(snapshot), str(tmp_path / "db"),
                                        progress=lines.append)
    assert len(lines) == result.versions_read // 100 >= 3
    assert lines[0].startswith("read 100 versions")
    assert result.revision == facts["revision"]
