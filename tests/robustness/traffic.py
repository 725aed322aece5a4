"""Recording clients: each sends one request at a time over its own gRPC
channel, a seeded random mix of single-key operations on a small key set
(so that operations conflict), and records every one in the `Recorder`."""

from __future__ import annotations

import random
import threading
import time

import grpc

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.robustness.history import (
    CAS,
    DELETE,
    GET,
    PUT,
    TXN_GET,
    KeyValue,
    Operation,
    Recorder,
)

# Weights of etcd's EtcdPutDeleteLease profile in spirit: reads and puts
# dominate; CAS and txn-with-get make read-modify-write conflicts.
MIX = {GET: 30, PUT: 25, DELETE: 10, CAS: 20, TXN_GET: 15}

# gRPC codes after which the request may or may not have taken effect.
INDETERMINATE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                  grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                  grpc.StatusCode.INTERNAL}

Compare = rpc_pb2.Compare


def key_value(item) -> KeyValue:
    return KeyValue(item.value, item.mod_revision, item.version, item.create_revision)


def _first(kvs) -> KeyValue | None:
    return key_value(kvs[0]) if len(kvs) else None


class Client:
    """One recording client. `run` loops until `stop` is set, sending only
    while `up` is set (the nemesis clears it while the server is down, so
    that indeterminate operations are the ones in flight at a kill).
    Subclasses add kinds: a `_<kind>` method and their fields in `fields`."""

    mix = MIX

    def __init__(self, number: int, endpoint: str, keys: list[bytes], recorder: Recorder,
                 seed: int, ops_per_s: float, timeout_s: float) -> None:
        self.number = number
        self.endpoint = endpoint
        self.keys = keys
        self.recorder = recorder
        self.rng = random.Random(seed * 1000 + number)
        self.interval_s = 1.0 / ops_per_s
        self.timeout_s = timeout_s
        self.seen: dict[bytes, KeyValue | None] = {}  # this client's last view of each key
        self.sequence = 0
        self.highest_revision = 0  # the highest header revision this client was answered
        self.channel: grpc.Channel | None = None
        self.kv: rpc_pb2_grpc.KVStub | None = None

    def run(self, stop: threading.Event, up: threading.Event) -> None:
        next_at = time.monotonic()
        kinds, weights = list(self.mix), list(self.mix.values())
        try:
            while not stop.is_set():
                if not up.wait(0.2):
                    continue
                delay = next_at - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                next_at = max(next_at + self.interval_s, time.monotonic() - self.interval_s)
                kind = self.rng.choices(kinds, weights)[0]
                self.request(kind, self.rng.choice(self.keys))
        finally:
            self._close()

    def request(self, kind: str, key: bytes) -> Operation:
        """Send one request and record it; a lost connection leaves it unknown."""
        if self.kv is None:
            self.channel = grpc.insecure_channel(self.endpoint)
            self.kv = rpc_pb2_grpc.KVStub(self.channel)
        op = self.recorder.invoke(self.number, kind, key, **self.fields(kind, key))
        try:
            response = getattr(self, "_" + kind)(op)
        except grpc.RpcError as error:
            code = error.code()
            definite = code not in INDETERMINATE
            Recorder.fail(op, f"{code.name}: {error.details()}", definite)
            if not definite:
                self._close()  # a fresh channel reconnects without gRPC's backoff
            return op
        Recorder.ok(op, **response)
        self.highest_revision = max(self.highest_revision, op.revision)
        self._learn(op)
        return op

    def fields(self, kind: str, key: bytes) -> dict:
        """The request's recorded fields: a unique value to write, the compare's operand."""
        known = self.seen.get(key)
        fields: dict = {}
        if kind in (PUT, CAS, TXN_GET):
            fields["value"] = self.unique_value()
        if kind == CAS:
            fields["expected"] = known.mod_revision if known else 0
        elif kind == TXN_GET:
            fields["expected"] = known.value if known else b"c0-0"
        return fields

    def unique_value(self) -> bytes:
        self.sequence += 1
        return f"c{self.number}-{self.sequence}".encode()

    def _learn(self, op: Operation) -> None:
        """Remember the key's value and mod_revision, for the next compare on it."""
        if op.kind not in MIX:
            return
        if op.kind == DELETE:
            self.seen[op.key] = None
        elif op.wrote():
            self.seen[op.key] = KeyValue(op.value, op.revision, 0, 0)  # version unused
        else:
            self.seen[op.key] = op.kv

    def _get(self, op: Operation) -> dict:
        response = self.kv.Range(rpc_pb2.RangeRequest(key=op.key), timeout=self.timeout_s)
        return {"revision": response.header.revision, "kv": _first(response.kvs)}

    def _put(self, op: Operation) -> dict:
        response = self.kv.Put(rpc_pb2.PutRequest(key=op.key, value=op.value, prev_kv=True),
                               timeout=self.timeout_s)
        prev = key_value(response.prev_kv) if response.HasField("prev_kv") else None
        return {"revision": response.header.revision, "prev_kv": prev}

    def _delete(self, op: Operation) -> dict:
        response = self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=op.key, prev_kv=True),
                                       timeout=self.timeout_s)
        return {"revision": response.header.revision, "deleted": response.deleted,
                "prev_kv": _first(response.prev_kvs)}

    def _cas(self, op: Operation) -> dict:
        compare = Compare(result=Compare.EQUAL, target=Compare.MOD, key=op.key,
                          mod_revision=op.expected)
        return self._txn(op, compare, read_after_put=False)

    def _txn_get(self, op: Operation) -> dict:
        compare = Compare(result=Compare.EQUAL, target=Compare.VALUE, key=op.key,
                          value=op.expected)
        return self._txn(op, compare, read_after_put=True)

    def _txn(self, op: Operation, compare, read_after_put: bool) -> dict:
        read = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=op.key))
        success = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=op.key, value=op.value))]
        if read_after_put:
            success.append(read)
        response = self.kv.Txn(rpc_pb2.TxnRequest(compare=[compare], success=success,
                                                  failure=[read]), timeout=self.timeout_s)
        out = {"revision": response.header.revision, "succeeded": response.succeeded}
        if not response.succeeded or read_after_put:
            out["kv"] = _first(response.responses[-1].response_range.kvs)
        return out

    def _close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = self.kv = None
