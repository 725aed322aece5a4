"""hash_kv: equal history gives an equal hash, however the entries were
batched and however far physical compaction has got."""

from __future__ import annotations

import random

import pytest

from pykv import errors
from pykv.mvcc import Store
from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest


def ops(seed=3, n=400):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = b"k%02d" % rnd.randrange(30)
        if rnd.random() < 0.2:
            out.append(("delete", DeleteRangeRequest(key, b"k%02d" % (int(key[1:]) + 2))))
        else:
            out.append(("put", PutRequest(key, b"%d" % i)))
        if i in (150, 300):
            out.append(("compact", CompactionRequest(i // 2)))
    return out


def apply_all(store, batch_size, step_every):
    index = 0
    todo = ops()
    for start in range(0, len(todo), batch_size):
        index += 1
        with store.write(index) as w:
            for kind, req in todo[start:start + batch_size]:
                {"put": w.put, "delete": w.delete_range, "compact": w.compact}[kind](req)
        if step_every and index % step_every == 0:
            store.compact_step()


def test_hash_is_independent_of_batching_and_compaction_progress(tmp_path):
    one = Store.open(str(tmp_path / "one" / "db"))
    many = Store.open(str(tmp_path / "many" / "db"))
    try:
        one.compact_batch_changes = many.compact_batch_changes = 10
        apply_all(one, batch_size=1, step_every=1)
        apply_all(many, batch_size=37, step_every=0)
        assert one.revision == many.revision and one.compact_revision == many.compact_revision
        assert many.compact_pending and not one.compact_pending  # physically apart
        for rev in (0, one.compact_revision, one.revision - 50):
            assert one.hash_kv(rev).hash == many.hash_kv(rev).hash
        while many.compact_step():
            pass
        assert one.hash_kv().hash == many.hash_kv().hash
    finally:
        one.close()
        many.close()


def test_hash_differs_when_history_differs(tmp_path, store):
    with store.write(1) as w:
        w.put(PutRequest(b"a", b"1"))
    first = store.hash_kv().hash
    with store.write(2) as w:
        w.put(PutRequest(b"a", b"1"))  # same value, one more version
    assert store.hash_kv().hash != first
    assert store.hash_kv(2).hash == first


def test_hash_kv_revision_checks(store):
    with store.write(1) as w:
        for _ in range(3):
            w.put(PutRequest(b"a"))
        w.compact(CompactionRequest(3))
    with pytest.raises(errors.Compacted):
        store.hash_kv(2)
    with pytest.raises(errors.FutureRevision):
        store.hash_kv(9)
    result = store.hash_kv()
    assert (result.revision, result.compact_revision) == (4, 3)


def test_hash_kv_reports_minus_one_until_the_first_compaction_as_etcd_does(store):
    with store.write(1) as w:
        w.put(PutRequest(b"a"))
    assert (store.hash_kv().compact_revision, store.last_compaction) == (-1, -1)
    with store.write(2) as w:
        w.compact(CompactionRequest(0))  # compacting to 0 counts: etcd says 0 from then on
    assert (store.hash_kv().compact_revision, store.last_compaction) == (0, 0)
    assert store.compact_revision == 0


# --- store.hash(): etcd's Maintenance.Hash over every table -------------------------------


def reference_hash(store: Store, tmp_path) -> int:
    """The dumb version: copy the file, open the copy with raw lmdb, and
    CRC-32C (the ``crc32c`` package) every named table found in it, in name
    order, over name, then keys and values, minus the applied index and the
    schema version."""
    import crc32c
    import lmdb

    from pykv.mvcc import schema

    copy = str(tmp_path / f"reference-copy-{len(list(tmp_path.iterdir()))}.db")
    store._env.copy(copy)
    env = lmdb.open(copy, subdir=False, readonly=True, lock=False, max_dbs=64)
    try:
        with env.begin() as txn:
            names = sorted(txn.cursor().iternext(values=False))
        data = b""
        for name in names:
            db = env.open_db(name, create=False)
            data += name
            with env.begin(db=db) as txn:
                for key, value in txn.cursor():
                    if name == schema.TABLE_META and key in (schema.META_APPLIED_INDEX,
                                                             schema.META_SCHEMA):
                        continue
                    data += key + value
        return crc32c.crc32c(data)
    finally:
        env.close()


def test_store_hash_is_crc32c_over_every_table_but_the_applied_index(store, apply, tmp_path):
    with apply.batch() as w:
        w.lease_grant(9, 60)
        w.put(PutRequest(b"a", b"1", lease=9))
        w.put(PutRequest(b"b" * 600, b"long key"))
        w.alarm(1, 3, 1)  # ACTIVATE NOSPACE for member 3
    apply.delete_range(DeleteRangeRequest(b"a"))
    result = store.hash()
    assert result.hash == reference_hash(store, tmp_path)
    assert 0 <= result.hash < 2 ** 32 and result.revision == store.revision
    apply.index += 5
    with store.write(apply.index):
        pass  # only the applied index moves
    assert store.hash().hash == result.hash
    with apply.batch() as w:
        w.alarm(2, 3, 1)  # DEACTIVATE: the alarm table changes
    assert store.hash().hash != result.hash
    assert store.hash().hash == reference_hash(store, tmp_path)


def test_store_hash_is_equal_on_members_that_applied_the_same_entries(tmp_path):
    one = Store.open(str(tmp_path / "one" / "db"), sync=False)
    many = Store.open(str(tmp_path / "many" / "db"), sync=False)
    try:
        one.compact_batch_changes = many.compact_batch_changes = 10
        apply_all(one, batch_size=1, step_every=1)
        apply_all(many, batch_size=37, step_every=0)
        while many.compact_step():
            pass
        assert one.applied_index != many.applied_index
        assert one.hash().hash == many.hash().hash
        with one.write(one.applied_index + 1) as w:
            w.put(PutRequest(b"only-on-one", b"x"))
        assert one.hash().hash != many.hash().hash
    finally:
        one.close()
        many.close()


def test_store_hash_survives_defragment_and_snapshot_restore(store, apply, tmp_path):
    import io

    for i in range(50):
        apply.put(PutRequest(b"k%02d" % (i % 7), b"v%d" % i))
    apply.compact(CompactionRequest(store.revision - 5))
    while store.compact_step():
        pass
    before = store.hash().hash
    store.defragment()
    assert store.hash().hash == before
    stream = io.BytesIO()
    store.write_snapshot(stream)
    stream.seek(0)
    restored = Store.restore_snapshot(stream, str(tmp_path / "restored" / "db"))
    try:
        assert restored.hash().hash == before
    finally:
        restored.close()
