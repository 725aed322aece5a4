"""The write path with group commit: many threads, few fdatasyncs.

Writers queue requests; nobody waits for a thread of the engine's own. The
first writer to find nobody leading becomes the *leader*: it takes
everything queued as ONE batch, which becomes ONE Raft entry
(``pykv.engine.requests`` encoding, the server's), appended to the WAL and
made durable with one ``sync`` (in C, without the GIL: the others go on
queueing meanwhile), applied to the store in ONE LMDB transaction (not
fsynced: the store's checkpoints make it durable, and the WAL covers it
until then; with ``commit_interval_s``, the default, a transaction nested
in one that the store commits every few milliseconds, see
``pykv.mvcc.deferred``). It then wakes the writers whose requests it carried and hands
the log to the oldest queued writer, which leads the next batch (never to
the main thread, whose signal handlers may wait for the others: see
``_hand_log``; then it leads the next batch itself).

**The apply runs during the fdatasync** (*pipelined*, whenever the store
is in checkpoint mode, i.e. ``sync=True``). The leader appends its batch
and writes it to the segment file (``WAL.append_write``; a killed process
keeps it then, as it keeps LMDB's commits, so the store is never ahead of
its log after a process crash), asks the WAL's syncer thread (C,
``WAL.sync_start``) for the fdatasync, and applies and commits the batch
meanwhile as a *held* store batch
(``Store.write(index, held=True)``): in LMDB, but seen by no reader, no
watcher and no checkpoint. Once the sync is done (``WAL.sync_wait``), the
leader publishes the batch and wakes its writers. A put thus costs its
fdatasync plus the encoding and publishing around it, not plus the apply;
and the store still never shows a write the WAL may lose (etcd #14370): a
reader that must begin a view meanwhile waits for the publication. If the
fdatasync fails, the held batch is discarded: the store refuses reads and
writes, and its next open rolls back to its checkpoint and replays the WAL.
Unsynced writes (``sync=False``) have no fdatasync to hide behind: the
leader applies them after its (skipped) sync.

The hand-offs with the syncer spin rather than sleep where it pays: on
this VM waking a sleeping thread costs the waker 20-70 us, as much as the
apply it hides. The syncer spins for its next request (a lone writer's
comes within tens of us), but only an eighth as long once its recent waits
average more than its cap (many writers: their Python between batches
is the wait, and a spinning core is one they would have used; it spun 18 %
of all CPU time under 16 writers when it always spun). The leader spins
for the sync's end only for a batch of one request (a lone writer, whose
latency it is). An earlier version handed the apply to a Python applier
thread instead: as fast for one writer, slower for 16 (GIL hand-offs
between leader and applier).

Waiters sleep on a ``threading.Lock`` each, and are woken **in a chain**:
the leader wakes the first writer of the batch, and each woken writer the
next (``Request.then``). Woken all at once, they queued for the GIL
together, and each time the leader let the GIL go (every LMDB call) one of
them was woken to try for it. The main thread's writer is woken directly,
never asked to pass the wake-up on: Python runs signal handlers there, and
one that waits for the other writers (a stop flag, then ``join``) or
raises KeyboardInterrupt at the wrong moment must not leave them asleep.
Waking them from C with the GIL released was measured too (a pthread
condition per thread, one C call per batch): no faster when the disk is
the limit, and half as fast when it is not, because writers woken while
the leader still runs Python come back one by one and the batches shrink
to one or two requests.

Raft: the member leads its own one-voter log (``recovery.py`` won it the
term), so an entry is committed once durable; each batch is appended as
``Entry(term, index, NORMAL, data)`` exactly as ``RawNode`` would have
produced it.

**Ctrl-C in a main-thread write waits for the write**
(``pykv.embedded.interrupts``): a leader cut short between two steps
leaves a batch half done. Except while the main thread sleeps waiting for
another writer's batch: an interrupt is safe there (the request stays
queued and is done; see ``_wait_main``), and a write that hangs must not
make the program deaf to Ctrl-C.

A failure of the WAL or of the store is fatal (as an fsync failure must be,
RELIABILITY.md 4.6): every request not yet applied fails with it and so
does every later write; reopening recovers from what is on disk.
"""

from __future__ import annotations

import threading
import time
from _thread import allocate_lock, get_ident
from typing import Any, Callable

from pykv import errors
from pykv.engine.apply import HANDLERS
from pykv.embedded.interrupts import (MAIN_THREAD, SIGINT_DEFERRAL, SigintInWait,
                                      deferring_sigint)
