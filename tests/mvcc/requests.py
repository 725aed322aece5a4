"""Plain stand-ins for etcd's request messages, for the store's tests.

The store reads requests by attribute with etcd's protobuf field names, so
these ``__slots__`` classes and the generated ``etcdserverpb`` messages (what
the server and the embedded API pass; tests/mvcc/test_protobuf.py runs the
store on those) are interchangeable. Unlike the messages they take their
first fields positionally: ``PutRequest(b"k", b"v")``, ``CompactionRequest(3)``.
"""

from __future__ import annotations

from typing import Any

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
