"""Hashes for cross-member corruption checks: ``hash_kv`` (of the MVCC
history) and ``hash_all`` (of every table, etcd's Maintenance.Hash).

``hash_all`` is CRC-32C over each table's name, then every key and value in
key order, tables in name order, exactly as etcd hashes bbolt's buckets. It
skips what legitimately differs between members with the same state: the
applied index (etcd skips ``meta/consistent_index`` and ``meta/term``) and the
schema version (etcd skips ``meta/storage-version``). Everything else is
written by applying the same entries in the same order, so it is equal on
members that have applied the same log, once physical compaction has caught
up on all of them (its progress is part of the state, as in etcd).

``hash_kv``: one hash of the MVCC history, equal on every replica.

The hash covers every change at or below the requested revision, in
revision order, that survives compaction *logically*: changes above the
compact revision, and at or below it only the versions still visible there
(not tombstones, not superseded at or below it). So physical compaction
progress, LMDB page layout, restarts and snapshots do not change it (etcd's
``HashByRev`` follows the same idea with CRC-32C over bbolt's bytes; pykv
hashes a canonical encoding with xxh3-64 instead).
"""

from __future__ import annotations

import struct

import lmdb
import xxhash

from pykv import errors
from pykv._binding import crc32c
from pykv.mvcc import index, schema as s, types as t

#: (table, key) pairs that differ between members with equal state.
HASH_IGNORED = frozenset({(s.TABLE_META, s.META_APPLIED_INDEX), (s.TABLE_META, s.META_SCHEMA)})
_CRC_CHUNK_BYTES = 1 << 20  # CRC one joined chunk at a time: one C call per MiB, not per key


def hash_all(txn: lmdb.Transaction, dbs: dict[bytes, object]) -> int:
    """CRC-32C over every table of ``dbs`` (name -> handle), see module doc."""
    crc = 0
    for name in sorted(dbs):
        crc = crc32c(name, crc)
        ignored = {key for table, key in HASH_IGNORED if table == name}
        parts: list[bytes] = []
        size = 0
        for key, value in txn.cursor(dbs[name]).iternext():
            if ignored and key in ignored:
                continue
            parts.append(key)
            parts.append(value)
            size += len(key) + len(value)
            if size >= _CRC_CHUNK_BYTES:
                crc = crc32c(b"".join(parts), crc)
                parts.clear()
                size = 0
        if parts:
            crc = crc32c(b"".join(parts), crc)
    return crc

_CHANGE = struct.Struct("<QQI")        # main, sub, key length
_PUT = struct.Struct("<BqqqqI")        # kind, create, mod, version, lease, value length
_DELETE = b"\x01"


def hash_kv(txn: lmdb.Transaction, tables: index.Tables, revision: int, current: int,
            compacted: int) -> t.HashKVResult:
    if revision > current:
        raise errors.FutureRevision()
    if 0 < revision < compacted:
        raise errors.Compacted()
    upto = revision or current
    h = xxhash.xxh3_64()
    h.update(b"pykv-mvcc-hash-v1")
    hist = txn.cursor(tables.hist)
    for main, sub, key, rec in index.changes(txn, tables, 1, upto):
        if rec is None:
            continue
        create, mod, version, lease, _sub, extra = s.HDR.unpack_from(rec)
        if main <= compacted and (version == 0 or _superseded(txn, tables, hist, key, main, sub,
                                                              compacted)):
            continue
        h.update(_CHANGE.pack(main, sub, len(key)))
        h.update(key)
        if version == 0:
            h.update(_DELETE)
        else:
            value = rec[s.HDR_BYTES + extra:]
            h.update(_PUT.pack(0, create, mod, version, lease, len(value)))
            h.update(value)
    return t.HashKVResult(h.intdigest(), current, compacted)


def _superseded(txn: lmdb.Transaction, tables: index.Tables, hist: lmdb.Cursor, key: bytes,
                main: int, sub: int, compacted: int) -> bool:
    """Whether the version (main, sub) of ``key`` has a successor at or
    below ``compacted``."""
    group = s.hist_prefix(key)
    target = group + s.rev_bytes(main, sub)
    if hist.set_range(target):
        hk: bytes | None = hist.key()
        if hk == target:
            hk = hist.key() if hist.next() else None
        if hk is not None and len(hk) == len(group) + s.REV_BYTES and hk.startswith(group):
            return s.rev_of(hk)[0] <= compacted
    live = txn.get(s.kv_key(key), db=tables.kv)
    if live is None:
        return False
    _c, mod, _v, _l, live_sub, _e = s.HDR.unpack_from(live)
    return (mod, live_sub) != (main, sub) and mod <= compacted
