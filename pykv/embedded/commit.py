"""The write path with group commit: many threads, one fdatasync per batch.

Writers queue requests. The first writer to find nobody leading becomes the
*leader*: it takes everything queued as ONE batch, the batch becomes ONE Raft
entry (``pykv.engine.requests`` encoding, the server's), appended to the WAL
and made durable with one ``sync`` (in C, without the GIL: the others go on
queueing meanwhile). It then applies the batch in ONE LMDB transaction and
wakes the writers whose requests it carried. Nobody else is woken, and a
lone writer never waits for another thread: it leads its own batch.

Two stages overlap. As soon as its batch is durable, the leader takes the
apply lock and hands the lead to the oldest queued writer, which appends and
syncs the next batch while the first is applied: the disk works while
Python applies. Taking the apply lock *before* handing over keeps batches
applied in log order (only the new leader can be waiting for that lock).

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
RELIABILITY.md 4.6): the batch and every queued request fail with it and so
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
        self.waiter: Any = None     # a held lock, released when the request is done
        self.promoted = False       # woken to lead instead

    def outcome(self) -> Any:
        """The result, or raise the error that was the result."""
        result = self.result
        if isinstance(result, BaseException):
            raise result
        return result


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
        self._queue: list[Request] = []
        self._queue_lock = threading.Lock()
        self._idle = threading.Condition(self._queue_lock)
        self._leading = False
        self._apply_lock = threading.Lock()
        self._closed = False
        self.failure: BaseException | None = None
        self.batches = 0     # batches applied (one Raft entry, one fdatasync each)
        self.requests = 0    # requests applied
        #: Called with the index of each batch once it is applied (on the
        #: leader's thread, outside every lock here); must be quick.
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
        with self._queue_lock:
            self._check_usable()
            self._queue.extend(requests)
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                last.waiter = waiter = allocate_lock()
                waiter.acquire()
        if not lead:
            try:
                waiter.acquire()  # until our batch is applied, or we are asked to lead
            except BaseException:
                self._abandon(last)
                raise
            if not last.promoted:
                return
        self._lead()

    def _abandon(self, last: Request) -> None:
        """The waiting caller was interrupted (KeyboardInterrupt): its
        requests stay queued and will be done, but the lead must not be
        handed to a thread that no longer waits for it."""
        with self._queue_lock:
            promoted = last.promoted
            last.waiter = None
        if promoted:
            self._lead()

    def _check_usable(self) -> None:
        if self.failure is not None:
            raise errors.StorageError(f"the database failed and must be reopened: "
                                      f"{self.failure}") from self.failure
        if self._closed:
            raise errors.ClosedError("the database is closed")

    def _lead(self) -> None:
        with self._queue_lock:
            batch = self._queue
            self._queue = []
        try:
            index = self.last_index + 1
            entry = Entry(self.term, index, _NORMAL,
                          encode([(r.kind, r.request_id, r.body) for r in batch]))
            position = self._wal.append([(_ENTRY, index, encode_entry(entry))])
            self.last_index = index
            self._wal.sync(position)
        except BaseException as exc:
            self._fail(exc, batch, holding_apply_lock=False)
            return
        self._apply_lock.acquire()
        self._hand_over()
        try:
            self._apply(index, batch)
        except BaseException as exc:
            self._fail(exc, batch, holding_apply_lock=True)
            return
        self._apply_lock.release()
        for request in batch:
            if request.waiter is not None:
                request.waiter.release()
        if self.on_applied is not None:
            self.on_applied(index)

    def _hand_over(self) -> None:
        """Give the lead to the oldest queued writer, or lay it down."""
        with self._queue_lock:
            for request in self._queue:
                if request.waiter is not None:
                    request.promoted = True
                    waiter, request.waiter = request.waiter, None
                    waiter.release()
                    return
            self._leading = False
            self._idle.notify_all()

    def _apply(self, index: int, batch: list[Request]) -> None:
        handlers = HANDLERS
        etcd_error = errors.EtcdError
        with self._store.write(index) as w:
            for request in batch:
                try:
                    request.result = handlers[request.kind](w, request.req)
                except etcd_error as exc:
                    request.result = exc
        self.applied_index = index
        self.batches += 1
        self.requests += len(batch)

    def _fail(self, exc: BaseException, batch: list[Request], holding_apply_lock: bool) -> None:
        """Fatal: fail this batch and everything queued; refuse what comes."""
        if not isinstance(exc, errors.PykvError):
            exc = errors.StorageError(f"the write path failed: {exc!r}")
        with self._queue_lock:
            if self.failure is None:
                self.failure = exc
            failed = batch + self._queue
            self._queue = []
            self._leading = False
            self._idle.notify_all()
        if holding_apply_lock:
            self._apply_lock.release()
        for request in failed:
            request.result = exc
            if request.waiter is not None:
                request.waiter.release()

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new writes and wait for those in flight to finish."""
        with self._queue_lock:
            self._closed = True
            while self._leading:
                self._idle.wait()
        with self._apply_lock:
            pass  # the last leader has finished applying
