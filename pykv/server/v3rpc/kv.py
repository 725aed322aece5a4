"""etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact.

Writes are checked here (etcd's checkPutRequest, checkTxnRequest...) and
handed to Raft as the client's own bytes; reads are served from the local
store, after a ReadIndex barrier unless the request is serializable.
"""

from __future__ import annotations

import asyncio

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine.requests import Kind
from pykv.mvcc import requests as checks
from pykv.mvcc.reads import txn_writes
from pykv.server.responses import txn_message
from pykv.server.v3rpc import REPLYING
from pykv.server.v3rpc.context import ServerContext

RAW = frozenset({"Range", "Put", "DeleteRange", "Txn", "Compact"})
PHYSICAL_COMPACTION_WAIT_S = 60.0


class KVService:
    """Each hot method has a ``*_fast`` form that answers with a future and no
    coroutine (the front-end link and the native server call it directly);
    the async form awaits it. Writes also have a ``*_direct`` form whose
    answer goes from the Raft thread straight to the native server
    (``Method.direct``): ``*_fast`` is it with no replier."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    def Range_fast(self, raw: bytes):
        ctx = self.ctx
        req = rpc_pb2.RangeRequest.FromString(raw)
        checks.check_range(req)
        if req.serializable:
            future = asyncio.get_running_loop().create_future()
            future.set_result(self._read(req))
            return future
        return chain(ctx.core.read_barrier(), lambda _: self._read(req))

    def _read(self, req) -> bytes:
        ctx = self.ctx
        result = ctx.store.range_raw(req)
        return result.response_bytes(ctx.headers.encode(result.revision))

    async def Range(self, raw: bytes, context) -> bytes:
        return await self.Range_fast(raw)

    def Put_direct(self, raw: bytes, replier, token):
        ctx = self.ctx
        ctx.check_size(raw)
        req = rpc_pb2.PutRequest.FromString(raw)
        checks.check_put(req)
        if ctx.core.quota_exceeded(len(raw)):
            return None
        return _pending(ctx.core.propose(Kind.PUT, raw, req, replier, token))

    def Put_fast(self, raw: bytes):
        return self.Put_direct(raw, None, None)

    async def Put(self, raw: bytes, context) -> bytes:
        future = self.Put_fast(raw)
        if future is None:
            await self.ctx.check_quota(len(raw))  # raises NoSpace (and raises the alarm)
            future = self.ctx.core.propose(Kind.PUT, raw, rpc_pb2.PutRequest.FromString(raw))
        return await future

    def DeleteRange_direct(self, raw: bytes, replier, token):
        ctx = self.ctx
        ctx.check_size(raw)
        req = rpc_pb2.DeleteRangeRequest.FromString(raw)
        checks.check_delete(req)
        return _pending(ctx.core.propose(Kind.DELETE_RANGE, raw, req, replier, token))

    def DeleteRange_fast(self, raw: bytes):
        return self.DeleteRange_direct(raw, None, None)

    async def DeleteRange(self, raw: bytes, context) -> bytes:
        return await self.DeleteRange_fast(raw)

    def Txn_direct(self, raw: bytes, replier, token):
        ctx = self.ctx
        ctx.check_size(raw)
        req = rpc_pb2.TxnRequest.FromString(raw)
        checks.check_txn(req, ctx.config.max_txn_ops)
        if not txn_writes(req):
            # etcd serves a read-only txn without Raft: after the ReadIndex
            # barrier, from the local store.
            return chain(ctx.core.read_barrier(), lambda _: self._read_txn(req))
        if ctx.core.quota_exceeded(len(raw)):
            return None
        return _pending(ctx.core.propose(Kind.TXN, raw, req, replier, token))

    def Txn_fast(self, raw: bytes):
        return self.Txn_direct(raw, None, None)

    def _read_txn(self, req) -> bytes:
        return txn_message(self.ctx.headers, self.ctx.store.txn_read(req)).SerializeToString()

    async def Txn(self, raw: bytes, context) -> bytes:
        future = self.Txn_fast(raw)
        if future is None:
            await self.ctx.check_quota(len(raw))
            future = self.ctx.core.propose(Kind.TXN, raw, rpc_pb2.TxnRequest.FromString(raw))
        return await future

    async def Compact(self, raw: bytes, context) -> bytes:
        ctx = self.ctx
        req = rpc_pb2.CompactionRequest.FromString(raw)
        response = await ctx.core.propose(Kind.COMPACTION, raw, req)
        if req.physical:
            # etcd answers a physical compaction once the history is gone.
            done = await asyncio.get_running_loop().run_in_executor(
                None, ctx.store.wait_compacted, req.revision, PHYSICAL_COMPACTION_WAIT_S)
            if not done:
                raise errors.Timeout("physical compaction still running")
        return response


def _pending(future: asyncio.Future | None):
    """What a ``*_direct`` method returns for a proposal: its future, or
    REPLYING when it was given a replier (and no future was made)."""
    return REPLYING if future is None else future


def chain(future: asyncio.Future, then) -> asyncio.Future:
    """A future of ``then(result)`` once ``future`` resolves (errors pass)."""
    out = future.get_loop().create_future()

    def done(f: asyncio.Future) -> None:
        if out.done():
            return
        if f.cancelled():
            out.cancel()
            return
        exc = f.exception()
        if exc is not None:
            out.set_exception(exc)
            return
        try:
            out.set_result(then(f.result()))
        except Exception as error:  # e.g. a compacted revision
            out.set_exception(error)

    future.add_done_callback(done)
    return out

