"""The durable Raft log on the WAL: persist, snapshot markers, release, load."""

from __future__ import annotations

from types import SimpleNamespace

from pykv.engine.raftlog import RaftLog, load
from pykv.raft.storage import MemoryStorage
from pykv.raft.types import ConfState, Entry, HardState
from pykv.wal import WAL


def ready(entries=(), hard_state=None, snapshot=None):
    return SimpleNamespace(entries=list(entries), hard_state=hard_state, snapshot=snapshot,
                           must_sync=bool(entries) or snapshot is not None)


def entries(first: int, count: int, term: int = 1, size: int = 1000) -> list[Entry]:
    return [Entry(term, i, 0, bytes([i % 256]) * size) for i in range(first, first + count)]


def test_snapshot_marker_releases_old_segments_and_load_keeps_the_rest(tmp_path):
    wal = WAL.open(tmp_path / "wal", segment_bytes=64 * 1024)
    log = RaftLog(wal, MemoryStorage())
    log.write_metadata(7, 9, "n1")
    for first in range(1, 501, 50):
        batch = entries(first, 50)
        log.persist(ready(batch, HardState(1, 7, batch[-1].index)))
    segments_before = len(wal.segments())
    removed = log.mark_snapshot(400, ConfState(voters=(7,)), keep_entries=10)
    assert removed > 0 and len(wal.segments()) == segments_before - removed
    assert log.storage.first_index() == 391
    wal.close()

    wal = WAL.open(tmp_path / "wal", segment_bytes=64 * 1024)
    state = load(wal)
    assert (state.member_id, state.cluster_id, state.name) == (7, 9, "n1")
    assert state.snapshot.index == 400 and state.snapshot.conf_state.voters == (7,)
    assert [e.index for e in state.entries] == list(range(401, 501))
    assert state.hard_state == HardState(1, 7, 500)
    wal.close()


def test_a_new_leaders_entries_replace_the_old_tail_on_load(tmp_path):
    wal = WAL.open(tmp_path / "wal")
    log = RaftLog(wal, MemoryStorage())
    log.persist(ready(entries(1, 10, term=1), HardState(1, 1, 5)))
    log.persist(ready(entries(7, 2, term=2), HardState(2, 2, 5)))  # replaces 7..10
    wal.close()
    state = load(WAL.open(tmp_path / "wal"))
    assert [(e.index, e.term) for e in state.entries] == \
        [(i, 1) for i in range(1, 7)] + [(7, 2), (8, 2)]
    assert state.hard_state == HardState(2, 2, 5)
