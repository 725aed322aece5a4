"""Every LMDB table of the MVCC store, and the byte layout of what it holds.

One LMDB environment (one file, ``subdir=False``) with these named tables:

``kv``    live keys only: ``kv_key(key) -> record``. A point get or a range at
          the current revision reads this table alone.
``hist``  superseded versions and tombstones: ``hist_key(key, rev) -> record``.
          A version moves here when it is overwritten or deleted, so every
          value is stored once. Ordered by key, then revision.
``rev``   the change log: ``rev_bytes(main, sub) -> key`` for every change,
          in revision order (watch replay, compaction, hash_kv).
``lease`` ``id (8 bytes BE) -> LEASE record`` for every granted lease.
``lease_keys`` ``id (8 bytes BE) + kv_key(key) -> key if long else b""``.
``alarm`` ``member id (8 BE) + alarm type (4 BE) -> b""``.
``meta``  named integers (``META_*``), 8 bytes little-endian each.

Auxiliary tables (``AUX_TABLES``): plain ``key -> value`` tables that the
server keeps in the same file and the same write transactions as the MVCC
state, outside the revisioned key space (etcd's ``members``,
``members_removed``, ``cluster``, ``auth``, ``authUsers``, ``authRoles``
buckets). The store gives them no meaning; they are in snapshots and in
``Store.hash()``. Keys are 1 to ``AUX_KEY_MAX`` bytes.

Records (``kv`` and ``hist``) share one layout: a fixed 40-byte header

    create_revision q | mod_revision q | version q | lease q | sub I | key_extra I

(little-endian), then ``key_extra`` bytes holding the full key when the key
is too long to be its own LMDB key (0 otherwise), then the value. A tombstone
in ``hist`` has version 0 and create_revision 0 (an etcd DELETE event's kv).
The fixed header is what makes a point get cheap: the value is
``record[40:]`` for an ordinary key, and the numbers are one
``unpack_from``.

Long keys. LMDB keys are at most 511 bytes while etcd keys go to ~1.5 MiB.
A key longer than ``KV_KEY_MAX`` is stored under ``key[:KV_KEY_MAX] +
blake2b-128(key)``. Such keys still sort correctly against every other key
except the long keys sharing the same first ``KV_KEY_MAX`` bytes, which sort by
digest among themselves; scans collect such groups and sort them by full key
(see ``pykv.mvcc.index``). ``hist`` keys escape the key (``00 -> 00 ff``, then
the terminator ``00 01``) so that key-then-revision order holds for keys that
are prefixes of each other; escaped keys longer than ``HIST_KEY_MAX`` become
``prefix + 00 02 + digest``.
"""

from __future__ import annotations

import hashlib
import struct

from pykv.mvcc import types as _types

SCHEMA_VERSION = 1

# --- tables ----------------------------------------------------------------

TABLE_KV = b"kv"
TABLE_HIST = b"hist"
TABLE_REV = b"rev"
TABLE_LEASE = b"lease"
TABLE_LEASE_KEYS = b"lease_keys"
TABLE_ALARM = b"alarm"
TABLE_META = b"meta"

#: The auxiliary tables by the name the API takes (``w.aux_put("members", ...)``).
AUX_TABLES: dict[str, bytes] = {
    "members": b"aux.members",
    "members_removed": b"aux.members_removed",
    "cluster": b"aux.cluster",
    "auth": b"aux.auth",
    "auth_users": b"aux.auth_users",
    "auth_roles": b"aux.auth_roles",
}
AUX_KEY_MAX = 511  # LMDB's key limit

#: Every table with its stable id (the snapshot stream names tables by id).
TABLES: dict[bytes, int] = {
    TABLE_META: 1,
    TABLE_KV: 2,
    TABLE_HIST: 3,
    TABLE_REV: 4,
    TABLE_LEASE: 5,
    TABLE_LEASE_KEYS: 6,
    TABLE_ALARM: 7,
    AUX_TABLES["members"]: 8,
    AUX_TABLES["members_removed"]: 9,
    AUX_TABLES["cluster"]: 10,
    AUX_TABLES["auth"]: 11,
    AUX_TABLES["auth_users"]: 12,
    AUX_TABLES["auth_roles"]: 13,
}
TABLE_BY_ID: dict[int, bytes] = {v: k for k, v in TABLES.items()}

# --- meta keys (values: 8-byte little-endian signed ints) -------------------

META_SCHEMA = b"schema_version"
META_REVISION = b"revision"              # current main revision (1 in a new store)
META_COMPACT = b"compact_revision"       # logical compaction: reads below it fail
                                         # (absent: never compacted, NEVER_COMPACTED)
META_COMPACT_DONE = b"compact_done"      # physical compaction finished up to here
META_APPLIED_INDEX = b"applied_index"    # last applied Raft entry (etcd's consistent index)
META_LEASE_SEQ = b"lease_seq"            # counter for server-generated lease ids

# etcd's compactMainRev before the first compaction: compacting to revision 0
# is allowed once, then refused as any compaction at or below the last one.
NEVER_COMPACTED = -1

_I64 = struct.Struct("<q")


def pack_i64(n: int) -> bytes:
    return _I64.pack(n)


def unpack_i64(b: bytes) -> int:
    return _I64.unpack(b)[0]


# --- revisions ---------------------------------------------------------------

REV = struct.Struct(">QQ")  # main, sub: big-endian so that byte order is revision order
REV_BYTES = REV.size


def rev_bytes(main: int, sub: int = 0) -> bytes:
    return REV.pack(main, sub)


