"""The recorded history: one `Operation` per client request.

An operation is *ok* (the response is known), *fail* (the server refused it
with a definite error, so it did not take effect) or *unknown* (timeout or
connection loss: it may or may not have taken effect). As in etcd's
robustness suite, an unknown operation's return time is +infinity.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import threading
import time
from typing import NamedTuple

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"

# The operation kinds, each touching exactly one key.
GET = "get"          # Range(key), linearizable
PUT = "put"          # Put(key, value, prev_kv=True)
DELETE = "delete"    # DeleteRange(key, prev_kv=True)
CAS = "cas"          # Txn(mod_revision(key) == expected; put(key, value); else range(key))
TXN_GET = "txn_get"  # Txn(value(key) == expected; put(key, value), range(key); else range(key))
# Compaction and leases (traffic_mvcc.py); checked by validate_mvcc.py, not by
# the per-key linearizability search.
STALE_GET = "stale_get"        # Range(key, revision=at_revision)
COMPACT = "compact"            # Compact(at_revision, physical)
LEASE_GRANT = "lease_grant"    # LeaseGrant(ID=lease, TTL=ttl)
LEASE_PUT = "lease_put"        # Put(key, value, lease=lease)
LEASE_REVOKE = "lease_revoke"  # LeaseRevoke(lease)
WRITE_KINDS = (PUT, DELETE, CAS, TXN_GET, LEASE_PUT)
LINEARIZED_KINDS = (GET, PUT, DELETE, CAS, TXN_GET)


class KeyValue(NamedTuple):
    """What a response showed of one key (etcd's mvccpb.KeyValue, less the lease)."""

    value: bytes
    mod_revision: int
    version: int
    create_revision: int


@dataclasses.dataclass(eq=False)  # identity: operations go in sets
class Operation:
    """One client request and what came back.

    Invariants: `return_s` is +inf exactly when `status` is UNKNOWN; the
    response fields are set only when `status` is OK.
    """

    id: int
    client: int
    kind: str
    key: bytes
    invoke_s: float
    return_s: float = math.inf
    status: str = UNKNOWN
    value: bytes | None = None            # written by put / cas / txn_get
    expected: int | bytes | None = None   # cas: mod_revision; txn_get: value
    revision: int | None = None           # response header revision
    kv: KeyValue | None = None            # get / failure branch / txn_get's range after put
    prev_kv: KeyValue | None = None       # put / delete with prev_kv
    succeeded: bool | None = None         # cas / txn_get
    deleted: int | None = None            # delete
    error: str = ""
    at_revision: int | None = None        # stale_get: the revision read; compact: compacted to
    physical: bool | None = None          # compact
    lease: int | None = None              # lease_*: the lease ID (chosen by the client)
    ttl: int | None = None                # lease_grant: asked for; the granted TTL when ok

    @property
    def is_write(self) -> bool:
        return self.kind in WRITE_KINDS

    def wrote(self) -> bool:
        """True when this ok operation certainly created a revision."""
        if self.status != OK:
            return False
        if self.kind in (PUT, LEASE_PUT):
            return True
        if self.kind == DELETE:
            return bool(self.deleted)
        if self.kind in (CAS, TXN_GET):
            return bool(self.succeeded)
        return False

    def may_have_written(self) -> bool:
        """True when this operation created a revision or might have."""
        return self.wrote() or (self.status == UNKNOWN and self.is_write)

    def describe(self) -> str:
        end = "inf" if math.isinf(self.return_s) else f"{self.return_s:.4f}"
        text = f"#{self.id} c{self.client} {self.kind}({self.key.decode(errors='replace')}"
        if self.value is not None:
            text += f", {self.value.decode(errors='replace')!r}"
        for name in ("at_revision", "physical", "lease", "ttl"):
            if getattr(self, name) is not None:
                text += f", {name}={getattr(self, name)}"
        if self.expected is not None:
            text += f", if {'mod_revision' if self.kind == CAS else 'value'}=={self.expected!r}"
        text += f") [{self.invoke_s:.4f} -> {end}] {self.status}"
        if self.status == OK:
            text += f" rev={self.revision}"
            for name in ("succeeded", "deleted", "prev_kv", "kv"):
                field = getattr(self, name)
                if field is not None:
                    text += f" {name}={field}"
        elif self.error:
            text += f" ({self.error})"
        if self.status == UNKNOWN and self.revision is not None:
            text += f" [logged at rev={self.revision}]"
        return text

    def to_json(self) -> dict:
        out = {}
        for field in dataclasses.fields(self):
            item = getattr(self, field.name)
            if isinstance(item, bytes):
                item = item.decode(errors="replace")
            elif isinstance(item, KeyValue):
                item = item._replace(value=item.value.decode(errors="replace"))._asdict()
            elif isinstance(item, float) and math.isinf(item):
                item = None
            out[field.name] = item
        return out


class Recorder:
    """Hands out operation ids and keeps the history; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.operations: list[Operation] = []

    def invoke(self, client: int, kind: str, key: bytes, **request) -> Operation:
        """Record the call; the caller must then call `ok`, `fail` or leave it unknown."""
        with self._lock:
            op = Operation(id=len(self.operations), client=client, kind=kind, key=key,
                           invoke_s=time.monotonic(), **request)
            self.operations.append(op)
        return op

    @staticmethod
    def ok(op: Operation, **response) -> None:
        for name, item in response.items():
            setattr(op, name, item)
        op.status = OK
        op.return_s = time.monotonic()

    @staticmethod
    def fail(op: Operation, error: str, definite: bool) -> None:
        """A definite failure did not take effect; anything else may have."""
        op.error = error
        if definite:
            op.status = FAIL
            op.return_s = time.monotonic()

    def save(self, path: pathlib.Path) -> None:
        with open(path, "w") as out:
            out.writelines(json.dumps(op.to_json()) + "\n" for op in self.operations)


def window(operations: list[Operation], focus: list[Operation], before: int = 6) -> list[Operation]:
    """The operations to show around `focus`: those overlapping it in time, plus
    the last `before` that finished before the earliest of them started."""
    if not focus:
        return []
    start = min(op.invoke_s for op in focus)
    end = max(op.invoke_s if math.isinf(op.return_s) else op.return_s for op in focus)
    overlapping = [op for op in operations if op.invoke_s <= end and op.return_s >= start]
    earlier = sorted((op for op in operations if op.return_s < start), key=lambda op: op.return_s)
    return sorted(set(earlier[-before:]) | set(overlapping) | set(focus), key=lambda op: op.invoke_s)
