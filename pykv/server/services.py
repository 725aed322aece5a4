"""Wire the etcd services to a core: one place that lists them all."""

from __future__ import annotations

from pykv.api.etcdserverpb import rpc_pb2
from pykv.api.healthpb import health_pb2
from pykv.api.v3electionpb import v3election_pb2
from pykv.api.v3lockpb import v3lock_pb2
from pykv.server.config import ServerConfig
from pykv.server.v3rpc import (
    Method, auth, cluster, election, health, kv, lease, lock, maintenance, service_methods, watch,
)
from pykv.server.v3rpc.context import ServerContext

#: Every service descriptor pykv serves (the front ends forward all of them).
SERVICES = (
    *rpc_pb2.DESCRIPTOR.services_by_name.values(),
    v3lock_pb2.DESCRIPTOR.services_by_name["Lock"],
    v3election_pb2.DESCRIPTOR.services_by_name["Election"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
)


def build_methods(config: ServerConfig, core) -> tuple[list[Method], ServerContext]:
    ctx = ServerContext(config=config, core=core, store=core.store, headers=core.headers)
    services = rpc_pb2.DESCRIPTOR.services_by_name
    methods = [
        *service_methods(services["KV"], kv.KVService(ctx), raw=kv.RAW),
        *service_methods(services["Watch"], watch.WatchService(ctx)),
        *service_methods(services["Lease"], lease.LeaseService(ctx), raw=lease.RAW),
        *service_methods(services["Cluster"], cluster.ClusterService(ctx)),
        *service_methods(services["Maintenance"], maintenance.MaintenanceService(ctx)),
        *service_methods(services["Auth"], auth.AuthService(ctx)),
        *service_methods(v3lock_pb2.DESCRIPTOR.services_by_name["Lock"], lock.LockService(ctx)),
        *service_methods(v3election_pb2.DESCRIPTOR.services_by_name["Election"],
                         election.ElectionService(ctx)),
        *service_methods(health_pb2.DESCRIPTOR.services_by_name["Health"],
                         health.HealthService(ctx)),
    ]
    return methods, ctx
