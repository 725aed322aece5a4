"""The log storage the Raft core reads from: ``MemoryStorage``.

It holds what the application has made durable: entries, the hard state and
the latest snapshot. The core only reads it; the application writes it:

- at restart, fill it from the WAL (``apply_snapshot``, ``set_hard_state``,
  ``append``) before creating the ``RawNode``;
- after each Ready has been persisted, ``append(ready.entries)``,
  ``set_hard_state(ready.hard_state)`` and, when the Ready carries one,
  ``apply_snapshot(ready.snapshot)`` (before the entries);
- to bound memory, ``create_snapshot`` at an applied index and ``compact``
  the log below it (keeping some entries for slow followers).

Like etcd-io/raft's, entry 0 of the internal list is a dummy holding the
index and term of the last compacted entry (the snapshot's).
"""

from __future__ import annotations

from typing import Sequence

from pykv.raft.errors import CompactedError, SnapOutOfDateError, UnavailableError
from pykv.raft.types import (
    EMPTY_HARD_STATE, EMPTY_SNAPSHOT, ENTRY_OVERHEAD_BYTES, ConfState, Entry, HardState, Snapshot,
    SnapshotMeta, entries_size,
)

#: No limit on bytes (``entries(..., max_bytes=NO_LIMIT)``).
NO_LIMIT = 1 << 62


def limit_size(entries: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_bytes`` (at least one)."""
    if len(entries) <= 1 or max_bytes >= NO_LIMIT or entries_size(entries) <= max_bytes:
        return entries
    size = 0
    for i, entry in enumerate(entries):
        size += len(entry[3]) + ENTRY_OVERHEAD_BYTES
        if size > max_bytes:
            return entries[:max(i, 1)]
    return entries


class MemoryStorage:
    """An in-memory Raft log, filled by the application from durable state."""

    __slots__ = ("hard_state", "_snapshot", "_entries")

    def __init__(self) -> None:
        self.hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot: Snapshot = EMPTY_SNAPSHOT
        # _entries[0] is a dummy at the snapshot's index and term.
        self._entries: list[Entry] = [Entry(0, 0, 0, b"")]

    # -- what the core reads ------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.meta.conf_state

    def first_index(self) -> int:
        return self._entries[0][1] + 1

    def last_index(self) -> int:
        return self._entries[0][1] + len(self._entries) - 1

    def term(self, index: int) -> int:
        """The term of entry ``index``; valid from ``first_index() - 1``."""
        offset = self._entries[0][1]
        if index < offset:
            raise CompactedError(index, offset + 1)
        if index - offset >= len(self._entries):
            raise UnavailableError(index, self.last_index())
        return self._entries[index - offset][0]

    def entries(self, lo: int, hi: int, max_bytes: int = NO_LIMIT) -> list[Entry]:
        """Entries ``[lo, hi)``, cut to ``max_bytes`` (always at least one)."""
        offset = self._entries[0][1]
        if lo <= offset:
            raise CompactedError(lo, offset + 1)
        last = self.last_index()
        if hi > last + 1:
            raise UnavailableError(hi - 1, last)
        return limit_size(self._entries[lo - offset:hi - offset], max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- what the application writes ----------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (a newer one than held)."""
        index = snapshot.meta.index
        if index <= self._snapshot.meta.index:
            raise SnapOutOfDateError(index, self._snapshot.meta.index)
        self._snapshot = snapshot
        self._entries = [Entry(snapshot.meta.term, index, 0, b"")]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the application state at applied ``index``.

        ``conf_state`` is the membership as of ``index``. The log is not
        compacted; call ``compact`` for that.
        """
        if index <= self._snapshot.meta.index:
            raise SnapOutOfDateError(index, self._snapshot.meta.index)
        last = self.last_index()
        if index > last:
            raise UnavailableError(index, last)
        term = self._entries[index - self._entries[0][1]][0]
        self._snapshot = Snapshot(SnapshotMeta(index, term, conf_state), data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard the entries up to and including ``compact_index``.

        The application must not compact beyond its applied index.
        """
        offset = self._entries[0][1]
        if compact_index <= offset:
            raise CompactedError(compact_index, offset + 1)
        last = self.last_index()
        if compact_index > last:
            raise UnavailableError(compact_index, last)
        i = compact_index - offset
        dummy = Entry(self._entries[i][0], compact_index, 0, b"")
        self._entries = [dummy] + self._entries[i + 1:]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append persisted ``entries``; entries at their indexes and beyond
        are replaced (a new leader may overwrite an uncommitted tail)."""
        if not entries:
            return
        first = self.first_index()
        start = entries[0][1]
        if start + len(entries) - 1 < first:
            return  # all compacted already
        if start < first:
            entries = entries[first - start:]
            start = first
        ents = self._entries
        offset = start - ents[0][1]
        if offset == len(ents):
            ents.extend(entries)
        elif offset < len(ents):
            del ents[offset:]
            ents.extend(entries)
        else:
            raise UnavailableError(start, self.last_index())
