"""The MVCC store: one LMDB environment, a write path, cached read views.

Threads. Writes (``write()``, ``compact_step()``) happen on one thread at a
time (a lock enforces it). Reads may come from any thread: each thread
reuses one LMDB read transaction until a write commits, and no idle thread
pins an old snapshot past the next commit (``pykv.mvcc.readers``).

Growing the map, closing and defragmenting need every read transaction of the
process closed: the writer quiesces the readers (``ReadViews.quiesce``),
which wait until it is done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any, BinaryIO, Callable

import lmdb

from pykv import errors
from pykv.mvcc import checkpoint, defrag, index, reads, readers, schema as s, types as t
from pykv.mvcc.deferred import DeferredCommits
from pykv.mvcc.lease import DEFAULT_MIN_TTL, Lessor
from pykv.mvcc.watch import WatchHub
from pykv.mvcc.write import WriteBatch

_ABSENT = object()
DEFAULT_QUOTA_BYTES = 2 << 30        # etcd's --quota-backend-bytes default
DEFAULT_MAX_TXN_OPS = 128            # etcd's --max-txn-ops default
COMPACT_BATCH_CHANGES = 1000         # etcd compacts 1000 revisions per batch
#: A range laid over more keys published since the last commit than this
#: reads a commit instead (copying and sorting them would cost as much).
OVERLAY_MAX_KEYS = 2048
READER_CHECK_COMMITS = 256           # clear dead processes' reader slots this often
_MIN_MAP_BYTES = 64 << 20
_GROW_CHECK_COMMITS = 16             # commits between map-room checks while room is ample
_MAX_READERS = 512

#: Durability modes (``Store.open(durability=...)``); see ``Store.open``.
DURABILITY_CHECKPOINT = "checkpoint"
DURABILITY_COMMIT = "commit"
DURABILITY_NONE = "none"
DURABILITY_MODES = (DURABILITY_CHECKPOINT, DURABILITY_COMMIT, DURABILITY_NONE)
DEFAULT_CHECKPOINT_INTERVAL_S = 0.1  # bbolt's default commit interval in etcd

_log = logging.getLogger(__name__)
_HDR_unpack = s.HDR.unpack_from
_KeyValue = t.KeyValue
_HB = s.HDR_BYTES
_KMAX = s.KV_KEY_MAX


def _open_env(path: str, map_bytes: int, sync: bool, readonly: bool = False
              ) -> lmdb.Environment:
    """LMDB with the store's flags. Read-only: the writer's lock file is used
    (lock=True) so that this process's readers register in it and the writer
    never reuses pages they read; the map size is taken from the file."""
    try:
        return lmdb.open(path, subdir=False, map_size=map_bytes, max_dbs=len(s.TABLES) + 1,
                         max_readers=_MAX_READERS, sync=sync, metasync=False, readahead=False,
                         meminit=False, lock=True, readonly=readonly, create=not readonly)
    except lmdb.Error as exc:
        raise errors.StorageError(f"cannot open the MVCC store {path}"
                                  f"{' read-only' if readonly else ''}: {exc}") from exc


def _durability(durability: str | None, sync: bool | None) -> str:
    """The mode from ``durability`` or its older spelling ``sync``."""
    if sync is not None and not isinstance(sync, bool):
        raise ValueError(f"sync must be True or False, not {sync!r}")
    implied = None if sync is None else DURABILITY_COMMIT if sync else DURABILITY_NONE
    if durability is None:
        return implied or DURABILITY_CHECKPOINT
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, "
                         f"not {durability!r}")
    if implied is not None and implied != durability:
        raise ValueError(f"sync={sync} contradicts durability={durability!r}")
    return durability


def _create(path: str) -> None:
    """Create an empty LMDB file at ``path`` atomically: built and synced
    under another name, then renamed, so that a power loss never leaves a
    half-written file at ``path``."""
    tmp = path + ".new"
    for leftover in (tmp, tmp + defrag.LOCK_SUFFIX):
        defrag.unlink_quietly(leftover)
    try:
        env = lmdb.open(tmp, subdir=False, map_size=_MIN_MAP_BYTES, sync=True, lock=True)
        try:
            env.sync(True)
        finally:
            env.close()
        os.unlink(tmp + defrag.LOCK_SUFFIX)
        os.rename(tmp, path)
    except (OSError, lmdb.Error) as exc:
        defrag.unlink_quietly(tmp)
        defrag.unlink_quietly(tmp + defrag.LOCK_SUFFIX)
        raise errors.StorageError(f"cannot create the MVCC store {path}: {exc}") from exc
    defrag.fsync_dir(os.path.dirname(os.path.abspath(path)))


def _read_meta(txn: lmdb.Transaction, meta: Any, names: tuple[bytes, ...]) -> dict[bytes, int]:
    """The named meta integers; an absent one is 0, but for the compact
    revision, which is ``NEVER_COMPACTED`` until the first compaction."""
    out = {}
    for name in names:
        raw = txn.get(name, db=meta)
        if raw is not None:
            out[name] = s.unpack_i64(raw)
        else:
            out[name] = s.NEVER_COMPACTED if name == s.META_COMPACT else 0
    return out


def _file_id(path: str) -> tuple[int, int]:
    """Identity of the data file: defragmentation replaces it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise errors.StorageError(f"cannot stat the MVCC store {path}: {exc}") from exc
    return st.st_dev, st.st_ino


