"""Raft consensus as a pure state machine (no I/O, clock, threads).

Start at ``pykv.raft.rawnode`` (the loop contract), ``pykv.raft.types`` (data
types and codecs) and ``pykv.raft.storage`` (``MemoryStorage``).
"""

from pykv.raft.errors import (
    CompactedError, ConfigError, DecodeError, InvalidMessage, ProposalDropped, RaftError,
    SnapOutOfDateError, SnapshotTemporarilyUnavailable, UnavailableError,
)
from pykv.raft.rawnode import (
    Config, ProgressStatus, RawNode, ReadOnlyOption, Ready, Role, SnapshotStatus, SoftState,
    Status,
)
from pykv.raft.storage import MemoryStorage
from pykv.raft.types import (
    NONE, ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message,
    MessageType, ReadState, Snapshot, SnapshotMeta,
)

__all__ = [
    "CompactedError", "ConfigError", "DecodeError", "InvalidMessage", "ProposalDropped",
    "RaftError", "SnapOutOfDateError", "SnapshotTemporarilyUnavailable", "UnavailableError",
    "Config", "ProgressStatus", "RawNode", "ReadOnlyOption", "Ready", "Role", "SnapshotStatus",
    "SoftState", "Status", "MemoryStorage", "NONE", "ConfChange", "ConfChangeType", "ConfState",
    "Entry", "EntryType", "HardState", "Message", "MessageType", "ReadState", "Snapshot",
    "SnapshotMeta",
]
