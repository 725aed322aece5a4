"""Deferred commits: many write batches, one LMDB commit.

Every LMDB commit copies the B-tree paths it touched (kv, hist, rev, meta,
the main table, the free list: 15-17 pages, 60-70 KB for a single put) and
the next checkpoint fdatasyncs all of them. etcd commits bbolt every 100 ms
for the same reason. A store opened with ``commit_interval_s`` keeps one
LMDB write transaction (the *parent*) open and applies each batch in a
nested transaction of it (the batch's own, so that a batch that fails
leaves no trace and a full map mid-batch replays only that batch); the
parent commits when the oldest change in it is ``commit_interval_s`` old,
or sooner when someone needs the file to show everything (below).

**Thread.** LMDB ties a write transaction to the thread that began it (it
locks the environment's writer mutex, which only its owner may unlock),
and the batches come from whichever writer leads. So this module's thread
begins and commits (or aborts) the parent; the batches' nested
transactions run on the writers' threads, one at a time under the store's
writer lock (LMDB keeps no thread-local state for write transactions, and
py-lmdb lets a nested one begin on another thread). A caller that holds the writer lock has the thread run a step for it
(``flush``, ``end``), a round trip of ~50-100 us.

**What a commit may contain.** The parent is committed only by a holder of
the writer lock (the thread takes it, or a holder lends it), and a held
batch (the embedded engine's pipelined path) keeps the lock from its apply
to its publication, which follows its WAL fdatasync: so a commit never
contains a batch whose log entry is not durable, and a checkpoint never
records one.

**Readers.** A batch published but not committed is invisible to LMDB read
transactions. ``ReadViews`` marks the store *unflushed* at each publication,
and a reader that must begin a view while it is unflushed first has the
parent committed (``Store._flush_published``): every read sees every
acknowledged write. Point gets and ranges at the current revision, the
reads that most often follow writes, skip that commit: the store keeps
the live records published since the last commit in a dict (etcd's read
buffer, ``txReadBuffer``, does the same) and lays it over the committed
view (``Store._range_overlaid``; 16 writers beside a thread reading a
range every 20 ms: 12.2k puts/s, 10.7k when each such range committed).
Other reads that follow writes closely (at a past revision, a read-only
txn, the server's ranges) would pay a commit and two thread hand-offs each
(20x slower writes with three threads reading ranges beside one writer),
so a reader's flush also turns deferring off for a while: batches then commit
themselves, on their own thread, as without this module, and the parent
comes back once that time has passed. The while starts at ``DIRECT_S`` and
doubles (up to ``DIRECT_MAX_S``) each time a reader flushes a parent that
lived less than it. Checkpoints, defragmentation, map growth and closing
flush or end the parent first.

**Room.** LMDB cannot grow its map while a write transaction is open, and
a parent that fills the map fails its commit (LMDB then drops it whole).
So each batch adds a generous estimate of the pages it dirtied
(``PAGES_PER_CHANGE_BYTES`` per change, plus its keys and records twice)
to ``pending_bytes``, and a batch that finds it above half the room last
measured (``Store._grow_if_needed``: after every commit here, and before
every batch that commits itself) has the parent committed, and the map
grown if need be, before it begins.

**Failure.** A failed commit (EIO, a full disk) loses the parent's batches
from the file but not from the WAL, which holds every one of them durably:
the store refuses reads, writes and checkpoints from then on (a checkpoint
would let the caller drop log entries the file lacks), and reopening
replays the log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import lmdb

from pykv import errors
from pykv.mvcc.write import _space_hint

if TYPE_CHECKING:
    from pykv.mvcc.store import Store

_log = logging.getLogger(__name__)

#: How long the thread waits for a writer to lend it the lock before it
#: tries to take the lock itself again.
_LEND_WAIT_S = 0.001

#: Bytes a change is assumed to dirty besides its key and records (the
#: B-tree pages on its paths; shared by changes in one parent, in fact).
PAGES_PER_CHANGE_BYTES = 16 << 10
#: ... and a compaction step, per history record it may remove.
PAGES_PER_COMPACTED_BYTES = 1 << 10

#: After a reader had to flush, batches commit one by one for this long
#: (and twice as long each time the parent that follows is flushed sooner).
DIRECT_S = 0.05
DIRECT_MAX_S = 2.0


class DeferredCommits:
    """The parent transaction of one store and the thread that owns it.
    Attributes are read and written with the store's writer lock held,
    except where noted."""

    def __init__(self, store: Store, interval_s: float):
        if interval_s <= 0:
            raise ValueError("commit_interval_s must be positive")
        self._store = store
        self.interval_s = interval_s
        self.txn: lmdb.Transaction | None = None   # the open parent
        self.dirty = False                         # batches merged since it began
        self.pending_bytes = 0     # estimate of the pages the parent dirtied
        self.room_bytes = 0        # what it may dirty (measured at each commit)
        self._dirty_since = 0.0
        self.want_commit = False   # the thread found the lock taken: lend it a flush
        self.failure: BaseException | None = None
        self._direct_until = 0.0   # batches commit themselves until then
        self._direct_s = DIRECT_S
        self._began = 0.0          # when the open parent began
        self.commits = 0
        self._cv = threading.Condition()
        self._job: Callable[[], Any] | None = None
        self._job_done = False
        self._job_error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pykv-mvcc-commit",
                                        daemon=True)
        self._thread.start()

    # --- for holders of the writer lock ----------------------------------------------

    def parent(self) -> lmdb.Transaction | None:
        """The open parent transaction, begun if there is none; None while
        batches commit themselves (after a reader's flush)."""
        txn = self.txn
        if txn is None:
            self.check_usable()
            if time.monotonic() < self._direct_until:
                return None
            self._call(self._begin)
            txn = self.txn
        return txn

    def merged(self, changes: list, compacted: bool) -> None:
        """A batch's nested transaction (which made ``changes``, see
        ``write.Change``; ``compacted``: and ran a compaction step) was
        committed into the parent."""
        estimate = PAGES_PER_CHANGE_BYTES * len(changes)
        if compacted:
            estimate += PAGES_PER_COMPACTED_BYTES * self._store.compact_batch_changes
        for _main, _sub, key, rec, old in changes:
            estimate += 2 * (len(key) + len(rec or b"") + len(old or b""))
        self.pending_bytes += estimate
        if not self.dirty:
            self.dirty = True
            self._dirty_since = time.monotonic()
            with self._cv:
                self._cv.notify()

    def flush(self) -> None:
        """Commit the parent if it holds anything, and begin the next one."""
        if self.dirty:
            self._call(self._commit_and_begin)

    def flush_for_reader(self) -> None:
        """A reader needs everything published in the file: commit it, and
        let batches commit themselves for a while (see the module doc)."""
        now = time.monotonic()
        if now - self._began < self._direct_s:
            self._direct_s = min(2 * self._direct_s, DIRECT_MAX_S)
        else:
            self._direct_s = DIRECT_S
        self._direct_until = now + self._direct_s
        self.end()

    def end(self) -> None:
        """Commit the parent if it holds anything and leave none open (LMDB
        wants no write transaction open to grow the map or to close)."""
        if self.txn is not None:
            self._call(self._commit)

    def lend(self) -> None:
        """(Just before the writer lock is released.) Flush if the thread
        asked for it; a failure is recorded, not raised (the next writer
        meets it)."""
        if self.want_commit:
            self.want_commit = False
            try:
                self.flush()
            except errors.PykvError:
                pass

    def abort(self, failure: BaseException) -> None:
        """Drop the parent (its batches will never be committed) and refuse
        everything from now on."""
        if self.failure is None:
            self.failure = failure
        if self.txn is not None:
            self._call(self._abort)

    def stop(self) -> None:
        """Stop the thread (the parent must be ended already)."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def check_usable(self) -> None:
        """Raise the failure that stopped the store, if one did."""
        if self.failure is not None:
            raise errors.FatalSyncError(f"the MVCC store {self._store.path} takes no more "
                                        f"writes: {self.failure}")

    # --- the steps (on the thread) ---------------------------------------------------

    def _begin(self) -> None:
        self.txn = self._store._env.begin(write=True)
        self._began = time.monotonic()

    def _commit(self) -> None:
        txn, self.txn = self.txn, None
        if txn is None:
            return
        self.pending_bytes = 0
        store = self._store
        # Committed even when empty (it then writes nothing): py-lmdb 3.x
        # makes a write txn's abort wait until no other thread is inside an
        # LMDB call, which busy readers can put off for ever.
        try:
            txn.commit()
        except lmdb.Error as exc:
            self._failed(exc)
            raise self.failure from exc  # type: ignore[misc]
        if not self.dirty:
            return
        self.dirty = False
        self.commits += 1
        store._flushed()
        store._grow_if_needed()  # (sets room_bytes)

    def _commit_and_begin(self) -> None:
        self._commit()
        self._begin()

    def _abort(self) -> None:
        txn, self.txn = self.txn, None
        self.dirty = False
        if txn is not None:
            txn.abort()

    def _failed(self, exc: BaseException) -> None:
        store = self._store
        failure = errors.StorageError(
            f"cannot commit to the MVCC store {store.path}: {exc}{_space_hint(store.path)}; "
            "writes acknowledged since its last commit are in the log only: reopen it")
        if self.failure is None:
            self.failure = failure
        self.dirty = False
        store._views.close_held(self.failure)

    # --- the thread ------------------------------------------------------------------

    def _call(self, step: Callable[[], Any]) -> None:
        """Run ``step`` on the thread and wait for it (writer lock held)."""
        if threading.current_thread() is self._thread:
            step()
            return
        with self._cv:
            if self._stopping:
                raise errors.ClosedError("the MVCC store is closed")
            self._job, self._job_done, self._job_error = step, False, None
            self._cv.notify()
            # Wait for the step even through a KeyboardInterrupt: it runs
            # anyway, and the caller's writer lock must cover it.
            interrupted: BaseException | None = None
            while not self._job_done:
                try:
                    self._cv.wait()
                except BaseException as exc:
                    interrupted = exc
            error = self._job_error
        if interrupted is not None:
            raise interrupted
        if error is not None:
            raise error

    def _run(self) -> None:
        cv = self._cv
        while True:
            with cv:
                while True:
                    job = self._job
                    if job is not None:
                        self._job = None
                        break
                    if self._stopping:
                        return
                    if not self.dirty:
                        cv.wait()
                        continue
                    wait = self._dirty_since + self.interval_s - time.monotonic()
                    if wait <= 0:
                        break
                    cv.wait(wait)
            if job is not None:
                error = None
                try:
                    job()
                except BaseException as exc:
                    error = exc
                with cv:
                    self._job_error, self._job_done = error, True
                    cv.notify_all()
            else:
                self._timed_commit()

    def _timed_commit(self) -> None:
        lock = self._store._write_lock
        if lock.acquire(blocking=False):
            try:
                if self.dirty:
                    self._commit_and_begin()
            except BaseException:
                _log.exception("commit of the MVCC store %s failed", self._store.path)
            finally:
                lock.release()
            return
        # A writer holds the lock: it lends it (``lend``) on its way out.
        self.want_commit = True
        with self._cv:
            if self._job is None and not self._stopping:
                self._cv.wait(_LEND_WAIT_S)
