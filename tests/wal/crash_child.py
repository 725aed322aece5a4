"""Child process of test_crash.py: appends and syncs from several threads,
and prints "<thread> <k>" after each append_sync returns (an acknowledgment
that records k.. of that thread, up to k, are durable). Killed at random
moments or by a failpoint (PYKV_FAILPOINTS)."""

from __future__ import annotations

import sys
import threading

from pykv.wal import WAL, RecordType

from wal_helpers import payload_for

path, threads, segment_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wal = WAL.open(path, segment_bytes=segment_bytes)
next_k: dict[int, int] = {t: 0 for t in range(threads)}
for batch in wal.read():
    for record in batch:
        if record.type == RecordType.ENTRY:
            t, k = (record.index - 1) % threads, (record.index - 1) // threads
            next_k[t] = max(next_k[t], k + 1)
out_lock = threading.Lock()


def writer(t: int) -> None:
    k = next_k[t]
    while True:
        n = 1 + k % 4
        indexes = [1 + t + threads * j for j in range(k, k + n)]
        wal.append_sync([(RecordType.ENTRY, i, payload_for(i, 40 + i % 300)) for i in indexes])
        k += n
        with out_lock:
            sys.stdout.write(f"{t} {k - 1}\n")
            sys.stdout.flush()


print("ready", flush=True)
for t in range(threads):
    threading.Thread(target=writer, args=(t,), daemon=True).start()
threading.Event().wait()
