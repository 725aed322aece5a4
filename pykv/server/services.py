"""Wire the etcd services to a core: one place that lists them all."""

from __future__ import annotations

import grpc

from pykv.api.etcdserverpb import rpc_pb2
from pykv.api.healthpb import health_pb2
from pykv.api.v3electionpb import v3election_pb2
from pykv.api.v3lockpb import v3lock_pb2
from pykv.server.config import ServerConfig
from pykv.server.v3rpc import service_handler
from pykv.server.v3rpc import (
    auth, cluster, election, health, kv, lease, lock, maintenance, watch,
)
from pykv.server.v3rpc.context import ServerContext


def build_handlers(config: ServerConfig, core) -> tuple[list[grpc.GenericRpcHandler],
                                                        ServerContext]:
    ctx = ServerContext(config=config, core=core, store=core.store, headers=core.headers)
    services = rpc_pb2.DESCRIPTOR.services_by_name
    handlers = [
        service_handler(services["KV"], kv.KVService(ctx), raw=kv.RAW),
        service_handler(services["Watch"], watch.WatchService(ctx)),
        service_handler(services["Lease"], lease.LeaseService(ctx), raw=lease.RAW),
        service_handler(services["Cluster"], cluster.ClusterService(ctx)),
        service_handler(services["Maintenance"], maintenance.MaintenanceService(ctx)),
        service_handler(services["Auth"], auth.AuthService(ctx)),
        service_handler(v3lock_pb2.DESCRIPTOR.services_by_name["Lock"], lock.LockService(ctx)),
        service_handler(v3election_pb2.DESCRIPTOR.services_by_name["Election"],
                        election.ElectionService(ctx)),
        service_handler(health_pb2.DESCRIPTOR.services_by_name["Health"],
                        health.HealthService(ctx)),
    ]
    return handlers, ctx
