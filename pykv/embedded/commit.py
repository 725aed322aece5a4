"""The write path with group commit: many threads, few fdatasyncs.

Writers queue requests; nobody waits for a thread of the engine's own. A
request goes through two stages, each owned by one writer thread at a time:

1. **The log.** The first writer to find nobody leading becomes the
   *leader*: it takes everything queued as ONE batch, which becomes ONE
   Raft entry (``pykv.engine.requests`` encoding, the server's), appended to
   the WAL and made durable with one ``sync`` (in C, without the GIL: the
   others go on queueing meanwhile).
2. **The store.** The durable batch joins the list of batches to apply. The
   thread that finds nobody applying becomes the *applier*: it applies every
   batch on the list in ONE LMDB transaction (not fsynced: the store's
   checkpoints make it durable, and the WAL covers it until then) and wakes
   the writers whose requests it carried.

The stages overlap: once its batch is durable and listed, the leader hands
the log to the oldest queued writer, which syncs the next batch while this
one is applied. Batches join the list in log order (the leader lists its
batch before handing over) and one applier at a time takes the whole list,
so the store applies entries in log order. An applier that finds more
batches listed when it is done hands the store to the writer waiting on the
oldest of them, so no caller is kept applying other threads' work for long.
A lone writer never waits for another thread: it leads and applies its own
batch.

Waiters sleep on a ``threading.Lock`` each. Waking them from C with the GIL
released was measured too (a pthread condition per thread, one C call per
batch): no faster when the disk is the limit, and half as fast when it is
not, because writers woken while the leader still runs Python come back one
by one and the batches shrink to one or two requests.

Raft: the member leads its own one-voter log (``recovery.py`` won it the
term), so an entry is committed once durable; each batch is appended as
``Entry(term, index, NORMAL, data)`` exactly as ``RawNode`` would have
produced it. Entries are applied only after they are durable, so the store
never holds a write the WAL may lose (etcd #14370).

A failure of the WAL or of the store is fatal (as an fsync failure must be,
RELIABILITY.md 4.6): every request not yet applied fails with it and so
does every later write; reopening recovers from what is on disk.
"""

from __future__ import annotations

import threading
import time
from _thread import allocate_lock
from typing import Any, Callable

from pykv import errors
from pykv.engine.apply import HANDLERS
from pykv.engine.requests import RequestIds, encode
from pykv.mvcc import Store
from pykv.raft.types import Entry, EntryType, encode_entry
from pykv.wal import WAL, RecordType

_ENTRY = int(RecordType.ENTRY)
_NORMAL = int(EntryType.NORMAL)
# What a waiting writer is woken for, besides its requests being done.
_LEAD = 1    # take the log (stage 1)
_APPLY = 2   # take the store (stage 2)


class Request:
    """One request on its way through the log: its result (or the EtcdError
    that was its result) is set once the batch holding it is applied."""

    __slots__ = ("kind", "request_id", "body", "req", "result", "waiter", "promoted")

    def __init__(self, kind: int, body: bytes, req: Any):
        self.kind = kind
        self.request_id = 0
        self.body = body
        self.req = req
        self.result: Any = None
        self.waiter: Any = None     # a held lock its thread sleeps on, released to wake it
        self.promoted = 0           # _LEAD or _APPLY: woken to take a stage over

    def outcome(self) -> Any:
        """The result, or raise the error that was the result."""
        result = self.result
        if isinstance(result, BaseException):
            raise result
        return result


#: A durable batch waiting to be applied: (entry index, requests, the last
#: request of the leader that synced it, whose thread waits for it).
Durable = tuple[int, list[Request], Request]


