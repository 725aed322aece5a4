"""Keys, values and pre-serialized etcd requests for each workload.

The workers send raw bytes through generic gRPC calls (no per-call
serializer), so each request is encoded here once: constant requests (range,
keepalive) are built once per run, keyed ones once per key.
"""

from __future__ import annotations

import random

from pykv.api.etcdserverpb import rpc_pb2

from .config import BenchConfig

# gRPC method paths (etcd's service names, see proto/etcdserverpb/rpc.proto).
KV_RANGE = "/etcdserverpb.KV/Range"
KV_PUT = "/etcdserverpb.KV/Put"
KV_TXN = "/etcdserverpb.KV/Txn"
KV_DELETE_RANGE = "/etcdserverpb.KV/DeleteRange"
WATCH = "/etcdserverpb.Watch/Watch"
LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant"
LEASE_REVOKE = "/etcdserverpb.Lease/LeaseRevoke"
LEASE_KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
STATUS = "/etcdserverpb.Maintenance/Status"
AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"

# The watch workload puts values that start with the send time, so that any
# process on this host can compute the delivery latency (CLOCK_MONOTONIC is
# system-wide on Linux). A value starting with WATCH_END ends the run.
WATCH_STAMP_BYTES = 20
WATCH_END = b"E" * WATCH_STAMP_BYTES


def key_of(config: BenchConfig, index: int) -> bytes:
    """The key for ``index`` in the key space: prefix + zero-padded hex, key_size bytes."""
    prefix = config.prefix.encode()
    digits = config.key_size - len(prefix)
    return prefix + format(index, "x").zfill(digits)[-digits:].encode()


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix" ("\\0" for an empty prefix)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def value_of(config: BenchConfig) -> bytes:
    """The value every put writes: val_size random letters, fixed for a run."""
    rng = random.Random(config.seed)
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(config.val_size))


class KeyChooser:
    """Picks key indexes: sequential or uniformly random in [0, key_space).

    Sequential keys of worker ``w`` among ``n`` are w, w+n, w+2n, ... (mod
    key_space), so that workers never write the same key while the key space
    lasts.
    """

    def __init__(self, config: BenchConfig, worker_index: int, workers: int):
        self._space = config.key_space
        self._sequential = config.seq_keys
        self._next = worker_index
        self._stride = workers
        self._rng = random.Random((config.seed << 16) ^ worker_index)

    def next(self) -> int:
        if self._sequential:
            index = self._next % self._space
            self._next += self._stride
            return index
        return self._rng.randrange(self._space)


def put_request(key: bytes, value: bytes, lease: int = 0) -> bytes:
    return rpc_pb2.PutRequest(key=key, value=value, lease=lease).SerializeToString()


def range_request(config: BenchConfig) -> bytes:
    key = config.range_key.encode() if config.range_key else key_of(config, 0)
    return rpc_pb2.RangeRequest(key=key, range_end=config.range_end.encode(),
                                serializable=config.serializable).SerializeToString()


def txn_put_request(keys: list[bytes], value: bytes) -> bytes:
    ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value)) for k in keys]
    return rpc_pb2.TxnRequest(success=ops).SerializeToString()


def watch_create_request(key: bytes, watch_id: int) -> bytes:
    create = rpc_pb2.WatchCreateRequest(key=key, watch_id=watch_id)
    return rpc_pb2.WatchRequest(create_request=create).SerializeToString()


def stamped_value(sent_ns: int, size: int) -> bytes:
    """A watch value carrying its send time (ns); at least WATCH_STAMP_BYTES long."""
    stamp = b"%020d" % sent_ns
    return stamp + b"v" * max(0, size - len(stamp))


def sent_ns_of(value: bytes) -> int | None:
    """The send time stamped into a watch value, or None for the end marker."""
    head = value[:WATCH_STAMP_BYTES]
    return None if head == WATCH_END else int(head)


def count_request(prefix: bytes) -> bytes:
    return rpc_pb2.RangeRequest(key=prefix or b"\0", range_end=prefix_range_end(prefix),
                                count_only=True).SerializeToString()
