"""Range with etcd's semantics (``txn.go`` executeRange + ``kvstore_txn.go``
rangeKeys), over any LMDB transaction: a read transaction or the write batch.

``select`` does the work common to both answers (revision checks, scan,
count, filters, sort, limit) and returns stored ``(key, record)`` pairs;
``to_result`` decodes them into ``KeyValue`` objects, ``to_raw`` encodes them
as protobuf in C for the gRPC server.
"""

from __future__ import annotations

import bisect
import operator
from typing import Any

import lmdb

from pykv import errors
from pykv.mvcc import index, schema as s, types as t
from pykv.mvcc.requests import check_range, check_txn, range_bounds

_HDR_unpack = s.HDR.unpack_from
_first = operator.itemgetter(0)
_HB = s.HDR_BYTES
_KMAX = s.KV_KEY_MAX

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


Selected = tuple[Pairs, bool, int, "bool | None"]


def select(txn: lmdb.Transaction, tables: index.Tables, req: Any, current: int,
           compacted: int) -> Selected:
    """(pairs, more, count, plain) for a RangeRequest read as of ``current``;
    ``plain``: no record of ``pairs`` holds its key (None: not known)."""
    selected = _select(txn, tables, req, current, compacted, None)
    assert selected is not None
    return selected


def _select(txn: lmdb.Transaction, tables: index.Tables, req: Any, current: int,
            compacted: int, recent: dict[bytes, bytes | None] | None) -> Selected | None:
    """``select``, with ``recent`` (a read at the current revision only):
    key -> live record (None: deleted) of what was published since the
    commit ``txn`` sees, laid over it (deferred commits). None when that
    cannot be done (long keys): read a commit holding everything instead."""
    check_range(req)
    rev = check_revision(req.revision, current, compacted)
    if recent:
        assert rev == current, "recent writes overlay reads at the current revision only"
    start, end, single = range_bounds(req.key, req.range_end)
    sort_order = req.sort_order
    sort_target = req.sort_target
    filters = (req.min_mod_revision or req.max_mod_revision or req.min_create_revision
               or req.max_create_revision)
    # etcd fetches everything when it must sort or filter, else limit+1 for `more`.
    fetch = 0 if (sort_order != t.SORT_NONE or filters) else req.limit
    if fetch > 0:
        fetch += 1

    plain = None
    overlay = recent and not single and overlay_in(recent, start, end)
    if single:
        if recent and start in recent:
            rec = recent[start]
        else:
            rec = (txn.get(s.kv_key(start), db=tables.kv) if rev == current
                   else index.get_at(txn, tables, start, rev))
        pairs = [] if rec is None else [(start, rec)]
        count = len(pairs)
    elif end is not None and end <= start:
        pairs, count = [], 0
    elif overlay:
        scanned = _scan_overlaid(txn, tables, start, end, fetch, overlay, req.count_only)
        if scanned is None:
            return None
        pairs, count = scanned
        plain = True
    elif rev == current:
        if req.count_only:
            return [], False, index.count_live(txn, tables, start, end), True
        pairs, plain = index.scan_live_checked(txn, tables, start, end, fetch)
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
        return [], False, count, True

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
    return pairs, more, count, plain


def overlay_in(recent: dict[bytes, bytes | None], start: bytes, end: bytes | None
               ) -> list[tuple[bytes, bytes | None]]:
    """The entries of ``recent`` in [start, end) (end None: unbounded), in
    key order."""
    if end is None:
        keys = [key for key in recent if key >= start]
    else:
        keys = [key for key in recent if start <= key < end]
    keys.sort()
    return [(key, recent[key]) for key in keys]


