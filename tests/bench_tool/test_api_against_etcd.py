"""The generated pykv.api stubs speak etcd's wire protocol: checked against real etcd."""

from __future__ import annotations

import grpc

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from pykv.api.mvccpb import kv_pb2


def test_generated_stubs_put_txn_range_and_status_against_etcd(etcd_endpoint):
    with grpc.insecure_channel(etcd_endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        put = kv.Put(rpc_pb2.PutRequest(key=b"/t-api/a", value=b"1"), timeout=10)
        nested = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_put=rpc_pb2.PutRequest(key=b"/t-api/b", value=b"2", prev_kv=True))])
        txn = kv.Txn(rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"/t-api/a", target=rpc_pb2.Compare.VALUE,
                                     result=rpc_pb2.Compare.EQUAL, value=b"1")],
            success=[rpc_pb2.RequestOp(request_txn=nested)]), timeout=10)
        got = kv.Range(rpc_pb2.RangeRequest(key=b"/t-api/", range_end=b"/t-api0",
                                            sort_target=rpc_pb2.RangeRequest.CREATE,
                                            sort_order=rpc_pb2.RangeRequest.DESCEND), timeout=10)
        status = rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=10)
    assert txn.succeeded
    assert txn.responses[0].WhichOneof("response") == "response_txn"
    assert txn.header.revision == put.header.revision + 1
    assert [kv.key for kv in got.kvs] == [b"/t-api/b", b"/t-api/a"]
    assert isinstance(got.kvs[0], kv_pb2.KeyValue) and got.kvs[0].version == 1
    assert got.count == 2
    assert status.version.startswith("3.") and status.raftIndex >= status.raftAppliedIndex > 0
    assert status.header.member_id == status.leader
