"""Reads over the ``kv``/``hist``/``rev`` tables inside one LMDB transaction.

These functions answer "what did key K hold at revision R" and "which keys
were live in [start, end) at R". They are used both by read transactions and
by the write batch (which reads its own writes, as etcd 3.4 does).

Scans return ``(key, record)`` pairs in key order, where ``record`` is a
stored record (see ``pykv.mvcc.schema``). Long keys (over
``schema.KV_KEY_MAX`` bytes) are rare; when one is met, the scan falls back to
collecting and sorting by full key so that the order stays exact.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from typing import Iterator

import lmdb

from pykv.mvcc import schema as s

_HDR_unpack = s.HDR.unpack_from
_REV_pack = s.REV.pack
_HB = s.HDR_BYTES
_RB = s.REV_BYTES
_KMAX = s.KV_KEY_MAX
_first = operator.itemgetter(0)
_COUNT_CHUNK = 1024
_SCAN_FIRST_CHUNK = 16   # a point-ish range reads little past its end
_SCAN_CHUNK = 128


class Tables:
    """The open LMDB table handles (one set per environment)."""

    __slots__ = ("kv", "hist", "rev", "lease", "lease_keys", "alarm", "meta", "by_name", "aux")

    def __init__(self, env: lmdb.Environment, txn: lmdb.Transaction | None):
        """Opens (creating them) every table in the write transaction
        ``txn``; with None (read-only environments), opens the existing
        tables, each in its own short transaction (py-lmdb drops handles
        opened in a read transaction it recycles)."""
        self.by_name = {}
        for name in s.TABLES:
            self.by_name[name] = env.open_db(name, txn=txn, create=txn is not None)
        self.kv = self.by_name[s.TABLE_KV]
        self.hist = self.by_name[s.TABLE_HIST]
        self.rev = self.by_name[s.TABLE_REV]
        self.lease = self.by_name[s.TABLE_LEASE]
        self.lease_keys = self.by_name[s.TABLE_LEASE_KEYS]
        self.alarm = self.by_name[s.TABLE_ALARM]
        self.meta = self.by_name[s.TABLE_META]
        self.aux = {name: self.by_name[table] for name, table in s.AUX_TABLES.items()}

    def aux_table(self, name: str) -> object:
        """The handle of auxiliary table ``name``; ValueError if unknown."""
        try:
            return self.aux[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown auxiliary table {name!r}: the tables are "
                             f"{', '.join(s.AUX_TABLES)}") from None


# --- point reads ---------------------------------------------------------------


def get_at(txn: lmdb.Transaction, tables: Tables, key: bytes, rev: int) -> bytes | None:
    """The record of ``key`` as of revision ``rev`` (None if absent then).
    Callers check ``rev`` against the compaction revision first."""
    rec = txn.get(s.kv_key(key), db=tables.kv)
    if rec is not None and _HDR_unpack(rec)[1] <= rev:
        return rec
    rec = latest_hist(txn, tables, s.hist_prefix(key), _REV_pack(rev + 1, 0))
    if rec is None or _HDR_unpack(rec)[2] == 0:  # none, or a tombstone
        return None
    return rec


def latest_hist(txn: lmdb.Transaction, tables: Tables, group: bytes,
                before: bytes) -> bytes | None:
    """The newest ``hist`` record of a key group at a revision strictly
    before ``before`` (16 revision bytes), tombstones included."""
    cur = txn.cursor(tables.hist)
    if cur.set_range(group + before):
        moved = cur.prev()
    else:
        moved = cur.last()
    if not moved:
        return None
    hk = cur.key()
    if len(hk) != len(group) + _RB or not hk.startswith(group):
        return None
    return cur.value()


def record_at_revision(txn: lmdb.Transaction, tables: Tables, key: bytes, main: int,
                       sub: int) -> bytes | None:
    """The record written by the change (main, sub) to ``key``: the live
    version, or the ``hist`` copy once superseded (None once compacted)."""
    rec = txn.get(s.kv_key(key), db=tables.kv)
    if rec is not None:
        hdr = _HDR_unpack(rec)
        if hdr[1] == main and hdr[4] == sub:
            return rec
    return txn.get(s.hist_key(key, main, sub), db=tables.hist)


def prev_record(txn: lmdb.Transaction, tables: Tables, key: bytes, main: int,
                sub: int) -> bytes | None:
    """The version of ``key`` just before change (main, sub), or None (absent
    before, a tombstone before, or compacted away)."""
    rec = latest_hist(txn, tables, s.hist_prefix(key), _REV_pack(main, sub))
    if rec is None or _HDR_unpack(rec)[2] == 0:
        return None
    return rec


# --- scans ------------------------------------------------------------------------


def _full_key(lmdb_key: bytes, rec: bytes) -> bytes:
    extra = _HDR_unpack(rec)[5]
    return rec[_HB:_HB + extra] if extra else lmdb_key


def _exact(pairs: list[tuple[bytes, bytes]], start: bytes,
           end: bytes | None) -> list[tuple[bytes, bytes]]:
    """Resolve full keys, drop those outside [start, end), sort by key."""
    out = []
    for k, rec in pairs:
        full = _full_key(k, rec)
        if full >= start and (end is None or full < end):
            out.append((full, rec))
    out.sort(key=lambda item: item[0])
    return out


def scan_live(txn: lmdb.Transaction, tables: Tables, start: bytes, end: bytes | None,
              limit: int = 0) -> list[tuple[bytes, bytes]]:
    """Live keys in [start, end) (end None: unbounded), at most ``limit``
    (0: all), as (key, record) in key order."""
    return scan_live_checked(txn, tables, start, end, limit)[0]


def scan_live_checked(txn: lmdb.Transaction, tables: Tables, start: bytes, end: bytes | None,
                      limit: int = 0) -> tuple[list[tuple[bytes, bytes]], bool]:
    """``scan_live`` and whether every key found is short (no record holds
    its key: ``KeyValues`` may slice values without looking)."""
    lo, hi = s.kv_bounds(start, end)
    cur = txn.cursor(tables.kv)
    if not cur.set_range(lo):
        return [], True
    items = cur.iternext()
    if limit:
        items = itertools.islice(items, limit)
    out = list(items) if hi is None else _take_below(items, hi)
    widened = len(start) > _KMAX or (end is not None and len(end) > _KMAX)
    if widened or (out and max(map(len, map(_first, out))) > _KMAX):
        if limit:  # a digest group may straddle the limit: take it whole
            return _exact(scan_live(txn, tables, start, end), start, end)[:limit], False
        return _exact(out, start, end), False
    return out, True


def _take_below(items: Iterator[tuple[bytes, bytes]], hi: bytes) -> list[tuple[bytes, bytes]]:
    """The leading items whose key is below ``hi``: listed a chunk at a time
    and the last chunk bisected, at C speed (a Python loop comparing every
    key costs twice as much); reads at most a chunk past ``hi``."""
    out: list[tuple[bytes, bytes]] = []
    size = _SCAN_FIRST_CHUNK
    bound = (hi,)  # sorts before every (hi, value) pair: bisect finds the first key >= hi
    while True:
        chunk = list(itertools.islice(items, size))
        if chunk and chunk[-1] >= bound:
            out += chunk[:bisect.bisect_left(chunk, bound)]
            return out
        out += chunk
        if len(chunk) < size:
            return out
        size = _SCAN_CHUNK


def count_live(txn: lmdb.Transaction, tables: Tables, start: bytes, end: bytes | None) -> int:
    """The number of live keys in [start, end).

    Counts whichever side is smaller: the keys inside, or the keys outside
    (below ``start`` and from ``end`` on) subtracted from the table's entry
    count, walking both a chunk at a time until one side ends. A prefix
    holding most of the store (etcdctl check perf's keys) costs as little as
    a prefix holding few. Chunks are listed and bisected at C speed."""
    if start == b"\x00" and end is None:
        return txn.stat(tables.kv)["entries"]
    if len(start) > _KMAX or (end is not None and len(end) > _KMAX):
        return len(scan_live(txn, tables, start, end))
    lo, hi = s.kv_bounds(start, end)
    inside_cur = txn.cursor(tables.kv)
    if not inside_cur.set_range(lo):
        return 0
    inside = inside_cur.iternext(values=False)
    below_cur = txn.cursor(tables.kv)
    below_cur.set_range(lo)
    below = below_cur.iterprev(values=False)
    next(below)  # the first key at or after lo: not below it
    above_cur = txn.cursor(tables.kv)
    above = above_cur.iternext(values=False) if hi is not None and above_cur.set_range(hi) \
        else iter(())
    count = outside = 0
    outside_left = [below, above]
    while True:
        chunk = list(itertools.islice(inside, _COUNT_CHUNK))
        if hi is not None and chunk and chunk[-1] >= hi:
            return count + bisect.bisect_left(chunk, hi)
        count += len(chunk)
        if len(chunk) < _COUNT_CHUNK:
            return count
        for side in list(outside_left):
            n = len(list(itertools.islice(side, _COUNT_CHUNK)))
            outside += n
            if n < _COUNT_CHUNK:
                outside_left.remove(side)
        if not outside_left:
            return txn.stat(tables.kv)["entries"] - outside


def scan_at(txn: lmdb.Transaction, tables: Tables, start: bytes, end: bytes | None,
            rev: int) -> list[tuple[bytes, bytes]]:
    """Keys live at revision ``rev`` in [start, end), with their records then,
    in key order. Reads every version group in the range once."""
    found: dict[bytes, bytes] = {}
    for key, rec in scan_live(txn, tables, start, end):
        if _HDR_unpack(rec)[1] <= rev:
            found[key] = rec  # unchanged since rev; otherwise hist decides
    lo, hi = s.hist_bounds(start, end)
    cur = txn.cursor(tables.hist)
    pos = lo
    bound = _REV_pack(rev + 1, 0)
    while cur.set_range(pos):
        hk = cur.key()
        if hi is not None and hk >= hi:
            break
        group = hk[:-_RB]
        pos = group + b"\xff" * (_RB + 1)  # past every version of this key
        if cur.set_range(group + bound):
            moved = cur.prev()
        else:
            moved = cur.last()
        if not moved:
            continue
        hk = cur.key()
        if len(hk) != len(group) + _RB or not hk.startswith(group):
            continue  # no version of this key at or before rev
        rec = cur.value()
        if s.hist_is_long(hk):
            key = _full_key(hk, rec)
        else:
            key = s.hist_short_key(hk)
        if key in found or key < start or (end is not None and key >= end):
            continue
        if _HDR_unpack(rec)[2] == 0:
            continue  # deleted at rev
        found[key] = rec
    return sorted(found.items())


def changes(txn: lmdb.Transaction, tables: Tables, from_rev: int,
            to_rev: int) -> Iterator[tuple[int, int, bytes, bytes | None]]:
    """(main, sub, key, record) of every change with from_rev <= main <=
    to_rev, in revision order. ``record`` is None when compaction removed it."""
    cur = txn.cursor(tables.rev)
    if not cur.set_range(_REV_pack(from_rev, 0)):
        return
    end = _REV_pack(to_rev + 1, 0)
    for rb, key in cur.iternext():
        if rb >= end:
            break
        main, sub = s.REV.unpack(rb)
        yield main, sub, key, record_at_revision(txn, tables, key, main, sub)


# --- auxiliary tables -------------------------------------------------------------------


def check_aux_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"auxiliary table keys are bytes, not {type(key).__name__}")
    if not 0 < len(key) <= s.AUX_KEY_MAX:
        raise ValueError(f"auxiliary table keys are 1 to {s.AUX_KEY_MAX} bytes, "
                         f"not {len(key)}")


def aux_items(txn: lmdb.Transaction, db: object, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
    """Every (key, value) of an auxiliary table whose key starts with
    ``prefix``, in key order."""
    cur = txn.cursor(db)
    if not (cur.set_range(prefix) if prefix else cur.first()):
        return []
    out = []
    for key, value in cur.iternext():
        if not key.startswith(prefix):
            break
        out.append((key, value))
    return out
