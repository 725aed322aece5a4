"""``DB``: the embedded API, one object per open data directory."""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import pykv
from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.embedded import txn as txn_module
from pykv.embedded.engine import Engine
from pykv.embedded.interrupts import deferring_sigint
from pykv.embedded.keys import Bytes, as_bytes, key_range
from pykv.embedded.lease import Lease
from pykv.embedded.requests import delete_request, lease_id_of, put_request, range_request
from pykv.embedded.watch import Watch
from pykv.engine import restore
from pykv.engine.requests import Kind
from pykv.mvcc import KeyValue, reads
from pykv.mvcc import types as t


@dataclass(frozen=True)
class Status:
    """What ``DB.status()`` reports (etcd's StatusResponse, and more)."""

    member_id: int
    cluster_id: int
    revision: int            # the store revision: every write that changed something adds one
    compact_revision: int    # reads below it fail with Compacted
    raft_term: int
    raft_index: int          # last entry of the log (one per group-commit batch)
    raft_applied_index: int
    db_size: int             # bytes of the store file in use up to its last page
    db_size_in_use: int      # bytes in pages that hold data
    quota_bytes: int
    alarms: list[t.AlarmMember]
    leases: int
    wal_segments: int
    version: str             # pykv's


class DB:
    """An open pykv data directory; made by ``pykv.open(path, **options)``.

    Safe to use from many threads at once: writes from concurrent threads
    share fdatasyncs (group commit). Reads do not wait for writes, with one
    exception: the first read on a thread after a write was acknowledged
    waits out a write whose fdatasync is running then (at most that
    fdatasync), so that no read ever sees a write that is not durable.
    Keys and values are bytes or str (UTF-8); results carry bytes. Every
    write's result carries the store ``revision`` it produced, as etcd's
    responses do. Errors are ``pykv.errors`` classes with etcd's messages.
    A Ctrl-C (SIGINT) while the main thread writes is handled once that
    write is applied (KeyboardInterrupt is raised then), or at once while
    the write waits behind other threads' (it is applied all the same).

    The caller must ``close()`` it (or use ``with``): close finishes the
    writes in flight, makes the store durable and releases the directory,
    which another process (or ``pykv serve --data-dir``) can then open.
    """

    def __init__(self, engine: Engine):
        self._engine = engine
        self._store = engine.store
        self._options = engine.options
        self._max_request_bytes = engine.options.max_request_bytes
        self._closed = False
        self._close_lock = threading.Lock()
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        # The hot reads, bound once (a closed store raises ClosedError itself).
        self._store_get = engine.store.get
        self._store_get_value = engine.store.get_value
        # The hottest, db.get, is one function the store builds; the method
        # below is its slow path (and its documentation).
        get = engine.store.point_getter(self._get_slow, self)
        get.__name__, get.__qualname__, get.__doc__ = "get", "DB.get", DB.get.__doc__
        get.__annotations__ = dict(DB.get.__annotations__)
        self.get = get  # type: ignore[method-assign]

    @property
    def path(self) -> str:
        """The data directory (absolute)."""
        return self._engine.data_dir.root

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._closed

    # -- keys and values -----------------------------------------------------------------

    def put(self, key: Bytes, value: Bytes, *, lease: object = 0, prev_kv: bool = False
            ) -> t.PutResult:
        """Set ``key`` to ``value``, attached to ``lease`` (an id or a
        ``Lease``; 0: none). Returns ``PutResult(revision, prev_kv)``;
        ``prev_kv`` (the KeyValue it replaced) only when asked for.
        Raises ``LeaseNotFound``, ``ValueTooLarge``, ``NoSpace``."""
        req = put_request(key, value, lease, prev_kv)
        body = req.SerializeToString()
        if len(body) > self._max_request_bytes:
            self._check_size(body)
        self._engine.check_quota(len(body))
        return self._engine.write(Kind.PUT, req, body)

    def get(self, key: Bytes, *, revision: int = 0) -> KeyValue | None:
        """The ``KeyValue`` of ``key`` (``.value``, ``.mod_revision``,
        ``.version``...) at ``revision`` (0: now), or None. Raises
        ``Compacted`` / ``FutureRevision`` for a revision out of reach."""
        if type(key) is bytes and key and not revision and not self._closed:
            return self._store_get(key)  # the fast path: one LMDB lookup
        if self._closed:
            raise self._closed_error()
        key = as_bytes(key)
        if not key:
            raise errors.KeyNotProvided()
        if not revision:
            return self._store_get(key)
        kvs = self._store.range(rpc_pb2.RangeRequest(key=key, revision=revision)).kvs
        return kvs[0] if kvs else None

    _get_slow = get

    def get_value(self, key: Bytes) -> bytes | None:
        """Only the current value of ``key`` (None if it does not exist):
        the cheapest read there is."""
        if type(key) is bytes and key and not self._closed:
            return self._store_get_value(key)
        if self._closed:
            raise self._closed_error()
        key = as_bytes(key)
        if not key:
            raise errors.KeyNotProvided()
        return self._store_get_value(key)

    def range(self, key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
              from_key: bool = False, limit: int = 0, revision: int = 0,
              sort_order: str | int = "none", sort_target: str | int = "key",
              keys_only: bool = False, count_only: bool = False, min_mod_revision: int = 0,
              max_mod_revision: int = 0, min_create_revision: int = 0,
              max_create_revision: int = 0) -> t.RangeResult:
        """Keys in [key, range_end), or with ``prefix``, or from ``key`` on
        (``from_key``); only ``key`` when none is given. An empty key with
        ``prefix`` or ``from_key`` means every key.

        ``limit`` (0: none) cuts the answer and sets ``more``; ``count`` is
        the number of keys in the range all the same. ``revision`` reads the
        past. ``sort_order`` "none"/"ascend"/"descend" by ``sort_target``
        "key"/"version"/"create"/"mod"/"value". ``keys_only`` leaves values
        empty, ``count_only`` leaves ``kvs`` empty. The ``min_``/``max_``
        revisions filter. Returns ``RangeResult(kvs, more, count,
        revision)``; ``kvs.items()`` gives plain (key, value) pairs fast."""
        if self._closed:
            raise self._closed_error()
        return self._store.range(range_request(
            key, range_end, prefix=prefix, from_key=from_key, limit=limit, revision=revision,
            sort_order=sort_order, sort_target=sort_target, keys_only=keys_only,
            count_only=count_only, min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision, min_create_revision=min_create_revision,
            max_create_revision=max_create_revision))

    def delete(self, key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
               from_key: bool = False, prev_kv: bool = False) -> t.DeleteRangeResult:
        """Delete ``key`` (or a range, a prefix, from ``key`` on, as in
        ``range``). Returns ``DeleteRangeResult(revision, deleted,
        prev_kvs)``; deleting nothing takes no revision."""
        req = delete_request(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
        body = req.SerializeToString()
        self._check_size(body)
        return self._engine.write(Kind.DELETE_RANGE, req, body)

    def txn(self) -> txn_module.Txn:
        """Build a transaction: ``db.txn().if_(compares).then(ops).else_(ops)
        .commit()`` -> ``TxnResult(revision, succeeded, responses)``; see
        ``pykv.embedded.txn``. At most ``max_txn_ops`` operations per branch
        (``TooManyOps``); a key may not be written twice (``DuplicateKey``)."""
        return txn_module.Txn(self)

    def _txn(self, req: rpc_pb2.TxnRequest) -> t.TxnResult:
        if self._closed:
            raise self._closed_error()
        if not reads.txn_writes(req):
            # Reads only: answered from a read view, as etcd does, not logged.
            return self._store.txn_read(req)
        body = req.SerializeToString()
        self._check_size(body)
        if reads.txn_puts(req):
            self._engine.check_quota(len(body))
        return self._engine.write(Kind.TXN, req, body)

    def compact(self, revision: int, *, physical: bool = False) -> t.CompactResult:
        """Forget the history before ``revision``: reads below it fail with
        ``Compacted`` from now on. The space is reclaimed in the background;
        ``physical`` waits until it has been. Raises ``Compacted`` (at or
        below the current compact revision) or ``FutureRevision``."""
        req = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
        result = self._engine.write(Kind.COMPACTION, req, req.SerializeToString())
        if physical:
            store = self._store
            while not store.wait_compacted(revision, 0) and store.compact_pending:
                store.compact_step()
        return result

    # -- watches -------------------------------------------------------------------------

    def watch(self, key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
              from_key: bool = False, start_revision: int = 0, prev_kv: bool = False,
              no_put: bool = False, no_delete: bool = False) -> Watch:
        """Watch a key (or a range, a prefix, from ``key`` on) for changes
        from ``start_revision`` (0: from now on; an older one replays
        history first). Returns a ``Watch``: iterate it for ``Event``\\ s
        (``.type`` PUT=0 or DELETE=1, ``.kv``, ``.prev_kv`` when ``prev_kv``),
        ``cancel()`` it or use ``with``. ``no_put`` / ``no_delete`` filter
        events out."""
        if self._closed:
            raise self._closed_error()
        start, end = key_range(key, range_end, prefix, from_key)
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, not {start_revision}")
        filters = [f for f, on in ((t.FILTER_NOPUT, no_put), (t.FILTER_NODELETE, no_delete))
                   if on]
        store = self._store
        store.hub.start()  # catches up watchers that start in the past or fall behind

        def open_watcher(notify):
            return store.watch(start, end, start_revision, prev_kv=prev_kv, filters=filters,
                               notify=notify)

        watch = Watch(open_watcher)
        self._watches.add(watch)
        return watch

    # -- leases ------------------------------------------------------------------------

    def grant(self, ttl: int, *, lease_id: int = 0) -> Lease:
        """Grant a lease of ``ttl`` seconds (raised to ``min_lease_ttl``)
        with ``lease_id`` (0: a new one). Returns a ``Lease``. Raises
        ``LeaseExists``, ``LeaseTTLTooLarge``, ``TTLZero`` (ttl <= 0)."""
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise TypeError(f"ttl must be an int number of seconds, not {type(ttl).__name__}")
        if ttl <= 0:
            raise errors.TTLZero(f"ttl {ttl}")
        if lease_id < 0:
            raise ValueError(f"lease_id must be >= 0, not {lease_id}")
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id)
        self._engine.check_quota(0)
        result = self._engine.write(Kind.LEASE_GRANT, req, req.SerializeToString())
        self._engine.note_lease()
        return Lease(self, result.id, result.ttl, result.revision)

    def revoke(self, lease: object) -> t.LeaseRevokeResult:
        """Revoke a lease (an id or a ``Lease``): its keys are deleted at one
        revision. Raises ``LeaseNotFound``."""
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id_of(lease))
        return self._engine.write(Kind.LEASE_REVOKE, req, req.SerializeToString())

    def keepalive(self, lease: object) -> int:
        """Renew a lease for another TTL; returns the TTL. Raises
        ``LeaseNotFound`` once it has expired or been revoked."""
        if self._closed:
            raise self._closed_error()
        return self._store.lessor.renew(lease_id_of(lease))

    def time_to_live(self, lease: object, *, keys: bool = False) -> t.LeaseTimeToLive:
        """``LeaseTimeToLive(id, ttl, granted_ttl, keys)``: seconds left
        (-1 for a lease that does not exist, as etcd answers)."""
        if self._closed:
            raise self._closed_error()
        return self._store.lessor.time_to_live(lease_id_of(lease), keys=keys)

    def leases(self) -> list[int]:
        """Ids of the leases that exist."""
        if self._closed:
            raise self._closed_error()
        return self._store.lessor.leases()

    # -- maintenance ---------------------------------------------------------------------

    def snapshot(self, path: str | os.PathLike) -> int:
        """Write a snapshot of the whole store (one consistent view) to
        ``path``, atomically, in the shape ``etcdctl snapshot save`` gets
        from ``pykv serve`` (pykv's snapshot stream, padded, with a SHA-256
        trailer): ``pykv snapshot restore`` builds a data directory from it
        and ``pykv snapshot status`` describes it. Returns its size."""
        if self._closed:
            raise self._closed_error()
        return restore.save_snapshot_file(self._store, os.fspath(path))

    def defragment(self) -> tuple[int, int]:
        """Rewrite the store file without its free pages (etcdctl defrag):
        after a compaction or mass delete the file keeps its size, the pages
        being reused only by later writes. Returns the file's size in bytes
        (before, after). Writes wait meanwhile; reads go on, but for a
        moment at the swap."""
        if self._closed:
            raise self._closed_error()
        return self._store.defragment()

    def hash_kv(self, revision: int = 0) -> t.HashKVResult:
        """A hash of the key-value history up to ``revision`` (0: now), equal
        on every copy holding the same history (etcd's HashKV)."""
        if self._closed:
            raise self._closed_error()
        return self._store.hash_kv(revision)

    def alarms(self) -> list[t.AlarmMember]:
        """Active alarms (NOSPACE once the quota was exceeded)."""
        return self._store.alarms()

    def disarm(self) -> list[t.AlarmMember]:
        """Clear every active alarm (etcdctl alarm disarm), e.g. after
        compacting to get under the quota; returns those cleared."""
        cleared = []
        for alarm in self._store.alarms():
            req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.DEACTIVATE,
                                       memberID=alarm.member_id, alarm=alarm.alarm)
            cleared += self._engine.write(Kind.ALARM, req, req.SerializeToString())
        return cleared

    def status(self) -> Status:
        """Revisions, the log's term and index, sizes, alarms: ``Status``."""
        if self._closed:
            raise self._closed_error()
        engine = self._engine
        store = self._store
        committer = engine.committer
        return Status(
            member_id=engine.member_id, cluster_id=engine.cluster_id, revision=store.revision,
            compact_revision=store.compact_revision, raft_term=committer.term,
            raft_index=committer.last_index, raft_applied_index=store.applied_index,
            db_size=store.size_bytes, db_size_in_use=store.size_in_use_bytes,
            quota_bytes=store.quota_bytes, alarms=store.alarms(),
            leases=len(store.lessor.leases()), wal_segments=len(engine.wal.segments()),
            version=pykv.__version__)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the writes in flight, end every watch, make the store
        durable and release the directory. Idempotent; later calls raise
        ``ClosedError``. A Ctrl-C meanwhile (main thread) raises
        KeyboardInterrupt once it is closed."""
        deferring_sigint(self._close)

    def _close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            for watch in list(self._watches):
                watch._end()
            self._engine.close()

    def __enter__(self) -> DB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"revision={self._store.revision}"
        return f"<pykv.DB {self.path} {state}>"

    # -- helpers -----------------------------------------------------------------------

    def _check_size(self, body: bytes) -> None:
        limit = self._options.max_request_bytes
        if len(body) > limit:
            raise errors.ValueTooLarge(f"the request is {len(body)} bytes, over "
                                       f"max_request_bytes ({limit})")

    def _closed_error(self) -> errors.ClosedError:
        return errors.ClosedError(f"the database {self.path} is closed")


def open(path: str | os.PathLike, **options: Any) -> DB:  # noqa: A001 - pykv.open
    """Open (or create) the pykv data directory ``path``; see ``Options``
    for the options. Raises ``LockedError`` when another process (or
    another ``DB`` in this one) has it open, ``CorruptionError`` when its
    files cannot be trusted."""
    from pykv.embedded.options import Options

    return DB(Engine.open(os.fspath(path), Options.from_kwargs(options)))
