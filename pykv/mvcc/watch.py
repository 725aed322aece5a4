"""The watch hub: etcd's watchable store, without ever blocking a writer.

A watcher covers a key or a range and wants every change from its start
revision on. It is in one of two groups:

- **synced**: it has everything up to the last published revision; the
  writer hands it new events right after each commit (``_publish``).
- **unsynced**: it is behind: started from an old revision, or it was a
  *victim* whose buffer was full when the writer came by. ``sync()`` reads
  its missing history from the store in batches of ``sync_batch_revs``
  revisions and moves it back to synced once it has caught up.

Each watcher buffers at most ``buffer_responses`` responses. The writer never
waits: a watcher with a full buffer becomes a victim, keeping the revision it
needs next, and is caught up from history later, so no event is lost, none is
repeated and none comes out of order. A watcher whose next revision has been
compacted away is canceled with ``compact_revision`` (etcd's rule: a start
revision below the compact revision).

Consumers are told through ``notify(watcher)``, called without the hub lock
from whichever thread delivered (the writer or a sync); it must not block
(the server hooks ``loop.call_soon_threadsafe``, the embedded API a
``threading.Condition``). They then ``take()`` the buffered responses.
``sync()`` must run periodically (``start()`` runs it on a thread every
``interval_s`` and whenever a watcher falls behind or drains its buffer).
"""

from __future__ import annotations

import bisect
import collections
import itertools
import logging
import threading
from typing import TYPE_CHECKING, Callable, Iterable

from pykv.mvcc import index, reads, schema, types as t
from pykv.mvcc.requests import range_bounds

if TYPE_CHECKING:
    from pykv.mvcc.store import Store

DEFAULT_BUFFER_RESPONSES = 128   # etcd's chanBufLen
SYNC_BATCH_REVS = 1000           # etcd's watchBatchMaxRevs
SYNC_MAX_WATCHERS = 512          # etcd's maxWatchersPerSync
SYNC_INTERVAL_S = 0.1            # etcd's watchResyncPeriod

_HDR_unpack = schema.HDR.unpack_from
_log = logging.getLogger(__name__)

# A change as the write batch records it: (main, sub, key, record | None, prev record | None)
Change = tuple


def _notify_all(watchers: list[Watcher]) -> None:
    """Call the watchers' notify hooks; a failing hook is logged, never
    allowed to break the writer or the sync loop that delivered."""
    for w in watchers:
        if w._notify is not None:
            try:
                w._notify(w)
            except Exception:
                _log.exception("watch notify hook of watcher %s failed", w.watch_id)


def _prev_in_change(change: Change) -> bytes | None:
    return change[4]


class WatchResponse:
    """One delivery to one watcher. ``events`` empty and ``compact_revision``
    0: a progress notification at ``revision``. ``canceled`` with
    ``compact_revision`` set: the watcher's history was compacted."""

    __slots__ = ("watch_id", "events", "revision", "compact_revision", "canceled")

    def __init__(self, watch_id: int, events: list[t.Event], revision: int,
                 compact_revision: int = 0, canceled: bool = False):
        self.watch_id = watch_id
        self.events = events
        self.revision = revision
        self.compact_revision = compact_revision
        self.canceled = canceled

    def __repr__(self) -> str:
        return (f"WatchResponse(watch_id={self.watch_id}, revision={self.revision}, "
                f"events={self.events!r}, compact_revision={self.compact_revision}, "
                f"canceled={self.canceled})")


class Watcher:
    """A registered watch. Read responses with ``take()``; stop with
    ``cancel()``. ``min_rev``: the next revision it has not been given."""

    __slots__ = ("watch_id", "key", "range_end", "start", "end", "single", "prev_kv", "no_put",
                 "no_delete", "progress_notify", "min_rev", "synced", "canceled", "_pending",
                 "_notify", "_hub", "__weakref__")

    def __init__(self, hub: WatchHub, watch_id: int, key: bytes, range_end: bytes, min_rev: int,
                 prev_kv: bool, filters: Iterable[int], notify: Callable[[Watcher], None] | None,
                 progress_notify: bool):
        self._hub = hub
        self.watch_id = watch_id
        self.key = key
        self.range_end = range_end
        self.start, self.end, self.single = range_bounds(key, range_end)
        self.prev_kv = prev_kv
        filters = set(filters)
        self.no_put = t.FILTER_NOPUT in filters
        self.no_delete = t.FILTER_NODELETE in filters
        self.progress_notify = progress_notify
        self.min_rev = min_rev
        self.synced = False
        self.canceled = False
        self._pending: collections.deque[WatchResponse] = collections.deque()
        self._notify = notify

    def take(self) -> list[WatchResponse]:
        """Every buffered response, oldest first (empty if none)."""
        return self._hub._take(self)

    def pending(self) -> int:
        return len(self._pending)

    def cancel(self) -> None:
        self._hub.cancel(self)

    def covers(self, key: bytes) -> bool:
        if self.single:
            return key == self.start
        return key >= self.start and (self.end is None or key < self.end)

    def __repr__(self) -> str:
        return (f"Watcher(id={self.watch_id}, key={self.key!r}, range_end={self.range_end!r}, "
                f"min_rev={self.min_rev}, synced={self.synced}, canceled={self.canceled})")


