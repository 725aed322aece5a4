"""Results of the MVCC store: small ``__slots__`` classes with etcd's field names.

They mirror ``mvccpb.KeyValue``, ``mvccpb.Event`` and the ``*Response``
messages of ``etcdserverpb`` closely enough that the server copies them field
by field (or splices raw bytes, see ``RangeRawResult``), and the embedded API
hands them to users as they are.
"""

from __future__ import annotations

import collections.abc
import operator
import struct
from typing import Any

from pykv.mvcc.varint import varint

# The record header of pykv.mvcc.schema (kept here too so that this module
# stays importable on its own): create, mod, version, lease, sub, key_extra.
_HDR = struct.Struct("<qqqqII")
_HDR_pack = _HDR.pack
_HDR_unpack = _HDR.unpack_from
_HDR_BYTES = _HDR.size
_EXTRA_unpack = struct.Struct("<36xI").unpack_from  # key_extra alone

# etcd enum numbers (rpc.proto / kv.proto)
PUT = 0
DELETE = 1

SORT_NONE, SORT_ASCEND, SORT_DESCEND = 0, 1, 2
TARGET_KEY, TARGET_VERSION, TARGET_CREATE, TARGET_MOD, TARGET_VALUE = 0, 1, 2, 3, 4

CMP_EQUAL, CMP_GREATER, CMP_LESS, CMP_NOT_EQUAL = 0, 1, 2, 3
CMP_VERSION, CMP_CREATE, CMP_MOD, CMP_VALUE, CMP_LEASE = 0, 1, 2, 3, 4

FILTER_NOPUT, FILTER_NODELETE = 0, 1

ALARM_NONE, ALARM_NOSPACE, ALARM_CORRUPT = 0, 1, 2
ALARM_GET, ALARM_ACTIVATE, ALARM_DEACTIVATE = 0, 1, 2


try:  # namedtuple's field descriptor: indexes the tuple in C, no call through a property
    from _collections import _tuplegetter as _item_getter
except ImportError:  # pragma: no cover - another Python implementation
    def _item_getter(index: int, doc: str) -> property:
        return property(operator.itemgetter(index), doc=doc)


class KeyValue(tuple):
    """``mvccpb.KeyValue``, as the tuple ``(key, value, record)``.

    ``record`` is the stored record, whose fixed header (see
    ``pykv.mvcc.schema``) leads it;
    ``create_revision``, ``mod_revision``, ``version`` and ``lease`` are
    decoded from it when read, while ``key`` and ``value`` are plain item
    getters. So a range builds its results with C-speed ``map``/``zip`` and a
    caller pays only for the fields it looks at. Build one from field values
    with ``KeyValue.make(key, ...)``; compare fields, not tuples. A DELETE
    event's kv has only ``key`` and ``mod_revision`` (the delete's revision)
    set, as in etcd.
    """

    __slots__ = ()

    @classmethod
    def make(cls, key: bytes, create_revision: int = 0, mod_revision: int = 0,
             version: int = 0, value: bytes = b"", lease: int = 0) -> KeyValue:
        return cls((key, value, _HDR_pack(create_revision, mod_revision, version, lease, 0, 0)))

    key = _item_getter(0, "the key")
    value = _item_getter(1, "the value (empty with keys_only)")

    @property
    def create_revision(self) -> int:
        return _HDR_unpack(self[2])[0]

    @property
    def mod_revision(self) -> int:
        return _HDR_unpack(self[2])[1]

    @property
    def version(self) -> int:
        return _HDR_unpack(self[2])[2]

    @property
    def lease(self) -> int:
        return _HDR_unpack(self[2])[3]

    def _fields(self) -> tuple:
        create, mod, version, lease, _sub, _extra = _HDR_unpack(self[2])
        return (self[0], create, mod, version, self[1], lease)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, KeyValue) and self._fields() == other._fields()

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        key, create, mod, version, value, lease = self._fields()
        return (f"KeyValue(key={key!r}, create_revision={create}, mod_revision={mod}, "
                f"version={version}, value={value!r}, lease={lease})")


def kv_from_pair(pair: tuple[bytes, bytes]) -> KeyValue:
    """KeyValue from a stored (key, record) pair."""
    key, record = pair
    return KeyValue((key, record[_HDR_BYTES + _EXTRA_unpack(record)[0]:], record))