from pykv.engine.requests import RequestIds, encode
from pykv.mvcc import DURABILITY_CHECKPOINT, Store
from pykv.raft.types import Entry, EntryType, encode_entry
from pykv.wal import WAL, RecordType

#: How long a lone writer's leader spins (GIL released) for its fdatasync to
#: end before it sleeps: CPU on a spare core, for a wake-up saved on the
#: write's critical path.
SYNC_SPIN_NS = 300_000
_ENTRY = int(RecordType.ENTRY)
_NORMAL = int(EntryType.NORMAL)


class Request:
    """One request on its way through the log: its result (or the EtcdError
    that was its result) is set once the batch holding it is applied."""

    __slots__ = ("kind", "request_id", "body", "req", "result", "waiter", "promoted", "then",
                 "main_thread", "done")

    def __init__(self, kind: int, body: bytes, req: Any):
        self.kind = kind
        self.request_id = 0
        self.body = body
        self.req = req
        self.result: Any = None
        self.waiter: Any = None     # a held lock its thread sleeps on, released to wake it
        self.promoted = 0           # 1: woken to take the log over
        self.then: Any = None       # applied: the next writer's waiter, for this one to wake
        self.main_thread = False    # its writer is the main thread (woken directly)
        self.done = False           # applied and published, or failed (set under the lock)

    def outcome(self) -> Any:
        """The result, or raise the error that was the result."""
        result = self.result
        if isinstance(result, BaseException):
            raise result
        return result


