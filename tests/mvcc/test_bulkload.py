"""bulkload.build_store: a store built from a live state with given revisions
is the very store that writing that history and compacting it all builds."""

from __future__ import annotations

import pytest

from pykv import errors
from pykv.mvcc import Store, bulkload, schema as s
from tests.mvcc.requests import (CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest,
                                 RequestOp, TxnRequest)

LONG_KEY = b"long/" + b"y" * 700


def write_history(apply) -> None:
    apply.lease_grant(7, 60)
    apply.lease_grant(8, 90)
    for i in range(50):
        apply.put(PutRequest(b"k/%03d" % i, b"v%d" % i, lease=7 if i % 10 == 0 else 0))
    apply.put(PutRequest(b"k/001", b"again"))
    apply.delete_range(DeleteRangeRequest(b"k/002"))
    apply.delete_range(DeleteRangeRequest(b"k/010", b"k/020"))  # k/010 held lease 7
    apply.txn(TxnRequest(success=[RequestOp(request_put=PutRequest(b"txn/%d" % i, b"t"))
                                  for i in range(3)]))           # sub revisions 0, 1, 2
    apply.put(PutRequest(LONG_KEY, b"long", lease=8))
    apply.put(PutRequest(b"bin/\x00\xff", b"\x00\x01"))


def live_records(store: Store) -> list[bulkload.LiveRecord]:
    """What an importer would hand over: every live key with its revisions
    (the sub revision read from the record, which KeyValue does not carry)."""
    out = []
    with store._env.begin() as txn:
        for lmdb_key, rec in txn.cursor(store._tables.kv):
            create, mod, version, lease, sub, _extra = s.HDR.unpack_from(rec)
            out.append((s.record_key(rec, lmdb_key), s.record_value(rec), create, mod, sub,
                        version, lease))
    return out


def test_bulk_load_builds_the_store_that_writing_then_compacting_builds(store, apply, tmp_path):
    write_history(apply)
    revision = store.revision
    apply.compact(CompactionRequest(revision))
    while store.compact_step():
        pass
    records = live_records(store)
    path = str(tmp_path / "loaded" / "db")
    written = bulkload.build_store(path, reversed(records), {7: 60, 8: 90}, revision=revision,
                                   compact_revision=revision,
                                   applied_index=store.applied_index)
    assert written == len(records) == store.range(RangeRequest(b"\x00", b"\x00")).count
    loaded = Store.open(path)
    try:
        assert (loaded.hash().hash, loaded.hash().revision) == \
            (store.hash().hash, store.hash().revision)
        assert loaded.hash_kv().hash == store.hash_kv().hash
        assert (loaded.revision, loaded.compact_revision, loaded.applied_index) == \
            (revision, revision, store.applied_index)
        assert loaded.get(LONG_KEY) == store.get(LONG_KEY)
        assert loaded.lessor.time_to_live(8, keys=True).keys == [LONG_KEY]
        assert loaded.lessor.time_to_live(7, keys=True).keys == [b"k/000", b"k/020", b"k/030",
                                                                  b"k/040"]
        with pytest.raises(errors.Compacted):
            loaded.range(RangeRequest(b"k/001", revision=revision - 1))
        with loaded.write(loaded.applied_index + 1) as w:
            assert w.put(PutRequest(b"k/001", b"next")).revision == revision + 1
        kv = loaded.get(b"k/001")
        assert (kv.create_revision, kv.mod_revision, kv.version) == (
            store.get(b"k/001").create_revision, revision + 1, 3)
    finally:
        loaded.close()


def test_an_empty_never_compacted_state_loads_as_a_new_store(tmp_path):
    path = str(tmp_path / "db")
    assert bulkload.build_store(path, [], {}, revision=1, compact_revision=s.NEVER_COMPACTED,
                                applied_index=0) == 0
    loaded = Store.open(path)
    try:
        assert (loaded.revision, loaded.compact_revision) == (1, 0)
        with loaded.write(1) as w:
            w.compact(CompactionRequest(0))  # allowed once, as in a new store
    finally:
        loaded.close()


def test_a_record_beyond_the_revision_is_refused_and_leaves_nothing(tmp_path):
    path = tmp_path / "db"
    with pytest.raises(ValueError, match="do not fit a store at revision 5"):
        bulkload.build_store(str(path), [(b"k", b"v", 2, 9, 0, 1, 0)], {}, revision=5,
                             compact_revision=5, applied_index=0)
    assert list(tmp_path.iterdir()) == []
