"""The write path with group commit: many threads, few fdatasyncs.

Writers queue requests; nobody waits for a thread of the engine's own. The
first writer to find nobody leading becomes the *leader*: it takes
everything queued as ONE batch, which becomes ONE Raft entry
(``pykv.engine.requests`` encoding, the server's), appended to the WAL and
made durable with one ``sync`` (in C, without the GIL: the others go on
queueing meanwhile), applied to the store in ONE LMDB transaction (not
fsynced: the store's checkpoints make it durable, and the WAL covers it
until then). It then wakes the writers whose requests it carried and hands
the log to the oldest queued writer, which leads the next batch.

**The apply runs during the fdatasync** (``pipelined``, whenever the store
is in checkpoint mode, i.e. ``sync=True``). The leader posts its batch to
the *applier*, a thread of the engine's, and calls ``sync``; while the disk
works, the applier applies and commits the batch as a *held* store batch
(``Store.write(index, held=True)``): in LMDB, but seen by no reader, no
watcher and no checkpoint. Once the sync has returned and the apply is
done, the leader publishes the batch and wakes its writers. A put thus
costs its fdatasync plus the encoding and publishing around it, not plus
the apply; and the store still never shows a write the WAL may lose (etcd
#14370): a reader that must begin a view meanwhile waits for the
publication. If the fdatasync fails, the held batch is discarded: the store
refuses reads and writes, and its next open rolls back to its checkpoint
and replays the WAL. Unsynced writes (``sync=False``) have no fdatasync to
hide behind: the leader applies them itself.

The hand-offs between leader and applier spin rather than sleep (C,
``pykv_spin_until``, GIL released): on this VM waking a sleeping thread
costs the waker 20-70 us, as much as the apply it would hide. The leader
posts by storing to a word the applier spins on, and its ``sync`` stores
another once the GIL is free, so the applier takes the GIL without a
wake-up. The applier spins up to ``APPLIER_SPIN_NS`` for the next batch
only after a batch of one request (a lone writer, who comes back soon);
with many writers a spinning core would starve their Python, and one
wake-up serves a batch of several.

Waiters sleep on a ``threading.Lock`` each. Waking them from C with the GIL
released was measured too (a pthread condition per thread, one C call per
batch): no faster when the disk is the limit, and half as fast when it is
not, because writers woken while the leader still runs Python come back one
by one and the batches shrink to one or two requests.

Raft: the member leads its own one-voter log (``recovery.py`` won it the
term), so an entry is committed once durable; each batch is appended as
``Entry(term, index, NORMAL, data)`` exactly as ``RawNode`` would have
produced it.

A failure of the WAL or of the store is fatal (as an fsync failure must be,
RELIABILITY.md 4.6): every request not yet applied fails with it and so
does every later write; reopening recovers from what is on disk.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from _thread import allocate_lock
from typing import Any, Callable

from pykv import errors
from pykv._binding import ffi, lib
from pykv.engine.apply import HANDLERS
from pykv.engine.requests import RequestIds, encode
from pykv.mvcc import Store
from pykv.raft.types import Entry, EntryType, encode_entry
from pykv.wal import WAL, RecordType

#: How long the applier spins for its next batch before it sleeps, and a
#: leader for the apply of its batch (CPU spent on a spare core for a wake-up
#: saved on the critical path; a writer that comes back within it costs none).
APPLIER_SPIN_NS = 300_000
_spin_until = lib.pykv_spin_until
_NULL = ffi.NULL
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
        self.waiter: Any = None     # a held lock its thread sleeps on, released to wake it
        self.promoted = 0           # 1: woken to take the log over

    def outcome(self) -> Any:
        """The result, or raise the error that was the result."""
        result = self.result
        if isinstance(result, BaseException):
            raise result
        return result


class _Job:
    """A batch posted to the applier: its held store batch once applied,
    or the error that stopped the apply; ``done`` is released then."""

    __slots__ = ("index", "batch", "held", "error", "done", "seq")

    def __init__(self, index: int, batch: list[Request]):
        self.seq = 0
        self.index = index
        self.batch = batch
        self.held: Any = None
        self.error: BaseException | None = None
        self.done = allocate_lock()
        self.done.acquire()


class Committer:
    """Group commit over ``wal`` and ``store`` for the member that leads a
    one-voter log at ``term`` whose last entry is ``last_index``.
    ``pipelined``: apply on the applier thread during the fdatasync (see
    the module docstring; needs the store's checkpoint mode)."""

    def __init__(self, wal: WAL, store: Store, *, member_id: int, term: int, last_index: int,
                 pipelined: bool = False):
        self._wal = wal
        self._store = store
        self.term = term
        self.last_index = last_index          # last entry appended
        self.applied_index = last_index       # last entry applied and published
        self._ids = RequestIds(member_id, int(time.time() * 1000))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: list[Request] = []       # waiting for the log
        self._leading = False                 # a thread owns the log
        self._closed = False
        self.failure: BaseException | None = None
        self.batches = 0     # batches applied (one Raft entry, one WAL fdatasync each)
        self.requests = 0    # requests applied
        #: Called with the last applied index after each batch (on the
        #: leader's thread, outside every lock here); must be quick.
        self.on_applied: Callable[[int], None] | None = None
        self._pipelined = pipelined
        self._applier: threading.Thread | None = None
        self._words = ffi.new("int64_t[3]")
        self._seq = 0
        self._jobs: deque[_Job] = deque()      # posted, not yet taken by the applier
        self._applier_asleep = False
        self._applier_wake = allocate_lock()
        self._applier_wake.acquire()
        self._stopping = False

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
            self._lead()
        else:
            self._wait(last, waiter)

    def _check_usable(self) -> None:
        if self.failure is not None:
            raise errors.StorageError(f"the database failed and must be reopened: "
                                      f"{self.failure}") from self.failure
        if self._closed:
            raise errors.ClosedError("the database is closed")

    def _wait(self, last: Request, waiter: Any) -> None:
        """Sleep until ``last`` is applied, or take the log over if handed it."""
        try:
            waiter.acquire()
        except BaseException:  # KeyboardInterrupt: the requests stay queued and will be done
            with self._lock:
                last.waiter = None  # so that the log is not handed to this thread from now on
            if last.promoted:
                last.promoted = 0
                self._lead()
            raise
        if last.promoted:
            last.promoted = 0
            self._lead()

    # -- the leader -----------------------------------------------------------------------

    def _lead(self) -> None:
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
        except BaseException as exc:
            self._fail(exc, batch)
            return
        if self._pipelined:
            self._sync_and_publish(index, batch, position)
        else:
            self._sync_and_apply(index, batch, position)

    def _sync_and_apply(self, index: int, batch: list[Request], position: Any) -> None:
        try:
            self._wal.sync(position)
            with self._store.write(index) as w:
                self._apply(w, batch)
        except BaseException as exc:
            self._fail(exc, batch)
            return
        self._applied(index, batch)
        self._hand_off()

    def _sync_and_publish(self, index: int, batch: list[Request], position: Any) -> None:
        job = self._post(index, batch)
        try:
            self._wal.sync(position, self._words + 1, job.seq)
        except BaseException as exc:
            self._wait_applied(job)
            if job.held is not None:
                job.held.discard(exc)
            self._fail(exc, batch)
            return
        self._wait_applied(job)
        if job.error is not None:
            self._fail(job.error, batch)
            return
        try:
            job.held.publish()
        except BaseException as exc:
            self._fail(exc, batch)
            return
        self._applied(index, batch)
        # Handing the log over before publishing (the next fdatasync would
        # start sooner; its apply would wait for this publication) measured
        # worse with 16 writers: 5-8k puts/s against 8-11k, batches of ~5
        # instead of ~9, the applier and two leaders contending for the GIL.
        self._hand_off()

    def _applied(self, index: int, batch: list[Request]) -> None:
        """``batch`` (entry ``index``) is applied and seen: wake its writers."""
        self.applied_index = index
        self.batches += 1
        self.requests += len(batch)
        for request in batch:
            if request.waiter is not None:
                request.waiter.release()
        if self.on_applied is not None:
            self.on_applied(index)

    def _hand_off(self) -> None:
        """Hand the log to the oldest queued writer, or lay it down."""
        with self._lock:
            handed = self._hand_log()
            if handed is None:
                self._leading = False
                self._notify_idle()
        if handed is not None:
            handed.release()

    # -- the applier ----------------------------------------------------------------------
    #
    # Hand-offs spin instead of sleeping: waking a sleeping thread costs the
    # waker 20-70 us on a VM, which would land on every put's critical path.
    # ``_words``: [0] the last job posted, [1] the last job whose leader is in
    # its fdatasync (so the GIL is free), [2] the last job applied.

    def _post(self, index: int, batch: list[Request]) -> _Job:
        if self._applier is None:
            self._applier = threading.Thread(target=self._run_applier, name="pykv-applier",
                                             daemon=True)
            self._applier.start()
        job = _Job(index, batch)
        with self._lock:
            self._seq += 1
            job.seq = self._seq
            self._jobs.append(job)
            self._words[0] = job.seq
            if self._applier_asleep:
                self._applier_asleep = False
                self._applier_wake.release()
        return job

    def _wait_applied(self, job: _Job) -> None:
        if not _spin_until(_NULL, 0, self._words + 2, job.seq, _NULL, 0, APPLIER_SPIN_NS):
            job.done.acquire()

    def _run_applier(self) -> None:
        words, store, jobs, seq = self._words, self._store, self._jobs, 1
        spin = APPLIER_SPIN_NS
        broken: BaseException | None = None  # once an apply failed, no later one may run
        while True:
            # Announce the last job applied (if any) once the GIL is let go.
            if not _spin_until(words + 2 if seq > 1 else _NULL, seq - 1, words, seq,
                               words + 1, seq, spin) and words[0] < seq:
                with self._lock:
                    asleep = words[0] < seq and not self._stopping
                    self._applier_asleep = asleep
                if asleep:
                    self._applier_wake.acquire()
                if words[0] < seq:
                    if self._stopping:
                        return
                    continue
            job = jobs.popleft()
            # Spin for the next job only after a lone writer's batch: with
            # several writers, one wake-up serves a whole batch, and a
            # spinning core is one their Python would have used.
            spin = APPLIER_SPIN_NS if len(job.batch) == 1 else 0
            if broken is not None:
                job.error = broken
            else:
                try:
                    held = store.write(job.index, held=True)
                    with held:
                        self._apply(held, job.batch)
                    job.held = held
                except BaseException as exc:
                    job.error = broken = exc
            job.done.release()  # for a leader that gave up spinning (words[2]: at the top)
            seq += 1

    @staticmethod
    def _apply(w: Any, batch: list[Request]) -> None:
        handlers = HANDLERS
        etcd_error = errors.EtcdError
        for request in batch:
            try:
                request.result = handlers[request.kind](w, request.req)
            except etcd_error as exc:
                request.result = exc

    # -- hand-overs and failure -------------------------------------------------------------

    def _notify_idle(self) -> None:
        """The log was laid down (lock held): only ``close()`` waits for that."""
        if self._closed:
            self._idle.notify_all()

    def _hand_log(self) -> Any:
        """(Lock held) The oldest queued writer still waiting leads next;
        returns its waiter to release (outside the lock), or None."""
        for request in self._queue:
            if request.waiter is not None:
                request.promoted = 1
                waiter, request.waiter = request.waiter, None
                return waiter
        return None

    def _fail(self, exc: BaseException, requests: list[Request]) -> None:
        """Fatal (on the leader's thread): fail ``requests``, the batch it
        took, and everything queued; lay the log down; refuse what comes."""
        if not isinstance(exc, errors.PykvError):
            exc = errors.StorageError(f"the write path failed: {exc!r}")
        with self._lock:
            if self.failure is None:
                self.failure = exc
            failed = requests + self._queue
            self._queue = []
            self._leading = False
            self._idle.notify_all()
        for request in failed:
            request.result = exc
            if request.waiter is not None:
                request.waiter.release()

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new writes, wait for those in flight, stop the applier."""
        with self._lock:
            self._closed = True
            while self._leading:
                self._idle.wait()
        if self._applier is not None:
            with self._lock:
                self._stopping = True
                if self._applier_asleep:
                    self._applier_asleep = False
                    self._applier_wake.release()
            self._applier.join()
            self._applier = None