def _scan_overlaid(txn: lmdb.Transaction, tables: index.Tables, start: bytes,
                   end: bytes | None, fetch: int, overlay: list[tuple[bytes, bytes | None]],
                   count_only: bool) -> tuple[Pairs, int] | None:
    """``select``'s scan and count at the current revision, with ``overlay``
    (sorted, in range, not empty) laid over the committed live keys; None if
    a key is too long for the kv table to hold it as is (its order there is
    not the keys' order: see ``index.scan_live_checked``)."""
    if len(start) > _KMAX or (end is not None and len(end) > _KMAX) or \
            max(len(key) for key, _rec in overlay) > _KMAX:
        return None
    kv = tables.kv

    def count_all() -> int:
        # The committed count, plus the keys the overlay makes live, minus
        # those it deletes (one lookup per overlaid key: there are few).
        count = index.count_live(txn, tables, start, end)
        for key, rec in overlay:
            count += (rec is not None) - (txn.get(key, None, kv) is not None)
        return count

    if count_only:
        return [], count_all()
    # The overlay deletes at most len(overlay) of the committed keys: fetch
    # that many more, and the first ``fetch`` merged are the right ones.
    extra = len(overlay)
    committed, plain = index.scan_live_checked(txn, tables, start, end,
                                               fetch + extra if fetch else 0)
    if not plain:
        return None
    pairs = _merge(committed, overlay)
    if fetch and len(committed) == fetch + extra:
        count = count_all()
    else:
        count = len(pairs)
    if fetch:
        del pairs[fetch:]
    return pairs, count


def _merge(committed: Pairs, overlay: list[tuple[bytes, bytes | None]]) -> Pairs:
    """``committed`` (key order) with ``overlay`` (key order) laid over it:
    an overlay record replaces or adds its key, None removes it. Spliced
    at C speed, a bisect per overlay entry."""
    out: Pairs = []
    pos = 0
    size = len(committed)
    for key, rec in overlay:
        at = bisect.bisect_left(committed, (key,), pos)  # (key,) sorts just before (key, rec)
        out += committed[pos:at]
        if at < size and committed[at][0] == key:
            at += 1
        if rec is not None:
            out.append((key, rec))
        pos = at
    out += committed[pos:]
    return out


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
    return _result(select(txn, tables, req, current, compacted), req, current)


def execute_overlaid(txn: lmdb.Transaction, tables: index.Tables, req: Any, current: int,
                     compacted: int, recent: dict[bytes, bytes | None]) -> t.RangeResult | None:
    """``execute`` at the current revision ``current`` with ``recent`` laid
    over ``txn`` (see ``_select``); None when that cannot be done."""
    selected = _select(txn, tables, req, current, compacted, recent)
    return None if selected is None else _result(selected, req, current)


def _result(selected: Selected, req: Any, current: int) -> t.RangeResult:
    pairs, more, count, plain = selected
    if req.keys_only:
        pairs = [(key, rec[:_HB + _HDR_unpack(rec)[5]]) for key, rec in pairs]
    # At the current revision only keys over KV_KEY_MAX have records with the
    # key inside; elsewhere (history) KeyValues checks the records itself.
    if plain is None and (not req.revision or req.revision == current):
        plain = not pairs or max(map(len, map(_first, pairs))) <= s.KV_KEY_MAX
    return t.RangeResult(t.KeyValues(pairs, plain), more, count, current)


# --- Txn pieces shared by the write batch and read-only txns ------------------------------


def live_pairs(txn: lmdb.Transaction, tables: index.Tables, key: bytes,
               range_end: bytes) -> Pairs:
    """(key, record) of the live keys a request's key/range_end cover."""
    start, end, single = range_bounds(key, range_end)
    if single:
        rec = txn.get(s.kv_key(start), db=tables.kv)
        return [] if rec is None else [(start, rec)]
    if end is not None and end <= start:
        return []
    return index.scan_live(txn, tables, start, end)


def compare_path(txn: lmdb.Transaction, tables: index.Tables, req: Any) -> list:
    """[succeeded, nested paths...] for a txn tree, every compare evaluated
    on the state ``txn`` sees (etcd's compareToPath: before any op runs)."""
    succeeded = all(compare(txn, tables, cmp) for cmp in req.compare)
    path: list = [succeeded]
    for op in (req.success if succeeded else req.failure):
        if op.WhichOneof("request") == "request_txn":
            path.append(compare_path(txn, tables, op.request_txn))
    return path


