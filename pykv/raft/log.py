"""The Raft log as the core sees it: durable storage plus an unstable tail.

``Unstable`` holds what the core has appended (or the snapshot it received)
but the application has not yet confirmed durable through ``advance``.
Entries handed out in a Ready are "in progress": they stay in the unstable
tail (they are still the log) but are not handed out again.

``RaftLog`` joins the two and tracks ``committed`` (known durable on a
quorum), ``applying`` (handed out for application) and ``applied``.
Invariant: applied <= applying <= committed <= last_index().
"""

from __future__ import annotations

from typing import Sequence

from pykv.raft.errors import CompactedError, UnavailableError
from pykv.raft.storage import NO_LIMIT, MemoryStorage, limit_size
from pykv.raft.types import Entry, Snapshot


class Unstable:
    """Entries from ``offset`` on, and possibly an incoming snapshot.

    Entries below ``offset_in_progress`` and a snapshot flagged in progress
    have been handed out in a Ready and await ``advance``.
    """

    __slots__ = ("snapshot", "entries", "offset", "snapshot_in_progress", "offset_in_progress")

    def __init__(self, offset: int):
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        self.snapshot_in_progress = False
        self.offset_in_progress = offset

    def next_entries(self) -> list[Entry]:
        start = self.offset_in_progress - self.offset
        if start >= len(self.entries):
            return []
        return self.entries[start:]

    def next_snapshot(self) -> Snapshot | None:
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        if self.entries:
            self.offset_in_progress = self.entries[-1][1] + 1
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (written at ``term``) are durable."""
        k = index - self.offset
        if k < 0 or k >= len(self.entries) or self.entries[k][0] != term:
            # Overwritten by a later append, or already stable: nothing to do.
            return
        del self.entries[:k + 1]
        self.offset = index + 1
        if self.offset_in_progress < self.offset:
            self.offset_in_progress = self.offset

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snapshot
        self.snapshot_in_progress = False

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        start = entries[0][1]
        end = self.offset + len(self.entries)
        if start == end:
            self.entries.extend(entries)
        elif start <= self.offset:
            # Replaces the whole unstable tail (and, once persisted, the
            # durable entries from ``start`` on).
            self.offset = start
            self.offset_in_progress = start
            self.entries = list(entries)
        else:
            del self.entries[start - self.offset:]
            self.entries.extend(entries)
            if self.offset_in_progress > start:
                self.offset_in_progress = start


class RaftLog:
    __slots__ = ("storage", "unstable", "committed", "applying", "applied",
                 "max_applying_bytes")

    def __init__(self, storage: MemoryStorage, max_applying_bytes: int = NO_LIMIT):
        self.storage = storage
        first = storage.first_index()
        self.unstable = Unstable(storage.last_index() + 1)
        # Everything up to the snapshot is committed and applied.
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_bytes = max_applying_bytes

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, "
                f"len(unstable.entries)={len(self.unstable.entries)})")

    # -- reading ------------------------------------------------------------

    def first_index(self) -> int:
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.meta.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.meta.index
        return self.storage.last_index()

    def persisted_last_index(self) -> int:
        """Last index of the durable prefix of this log (no unstable snapshot)."""
        return self.unstable.offset - 1

    def term(self, index: int) -> int:
        """Term of entry ``index``; raises CompactedError / UnavailableError."""
        u = self.unstable
        if index >= u.offset:
            k = index - u.offset
            if k < len(u.entries):
                return u.entries[k][0]
            raise UnavailableError(index, self.last_index())
        if u.snapshot is not None:
            if index == u.snapshot.meta.index:
                return u.snapshot.meta.term
            raise CompactedError(index, u.snapshot.meta.index + 1)
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Is a log ending at (last_index, term) at least as up to date as
        ours? (Raft paper section 5.4.1.)"""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int = NO_LIMIT) -> list[Entry]:
        """Entries ``[lo, hi)`` cut to ``max_bytes`` (at least one)."""
        if lo >= hi:
            return []
        first = self.first_index()
        if lo < first:
            raise CompactedError(lo, first)
        last = self.last_index()
        if hi > last + 1:
            raise UnavailableError(hi - 1, last)
        u = self.unstable
        if lo >= u.offset:
            return limit_size(u.entries[lo - u.offset:hi - u.offset], max_bytes)
        stable_hi = hi if hi < u.offset else u.offset
        entries = self.storage.entries(lo, stable_hi, max_bytes)
        if hi > u.offset and len(entries) == stable_hi - lo:
            entries = limit_size(entries + u.entries[:hi - u.offset], max_bytes)
        return entries

    def entries(self, lo: int, max_bytes: int = NO_LIMIT) -> list[Entry]:
        """Entries from ``lo`` to the end, cut to ``max_bytes``."""
        last = self.last_index()
        if lo > last:
            return []
        return self.slice(lo, last + 1, max_bytes)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def has_pending_snapshot(self) -> bool:
        """A snapshot received but not yet confirmed installed."""
        return self.unstable.snapshot is not None

    def has_next_committed_entries(self) -> bool:
        return self.unstable.snapshot is None and self.committed > self.applying

    def next_committed_entries(self) -> list[Entry]:
        """Committed entries not yet handed out for application."""
        if self.unstable.snapshot is not None or self.committed <= self.applying:
            return []
        return self.slice(self.applying + 1, self.committed + 1, self.max_applying_bytes)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first of ``entries`` not already in the log (with
        the same term), or 0 when all are."""
        last = self.last_index()
        for entry in entries:
            index = entry[1]
            if index > last or not self.match_term(index, entry[0]):
                return index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, term(i)) with i <= index and term(i) <= term.

        Used for fast backtracking (Raft paper section 5.3, etcd's reject
        hints): entries above i cannot match a log whose entry at ``index``
        has ``term``.
        """
        while index > 0:
            try:
                our_term = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    # -- writing ------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        if entries:
            start = entries[0][1]
            if start - 1 < self.committed:
                raise AssertionError(f"appending at {start} would overwrite committed "
                                     f"entry {self.committed}")
            self.unstable.truncate_and_append(entries)
        return self.last_index()

    def maybe_append(self, index: int, log_term: int, commit: int,
                     entries: Sequence[Entry]) -> int:
        """Append ``entries`` that follow (index, log_term) if our log has that
        entry; returns the index of the last new entry, or -1 on mismatch."""
        if not self.match_term(index, log_term):
            return -1
        last_new = index + len(entries)
        if entries:
            conflict = self.find_conflict(entries)
            if conflict:
                if conflict <= self.committed:
                    raise AssertionError(f"entry {conflict} conflicts with committed entry "
                                         f"(committed {self.committed})")
                self.append(entries[conflict - index - 1:])
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            last = self.last_index()
            if index > last:
                raise AssertionError(f"commit index {index} is out of range [last index "
                                     f"{last}]: was the log corrupted, truncated or lost?")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if it is beyond ``committed`` and its entry
        is of ``term`` (only entries of the leader's current term are
        committed by counting replicas: Raft paper section 5.4.2)."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def accept_applying(self, index: int) -> None:
        self.applying = index

    def applied_to(self, index: int) -> None:
        if index > self.committed or index < self.applied:
            raise AssertionError(f"applied index {index} is out of range [prev applied "
                                 f"{self.applied}, committed {self.committed}]")
        self.applied = index
        if self.applying < index:
            self.applying = index

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)
