"""Opening a data directory: recover its state and take the log over as its
only voter, exactly as ``pykv serve`` would.

A new directory is founded the way the server founds a one-member cluster
(``pykv.server.core``): the METADATA record with etcd's default member and
cluster ids, ``RawNode.bootstrap`` of that member, then an election. A
directory that exists is restarted with the same Raft code: the WAL is read
from the store's applied index on (``load(wal, from_index)``: a clean close
leaves a snapshot marker at the last index, so nothing before it is decoded),
the committed entries the store has not applied are applied, and the member
wins a new term. Every record this writes comes from ``RawNode`` and
``RaftLog.persist``, the server's own code.

After that the embedded engine appends entries itself (``commit.py``): one
voter in a term it has won needs no messages, and each entry is committed
the moment it is durable.
"""

from __future__ import annotations

from dataclasses import dataclass

from pykv import errors
from pykv.engine.apply import Applier
from pykv.engine.identity import DEFAULT_NAME, cluster_id_for, default_member
from pykv.engine.raftlog import LoadedState, RaftLog, load
from pykv.mvcc import Store
from pykv.raft.rawnode import Config as RaftConfig
from pykv.raft.rawnode import RawNode
from pykv.raft.storage import MemoryStorage
from pykv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta, \
    decode_conf_change
from pykv.wal import WAL


@dataclass(frozen=True)
class LogState:
    """Where the log stands once the member leads: the next entry is
    ``last_index + 1`` in ``term``."""

    member_id: int
    cluster_id: int
    term: int
    last_index: int
    conf_state: ConfState
    snapshot_index: int  # of the latest snapshot marker in the WAL (0: none)


def recover(wal: WAL, store: Store) -> LogState:
    """Bring ``store`` up to date with ``wal`` and win a new term; see the
    module docstring. Raises ``CorruptionError`` when the two disagree in a
    way that loses data, ``StorageError`` for a directory of a cluster of
    several members."""
    applied = store.applied_index
    state = load(wal, from_index=applied)
    if state.is_new:
        member_id, cluster_id = default_member()
        node, raftlog = _found(wal, store, state, member_id, cluster_id)
    else:
        member_id, cluster_id = state.member_id, state.cluster_id
        node, raftlog = _restart(wal, store, state, applied)
    _lead(node, raftlog, store)
    status = node.status()
    _check_one_member(wal, status.conf_state, member_id)
    if status.leader != member_id:
        raise errors.StorageError(f"{wal.path}: member {member_id:x} could not take the lead "
                                  "of its log")
    return LogState(member_id=member_id, cluster_id=cluster_id, term=status.term,
                    last_index=raftlog.storage.last_index(),
                    conf_state=ConfState(voters=(member_id,)),
                    snapshot_index=state.snapshot.index if state.snapshot else 0)


def _found(wal: WAL, store: Store, state: LoadedState, member_id: int, cluster_id: int
           ) -> tuple[RawNode, RaftLog]:
    """A new directory: metadata and the bootstrap of a one-member cluster."""
    if store.applied_index or state.entries or state.snapshot is not None:
        raise errors.CorruptionError(
            f"{wal.path} has no METADATA record but the store has applied index "
            f"{store.applied_index}: the WAL of this directory is missing", path=wal.path)
    raftlog = RaftLog.restore(wal, state)
    raftlog.write_metadata(member_id, cluster_id, DEFAULT_NAME)
    node = RawNode(RaftConfig(id=member_id, applied=0), raftlog.storage)
    node.bootstrap([member_id])
    return node, raftlog


def _restart(wal: WAL, store: Store, state: LoadedState, applied: int
             ) -> tuple[RawNode, RaftLog]:
    member_id = state.member_id
    if state.cluster_id != cluster_id_for([member_id]):
        raise errors.StorageError(
            f"{wal.path} belongs to a cluster of several members (cluster id "
            f"{state.cluster_id:x}); pykv.open serves one-member data directories only")
    snapshot = state.snapshot
    if snapshot is not None:
        _check_one_member(wal, snapshot.conf_state, member_id)
        if snapshot.index > applied:
            raise errors.CorruptionError(
                f"the MVCC store {store.path} has applied index {applied}, behind the "
                f"snapshot marker at {snapshot.index} in {wal.path}: the store lost "
                "writes it had made durable", path=store.path)
    entries = state.entries
    tail = [e for e in entries if e.index > applied]
    if tail and tail[0].index != applied + 1:
        raise errors.CorruptionError(
            f"{wal.path}: the entries after the store's applied index {applied} start at "
            f"{tail[0].index}: entries {applied + 1}..{tail[0].index - 1} are missing",
            path=wal.path)
    last_index = entries[-1].index if entries else (snapshot.index if snapshot else 0)
    if applied > last_index:
        raise errors.CorruptionError(
            f"the MVCC store {store.path} has applied index {applied} but the WAL in "
            f"{wal.path} ends at {max(last_index, wal.last_index)}: the WAL lost writes "
            "the store holds",
            path=wal.path)
    storage = MemoryStorage()
    if applied:
        # The store holds everything up to ``applied``: to Raft that is a
        # snapshot (in memory only; the WAL keeps its own markers).
        term = _term_at(applied, entries, snapshot)
        storage.apply_snapshot(Snapshot(SnapshotMeta(applied, term, ConfState((member_id,))),
                                        b""))
    storage.append(tail)
    hard = state.hard_state
    storage.set_hard_state(HardState(hard.term, hard.vote, max(hard.commit, applied)))
    node = RawNode(RaftConfig(id=member_id, applied=applied), storage)
    return node, RaftLog(wal, storage)


def _check_one_member(wal: WAL, conf_state: ConfState, member_id: int) -> None:
    if conf_state.voters != (member_id,) or conf_state.learners:
        members = [f"{m:x}" for m in (*conf_state.voters, *conf_state.learners)]
        raise errors.StorageError(f"{wal.path}: the cluster has members {members}; pykv.open "
                                  "serves one-member data directories only")


def _term_at(index: int, entries: list[Entry], snapshot: SnapshotMeta | None) -> int:
    if snapshot is not None and snapshot.index == index:
        return snapshot.term
    if entries and entries[0].index <= index:
        return entries[index - entries[0].index].term
    raise errors.CorruptionError(f"no WAL record holds the term of entry {index}, which the "
                                 "store has applied")


def _lead(node: RawNode, raftlog: RaftLog, store: Store) -> None:
    """Apply what is committed, campaign, apply what the new term commits."""
    def on_conf_change(entry: Entry) -> None:
        node.apply_conf_change(decode_conf_change(entry.data))

    applier = Applier(store, on_conf_change=on_conf_change)

    def drain() -> None:
        while node.has_ready():
            rd = node.ready()
            raftlog.persist(rd)  # durable before anything is applied (RawNode's contract)
            if rd.committed_entries:
                applier.apply(rd.committed_entries)
            node.advance(rd)

    drain()
    node.campaign()
    drain()
