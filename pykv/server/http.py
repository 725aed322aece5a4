"""Plain HTTP beside gRPC: /health, /version and /metrics, as etcd serves them
(on ``--listen-metrics-urls``; etcd also multiplexes them on the client port,
which grpcio's server cannot share).

- ``GET /health``: ``{"health":"true","reason":""}``, or 503 with
  ``"false"`` and etcd's reasons (``RAFT NO LEADER``, ``ALARM NOSPACE``);
  ``?exclude=NOSPACE`` ignores that alarm, as etcd's does.
- ``GET /version``: ``{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}`` (clients
  such as etcd3gw pick their API prefix from it).
- ``GET /metrics``: Prometheus text with etcd's metric names for what pykv
  measures, so dashboards and alerts written for etcd read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse

from pykv.mvcc import types as mvcc_types
from pykv.server.v3rpc.maintenance import ETCD_API_VERSION

log = logging.getLogger("pykv.server.http")

MAX_REQUEST_LINE = 8192


def health(core, query: dict[str, list[str]]) -> tuple[int, dict]:
    excluded = set(query.get("exclude", []))
    if not core.leader_id:
        return 503, {"health": "false", "reason": "RAFT NO LEADER"}
    for alarm in core.store.alarms():
        name = {mvcc_types.ALARM_NOSPACE: "NOSPACE",
                mvcc_types.ALARM_CORRUPT: "CORRUPT"}.get(alarm.alarm, "NONE")
        if name not in excluded:
            return 503, {"health": "false", "reason": f"ALARM {name}"}
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
           "The revision of the last compaction in store.", store.compact_revision)
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
    return "\n".join(lines) + "\n"


async def _handle(core, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line or len(line) > MAX_REQUEST_LINE:
            return
        while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
            pass  # headers: none matter here
        parts = line.decode("latin-1").split()
        method, target = (parts + ["", ""])[:2]
        url = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(url.query)
        content_type = "application/json"
        if method not in ("GET", "HEAD"):
            status, body = 405, json.dumps({"message": "Method Not Allowed"})
        elif url.path == "/health":
            status, payload = health(core, query)
            body = json.dumps(payload, separators=(",", ":"))
        elif url.path == "/version":
            status, body = 200, json.dumps({"etcdserver": ETCD_API_VERSION,
                                            "etcdcluster": ETCD_API_VERSION},
                                           separators=(",", ":"))
        elif url.path == "/metrics":
            status, body = 200, metrics(core)
            content_type = "text/plain; version=0.0.4"
        else:
            status, body = 404, "404 page not found\n"
            content_type = "text/plain; charset=utf-8"
        data = body.encode()
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode())
        if method != "HEAD":
            writer.write(data)
        await writer.drain()
    except (asyncio.TimeoutError, ConnectionError):
        pass
    except Exception:
        log.exception("HTTP request failed")
    finally:
        writer.close()


async def start(core, urls: list[str]) -> list[asyncio.AbstractServer]:
    servers = []
    for url in urls:
        parsed = urllib.parse.urlparse(url)
        servers.append(await asyncio.start_server(
            lambda r, w: _handle(core, r, w), parsed.hostname or "localhost", parsed.port,
            reuse_port=True))
    return servers
