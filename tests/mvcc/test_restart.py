"""Restart and replay: the applied index is stored with the data, so closing
and reopening gives the same state and replaying applied entries is refused
(the engine skips them)."""

from __future__ import annotations

import os
import subprocess
import sys
import pathlib

import pytest

from pykv import errors
from pykv.mvcc import Store
from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def state(store):
    result = store.range(RangeRequest(b"\x00", b"\x00"))
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            for kv in result.kvs]


def test_reopen_gives_the_same_state(store_path, clock):
    store = Store.open(store_path, clock=clock)
    with store.write(1) as w:
        w.put(PutRequest(b"a", b"1"))
        w.put(PutRequest(b"b", b"2"))
        grant = w.lease_grant(77, 30)
    with store.write(2) as w:
        w.put(PutRequest(b"a", b"3", lease=grant.id))
        w.delete_range(DeleteRangeRequest(b"b"))
        w.compact(CompactionRequest(3))
    before = (state(store), store.revision, store.compact_revision, store.hash_kv().hash)
    store.close()
    store = Store.open(store_path, clock=clock)
    try:
        after = (state(store), store.revision, store.compact_revision, store.hash_kv().hash)
        assert after == before
        assert store.applied_index == 2
        assert store.lessor.leases() == [77]
        assert store.lessor.time_to_live(77, keys=True).keys == [b"a"]
        assert store.range(RangeRequest(b"a", revision=3)).kvs[0].value == b"1"
    finally:
        store.close()


def test_replaying_an_applied_entry_is_refused_and_changes_nothing(store):
    with store.write(5) as w:
        w.put(PutRequest(b"a", b"1"))
    before = store.hash_kv().hash
    for index in (4, 5):
        with pytest.raises(ValueError, match="already applied"):
            store.write(index)
    assert store.hash_kv().hash == before and store.applied_index == 5
    with store.write(6):
        pass  # an entry with no MVCC op still advances the applied index
    assert store.applied_index == 6 and store.revision == 2


def test_a_crash_before_commit_loses_the_whole_batch_only(store_path):
    """A killed process never half-applies a batch: LMDB commits atomically,
    and the applied index moves with the data."""
    code = (
        "import os, sys\n"
        "from pykv.mvcc import Store\n"
        "from tests.mvcc.requests import PutRequest\n"
        "st = Store.open(sys.argv[1])\n"
        "with st.write(1) as w:\n"
        "    w.put(PutRequest(b'committed', b'1'))\n"
        "w = st.write(2).__enter__()\n"
        "for i in range(1000):\n"
        "    w.put(PutRequest(b'lost%d' % i, b'x'))\n"
        "os._exit(9)\n"  # no commit, no close: like kill -9 mid-batch
    )
    proc = subprocess.run([sys.executable, "-c", code, store_path], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    store = Store.open(store_path)
    try:
        assert [k for k, *_ in state(store)] == [b"committed"]
        assert store.applied_index == 1 and store.revision == 2
    finally:
        store.close()


def test_closed_store_refuses_calls(store):
    store.close()
    with pytest.raises(errors.ClosedError):
        store.range(RangeRequest(b"a"))
    with pytest.raises(errors.ClosedError):
        store.write(1)
    store.close()  # twice is fine


def test_store_from_a_newer_schema_is_refused(store_path):
    import lmdb

    from pykv.mvcc import schema

    Store.open(store_path).close()
    env = lmdb.open(store_path, subdir=False, max_dbs=10)
    with env.begin(write=True) as txn:
        txn.put(schema.META_SCHEMA, schema.pack_i64(99), db=env.open_db(schema.TABLE_META,
                                                                       txn=txn))
    env.close()
    with pytest.raises(errors.StorageError, match="schema version 99"):
        Store.open(store_path)


def test_checkpoint_syncs(store):
    with store.write(1) as w:
        w.put(PutRequest(b"a"))
    store.checkpoint()
    assert os.path.getsize(store.path) > 0


@pytest.mark.parametrize("options, sync_flag", [
    ({}, False),                                   # checkpoint: MDB_NOSYNC, synced by checkpoints
    ({"durability": "checkpoint"}, False),
    ({"durability": "commit"}, True),              # data synced before the meta page is written
    ({"sync": True}, True),                        # the older spelling of "commit"
    ({"durability": "none"}, False),
    ({"sync": False}, False),
])
def test_open_flags(store_path, options, sync_flag):
    """Each durability mode opens LMDB with its flags; none uses writemap
    (which would leave no write-order hint at all) or metasync."""
    store = Store.open(store_path, **options)
    try:
        flags = store._env.flags()
        assert (flags["sync"], flags["metasync"], flags["writemap"], flags["subdir"],
                flags["lock"]) == (sync_flag, False, False, False, True)
        assert os.path.exists(store_path + "-checkpoint") == \
            (store.durability == "checkpoint")
    finally:
        store.close()
    assert not os.path.exists(store_path + "-checkpoint")  # a clean close removes it
    assert os.path.exists(store_path + "-lock")  # <data-dir>/member/snap/db-lock
