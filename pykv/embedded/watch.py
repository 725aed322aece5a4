"""Watches: an iterator of events over a key, a range or a prefix.

A ``Watch`` wraps a watcher of the store's watch hub, which never blocks a
writer: events wait in the watcher's buffer, a watcher that falls behind is
caught up from history, and none is lost, repeated or reordered. Iterating
blocks until the next event; ``get(timeout)`` waits at most that long.

The watch ends (iteration stops) when it is canceled or the database is
closed. If its next revision has been compacted away, the watch is canceled
by the store and iteration raises ``WatchCompacted``, whose
``compact_revision`` says where history now starts (as etcd's watch
response does); a watch the store had to cancel for any other reason raises
``WatchCanceled``.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Iterator

from pykv import errors
from pykv.mvcc import Event, Watcher

#: Called from whichever thread delivered (a writer or the hub's sync
#: thread); must not block.
NotifyHook = Callable[[], None]


class WatchCompacted(errors.Compacted):  # type: ignore[misc, valid-type]
    """The revision a watch needed next has been compacted; restart it from
    ``compact_revision`` or later."""

    def __init__(self, compact_revision: int):
        super().__init__(f"compact revision {compact_revision}")
        self.compact_revision = compact_revision


class Watch:
    """Events of one watch, in revision order. Use as an iterator (it
    blocks) or with ``get(timeout)``; ``cancel()`` (or ``with``) ends it.
    ``revision`` is the store revision of the latest response received."""

    def __init__(self, open_watcher: Callable[[Callable[[Watcher], None]], Watcher]):
        self._ready = threading.Event()
        self._buffer: collections.deque[Event] = collections.deque()
        self._hooks: list[NotifyHook] = []
        self._ended = False
        self._error: BaseException | None = None
        self.revision = 0
        self._watcher = open_watcher(self._notified)

    @property
    def watch_id(self) -> int:
        """The id of the store's watcher behind it."""
        return self._watcher.watch_id

    def add_notify_hook(self, hook: NotifyHook) -> None:
        """Also call ``hook()`` whenever events may be ready (the asyncio
        face uses it to wake its loop). It must not block."""
        self._hooks.append(hook)
        hook()

    def _notified(self, _watcher: Watcher) -> None:
        self._ready.set()
        for hook in self._hooks:
            hook()

    def _end(self) -> None:
        """The database is closing: stop the iteration."""
        self._ended = True
        self._notified(self._watcher)

    def cancel(self) -> None:
        """End the watch; events not yet taken are dropped."""
        self._watcher.cancel()
        self._end()

    @property
    def canceled(self) -> bool:
        """Whether the watch has ended (canceled, or the database closed)."""
        return self._ended or self._watcher.canceled

    def poll(self) -> Event | None:
        """The next event if one is ready, without waiting. Raises
        ``StopIteration`` when the watch has ended (``WatchCompacted`` if
        that is why)."""
        if not self._buffer:
            self._ready.clear()
            self._take()
        if self._buffer:
            return self._buffer.popleft()
        if self._error is not None:
            raise self._error
        if self._ended:
            raise StopIteration
        return None

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds (None: for
        ever); None when the time is up. Raises ``StopIteration`` when the
        watch has ended."""
        event = self.poll()
        if event is None:
            self._ready.wait(timeout)
            event = self.poll()
        return event

    def _take(self) -> None:
        for response in self._watcher.take():
            if response.revision > self.revision:
                self.revision = response.revision
            self._buffer.extend(response.events)
            if response.canceled:
                self._ended = True
                if response.compact_revision:
                    self._error = WatchCompacted(response.compact_revision)
                else:  # canceled by the store, not by us
                    self._error = errors.WatchCanceled()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        while True:
            event = self.get()
            if event is not None:
                return event

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return (f"<Watch id={self.watch_id} key={self._watcher.key!r} "
                f"range_end={self._watcher.range_end!r} revision={self.revision}"
                f"{' ended' if self.canceled else ''}>")