class _EventCache:
    """Event objects built once per change and shared by all watchers."""

    __slots__ = ("changes", "with_prev", "without_prev", "prev_of")

    def __init__(self, changes: list[Change], prev_of: Callable[[Change], bytes | None]):
        self.changes = changes
        self.with_prev: dict[int, t.Event] = {}
        self.without_prev: dict[int, t.Event] = {}
        self.prev_of = prev_of

    def event(self, i: int, prev_kv: bool) -> t.Event:
        cache = self.with_prev if prev_kv else self.without_prev
        ev = cache.get(i)
        if ev is None:
            main, _sub, key, rec, _prev = self.changes[i]
            if rec is None:
                kv = t.KeyValue.make(key, 0, main, 0, b"", 0)
                kind = t.DELETE
            else:
                kv = reads.kv_of(key, rec)
                kind = t.PUT
            prev = None
            if prev_kv:
                prev_rec = self.prev_of(self.changes[i])
                prev = None if prev_rec is None else reads.kv_of(key, prev_rec)
            ev = cache[i] = t.Event(kind, kv, prev)
        return ev


class WatchHub:
    def __init__(self, store: Store, buffer_responses: int = DEFAULT_BUFFER_RESPONSES,
                 sync_batch_revs: int = SYNC_BATCH_REVS,
                 sync_max_watchers: int = SYNC_MAX_WATCHERS):
        self._store = store
        self.buffer_responses = buffer_responses
        self.sync_batch_revs = sync_batch_revs
        self.sync_max_watchers = sync_max_watchers
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._advance_lock = threading.Lock()
        self._by_key: dict[bytes, set[Watcher]] = {}   # synced single-key watchers
        self._ranges: set[Watcher] = set()             # synced range watchers
        self._unsynced: set[Watcher] = set()
        self._published = store.revision
        self._compact = store.compact_revision
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- registration ----------------------------------------------------------------------

    def watch(self, key: bytes, range_end: bytes = b"", start_revision: int = 0, *,
              prev_kv: bool = False, filters: Iterable[int] = (),
              notify: Callable[[Watcher], None] | None = None, watch_id: int | None = None,
              progress_notify: bool = False) -> Watcher:
        """Watch [key, range_end) (etcd's range rules; an empty key means
        ``"\\0"``) from ``start_revision`` (0: from the next change on; a
        future revision waits for it). ``filters``: FILTER_NOPUT and/or
        FILTER_NODELETE. ``watch_id`` is echoed in every response (default:
        a hub-wide counter)."""
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0")
        key = key or b"\x00"
        if watch_id is None:
            watch_id = next(self._ids)
        with self._lock:
            if self._closed:
                raise RuntimeError("the watch hub is closed")
            current = self._published
            if start_revision == 0 or start_revision > current:
                watcher = Watcher(self, watch_id, key, range_end,
                                  start_revision or current + 1, prev_kv, filters, notify,
                                  progress_notify)
                self._add_synced(watcher)
                return watcher
            watcher = Watcher(self, watch_id, key, range_end, start_revision, prev_kv, filters,
                              notify, progress_notify)
            self._unsynced.add(watcher)
        self._wake.set()
        return watcher

    def cancel(self, watcher: Watcher) -> None:
        with self._lock:
            self._remove(watcher)
            watcher.canceled = True

    def cancel_all(self) -> None:
        """Cancel every watcher with a canceled response (their consumers see
        the watch end and may start over from a revision they know)."""
        with self._lock:
            everyone = [w for g in self._by_key.values() for w in g]
            everyone += list(self._ranges) + list(self._unsynced)
            for w in everyone:
                self._remove(w)
                w.canceled = True
                w._pending.append(WatchResponse(w.watch_id, [], self._published, canceled=True))
        _notify_all(everyone)

    def _add_synced(self, w: Watcher) -> None:
        w.synced = True
        if w.single:
            self._by_key.setdefault(w.start, set()).add(w)
        else:
            self._ranges.add(w)

    def _remove(self, w: Watcher) -> None:
        if w.synced:
            if w.single:
                group = self._by_key.get(w.start)
                if group is not None:
                    group.discard(w)
                    if not group:
                        del self._by_key[w.start]
            else:
                self._ranges.discard(w)
        else:
            self._unsynced.discard(w)
        w.synced = False

    @property
    def synced_count(self) -> int:
        with self._lock:
            return sum(len(g) for g in self._by_key.values()) + len(self._ranges)

    @property
    def unsynced_count(self) -> int:
        with self._lock:
            return len(self._unsynced)

    # --- delivery ----------------------------------------------------------------------------

    def _take(self, w: Watcher) -> list[WatchResponse]:
        with self._lock:
            out = list(w._pending)
            w._pending.clear()
            behind = not w.synced and not w.canceled
        if behind and out:
            self._wake.set()
        return out

    def _match(self, changes: list[Change], single: dict[bytes, set[Watcher]] | None,
               ranges: Iterable[Watcher]) -> dict[Watcher, list[int]]:
        """Watcher -> indexes of the changes in its range (revision order)."""
        hits: dict[Watcher, list[int]] = {}
        if single:
            for i, change in enumerate(changes):
                group = single.get(change[2])
                if group:
                    for w in group:
                        hits.setdefault(w, []).append(i)
        ranges = list(ranges)
        if ranges:
            order = sorted(range(len(changes)), key=lambda i: changes[i][2])
            keys = [changes[i][2] for i in order]
            for w in ranges:
                lo = bisect.bisect_left(keys, w.start)
                if w.single:
                    hi = bisect.bisect_right(keys, w.start)
                else:
                    hi = len(keys) if w.end is None else bisect.bisect_left(keys, w.end)
                if lo < hi:
                    hits[w] = sorted(order[lo:hi])
        return hits

    def _events_for(self, w: Watcher, idxs: list[int], cache: _EventCache) -> list[t.Event]:
        changes = cache.changes
        out = []
        for i in idxs:
            change = changes[i]
            if change[0] < w.min_rev:
                continue
            if change[3] is None:
                if w.no_delete:
                    continue
            elif w.no_put:
                continue
            out.append(cache.event(i, w.prev_kv))
        return out

    def _publish(self, changes: list[Change], revision: int, compact: int,
                 prev_of: Callable[[Change], bytes | None] | None = None) -> None:
        """After a commit (writer thread): hand the batch's changes to synced
        watchers. Never blocks on a watcher. ``prev_of(change)``: the previous
        record of a change (default: the change's own, as the writer has it)."""
        notify = []
        with self._lock:
            before = self._published
            self._published = revision
            self._compact = compact
            if not changes or (not self._by_key and not self._ranges):
                return
            cache = _EventCache(changes, prev_of or _prev_in_change)
            hits = self._match(changes, self._by_key, self._ranges)
            limit = self.buffer_responses
            for w, idxs in hits.items():
                events = self._events_for(w, idxs, cache)
                if not events:
                    continue
                if len(w._pending) >= limit:
                    # A victim: catch it up from history later, from where it is.
                    self._remove(w)
                    w.min_rev = max(w.min_rev, before + 1)
                    self._unsynced.add(w)
                    continue
                w._pending.append(WatchResponse(w.watch_id, events, revision))
                notify.append(w)
        _notify_all(notify)
        if len(notify) != len(hits):
            self._wake.set()

    # --- catching up ---------------------------------------------------------------------------

    def sync(self) -> int:
        """Catch up unsynced watchers (at most ``sync_max_watchers`` of them,
        ``sync_batch_revs`` revisions each time) from the store's history.
        Returns how many remain unsynced. Safe from any thread."""
        with self._sync_lock:
            return self._sync_once()

    def _sync_once(self) -> int:
        notify: list[Watcher] = []
        with self._lock:
            compact = self._compact
            ready = [w for w in self._unsynced if len(w._pending) < self.buffer_responses]
            ready = ready[:self.sync_max_watchers]
            for w in ready:
                if w.min_rev < compact:
                    self._remove(w)
                    w.canceled = True
                    w._pending.append(WatchResponse(w.watch_id, [], self._published, compact,
                                                    canceled=True))
                    notify.append(w)
            ready = [w for w in ready if not w.canceled]
        if ready:
            delivered = self._catch_up(ready)
            notify.extend(delivered)
        _notify_all(notify)
        with self._lock:
            return len(self._unsynced)

    def _catch_up(self, ready: list[Watcher]) -> list[Watcher]:
        store = self._store
        low = min(w.min_rev for w in ready)
        slot, view = store._views.begin()
        try:
            txn, tables = view.txn, store._tables
            now = view.revision
            high = min(now, low + self.sync_batch_revs - 1)
            # Tombstones become rec None, as the writer records deletes.
            changes = [(main, sub, key, rec if _HDR_unpack(rec)[2] else None, None)
                       for main, sub, key, rec in index.changes(txn, tables, low, high)
                       if rec is not None]
            cache = _EventCache(changes, lambda change: index.prev_record(
                txn, tables, change[2], change[0], change[1]))
            hits = self._match(changes, None, ready)
            # Build events inside the read view: prev_kv lookups need it.
            per_watcher = {w: self._events_for(w, hits.get(w, []), cache) for w in ready}
        finally:
            store._views.end(slot, view)
        delivered = []
        with self._lock:
            for w, events in per_watcher.items():
                if w.canceled or w.synced:
                    continue
                if events:
                    w._pending.append(WatchResponse(w.watch_id, events, now))
                    delivered.append(w)
                w.min_rev = max(w.min_rev, high + 1)
                if high >= self._published and high == now:
                    # Everything up to the published revision is delivered; the
                    # writer's next publish starts past it (min_rev filters any
                    # overlap with a commit not yet published).
                    self._unsynced.discard(w)
                    self._add_synced(w)
        return delivered

    # --- following a store that another process writes ------------------------------------

    def advance(self, revision: int) -> int:
        """For a hub over a read-only store (``Store.open_readonly``): the
        writer says it has committed up to ``revision``. Delivers the events
        of every revision not delivered yet, up to ``revision`` or as far as
        the store shows, from history, in order, each once, prev_kv included.
        Returns the revision delivered up to (the next call goes on from
        there). Refreshes the store first when it is behind ``revision``.
        Watchers whose next revision has been compacted away are canceled
        with the compact revision, as a slow watcher would be. One caller
        at a time (the process's follower loop)."""
        store = self._store
        with self._advance_lock:
            if revision > store.revision:
                store.refresh()
            while self._published < revision:
                if not self._advance_batch(store, revision):
                    break
            return self._published

    def _advance_batch(self, store: Store, revision: int) -> bool:
        """Deliver one batch of revisions; False if there was nothing to do
        (the store does not show more yet)."""
        slot, view = store._views.begin()
        try:
            low = self._published + 1
            high = min(revision, view.revision, low + self.sync_batch_revs - 1)
            if high < low:
                return False
            if low < view.compact:
                # History from ``low`` may be gone: everyone synced falls
                # behind, and the sync loop cancels (or catches up) each one.
                self._fall_behind(low, min(revision, view.revision), view.compact)
                return True
            txn, tables = view.txn, store._tables
            # Tombstones become rec None, as the writer records deletes.
            changes = [(main, sub, key, rec if _HDR_unpack(rec)[2] else None, None)
                       for main, sub, key, rec in index.changes(txn, tables, low, high)
                       if rec is not None]
            self._publish(changes, high, view.compact, prev_of=lambda change: index.prev_record(
                txn, tables, change[2], change[0], change[1]))
            return True
        finally:
            store._views.end(slot, view)

    def _fall_behind(self, low: int, revision: int, compact: int) -> None:
        with self._lock:
            synced = [w for g in self._by_key.values() for w in g] + list(self._ranges)
            for w in synced:
                self._remove(w)
                w.min_rev = max(w.min_rev, low)
                self._unsynced.add(w)
            self._published = revision
            self._compact = compact
        self._wake.set()

    # --- progress ---------------------------------------------------------------------------------

    def progress(self, watcher: Watcher) -> bool:
        """Queue a progress notification (no events, the current revision)
        for a synced watcher; False (nothing sent) if it is behind."""
        with self._lock:
            if not watcher.synced or watcher.canceled:
                return False
            watcher._pending.append(WatchResponse(watcher.watch_id, [], self._published))
        _notify_all([watcher])
        return True

    def progress_revision(self, watchers: Iterable[Watcher]) -> int | None:
        """For etcd's RequestProgress on a stream: the revision to report
        (watch_id -1) if every watcher given is synced, else None."""
        with self._lock:
            if all(w.synced for w in watchers if not w.canceled):
                return self._published
            return None

    # --- background catch-up -------------------------------------------------------------------------

    def start(self, interval_s: float = SYNC_INTERVAL_S) -> None:
        """Run ``sync()`` on a daemon thread every ``interval_s`` and when
        a watcher falls behind or drains its buffer."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._sync_loop, args=(interval_s,),
                                        name="pykv-watch-sync", daemon=True)
        self._thread.start()

    def _sync_loop(self, interval_s: float) -> None:
        while not self._closed:
            self._wake.wait(interval_s)
            self._wake.clear()
            if self._closed:
                break
            try:
                while self.sync() and not self._closed:
                    with self._lock:
                        progressing = any(len(w._pending) < self.buffer_responses
                                          for w in self._unsynced)
                    if not progressing:
                        break
            except Exception:  # pragma: no cover - the store closed under us
                if self._closed:
                    break
                raise

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def __repr__(self) -> str:
        return (f"WatchHub(published={self._published}, synced={self.synced_count}, "
                f"unsynced={self.unsynced_count})")
