"""v3lockpb.Lock: etcd's lock service (etcdctl itself locks client-side; other
clients, e.g. through the gateway, use this)."""

from __future__ import annotations

from pykv.api.v3lockpb import v3lock_pb2
from pykv.server.v3rpc.context import ServerContext
from pykv.server.v3rpc.recipes import LocalKV, acquire


class LockService:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.kv = LocalKV(ctx)

    async def Lock(self, request: v3lock_pb2.LockRequest, context):
        key, _, header = await acquire(self.kv, request.name, request.lease)
        return v3lock_pb2.LockResponse(header=header, key=key)

    async def Unlock(self, request: v3lock_pb2.UnlockRequest, context):
        response = await self.kv.delete(request.key)
        return v3lock_pb2.UnlockResponse(header=response.header)
