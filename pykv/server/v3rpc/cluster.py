"""etcdserverpb.Cluster: the member list. Adding, removing, updating and
promoting members come with clustering; until then those methods are not
registered, so clients get gRPC's UNIMPLEMENTED rather than a wrong answer."""

from __future__ import annotations

from pykv.api.etcdserverpb import rpc_pb2
from pykv.server.v3rpc.context import ServerContext


class ClusterService:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    def members(self) -> list[rpc_pb2.Member]:
        config = self.ctx.config
        peers = config.initial_cluster_map().get(config.name, config.initial_advertise_peer_urls)
        return [rpc_pb2.Member(ID=self.ctx.headers.member_id, name=config.name, peerURLs=peers,
                               clientURLs=config.advertise_client_urls, isLearner=False)]

    async def MemberList(self, request, context):
        ctx = self.ctx
        return rpc_pb2.MemberListResponse(header=ctx.headers.message(ctx.store.revision),
                                          members=self.members())
