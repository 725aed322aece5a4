"""Request checks with etcd's rules, and plain request classes.

The store reads requests by attribute with etcd's protobuf field names, so a
generated ``etcdserverpb`` message and the small classes below are
interchangeable. The classes serve the embedded API and tests; the checks
(``check_put`` ... ``check_txn``) are etcd's ``v3rpc/key.go`` rules, exposed so
that a server can refuse a bad request before proposing it.
"""

from __future__ import annotations

from typing import Any, Iterable

from pykv import errors
from pykv.mvcc import types as t

#: Range/DeleteRange ``range_end`` meaning "every key >= key" (etcd's "\0").
FROM_KEY = b"\x00"


def range_bounds(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None, bool]:
    """(start, end, single) for a request's key and range_end.

    ``single``: only ``key`` itself (empty range_end). ``end`` None: no upper
    bound (range_end ``"\\0"``). Otherwise [start, end), empty when end <= start.
    """
    if not range_end:
        return key, key, True
    if range_end == FROM_KEY:
        return key, None, False
    return key, range_end, False


# --- checks --------------------------------------------------------------------


def check_range(req: Any) -> None:
    if not req.key:
        raise errors.KeyNotProvided()
    if req.sort_order not in (t.SORT_NONE, t.SORT_ASCEND, t.SORT_DESCEND) or req.sort_target not in (
            t.TARGET_KEY, t.TARGET_VERSION, t.TARGET_CREATE, t.TARGET_MOD, t.TARGET_VALUE):
        raise errors.InvalidSortOption()


def check_put(req: Any) -> None:
    if not req.key:
        raise errors.KeyNotProvided()
    if req.ignore_value and req.value:
        raise errors.ValueProvided()
    if req.ignore_lease and req.lease:
        raise errors.LeaseProvided()


def check_delete(req: Any) -> None:
    if not req.key:
        raise errors.KeyNotProvided()


def check_txn(req: Any, max_txn_ops: int) -> None:
    """etcd's checkTxnRequest + checkIntervals: op limit (max of the compare,
    success and failure counts; nested txns get the remaining budget), empty
    keys, empty RequestOps (``key not found``) and the duplicate key rule."""
    _check_txn_ops(req, max_txn_ops)
    _check_intervals(req.success)
    _check_intervals(req.failure)


