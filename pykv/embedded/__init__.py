"""``pykv.open(path)``: the pykv engine inside a Python process.

The same semantics as ``pykv serve`` (revisions, ranges, txns, watches,
leases) with no server and no gRPC, and the same data directory: a
directory made here can be served by ``pykv serve --data-dir``, and one a
server made can be opened here (when the server is stopped: one process at
a time, enforced by a lock)::

    import pykv

    with pykv.open("app.pykv") as db:
        db.put("greeting", "hello")                  # -> PutResult(revision, prev_kv)
        db.get("greeting").value                     # b'hello'
        db.range("user/", prefix=True, limit=10)     # -> RangeResult(kvs, more, count, revision)
        db.delete("greeting")                        # -> DeleteRangeResult
        (db.txn().if_(version("lock") == 0)
                 .then(put_op("lock", "me")).commit())   # -> TxnResult
        with db.grant(ttl=10) as lease:              # keys vanish when it expires
            db.put("session", "x", lease=lease)
        for event in db.watch("user/", prefix=True): ...

Durability: by default (``sync=True``) a write returns once it is on disk;
threads writing at once share each fdatasync (group commit). See
``Options`` for the weaker mode and the limits, ``DB`` for every method,
``pykv.aio`` for the asyncio face.
"""

from pykv.embedded.db import DB, Status, open
from pykv.embedded.keys import prefix_end
from pykv.embedded.lease import Lease
from pykv.embedded.options import Options
from pykv.embedded.txn import (
    Target,
    Txn,
    create_revision,
    delete_op,
    get_op,
    lease_of,
    mod_revision,
    put_op,
    txn_op,
    value,
    version,
)
from pykv.embedded.watch import Watch, WatchCompacted
from pykv.mvcc.types import (
    DELETE,
    PUT,
    CompactResult,
    DeleteRangeResult,
    Event,
    HashKVResult,
    KeyValue,
    LeaseRevokeResult,
    LeaseTimeToLive,
    PutResult,
    RangeResult,
    TxnResult,
)

__all__ = [
    "DB", "DELETE", "PUT", "CompactResult", "DeleteRangeResult", "Event", "HashKVResult",
    "KeyValue", "Lease", "LeaseRevokeResult", "LeaseTimeToLive", "Options", "PutResult",
    "RangeResult", "Status", "Target", "Txn", "TxnResult", "Watch", "WatchCompacted",
    "create_revision", "delete_op", "get_op", "lease_of", "mod_revision", "open", "prefix_end",
    "put_op", "txn_op", "value", "version",
]
