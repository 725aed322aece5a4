"""Apply committed Raft entries to the MVCC store: one LMDB txn per batch.

Shared by the server (entries come out of Raft) and the embedded engine
(entries come from its own single-node log). Idempotent: entries at or below
the store's applied index were applied before a restart and are skipped, and
the store records the batch's last index in the same LMDB transaction as
the data (etcd's consistent index).

A request that fails (an unknown lease, a compacted revision...) fails
alone: its error is its result, and the rest of the batch goes on, as in
etcd. Results are MVCC result objects; the server turns them into protobuf
responses, the embedded API hands them to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine import requests as reqcodec
from pykv.engine.requests import Kind
from pykv.mvcc import Store, WriteBatch
from pykv.raft.types import Entry, EntryType

# kind -> protobuf class of the request body
REQUEST_TYPES: dict[int, Any] = {
    Kind.PUT: rpc_pb2.PutRequest,
    Kind.DELETE_RANGE: rpc_pb2.DeleteRangeRequest,
    Kind.TXN: rpc_pb2.TxnRequest,
    Kind.COMPACTION: rpc_pb2.CompactionRequest,
    Kind.LEASE_GRANT: rpc_pb2.LeaseGrantRequest,
    Kind.LEASE_REVOKE: rpc_pb2.LeaseRevokeRequest,
    Kind.ALARM: rpc_pb2.AlarmRequest,
}


def _put(w: WriteBatch, req: Any) -> Any:
    return w.put(req)


def _delete_range(w: WriteBatch, req: Any) -> Any:
    return w.delete_range(req)


def _txn(w: WriteBatch, req: Any) -> Any:
    return w.txn(req)


def _compaction(w: WriteBatch, req: Any) -> Any:
    return w.compact(req)


def _lease_grant(w: WriteBatch, req: Any) -> Any:
    return w.lease_grant(req.ID, req.TTL)


def _lease_revoke(w: WriteBatch, req: Any) -> Any:
    return w.lease_revoke(req.ID)


def _alarm(w: WriteBatch, req: Any) -> Any:
    return w.alarm(req.action, req.memberID, req.alarm)



HANDLERS: dict[int, Callable[[WriteBatch, Any], Any]] = {
    Kind.PUT: _put,
    Kind.DELETE_RANGE: _delete_range,
    Kind.TXN: _txn,
    Kind.COMPACTION: _compaction,
    Kind.LEASE_GRANT: _lease_grant,
    Kind.LEASE_REVOKE: _lease_revoke,
    Kind.ALARM: _alarm,
}


class Applier:
    """Applies batches of committed entries to ``store``.

    ``decoded`` lets the proposer hand over request objects it already has
    (keyed by request id), so a request parsed once for validation is not
    parsed again at apply; entries proposed elsewhere are decoded here.
    ``on_conf_change(entry)`` is called for membership entries, inside the
    batch, in log order.
    """

    def __init__(self, store: Store, on_conf_change: Callable[[Entry], None] | None = None):
        self.store = store
        self._on_conf_change = on_conf_change

    def apply(self, entries: Sequence[Entry], decoded: dict[int, Any] | None = None
              ) -> list[tuple[int, int, object]]:
        """Apply ``entries`` (in log order); return ``[(request_id, kind,
        result_or_EtcdError)]`` for the requests they carried.

        Membership entries go to ``on_conf_change`` even when the store has
        applied them already: after a restart Raft must see them again to
        rebuild its membership (the store has no part in it)."""
        store = self.store
        applied = store.applied_index
        if self._on_conf_change is not None:
            for entry in entries:
                if entry.index <= applied and entry.type == EntryType.CONF_CHANGE:
                    self._on_conf_change(entry)
        if not entries or entries[-1].index <= applied:
            return []
        if entries[0].index <= applied:
            entries = [e for e in entries if e.index > applied]
        results: list[tuple[int, int, object]] = []
        append = results.append
        decoded = decoded if decoded is not None else {}
        handlers = HANDLERS
        with store.write(entries[-1].index) as w:
            for entry in entries:
                if entry.type == EntryType.CONF_CHANGE:
                    if self._on_conf_change is not None:
                        self._on_conf_change(entry)
                    continue
                if not entry.data:
                    continue  # a new leader's empty entry
                for kind, request_id, body in reqcodec.decode(entry.data):
                    req = decoded.pop(request_id, None)
                    handler = handlers.get(kind)
                    try:
                        if handler is None:
                            # A newer member proposed a kind this one does not know.
                            raise errors.NotCapable(f"request kind {kind}")
                        if req is None:
                            req = REQUEST_TYPES[kind].FromString(body)
                        result = handler(w, req)
                    except errors.EtcdError as exc:
                        result = exc
                    append((request_id, kind, result))
        return results
