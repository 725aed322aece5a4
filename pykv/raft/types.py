"""Raft data types and their compact, versioned binary codecs.

The types follow etcd-io/raft's raftpb (field meanings, message type numbers,
conf change type numbers), but they are plain Python: immutable tuples for
what is shared and stored (``Entry``, ``HardState``, ``ConfState``,
``SnapshotMeta``, ``Snapshot``, ``ConfChange``, ``ReadState``) and one
``__slots__`` class for ``Message``, which the core fills field by field.

Binary formats (all integers little-endian, fixed width so that ``struct``
does the work in C). Every top-level record starts with a version byte,
currently ``1``; a decoder refuses a version it does not know.

- entry:      ver u8 | term u64 | index u64 | type u8 | data (the rest)
- entries:    ver u8 | count u32 | count x (term u64 | index u64 | type u8 |
              len u32 | data)
- hard state: ver u8 | term u64 | vote u64 | commit u64
- conf state: ver u8 | nvoters u32 | nlearners u32 | ids u64...
- snapshot meta: ver u8 | index u64 | term u64 | conf state (without its
              version byte)
- conf change: ver u8 | type u8 | node id u64 | context (the rest)
- message:    ver u8 | type u8 | flags u8 (1 reject, 2 snapshot) | to u64 |
              from u64 | term u64 | log term u64 | index u64 | commit u64 |
              reject hint u64 | context len u32 | entry count u32 | context |
              entries as in "entries" without ver/count | [snapshot meta
              without ver | data len u64 | data]

Every length read from the input is checked against the input's size before
it is used, and any violation raises ``DecodeError`` saying what and where.
"""

from __future__ import annotations

import enum
import struct
from operator import itemgetter
from typing import NamedTuple, Sequence

from pykv.raft.errors import DecodeError

#: The id that means "nobody": no leader, no vote. Node ids are never 0.
NONE = 0

CODEC_VERSION = 1


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class MessageType(enum.IntEnum):
    """etcd-io/raft's message types, with the same numbers."""

    HUP = 0                 # local: start an election
    BEAT = 1                # local: leader sends heartbeats
    PROP = 2                # proposal (local, or forwarded to the leader)
    APP = 3                 # append entries
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7                # install snapshot
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10        # local: report_unreachable
    SNAP_STATUS = 11        # local: report_snapshot
    CHECK_QUORUM = 12       # local
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


#: Message types that only ever come from the local node, never the network.
LOCAL_MESSAGE_TYPES = frozenset({MessageType.HUP, MessageType.BEAT, MessageType.UNREACHABLE,
                                 MessageType.SNAP_STATUS, MessageType.CHECK_QUORUM})

RESPONSE_MESSAGE_TYPES = frozenset({MessageType.APP_RESP, MessageType.VOTE_RESP,
                                    MessageType.HEARTBEAT_RESP, MessageType.UNREACHABLE,
                                    MessageType.PRE_VOTE_RESP})


class ConfChangeType(enum.IntEnum):
    """etcd's ConfChangeType numbers. Promoting a learner is ADD_NODE of it."""

    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2         # no change to Raft membership (etcd: peer URLs)
    ADD_LEARNER_NODE = 3


class Entry(NamedTuple):
    """One log entry. ``data`` is opaque to Raft (for CONF_CHANGE entries it is
    an encoded ``ConfChange``)."""

    term: int
    index: int
    type: int
    data: bytes


class HardState(NamedTuple):
    """What must be durable before messages that depend on it are sent."""

    term: int
    vote: int
    commit: int


EMPTY_HARD_STATE = HardState(0, 0, 0)


