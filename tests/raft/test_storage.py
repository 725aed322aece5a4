"""MemoryStorage: the log the application fills from durable state."""

from __future__ import annotations

import pytest

from pykv.raft import (
    CompactedError, ConfState, Entry, HardState, MemoryStorage, SnapOutOfDateError,
    UnavailableError,
)
from pykv.raft.types import ENTRY_OVERHEAD_BYTES


def filled(n: int = 5) -> MemoryStorage:
    s = MemoryStorage()
    s.append([Entry(1 + i // 3, i + 1, 0, b"x" * 10) for i in range(n)])
    return s


def test_append_then_read_back():
    s = filled()
    assert (s.first_index(), s.last_index()) == (1, 5)
    assert [e.index for e in s.entries(2, 5)] == [2, 3, 4]
    assert s.term(4) == 2 and s.term(0) == 0


def test_append_replaces_a_conflicting_tail():
    s = filled()
    s.append([Entry(3, 3, 0, b"new"), Entry(3, 4, 0, b"new")])
    assert s.last_index() == 4
    assert [(e.term, e.data) for e in s.entries(3, 5)] == [(3, b"new"), (3, b"new")]


def test_append_with_a_gap_is_refused():
    s = filled()
    with pytest.raises(UnavailableError):
        s.append([Entry(3, 9, 0, b"")])


def test_entries_are_cut_to_max_bytes_but_never_empty():
    s = filled()
    per_entry = 10 + ENTRY_OVERHEAD_BYTES
    assert len(s.entries(1, 6, max_bytes=2 * per_entry)) == 2
    assert len(s.entries(1, 6, max_bytes=1)) == 1


def test_compact_keeps_the_term_of_the_compacted_index():
    s = filled()
    s.compact(3)
    assert (s.first_index(), s.last_index()) == (4, 5)
    assert s.term(3) == 1
    with pytest.raises(CompactedError):
        s.term(2)
    with pytest.raises(CompactedError):
        s.entries(3, 5)
    with pytest.raises(CompactedError):
        s.compact(3)


def test_snapshot_created_at_an_index_then_compacted():
    s = filled()
    snap = s.create_snapshot(4, ConfState((1, 2, 3)), b"state")
    assert (snap.meta.index, snap.meta.term, snap.data) == (4, 2, b"state")
    s.compact(4)
    assert s.snapshot() == snap and s.first_index() == 5
    with pytest.raises(SnapOutOfDateError):
        s.create_snapshot(3, ConfState((1,)), b"")


def test_apply_snapshot_replaces_the_log_and_sets_the_conf_state():
    s = filled()
    newer = MemoryStorage()
    newer.append([Entry(1, i, 0, b"") for i in range(1, 11)])
    snap = newer.create_snapshot(10, ConfState((1, 2), (3,)), b"img")
    s.apply_snapshot(snap)
    s.set_hard_state(HardState(4, 1, 10))
    assert (s.first_index(), s.last_index()) == (11, 10)
    assert s.initial_state() == (HardState(4, 1, 10), ConfState((1, 2), (3,)))
    with pytest.raises(SnapOutOfDateError):
        s.apply_snapshot(snap)


def test_append_of_already_compacted_entries_keeps_only_the_new_part():
    s = filled()
    s.compact(4)
    s.append([Entry(2, 4, 0, b""), Entry(2, 5, 0, b"y"), Entry(2, 6, 0, b"z")])
    assert [e.data for e in s.entries(5, 7)] == [b"y", b"z"]
