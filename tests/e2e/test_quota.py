"""--quota-backend-bytes as etcd applies it: past the quota, puts fail with
"database space exceeded" and the NOSPACE alarm is raised; reads and deletes
go on; etcd's documented way out (compact, defrag, alarm disarm) works."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.harness import etcdctl, etcdctl_json

QUOTA_BYTES = 4 << 20
VALUE = b"q" * 200_000


@pytest.mark.parametrize("etcd", [False, True], ids=["pykv", "etcd"])
def test_past_the_quota_puts_fail_until_compact_defrag_and_disarm(fresh_pykv, etcd):
    # The same steps against real etcd show that they are etcd's behaviour.
    if etcd and not shutil.which("etcd"):
        pytest.skip("real etcd (Debian's etcd-server) is not installed")
    server = fresh_pykv(extra_args=("--quota-backend-bytes", str(QUOTA_BYTES)), etcd=etcd)
    endpoint = server.endpoint
    written, refused = [], None
    for i in range(200):  # 40 MB if nothing stopped it
        result = etcdctl(endpoint, "put", f"/q/{i:03d}", input=VALUE, check=False)
        if result.returncode != 0:
            refused = result.stderr.decode()
            break
        written.append(f"/q/{i:03d}")
    assert refused is not None and "etcdserver: mvcc: database space exceeded" in refused
    assert written, "the first puts fit under the quota"
    assert "alarm:NOSPACE" in etcdctl(endpoint, "alarm", "list").stdout.decode()

    # Reads and deletes still work; puts stay refused while the alarm is up.
    got = etcdctl(endpoint, "get", written[0], "--print-value-only").stdout
    assert got.rstrip(b"\n") == VALUE
    deleted = etcdctl(endpoint, "del", "/q/", "--prefix").stdout.decode().split()[0]
    # Real etcd sometimes has applied the put it answered with the error (its
    # quota check runs before the proposal and again at apply): one more key.
    assert len(written) <= int(deleted) <= len(written) + 1
    again = etcdctl(endpoint, "put", "/q/again", "small", check=False)
    assert again.returncode != 0 and b"database space exceeded" in again.stderr

    # etcd's remedy: compact the history away, defragment, disarm.
    revision = etcdctl_json(endpoint, "get", "/q/", "--prefix")["header"]["revision"]
    etcdctl(endpoint, "compaction", "--physical", str(revision))
    etcdctl(endpoint, "defrag")
    status = etcdctl_json(endpoint, "endpoint", "status")[0]["Status"]
    assert status["dbSize"] < QUOTA_BYTES
    etcdctl(endpoint, "alarm", "disarm")
    assert etcdctl(endpoint, "alarm", "list").stdout.strip() == b""
    etcdctl(endpoint, "put", "/q/again", "small")
    assert etcdctl(endpoint, "get", "/q/again", "--print-value-only").stdout.strip() == b"small"


@pytest.mark.parametrize("etcd", [False, True], ids=["pykv", "etcd"])
def test_deleting_everything_at_once_does_not_raise_the_alarm(fresh_pykv, etcd):
    # 4,000 values of 1 KiB under a 12 MiB quota, then one delete of them all:
    # etcd adds tombstones and takes the next put. In pykv's LMDB the delete
    # moves every record into the history in one transaction and the file
    # grows past the quota (9 -> 18 MB) while the data in it stays ~9 MB.
    import grpc

    from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    if etcd and not shutil.which("etcd"):
        pytest.skip("real etcd (Debian's etcd-server) is not installed")
    server = fresh_pykv(extra_args=("--quota-backend-bytes", str(12 << 20)), etcd=etcd)
    channel = grpc.insecure_channel(server.endpoint)
    try:
        kv = rpc_pb2_grpc.KVStub(channel)
        value = bytes(range(256)) * 4
        for start in range(0, 4000, 100):
            kv.Txn(rpc_pb2.TxnRequest(success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/bulk/%0100d" % i,
                                                                 value=value))
                for i in range(start, start + 100)]), timeout=30)
        deleted = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/bulk/", range_end=b"/bulk0"),
                                 timeout=30).deleted
        assert deleted == 4000
        kv.Put(rpc_pb2.PutRequest(key=b"/after", value=b"delete"), timeout=30)
    finally:
        channel.close()
    assert etcdctl(server.endpoint, "alarm", "list").stdout.strip() == b""
    assert etcdctl(server.endpoint, "get", "/after", "--print-value-only").stdout.strip() == \
        b"delete"
