"""Transactions: compares, then operations, as etcd's clientv3 writes them::

    from pykv.embedded import value, version, put_op, get_op, delete_op

    result = (db.txn()
              .if_(value("config/mode") == "blue", version("config/lock") == 0)
              .then(put_op("config/mode", "green"), get_op("config/", prefix=True))
              .else_(get_op("config/mode"))
              .commit())
    result.succeeded        # which branch ran
    result.responses        # one result per operation of that branch
    result.revision         # the store revision after the txn

A compare is a *target* (``value``, ``version``, ``create_revision``,
``mod_revision``, ``lease_of``, each of a key, a range or a prefix) compared
with ``==``, ``!=``, ``<`` or ``>``. A compare over a range holds when it
holds for every key in it; a missing key has version, revisions and lease 0
and matches no value compare (etcd's rules). Operations are ``put_op``,
``get_op``, ``delete_op`` and ``txn_op`` (a nested txn).

All compares see the state before the txn; the operations of the chosen
branch then run in order, all at one new revision (when any writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from pykv.api.etcdserverpb import rpc_pb2
from pykv.embedded.keys import Bytes, as_bytes, key_range
from pykv.embedded.requests import delete_request, fill_put, lease_id_of, range_request
from pykv.mvcc import types as t

if TYPE_CHECKING:
    from pykv.embedded.db import DB

Compare = rpc_pb2.Compare
Op = rpc_pb2.RequestOp


class Target:
    """One side of a compare: a field of a key (or of every key in a range).
    Compare it with ``==``, ``!=``, ``<`` or ``>`` to get a ``Compare``."""

    __slots__ = ("_target", "_field", "_key", "_range_end")
    __hash__ = None  # type: ignore[assignment]  # == builds a Compare

    def __init__(self, target: int, field: str, key: Bytes, range_end: Bytes | None,
                 prefix: bool, from_key: bool):
        self._target = target
        self._field = field
        self._key, self._range_end = key_range(key, range_end, prefix, from_key)

    def _compare(self, result: int, operand: Any) -> Compare:
        if self._field == "value":
            operand = as_bytes(operand, "value")
        elif self._field == "lease":
            operand = lease_id_of(operand)
        elif isinstance(operand, bool) or not isinstance(operand, int):
            raise TypeError(f"{self._field} compares with an int, not {type(operand).__name__}")
        return Compare(result=result, target=self._target, key=self._key,
                       range_end=self._range_end, **{self._field: operand})

    def __eq__(self, operand: Any) -> Compare:  # type: ignore[override]
        return self._compare(t.CMP_EQUAL, operand)

    def __ne__(self, operand: Any) -> Compare:  # type: ignore[override]
        return self._compare(t.CMP_NOT_EQUAL, operand)

    def __lt__(self, operand: Any) -> Compare:
        return self._compare(t.CMP_LESS, operand)

    def __gt__(self, operand: Any) -> Compare:
        return self._compare(t.CMP_GREATER, operand)

    def __repr__(self) -> str:
        span = f", range_end={self._range_end!r}" if self._range_end else ""
        return f"{self._field}({self._key!r}{span})"


def value(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
          from_key: bool = False) -> Target:
    """The value of ``key`` (or of each key in the range), compared with bytes or str."""
    return Target(t.CMP_VALUE, "value", key, range_end, prefix, from_key)


def version(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
            from_key: bool = False) -> Target:
    """How many times ``key`` was written since it was created (0: missing)."""
    return Target(t.CMP_VERSION, "version", key, range_end, prefix, from_key)


def create_revision(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
                    from_key: bool = False) -> Target:
    """The revision that created ``key`` (0: missing)."""
    return Target(t.CMP_CREATE, "create_revision", key, range_end, prefix, from_key)


def mod_revision(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
                 from_key: bool = False) -> Target:
    """The revision of the last write of ``key`` (0: missing)."""
    return Target(t.CMP_MOD, "mod_revision", key, range_end, prefix, from_key)


def lease_of(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
             from_key: bool = False) -> Target:
    """The lease ``key`` is attached to (0: none), compared with an id or a Lease."""
    return Target(t.CMP_LEASE, "lease", key, range_end, prefix, from_key)


def put_op(key: Bytes, value: Bytes, *, lease: object = 0, prev_kv: bool = False,
           ignore_value: bool = False, ignore_lease: bool = False) -> Op:
    """A put inside a txn; its result is a ``PutResult``."""
    op = Op()
    fill_put(op.request_put, key, value, lease, prev_kv, ignore_value, ignore_lease)
    return op


def get_op(key: Bytes, range_end: Bytes | None = None, **options: Any) -> Op:
    """A range inside a txn (the options of ``DB.range``); its result is a
    ``RangeResult`` that sees the writes of the operations before it."""
    return Op(request_range=range_request(key, range_end, **options))


def delete_op(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
              from_key: bool = False, prev_kv: bool = False) -> Op:
    """A delete inside a txn; its result is a ``DeleteRangeResult``."""
    return Op(request_delete_range=delete_request(key, range_end, prefix=prefix,
                                                  from_key=from_key, prev_kv=prev_kv))


def txn_request(compare: Sequence[Compare] = (), success: Sequence[Op] = (),
                failure: Sequence[Op] = ()) -> rpc_pb2.TxnRequest:
    for cmp in compare:
        if not isinstance(cmp, Compare):
            raise TypeError(f"a compare must be built from a target (value(key) == ...), "
                            f"not {type(cmp).__name__}")
    for op in (*success, *failure):
        if not isinstance(op, Op):
            raise TypeError(f"an operation must be put_op/get_op/delete_op/txn_op, "
                            f"not {type(op).__name__}")
    return rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)


def txn_op(compare: Sequence[Compare] = (), success: Sequence[Op] = (),
           failure: Sequence[Op] = ()) -> Op:
    """A nested txn; its result is a ``TxnResult``."""
    return Op(request_txn=txn_request(compare, success, failure))


class Txn:
    """A txn being built: ``db.txn().if_(...).then(...).else_(...).commit()``.
    Each part may be given once; every part is optional."""

    def __init__(self, db: DB):
        self._db = db
        self._compare: tuple[Compare, ...] | None = None
        self._success: tuple[Op, ...] | None = None
        self._failure: tuple[Op, ...] | None = None

    def if_(self, *compares: Compare) -> Txn:
        """The compares; all must hold for the ``then`` branch to run."""
        if self._compare is not None:
            raise ValueError("if_() was already given")
        if self._success is not None or self._failure is not None:
            raise ValueError("if_() comes before then() and else_()")
        self._compare = compares
        return self

    def then(self, *ops: Op) -> Txn:
        """The operations to run when every compare holds."""
        if self._success is not None:
            raise ValueError("then() was already given")
        if self._failure is not None:
            raise ValueError("then() comes before else_()")
        self._success = ops
        return self

    def else_(self, *ops: Op) -> Txn:
        """The operations to run when a compare fails."""
        if self._failure is not None:
            raise ValueError("else_() was already given")
        self._failure = ops
        return self

    def request(self) -> rpc_pb2.TxnRequest:
        return txn_request(self._compare or (), self._success or (), self._failure or ())

    def commit(self) -> t.TxnResult:
        """Run the txn; see ``DB.txn``."""
        return self._db._txn(self.request())