class Store:
    """A revisioned key-value store with etcd v3 semantics on LMDB.

    Open with ``Store.open(path)``; see the package docstring for the whole
    API. Attributes ``revision``, ``compact_revision`` and ``applied_index``
    describe the committed state.
    """

    def __init__(self, env: lmdb.Environment, path: str, *, quota_bytes: int, max_txn_ops: int,
                 clock: Callable[[], float], min_lease_ttl: int,
                 durability: str = DURABILITY_CHECKPOINT,
                 checkpoint_interval_s: float | None = DEFAULT_CHECKPOINT_INTERVAL_S,
                 commit_interval_s: float | None = None,
                 readonly: bool = False):
        self._env = env
        self.path = path
        self.durability = durability
        self.readonly = readonly
        self._file_id = _file_id(path)
        self.quota_bytes = quota_bytes
        self.max_txn_ops = max_txn_ops
        self.compact_batch_changes = COMPACT_BATCH_CHANGES
        self._closed = False
        self._write_lock = threading.Lock()
        self._writer = 0   # the thread id of a batch's writer while it holds the lock
        self._compacted = threading.Condition()
        self._commits = 0
        self._grow_check_in = 0               # commits until _grow_if_needed measures again
        self._page_bytes = env.stat()["psize"]
        self._checkpointer: checkpoint.Checkpointer | None = None
        self._deferred: DeferredCommits | None = None
        #: (Deferred commits) key -> live record (None: deleted) for every
        #: key published since the last commit; replaced at each commit.
        self._recent: dict[bytes, bytes | None] = {}
        #: The revision of the commit ``_recent`` lies over.
        self._recent_base = 0
        #: Held while ``_recent``, ``_recent_base`` and the revision change
        #: together, and while a range copies them (``_range_overlaid``).
        self._publishing = threading.Lock()
        try:
            if not readonly:
                self._start_durability(checkpoint_interval_s)
            if readonly:
                self._tables = index.Tables(env, None)
            with env.begin(write=not readonly) as txn:
                if not readonly:
                    self._tables = index.Tables(env, txn)
                self._kv_db = self._tables.kv
                meta = self._load_meta(txn)
        except lmdb.NotFoundError as exc:
            env.close()
            raise errors.StorageError(f"MVCC store {path} lacks a table its writer creates "
                                      "(open it for writing first)") from exc
        except BaseException:
            env.close()
            if self._checkpointer is not None:
                self._checkpointer.close_fd()
            raise
        self._views = readers.ReadViews(env, self._tables.meta, self._closed_error,
                                        on_map_resized=self._map_resized if readonly else None,
                                        flush=self._flush_published)
        self._revision = self._recent_base = meta[s.META_REVISION]
        self._compact_revision = meta[s.META_COMPACT]
        self._compact_done = meta[s.META_COMPACT_DONE]
        self._applied_index = meta[s.META_APPLIED_INDEX]
        self._lease_seq = meta[s.META_LEASE_SEQ]
        self.lessor = Lessor(clock, min_lease_ttl, keys_of=self._lease_keys_read)
        with env.begin() as txn:
            self.lessor._load({s.LEASE_ID.unpack(k)[0]: s.LEASE.unpack(v)[0]
                               for k, v in txn.cursor(self._tables.lease)})
            self._alarms = {s.ALARM.unpack(k) for k in
                            txn.cursor(self._tables.alarm).iternext(values=False)}
        self.hub = WatchHub(self)
        if self._checkpointer is not None:
            self._checkpointer.start()
            if commit_interval_s is not None:
                self._deferred = DeferredCommits(self, commit_interval_s)

    def _start_durability(self, checkpoint_interval_s: float | None) -> None:
        """Before the first commit of a writable store: in checkpoint mode,
        record the file's state (whole on disk: closed cleanly, recovered or
        created) and pin it; in the other modes, sync the file and drop any
        record left by a checkpoint-mode run (it would be stale after the
        first commit)."""
        if self.durability == DURABILITY_CHECKPOINT:
            self._applied_index = self._peek_applied_index()
            self._checkpointer = checkpoint.Checkpointer(self, checkpoint_interval_s)
            self._checkpointer.attach()
        else:
            self._sync_env()
            checkpoint.remove_record(self.path)

    def _peek_applied_index(self) -> int:
        """The applied index in the file, read without writing anything
        (opening an existing table commits nothing; a new file has none)."""
        try:
            meta = self._env.open_db(s.TABLE_META, create=False)
        except lmdb.NotFoundError:
            return 0
        with self._env.begin() as txn:
            raw = txn.get(s.META_APPLIED_INDEX, db=meta)
        return 0 if raw is None else s.unpack_i64(raw)

    def _checkpoint_guard(self) -> Any:
        """No checkpoint runs while this is held (take it before the writer
        lock): closing or replacing the environment."""
        if self._checkpointer is None:
            return contextlib.nullcontext()
        return self._checkpointer.exclusive()

    def _sync_env(self) -> None:
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise errors.FatalSyncError(f"fsync of the MVCC store {self.path} failed: {exc}"
                                        ) from exc

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    def open(cls, path: str, *, quota_bytes: int = DEFAULT_QUOTA_BYTES,
             max_txn_ops: int = DEFAULT_MAX_TXN_OPS, clock: Callable[[], float] = time.monotonic,
             min_lease_ttl: int = DEFAULT_MIN_TTL, map_bytes: int | None = None,
             durability: str | None = None,
             checkpoint_interval_s: float | None = DEFAULT_CHECKPOINT_INTERVAL_S,
             commit_interval_s: float | None = None,
             sync: bool | None = None) -> Store:
        """Open or create the store in the LMDB file ``path`` (its directory is
        created if missing; LMDB adds ``path + "-lock"``).

        ``quota_bytes``: the backend size past which ``quota_exceeded()``
        says so (the caller raises the NOSPACE alarm, through Raft on a
        server). ``map_bytes``: the initial LMDB map (default: twice the
        quota, at least the file size); it grows on demand.

        ``durability``, one of three modes (what a power loss can do; a
        process crash loses nothing in any of them, the OS page cache keeps
        every commit):

        - ``"checkpoint"`` (the default): commits are not fsynced
          (MDB_NOSYNC); every ``checkpoint_interval_s`` seconds (and on
          ``checkpoint()``, close, map growth) the file is fdatasynced and
          the state recorded with its meta pages, and LMDB is kept from
          reusing that state's pages until the next checkpoint
          (``pykv.mvcc.checkpoint``). After a power loss the next open rolls
          the store back to the last checkpoint, whole; the caller replays
          its log after ``applied_index``, so it must keep the log entries
          after the index ``checkpoint()`` returned (etcd's bbolt + WAL
          scheme). No fsync on the commit path. ``checkpoint_interval_s``
          None: checkpoints only when asked (and on close, map growth).
        - ``"commit"`` (``sync=True``): each commit fdatasyncs its data pages
          before its meta page is written, and the meta page is synced by the
          next commit (MDB_NOMETASYNC). A power loss undoes at most the last
          batch, which the caller replays. One fdatasync per batch.
        - ``"none"`` (``sync=False``): never fsynced (MDB_NOSYNC, no
          checkpoints); ``checkpoint()`` still syncs. **Unsafe across power
          loss**: data and meta pages reach the disk in any order, so the
          file can be left corrupt. Only for tests, benchmarks and data that
          can be thrown away (etcd's ``--unsafe-no-fsync``).

        ``sync`` is the older spelling of the last two modes.

        ``commit_interval_s`` (checkpoint mode only): keep one LMDB write
        transaction open across write batches and commit it when its oldest
        change is this old, or when a reader, a checkpoint or closing needs
        it (``pykv.mvcc.deferred``). None: one commit per batch.
        """
        durability = _durability(durability, sync)
        if commit_interval_s is not None and commit_interval_s <= 0:
            # (Here, before the store's threads start: refused later, the
            # checkpoint thread was left running over a store never opened.)
            raise ValueError("commit_interval_s must be positive")
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            existing = os.path.getsize(path) if os.path.exists(path) else 0
        except OSError as exc:
            raise errors.StorageError(f"cannot prepare the store directory {directory}: {exc}"
                                      ) from exc
        if map_bytes is None:
            map_bytes = max(2 * quota_bytes, _MIN_MAP_BYTES)
        map_bytes = max(map_bytes, 2 * existing, _MIN_MAP_BYTES)
        defrag.remove_stale_tmp(path)
        if os.path.exists(path):
            checkpoint.recover(path)
        else:
            checkpoint.remove_record(path)  # left beside a file removed by hand
            _create(path)
        env = _open_env(path, map_bytes, durability == DURABILITY_COMMIT)
        return cls(env, path, quota_bytes=quota_bytes, max_txn_ops=max_txn_ops, clock=clock,
                   min_lease_ttl=min_lease_ttl, durability=durability,
                   checkpoint_interval_s=checkpoint_interval_s,
                   commit_interval_s=commit_interval_s)

    @classmethod
    def open_readonly(cls, path: str, *, clock: Callable[[], float] = time.monotonic,
                      min_lease_ttl: int = DEFAULT_MIN_TTL) -> Store:
        """Open, for reads and watches only, the store that another process
        (its writer) owns: gRPC front-end processes beside the core.

        Never writes (``write()`` and the other writing calls raise
        ``StorageError``). Reads see the state as of the last ``refresh()``
        or later; the caller must call ``refresh()`` (or ``hub.advance(R)``)
        whenever the writer says it committed, both to see new data and
        because a read view that is never renewed keeps the writer from
        reusing pages. The lessor is loaded once, at open: lease questions
        belong to the writer. LMDB allows one environment per process: the
        writer's own process must use its writable store instead (this
        raises ``StorageError``)."""
        if not os.path.exists(path):
            raise errors.StorageError(f"no MVCC store at {path} (its writer creates it)")
        with defrag.swap_lock(path, exclusive=False):  # not while the writer swaps files
            checkpoint.require_recovered(path)
            env = _open_env(path, _MIN_MAP_BYTES, sync=False, readonly=True)
            return cls(env, path, quota_bytes=DEFAULT_QUOTA_BYTES,
                       max_txn_ops=DEFAULT_MAX_TXN_OPS, clock=clock,
                       min_lease_ttl=min_lease_ttl, durability=DURABILITY_NONE, readonly=True)

    def refresh(self) -> None:
        """(Read-only store) Pick up what the writer has committed: the
        revision, compact revision, applied index and alarms; make every
        thread's cached read view stale, dropping the idle ones (their next
        read begins a current one); reopen the file if the writer has
        defragmented it. Cheap enough to call on every commit notification.
        A no-op on the writer's own store, which is always current."""
        self._check_open()
        if not self.readonly:
            return
        with self._write_lock:
            self._check_open()
            if _file_id(self.path) != self._file_id:
                self._reopen()
            txn = self._begin_adopting_map_size()
            try:
                meta = self._tables.meta
                number = _read_meta(txn, meta, (s.META_REVISION, s.META_COMPACT,
                                                s.META_COMPACT_DONE, s.META_APPLIED_INDEX))
                alarms = {s.ALARM.unpack(k) for k in
                          txn.cursor(self._tables.alarm).iternext(values=False)}
            finally:
                txn.abort()
            self._revision = number[s.META_REVISION]
            self._compact_revision = number[s.META_COMPACT]
            self._compact_done = number[s.META_COMPACT_DONE]
            self._applied_index = number[s.META_APPLIED_INDEX]
            self._alarms = alarms
            self._views.committed()

    def _reopen(self) -> None:
        """(Read-only, ``_write_lock`` held) The writer replaced the file
        (defragmentation): close ours and open the new one."""
        self._views.quiesce()
        try:
            self._env.close()
            try:
                with defrag.swap_lock(self.path, exclusive=False):
                    self._attach(_open_env(self.path, _MIN_MAP_BYTES, sync=False, readonly=True))
            except BaseException:
                self._closed = self._views.closed = True
                raise
        finally:
            self._views.release()

    def _begin_adopting_map_size(self) -> lmdb.Transaction:
        """A read transaction; if the writer has grown the map past ours,
        adopt its size first (``_write_lock`` held)."""
        try:
            return self._env.begin()
        except lmdb.MapResizedError:
            self._views.quiesce()
            try:
                self._env.set_mapsize(0)  # 0: the size the writer recorded
            finally:
                self._views.release()
            return self._env.begin()

    def _map_resized(self) -> None:
        """A reader thread met MDB_MAP_RESIZED (read-only store, the reader
        not busy): adopt the writer's map size once for everyone."""
        with self._write_lock:
            self._check_open()
            self._begin_adopting_map_size().abort()

    def _clear_dead_readers(self) -> None:
        """Free the LMDB reader slots of dead processes (a killed read-only
        process's slot keeps pinning its snapshot: LMDB reuses no page freed
        after it until the slot is cleared)."""
        try:
            cleared = self._env.reader_check()
        except lmdb.Error as exc:
            _log.warning("clearing stale LMDB reader slots of %s failed: %s", self.path, exc)
            return
        if cleared:
            _log.info("cleared %d LMDB reader slot(s) of dead processes in %s", cleared,
                      self.path)

    def _check_writable(self) -> None:
        if self.readonly:
            raise errors.StorageError(f"the MVCC store {self.path} is open read-only: writes go "
                                      "through the process that owns it")

    def _attach(self, env: lmdb.Environment) -> None:
        """Use ``env`` (reopened after defragmentation) from now on (readers
        quiesced)."""
        self._env = env
        self._grow_check_in = 0
        if self._checkpointer is not None:
            self._checkpointer.attach()  # before the write transaction below
        if self.readonly:
            tables = index.Tables(env, None)
        else:
            with env.begin(write=True) as txn:
                tables = index.Tables(env, txn)
        self._file_id = _file_id(self.path)
        self._tables = tables
        self._kv_db = tables.kv
        self._views.attach(env, tables.meta)

    def _load_meta(self, txn: lmdb.Transaction) -> dict[bytes, int]:
        meta = self._tables.meta
        version = txn.get(s.META_SCHEMA, db=meta)
        if version is None and self.readonly:
            raise errors.StorageError(f"MVCC store {self.path} is not initialized (open it for "
                                      "writing first)")
        if version is None:
            if txn.stat(self._tables.rev)["entries"] or txn.stat(self._tables.kv)["entries"]:
                raise errors.CorruptionError(f"MVCC store {self.path}: data without a schema "
                                             "version", path=self.path)
            txn.put(s.META_SCHEMA, s.pack_i64(s.SCHEMA_VERSION), db=meta)
            txn.put(s.META_REVISION, s.pack_i64(1), db=meta)  # etcd: first write is revision 2
        elif s.unpack_i64(version) != s.SCHEMA_VERSION:
            raise errors.StorageError(
                f"MVCC store {self.path} has schema version {s.unpack_i64(version)}, "
                f"this pykv reads version {s.SCHEMA_VERSION}")
        return _read_meta(txn, meta, (s.META_REVISION, s.META_COMPACT, s.META_COMPACT_DONE,
                                      s.META_APPLIED_INDEX, s.META_LEASE_SEQ))

    def close(self) -> None:
        """Close the store; the caller has stopped writing and reading.
        In checkpoint mode the file is synced and its checkpoint record
        removed (the mark of a clean close); in the other modes unsynced
        commits stay in the OS page cache (``checkpoint()`` first to make
        them durable)."""
        if self._closed:
            return
        self.hub.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._checkpoint_guard(), self._write_lock:
            if self._closed:
                return
            deferred = self._deferred
            if deferred is not None:
                try:
                    deferred.end()
                except errors.PykvError as exc:  # the log holds what the file lacks
                    _log.error("closing the MVCC store %s: %s", self.path, exc)
                    deferred.abort(exc)  # LMDB closes only with no write txn open
                finally:
                    deferred.stop()
            self._closed = self._views.closed = True
            self._views.quiesce()
            try:
                if self._checkpointer is not None and self._checkpointer.failure is None:
                    self._checkpointer.detach()
            finally:
                try:
                    self._env.close()
                finally:
                    if self._checkpointer is not None:
                        self._checkpointer.close_fd()
                    self._views.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> errors.ClosedError:
        return errors.ClosedError(f"the MVCC store {self.path} is closed")

    # --- committed state --------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compact_revision(self) -> int:
        """The revision of the last compaction, 0 if none (reads see the
        same: a store compacted to 0 and one never compacted read alike)."""
        return max(self._compact_revision, 0)

    @property
    def last_compaction(self) -> int:
        """The revision of the last compaction, -1 if there was none (what
        etcd reports in HashKV and its compact-revision metric)."""
        return self._compact_revision

    @property
    def applied_index(self) -> int:
        return self._applied_index

    def failure(self) -> BaseException | None:
        """Why the store takes no more writes (a failed fsync or commit), or
        None; reopening recovers."""
        for part in (self._checkpointer, self._deferred):
            if part is not None and part.failure is not None:
                return part.failure
        return None

    def alarms(self) -> list[t.AlarmMember]:
        return [t.AlarmMember(m, a) for m, a in sorted(self._alarms)]

    # --- writing ------------------------------------------------------------------------------

    def write(self, index_: int, held: bool = False) -> WriteBatch:
        """Begin a write batch recording ``index_`` as the applied index.

        Use as ``with store.write(index) as w: w.put(req) ...``. The caller
        skips entries at or below ``applied_index`` (already applied before a
        restart); ``index_`` must be greater than it. One batch at a time.
        ``held``: the batch commits unseen, see ``WriteBatch.publish``
        (checkpoint mode only: the other modes make a commit durable or
        lose it with the process).
        """
        if held and self._checkpointer is None:
            raise ValueError("held batches need the checkpoint durability mode")
        return self._begin_write(index_, strict=True, held=held)

    def _fail_held(self, cause: BaseException) -> None:
        """A held batch was committed to LMDB and will never be published."""
        failure = errors.FatalSyncError(f"a write the log lost is in the MVCC store "
                                        f"{self.path}: reopen it ({cause})")
        self._views.close_held(failure)  # first: readers stop (an abort waits for them)
        if self._deferred is not None:  # merged into the parent: never commit it
            self._deferred.abort(failure)
        if self._checkpointer is not None:  # no checkpoint may record it, a reopen undoes it
            self._checkpointer.roll_back_on_reopen(failure)

    def _begin_write(self, index_: int, strict: bool, held: bool = False) -> WriteBatch:
        self._check_open()
        self._check_writable()
        failure = self.failure()
        if failure is not None:
            raise errors.FatalSyncError(f"the MVCC store {self.path} takes no more writes: "
                                        f"{failure}")
        if index_ < self._applied_index or (strict and index_ == self._applied_index):
            raise ValueError(f"entry index {index_} is already applied (applied index "
                             f"{self._applied_index}): skip it")
        self._write_lock.acquire()
        try:
            self._check_open()
            self._writer = threading.get_ident()
            deferred = self._deferred
            if deferred is None or deferred.txn is None:
                self._grow_if_needed()  # (no write txn open: the map may grow; measures
                #                          the room a parent begun next may take)
            elif deferred.pending_bytes > deferred.room_bytes:
                deferred.flush()  # commit (measuring the room, growing the map) first
            return WriteBatch(self, index_, held)
        except BaseException:
            self._writer = 0
            self._write_lock.release()
            raise

    def _write_done(self) -> None:
        try:
            if self._deferred is not None:
                self._deferred.lend()
        finally:
            self._writer = 0
            self._write_lock.release()

    def _flushed(self) -> None:
        """(Deferred commits, on their thread) The parent committed: views
        become stale first, then the table of recent writes empties (a point
        get that finds the new, empty table also finds its view stale)."""
        self._views.committed()
        with self._publishing:
            self._recent = {}
            self._recent_base = self._revision  # (the writer lock is held: no batch moves it)
        self._views.unflushed = False

    def _flush_published(self) -> None:
        """(A reader finding the store unflushed, not inside a read.) Commit
        what is published; a failure closes the views, which report it."""
        if self._writer == threading.get_ident():
            # A read from inside a batch's publication (a watch hook): this
            # thread holds the writer lock, and what is published is durable.
            self._flush_locked()
            return
        with self._write_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        deferred = self._deferred
        if self._closed or deferred is None or deferred.failure is not None:
            return
        try:
            deferred.flush_for_reader()
        except errors.PykvError:
            pass

    def _committed(self, batch: WriteBatch, compact_done: int) -> None:
        """Called by the batch after its LMDB commit: move the in-memory state."""
        if batch._parent is not None:  # (deferred commits: see _range_overlaid)
            published = {key: rec for _m, _s, key, rec, _o in batch._changes}
            with self._publishing:
                self._recent.update(published)
                self._revision = batch.revision
        else:  # committed itself: the file holds everything published
            with self._publishing:
                self._revision = self._recent_base = batch.revision
                if self._recent:
                    self._recent = {}
        self._applied_index = batch.index
        self._lease_seq = batch._lease_seq
        compacted = batch._compact != self._compact_revision
        self._compact_revision = batch._compact
        self._alarms = batch._alarms
        if batch._lease_changes:
            self.lessor._apply(batch._lease_changes)
        if batch._parent is not None:
            self._views.unflushed = True  # (see ReadViews: deferred commits)
        else:
            self._views.committed()
        self._commits += 1
        if self._commits % READER_CHECK_COMMITS == 0:
            self._clear_dead_readers()
        try:
            self.hub._publish(batch._changes, batch.revision, self._compact_revision)
        except Exception:  # the batch is committed: a hub bug must not undo that
            _log.exception("publishing the events of revision %d to watchers failed; "
                           "canceling all watchers", batch.revision)
            self.hub.cancel_all()
        if compacted or compact_done != self._compact_done:
            with self._compacted:
                self._compact_done = compact_done
                self._compacted.notify_all()

    def checkpoint(self) -> int:
        """Make every batch committed so far durable, and return the applied
        index that is now durable (at least ``applied_index`` as of the
        call): after a power loss the store reopens at that index or later,
        so the caller may drop its log up to it. Writers wait only for a
        moment (checkpoint mode: the fdatasync runs while they commit).
        Also clears the reader slots of dead processes (a killed front end's
        slot would otherwise keep LMDB from reusing pages)."""
        self._check_open()
        self._check_writable()
        self._clear_dead_readers()
        if self._checkpointer is not None:
            return self._checkpointer.checkpoint()
        applied = self._applied_index
        self._sync_env()
        return applied

    def defragment(self) -> tuple[int, int]:
        """etcd's Defragment: rewrite the LMDB file without its free pages
        and return its size in bytes (before, after).

        A compacting copy goes to ``<path>.tmp`` and is fsynced, the store
        closes the environment, renames the copy over the file, fsyncs the
        directory and reopens. Writers wait for the whole run; readers go on
        during the copy (nothing changes under them) and wait only for the
        swap. A crash at any point leaves a complete file (old or new). If
        the swap itself fails, the store is closed and the error raised."""
        self._check_open()
        self._check_writable()
        with self._checkpoint_guard(), self._write_lock:
            self._check_open()
            if self._deferred is not None:
                self._deferred.end()  # the copy holds everything published; the close needs it
            before = os.path.getsize(self.path)
            tmp = defrag.compact_copy(self._env, self.path)
            map_bytes = self._env.info()["map_size"]
            self._views.quiesce()
            try:
                # Read-only processes open the store only under the shared lock.
                with defrag.swap_lock(self.path, exclusive=True):
                    if self._checkpointer is not None:
                        # The old file must be whole by itself if the swap
                        # does not happen, and the record must not outlive it.
                        self._checkpointer.detach()
                    self._env.close()
                    swap_error = None
                    try:
                        defrag.swap_in(tmp, self.path)
                    except errors.StorageError as exc:
                        swap_error = exc  # reopen whichever complete file is there, then raise
                    try:
                        self._attach(_open_env(self.path, map_bytes,
                                               self.durability == DURABILITY_COMMIT))
                    except BaseException:
                        self._closed = self._views.closed = True
                        raise
            finally:
                self._views.release()
            if swap_error is not None:
                raise swap_error
            after = os.path.getsize(self.path)
        _log.info("defragmented %s: %d -> %d bytes", self.path, before, after)
        return before, after

    # --- compaction --------------------------------------------------------------------------

    @property
    def compact_pending(self) -> bool:
        """Whether history below the compact revision remains to be removed."""
        return self._compact_done < self._compact_revision

    def compact_step(self) -> bool:
        """Remove one bounded chunk of compacted history (writer thread, or
        any thread between batches). Returns whether more remains."""
        self._check_writable()
        if not self.compact_pending:
            return False
        with self._begin_write(self._applied_index, strict=False):
            pass
        return self.compact_pending

    def wait_compacted(self, revision: int, timeout: float | None = None) -> bool:
        """Block until physical compaction has reached ``revision`` (etcd's
        ``physical=true``). Someone must be driving ``compact_step()``."""
        with self._compacted:
            return self._compacted.wait_for(lambda: self._compact_done >= revision, timeout)

    def _compaction_step(self, txn: lmdb.Transaction, target: int) -> int:
        """Delete up to ``compact_batch_changes`` changes' worth of history
        below ``target`` inside ``txn``; returns the new progress mark (every
        change at or below it has been processed).

        For each change c (key k, revision r) with r <= target: every older
        version of k is superseded at or below the target, so it goes (with
        its change-log entry); c itself goes if it is a tombstone. Versions
        still visible at the target are kept."""
        done = self._compact_done
        if done >= target:
            return done
        tables = self._tables
        cur = txn.cursor(tables.rev)
        hist_cur = txn.cursor(tables.hist)
        drop_hist: set[bytes] = set()
        drop_rev: set[bytes] = set()
        processed, last_main = 0, done
        finished = True
        if cur.set_range(s.rev_bytes(done + 1)):
            for rb, key in cur.iternext():
                main, sub = s.REV.unpack(rb)
                if main > target:
                    break
                if processed >= self.compact_batch_changes and main != last_main:
                    finished = False
                    break
                processed += 1
                last_main = main
                group = s.hist_prefix(key)
                if hist_cur.set_range(group):
                    for hk in hist_cur.iternext(values=False):
                        if len(hk) != len(group) + s.REV_BYTES or not hk.startswith(group):
                            break
                        if hk[-s.REV_BYTES:] >= rb:
                            if hk[-s.REV_BYTES:] == rb and \
                                    _HDR_unpack(hist_cur.value())[2] == 0:
                                drop_hist.add(hk)  # c is a tombstone at or below target
                                drop_rev.add(rb)
                            break
                        drop_hist.add(hk)
                        drop_rev.add(hk[-s.REV_BYTES:])
        for hk in drop_hist:
            txn.delete(hk, db=tables.hist)
        for rb in drop_rev:
            txn.delete(rb, db=tables.rev)
        return target if finished else last_main

    # --- reading ----------------------------------------------------------------------------------

    def _grow_if_needed(self) -> None:
        """Grow the map before a batch when little of it is left (a full map
        mid-batch costs a replay). Measured every few commits while there is
        plenty of room: the check itself was a tenth of a small commit."""
        self._grow_check_in -= 1
        if self._grow_check_in > 0:
            return
        info = self._env.info()
        used = (info["last_pgno"] + 1) * self._page_bytes
        headroom = info["map_size"] - used
        want = max(_MIN_MAP_BYTES, info["map_size"] // 8)
        self._grow_check_in = _GROW_CHECK_COMMITS if headroom > 2 * want else 1
        if headroom < want:
            self._grow_map()
            info = self._env.info()
            headroom = info["map_size"] - (info["last_pgno"] + 1) * self._page_bytes
        if self._deferred is not None:  # what a parent may take before it must commit
            self._deferred.room_bytes = headroom // 2
            self._grow_check_in = 0

    def _grow_map(self) -> None:
        """Double the LMDB map (writer lock held, no write txn open)."""
        self._grow_check_in = 0
        self._views.quiesce()
        try:
            size = self._env.info()["map_size"]
            try:
                self._env.set_mapsize(size * 2)
            except lmdb.Error as exc:
                raise errors.StorageError(f"cannot grow the LMDB map of {self.path} to "
                                          f"{size * 2} bytes: {exc}") from exc
            finally:
                if self._checkpointer is not None:
                    # py-lmdb ended every read transaction, the pin included.
                    self._checkpointer.pins_ended()
        finally:
            self._views.release()

    def range(self, req: Any) -> t.RangeResult:
        """A RangeRequest (etcd semantics), from any thread."""
        if self._views.unflushed and not req.revision:
            result = self._range_overlaid(req)
            if result is not None:
                return result
        slot, view = self._views.begin()
        try:
            return reads.execute(view.txn, self._tables, req, view.revision, view.compact)
        finally:
            self._views.end(slot, view)

    def _range_overlaid(self, req: Any) -> t.RangeResult | None:
        """(Deferred commits, something published since the last commit) A
        range at the current revision read from the last commit with what
        was published since laid over it, as point gets read: the other way
        commits first, two thread hand-offs (~100 us; a put then a range of
        10 keys took twice as long as the put). None: read a commit instead
        (too much published to copy, long keys, writers too quick)."""
        for _attempt in range(3):
            with self._publishing:
                recent = self._recent
                if len(recent) > OVERLAY_MAX_KEYS:
                    return None
                recent = dict(recent)  # (empty: what was published changed no key)
                revision, base = self._revision, self._recent_base
            slot, view = self._views.begin(flush=False)
            try:
                # The view must be the commit the copy lies over: not an
                # older one (a commit came and emptied the table), not a
                # newer one (a commit came, and batches that committed
                # themselves). Commits that moved no revision changed no key.
                if view.revision != base:
                    continue
                return reads.execute_overlaid(view.txn, self._tables, req, revision,
                                              view.compact, recent)
            finally:
                self._views.end(slot, view)
        return None

    def txn_read(self, req: Any) -> t.TxnResult:
        """A read-only TxnRequest (only ranges in its branches, at any depth:
        ``pykv.mvcc.reads.txn_writes(req)`` is false), answered from a read
        transaction without the write path, as etcd serves such txns."""
        slot, view = self._views.begin()
        try:
            return reads.readonly_txn(view.txn, self._tables, req, view.revision, view.first_rev,
                                      self.max_txn_ops)
        finally:
            self._views.end(slot, view)

    def range_raw(self, req: Any) -> t.RangeRawResult:
        """Like ``range`` but with the kvs already encoded as protobuf
        (``RangeResponse`` field 2), for the gRPC server."""
        from pykv.mvcc import wire

        slot, view = self._views.begin()
        try:
            pairs, more, count, _plain = reads.select(view.txn, self._tables, req,
                                                      view.revision, view.compact)
            revision = view.revision
        finally:
            self._views.end(slot, view)
        return t.RangeRawResult(wire.encode_kvs(pairs, req.keys_only), len(pairs), more, count,
                                revision)

    def get(self, key: bytes) -> t.KeyValue | None:
        """The live version of ``key``, or None (a point read at the current
        revision; the cheapest read there is)."""
        rec = self._live_record(key)
        if rec is None:
            return None
        # kv_from_pair without its pair and its header unpack (~15 % of a get):
        # only a long key's record holds bytes between header and value.
        return _KeyValue((key, rec[_HB:] if len(key) <= _KMAX else s.record_value(rec), rec))

    def get_value(self, key: bytes) -> bytes | None:
        """Only the value of ``key`` at the current revision, or None."""
        rec = self._live_record(key)
        if rec is None:
            return None
        return rec[_HB:] if len(key) <= _KMAX else s.record_value(rec)

    def point_getter(self, slow: Callable[..., t.KeyValue | None], owner: Any
                     ) -> Callable[..., t.KeyValue | None]:
        """``get(key, *, revision=0)`` as one function, for ``pykv.open``'s
        ``DB.get``: a short bytes key at the current revision is looked up in
        this thread's cached view with ``get`` and ``_live_record`` inlined
        (two call levels, 20 % of a point get). Anything else goes to
        ``slow(key, revision=revision)``: another type of key, a revision, a
        long key, the first read of a thread, a view a commit made stale (the
        slow path renews it), a closed store (its views are stale), and
        everything once ``owner._closed`` is true (the DB is closing).
        Tables are looked up at each call: a defragmentation replaces them."""
        views, no_view, store = self._views, readers.NO_VIEW, self

        def get(key: Any, *, revision: int = 0) -> t.KeyValue | None:
            if revision or type(key) is not bytes or not key or len(key) > _KMAX or \
                    owner._closed:
                return slow(key, revision=revision)
            recent = store._recent  # before the view: see Store._flushed
            try:
                slot = views.local.slot
            except AttributeError:
                return slow(key, revision=revision)
            slot.busy = True
            view = slot.view
            if view.gen != views.gen:
                slot.busy = False
                return slow(key, revision=revision)
            try:
                rec = recent.get(key, _ABSENT) if recent else _ABSENT
                if rec is _ABSENT:
                    rec = view.txn.get(key, None, store._kv_db)
            finally:
                slot.busy = False
                if view.gen != views.gen:
                    slot.view = no_view
            if rec is None:
                return None
            return _KeyValue((key, rec[_HB:], rec))

        return get

    def _live_record(self, key: bytes) -> bytes | None:
        # ReadViews.begin/end inlined: this is the hottest read path.
        views = self._views
        recent = self._recent  # before the view: see Store._flushed
        try:
            slot = views.local.slot
        except AttributeError:
            slot = views.new_slot()
        slot.busy = True
        view = slot.view
        if view.gen != views.gen:
            view = views.renew(slot, flush=False)
        try:
            if recent:  # (deferred commits) published, not yet committed
                rec = recent.get(key, _ABSENT)
                if rec is not _ABSENT:
                    return rec  # type: ignore[return-value]
            # Positional: py-lmdb parses a keyword argument in ~125 ns more (10 % of a get).
            return view.txn.get(key if len(key) <= _KMAX else s.kv_key(key), None, self._kv_db)
        finally:
            slot.busy = False
            if view.gen != views.gen:
                slot.view = readers.NO_VIEW

    def aux_get(self, table: str, key: bytes) -> bytes | None:
        """The committed value of ``key`` in auxiliary table ``table``
        (``schema.AUX_TABLES``), or None."""
        index.check_aux_key(key)
        slot, view = self._views.begin()
        try:
            return view.txn.get(key, db=self._tables.aux_table(table))
        finally:
            self._views.end(slot, view)

    def aux_items(self, table: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """The committed (key, value) pairs of auxiliary table ``table``
        whose keys start with ``prefix``, in key order (one consistent view)."""
        slot, view = self._views.begin()
        try:
            return index.aux_items(view.txn, self._tables.aux_table(table), prefix)
        finally:
            self._views.end(slot, view)

    def _lease_keys(self, txn: lmdb.Transaction, lease_id: int) -> list[bytes]:
        prefix = s.lease_id_bytes(lease_id)
        cur = txn.cursor(self._tables.lease_keys)
        keys = []
        if cur.set_range(prefix):
            for k, full in cur.iternext():
                if not k.startswith(prefix):
                    break
                keys.append(full or k[len(prefix):])
        keys.sort()
        return keys

    def _lease_keys_read(self, lease_id: int) -> list[bytes]:
        slot, view = self._views.begin()
        try:
            return self._lease_keys(view.txn, lease_id)
        finally:
            self._views.end(slot, view)

    # --- size and quota --------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes the LMDB file uses up to its last page (etcd's dbSize). From
        any thread: waits while a defragmentation swaps the file."""
        self._check_open()
        slot, view = self._views.begin(flush=False)
        try:
            return (self._env.info()["last_pgno"] + 1) * self._page_bytes
        finally:
            self._views.end(slot, view)

    @property
    def size_in_use_bytes(self) -> int:
        """Bytes in pages holding data (etcd's dbSizeInUse): free pages
        excluded. From any thread, as ``size_bytes``."""
        self._check_open()
        slot, view = self._views.begin(flush=False)  # the file as committed
        try:
            main = self._env.stat()
            pages = 2 + main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
            for db in self._tables.by_name.values():
                st = view.txn.stat(db)
                pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        finally:
            self._views.end(slot, view)
        return pages * self._page_bytes

    @property
    def quota_size_bytes(self) -> int:
        """The size the quota counts: the pages holding data
        (``size_in_use_bytes``), not the file's high-water mark.

        etcd counts bbolt's file size, which stays close to its data because
        a delete there only adds tombstones. Here a delete or an overwrite
        moves the live record into ``hist``, in one LMDB transaction that
        cannot reuse the pages it frees, so one big delete can grow the file
        by the size of the data it deleted (etcdctl check perf --load=l: a
        2.4 GB file holding ~1 GB, past etcd's default 2 GiB quota, where
        etcd's file was 0.75 GB). The free pages are reused by later writes;
        counting them would refuse writes that etcd accepts."""
        return self.size_in_use_bytes

    def quota_exceeded(self, extra_bytes: int = 0) -> bool:
        """Whether the backend plus ``extra_bytes`` is past the quota: the
        caller then raises the NOSPACE alarm (``w.alarm``), after which puts
        fail with "database space exceeded" while reads and deletes work."""
        return self.quota_size_bytes + extra_bytes > self.quota_bytes

    # --- watch ------------------------------------------------------------------------------------

    def watch(self, key: bytes, range_end: bytes = b"", start_revision: int = 0, **options: Any):
        """A watcher on [key, range_end) from ``start_revision``; see
        ``WatchHub.watch``."""
        return self.hub.watch(key, range_end, start_revision, **options)

    # --- hashing and snapshots --------------------------------------------------------------------

    def hash_kv(self, revision: int = 0) -> t.HashKVResult:
        """A hash of the MVCC state up to ``revision`` (0: current) that is
        equal on every replica holding the same history, whatever the
        physical compaction progress or the LMDB layout."""
        from pykv.mvcc import hashing

        slot, view = self._views.begin()
        try:
            result = hashing.hash_kv(view.txn, self._tables, revision, view.revision,
                                     view.compact)
        finally:
            self._views.end(slot, view)
        result.compact_revision = view.first_rev  # etcd's HashKV says -1 until the first
        return result

    def hash(self) -> t.HashResult:
        """etcd's Maintenance.Hash: CRC-32C over every table (keys and
        values), skipping the applied index and the schema version; equal on
        members that applied the same entries, once their physical compaction
        is done. Reads one consistent view."""
        from pykv.mvcc import hashing

        slot, view = self._views.begin()
        try:
            return t.HashResult(hashing.hash_all(view.txn, self._tables.by_name), view.revision)
        finally:
            self._views.end(slot, view)

    def write_snapshot(self, fileobj: BinaryIO) -> int:
        """Write the whole state (all tables) to ``fileobj`` as a snapshot
        stream; returns the bytes written. Reads one consistent LMDB view."""
        from pykv.mvcc import snapshot

        slot, view = self._views.begin()
        try:
            return snapshot.write(view.txn, self._tables, fileobj)
        finally:
            self._views.end(slot, view)

    @classmethod
    def restore_snapshot(cls, fileobj: BinaryIO, path: str, **open_options: Any) -> Store:
        """Create a store at ``path`` (which must not exist) from a snapshot
        stream and open it. A corrupt stream raises ``CorruptionError`` and
        leaves nothing at ``path``."""
        from pykv.mvcc import snapshot

        snapshot.restore(fileobj, path)
        return cls.open(path, **open_options)
