"""Build a new store from a given live state: keys with the revisions they
already have (an import from another store, e.g. an etcd snapshot).

What is built is the store as it would be right after compacting everything
below ``compact_revision`` (and finishing that compaction): each key's live
version in ``kv``, its change in ``rev`` (as a compacted store keeps it), no
``hist``; the leases with their granted TTLs; the meta integers. The store
then serves reads at revisions from ``compact_revision`` on, and its next
write takes ``revision + 1``.

Written under a temporary name in batches of write transactions, synced and
renamed into place only when complete (``snapshot.build_store_file``).
"""

from __future__ import annotations

import itertools
from typing import Iterable, Mapping

import lmdb

from pykv.mvcc import index, schema as s, snapshot

#: (key, value, create_revision, mod_revision, sub revision, version, lease id)
LiveRecord = tuple[bytes, bytes, int, int, int, int, int]

BATCH_RECORDS = 10_000


def build_store(path: str, records: Iterable[LiveRecord], leases: Mapping[int, int], *,
                revision: int, compact_revision: int, applied_index: int) -> int:
    """Create the store ``path`` (which must not exist) holding ``records``
    as its live keys and ``leases`` (id -> granted TTL in seconds) as its
    leases; returns the number of keys written.

    The caller's obligations: each key at most once; every ``mod_revision``
    at most ``revision`` and at least 1; ``(mod_revision, sub)`` unique;
    ``create_revision <= mod_revision``; ``version >= 1``. A record's lease
    that is not in ``leases`` stays on the key (as etcd keeps it) but is
    attached to nothing. ``compact_revision`` may be ``schema.NEVER_COMPACTED``
    (-1) for a store that was never compacted."""
    if compact_revision > revision:
        raise ValueError(f"compact revision {compact_revision} above revision {revision}")
    counted = [0]

    def fill(env: lmdb.Environment) -> None:
        with env.begin(write=True) as txn:
            tables = index.Tables(env, txn)
        _write(env, _meta_items(revision, compact_revision, applied_index), tables.meta)
        _write(env, [(s.lease_id_bytes(lid), s.LEASE.pack(ttl, 0))
                     for lid, ttl in sorted(leases.items())], tables.lease)
        iterator = iter(records)
        for batch in iter(lambda: list(itertools.islice(iterator, BATCH_RECORDS)), []):
            kv_items, rev_items, lease_items = _tables_of(batch, leases, revision)
            _write(env, kv_items, tables.kv)
            _write(env, rev_items, tables.rev)
            _write(env, lease_items, tables.lease_keys)
            counted[0] += len(batch)

    snapshot.build_store_file(path, fill)
    return counted[0]


def _meta_items(revision: int, compact_revision: int, applied_index: int
                ) -> list[tuple[bytes, bytes]]:
    items = [(s.META_SCHEMA, s.SCHEMA_VERSION), (s.META_REVISION, revision),
             (s.META_APPLIED_INDEX, applied_index)]
    if compact_revision != s.NEVER_COMPACTED:
        items += [(s.META_COMPACT, compact_revision), (s.META_COMPACT_DONE, compact_revision)]
    return sorted((name, s.pack_i64(n)) for name, n in items)


def _tables_of(batch: list[LiveRecord], leases: Mapping[int, int], revision: int
               ) -> tuple[list, list, list]:
    """The ``kv``, ``rev`` and ``lease_keys`` items of a batch of records,
    each sorted (LMDB then fills pages in order)."""
    kv_items, rev_items, lease_items = [], [], []
    for key, value, create, mod, sub, version, lease in batch:
        if not 1 <= mod <= revision or not 0 <= create <= mod or version < 1:
            raise ValueError(f"key {key[:64]!r}: create {create}, mod {mod}, version "
                             f"{version} do not fit a store at revision {revision}")
        kkey = s.kv_key(key)
        long_key = kkey is not key
        kv_items.append((kkey, s.pack_record(create, mod, version, lease, sub, key, value,
                                             long_key)))
        rev_items.append((s.rev_bytes(mod, sub), key))
        if lease and lease in leases:
            lease_items.append((s.lease_id_bytes(lease) + kkey, key if long_key else b""))
    kv_items.sort()
    rev_items.sort()
    lease_items.sort()
    return kv_items, rev_items, lease_items


def _write(env: lmdb.Environment, items: list[tuple[bytes, bytes]], db: object) -> None:
    """Put ``items`` into ``db`` in one transaction, growing the map when full."""
    if not items:
        return
    while True:
        try:
            with env.begin(write=True, db=db) as txn:
                txn.cursor().putmulti(items)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
