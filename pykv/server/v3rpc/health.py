"""grpc.health.v1.Health, which etcd registers too: SERVING while this member
has a leader, NOT_SERVING otherwise."""

from __future__ import annotations

from pykv.api.healthpb import health_pb2
from pykv.server.v3rpc.context import ServerContext


class HealthService:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    def _status(self) -> int:
        if self.ctx.core.leader_id:
            return health_pb2.HealthCheckResponse.SERVING
        return health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request, context):
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(self, request, context):
        yield health_pb2.HealthCheckResponse(status=self._status())
