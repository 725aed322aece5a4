"""MVCC results -> etcd protobuf responses (bytes), with the response header.

The header etcd sends on every response: cluster_id, member_id, revision,
raft_term. The hot answers (Put, Range) are encoded by hand from
precomputed pieces; the rest go through the generated classes.
"""

from __future__ import annotations

from typing import Any

from pykv.api.etcdserverpb import rpc_pb2
from pykv.api.mvccpb import kv_pb2
from pykv.engine.requests import Kind
from pykv.mvcc import types as t
from pykv.mvcc.varint import varint


class Headers:
    """Encodes ResponseHeader messages for one member."""

    def __init__(self, cluster_id: int, member_id: int):
        self.cluster_id = cluster_id
        self.member_id = member_id
        self._ids = b"\x08" + varint(cluster_id) + b"\x10" + varint(member_id)
        self.raft_term = 0

    def encode(self, revision: int) -> bytes:
        """The ResponseHeader message bytes (without its field tag)."""
        return self._ids + b"\x18" + varint(revision) + b"\x20" + varint(self.raft_term)

    def field(self, revision: int) -> bytes:
        """The header as field 1 of a response message."""
        body = self.encode(revision)
        return b"\x0a" + varint(len(body)) + body

    def message(self, revision: int) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(cluster_id=self.cluster_id, member_id=self.member_id,
                                      revision=revision, raft_term=self.raft_term)


def kv_message(kv: t.KeyValue) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=kv.key, create_revision=kv.create_revision,
                           mod_revision=kv.mod_revision, version=kv.version, value=kv.value,
                           lease=kv.lease)


def kv_bytes(kv: t.KeyValue) -> bytes:
    parts = [b"\x0a", varint(len(kv.key)), kv.key]
    if kv.create_revision:
        parts += [b"\x10", varint(kv.create_revision)]
    if kv.mod_revision:
        parts += [b"\x18", varint(kv.mod_revision)]
    if kv.version:
        parts += [b"\x20", varint(kv.version)]
    if kv.value:
        parts += [b"\x2a", varint(len(kv.value)), kv.value]
    if kv.lease:
        parts += [b"\x30", varint(kv.lease)]
    return b"".join(parts)


def put_bytes(headers: Headers, result: t.PutResult) -> bytes:
    out = headers.field(result.revision)
    if result.prev_kv is not None:
        body = kv_bytes(result.prev_kv)
        out += b"\x12" + varint(len(body)) + body
    return out


def range_message(headers: Headers, result: t.RangeResult,
                  header: bool = True) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(
        header=headers.message(result.revision) if header else
        rpc_pb2.ResponseHeader(revision=result.revision),
        kvs=[kv_message(kv) for kv in result.kvs], more=result.more, count=result.count)


def delete_range_message(headers: Headers, result: t.DeleteRangeResult,
                         header: bool = True) -> rpc_pb2.DeleteRangeResponse:
    return rpc_pb2.DeleteRangeResponse(
        header=headers.message(result.revision) if header else
        rpc_pb2.ResponseHeader(revision=result.revision),
        deleted=result.deleted, prev_kvs=[kv_message(kv) for kv in result.prev_kvs])


def put_message(headers: Headers, result: t.PutResult, header: bool = True) -> rpc_pb2.PutResponse:
    response = rpc_pb2.PutResponse(
        header=headers.message(result.revision) if header else
        rpc_pb2.ResponseHeader(revision=result.revision))
    if result.prev_kv is not None:
        response.prev_kv.CopyFrom(kv_message(result.prev_kv))
    return response


def txn_message(headers: Headers, result: t.TxnResult, header: bool = True) -> rpc_pb2.TxnResponse:
    responses = []
    for item in result.responses:
        op = rpc_pb2.ResponseOp()
        if isinstance(item, t.RangeResult):
            op.response_range.CopyFrom(range_message(headers, item, header=False))
        elif isinstance(item, t.PutResult):
            op.response_put.CopyFrom(put_message(headers, item, header=False))
        elif isinstance(item, t.DeleteRangeResult):
            op.response_delete_range.CopyFrom(delete_range_message(headers, item, header=False))
        elif isinstance(item, t.TxnResult):
            op.response_txn.CopyFrom(txn_message(headers, item, header=False))
        responses.append(op)
    return rpc_pb2.TxnResponse(
        header=headers.message(result.revision) if header else
        rpc_pb2.ResponseHeader(revision=result.revision),
        succeeded=result.succeeded, responses=responses)


def encode_result(headers: Headers, kind: int, result: Any) -> bytes:
    """The response bytes for a write applied through Raft."""
    if kind == Kind.PUT:
        return put_bytes(headers, result)
    if kind == Kind.DELETE_RANGE:
        return delete_range_message(headers, result).SerializeToString()
    if kind == Kind.TXN:
        return txn_message(headers, result).SerializeToString()
    if kind == Kind.COMPACTION:
        return rpc_pb2.CompactionResponse(
            header=headers.message(result.revision)).SerializeToString()
    if kind == Kind.LEASE_GRANT:
        return rpc_pb2.LeaseGrantResponse(header=headers.message(result.revision), ID=result.id,
                                          TTL=result.ttl).SerializeToString()
    if kind == Kind.LEASE_REVOKE:
        return rpc_pb2.LeaseRevokeResponse(
            header=headers.message(result.revision)).SerializeToString()
    raise ValueError(f"no response encoding for request kind {kind}")
