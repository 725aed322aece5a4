"""v3electionpb.Election: etcd's election service, on the same recipe as
locks: the leader is the key of the prefix with the lowest create revision."""

from __future__ import annotations

import asyncio

from pykv.api.etcdserverpb import rpc_pb2
from pykv.api.v3electionpb import v3election_pb2
from pykv.server.v3rpc.context import ServerContext
from pykv.server.v3rpc.recipes import (
    ERR_ELECTION_NO_LEADER, ERR_ELECTION_NOT_LEADER, LocalKV, RecipeError, acquire, prefix_end,
)

ERR_MISSING_LEADER_KEY = '"leader" field must be provided'


class ElectionService:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.kv = LocalKV(ctx)

    async def Campaign(self, request: v3election_pb2.CampaignRequest, context):
        key, revision, header = await acquire(self.kv, request.name, request.lease,
                                              request.value)
        leader = v3election_pb2.LeaderKey(name=request.name, key=key, rev=revision,
                                          lease=request.lease)
        # A campaign that found its key already there proclaims the new value.
        current = await self.kv.range(rpc_pb2.RangeRequest(key=key))
        if current.kvs and current.kvs[0].value != request.value:
            await self._proclaim(leader, request.value)
        return v3election_pb2.CampaignResponse(header=header, leader=leader)

    async def _proclaim(self, leader: v3election_pb2.LeaderKey, value: bytes):
        response = await self.kv.txn(rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE,
                                     key=leader.key, create_revision=leader.rev)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                key=leader.key, value=value, lease=leader.lease))]))
        if not response.succeeded:
            raise RecipeError(ERR_ELECTION_NOT_LEADER)
        return response.header

    async def Proclaim(self, request: v3election_pb2.ProclaimRequest, context):
        if not request.HasField("leader"):
            raise RecipeError(ERR_MISSING_LEADER_KEY)
        header = await self._proclaim(request.leader, request.value)
        return v3election_pb2.ProclaimResponse(header=header)

    async def _leader(self, name: bytes) -> rpc_pb2.RangeResponse:
        prefix = name + b"/"
        return await self.kv.range(rpc_pb2.RangeRequest(
            key=prefix, range_end=prefix_end(prefix), sort_order=rpc_pb2.RangeRequest.ASCEND,
            sort_target=rpc_pb2.RangeRequest.CREATE, limit=1))

    async def Leader(self, request: v3election_pb2.LeaderRequest, context):
        response = await self._leader(request.name)
        if not response.kvs:
            raise RecipeError(ERR_ELECTION_NO_LEADER)
        return v3election_pb2.LeaderResponse(header=response.header, kv=response.kvs[0])

    async def Observe(self, request: v3election_pb2.LeaderRequest, context):
        """Stream the leader's key-value each time the leadership or its
        value changes (etcd's Election.Observe)."""
        loop = asyncio.get_running_loop()
        prefix = request.name + b"/"
        last = None
        while True:
            response = await self._leader(request.name)
            changed = asyncio.Event()
            watcher = self.ctx.store.hub.watch(
                prefix, prefix_end(prefix), response.header.revision + 1,
                notify=lambda w, changed=changed: loop.call_soon_threadsafe(changed.set))
            try:
                if response.kvs:
                    kv = response.kvs[0]
                    current = (kv.key, kv.create_revision, kv.mod_revision)
                    if current != last:
                        last = current
                        yield v3election_pb2.LeaderResponse(header=response.header, kv=kv)
                await changed.wait()
                watcher.take()
            finally:
                watcher.cancel()

    async def Resign(self, request: v3election_pb2.ResignRequest, context):
        if not request.HasField("leader"):
            raise RecipeError(ERR_MISSING_LEADER_KEY)
        leader = request.leader
        response = await self.kv.txn(rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE,
                                     key=leader.key, create_revision=leader.rev)],
            success=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
                key=leader.key))]))
        return v3election_pb2.ResignResponse(header=response.header)
