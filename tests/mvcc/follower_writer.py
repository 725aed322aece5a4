"""The writer process of the read-only-follower tests, and the workload it
applies (the tests replay the same workload into an in-process reference).

Run as ``python -m tests.mvcc.follower_writer PATH [MAP_BYTES]`` from the
repository root. It opens PATH for writing, prints ``ready R``, then obeys
one command per stdin line, answering each with one line:

``step``          one batch of the seeded workload  -> ``committed R``
``run N``         N such batches without waiting     -> N lines ``committed R``
``compact``       compact to the current revision and finish physically -> ``committed R``
``defrag``        ``store.defragment()``            -> ``committed R``
``big N``         one batch of N values of 1 MiB     -> ``committed R``
``quit``          close and exit
"""

from __future__ import annotations

import random
import sys

from pykv.mvcc import Store
from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest

KEYS = [b"k%02d" % i for i in range(10)]


def step(store: Store, rnd: random.Random, index: int) -> None:
    """One batch of 1-4 requests: puts, deletes of a key or a range, txns."""
    with store.write(index) as w:
        for _ in range(rnd.randint(1, 4)):
            roll = rnd.random()
            key = rnd.choice(KEYS)
            if roll < 0.55:
                w.put(PutRequest(key, b"v%d" % rnd.randrange(1000)))
            elif roll < 0.75:
                w.delete_range(DeleteRangeRequest(key))
            elif roll < 0.85:
                w.delete_range(DeleteRangeRequest(b"k0", b"k05"))
            else:
                other = rnd.choice(KEYS)
                w.txn(TxnRequest(success=[
                    RequestOp(request_put=PutRequest(key, b"t%d" % index)),
                    RequestOp(request_put=PutRequest(other + b"/x", b"t"))]))


def main() -> None:
    path = sys.argv[1]
    map_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else None
    store = Store.open(path, sync=False, map_bytes=map_bytes)
    rnd = random.Random(7)
    index = store.applied_index
    print("ready", store.revision, flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        index += 1
        if command == "step":
            step(store, rnd, index)
        elif command == "run":
            for _ in range(int(args[0]) - 1):
                step(store, rnd, index)
                print("committed", store.revision, flush=True)
                index += 1
            step(store, rnd, index)
        elif command == "compact":
            with store.write(index) as w:
                w.compact(CompactionRequest(store.revision))
            while store.compact_step():
                pass
        elif command == "defrag":
            store.defragment()
        elif command == "big":
            with store.write(index) as w:
                for i in range(int(args[0])):
                    w.put(PutRequest(b"big%04d" % i, b"%04d" % i * (256 << 10)))
        elif command == "quit":
            break
        else:
            raise SystemExit(f"unknown command {command!r}")
        print("committed", store.revision, flush=True)
    store.close()


if __name__ == "__main__":
    main()