class Committer:
    """Group commit over ``wal`` and ``store`` for the member that leads a
    one-voter log at ``term`` whose last entry is ``last_index``.
    A store in checkpoint mode is *pipelined*: batches are applied while
    the WAL's syncer thread runs their fdatasync (see the module docstring)."""

    def __init__(self, wal: WAL, store: Store, *, member_id: int, term: int, last_index: int):
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
        pipelined = store.durability == DURABILITY_CHECKPOINT
        # Pipelined, the store commits the batch (held) while the WAL syncs
        # it: the batch must be in the segment file by then, or a killed
        # process would leave the store ahead of its log.
        self._append = wal.append_write if pipelined else wal.append
        self._finish = self._sync_and_publish if pipelined else self._sync_and_apply

    # -- the writer's side ---------------------------------------------------------

    def commit(self, requests: list[Request]) -> None:
        """Make ``requests`` durable and applied, in order; each gets its
        result. Returns when all are done; raises ``ClosedError`` after
        ``close()`` and the fatal error after a failure (nothing is done).
        From the main thread, a Ctrl-C meanwhile raises KeyboardInterrupt
        once they are done."""
        if get_ident() != MAIN_THREAD:
            self._commit(requests, False)
        else:
            deferring_sigint(self._commit, requests, True)

    def _commit(self, requests: list[Request], main_thread: bool) -> None:
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
                last.main_thread = main_thread
        if lead:
            self._lead()
        elif main_thread:
            self._wait_main(last, waiter)
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
            # Inside the try: an interrupt raised as acquire() returns must
            # not leave the rest of the chain asleep.
            then = last.then
            if then is not None:
                last.then = None
                then.release()
        except BaseException:  # an asynchronous exception: the requests stay queued, and are done
            self._give_up_wait(last)
            self._lead_if_handed(last)
            raise
        self._lead_if_handed(last)

    def _wait_main(self, last: Request, waiter: Any) -> None:
        """``_wait`` for the main thread: never handed the log
        (``_hand_log``) nor a chain to pass on (woken directly), and its
        sleep a Ctrl-C interrupts even with SIGINT deferred: a program must
        get out of a write that hangs. The deferral raises ``SigintInWait``
        out of the sleep; the wait is given up first (the requests stay
        queued, and are done), so that the real handler runs owing the log
        nothing: it may write itself. If it returns, the wait resumes."""
        deferral = SIGINT_DEFERRAL
        while True:
            try:
                deferral.waiting = True
                waiter.acquire()
                deferral.waiting = False
                return
            except SigintInWait as interrupt:
                deferral.waiting = False
                self._give_up_wait(last)
                deferral.call_handler(interrupt.frame)  # raises, usually
                with self._lock:
                    if last.done:
                        return
                    last.waiter = waiter = allocate_lock()
                    waiter.acquire()
            except BaseException:  # another signal's handler raised
                deferral.waiting = False
                self._give_up_wait(last)
                raise

    def _lead_if_handed(self, last: Request) -> None:
        """(Woken.) Lead if this thread was handed the log."""
        if last.promoted:
            last.promoted = 0
            self._lead()

    def _give_up_wait(self, last: Request) -> None:
        """(A wait interrupted.) Never hand this thread the log from now on,
        and wake the next writer of the chain if ``last`` was applied
        meanwhile. Retried through further interrupts (Ctrl-C twice, or an
        asynchronous exception in a worker thread): dropping the chain here
        would leave the rest of a batch asleep for good."""
        then = None
        while True:
            try:
                with self._lock:
                    last.waiter = None
                    if last.then is not None:
                        then, last.then = last.then, None
                break
            except BaseException:  # noqa: S112 - the caller re-raises the first one
                continue
        if then is not None:
            then.release()

    # -- the leader -----------------------------------------------------------------------

    def _lead(self) -> None:
        """Lead batches until the log is handed on or laid down."""
        while True:
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
                position = self._append([(_ENTRY, index, encode_entry(entry))])
                self.last_index = index
            except BaseException as exc:
                self._fail(exc, batch)
                return
            if not self._finish(index, batch, position):
                return

    def _sync_and_apply(self, index: int, batch: list[Request], position: Any) -> bool:
        """Sync, apply, publish ``batch``; True: lead again (``_hand_off``)."""
        try:
            self._wal.sync(position)
            with self._store.write(index) as w:
                self._apply(w, batch)
        except BaseException as exc:
            self._fail(exc, batch)
            return False
        self._applied(index, batch)
        return self._hand_off()

    def _sync_and_publish(self, index: int, batch: list[Request], position: Any) -> bool:
        wal = self._wal
        wal.sync_start(position)
        held: Any = None
        failure: BaseException | None = None
        try:
            held = self._store.write(index, held=True)
            with held:
                self._apply(held, batch)
        except BaseException as exc:
            failure, held = exc, None  # aborted, or never begun
        try:
            wal.sync_wait(position, SYNC_SPIN_NS if len(batch) == 1 else 0)
        except BaseException as exc:
            if held is not None:
                held.discard(exc)
            self._fail(exc, batch)
            return False
        if failure is not None:
            self._fail(failure, batch)
            return False
        try:
            held.publish()
        except BaseException as exc:
            self._fail(exc, batch)
            return False
        self._applied(index, batch)
        return self._hand_off()

    def _applied(self, index: int, batch: list[Request]) -> None:
        """``batch`` (entry ``index``) is applied and seen: wake its writers."""
        self.applied_index = index
        self.batches += 1
        self.requests += len(batch)
        first = direct = None
        with self._lock:  # against a writer giving up its wait (see _wait)
            for request in reversed(batch):
                request.done = True
                waiter = request.waiter
                if waiter is None:
                    continue
                if request.main_thread:
                    direct = waiter
                else:
                    request.then, first = first, waiter
        if direct is not None:
            direct.release()
        if first is not None:
            first.release()
        if self.on_applied is not None:
            self.on_applied(index)

    def _hand_off(self) -> bool:
        """Hand the log to the oldest queued writer, or lay it down. True:
        lead again, the queue holds only requests whose writers gave up
        their wait (interrupted; they are done now, not at the next write)
        or the main thread's (see ``_hand_log``)."""
        with self._lock:
            handed = self._hand_log()
            if handed is None:
                if self._queue:
                    return True
                self._leading = False
                self._notify_idle()
        if handed is not None:
            handed.release()
        return False

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
        """(Lock held) The oldest queued writer still waiting leads next,
        but never the main thread: Python runs signal handlers there as its
        wait returns, and one that waits for the other writers (a stop flag,
        then join) would wait on a log only it could move on (its requests
        are led by the writer that would have handed it the log). Returns
        the waiter to release (outside the lock), or None."""
        for request in self._queue:
            if request.waiter is not None and not request.main_thread:
                request.promoted = 1
                waiter, request.waiter = request.waiter, None
                return waiter
        return None

    def _fail(self, exc: BaseException, requests: list[Request]) -> None:
        """Fatal (on the leader's thread): fail ``requests``, the batch it
        took, and everything queued; lay the log down; refuse what comes."""
        if not isinstance(exc, errors.PykvError):
            exc = errors.StorageError(f"the write path failed: {exc!r}")
        with self._lock:  # against a writer giving up its wait, or resuming it
            if self.failure is None:
                self.failure = exc
            failed = requests + self._queue
            self._queue = []
            self._leading = False
            self._idle.notify_all()
            for request in failed:
                request.result = exc
                request.done = True
            waiters = [request.waiter for request in failed if request.waiter is not None]
        for waiter in waiters:
            waiter.release()

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new writes and wait for those in flight to finish."""
        with self._lock:
            self._closed = True
            while self._leading:
                self._idle.wait()
