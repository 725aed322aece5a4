"""etcdserverpb.Lease: grant and revoke go through Raft; keepalive, time to
live and the list are answered by the lessor (on the leader, as in etcd)."""

from __future__ import annotations

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine.requests import Kind
from pykv.server.v3rpc.context import ServerContext

RAW = frozenset({"LeaseGrant", "LeaseRevoke"})


class LeaseService:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    async def LeaseGrant(self, raw: bytes, context) -> bytes:
        ctx = self.ctx
        ctx.check_size(raw)
        req = rpc_pb2.LeaseGrantRequest.FromString(raw)
        await ctx.check_quota(0)
        return await ctx.core.propose(Kind.LEASE_GRANT, raw, req)

    async def LeaseRevoke(self, raw: bytes, context) -> bytes:
        ctx = self.ctx
        req = rpc_pb2.LeaseRevokeRequest.FromString(raw)
        return await ctx.core.propose(Kind.LEASE_REVOKE, raw, req)

    def _require_leader(self) -> None:
        core = self.ctx.core
        if core.leader_id == 0:
            raise errors.NoLeader()
        if core.leader_id != self.ctx.headers.member_id:
            # Forwarding keepalives to the leader comes with clustering.
            raise errors.NotLeader()

    async def LeaseKeepAlive(self, requests, context):
        ctx = self.ctx
        lessor = ctx.store.lessor
        async for request in requests:
            self._require_leader()
            try:
                ttl = lessor.renew(request.ID)
            except errors.LeaseNotFound:
                ttl = 0  # etcd: an unknown lease answers TTL 0, not an error
            yield rpc_pb2.LeaseKeepAliveResponse(header=ctx.headers.message(ctx.store.revision),
                                                 ID=request.ID, TTL=ttl)

    async def LeaseTimeToLive(self, request: rpc_pb2.LeaseTimeToLiveRequest, context):
        ctx = self.ctx
        self._require_leader()
        info = ctx.store.lessor.time_to_live(request.ID, keys=request.keys)
        return rpc_pb2.LeaseTimeToLiveResponse(
            header=ctx.headers.message(ctx.store.revision), ID=request.ID, TTL=info.ttl,
            grantedTTL=info.granted_ttl, keys=info.keys)

    async def LeaseLeases(self, request: rpc_pb2.LeaseLeasesRequest, context):
        ctx = self.ctx
        return rpc_pb2.LeaseLeasesResponse(
            header=ctx.headers.message(ctx.store.revision),
            leases=[rpc_pb2.LeaseStatus(ID=lease_id) for lease_id in ctx.store.lessor.leases()])
