"""The durable Raft log: Raft's state kept in the WAL, mirrored in a
``MemoryStorage`` for the Raft core.

Record use (payloads from ``pykv.raft.types`` codecs):

- METADATA, once at creation: ``member_id, cluster_id`` (two 8-byte big-endian
  integers) and the member name; checked at every open;
- ENTRY: one Raft entry; a later entry with the same index replaces the
  earlier one and everything after it (a new leader's log);
- STATE: a hard state; the record's index is the last log index then;
- SNAPSHOT: a snapshot marker (index, term, membership): the MVCC store was
  made durable at that index, so the log before it is not needed to recover.

The WAL carries the latest METADATA, STATE and SNAPSHOT into the head of each
new segment, so releasing old segments never loses them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pykv import errors
from pykv.raft.rawnode import Ready
from pykv.raft.storage import MemoryStorage
from pykv.raft.types import (
    EMPTY_HARD_STATE, ConfState, Entry, HardState, Snapshot, SnapshotMeta, decode_entry,
    decode_hard_state, decode_snapshot_meta, encode_entry, encode_hard_state,
    encode_snapshot_meta,
)
from pykv.wal import WAL, RecordType

_METADATA = struct.Struct(">QQ")


@dataclass
class LoadedState:
    """What a restart finds in the WAL."""

    member_id: int = 0
    cluster_id: int = 0
    name: str = ""
    hard_state: HardState = EMPTY_HARD_STATE
    snapshot: SnapshotMeta | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def is_new(self) -> bool:
        return self.member_id == 0


def encode_metadata(member_id: int, cluster_id: int, name: str) -> bytes:
    return _METADATA.pack(member_id, cluster_id) + name.encode()


def decode_metadata(payload: bytes) -> tuple[int, int, str]:
    if len(payload) < _METADATA.size:
        raise errors.CorruptionError(f"WAL metadata record of {len(payload)} bytes is too short")
    member_id, cluster_id = _METADATA.unpack_from(payload)
    return member_id, cluster_id, bytes(payload[_METADATA.size:]).decode(errors="replace")


def load(wal: WAL, from_index: int = 0) -> LoadedState:
    """Read the WAL back: metadata, the latest hard state and snapshot
    marker, and the entries after the snapshot (later ones replacing earlier
    ones with the same index).

    ``from_index`` > 0 reads only from the segment holding that index on
    (``WAL.read``): the sticky records (metadata, hard states, snapshot
    markers) all the same, but no entry below it. A caller whose state
    machine has applied up to an index passes it, so that a restart does not
    decode the whole log; it must then check that the entries it needs are
    there."""
    state = LoadedState()
    entries: list[Entry] = []
    for batch in wal.read(from_index):
        for record in batch:
            rtype = record.type
            if rtype == RecordType.ENTRY:
                entry = decode_entry(record.payload)
                if entries and entry.index <= entries[-1].index:
                    # A new leader replaced the tail from this index on.
                    cut = entry.index - entries[0].index
                    del entries[max(cut, 0):]
                entries.append(entry)
            elif rtype == RecordType.STATE:
                state.hard_state = decode_hard_state(record.payload)
            elif rtype == RecordType.SNAPSHOT:
                meta = decode_snapshot_meta(record.payload)
                if state.snapshot is None or meta.index >= state.snapshot.index:
                    state.snapshot = meta
            elif rtype == RecordType.METADATA:
                state.member_id, state.cluster_id, state.name = decode_metadata(record.payload)
    if state.snapshot is not None:
        first = state.snapshot.index + 1
        entries = [e for e in entries if e.index >= first]
    if entries:
        # Entries must be contiguous; a gap means a lost segment.
        for prev, cur in zip(entries, entries[1:]):
            if cur.index != prev.index + 1:
                raise errors.CorruptionError(
                    f"WAL {wal.path}: entries jump from index {prev.index} to {cur.index}")
    state.entries = entries
    return state


class RaftLog:
    """Persists Readies into the WAL and keeps ``storage`` in step."""

    def __init__(self, wal: WAL, storage: MemoryStorage):
        self.wal = wal
        self.storage = storage

    @classmethod
    def restore(cls, wal: WAL, state: LoadedState) -> RaftLog:
        storage = MemoryStorage()
        if state.snapshot is not None:
            storage.apply_snapshot(Snapshot(state.snapshot, b""))
        if state.entries:
            storage.append(state.entries)
        storage.set_hard_state(state.hard_state)
        return cls(wal, storage)

    def write_metadata(self, member_id: int, cluster_id: int, name: str) -> None:
        self.wal.append_sync([(RecordType.METADATA, 0,
                               encode_metadata(member_id, cluster_id, name))])

    def persist(self, rd: Ready) -> None:
        """Step 2 of the Ready contract: snapshot, entries, hard state; one
        fdatasync when ``must_sync``; then the MemoryStorage."""
        records = []
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            records.append((RecordType.SNAPSHOT, meta.index, encode_snapshot_meta(meta)))
        for entry in rd.entries:
            records.append((RecordType.ENTRY, entry.index, encode_entry(entry)))
        if rd.hard_state is not None:
            last = rd.entries[-1].index if rd.entries else self.storage.last_index()
            records.append((RecordType.STATE, last, encode_hard_state(rd.hard_state)))
        if records:
            position = self.wal.append(records)
            if rd.must_sync:
                self.wal.sync(position)
        storage = self.storage
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)

    def mark_snapshot(self, index: int, conf_state: ConfState, keep_entries: int) -> int:
        """The state machine is durable at ``index`` (the caller checkpointed
        the store): record the marker, compact the in-memory log but for the
        last ``keep_entries`` (for slow followers), release WAL segments that
        are no longer needed. Returns the number of segments removed."""
        storage = self.storage
        if index <= storage.snapshot().meta.index:
            return 0
        snapshot = storage.create_snapshot(index, conf_state, b"")
        self.wal.append_sync([(RecordType.SNAPSHOT, index, encode_snapshot_meta(snapshot.meta))])
        compact_to = index - keep_entries
        if compact_to > storage.first_index():
            storage.compact(compact_to)
        return self.wal.release(index)