def rev_of(b: bytes) -> tuple[int, int]:
    return REV.unpack_from(b, len(b) - REV_BYTES)


# --- records -----------------------------------------------------------------

HDR = struct.Struct("<qqqqII")  # create, mod, version, lease, sub, key_extra
HDR_BYTES = HDR.size
assert HDR.format == _types._HDR.format  # KeyValue decodes records itself


def pack_record(create: int, mod: int, version: int, lease: int, sub: int, key: bytes,
                value: bytes, long_key: bool) -> bytes:
    if long_key:
        return HDR.pack(create, mod, version, lease, sub, len(key)) + key + value
    return HDR.pack(create, mod, version, lease, sub, 0) + value


def pack_tombstone(mod: int, sub: int, key: bytes, long_key: bool) -> bytes:
    if long_key:
        return HDR.pack(0, mod, 0, 0, sub, len(key)) + key
    return HDR.pack(0, mod, 0, 0, sub, 0)


def record_value(rec: bytes) -> bytes:
    extra = HDR.unpack_from(rec)[5]
    return rec[HDR_BYTES + extra:]


def record_key(rec: bytes, lmdb_key: bytes) -> bytes:
    """The full key of a ``kv`` record stored under ``lmdb_key``."""
    extra = HDR.unpack_from(rec)[5]
    if extra:
        return rec[HDR_BYTES:HDR_BYTES + extra]
    return lmdb_key


# --- lease records ------------------------------------------------------------

LEASE = struct.Struct("<qq")  # ttl (granted, after the minimum is applied), remaining ttl (0: unknown)
LEASE_ID = struct.Struct(">q")


def lease_id_bytes(lease_id: int) -> bytes:
    return LEASE_ID.pack(lease_id)


# --- alarms ------------------------------------------------------------------

ALARM = struct.Struct(">QI")  # member id, alarm type

# --- keys ----------------------------------------------------------------------

KV_KEY_MAX = 480      # longer keys become key[:480] + 16-byte digest (496 <= 511)
HIST_KEY_MAX = 448    # escaped keys longer than this become prefix + 00 02 + digest
DIGEST_BYTES = 16
_HIST_SHORT_END = b"\x00\x01"
_HIST_LONG_MARK = b"\x00\x02"


def _digest(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=DIGEST_BYTES).digest()


def kv_key(key: bytes) -> bytes:
    """The LMDB key of ``key`` in ``kv`` (and in ``lease_keys`` after the id)."""
    if len(key) <= KV_KEY_MAX:
        return key
    return key[:KV_KEY_MAX] + _digest(key)


def is_long_kv_key(lmdb_key: bytes) -> bool:
    return len(lmdb_key) > KV_KEY_MAX


def hist_prefix(key: bytes) -> bytes:
    """The part of a ``hist`` key before the revision: equal for all versions
    of ``key`` and for no other key."""
    escaped = key.replace(b"\x00", b"\x00\xff")
    if len(escaped) + 2 <= HIST_KEY_MAX:
        return escaped + _HIST_SHORT_END
    return _hist_long_prefix(escaped) + _HIST_LONG_MARK + _digest(key)


def hist_key(key: bytes, main: int, sub: int) -> bytes:
    return hist_prefix(key) + REV.pack(main, sub)


def _hist_long_prefix(escaped: bytes) -> bytes:
    cut = escaped[:HIST_KEY_MAX]
    if cut.endswith(b"\x00"):  # never split an escape pair
        cut = escaped[:HIST_KEY_MAX + 1]
    return cut


def hist_is_long(hkey: bytes) -> bool:
    """Short-form hist keys are at most HIST_KEY_MAX + 16 bytes long, long-form
    ones at least HIST_KEY_MAX + 34: the length alone tells them apart."""
    return len(hkey) > HIST_KEY_MAX + REV_BYTES


def hist_short_key(hkey: bytes) -> bytes:
    """The key of a short-form ``hist`` key (callers check ``hist_is_long``)."""
    return hkey[:-REV_BYTES - 2].replace(b"\x00\xff", b"\x00")


def hist_group(hkey: bytes) -> bytes:
    """What all versions of one key share: the ``hist`` key minus revision."""
    return hkey[:-REV_BYTES]


def kv_bounds(start: bytes, end: bytes | None) -> tuple[bytes, bytes | None]:
    """LMDB key bounds [lo, hi) of ``kv`` covering the keys in [start, end)
    (``end`` None: unbounded). A long bound widens to its whole digest group,
    so scans must still compare full keys against [start, end)."""
    lo = start if len(start) <= KV_KEY_MAX else start[:KV_KEY_MAX]
    if end is None:
        return lo, None
    hi = end if len(end) <= KV_KEY_MAX else end[:KV_KEY_MAX] + b"\xff" * (DIGEST_BYTES + 1)
    return lo, hi


def hist_bounds(start: bytes, end: bytes | None) -> tuple[bytes, bytes | None]:
    """``hist`` key bounds [lo, hi) covering every version of the keys in
    [start, end); like ``kv_bounds``, long bounds widen to their group."""
    return _hist_bound(start, upper=False), None if end is None else _hist_bound(end, upper=True)


def _hist_bound(key: bytes, upper: bool) -> bytes:
    escaped = key.replace(b"\x00", b"\x00\xff")
    if len(escaped) + 2 <= HIST_KEY_MAX:
        return escaped + _HIST_SHORT_END
    return _hist_long_prefix(escaped) + (b"\x00\x03" if upper else _HIST_LONG_MARK)
