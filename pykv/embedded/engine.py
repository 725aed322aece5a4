"""The embedded engine: a data directory opened in this process.

It owns the parts (the directory lock, the WAL, the MVCC store, the group
commit path, whose leader applies each batch while the WAL's syncer
thread runs its fdatasync: ``commit.py``) and one background thread, started only when
there is work for it, that does what a server's Raft loop does between
requests:

- **lease expiry**: the member always leads, so its lessor always runs
  leases down; every ``lease_check_interval_s`` the thread revokes the
  expired ones through the write path (one batch for all of them), so the
  keys vanish at one revision each, as on a server. Expiry is by a
  background clock, not on access: keys vanish even when nobody writes.
- **compaction**: history below a compact revision is removed in bounded
  steps (``Store.compact_step``) between write batches;
- **snapshots**: every ``snapshot_count`` applied entries the store is
  checkpointed (``Store.checkpoint``), a snapshot marker and hard state go
  to the WAL and the WAL segments before it are released (never past what a
  checkpoint covers: after a power loss the store reopens at its last
  checkpoint and the WAL replays from there). ``close()`` does the same, so a reopen
  after a clean close reads almost nothing back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pykv import errors
from pykv.engine import layout
from pykv.engine.quota import nospace_alarm
from pykv.engine.requests import Kind
from pykv.embedded.commit import Committer, Request
from pykv.embedded.options import Options
from pykv.embedded.recovery import recover
from pykv.api.etcdserverpb import rpc_pb2
from pykv.mvcc import Store
from pykv.raft.types import HardState, SnapshotMeta, encode_hard_state, encode_snapshot_meta
from pykv.wal import WAL, RecordType

log = logging.getLogger("pykv.embedded")

#: Expired leases revoked per check (etcd revokes at most 1,000 per second).
LEASE_REVOKE_PER_CHECK = 500
#: A generous bound on how much one write can grow the store file: its
#: bytes several times over (value, history, indexes) plus a few pages.
_GROWTH_PER_WRITE_BYTES = 16 << 10
_GROWTH_PER_BYTE = 4


class Engine:
    """Open with ``Engine.open(path, options)``; see the module docstring.

    ``write(kind, request, body)`` puts a request through the log and returns
    its result (raising the EtcdError that was its result); reads go to
    ``store`` directly, from any thread.
    """

    def __init__(self, data_dir: layout.DataDir, lock: layout.DirectoryLock, wal: WAL,
                 store: Store, options: Options):
        self.data_dir = data_dir
        self.options = options
        self.wal = wal
        self.store = store
        self._lock = lock
        state = recover(wal, store)
        self.member_id = state.member_id
        self.cluster_id = state.cluster_id
        self.conf_state = state.conf_state
        self.committer = Committer(wal, store, member_id=state.member_id, term=state.term,
                                   last_index=state.last_index)
        self.committer.on_applied = self._on_applied
        self._snapshot_index = state.snapshot_index
        self._snapshot_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._leases_seen = False
        # Quota checks measure the store only when the writes since the last
        # measure could have reached the quota (measuring costs two LMDB calls).
        self._quota_room = 0
        self._quota_unmeasured = 0
        store.lessor.promote()  # the only member leads: its leases run down from now
        if store.lessor.leases():
            self.note_lease()
        self._on_applied(store.applied_index)

    @classmethod
    def open(cls, path: str, options: Options) -> Engine:
        data_dir = layout.prepare(path)
        lock = layout.DirectoryLock(data_dir)
        lock.acquire()
        wal: WAL | None = None
        store: Store | None = None
        try:
            wal = WAL.open(data_dir.wal, segment_bytes=options.wal_segment_bytes,
                           unsafe_no_fsync=not options.sync)
            if wal.recovery.bytes_cut:
                recovery = wal.recovery
                log.warning("WAL torn tail cut: segment %s offset %s, %d bytes, %d records "
                            "dropped", recovery.cut_segment, recovery.cut_offset,
                            recovery.bytes_cut, recovery.records_dropped)
            store = Store.open(data_dir.db, quota_bytes=options.quota_bytes,
                               max_txn_ops=options.max_txn_ops,
                               min_lease_ttl=options.min_lease_ttl, clock=options.clock,
                               durability="checkpoint" if options.sync else "none",
                               checkpoint_interval_s=options.checkpoint_interval_s,
                               commit_interval_s=options.commit_interval_s if options.sync
                               else None)
            return cls(data_dir, lock, wal, store, options)
        except BaseException:
            if store is not None:
                store.close()
            if wal is not None:
                wal.close()
            lock.release()
            raise

    # -- writes ------------------------------------------------------------------------

    def write(self, kind: int, req: Any, body: bytes) -> Any:
        """Put one request through the log; its result, or raise its error."""
        request = Request(kind, body, req)
        self.committer.commit([request])
        return request.outcome()

    def write_many(self, items: list[tuple[int, Any]]) -> list[Any]:
        """Several requests in order, usually in one batch; their results
        (an EtcdError in the place of a request that failed)."""
        requests = [Request(kind, req.SerializeToString(), req) for kind, req in items]
        self.committer.commit(requests)
        for request in requests:
            if isinstance(request.result, errors.StorageError):
                raise request.result
        return [request.result for request in requests]

    def check_quota(self, extra_bytes: int) -> None:
        """etcd's quota check before a write that adds data: past the quota,
        raise the NOSPACE alarm (through the log, so it is durable and a
        server opening the directory sees it) and refuse."""
        self._quota_unmeasured += _GROWTH_PER_WRITE_BYTES + _GROWTH_PER_BYTE * extra_bytes
        if self._quota_unmeasured < self._quota_room:
            return
        store = self.store
        size = store.quota_size_bytes
        self._quota_room = store.quota_bytes - size
        self._quota_unmeasured = 0
        if size + extra_bytes <= store.quota_bytes:
            return
        alarm = nospace_alarm(store, self.member_id)
        if alarm is not None:
            try:
                self.write(Kind.ALARM, alarm, alarm.SerializeToString())
            except errors.EtcdError:
                pass  # the write is refused below either way
        raise errors.NoSpace()

    def _on_applied(self, index: int) -> None:
        """After each batch (the leader's thread): wake the background
        thread when a snapshot or a compaction step is due."""
        if index - self._snapshot_index >= self.options.snapshot_count or \
                self.store.compact_pending:
            self._start_thread()
            self._wake.set()

    def note_lease(self) -> None:
        """A lease was granted: from now on the background thread checks
        expiry."""
        if not self._leases_seen:
            self._leases_seen = True
            self._start_thread()
            self._wake.set()

    # -- snapshots ---------------------------------------------------------------------

    def snapshot_log(self) -> int:
        """Make the store durable at its applied index and record that in
        the WAL (snapshot marker, hard state), then release the WAL segments
        wholly before it. Returns the index (0: nothing new since the last)."""
        with self._snapshot_lock:
            store = self.store
            if store.applied_index <= self._snapshot_index:
                return 0
            index = store.checkpoint()  # what the file holds durably now
            term = self.committer.term
            meta = SnapshotMeta(index, term, self.conf_state)
            hard_state = HardState(term, self.member_id, index)
            self.wal.append_sync([
                (RecordType.SNAPSHOT, index, encode_snapshot_meta(meta)),
                (RecordType.STATE, index, encode_hard_state(hard_state)),
            ])
            self._snapshot_index = index
            self.wal.release(index)
            return index

    # -- the background thread -----------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is not None:
            return
        with self._thread_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="pykv-embedded",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        options = self.options
        next_lease_check = 0.0
        while not self._stopping:
            timeout = None
            if self._leases_seen:
                timeout = max(0.0, next_lease_check - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stopping:
                break
            try:
                now = time.monotonic()
                if self._leases_seen and now >= next_lease_check:
                    next_lease_check = now + options.lease_check_interval_s
                    self._revoke_expired()
                while self.store.compact_pending and not self._stopping:
                    self.store.compact_step()
                if self.committer.applied_index - self._snapshot_index >= \
                        options.snapshot_count:
                    self.snapshot_log()
            except errors.ClosedError:
                break
            except errors.PykvError:
                if self.committer.failure is not None or self._stopping:
                    break  # the write path already reports the failure
                log.exception("background maintenance failed")

    def _revoke_expired(self) -> None:
        expired = self.store.lessor.expired(limit=LEASE_REVOKE_PER_CHECK)
        if expired:
            self.write_many([(Kind.LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=lease_id))
                             for lease_id in expired])

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the writes in flight, stop the thread, snapshot, close."""
        self.committer.close()
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        try:
            if self.committer.failure is None and self.store.failure() is None:
                self.snapshot_log()  # (after a failure the log has what the store lacks)
        finally:
            try:
                self.store.close()
            finally:
                try:
                    self.wal.close()
                finally:
                    self._lock.release()