def compare(txn: lmdb.Transaction, tables: index.Tables, cmp: Any) -> bool:
    """etcd's applyCompare: every key in the range must pass; a missing key
    compares as zeros, except that a VALUE compare on it always fails."""
    pairs = live_pairs(txn, tables, cmp.key, cmp.range_end)
    target = cmp.target
    if not pairs:
        if target == t.CMP_VALUE:
            return False
        return _compare_one(cmp, target, 0, 0, 0, 0, b"")
    for _key, rec in pairs:
        create, mod, version, lease, _sub, extra = _HDR_unpack(rec)
        value = rec[_HB + extra:] if target == t.CMP_VALUE else b""
        if not _compare_one(cmp, target, create, mod, version, lease, value):
            return False
    return True


def _compare_one(cmp: Any, target: int, create: int, mod: int, version: int, lease: int,
                 value: bytes) -> bool:
    if target == t.CMP_VALUE:
        a, b = value, cmp.value
    elif target == t.CMP_CREATE:
        a, b = create, cmp.create_revision
    elif target == t.CMP_MOD:
        a, b = mod, cmp.mod_revision
    elif target == t.CMP_VERSION:
        a, b = version, cmp.version
    elif target == t.CMP_LEASE:
        a, b = lease, cmp.lease
    else:
        return True
    result = cmp.result
    if result == t.CMP_EQUAL:
        return a == b
    if result == t.CMP_NOT_EQUAL:
        return a != b
    if result == t.CMP_GREATER:
        return a > b
    if result == t.CMP_LESS:
        return a < b
    return True


def check_txn_range(rev: int, current: int, first_rev: int) -> None:
    """etcd's checkRange for a Range inside a txn. ``first_rev`` is the
    compact revision as etcd keeps it: ``NEVER_COMPACTED`` (-1) before the
    first compaction, so a negative revision is ErrCompacted there (unlike a
    plain Range, which reads the current revision), except -1 on a store
    never compacted (checked against etcd 3.4.23)."""
    if rev == 0:
        return
    if rev > current:
        raise errors.FutureRevision()
    if rev < first_rev:
        raise errors.Compacted()


def check_txn_ranges(req: Any, path: list, current: int, first_rev: int) -> None:
    """``check_txn_range`` on every Range of the chosen branches."""
    nested = iter(path[1:])
    for op in (req.success if path[0] else req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            check_txn_range(op.request_range.revision, current, first_rev)
        elif kind == "request_txn":
            check_txn_ranges(op.request_txn, next(nested), current, first_rev)


def txn_puts(req: Any) -> bool:
    """Whether either branch (at any depth) holds a put: such a txn costs
    space and is refused under the NOSPACE alarm (etcd's quota cost)."""
    for op in list(req.success) + list(req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_put":
            return True
        if kind == "request_txn" and txn_puts(op.request_txn):
            return True
    return False


def txn_writes(req: Any) -> bool:
    """Whether either branch (at any depth) can change the store (etcd's
    !IsTxnReadonly): only such txns need to go through Raft."""
    for op in list(req.success) + list(req.failure):
        kind = op.WhichOneof("request")
        if kind in ("request_put", "request_delete_range"):
            return True
        if kind == "request_txn" and txn_writes(op.request_txn):
            return True
    return False


def readonly_txn(txn: lmdb.Transaction, tables: index.Tables, req: Any, current: int,
                 first_rev: int, max_txn_ops: int) -> t.TxnResult:
    """A txn whose branches hold only ranges (``txn_writes`` false), served
    from a read transaction as etcd serves them, without Raft. ``first_rev``:
    the compact revision, ``NEVER_COMPACTED`` before the first compaction."""
    check_txn(req, max_txn_ops)
    if txn_writes(req):
        raise ValueError("a txn with puts or deletes must go through the write path")
    path = compare_path(txn, tables, req)
    check_txn_ranges(req, path, current, first_rev)
    return _run_ranges(txn, tables, req, path, current, max(first_rev, 0))


def _run_ranges(txn: lmdb.Transaction, tables: index.Tables, req: Any, path: list,
                current: int, compacted: int) -> t.TxnResult:
    nested = iter(path[1:])
    responses: list = []
    for op in (req.success if path[0] else req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            responses.append(execute(txn, tables, op.request_range, current, compacted))
        elif kind == "request_txn":
            responses.append(_run_ranges(txn, tables, op.request_txn, next(nested), current,
                                         compacted))
        else:
            responses.append(None)
    return t.TxnResult(current, path[0], responses)
