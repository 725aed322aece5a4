"""Cached read transactions: one per reading thread, never pinning old
snapshots for long.

Each thread that reads keeps one LMDB read transaction (a ``View``) in its
``Slot`` and reuses it until a write commits (``ReadViews.gen`` counts
commits), so a point get costs one LMDB lookup and no ``begin()``.

Why views must be dropped. An LMDB read transaction keeps every page freed
after it began from being reused. A thread that read once and went idle
would pin its snapshot forever, and the file would grow by every page each
later commit copies (~36 KB per one-put batch: 2.2 GB under ``etcdctl check
perf``). So after each commit the writer aborts the stale views of the slots
not in a read right now, and a reader that finishes a read during which a
commit came drops its own view. A view thus outlives the commit after it by
at most the read in progress.

The handshake, without a lock on the read path (Dekker's): a reader sets
``slot.busy`` and then reads ``gen``; the writer bumps ``gen`` and then reads
``slot.busy``. Whichever comes second sees the other's write, so the writer
never aborts a view a reader is using or about to use: a reader only uses a
view whose ``gen`` is current, the writer only aborts views whose ``gen`` is
not and whose reader is idle. Only the slot's own thread writes
``slot.view``; the writer aborts the transaction object and leaves the
reference, and a reader replacing a view just drops its reference (the last
reference aborts the transaction). This relies on the GIL ordering plain
attribute loads and stores (CPython with the GIL).

Holding (a writer that commits before its write is durable, the embedded
engine's pipelined path): between such a commit and its publication the
writer raises ``held``; a reader that must begin a view then waits for the
publication, so no view ever sees a commit that is not yet published.
Views begun before the commit stay current until the publication bumps
``gen``. A reader checks ``held`` before and after ``begin()``: the writer
raises it before committing, so a view begun with ``held`` down both times
predates the commit.

Deferred commits (``pykv.mvcc.deferred``): a batch is published before
its LMDB commit. ``gen`` still counts commits; the publication raises
``unflushed``, and the commit bumps ``gen`` and then lowers it. A view is
current when its ``gen`` is and ``unflushed`` is down; a reader that must
begin one reads ``gen``, then ``unflushed``, and while it is raised has the
store commit first (``flush``): if it reads ``unflushed`` down, the last
commit holds every publication so far and the view it begins sees it.
Point gets need no commit: they take a view of the last commit
(``renew(slot, flush=False)``) and look in the store's table of what was
published since first (``Store._live_record``).

Quiescing (growing the map, closing, defragmenting: LMDB wants no read
transaction open in the process): the writer raises ``resizing``, bumps
``gen``, waits for busy slots to finish their read, aborts every view; new
reads wait in ``renew`` until ``release()``.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Callable

import lmdb

from pykv.mvcc import schema as s

_QUIESCE_POLL_S = 0.0005  # rare path (map growth, close, defrag): a short poll is fine


class View:
    """One read transaction and the committed state it sees. Never mutated
    after it is published in a slot."""

    __slots__ = ("gen", "txn", "revision", "compact", "first_rev")

    def __init__(self, gen: int, txn: lmdb.Transaction | None, revision: int, first_rev: int):
        self.gen = gen
        self.txn = txn
        self.revision = revision
        # etcd's compact revision as stored: NEVER_COMPACTED (-1) before the
        # first compaction (HashKV and txn ranges tell it from 0); reads use
        # ``compact``, which is never below 0.
        self.first_rev = first_rev
        self.compact = max(first_rev, 0)


NO_VIEW = View(-1, None, 0, 0)


class Slot:
    """One thread's cached view. ``busy``: the thread is inside a read.
    ``dropped``: the view the writer last aborted (written by the writer only)."""

    __slots__ = ("view", "busy", "dropped", "__weakref__")

    def __init__(self) -> None:
        self.view = NO_VIEW
        self.busy = False
        self.dropped = NO_VIEW


class ReadViews:
    """The read slots of one store. ``begin()``/``end()`` bracket a read;
    ``committed()``, ``quiesce()``/``release()`` are the writer's side and
    need the store's writer lock."""

    def __init__(self, env: lmdb.Environment, meta_db: object,
                 closed_error: Callable[[], BaseException],
                 on_map_resized: Callable[[], None] | None = None,
                 flush: Callable[[], None] | None = None):
        """``on_map_resized``: called (slot not busy) when another process
        has grown the map past this process's (read-only stores); it must
        adopt the new size, after which the begin is retried. ``flush``
        (deferred commits): commit what is published, called (slot not
        busy) by a reader that finds the store unflushed."""
        self._env = env
        self._on_map_resized = on_map_resized
        self._meta_db = meta_db
        self._closed_error = closed_error
        self.gen = 0
        self.closed = False
        self.resizing = False
        self.held = False
        self.unflushed = False   # published and not yet committed (deferred commits)
        self._flush = flush
        self.failed: BaseException | None = None  # why reads are refused (close_held)
        # Readers wait here while ``resizing`` or ``held`` (and not closed).
        self._gate = threading.Condition()
        self._gate_waiters = 0
        self.local = threading.local()
        # Weak references, so a thread's slot goes with the thread; a tuple
        # replaced on change, so the writer iterates it without a lock (a
        # WeakSet's iteration guard cost more than the rest of committed()).
        self._slot_refs: tuple[weakref.ref[Slot], ...] = ()
        self._slots_lock = threading.Lock()

    def attach(self, env: lmdb.Environment, meta_db: object) -> None:
        """Begin views on ``env`` from now on (readers quiesced)."""
        assert self.resizing
        self._env = env
        self._meta_db = meta_db

    # --- the reader's side ------------------------------------------------------------

    def begin(self, flush: bool = True) -> tuple[Slot, View]:
        """Enter a read on this thread: (slot, a current view). The caller
        must call ``end(slot, view)`` when done (``finally``). ``flush``
        False: a view of the last commit will do (measuring the file)."""
        try:
            slot = self.local.slot
        except AttributeError:
            slot = self.new_slot()
        slot.busy = True
        view = slot.view
        # ``unflushed`` before ``gen``: read down, then ``gen`` unchanged,
        # means no commit and no publication came between the view and now.
        if (flush and self.unflushed) or view.gen != self.gen:
            view = self.renew(slot, flush)
        return slot, view

    def end(self, slot: Slot, view: View) -> None:
        """Leave a read; drop the view if a commit came meanwhile."""
        slot.busy = False
        if view.gen != self.gen:
            slot.view = NO_VIEW

    def new_slot(self) -> Slot:
        slot = Slot()
        with self._slots_lock:
            self._slot_refs = tuple(ref for ref in self._slot_refs if ref() is not None) + (
                weakref.ref(slot),)
        self.local.slot = slot
        return slot

    def renew(self, slot: Slot, flush: bool = True) -> View:
        """Begin a current view in ``slot`` (which is busy). Waits while the
        readers are quiesced or a commit is held; raises the closed error
        once closed. ``flush`` False: a view of the last commit, even if
        batches were published since (deferred commits)."""
        try:
            while True:
                while (self.resizing or self.held) and not self.closed:
                    slot.busy = False
                    self._wait_out()
                    slot.busy = True
                if self.closed:
                    raise self.failed or self._closed_error()
                gen = self.gen  # read before begin(): a commit in between makes the view stale
                if flush and self.unflushed:  # (after gen: see the module docstring)
                    slot.busy = False
                    self._flush()  # type: ignore[misc]
                    slot.busy = True
                    continue
                slot.view = NO_VIEW
                try:
                    txn = self._env.begin()
                except lmdb.MapResizedError:
                    if self._on_map_resized is None:
                        raise
                    slot.busy = False
                    self._on_map_resized()
                    slot.busy = True
                    continue
                if not self.held:
                    break
                txn.abort()  # it may see a commit not yet published
            meta = self._meta_db
            revision = s.unpack_i64(txn.get(s.META_REVISION, db=meta))
            raw = txn.get(s.META_COMPACT, db=meta)
        except BaseException:
            slot.busy = False
            raise
        view = slot.view = View(gen, txn, revision,
                                s.NEVER_COMPACTED if raw is None else s.unpack_i64(raw))
        return view

    def _wait_out(self) -> None:
        with self._gate:
            self._gate_waiters += 1
            try:
                self._gate.wait_for(lambda: not (self.resizing or self.held) or self.closed)
            finally:
                self._gate_waiters -= 1

    def _open_gate(self) -> None:
        """``resizing`` or ``held`` just went down: wake the readers waiting."""
        if self._gate_waiters:
            with self._gate:
                self._gate.notify_all()

    # --- the writer's side ------------------------------------------------------------

    def _all_slots(self) -> list[Slot]:
        slots = [slot for ref in self._slot_refs if (slot := ref()) is not None]
        if len(slots) != len(self._slot_refs):  # threads gone: forget their slots
            with self._slots_lock:
                self._slot_refs = tuple(ref for ref in self._slot_refs if ref() is not None)
        return slots

    def committed(self) -> None:
        """After a commit: make every view stale and abort those of idle
        slots."""
        self.gen = gen = self.gen + 1
        for slot in self._all_slots():
            view = slot.view  # load the view before busy (see the module docstring)
            if view.gen != gen and view.txn is not None and not slot.busy \
                    and view is not slot.dropped:
                slot.dropped = view
                view.txn.abort()

    def hold(self) -> None:
        """Before a commit that must stay unseen until ``unhold()``."""
        self.held = True

    def unhold(self) -> None:
        """The held commit is published (``committed()`` first) or undone."""
        self.held = False
        self._open_gate()

    def close_held(self, failure: BaseException) -> None:
        """The held commit will never be published: refuse reads from now on
        (with ``failure``)."""
        self.failed = failure
        self.closed = True
        self.gen += 1  # cached views too: they may see what the failure lost
        with self._gate:
            self._gate.notify_all()

    def quiesce(self) -> None:
        """Abort every view and keep readers out until ``release()``; waits
        for the reads in progress. Not from inside a read on this thread."""
        self.resizing = True
        self.gen += 1
        for slot in self._all_slots():
            while slot.busy:
                time.sleep(_QUIESCE_POLL_S)
            view = slot.view
            if view.txn is not None:
                slot.dropped = view
                view.txn.abort()

    def release(self) -> None:
        self.resizing = False
        self._open_gate()

    def stale_count(self) -> int:
        """Slots still holding a live transaction older than the last commit
        (for tests and status: 0 unless reads are in progress)."""
        count = 0
        for slot in self._all_slots():
            view = slot.view
            if view.txn is not None and view.gen != self.gen and view is not slot.dropped:
                count += 1
        return count
