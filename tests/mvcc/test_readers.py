"""Cached read transactions never pin old snapshots for long: an idle reader
thread must not make the LMDB file grow (each stale read transaction keeps
every page freed after it from being reused)."""

from __future__ import annotations

import threading

from pykv.mvcc import Store
from tests.mvcc.requests import CompactionRequest, PutRequest, RangeRequest

VALUE_1K = b"v" * 1024


def stale_slots(store: Store) -> int:
    """Slots still holding a transaction begun before the last commit."""
    return store._views.stale_count()


class IdleReader:
    """A thread that runs ``read`` once, then idles until ``stop()``."""

    def __init__(self, read):
        self._read = read
        self.done_reading = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.done_reading.wait()

    def _run(self) -> None:
        self._read()
        self.done_reading.set()
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def test_an_idle_reader_thread_does_not_make_the_file_grow(store_path):
    store = Store.open(store_path, sync=False)
    reader = IdleReader(lambda: store.get(b"key000"))
    try:
        # 20,000 one-put batches of 1 KiB over 100 keys, compacted as etcd's
        # auto-compaction would: the live data stays near 1 MB.
        for i in range(20_000):
            with store.write(i + 1) as w:
                w.put(PutRequest(b"key%03d" % (i % 100), VALUE_1K))
                if i % 1000 == 999:
                    w.compact(CompactionRequest(store.revision - 200))
            if i % 1000 == 999:
                # Before the fix the file grew ~40 KB per batch: stop early.
                assert store.size_bytes <= 8 * store.size_in_use_bytes, i
        assert stale_slots(store) == 0
        assert store.size_bytes <= 8 * store.size_in_use_bytes
        assert store.size_in_use_bytes < 4 << 20
    finally:
        reader.stop()
        store.close()


def test_a_reader_busy_during_commits_drops_its_snapshot_when_it_finishes(store, apply):
    apply.put(PutRequest(b"k", b"old"))
    entered = threading.Event()
    release = threading.Event()
    seen = []

    def long_read() -> None:
        slot, view = store._views.begin()  # a read in progress: the writer must not touch it
        try:
            entered.set()
            release.wait()
            seen.append(bytes(view.txn.get(b"k", db=store._kv_db)[40:]))
        finally:
            store._views.end(slot, view)

    thread = threading.Thread(target=long_read)
    thread.start()
    entered.wait()
    for n in range(3):
        apply.put(PutRequest(b"k", b"new%d" % n))
    assert stale_slots(store) == 1  # in use: the commits could not drop it
    release.set()
    thread.join()
    assert seen == [b"old"]  # the read saw one consistent snapshot
    assert stale_slots(store) == 0  # and let it go as soon as it finished
    assert store.get_value(b"k") == b"new2"


def test_an_idle_reader_sees_new_commits_on_its_next_read(store, apply):
    apply.put(PutRequest(b"k", b"1"))
    values = []
    reader_turn = threading.Semaphore(0)
    writer_turn = threading.Semaphore(0)

    def reader() -> None:
        for _ in range(3):
            reader_turn.acquire()
            values.append((store.get_value(b"k"), store.range(RangeRequest(b"k")).revision))
            writer_turn.release()

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(2, 5):
        reader_turn.release()
        writer_turn.acquire()
        assert stale_slots(store) == 0
        apply.put(PutRequest(b"k", b"%d" % n))
        assert stale_slots(store) == 0
    thread.join()
    assert values == [(b"1", 2), (b"2", 3), (b"3", 4)]


def test_readers_and_a_writer_in_parallel_see_monotonic_revisions(store_path):
    store = Store.open(store_path, sync=False)
    stop = threading.Event()
    failures: list[str] = []

    def read_loop() -> None:
        last = 0
        try:
            while not stop.is_set():
                value = store.get_value(b"counter")
                n = int(value) if value is not None else 0
                if n < last:
                    failures.append(f"went back from {last} to {n}")
                last = n
        except Exception as exc:  # reported below, not lost in the thread
            failures.append(repr(exc))

    threads = [threading.Thread(target=read_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(1, 3001):
            with store.write(i) as w:
                w.put(PutRequest(b"counter", b"%d" % i))
                w.put(PutRequest(b"pad", VALUE_1K))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        assert failures == []
        assert store.get_value(b"counter") == b"3000"
        # Three busy readers pin at most the snapshots of their reads in progress.
        assert store.size_bytes <= 8 * store.size_in_use_bytes + (4 << 20)
    finally:
        store.close()
