"""hash_kv: equal history gives an equal hash, however the entries were
batched and however far physical compaction has got."""

from __future__ import annotations

import random

import pytest

from pykv import errors
from pykv.mvcc import CompactionRequest, DeleteRangeRequest, PutRequest, Store


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
