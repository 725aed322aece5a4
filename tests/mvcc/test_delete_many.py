"""The bulk path of DeleteRange (``WriteBatch._delete_many``, taken from
``write.BULK_DELETE_MIN`` keys on) leaves exactly what deleting key by key
leaves: the same tables, results, events and revisions, for short, long and
NUL-bearing keys, keys with history and leases, and deletes inside txns."""

from __future__ import annotations

import random

import pytest

from pykv.mvcc import Store, write
from tests.mvcc.requests import DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest
from tests.mvcc.power_loss import dump


def keys_of_every_kind(rng: random.Random) -> list[bytes]:
    keys = [b"k/%04d" % i for i in range(150)]
    keys += [b"k/nul\x00%03d\x00" % i for i in range(30)]           # escaped in hist
    keys += [b"k/long/" + b"x" * 470 + b"%04d" % i for i in range(30)]  # long hist keys
    keys += [b"k/huge/" + b"y" * 600 + b"%04d" % i for i in range(30)]  # long kv keys too
    rng.shuffle(keys)
    return keys


def run(path: str, bulk_min: int, monkeypatch: pytest.MonkeyPatch, seed: int):
    monkeypatch.setattr(write, "BULK_DELETE_MIN", bulk_min)
    rng = random.Random(seed)
    keys = keys_of_every_kind(rng)
    results, events = [], []
    with Store.open(path, durability="none") as store:
        watcher = store.watch(b"k", b"l", prev_kv=True)
        index = 0

        def batch():
            nonlocal index
            index += 1
            return store.write(index)

        with batch() as w:
            lease = w.lease_grant(7, 60).id
        for round_ in range(4):
            with batch() as w:
                for key in keys:
                    if rng.random() < 0.7:
                        w.put(PutRequest(key, b"v%d" % round_ * rng.randint(1, 50),
                                         lease=lease if rng.random() < 0.3 else 0))
            with batch() as w:
                start = rng.choice([b"k/", b"k/0", b"k/h", b"k/n"])
                results.append(w.delete_range(DeleteRangeRequest(start, b"k0", prev_kv=True)))
            with batch() as w:
                for key in keys[:40]:
                    w.put(PutRequest(key, b"again"))
                results.append(w.txn(TxnRequest([], [
                    RequestOp(request_delete_range=DeleteRangeRequest(b"k/", b"k/5")),
                    RequestOp(request_put=PutRequest(b"k/after", b"1")),
                    RequestOp(request_delete_range=DeleteRangeRequest(b"k/l", b"k/m",
                                                                      prev_kv=True)),
                ], [])))
        state = dump(store)
        final = store.range(RangeRequest(b"\x00", b"\x00", revision=0))
        for response in watcher.take():
            events.extend((e.type, e.kv, e.prev_kv) for e in response.events)
        history = [store.range(RangeRequest(b"k", b"l", revision=r)).kvs.items()
                   for r in range(2, store.revision + 1, 3)]
    return state, repr(results), events, list(final.kvs.items()), history


def test_bulk_delete_leaves_what_key_by_key_leaves(tmp_path, monkeypatch):
    bulk = run(str(tmp_path / "bulk" / "db"), 1, monkeypatch, seed=4)
    single = run(str(tmp_path / "single" / "db"), 10**9, monkeypatch, seed=4)
    assert len(bulk[2]) > 500  # the deletes did delete
    assert bulk == single
