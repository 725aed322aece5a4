"""Plain HTTP beside gRPC, as etcd serves it: /health, /livez, /readyz,
/version and /metrics, on the client port (HTTP/1 connections the native
gRPC server hands over, beside the JSON gateway) and on
``--listen-metrics-urls``.

- ``GET /health``: ``{"health":"true","reason":""}``, or 503 with
  ``"false"`` and etcd's reasons (``ALARM NOSPACE``, ``ALARM CORRUPT``,
  ``RAFT NO LEADER``, ``RANGE ERROR:...``). As etcd 3.5 does it: the alarms
  (``?exclude=NOSPACE`` ignores one), a leader (not asked with
  ``?serializable=true``), then a one-key Range through the KV service.
- ``GET /livez``: the alarms but NOSPACE, and a Range; ``GET /readyz``: the
  alarms and a Range (etcd 3.5.11+).
- ``GET /version``: ``{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}`` (clients
  such as etcd3gw pick their API prefix from it).
- ``GET /metrics``: Prometheus text with etcd's metric names for what pykv
  measures, so dashboards and alerts written for etcd read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from pykv.api.etcdserverpb import rpc_pb2
from pykv.mvcc import types as mvcc_types
from pykv.server import process_metrics
from pykv.server.h2server import CallContext
from pykv.server.http1 import Http1Server, Limits, Request, Response, text_response
from pykv.server.v3rpc.maintenance import ETCD_API_VERSION

log = logging.getLogger("pykv.server.http")

HEALTH_PATHS = ("/health", "/livez", "/readyz")
RANGE_METHOD = "/etcdserverpb.KV/Range"
#: etcd's ReqTimeout: 5 s plus two election timeouts (of 1 s by default).
HEALTH_TIMEOUT_S = 7.0
_ALARM_NAMES = {mvcc_types.ALARM_NOSPACE: "NOSPACE", mvcc_types.ALARM_CORRUPT: "CORRUPT"}


def check_alarms(core, excluded: set[str]) -> dict | None:
    for alarm in core.store.alarms():
        name = _ALARM_NAMES.get(alarm.alarm, "UNKNOWN")
        if name not in excluded:
            return {"health": "false", "reason": f"ALARM {name}"}
    return None


def health(core, query: dict[str, list[str]]) -> tuple[int, dict]:
    """The checks that need no request: alarms, then the leader."""
    unhealthy = check_alarms(core, set(query.get("exclude", [])))
    if unhealthy:
        return 503, unhealthy
    if query.get("serializable", [""])[-1] != "true" and not core.leader_id:
        return 503, {"health": "false", "reason": "RAFT NO LEADER"}
    return 200, {"health": "true", "reason": ""}


def metrics(core) -> str:
    stats = core.raft.stats
    wal = core.wal.stats()
    store = core.store
    lines = []

    def metric(name: str, kind: str, help_text: str, value) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {value}")

    metric("etcd_server_has_leader", "gauge", "Whether or not a leader exists. 1 is existence, "
           "0 is not.", 1 if core.leader_id else 0)
    metric("etcd_server_is_leader", "gauge", "Whether or not this member is a leader.",
           1 if core.leader_id == core.member_id else 0)
    metric("etcd_server_leader_changes_seen_total", "counter",
           "The number of leader changes seen.", core.raft.leader_changes)
    metric("etcd_server_proposals_committed_total", "gauge",
           "The total number of consensus proposals committed.", core.raft.applied_index)
    metric("etcd_server_proposals_applied_total", "gauge",
           "The total number of consensus proposals applied.", core.raft.applied_index)
    metric("etcd_server_proposals_pending", "gauge",
           "The current number of pending proposals to commit.", core.raft.pending)
    metric("etcd_mvcc_db_total_size_in_bytes", "gauge",
           "Total size of the underlying database physically allocated in bytes.",
           store.size_bytes)
    metric("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
           "Total size of the underlying database logically in use in bytes.",
           store.size_in_use_bytes)
    metric("etcd_server_quota_backend_bytes", "gauge",
           "Current backend storage quota size in bytes.", store.quota_bytes)
    metric("etcd_debugging_mvcc_current_revision", "gauge",
           "The current revision of store.", store.revision)
    metric("etcd_debugging_mvcc_compact_revision", "gauge",
           "The revision of the last compaction in store.", store.last_compaction)
    hub = getattr(store, "hub", None)
    if hub is not None:
        slow = hub.unsynced_count
        metric("etcd_debugging_mvcc_watcher_total", "gauge", "Total number of watchers.",
               hub.synced_count + slow)
        metric("etcd_debugging_mvcc_slow_watcher_total", "gauge",
               "Total number of unsynced slow watchers.", slow)
    lines.append("# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of "
                 "fsync called by WAL.")
    lines.append("# TYPE etcd_disk_wal_fsync_duration_seconds summary")
    lines.append(f"etcd_disk_wal_fsync_duration_seconds_sum {wal['sync_ns_total'] / 1e9:.9f}")
    lines.append(f"etcd_disk_wal_fsync_duration_seconds_count {wal['syncs']}")
    metric("pykv_raft_readies_total", "counter", "Raft Ready batches handled.", stats.readies)
    metric("pykv_raft_proposals_total", "counter", "Client requests proposed to Raft.",
           stats.proposals)
    metric("pykv_wal_records_total", "counter", "Records appended to the WAL.", wal["records"])
    metric("pykv_wal_fsync_max_seconds", "gauge", "The longest WAL fdatasync so far.",
           f"{wal['sync_ns_max'] / 1e9:.9f}")
    process_metrics.write(metric)
    return "\n".join(lines) + "\n"


class Endpoints:
    """The plain endpoints of one server. ``methods`` (the gRPC ones) give
    the health checks their Range; without a Range method the checks stop
    at alarms and leader."""

    def __init__(self, core, methods: list | None = None,
                 health_timeout_s: float = HEALTH_TIMEOUT_S):
        self.core = core
        self.range_method = next((m for m in methods or [] if m.path == RANGE_METHOD), None)
        self.health_timeout_s = health_timeout_s

    async def handle(self, request: Request) -> Response | None:
        path = request.path
        if path in HEALTH_PATHS:
            if request.method != "GET":
                return text_response(405, "Method Not Allowed", headers=[("Allow", "GET")])
            return await self._health(path, request.query)
        if path == "/version":
            if request.method not in ("GET", "HEAD"):
                return text_response(405, "Method Not Allowed", headers=[("Allow", "GET")])
            body = json.dumps({"etcdserver": ETCD_API_VERSION, "etcdcluster": ETCD_API_VERSION},
                              separators=(",", ":"))
            return Response(200, body.encode(), "application/json")
        if path == "/metrics":
            if request.method not in ("GET", "HEAD"):
                return text_response(405, "Method Not Allowed", headers=[("Allow", "GET")])
            return Response(200, metrics(self.core).encode(),
                            "text/plain; version=0.0.4; charset=utf-8")
        return None

    async def _health(self, path: str, query: dict[str, list[str]]) -> Response:
        excluded = set(query.get("exclude", []))
        serializable = query.get("serializable", [""])[-1] == "true"
        if path == "/livez":
            excluded.add("NOSPACE")  # a full store is still alive
        verdict = check_alarms(self.core, excluded)
        if verdict is None and path == "/health" and not serializable and not self.core.leader_id:
            verdict = {"health": "false", "reason": "RAFT NO LEADER"}
        if verdict is None:
            verdict = await self._check_range(serializable)
        body = json.dumps(verdict, separators=(",", ":"))
        if verdict["health"] != "true":
            return text_response(503, body)
        return Response(200, body.encode())

    async def _check_range(self, serializable: bool) -> dict:
        """etcd's checkAPI: a one-key Range must answer in time."""
        method = self.range_method
        if method is None:
            return {"health": "true", "reason": ""}
        raw = rpc_pb2.RangeRequest(key=b"health", keys_only=True, limit=1,
                                   serializable=serializable).SerializeToString()
        argument = raw if method.deserialize is None else method.deserialize(raw)
        try:
            await asyncio.wait_for(method.fn(argument, CallContext(b"", None)),
                                   self.health_timeout_s)
        except asyncio.TimeoutError:
            return {"health": "false", "reason": "RANGE ERROR:context deadline exceeded"}
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is the verdict
            reason = getattr(exc, "message", None) or str(exc)
            return {"health": "false", "reason": f"RANGE ERROR:{reason}"}
        return {"health": "true", "reason": ""}


Route = Callable[[Request], Awaitable[Response | None]]


def router(*routes: Route) -> Callable[[Request], Awaitable[Response]]:
    """A handler that asks each route in turn; Go's 404 when none answers."""

    async def handle(request: Request) -> Response:
        for route in routes:
            response = await route(request)
            if response is not None:
                return response
        return text_response(404, "404 page not found")

    return handle


def client_port_server(core, methods: list, gateway=None,
                       limits: Limits | None = None) -> Http1Server:
    """What HTTP/1 clients of the client port get: the plain endpoints and,
    when given, the JSON gateway."""
    routes: list[Route] = [Endpoints(core, methods).handle]
    if gateway is not None:
        routes.append(gateway.handle)
    return Http1Server(router(*routes), limits)


async def start(core, urls: list[str], methods: list | None = None) -> Http1Server:
    """Serve the plain endpoints on ``--listen-metrics-urls``."""
    server = Http1Server(router(Endpoints(core, methods).handle))
    await server.start_listeners(urls)
    return server
