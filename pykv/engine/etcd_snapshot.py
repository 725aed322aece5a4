"""Snapshots saved from real etcd (``etcdctl snapshot save``): status, and
the import of their live state into a new pykv store.

The file is etcd's bbolt database (read by ``pykv.mvcc.bbolt``) followed by
the SHA-256 of everything before it (32 bytes; the database is a whole
number of pages, so the size is 32 more than a multiple of 512). A database
copied straight out of ``member/snap/db`` has no SHA-256; as with etcdutl,
restoring it needs ``--skip-hash-check``.

etcd's v3 schema in that file (etcd ``mvcc/kvstore.go``, ``revision.go``,
``lease/lessor.go``; 3.4 to 3.6):

``key``   ``main (8 bytes BE) | '_' | sub (8 bytes BE)``, plus ``'t'`` for a
          tombstone -> ``mvccpb.KeyValue`` (a tombstone's holds the key
          only). Every version since the last compaction, in revision order;
          the newest version at or below the compaction of each live key.
``meta``  ``consistent_index`` (8 bytes BE), ``scheduledCompactRev`` and
          ``finishedCompactRev`` (revision bytes as above), and in 3.5+
          ``term``, ``confState``, ``storageVersion``.
``lease`` ``id (8 bytes BE) -> leasepb.Lease {ID = 1, TTL = 2,
          RemainingTTL = 3}``.
Others (``members``, ``members_removed``, ``cluster``, ``alarm``, ``auth``,
``authUsers``, ``authRoles``) are not imported: the restored directory is a
new one-member cluster, with auth off and no alarm.

The import carries the LIVE state at etcd's current revision R (as etcd
computes it on start: the newest revision in ``key``, or the finished
compaction if that is higher): each key's newest version unless it is a
tombstone, with create/mod revision, version and lease exactly as etcd has
them, and the leases with their granted TTLs (a restore gives every lease
its full TTL again, as etcd does). History below R is not carried: the
store's compact revision is R, so reads below it fail as compacted, and the
next write takes R + 1.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterator

from google.protobuf.message import DecodeError

from pykv import errors
from pykv._binding import crc32c
from pykv.api.mvccpb import kv_pb2
from pykv.mvcc import bbolt, bulkload, schema

SHA256_BYTES = 32
KEY_BUCKET = b"key"
META_BUCKET = b"meta"
LEASE_BUCKET = b"lease"
#: Buckets read by the import; any other is reported as not imported.
IMPORTED_BUCKETS = (KEY_BUCKET, META_BUCKET, LEASE_BUCKET)

REVISION = struct.Struct(">Q1sQ")       # main, '_', sub
TOMBSTONE_MARK = b"t"
_U64 = struct.Struct(">Q")
#: A progress line every this many keys read.
PROGRESS_EVERY_KEYS = 100_000


def database_bytes(path: str, skip_hash_check: bool = False) -> int:
    """The size of the bbolt database in the snapshot ``path``: the file
    without its SHA-256, which is checked (etcdutl's rules and wording)."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise errors.StorageError(f"cannot read snapshot {path}: {exc.strerror}") from None
    if size % 512 == SHA256_BYTES:
        if not skip_hash_check:
            _check_sha256(path, size - SHA256_BYTES)
        return size - SHA256_BYTES
    if size % 512 == 0:
        if not skip_hash_check:
            raise errors.StorageError(
                f"snapshot {path}: snapshot missing hash but --skip-hash-check=false "
                "(a database copied from member/snap/db: pass --skip-hash-check)")
        return size
    raise errors.CorruptionError(
        f"snapshot {path}: size {size} is neither whole pages nor whole pages and a SHA-256 "
        "(truncated?)", path=path)


def _check_sha256(path: str, body_bytes: int) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        left = body_bytes
        while left:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        want = handle.read(SHA256_BYTES)
    if digest.digest() != want:
        raise errors.CorruptionError(
            f"snapshot {path}: expected sha256 {want.hex()}, got {digest.hexdigest()} "
            "(the file is damaged)", path=path)


# --- etcd's encodings ----------------------------------------------------------------


def parse_revision(raw: bytes, path: str) -> tuple[int, int, bool]:
    """(main, sub, is_tombstone) of a ``key`` bucket key."""
    if len(raw) not in (REVISION.size, REVISION.size + 1) or raw[8:9] != b"_" or \
            (len(raw) > REVISION.size and raw[-1:] != TOMBSTONE_MARK):
        raise errors.CorruptionError(
            f"etcd snapshot {path}: {raw[:32].hex()} is not a revision key", path=path)
    main, _sep, sub = REVISION.unpack_from(raw)
    return main, sub, len(raw) > REVISION.size


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _int64(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def parse_lease(raw: bytes) -> tuple[int, int]:
    """(ID, TTL) of a ``leasepb.Lease`` (no generated module for leasepb:
    its fields are varints 1 and 2; others are skipped)."""
    lease_id = ttl = 0
    at = 0
    while at < len(raw):
        tag, at = _varint(raw, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(raw, at)
            if number == 1:
                lease_id = _int64(value)
            elif number == 2:
                ttl = _int64(value)
        elif wire == 2:
            length, at = _varint(raw, at)
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
        if at > len(raw):
            raise ValueError("field runs past the end")
    return lease_id, ttl


# --- status --------------------------------------------------------------------------


@dataclass
class EtcdStatus:
    hash: int
    revision: int
    total_keys: int
    total_size: int


def status(path: str) -> EtcdStatus:
    """``etcdctl snapshot status`` of an etcd snapshot, computed as etcd
    does: CRC-32C over every bucket name and its keys and values, the main
    revision of the last key in ``key``, the number of keys in all buckets,
    and the database size in pages (``Tx.Size``). The SHA-256 is not
    checked (etcd does not either)."""
    with bbolt.BoltFile(path, database_bytes(path, skip_hash_check=True)) as bolt:
        crc = revision = total = 0
        for bucket in bolt.buckets():
            crc = crc32c(bucket.name, crc)
            last = None
            for key, value, _is_bucket in bolt.items(bucket):
                crc = crc32c(value, crc32c(key, crc))
                last = key
                total += 1
            if bucket.name == KEY_BUCKET and last is not None:
                revision = parse_revision(last, path)[0]
        return EtcdStatus(crc, revision, total, bolt.db_size_bytes)


# --- import --------------------------------------------------------------------------


@dataclass
class EtcdImport:
    """What an import carried over (and what it did not)."""
    revision: int
    compact_revision: int
    consistent_index: int
    keys: int = 0
    leases: int = 0
    versions_read: int = 0
    not_imported: list[str] = field(default_factory=list)   # non-empty buckets left out
    auth_enabled: bool = False    # etcd had auth on: pykv serves the import with auth off


def import_store(path: str, db_path: str, *, skip_hash_check: bool = False,
                 progress: Callable[[str], None] | None = None) -> EtcdImport:
    """Build the pykv store ``db_path`` (which must not exist) from the etcd
    snapshot ``path``: its live state at its current revision (see the
    module doc). ``progress`` receives a line every ``PROGRESS_EVERY_KEYS``
    versions read. A damaged file raises ``CorruptionError`` and leaves
    nothing at ``db_path``."""
    with bbolt.BoltFile(path, database_bytes(path, skip_hash_check)) as bolt:
        buckets = {b.name: b for b in bolt.buckets()}
        if KEY_BUCKET not in buckets or META_BUCKET not in buckets:
            raise errors.StorageError(f"{path} is a bbolt file but not an etcd v3 database "
                                      f"(no 'key' or 'meta' bucket)")
        result = _read_meta(bolt, buckets[META_BUCKET], path)
        leases = _read_leases(bolt, buckets.get(LEASE_BUCKET), path)
        newest = next(bolt.items(buckets[KEY_BUCKET], reverse=True), None)
        if newest is not None:
            result.revision = max(result.revision, parse_revision(newest[0], path)[0])
        if result.revision > 1 or result.compact_revision != schema.NEVER_COMPACTED:
            result.compact_revision = result.revision
        result.revision = max(result.revision, 1)
        result.leases = len(leases)
        result.auth_enabled = _auth_enabled(bolt, buckets.get(b"auth"))
        result.not_imported = sorted(name.decode(errors="replace") for name in buckets
                                     if name not in IMPORTED_BUCKETS and
                                     next(bolt.items(buckets[name]), None) is not None)
        result.keys = bulkload.build_store(
            db_path, _live_records(bolt, buckets[KEY_BUCKET], path, result, progress), leases,
            revision=result.revision, compact_revision=result.compact_revision,
            applied_index=result.consistent_index)
    return result


def _read_meta(bolt: bbolt.BoltFile, bucket: bbolt.Bucket, path: str) -> EtcdImport:
    meta = {key: value for key, value, _b in bolt.items(bucket)}
    index_raw = meta.get(b"consistent_index", b"")
    consistent_index = _U64.unpack(index_raw)[0] if len(index_raw) == 8 else 0
    finished = meta.get(b"finishedCompactRev")
    compact = parse_revision(finished, path)[0] if finished else schema.NEVER_COMPACTED
    return EtcdImport(revision=max(compact, 1), compact_revision=compact,
                      consistent_index=consistent_index)


def _auth_enabled(bolt: bbolt.BoltFile, bucket: bbolt.Bucket | None) -> bool:
    if bucket is None:
        return False
    return any(key == b"authEnabled" and value == b"\x01" for key, value, _b in bolt.items(bucket))


def _read_leases(bolt: bbolt.BoltFile, bucket: bbolt.Bucket | None, path: str
                 ) -> dict[int, int]:
    leases: dict[int, int] = {}
    if bucket is None:
        return leases
    for key, value, _b in bolt.items(bucket):
        try:
            lease_id, ttl = parse_lease(value)
        except ValueError as exc:
            raise errors.CorruptionError(f"etcd snapshot {path}: lease {key.hex()}: {exc}",
                                         path=path) from None
        leases[lease_id] = ttl
    return leases


def _live_records(bolt: bbolt.BoltFile, bucket: bbolt.Bucket, path: str, result: EtcdImport,
                  progress: Callable[[str], None] | None) -> Iterator[bulkload.LiveRecord]:
    """Each key's newest version, unless a tombstone: walking ``key``
    backwards, the first version met of a key is its newest."""
    seen: set[bytes] = set()
    parse = kv_pb2.KeyValue.FromString
    for raw_rev, value, _b in bolt.items(bucket, reverse=True):
        main, sub, tombstone = parse_revision(raw_rev, path)
        try:
            kv = parse(value)
        except DecodeError as exc:
            raise errors.CorruptionError(f"etcd snapshot {path}: revision {main}.{sub}: bad "
                                         f"mvccpb.KeyValue ({exc})", path=path) from None
        result.versions_read += 1
        if progress is not None and result.versions_read % PROGRESS_EVERY_KEYS == 0:
            progress(f"read {result.versions_read} versions, {len(seen)} keys, at revision "
                     f"{main}")
        key = kv.key
        if key in seen:
            continue
        seen.add(key)
        if tombstone:
            continue
        if not key or kv.mod_revision != main or not 0 < kv.create_revision <= main or \
                kv.version < 1:
            raise errors.CorruptionError(
                f"etcd snapshot {path}: revision {main}.{sub} holds a KeyValue that does not "
                f"fit it (key {key[:64]!r}, create_revision {kv.create_revision}, "
                f"mod_revision {kv.mod_revision}, version {kv.version})", path=path)
        yield key, kv.value, kv.create_revision, main, sub, kv.version, kv.lease