def _check_txn_ops(req: Any, max_txn_ops: int) -> None:
    opc = max(len(req.compare), len(req.success), len(req.failure))
    if opc > max_txn_ops:
        raise errors.TooManyOps()
    for cmp in req.compare:
        if not cmp.key:
            raise errors.KeyNotProvided()
    for op in list(req.success) + list(req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            check_range(op.request_range)
        elif kind == "request_put":
            check_put(op.request_put)
        elif kind == "request_delete_range":
            check_delete(op.request_delete_range)
        elif kind == "request_txn":
            _check_txn_ops(op.request_txn, max_txn_ops - opc)
        else:
            raise errors.KeyNotFound()


def _delete_interval(req: Any) -> tuple[bytes, bytes | None]:
    # etcd builds the interval from key and range_end literally: a "\0" end
    # (from-key delete) is an empty interval there, so a put beside a from-key
    # delete is allowed. Kept as is, because clients observe it.
    if req.range_end:
        return req.key, req.range_end
    return req.key, None


def _intersects(dels: list[tuple[bytes, bytes | None]], key: bytes) -> bool:
    for start, end in dels:
        if end is None:
            if key == start:
                return True
        elif start <= key < end:
            return True
    return False


def _check_intervals(ops: Iterable[Any]) -> tuple[set[bytes], list[tuple[bytes, bytes | None]]]:
    ops = list(ops)
    dels = [_delete_interval(op.request_delete_range) for op in ops
            if op.WhichOneof("request") == "request_delete_range"]
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = _check_intervals(op.request_txn.success)
        puts_else, dels_else = _check_intervals(op.request_txn.failure)
        for key in puts_then:
            if key in puts or _intersects(dels, key):
                raise errors.DuplicateKey()
            puts.add(key)
        for key in puts_else:
            if key in puts and key not in puts_then:
                raise errors.DuplicateKey()
            if _intersects(dels, key):
                raise errors.DuplicateKey()
            puts.add(key)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        key = op.request_put.key
        if key in puts or _intersects(dels, key):
            raise errors.DuplicateKey()
        puts.add(key)
    return puts, dels


# --- plain request classes (same attribute names as etcd's protobuf) -----------


class RangeRequest:
    __slots__ = ("key", "range_end", "limit", "revision", "sort_order", "sort_target",
                 "serializable", "keys_only", "count_only", "min_mod_revision",
                 "max_mod_revision", "min_create_revision", "max_create_revision")

    def __init__(self, key: bytes = b"", range_end: bytes = b"", limit: int = 0, revision: int = 0,
                 sort_order: int = 0, sort_target: int = 0, serializable: bool = False,
                 keys_only: bool = False, count_only: bool = False, min_mod_revision: int = 0,
                 max_mod_revision: int = 0, min_create_revision: int = 0,
                 max_create_revision: int = 0):
        self.key = key
        self.range_end = range_end
        self.limit = limit
        self.revision = revision
        self.sort_order = sort_order
        self.sort_target = sort_target
        self.serializable = serializable
        self.keys_only = keys_only
        self.count_only = count_only
        self.min_mod_revision = min_mod_revision
        self.max_mod_revision = max_mod_revision
        self.min_create_revision = min_create_revision
        self.max_create_revision = max_create_revision


class PutRequest:
    __slots__ = ("key", "value", "lease", "prev_kv", "ignore_value", "ignore_lease")

    def __init__(self, key: bytes = b"", value: bytes = b"", lease: int = 0, prev_kv: bool = False,
                 ignore_value: bool = False, ignore_lease: bool = False):
        self.key = key
        self.value = value
        self.lease = lease
        self.prev_kv = prev_kv
        self.ignore_value = ignore_value
        self.ignore_lease = ignore_lease


class DeleteRangeRequest:
    __slots__ = ("key", "range_end", "prev_kv")

    def __init__(self, key: bytes = b"", range_end: bytes = b"", prev_kv: bool = False):
        self.key = key
        self.range_end = range_end
        self.prev_kv = prev_kv


class CompactionRequest:
    __slots__ = ("revision", "physical")

    def __init__(self, revision: int = 0, physical: bool = False):
        self.revision = revision
        self.physical = physical


_UNION = ("version", "create_revision", "mod_revision", "value", "lease")


class Compare:
    """``Compare``: set one of ``version``, ``create_revision``,
    ``mod_revision``, ``value``, ``lease`` (the target_union)."""

    __slots__ = ("result", "target", "key", "range_end", "version", "create_revision",
                 "mod_revision", "value", "lease", "_which")

    def __init__(self, key: bytes = b"", target: int = 0, result: int = 0, range_end: bytes = b"",
                 **union: Any):
        if len(union) > 1 or any(name not in _UNION for name in union):
            raise TypeError(f"Compare takes one of {_UNION}, got {sorted(union)}")
        self.key = key
        self.target = target
        self.result = result
        self.range_end = range_end
        self.version = union.get("version", 0)
        self.create_revision = union.get("create_revision", 0)
        self.mod_revision = union.get("mod_revision", 0)
        self.value = union.get("value", b"")
        self.lease = union.get("lease", 0)
        self._which = next(iter(union), None)

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802 - protobuf's name
        if group != "target_union":
            raise ValueError(f"Compare has no oneof {group!r}")
        return self._which


_OP_FIELDS = ("request_range", "request_put", "request_delete_range", "request_txn")


class RequestOp:
    """``RequestOp``: pass exactly one request, or none for an empty op."""

    __slots__ = _OP_FIELDS + ("_which",)

    def __init__(self, request_range: RangeRequest | None = None,
                 request_put: PutRequest | None = None,
                 request_delete_range: DeleteRangeRequest | None = None,
                 request_txn: TxnRequest | None = None):
        given = [(name, value) for name, value in zip(
            _OP_FIELDS, (request_range, request_put, request_delete_range, request_txn))
            if value is not None]
        if len(given) > 1:
            raise TypeError("RequestOp takes at most one request")
        self.request_range = request_range or RangeRequest()
        self.request_put = request_put or PutRequest()
        self.request_delete_range = request_delete_range or DeleteRangeRequest()
        self.request_txn = request_txn
        self._which = given[0][0] if given else None

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802 - protobuf's name
        if group != "request":
            raise ValueError(f"RequestOp has no oneof {group!r}")
        return self._which


class TxnRequest:
    __slots__ = ("compare", "success", "failure")

    def __init__(self, compare: list[Compare] | None = None, success: list[RequestOp] | None = None,
                 failure: list[RequestOp] | None = None):
        self.compare = list(compare or [])
        self.success = list(success or [])
        self.failure = list(failure or [])
