"""Child process of test_durability.py: opens a data directory (with
``sync=True`` unless the third argument is ``nosync``; the fourth, if any,
is the store's ``checkpoint_interval_s``) and writes from several threads, printing ``<thread> <k>``
after each put of key ``t<thread>/<k>`` returns (an acknowledgment). Killed
at random moments, or by a WAL failpoint (PYKV_FAILPOINTS).

Every thread resumes after the highest k it finds in the store, so the
same directory can be crashed over and over."""

from __future__ import annotations

import sys
import threading

import pykv
from pykv.embedded import put_op

path, threads = sys.argv[1], int(sys.argv[2])
sync = sys.argv[3] == "sync" if len(sys.argv) > 3 else True
options = {"checkpoint_interval_s": float(sys.argv[4])} if len(sys.argv) > 4 else {}
db = pykv.open(path, sync=sync, **options)
out_lock = threading.Lock()


def value_for(t: int, k: int) -> bytes:
    return f"{t}:{k}:".encode() * (1 + k % 7)


def writer(t: int) -> None:
    existing = db.range(f"t{t}/", prefix=True, count_only=True).count
    k = existing
    while True:
        if k % 5 == 4:  # now and then a txn of several puts, acknowledged together
            db.txn().then(*(put_op(f"t{t}/{j:08d}", value_for(t, j))
                            for j in range(k, k + 3))).commit()
            k += 3
        else:
            db.put(f"t{t}/{k:08d}", value_for(t, k))
            k += 1
        with out_lock:
            sys.stdout.write(f"{t} {k - 1}\n")
            sys.stdout.flush()


print("ready", flush=True)
for t in range(threads):
    threading.Thread(target=writer, args=(t,), daemon=True).start()
threading.Event().wait()