class ConfState(NamedTuple):
    """Membership: voters and learners, each a sorted tuple of node ids."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


class SnapshotMeta(NamedTuple):
    index: int
    term: int
    conf_state: ConfState


class Snapshot(NamedTuple):
    """A point-in-time image of the application state at ``meta.index``."""

    meta: SnapshotMeta
    data: bytes


EMPTY_SNAPSHOT = Snapshot(SnapshotMeta(0, 0, ConfState()), b"")


class ConfChange(NamedTuple):
    type: int
    node_id: int
    context: bytes = b""


class ReadState(NamedTuple):
    """The answer to ``read_index(request_ctx)``: reads that wait until the
    state machine has applied ``index`` are linearizable."""

    index: int
    request_ctx: bytes


class Message:
    """A Raft message. Field names follow raftpb (``from`` is ``from_``).

    Messages handed out in a Ready belong to the caller; the core never
    mutates a message it received from ``step``.
    """

    __slots__ = ("type", "to", "from_", "term", "log_term", "index", "entries", "commit",
                 "snapshot", "reject", "reject_hint", "context")

    def __init__(self, type: int, to: int = 0, from_: int = 0, term: int = 0, log_term: int = 0,
                 index: int = 0, entries: Sequence[Entry] = (), commit: int = 0,
                 snapshot: Snapshot | None = None, reject: bool = False, reject_hint: int = 0,
                 context: bytes = b""):
        self.type = type
        self.to = to
        self.from_ = from_
        self.term = term
        self.log_term = log_term
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.reject_hint = reject_hint
        self.context = context

    def _key(self) -> tuple:
        return (self.type, self.to, self.from_, self.term, self.log_term, self.index,
                tuple(self.entries), self.commit, self.snapshot, self.reject, self.reject_hint,
                self.context)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self, **changes: object) -> "Message":
        m = Message(self.type, self.to, self.from_, self.term, self.log_term, self.index,
                    self.entries, self.commit, self.snapshot, self.reject, self.reject_hint,
                    self.context)
        for name, value in changes.items():
            setattr(m, name, value)
        return m

    def __repr__(self) -> str:
        try:
            name = MessageType(self.type).name
        except ValueError:
            name = str(self.type)
        parts = [f"{name} {self.from_}->{self.to} term={self.term}"]
        if self.log_term or self.index:
            parts.append(f"log={self.log_term}/{self.index}")
        if self.commit:
            parts.append(f"commit={self.commit}")
        if self.reject:
            parts.append(f"rejected(hint={self.reject_hint})")
        if self.entries:
            parts.append(f"entries={len(self.entries)}")
        if self.snapshot is not None:
            parts.append(f"snapshot={self.snapshot.meta.term}/{self.snapshot.meta.index}")
        if self.context:
            parts.append(f"ctx={self.context!r}")
        return f"Message({' '.join(parts)})"


# ---------------------------------------------------------------------------
# codecs
# ---------------------------------------------------------------------------

_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ENTRY_HEAD = struct.Struct("<BQQB")            # version, term, index, type
_BATCH_HEAD = struct.Struct("<BI")              # version, count
_BATCH_ENTRY = struct.Struct("<QQBI")           # term, index, type, len
_HARD_STATE = struct.Struct("<BQQQ")
_CONF_HEAD = struct.Struct("<II")
_META_HEAD = struct.Struct("<QQ")
_CONF_CHANGE_HEAD = struct.Struct("<BBQ")
_MSG_HEAD = struct.Struct("<BBBQQQQQQQII")

#: Bytes a batch-encoded entry takes beyond its data; also the per-entry
#: overhead counted against ``max_size_per_msg``.
ENTRY_OVERHEAD_BYTES = _BATCH_ENTRY.size

_FLAG_REJECT = 1
_FLAG_SNAPSHOT = 2

_entry_data = itemgetter(3)
_new_tuple = tuple.__new__


def _check_version(buf: bytes | memoryview, what: str) -> None:
    if not buf:
        raise DecodeError(f"{what}: empty input")
    if buf[0] != CODEC_VERSION:
        raise DecodeError(f"{what}: unknown codec version {buf[0]} (this build reads "
                          f"version {CODEC_VERSION})")


def _need(buf_len: int, offset: int, size: int, what: str) -> None:
    if size < 0 or offset + size > buf_len:
        raise DecodeError(f"{what}: truncated at byte {offset} (needs {size} more bytes, "
                          f"{max(buf_len - offset, 0)} left)")


def entries_size(entries: Sequence[Entry]) -> int:
    """Bytes counted for ``entries`` against message and Ready size limits."""
    return sum(map(len, map(_entry_data, entries))) + ENTRY_OVERHEAD_BYTES * len(entries)


def payload_size(entries: Sequence[Entry]) -> int:
    """Bytes of entry data alone (the uncommitted-size budget counts these)."""
    return sum(map(len, map(_entry_data, entries)))


def encode_entry(entry: Entry) -> bytes:
    return _ENTRY_HEAD.pack(CODEC_VERSION, entry[0], entry[1], entry[2]) + entry[3]


def decode_entry(buf: bytes | memoryview) -> Entry:
    _check_version(buf, "entry")
    _need(len(buf), 0, _ENTRY_HEAD.size, "entry")
    _, term, index, etype = _ENTRY_HEAD.unpack_from(buf, 0)
    if etype > EntryType.CONF_CHANGE:
        raise DecodeError(f"entry: unknown entry type {etype}")
    return _new_tuple(Entry, (term, index, etype, bytes(buf[_ENTRY_HEAD.size:])))


def _pack_entries(entries: Sequence[Entry], parts: list) -> None:
    pack = _BATCH_ENTRY.pack
    append = parts.append
    for term, index, etype, data in entries:
        append(pack(term, index, etype, len(data)))
        append(data)


def _unpack_entries(buf: bytes | memoryview, offset: int, count: int, what: str
                    ) -> tuple[list[Entry], int]:
    if not isinstance(buf, bytes):
        buf = bytes(buf)   # slices of bytes are bytes: one copy here, none per entry
    size = len(buf)
    head = _BATCH_ENTRY.size
    unpack = _BATCH_ENTRY.unpack_from
    new = _new_tuple
    out = []
    append = out.append
    for i in range(count):
        if offset + head > size:
            _need(size, offset, head, f"{what} entry {i}")
        term, index, etype, length = unpack(buf, offset)
        offset += head
        end = offset + length
        if end > size:
            _need(size, offset, length, f"{what} entry {i} data")
        if etype > 1:
            raise DecodeError(f"{what} entry {i}: unknown entry type {etype}")
        append(new(Entry, (term, index, etype, buf[offset:end])))
        offset = end
    return out, offset


def encode_entries(entries: Sequence[Entry]) -> bytes:
    """Encode a batch of entries as one record (one header for the batch)."""
    parts: list = [_BATCH_HEAD.pack(CODEC_VERSION, len(entries))]
    _pack_entries(entries, parts)
    return b"".join(parts)


def decode_entries(buf: bytes | memoryview) -> list[Entry]:
    _check_version(buf, "entries")
    _need(len(buf), 0, _BATCH_HEAD.size, "entries")
    _, count = _BATCH_HEAD.unpack_from(buf, 0)
    out, end = _unpack_entries(buf, _BATCH_HEAD.size, count, "entries")
    if end != len(buf):
        raise DecodeError(f"entries: {len(buf) - end} trailing bytes after {count} entries")
    return out


def encode_hard_state(hs: HardState) -> bytes:
    return _HARD_STATE.pack(CODEC_VERSION, hs[0], hs[1], hs[2])


def decode_hard_state(buf: bytes | memoryview) -> HardState:
    _check_version(buf, "hard state")
    if len(buf) != _HARD_STATE.size:
        raise DecodeError(f"hard state: expected {_HARD_STATE.size} bytes, got {len(buf)}")
    _, term, vote, commit = _HARD_STATE.unpack(buf)
    if commit and not term:
        raise DecodeError(f"hard state: commit {commit} at term 0")
    return HardState(term, vote, commit)


def _pack_conf_state(cs: ConfState, parts: list) -> None:
    parts.append(_CONF_HEAD.pack(len(cs.voters), len(cs.learners)))
    ids = tuple(cs.voters) + tuple(cs.learners)
    if ids:
        parts.append(struct.pack(f"<{len(ids)}Q", *ids))


def _unpack_conf_state(buf: bytes | memoryview, offset: int, what: str) -> tuple[ConfState, int]:
    _need(len(buf), offset, _CONF_HEAD.size, what)
    nvoters, nlearners = _CONF_HEAD.unpack_from(buf, offset)
    offset += _CONF_HEAD.size
    n = nvoters + nlearners
    _need(len(buf), offset, 8 * n, f"{what} ids")
    ids = struct.unpack_from(f"<{n}Q", buf, offset)
    offset += 8 * n
    voters, learners = ids[:nvoters], ids[nvoters:]
    if NONE in ids or len(set(ids)) != n:
        raise DecodeError(f"{what}: invalid member ids {list(ids)}")
    return ConfState(tuple(sorted(voters)), tuple(sorted(learners))), offset


def encode_conf_state(cs: ConfState) -> bytes:
    parts: list = [_U8.pack(CODEC_VERSION)]
    _pack_conf_state(cs, parts)
    return b"".join(parts)


def decode_conf_state(buf: bytes | memoryview) -> ConfState:
    _check_version(buf, "conf state")
    cs, end = _unpack_conf_state(buf, 1, "conf state")
    if end != len(buf):
        raise DecodeError(f"conf state: {len(buf) - end} trailing bytes")
    return cs


def _pack_meta(meta: SnapshotMeta, parts: list) -> None:
    parts.append(_META_HEAD.pack(meta.index, meta.term))
    _pack_conf_state(meta.conf_state, parts)


def _unpack_meta(buf: bytes | memoryview, offset: int, what: str) -> tuple[SnapshotMeta, int]:
    _need(len(buf), offset, _META_HEAD.size, what)
    index, term = _META_HEAD.unpack_from(buf, offset)
    cs, offset = _unpack_conf_state(buf, offset + _META_HEAD.size, f"{what} conf state")
    return SnapshotMeta(index, term, cs), offset


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    parts: list = [_U8.pack(CODEC_VERSION)]
    _pack_meta(meta, parts)
    return b"".join(parts)


def decode_snapshot_meta(buf: bytes | memoryview) -> SnapshotMeta:
    _check_version(buf, "snapshot meta")
    meta, end = _unpack_meta(buf, 1, "snapshot meta")
    if end != len(buf):
        raise DecodeError(f"snapshot meta: {len(buf) - end} trailing bytes")
    return meta


def encode_conf_change(cc: ConfChange) -> bytes:
    return _CONF_CHANGE_HEAD.pack(CODEC_VERSION, cc.type, cc.node_id) + cc.context


def decode_conf_change(buf: bytes | memoryview) -> ConfChange:
    _check_version(buf, "conf change")
    _need(len(buf), 0, _CONF_CHANGE_HEAD.size, "conf change")
    _, ctype, node_id = _CONF_CHANGE_HEAD.unpack_from(buf, 0)
    try:
        ctype = ConfChangeType(ctype)
    except ValueError:
        raise DecodeError(f"conf change: unknown type {ctype}") from None
    if node_id == NONE:
        raise DecodeError("conf change: node id 0")
    return ConfChange(ctype, node_id, bytes(buf[_CONF_CHANGE_HEAD.size:]))


def encode_message(m: Message) -> bytes:
    flags = (_FLAG_REJECT if m.reject else 0) | (_FLAG_SNAPSHOT if m.snapshot is not None else 0)
    context = m.context
    entries = m.entries
    parts: list = [_MSG_HEAD.pack(CODEC_VERSION, m.type, flags, m.to, m.from_, m.term, m.log_term,
                                  m.index, m.commit, m.reject_hint, len(context), len(entries))]
    if context:
        parts.append(context)
    if entries:
        _pack_entries(entries, parts)
    if m.snapshot is not None:
        _pack_meta(m.snapshot.meta, parts)
        parts.append(_U64.pack(len(m.snapshot.data)))
        parts.append(m.snapshot.data)
    return b"".join(parts)


def decode_message(buf: bytes | memoryview) -> Message:
    _check_version(buf, "message")
    size = len(buf)
    _need(size, 0, _MSG_HEAD.size, "message")
    (_, mtype, flags, to, from_, term, log_term, index, commit, reject_hint, ctx_len,
     count) = _MSG_HEAD.unpack_from(buf, 0)
    if mtype > MessageType.PRE_VOTE_RESP:
        raise DecodeError(f"message: unknown message type {mtype}")
    if flags & ~(_FLAG_REJECT | _FLAG_SNAPSHOT):
        raise DecodeError(f"message: unknown flags {flags:#x}")
    offset = _MSG_HEAD.size
    _need(size, offset, ctx_len, "message context")
    context = bytes(buf[offset:offset + ctx_len])
    offset += ctx_len
    entries: list[Entry] = []
    if count:
        entries, offset = _unpack_entries(buf, offset, count, "message")
    snapshot = None
    if flags & _FLAG_SNAPSHOT:
        meta, offset = _unpack_meta(buf, offset, "message snapshot")
        _need(size, offset, 8, "message snapshot data length")
        (data_len,) = _U64.unpack_from(buf, offset)
        offset += 8
        _need(size, offset, data_len, "message snapshot data")
        snapshot = Snapshot(meta, bytes(buf[offset:offset + data_len]))
        offset += data_len
    if offset != size:
        raise DecodeError(f"message: {size - offset} trailing bytes")
    return Message(MessageType(mtype), to, from_, term, log_term, index, entries, commit,
                   snapshot, bool(flags & _FLAG_REJECT), reject_hint, context)
