"""The store takes etcd's generated protobuf requests as they are, and its
raw Range answer parses as etcd's RangeResponse."""

from __future__ import annotations

import pytest

from pykv import errors

rpc = pytest.importorskip("pykv.api.etcdserverpb.rpc_pb2",
                          reason="pykv.api (generated protobuf) is not in this checkout")


def test_generated_requests_pass_straight_through(store, apply):
    apply.put(rpc.PutRequest(key=b"a", value=b"1"))
    apply.put(rpc.PutRequest(key=b"b", value=b"2", prev_kv=True))
    txn = rpc.TxnRequest(
        compare=[rpc.Compare(key=b"a", target=rpc.Compare.VALUE, result=rpc.Compare.EQUAL,
                             value=b"1")],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=b"c", value=b"3")),
                 rpc.RequestOp(request_range=rpc.RangeRequest(key=b"a", range_end=b"\x00"))],
        failure=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=b"a"))])
    result = apply.txn(txn)
    assert result.succeeded and [kv.key for kv in result.responses[1].kvs] == [b"a", b"b", b"c"]
    deleted = apply.delete_range(rpc.DeleteRangeRequest(key=b"a", range_end=b"c", prev_kv=True))
    assert deleted.deleted == 2
    got = store.range(rpc.RangeRequest(key=b"\x00", range_end=b"\x00",
                                       sort_order=rpc.RangeRequest.DESCEND,
                                       sort_target=rpc.RangeRequest.CREATE))
    assert [kv.key for kv in got.kvs] == [b"c"]
    with pytest.raises(errors.DuplicateKey):
        apply.txn(rpc.TxnRequest(success=[
            rpc.RequestOp(request_put=rpc.PutRequest(key=b"x")),
            rpc.RequestOp(request_put=rpc.PutRequest(key=b"x"))]))
    with pytest.raises(errors.KeyNotFound):
        apply.txn(rpc.TxnRequest(success=[rpc.RequestOp()]))
    apply.compact(rpc.CompactionRequest(revision=3))
    assert store.compact_revision == 3


def test_range_raw_parses_as_etcd_range_response(store, apply):
    for i in range(5):
        apply.put(rpc.PutRequest(key=b"k%d" % i, value=b"v" * i))
    header = rpc.ResponseHeader(cluster_id=1, member_id=2, revision=store.revision, raft_term=3)
    raw = store.range_raw(rpc.RangeRequest(key=b"k", range_end=b"l", limit=3))
    parsed = rpc.RangeResponse.FromString(raw.response_bytes(header.SerializeToString()))
    plain = store.range(rpc.RangeRequest(key=b"k", range_end=b"l", limit=3))
    assert parsed.header == header and parsed.more and parsed.count == 5
    assert [(kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)
            for kv in parsed.kvs] == \
        [(kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)
         for kv in plain.kvs]
