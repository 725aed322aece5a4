"""Space: the quota and the NOSPACE alarm (reads and deletes go on), and a
full LMDB map that grows instead of failing."""

from __future__ import annotations

import threading

import pytest

from pykv import errors
from pykv.mvcc import Store, types as t
from tests.mvcc.requests import DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest


def test_nospace_alarm_stops_puts_but_not_reads_or_deletes(store_path):
    store = Store.open(store_path, quota_bytes=1 << 20)
    try:
        index = 0
        while not store.quota_exceeded():
            index += 1
            with store.write(index) as w:
                for i in range(100):
                    w.put(PutRequest(b"k%d-%d" % (index, i), b"x" * 1000))
        index += 1
        with store.write(index) as w:
            assert w.alarm(t.ALARM_ACTIVATE, 1, t.ALARM_NOSPACE) == [
                t.AlarmMember(1, t.ALARM_NOSPACE)]
            with pytest.raises(errors.NoSpace) as info:
                w.put(PutRequest(b"more", b"x"))
            assert (str(info.value), info.value.code) == (
                "etcdserver: mvcc: database space exceeded", "RESOURCE_EXHAUSTED")
            with pytest.raises(errors.NoSpace):
                w.txn(TxnRequest([], [], [RequestOp(request_put=PutRequest(b"p"))]))
            with pytest.raises(errors.NoSpace):
                w.lease_grant(1, 10)
            assert w.delete_range(DeleteRangeRequest(b"k1-0")).deleted == 1
        assert store.range(RangeRequest(b"k1-1")).count == 1
        assert store.alarms() == [t.AlarmMember(1, t.ALARM_NOSPACE)]
        index += 1
        with store.write(index) as w:
            assert w.alarm(t.ALARM_GET) == [t.AlarmMember(1, t.ALARM_NOSPACE)]
            assert w.alarm(t.ALARM_DEACTIVATE, 1, t.ALARM_NOSPACE) == [
                t.AlarmMember(1, t.ALARM_NOSPACE)]
            assert w.alarm(t.ALARM_DEACTIVATE, 1, t.ALARM_NOSPACE) == []
            w.put(PutRequest(b"more", b"x"))
    finally:
        store.close()


def test_alarms_survive_a_restart(store_path):
    store = Store.open(store_path)
    with store.write(1) as w:
        w.alarm(t.ALARM_ACTIVATE, 3, t.ALARM_NOSPACE)
    store.close()
    store = Store.open(store_path)
    try:
        with store.write(2) as w, pytest.raises(errors.NoSpace):
            w.put(PutRequest(b"a"))
    finally:
        store.close()


def test_a_full_map_grows_and_the_batch_goes_on(store_path):
    store = Store.open(store_path, map_bytes=1 << 20)  # raised to the 64 MiB minimum
    try:
        start = store._env.info()["map_size"]
        results = []
        with store.write(1) as w:
            for i in range(120):
                results.append(w.put(PutRequest(b"k%04d" % i, b"x" * (1 << 20))).revision)
        assert results == list(range(2, 122))
        assert store._env.info()["map_size"] > start
        assert store.range(RangeRequest(b"k", b"l", count_only=True)).count == 120
        assert store.get(b"k0119").value == b"x" * (1 << 20)
    finally:
        store.close()


def test_readers_on_other_threads_survive_a_map_resize(store_path):
    store = Store.open(store_path, map_bytes=1 << 20)
    try:
        with store.write(1) as w:
            w.put(PutRequest(b"stable", b"1"))
        stop = threading.Event()
        seen, failures = [], []

        def reader():
            while not stop.is_set():
                try:
                    seen.append(store.get(b"stable").value)
                except Exception as exc:  # pragma: no cover - the failure we look for
                    failures.append(exc)
                    return

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for th in threads:
            th.start()
        with store.write(2) as w:
            for i in range(100):
                w.put(PutRequest(b"big%d" % i, b"y" * (1 << 20)))
        stop.set()
        for th in threads:
            th.join()
        assert failures == [] and seen and set(seen) == {b"1"}
    finally:
        store.close()


def test_a_commit_cut_short_by_a_full_disk_says_so_and_changes_nothing(store, monkeypatch):
    """LMDB reports a write cut short by a full disk as EIO ("Input/output
    error"): the error names the store and points at the disk."""
    from types import SimpleNamespace

    import lmdb

    from pykv.mvcc import write

    with store.write(1) as w:
        w.put(PutRequest(b"kept", b"1"))
    real_env = store._env

    class FailingTxn:
        def __init__(self, txn):
            self._txn = txn

        def __getattr__(self, name):
            return getattr(self._txn, name)

        def commit(self):
            self._txn.abort()
            raise lmdb.Error("mdb_txn_commit: Input/output error")

    class Env:
        def __getattr__(self, name):
            return getattr(real_env, name)

        def begin(self, *args, **kwargs):
            txn = real_env.begin(*args, **kwargs)
            return FailingTxn(txn) if kwargs.get("write") else txn

    monkeypatch.setattr(store, "_env", Env())
    monkeypatch.setattr(write.os, "statvfs",
                        lambda _path: SimpleNamespace(f_bavail=3, f_frsize=4096))
    with pytest.raises(errors.StorageError) as info:
        with store.write(2) as w:
            w.put(PutRequest(b"lost", b"2"))
    assert store.path in str(info.value)
    assert "Input/output error" in str(info.value)
    assert "has 12288 bytes free: is the disk full?" in str(info.value)
    monkeypatch.setattr(store, "_env", real_env)
    assert store.revision == 2 and store.applied_index == 1
    assert store.range(RangeRequest(b"lost")).count == 0
    with store.write(2) as w:  # the writer lock was given back
        w.put(PutRequest(b"after", b"3"))
    assert store.range(RangeRequest(b"after")).kvs[0].mod_revision == 3