_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
_VALUE_OF = operator.itemgetter(slice(_HDR_BYTES, None))
_EXTRA_OF = operator.itemgetter(slice(36, 40))
_NO_EXTRA = {b"\x00\x00\x00\x00"}


class KeyValues(collections.abc.Sequence):
    """The ``kvs`` of a Range: a read-only sequence of ``KeyValue`` over the
    stored (key, record) pairs, each built when it is read (at C speed when
    iterated). The pairs are plain tuples the garbage collector soon stops
    tracking, so a large answer costs no collection passes over the
    caller's heap."""

    __slots__ = ("_pairs", "_plain")

    def __init__(self, pairs: list[tuple[bytes, bytes]], plain: bool | None = None):
        self._pairs = pairs
        # Records of long keys carry the key before the value: those decode one
        # by one. ``plain``: the caller knows none does (skips this check).
        if plain is None:
            plain = set(map(_EXTRA_OF, map(_SECOND, pairs))) <= _NO_EXTRA
        self._plain = plain

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return KeyValues(self._pairs[i])
        return kv_from_pair(self._pairs[i])

    def __iter__(self):
        pairs = self._pairs
        if not self._plain:
            return map(kv_from_pair, pairs)
        return map(KeyValue, zip(map(_FIRST, pairs), map(_VALUE_OF, map(_SECOND, pairs)),
                                 map(_SECOND, pairs)))

    def items(self) -> list[tuple[bytes, bytes]]:
        """Just (key, value) pairs, built at C speed: the cheapest way to read
        a large range when the revisions are not needed."""
        pairs = self._pairs
        if not self._plain:
            return [(kv[0], kv[1]) for kv in map(kv_from_pair, pairs)]
        return list(zip(map(_FIRST, pairs), map(_VALUE_OF, map(_SECOND, pairs))))

    def keys(self) -> list[bytes]:
        return list(map(_FIRST, self._pairs))

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, (KeyValues, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"KeyValues({list(self)!r})"


class Event:
    """``mvccpb.Event``: ``type`` is PUT (0) or DELETE (1)."""

    __slots__ = ("type", "kv", "prev_kv")

    def __init__(self, type: int, kv: KeyValue, prev_kv: KeyValue | None = None):  # noqa: A002
        self.type = type
        self.kv = kv
        self.prev_kv = prev_kv

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, Event) and self.type == other.type and self.kv == other.kv
                and self.prev_kv == other.prev_kv)

    def __repr__(self) -> str:
        kind = "PUT" if self.type == PUT else "DELETE"
        return f"Event({kind}, {self.kv!r}, prev_kv={self.prev_kv!r})"


class RangeResult:
    """``RangeResponse`` without the header: ``revision`` is the store
    revision the response header must carry."""

    __slots__ = ("kvs", "more", "count", "revision")

    def __init__(self, kvs: KeyValues | list[KeyValue], more: bool, count: int, revision: int):
        self.kvs = kvs
        self.more = more
        self.count = count
        self.revision = revision

    def __repr__(self) -> str:
        return (f"RangeResult(kvs={self.kvs!r}, more={self.more}, count={self.count}, "
                f"revision={self.revision})")


class RangeRawResult:
    """A Range answer as protobuf bytes, for the gRPC server.

    ``kvs_wire`` is the concatenation of ``RangeResponse.kvs`` fields (field 2,
    each an encoded ``mvccpb.KeyValue``), built in C straight from stored
    records. ``response_bytes(header)`` gives the whole ``RangeResponse``.
    """

    __slots__ = ("kvs_wire", "n", "more", "count", "revision")

    def __init__(self, kvs_wire: bytes, n: int, more: bool, count: int, revision: int):
        self.kvs_wire = kvs_wire
        self.n = n
        self.more = more
        self.count = count
        self.revision = revision

    def response_bytes(self, header: bytes = b"") -> bytes:
        """The encoded ``RangeResponse``; ``header`` is an encoded
        ``ResponseHeader`` message (without its field tag)."""
        parts = []
        if header:
            parts += [b"\x0a", varint(len(header)), header]
        parts.append(self.kvs_wire)
        if self.more:
            parts.append(b"\x18\x01")
        if self.count:
            parts += [b"\x20", varint(self.count)]
        return b"".join(parts)


