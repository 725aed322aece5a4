"""The core of one member: WAL, Raft, the MVCC store, and the Raft loop.

``Core`` assembles the parts (pykv.engine gives the data directory, the
durable Raft log and the applier), starts the Raft thread, and offers the
asyncio side three things: ``propose`` a write and await its response bytes,
``read_barrier`` before a linearizable read, and the store for reads.

Background duties run on the Raft thread after each Ready (``_after_apply``):
lease expiry (the leader revokes expired leases through Raft, at most
``LEASE_REVOKE_PER_TICK`` a time), snapshots every ``--snapshot-count``
applied entries (checkpoint the store, record a marker, compact the
in-memory log, release WAL segments; the store is also checkpointed every
0.1 s by its own thread, and after a power loss it reopens at its last
checkpoint, from which the WAL replays), and physical compaction steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine import layout
from pykv.engine.identity import cluster_id_for, member_id_for
from pykv.engine.apply import Applier
from pykv.engine.raftlog import RaftLog, load
from pykv.engine.requests import Kind
from pykv.mvcc import Store
from pykv.raft.rawnode import Config as RaftConfig
from pykv.raft.rawnode import RawNode, Ready
from pykv.raft.types import ConfChange, Entry, decode_conf_change
from pykv.server import responses
from pykv.server.config import ServerConfig
from pykv.server.raftnode import RaftNode
from pykv.wal import WAL

log = logging.getLogger("pykv.server.core")

LEASE_REVOKE_PER_TICK = 100  # etcd revokes up to 1000 leases/s; we check every 100 ms
LEASE_CHECK_INTERVAL_S = 0.1
DB_SIZE_REFRESH_S = 0.1  # the quota check reads a size at most this old
REQUEST_TIMEOUT_S = 7.0  # etcd: 5 s + 2 x election timeout (1 s)


class Core:
    def __init__(self, config: ServerConfig, loop: asyncio.AbstractEventLoop):
        self.config = config
        self.loop = loop
        self.data_dir = layout.prepare(config.effective_data_dir)
        self._lock = layout.DirectoryLock(self.data_dir)
        self.store: Store | None = None
        self.wal: WAL | None = None
        self.raft: RaftNode | None = None
        self.member_id = 0
        self.cluster_id = 0
        self.headers: responses.Headers | None = None
        self._last_snapshot_index = 0
        self._next_lease_check = 0.0
        self._next_size_check = 0.0
        self.started_at = time.time()

    # -- start and stop -------------------------------------------------------

    def start(self) -> None:
        config = self.config
        self._lock.acquire()
        wal_dir = self.data_dir.wal
        if config.wal_dir:  # --wal-dir: the WAL on a device of its own, as etcd allows
            wal_dir = config.wal_dir
            layout.make_dirs(wal_dir)
        self.wal = WAL.open(wal_dir, unsafe_no_fsync=config.unsafe_no_fsync)
        recovery = self.wal.recovery
        if recovery.bytes_cut:
            log.warning("WAL torn tail cut", extra={"fields": {
                "segment": recovery.cut_segment, "offset": recovery.cut_offset,
                "bytes-cut": recovery.bytes_cut, "records-dropped": recovery.records_dropped}})
        state = load(self.wal)
        raftlog = RaftLog.restore(self.wal, state)
        self.store = Store.open(self.data_dir.db, quota_bytes=config.effective_quota_backend_bytes,
                                max_txn_ops=config.max_txn_ops,
                                min_lease_ttl=max(2, -(-3 * config.election_timeout_ms // 2000)),
                                # Checkpoints make the store durable (the WAL covers
                                # the rest); --unsafe-no-fsync: nothing is fsynced.
                                durability="none" if config.unsafe_no_fsync else "checkpoint")
        members = config.initial_cluster_map()
        if state.is_new:
            peer_urls = members.get(config.name) or config.initial_advertise_peer_urls
            self.member_id = member_id_for(peer_urls, config.initial_cluster_token)
            ids = [member_id_for(urls, config.initial_cluster_token) for urls in members.values()]
            self.cluster_id = cluster_id_for(ids)
            raftlog.write_metadata(self.member_id, self.cluster_id, config.name)
        else:
            self.member_id, self.cluster_id = state.member_id, state.cluster_id
        self.headers = responses.Headers(self.cluster_id, self.member_id)
        snapshot_index = state.snapshot.index if state.snapshot else 0
        self._last_snapshot_index = snapshot_index
        raft_config = RaftConfig(
            id=self.member_id, election_tick=config.election_ticks, heartbeat_tick=1,
            applied=snapshot_index, pre_vote=config.pre_vote, check_quorum=True)
        node = RawNode(raft_config, raftlog.storage)
        if state.is_new:
            node.bootstrap([self.member_id])
        self._raftlog = raftlog
        self._applier = Applier(self.store, on_conf_change=self._apply_conf_change)
        self.raft = RaftNode(node, member_id=self.member_id,
                             tick_s=config.heartbeat_interval_ms / 1000.0,
                             persist=raftlog.persist, apply=self._apply, send=self._send,
                             after_apply=self._after_apply, loop=self.loop)
        self.raft.on_leader_change = self._on_leader_change
        self._node = node
        self.store.hub.start()
        self.raft.leader_wait_s = 2 * config.election_timeout_ms / 1000.0
        self.raft.request_timeout_s = REQUEST_TIMEOUT_S
        self.db_size = self.store.quota_size_bytes
        self.raft.start()
        if len(members) == 1:
            # A one-member cluster need not wait out an election timeout.
            self.raft.campaign_soon()
        log.info("member started", extra={"fields": {
            "name": config.name, "member-id": f"{self.member_id:x}",
            "cluster-id": f"{self.cluster_id:x}", "data-dir": self.data_dir.root,
            "applied-index": self.store.applied_index, "revision": self.store.revision,
            "wal-records": recovery.records}})

    def stop(self) -> None:
        if self.raft is not None:
            self.raft.stop()
        if self.store is not None:
            self.store.hub.close()
            self.store.checkpoint()
            self.store.close()
        if self.wal is not None:
            self.wal.close()
        self._lock.release()

    # -- asyncio side ---------------------------------------------------------

    def propose(self, kind: int, body: bytes, request: Any = None,
                replier: Any = None, token: Any = None) -> asyncio.Future | None:
        """Put a write through Raft: a future of its encoded response (or of
        an EtcdError; "request timed out" after REQUEST_TIMEOUT_S). With a
        ``replier`` (``pykv.server.raftnode.Replier``) the answer goes to it
        instead, from the Raft thread, and None is returned."""
        return self.raft.propose(kind, body, request, replier, token)

    def read_barrier(self) -> asyncio.Future:
        """A future that resolves when a linearizable read may go ahead."""
        return self.raft.read_index()

    def quota_exceeded(self, extra_bytes: int) -> bool:
        """The backend size plus ``extra_bytes`` is past the quota. Checked
        per request against the size the Raft thread last read (at most
        DB_SIZE_REFRESH_S old), without touching LMDB; a "yes" is measured
        again first, because a defragmentation may have shrunk the file
        since, and a stale "yes" would raise the NOSPACE alarm again right
        after an operator disarmed it."""
        quota = self.store.quota_bytes
        if self.db_size + extra_bytes <= quota:
            return False
        self.db_size = self.store.quota_size_bytes
        return self.db_size + extra_bytes > quota

    @property
    def leader_id(self) -> int:
        return self.raft.leader_id if self.raft else 0

    @property
    def raft_term(self) -> int:
        return self.raft.term if self.raft else 0

    # -- Raft thread side -----------------------------------------------------

    def _apply(self, rd: Ready) -> list[tuple[int, object]]:
        headers = self.headers
        headers.raft_term = self.raft.term
        out: list[tuple[int, object]] = []
        results = self._applier.apply(rd.committed_entries, self.raft.decoded)
        encode = responses.encode_result
        for request_id, kind, result in results:
            if isinstance(result, BaseException):
                out.append((request_id, result))
            elif kind == Kind.ALARM:
                out.append((request_id, rpc_pb2.AlarmResponse(
                    header=headers.message(self.store.revision),
                    alarms=[rpc_pb2.AlarmMember(memberID=a.member_id, alarm=a.alarm)
                            for a in result]).SerializeToString()))
            else:
                out.append((request_id, encode(headers, kind, result)))
        return out

    def _apply_conf_change(self, entry: Entry) -> None:
        change: ConfChange = decode_conf_change(entry.data)
        self._node.apply_conf_change(change)

    def _send(self, messages) -> None:
        # A single-member cluster has no peers; the peer transport comes with
        # clustering.
        return None

    def _on_leader_change(self, previous: int, leader: int) -> None:
        lessor = self.store.lessor
        if leader == self.member_id:
            lessor.promote(extend_s=self.config.election_timeout_ms / 1000.0)
        elif previous == self.member_id:
            lessor.demote()

    def _after_apply(self) -> None:
        store = self.store
        now = time.monotonic()
        if now >= self._next_size_check:
            # Measuring costs ~25 us (a stat per table): refresh the size the
            # quota check reads at most every DB_SIZE_REFRESH_S, not per Ready.
            self._next_size_check = now + DB_SIZE_REFRESH_S
            self.db_size = store.quota_size_bytes
        if store.compact_pending:
            store.compact_step()
        if now >= self._next_lease_check:
            self._next_lease_check = now + LEASE_CHECK_INTERVAL_S
            if self.raft.leader_id == self.member_id:
                for lease_id in store.lessor.expired(limit=LEASE_REVOKE_PER_TICK):
                    self.raft.propose_internal(
                        Kind.LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=lease_id))
        applied = self.raft.applied_index
        if applied - self._last_snapshot_index >= self.config.snapshot_count:
            self._snapshot(applied)

    def _snapshot(self, applied: int) -> None:
        started = time.monotonic()
        self.store.checkpoint()
        removed = self._raftlog.mark_snapshot(applied, self._node.status().conf_state,
                                              self.config.snapshot_catchup_entries)
        self._last_snapshot_index = applied
        log.info("saved snapshot", extra={"fields": {
            "snapshot-index": applied, "wal-segments-released": removed,
            "took-ms": round((time.monotonic() - started) * 1000, 1)}})

    def status_voters(self) -> tuple[int, ...]:
        return self._node_status().conf_state.voters

    async def transfer_leader(self, target: int) -> None:
        """Hand leadership to ``target`` and wait until it has it (or time out)."""
        await self.raft.call(lambda node: node.transfer_leader(target))
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while self.raft.leader_id != target:
            if time.monotonic() > deadline:
                raise errors.Timeout("leader transfer")
            await asyncio.sleep(0.05)

    # -- status ---------------------------------------------------------------

    def status(self) -> dict:
        store = self.store
        status = self._node_status()
        return {
            "leader": status.leader, "raft_term": status.term, "raft_index": status.commit,
            "raft_applied_index": self.raft.applied_index, "db_size": store.size_bytes,
            "db_size_in_use": store.size_in_use_bytes,
            "alarms": [a for a in store.alarms()],
        }

    def _node_status(self):
        # RawNode is not thread-safe, but status() only reads plain attributes.
        return self._node.status()

