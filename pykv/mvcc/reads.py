"""Range with etcd's semantics (``txn.go`` executeRange + ``kvstore_txn.go``
rangeKeys), over any LMDB transaction: a read transaction or the write batch.

``select`` does the work common to both answers (revision checks, scan,
count, filters, sort, limit) and returns stored ``(key, record)`` pairs;
``to_result`` decodes them into ``KeyValue`` objects, ``to_raw`` encodes them
as protobuf in C for the gRPC server.
"""

from __future__ import annotations

import operator
from typing import Any

import lmdb

from pykv import errors
from pykv.mvcc import index, schema as s, types as t
from pykv.mvcc.requests import check_range, range_bounds

_HDR_unpack = s.HDR.unpack_from
_first = operator.itemgetter(0)
_HB = s.HDR_BYTES

Pairs = list[tuple[bytes, bytes]]


def check_revision(rev: int, current: int, compacted: int) -> int:
    """The revision a read at ``rev`` (<= 0: current) sees; etcd's errors
    for a future or compacted revision (reading *at* the compact revision
    is allowed)."""
    if rev > current:
        raise errors.FutureRevision()
    if rev <= 0:
        return current
    if rev < compacted:
        raise errors.Compacted()
    return rev


_kv_from_pair = t.kv_from_pair


def kv_of(key: bytes, rec: bytes) -> t.KeyValue:
    return _kv_from_pair((key, rec))


def select(txn: lmdb.Transaction, tables: index.Tables, req: Any, current: int,
           compacted: int) -> tuple[Pairs, bool, int]:
    """(pairs, more, count) for a RangeRequest read as of ``current``."""
    check_range(req)
    rev = check_revision(req.revision, current, compacted)
    start, end, single = range_bounds(req.key, req.range_end)
    sort_order = req.sort_order
    sort_target = req.sort_target
    filters = (req.min_mod_revision or req.max_mod_revision or req.min_create_revision
               or req.max_create_revision)
    # etcd fetches everything when it must sort or filter, else limit+1 for `more`.
    fetch = 0 if (sort_order != t.SORT_NONE or filters) else req.limit
    if fetch > 0:
        fetch += 1

    if single:
        rec = (txn.get(s.kv_key(start), db=tables.kv) if rev == current
               else index.get_at(txn, tables, start, rev))
        pairs = [] if rec is None else [(start, rec)]
        count = len(pairs)
    elif end is not None and end <= start:
        pairs, count = [], 0
    elif rev == current:
        if req.count_only:
            return [], False, index.count_live(txn, tables, start, end)
        pairs = index.scan_live(txn, tables, start, end, fetch)
        if fetch and len(pairs) == fetch:
            count = index.count_live(txn, tables, start, end)
        else:
            count = len(pairs)
    else:
        pairs = index.scan_at(txn, tables, start, end, rev)
        count = len(pairs)
        if fetch:
            del pairs[fetch:]
    if req.count_only:
        return [], False, count

    if filters:
        pairs = _filter(pairs, req)
    if sort_target != t.TARGET_KEY and sort_order == t.SORT_NONE:
        sort_order = t.SORT_ASCEND  # etcd: a non-key target with no order sorts ascending
    elif sort_target == t.TARGET_KEY and sort_order == t.SORT_ASCEND:
        sort_order = t.SORT_NONE  # already in key order
    if sort_order != t.SORT_NONE:
        pairs.sort(key=_SORT_KEYS[sort_target], reverse=sort_order == t.SORT_DESCEND)
    more = False
    if req.limit > 0 and len(pairs) > req.limit:
        del pairs[req.limit:]
        more = True
    return pairs, more, count


def _filter(pairs: Pairs, req: Any) -> Pairs:
    out = []
    for item in pairs:
        create, mod = _HDR_unpack(item[1])[:2]
        if req.max_mod_revision and mod > req.max_mod_revision:
            continue
        if req.min_mod_revision and mod < req.min_mod_revision:
            continue
        if req.max_create_revision and create > req.max_create_revision:
            continue
        if req.min_create_revision and create < req.min_create_revision:
            continue
        out.append(item)
    return out


def _value_of(item: tuple[bytes, bytes]) -> bytes:
    rec = item[1]
    return rec[_HB + _HDR_unpack(rec)[5]:]


_SORT_KEYS = {
    t.TARGET_KEY: lambda item: item[0],
    t.TARGET_VERSION: lambda item: _HDR_unpack(item[1])[2],
    t.TARGET_CREATE: lambda item: _HDR_unpack(item[1])[0],
    t.TARGET_MOD: lambda item: _HDR_unpack(item[1])[1],
    t.TARGET_VALUE: _value_of,
}


def execute(txn: lmdb.Transaction, tables: index.Tables, req: Any, current: int,
            compacted: int) -> t.RangeResult:
    pairs, more, count = select(txn, tables, req, current, compacted)
    if req.keys_only:
        pairs = [(key, rec[:_HB + _HDR_unpack(rec)[5]]) for key, rec in pairs]
    # At the current revision only keys over KV_KEY_MAX have records with the
    # key inside; elsewhere (history) KeyValues checks the records itself.
    plain = None
    if not req.revision or req.revision == current:
        plain = not pairs or max(map(len, map(_first, pairs))) <= s.KV_KEY_MAX
    return t.RangeResult(t.KeyValues(pairs, plain), more, count, current)
