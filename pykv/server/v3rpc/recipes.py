"""Locks and elections as etcd serves them (v3lock, v3election), built on
the server's own KV, exactly as etcd's ``clientv3/concurrency`` recipes do:
a key ``<name>/<lease in hex>`` put with a Txn "if its create_revision is 0",
then wait until every key of the prefix created before it is deleted. The
waiting watches through the store's watch hub, in process."""

from __future__ import annotations

import asyncio

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine.requests import Kind
from pykv.server.v3rpc.context import ServerContext

ERR_ELECTION_NOT_LEADER = "election: not leader"
ERR_ELECTION_NO_LEADER = "election: no leader"


class RecipeError(errors.EtcdError):
    """A plain error of etcd's concurrency package: gRPC code Unknown."""

    code = "UNKNOWN"

    def __init__(self, message: str):
        self.message = message
        super().__init__()


def prefix_end(prefix: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[:i + 1])
    return b"\x00"


class LocalKV:
    """Txn, Range and "wait for a delete" against this server, in process."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    async def txn(self, request: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        raw = request.SerializeToString()
        return rpc_pb2.TxnResponse.FromString(await self.ctx.core.propose(Kind.TXN, raw, request))

    async def delete(self, key: bytes) -> rpc_pb2.DeleteRangeResponse:
        request = rpc_pb2.DeleteRangeRequest(key=key)
        raw = request.SerializeToString()
        return rpc_pb2.DeleteRangeResponse.FromString(
            await self.ctx.core.propose(Kind.DELETE_RANGE, raw, request))

    async def range(self, request: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        ctx = self.ctx
        await ctx.core.read_barrier()
        result = ctx.store.range_raw(request)
        return rpc_pb2.RangeResponse.FromString(
            result.response_bytes(ctx.headers.encode(result.revision)))

    async def wait_delete(self, key: bytes, revision: int) -> None:
        """Return once ``key`` is deleted at a revision after ``revision``."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        watcher = self.ctx.store.hub.watch(
            key, b"", revision + 1, notify=lambda w: loop.call_soon_threadsafe(changed.set))
        try:
            while True:
                await changed.wait()
                changed.clear()
                for response in watcher.take():
                    if response.compact_revision:
                        raise errors.Compacted()
                    if any(event.type == 1 for event in response.events):
                        return
        finally:
            watcher.cancel()

    async def wait_deletes(self, prefix: bytes, max_create_revision: int
                           ) -> rpc_pb2.ResponseHeader:
        """etcd's waitDeletes: until no key of ``prefix`` was created at or
        before ``max_create_revision``."""
        while True:
            response = await self.range(rpc_pb2.RangeRequest(
                key=prefix, range_end=prefix_end(prefix), sort_order=rpc_pb2.RangeRequest.DESCEND,
                sort_target=rpc_pb2.RangeRequest.CREATE, max_create_revision=max_create_revision,
                limit=1))
            if not response.kvs:
                return response.header
            await self.wait_delete(response.kvs[0].key, response.header.revision)


def _first_create(prefix: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(
        key=prefix, range_end=prefix_end(prefix), sort_order=rpc_pb2.RangeRequest.ASCEND,
        sort_target=rpc_pb2.RangeRequest.CREATE, limit=1))


async def acquire(kv: LocalKV, name: bytes, lease: int, value: bytes = b""
                  ) -> tuple[bytes, int, rpc_pb2.ResponseHeader]:
    """Queue ``<name>/<lease hex>`` and wait for the turn; returns (key,
    create revision, header). Raises if the lease is gone."""
    prefix = name + b"/"
    key = prefix + b"%x" % lease
    response = await kv.txn(rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE,
                                 key=key, create_revision=0)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value,
                                                                  lease=lease)),
                 _first_create(prefix)],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key)),
                 _first_create(prefix)]))
    my_revision = response.header.revision
    if not response.succeeded:
        my_revision = response.responses[0].response_range.kvs[0].create_revision
    owner = response.responses[1].response_range.kvs
    if owner and owner[0].create_revision != my_revision:
        try:
            header = await kv.wait_deletes(prefix, my_revision - 1)
        except BaseException:
            await kv.delete(key)
            raise
        return key, my_revision, header
    return key, my_revision, response.header