class PutResult:
    __slots__ = ("revision", "prev_kv")

    def __init__(self, revision: int, prev_kv: KeyValue | None):
        self.revision = revision
        self.prev_kv = prev_kv

    def __repr__(self) -> str:
        return f"PutResult(revision={self.revision}, prev_kv={self.prev_kv!r})"


class DeleteRangeResult:
    __slots__ = ("revision", "deleted", "prev_kvs")

    def __init__(self, revision: int, deleted: int, prev_kvs: list[KeyValue]):
        self.revision = revision
        self.deleted = deleted
        self.prev_kvs = prev_kvs

    def __repr__(self) -> str:
        return (f"DeleteRangeResult(revision={self.revision}, deleted={self.deleted}, "
                f"prev_kvs={self.prev_kvs!r})")


class TxnResult:
    """``TxnResponse``: ``responses`` holds, in request order, one of
    ``RangeResult``, ``PutResult``, ``DeleteRangeResult``, ``TxnResult`` (or
    None for an empty RequestOp inside a read, which etcd skips)."""

    __slots__ = ("revision", "succeeded", "responses")

    def __init__(self, revision: int, succeeded: bool, responses: list):
        self.revision = revision
        self.succeeded = succeeded
        self.responses = responses

    def __repr__(self) -> str:
        return (f"TxnResult(revision={self.revision}, succeeded={self.succeeded}, "
                f"responses={self.responses!r})")


class CompactResult:
    __slots__ = ("revision",)

    def __init__(self, revision: int):
        self.revision = revision


class LeaseGrantResult:
    __slots__ = ("id", "ttl", "revision")

    def __init__(self, id: int, ttl: int, revision: int):  # noqa: A002
        self.id = id
        self.ttl = ttl
        self.revision = revision


class LeaseRevokeResult:
    __slots__ = ("revision", "deleted")

    def __init__(self, revision: int, deleted: int):
        self.revision = revision
        self.deleted = deleted


class LeaseTimeToLive:
    """``LeaseTimeToLiveResponse``: ``ttl`` is -1 for an unknown lease (etcd)."""

    __slots__ = ("id", "ttl", "granted_ttl", "keys")

    def __init__(self, id: int, ttl: int, granted_ttl: int, keys: list[bytes]):  # noqa: A002
        self.id = id
        self.ttl = ttl
        self.granted_ttl = granted_ttl
        self.keys = keys

    def __repr__(self) -> str:
        return (f"LeaseTimeToLive(id={self.id}, ttl={self.ttl}, granted_ttl={self.granted_ttl}, "
                f"keys={self.keys!r})")


class AlarmMember:
    """``AlarmMember``: ``alarm`` is ALARM_NOSPACE (1) or ALARM_CORRUPT (2)."""

    __slots__ = ("member_id", "alarm")

    def __init__(self, member_id: int, alarm: int):
        self.member_id = member_id
        self.alarm = alarm

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, AlarmMember) and self.member_id == other.member_id
                and self.alarm == other.alarm)

    def __hash__(self) -> int:
        return hash((self.member_id, self.alarm))

    def __repr__(self) -> str:
        return f"AlarmMember(member_id={self.member_id}, alarm={self.alarm})"


class HashResult:
    """``store.hash()``: the CRC-32C (uint32) and the revision it was taken at."""

    __slots__ = ("hash", "revision")

    def __init__(self, hash: int, revision: int):  # noqa: A002
        self.hash = hash
        self.revision = revision

    def __repr__(self) -> str:
        return f"HashResult(hash={self.hash:#010x}, revision={self.revision})"


class HashKVResult:
    __slots__ = ("hash", "revision", "compact_revision")

    def __init__(self, hash: int, revision: int, compact_revision: int):  # noqa: A002
        self.hash = hash
        self.revision = revision
        self.compact_revision = compact_revision

    def __repr__(self) -> str:
        return (f"HashKVResult(hash={self.hash:#x}, revision={self.revision}, "
                f"compact_revision={self.compact_revision})")
