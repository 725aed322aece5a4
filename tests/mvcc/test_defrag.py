"""Defragmentation (etcd's Defragment): the file shrinks to the pages in
use, everything in it survives, reads go on, and a crash at any point
leaves a complete store."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading

import pytest

from pykv import errors
from pykv.mvcc import Store, defrag, types as t
from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VALUE = b"x" * 1000


def fill_then_delete(store: Store, keys: int = 20_000) -> int:
    """Write ``keys`` keys of 1 KB and a lease with keys; delete all but 100
    keys, compact everything away and raise the NOSPACE alarm (etcd's
    remedy is compact, defragment, disarm). Returns the next entry index."""
    index = store.applied_index + 1
    with store.write(index) as w:
        w.lease_grant(7, 3600)
        w.put(PutRequest(b"leased/a", b"A", lease=7))
        w.put(PutRequest(b"leased/b", b"B", lease=7))
    for start in range(0, keys, 2000):
        index += 1
        with store.write(index) as w:
            for i in range(start, start + 2000):
                w.put(PutRequest(b"k/%06d" % i, VALUE))
    index += 1
    with store.write(index) as w:
        w.delete_range(DeleteRangeRequest(b"k/000100", b"k/\xff"))
        w.put(PutRequest(b"k/000000", b"rewritten"))  # history above the compaction
    index += 1
    with store.write(index) as w:
        w.compact(CompactionRequest(store.revision - 1))
    while store.compact_step():
        pass
    index += 1
    with store.write(index) as w:
        w.put(PutRequest(b"k/000001", b"after compaction"))
        w.alarm(t.ALARM_ACTIVATE, 42, t.ALARM_NOSPACE)
    return index + 1


def snapshot_of(store: Store) -> dict:
    """Everything a defragmentation must keep, as plain values."""
    everything = store.range(RangeRequest(b"\x00", b"\x00"))
    at_compact = store.range(RangeRequest(b"k/", b"k0", revision=store.compact_revision))
    return {
        "kvs": [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                for kv in everything.kvs],
        "history": [(kv.key, kv.value, kv.mod_revision) for kv in at_compact.kvs],
        "revision": store.revision,
        "compact_revision": store.compact_revision,
        "applied_index": store.applied_index,
        "leases": [(i, store.lessor.time_to_live(i, keys=True).keys)
                   for i in store.lessor.leases()],
        "alarms": store.alarms(),
        "hash_kv": store.hash_kv().hash,
    }


def test_defragment_shrinks_the_file_and_keeps_everything(store_path):
    store = Store.open(store_path, sync=False)
    try:
        next_index = fill_then_delete(store)
        before_state = snapshot_of(store)
        assert len(before_state["kvs"]) == 102 and before_state["alarms"]
        before, after = store.defragment()
        assert after == os.path.getsize(store_path)
        assert before > 20_000_000 and after < before // 10
        assert store.size_bytes <= after
        assert snapshot_of(store) == before_state
        assert not os.path.exists(store_path + ".tmp")
        # The store goes on: writes, reads, compaction, watches.
        watcher = store.watch(b"k/000002")
        with store.write(next_index) as w:
            w.alarm(t.ALARM_DEACTIVATE, 42, t.ALARM_NOSPACE)
            w.put(PutRequest(b"k/000002", b"new"))
        assert store.get_value(b"k/000002") == b"new"
        assert [e.kv.value for r in watcher.take() for e in r.events] == [b"new"]
        after_write = snapshot_of(store)
    finally:
        store.close()
    reopened = Store.open(store_path, sync=False)
    try:
        assert snapshot_of(reopened) == after_write
    finally:
        reopened.close()


def test_reads_go_on_during_the_copy_while_writers_wait(store_path, monkeypatch):
    store = Store.open(store_path, sync=False)
    fill_then_delete(store, keys=2000)
    expected = snapshot_of(store)
    during: list = []
    real_copy = defrag.compact_copy

    def copy_with_a_reader(env, path):
        during.append(("writers excluded", store._write_lock.locked()))
        reader = threading.Thread(target=lambda: during.append(snapshot_of(store)))
        reader.start()
        reader.join()
        return real_copy(env, path)

    monkeypatch.setattr(defrag, "compact_copy", copy_with_a_reader)
    try:
        store.defragment()
        assert during == [("writers excluded", True), expected]
    finally:
        store.close()


def test_an_idle_reader_thread_reads_the_new_file_after_defragment(store_path):
    store = Store.open(store_path, sync=False)
    next_index = fill_then_delete(store, keys=2000)
    go = threading.Semaphore(0)
    done = threading.Semaphore(0)
    seen = []

    def reader() -> None:
        for _ in range(2):
            go.acquire()
            seen.append((store.get_value(b"k/000000"), store.get_value(b"k/000003")))
            done.release()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        go.release()
        done.acquire()  # the reader holds a cached view of the old file now
        store.defragment()
        with store.write(next_index) as w:
            w.alarm(t.ALARM_DEACTIVATE, 42, t.ALARM_NOSPACE)
            w.put(PutRequest(b"k/000003", b"three"))
        go.release()
        done.acquire()
        thread.join()
        assert seen == [(b"rewritten", VALUE), (b"rewritten", b"three")]
    finally:
        store.close()


def test_defragment_of_a_closed_store_is_refused(store):
    store.close()
    with pytest.raises(errors.ClosedError):
        store.defragment()


def test_a_failed_copy_leaves_the_store_as_it_was(store_path, monkeypatch):
    store = Store.open(store_path, sync=False)
    fill_then_delete(store, keys=200)
    expected = snapshot_of(store)

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)  # the copy is written, its fsync fails
    try:
        with pytest.raises(errors.StorageError, match="compacting copy"):
            store.defragment()
        assert not os.path.exists(store_path + ".tmp")
        assert snapshot_of(store) == expected
    finally:
        store.close()


@pytest.mark.parametrize("crash_at", ["before_rename", "after_rename"])
def test_a_crash_during_defragment_leaves_a_complete_store(store_path, crash_at):
    """The process dies (like kill -9) just before or just after the rename:
    the old file or the new one, both complete, and no stale copy left."""
    code = (
        "import os, sys\n"
        "from pykv.mvcc import Store\n"
        "from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest\n"
        "from pykv.mvcc import defrag\n"
        "st = Store.open(sys.argv[1], sync=False)\n"
        "for b in range(5):\n"
        "    with st.write(b + 1) as w:\n"
        "        for i in range(1000):\n"
        "            w.put(PutRequest(b'k/%06d' % (b * 1000 + i), b'x' * 1000))\n"
        "with st.write(6) as w:\n"
        "    w.delete_range(DeleteRangeRequest(b'k/000010', b'k/\\xff'))\n"
        "    w.compact(CompactionRequest(st.revision))\n"
        "while st.compact_step():\n"
        "    pass\n"
        "st.checkpoint()\n"
        "real_replace = os.replace\n"
        "def crash(*args):\n"
        "    if sys.argv[2] == 'after_rename':\n"
        "        real_replace(*args)\n"
        "    os._exit(9)\n"
        "defrag.os.replace = crash\n"
        "st.defragment()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, store_path, crash_at], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert os.path.exists(store_path + ".tmp") == (crash_at == "before_rename")
    store = Store.open(store_path)
    try:
        assert not os.path.exists(store_path + ".tmp")
        kvs = store.range(RangeRequest(b"k/", b"k0")).kvs
        assert [kv.key for kv in kvs] == [b"k/%06d" % i for i in range(10)]
        assert store.applied_index == 6
        store.defragment()  # and it can be defragmented again
        assert len(store.range(RangeRequest(b"k/", b"k0")).kvs) == 10
    finally:
        store.close()


def test_sizes_asked_during_the_swap_wait_for_the_new_file(store_path, monkeypatch):
    # The server asks for the size after every applied batch and for Status,
    # from other threads than the one defragmenting; the file's environment
    # is closed during the swap (this once stopped the server's Raft loop).
    store = Store.open(store_path, sync=False)
    fill_then_delete(store, keys=2000)
    asked: list = []
    threads: list[threading.Thread] = []
    real_swap = defrag.swap_in

    def ask() -> None:
        try:
            asked.append((store.size_bytes, store.size_in_use_bytes))
        except BaseException as exc:  # noqa: BLE001 - checked below
            asked.append(exc)

    def swap_with_askers(tmp, path):
        for _ in range(2):
            thread = threading.Thread(target=ask)
            thread.start()
            threads.append(thread)
        return real_swap(tmp, path)

    monkeypatch.setattr(defrag, "swap_in", swap_with_askers)
    try:
        _before, after = store.defragment()
        for thread in threads:
            thread.join()
        in_use = store.size_in_use_bytes
        assert asked == [(store.size_bytes, in_use)] * 2
        assert store.size_bytes <= after and 0 < in_use <= store.size_bytes
    finally:
        store.close()
