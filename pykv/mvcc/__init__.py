"""pykv.mvcc: a revisioned key-value store with etcd v3 semantics, on LMDB.

Knows nothing of Raft, the WAL or gRPC: the engine applies committed
requests through a write batch, and the server and the embedded API read.

Opening and the committed state::

    store = Store.open(path, quota_bytes=2 << 30, max_txn_ops=128,
                       clock=time.monotonic, min_lease_ttl=2)
    store.revision          # current main revision (1 in a new store)
    store.compact_revision  # reads below it fail with ErrCompacted
    store.applied_index     # last applied Raft entry (etcd's consistent index)

Applying (one writer thread; ONE LMDB transaction per batch, which also
records ``index`` as the applied index; skip entries <= applied_index)::

    with store.write(index) as w:
        w.put(req)            -> PutResult(revision, prev_kv)
        w.delete_range(req)   -> DeleteRangeResult(revision, deleted, prev_kvs)
        w.txn(req)            -> TxnResult(revision, succeeded, responses)
        w.compact(req)        -> CompactResult(revision)
        w.lease_grant(id, ttl) -> LeaseGrantResult(id, ttl, revision)  # id 0: generated
        w.lease_revoke(id)    -> LeaseRevokeResult(revision, deleted)
        w.alarm(action, member_id, alarm) -> [AlarmMember]
        w.range(req)          -> RangeResult (sees the batch's own writes)
        w.aux_put(table, key, value); w.aux_delete(table, key) -> bool
        w.aux_get(table, key); w.aux_items(table, prefix=b"")   # the batch's view
    # each op returns its result or raises an EtcdError and leaves no trace;
    # the commit then publishes the batch's events to the watch hub.

Requests are read by attribute with etcd's protobuf field names: pass
generated ``etcdserverpb`` messages (``pykv.api.etcdserverpb.rpc_pb2``), or
anything with the same attributes (the store's tests use plain stand-ins,
``tests/mvcc/requests.py``). ``requests.check_txn(req, max_ops)`` etc. let a
server refuse bad requests before proposing them.

Reading, from any thread (each thread reuses one LMDB read transaction until
a write commits)::

    store.range(req)       -> RangeResult(kvs, more, count, revision); kvs is a lazy
                              sequence of KeyValue; kvs.items() -> [(key, value)] fast
    store.range_raw(req)   -> RangeRawResult: kvs already protobuf-encoded (C);
                              .response_bytes(header_bytes) is a whole RangeResponse
    store.txn_read(req)    -> TxnResult for a txn with only ranges (reads.txn_writes false)
    store.get(key)         -> KeyValue | None    (current revision, fastest path)
    store.get_value(key)   -> bytes | None
    store.hash_kv(rev)     -> HashKVResult(hash, revision, compact_revision)
    store.aux_get(table, key) -> bytes | None; store.aux_items(table, prefix=b"")
                              auxiliary tables (membership, auth): schema.AUX_TABLES
    store.hash()           -> HashResult(hash, revision): CRC-32C of every table but the
                              applied index (etcd's Maintenance.Hash)

Leases (``store.lessor``; grants and revokes go through the write batch)::

    lessor.renew(id) -> ttl          lessor.time_to_live(id, keys=True)
    lessor.leases() -> [id]          lessor.expired(now) -> [id]  (revoke them via Raft)
    lessor.promote(extend_s) / demote()   only a primary's clock runs leases down

Watches (``store.hub``)::

    w = store.watch(key, range_end, start_revision, prev_kv=..., filters=...,
                    notify=callback, watch_id=...)
    w.take() -> [WatchResponse(watch_id, events, revision, compact_revision, canceled)]
    store.hub.sync()      # catch up watchers that are behind; or hub.start()
    store.hub.progress(w) / progress_revision(watchers)

Durability, space, compaction, snapshots. Three modes (``Store.open``); a
process crash loses no commit in any of them, they differ on power loss::

    Store.open(path)                    # durability="checkpoint" (default): commits are
                                        # not fsynced; every checkpoint_interval_s (0.1 s),
                                        # on checkpoint() and on close the file is synced and
                                        # its state recorded in <path>-checkpoint, its pages
                                        # pinned; after a power loss the store reopens at the
                                        # last checkpoint, whole, and the caller replays its
                                        # log after applied_index (pykv.mvcc.checkpoint)
    Store.open(path, durability="commit")   # or sync=True: one fdatasync per commit; a
                                        # power loss undoes at most the last batch
    Store.open(path, durability="none")     # or sync=False: never synced but by checkpoint();
                                        # unsafe across power loss (--unsafe-no-fsync)
    store.checkpoint() -> int           # durable now: the applied index the store reopens at
                                        # (or after) whatever happens; release log up to it
    store.defragment() -> (bytes_before, bytes_after)   # etcd's Defragment: compacting copy
    store.quota_exceeded(extra) / size_bytes / size_in_use_bytes
    store.compact_step(); store.compact_pending; store.wait_compacted(rev)
    store.write_snapshot(fileobj); Store.restore_snapshot(fileobj, path)
    bulkload.build_store(path, records, leases, revision=..., compact_revision=...,
                         applied_index=...)   # a new store from a live state with given
                                        # revisions (imports); bbolt.BoltFile reads bbolt files
    store.close()

Another process reading the same store (gRPC front ends beside the core)::

    ro = Store.open_readonly(path)      # never writes; not in the writer's own process
    ro.refresh()                        # on each "committed" notice: new revision,
                                        # compact revision, applied index, alarms;
                                        # follows the writer to a defragmented file
    ro.hub.advance(revision) -> int     # deliver that revision's events (and any
                                        # before it not yet delivered) to ro's watchers
    ro.range(req), ro.get(key), ro.watch(...), ro.hash_kv(), ...   # as above

Results are ``__slots__`` classes with etcd's field names (``pykv.mvcc.types``).
``KeyValue`` is the tuple (key, value, header) with etcd's field names as
properties (revisions decoded on access); build one with ``KeyValue.make``.
The LMDB layout is described in ``pykv.mvcc.schema``.
"""

from pykv.mvcc.lease import Lessor
from pykv.mvcc.requests import check_delete, check_put, check_range, check_txn
from pykv.mvcc.store import (
    DURABILITY_CHECKPOINT,
    DURABILITY_COMMIT,
    DURABILITY_MODES,
    DURABILITY_NONE,
    Store,
)
from pykv.mvcc.types import (
    AlarmMember,
    CompactResult,
    DeleteRangeResult,
    Event,
    HashKVResult,
    HashResult,
    KeyValue,
    LeaseGrantResult,
    LeaseRevokeResult,
    LeaseTimeToLive,
    PutResult,
    RangeRawResult,
    RangeResult,
    TxnResult,
)
from pykv.mvcc.watch import WatchHub, Watcher, WatchResponse
from pykv.mvcc.write import WriteBatch

__all__ = [
    "DURABILITY_CHECKPOINT", "DURABILITY_COMMIT", "DURABILITY_MODES", "DURABILITY_NONE",
    "AlarmMember", "CompactResult", "DeleteRangeResult", "Event", "HashKVResult", "HashResult",
    "KeyValue", "LeaseGrantResult", "LeaseRevokeResult", "LeaseTimeToLive", "Lessor",
    "PutResult", "RangeRawResult", "RangeResult", "Store", "TxnResult", "WatchHub",
    "WatchResponse", "Watcher", "WriteBatch", "check_delete", "check_put", "check_range",
    "check_txn",
]