class Committer:
    """Group commit over ``wal`` and ``store`` for the member that leads a
    one-voter log at ``term`` whose last entry is ``last_index``."""

    def __init__(self, wal: WAL, store: Store, *, member_id: int, term: int, last_index: int):
        self._wal = wal
        self._store = store
        self.term = term
        self.last_index = last_index          # last entry appended (leader only)
        self.applied_index = last_index       # last entry applied
        self._ids = RequestIds(member_id, int(time.time() * 1000))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: list[Request] = []       # waiting for the log
        self._leading = False                 # a thread owns the log
        self._durable: list[Durable] = []     # in the log, waiting for the store
        self._applying = False                # a thread owns the store
        self._closed = False
        self.failure: BaseException | None = None
        self.batches = 0     # batches applied (one Raft entry, one WAL fdatasync each)
        self.commits = 0     # store commits (each applied one or more batches)
        self.requests = 0    # requests applied
        #: Called with the last applied index after each store commit (on the
        #: applier's thread, outside every lock here); must be quick.
        self.on_applied: Callable[[int], None] | None = None

    # -- the writer's side ---------------------------------------------------------

    def commit(self, requests: list[Request]) -> None:
        """Make ``requests`` durable and applied, in order; each gets its
        result. Returns when all are done; raises ``ClosedError`` after
        ``close()`` and the fatal error after a failure (nothing is done)."""
        new_id = self._ids.next
        for request in requests:
            request.request_id = new_id()
        last = requests[-1]
        with self._lock:
            self._check_usable()
            self._queue.extend(requests)
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                last.waiter = waiter = allocate_lock()
                waiter.acquire()
        if lead:
            self._lead(last)
        else:
            self._wait(last, waiter)

    def _check_usable(self) -> None:
        if self.failure is not None:
            raise errors.StorageError(f"the database failed and must be reopened: "
                                      f"{self.failure}") from self.failure
        if self._closed:
            raise errors.ClosedError("the database is closed")

    def _wait(self, last: Request, waiter: Any) -> None:
        """Sleep until ``last`` is applied, or take over the stage this
        thread is handed."""
        try:
            waiter.acquire()
        except BaseException:  # KeyboardInterrupt: the requests stay queued and will be done
            with self._lock:
                last.waiter = None  # so that no stage is handed to this thread from now on
            self._take_over(last)
            raise
        self._take_over(last)

    def _take_over(self, last: Request) -> None:
        role, last.promoted = last.promoted, 0
        if role == _LEAD:
            self._lead(last)
        elif role == _APPLY:
            self._apply_all()

    # -- stage 1: the log -----------------------------------------------------------------

    def _lead(self, last: Request) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
            if not batch:  # a failure emptied the queue after we were handed the log
                self._leading = False
                self._notify_idle()
                return
        try:
            index = self.last_index + 1
            entry = Entry(self.term, index, _NORMAL,
                          encode([(r.kind, r.request_id, r.body) for r in batch]))
            position = self._wal.append([(_ENTRY, index, encode_entry(entry))])
            self.last_index = index
            self._wal.sync(position)
        except BaseException as exc:
            self._fail(exc, batch)
            return
        with self._lock:
            failed = self.failure  # nothing may be applied after a failure
            if failed is None:
                self._durable.append((index, batch, last))
                apply_now = not self._applying
                if apply_now:
                    self._applying = True
                else:
                    last.waiter = waiter = allocate_lock()
                    waiter.acquire()
                handed = self._hand(self._queue, _LEAD)
                if handed is None:
                    self._leading = False
                    self._notify_idle()
        if failed is not None:
            self._fail(failed, batch)
            return
        if handed is not None:
            handed.release()
        if apply_now:
            self._apply_all()
        else:
            self._wait(last, waiter)

    # -- stage 2: the store -----------------------------------------------------------------

    def _apply_all(self) -> None:
        while True:
            with self._lock:
                taken, self._durable = self._durable, []
                failed = self.failure
            if failed is not None:  # a batch missing from the store must stop the rest
                self._fail(failed, [r for _, batch, _ in taken for r in batch])
                return
            try:
                self._apply(taken)
            except BaseException as exc:
                self._fail(exc, [r for _, batch, _ in taken for r in batch])
                return
            for _, batch, _ in taken:
                for request in batch:
                    if request.waiter is not None:
                        request.waiter.release()
            if self.on_applied is not None:
                self.on_applied(self.applied_index)
            with self._lock:
                if not self._durable:
                    self._applying = False
                    self._notify_idle()
                    return
                handed = self._hand([owner for _, _, owner in self._durable], _APPLY)
            if handed is not None:
                handed.release()
                return
            # Nobody waits on the batches listed meanwhile: apply them too.

    def _apply(self, taken: list[Durable]) -> None:
        handlers = HANDLERS
        etcd_error = errors.EtcdError
        count = 0
        with self._store.write(taken[-1][0]) as w:
            for _, batch, _ in taken:
                count += len(batch)
                for request in batch:
                    try:
                        request.result = handlers[request.kind](w, request.req)
                    except etcd_error as exc:
                        request.result = exc
        self.applied_index = taken[-1][0]
        self.batches += len(taken)
        self.commits += 1
        self.requests += count

    # -- hand-overs and failure -------------------------------------------------------------

    def _notify_idle(self) -> None:
        """A stage was laid down (lock held): only ``close()`` waits for that."""
        if self._closed:
            self._idle.notify_all()

    @staticmethod
    def _hand(candidates: list[Request], role: int) -> Any:
        """The first waiting request among ``candidates`` gets ``role``;
        returns its waiter to release (outside the lock), or None."""
        for request in candidates:
            if request.waiter is not None:
                request.promoted = role
                waiter, request.waiter = request.waiter, None
                return waiter
        return None

    def _fail(self, exc: BaseException, requests: list[Request]) -> None:
        """Fatal: fail ``requests`` and everything not yet applied; refuse
        what comes."""
        if not isinstance(exc, errors.PykvError):
            exc = errors.StorageError(f"the write path failed: {exc!r}")
        with self._lock:
            if self.failure is None:
                self.failure = exc
            failed = requests + self._queue
            for _, batch, _ in self._durable:
                failed += batch
            self._queue, self._durable = [], []
            self._leading = self._applying = False
            self._idle.notify_all()
        for request in failed:
            request.result = exc
            if request.waiter is not None:
                request.waiter.release()

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new writes and wait for those in flight to finish."""
        with self._lock:
            self._closed = True
            while self._leading or self._applying:
                self._idle.wait()
