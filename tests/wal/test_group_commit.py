"""Many threads appending and syncing at once: nothing lost or duplicated,
per-thread order kept, no caller returns before its records are durable,
and fdatasyncs are shared (group commit). Rotation and release run
concurrently with the appends."""

from __future__ import annotations

import threading

from pykv.wal import WAL, RecordType

from wal_helpers import payload_for, read_all

THREADS = 16
PER_THREAD = 150


def index_of(thread: int, k: int) -> int:
    return 1 + thread + THREADS * k


def test_concurrent_append_and_sync_lose_nothing_and_share_fdatasyncs(wal_dir):
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)

    def writer(t: int, wal: WAL) -> None:
        try:
            start.wait()
            k = 0
            while k < PER_THREAD:
                # Mix the calls: single records, small batches, split append/sync.
                n = 1 + (k + t) % 3 if t % 2 else 1
                batch = [(RecordType.ENTRY, index_of(t, j), payload_for(index_of(t, j), 80))
                         for j in range(k, min(k + n, PER_THREAD))]
                if t % 4 == 3:
                    pos = wal.append(batch)
                    wal.sync(pos)
                else:
                    pos = wal.append_sync(batch)
                # The contract: no caller returns before its records are durable.
                assert wal.durable_position >= pos
                k += len(batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    with WAL.open(wal_dir, segment_bytes=64 << 10) as wal:
        threads = [threading.Thread(target=writer, args=(t, wal)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        start.wait()
        # Meanwhile: release what rotation leaves behind, and read.
        released = 0
        while any(thread.is_alive() for thread in threads):
            segments = wal.segments()
            if len(segments) > 2:
                released += wal.release(segments[0].max_index + 1)
            threads[0].join(0.01)
        for thread in threads:
            thread.join()
        assert not failures, failures
        stats = wal.stats()
        assert stats["records"] == THREADS * PER_THREAD
        assert stats["rotations"] > 0 and released > 0
        assert stats["syncs"] < stats["records"]
        assert stats["synced_records_max"] > 1

    with WAL.open(wal_dir, segment_bytes=64 << 10) as wal:
        found = [r for r in read_all(wal) if r.type == RecordType.ENTRY]
        first_kept = wal.segments()[0].first_index
    by_thread: dict[int, list[int]] = {t: [] for t in range(THREADS)}
    for record in found:
        assert record.payload == payload_for(record.index, 80)
        by_thread[(record.index - 1) % THREADS].append((record.index - 1) // THREADS)
    for t, ks in by_thread.items():
        # Released segments took a prefix (all of it, for a thread that
        # finished early); what is left is in order, no gaps, to the end.
        assert ks == list(range(PER_THREAD - len(ks), PER_THREAD)), t
    assert len(found) == len(set(r.index for r in found))
    assert first_kept > 0
