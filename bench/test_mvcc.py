"""MVCC store benchmarks, each beside raw ``lmdb`` doing the same work in the
same run (the machine is shared and noisy: compare ratios, not seconds).

Run:  python -m pytest bench/test_mvcc.py -s -q -p no:cacheprovider
      (PYKV_BENCH_KEYS=1000000 is the default key count for point gets.)

Each test interleaves rounds of pykv and of the reference, keeps the best
round of each (the least disturbed by other load), prints one line
``<workload>: pykv X/s, reference Y/s, ratio X/Y`` and stores the same in
``benchmark.extra_info``; pytest-benchmark's own table times the pykv side.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from typing import Callable

import lmdb
import pytest

from pykv.mvcc import Store
from tests.mvcc.requests import PutRequest, RangeRequest

KEYS = int(os.environ.get("PYKV_BENCH_KEYS", "1000000"))
VALUE = b"v" * 100
ROUNDS = int(os.environ.get("PYKV_BENCH_ROUNDS", "7"))


def best_of(fn: Callable[[], int], rounds: int = ROUNDS) -> float:
    """Operations per second of the best round (fn returns its op count)."""
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        ops = fn()
        best = max(best, ops / (time.perf_counter() - start))
    return best


def compare(benchmark, name: str, pykv_fn: Callable[[], int], ref_fn: Callable[[], int],
            rounds: int = ROUNDS, unit: str = "ops/s",
            variants: dict[str, Callable[[], int]] | None = None) -> float:
    """Best rounds of pykv, of the reference and of any ``variants``, measured
    interleaved so that all see the same load; prints and records ratios."""
    fns = {"pykv": pykv_fn, "reference": ref_fn, **(variants or {})}
    best = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for label, fn in fns.items():
            best[label] = max(best[label], best_of(fn, 1))
    ratio = best["pykv"] / best["reference"]
    benchmark.extra_info.update({"pykv": best["pykv"], "reference": best["reference"],
                                 "ratio": ratio, "unit": unit})
    print(f"\n{name}: pykv {best['pykv']:,.0f} {unit}, reference {best['reference']:,.0f} "
          f"{unit}, ratio {ratio:.2f}")
    for label in variants or {}:
        benchmark.extra_info[label] = best[label]
        print(f"  {label}: {best[label]:,.0f} {unit}, ratio {best[label] / best['reference']:.2f}")
    benchmark.pedantic(pykv_fn, rounds=3, iterations=1)
    return ratio


@pytest.fixture(scope="module")
def workdir():
    path = tempfile.mkdtemp(prefix="pykv-bench-mvcc-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def raw_env(path: str) -> tuple[lmdb.Environment, object]:
    env = lmdb.open(path, subdir=False, map_size=8 << 30, sync=False, max_dbs=2,
                    readahead=False, meminit=False)
    return env, env.open_db(b"kv")


# --- apply: 1,000-put batches ---------------------------------------------------------


def test_apply_1000_put_batches(benchmark, workdir):
    # No fsync on either side: this measures the CPU cost of apply
    # (test_durable_commits measures the default, fsynced commits).
    store = Store.open(os.path.join(workdir, "apply.db"), durability="none")
    env, db = raw_env(os.path.join(workdir, "apply-raw.db"))
    batch = 1000
    counter = {"pykv": 0, "raw": 0}
    requests = [PutRequest(b"", VALUE) for _ in range(batch)]

    def pykv_batch() -> int:
        n = counter["pykv"]
        for i, req in enumerate(requests):
            req.key = b"key/%012d" % ((n * batch + i) * 7919 % 10_000_000)
        counter["pykv"] = n + 1
        with store.write(store.applied_index + 1) as w:
            for req in requests:
                w.put(req)
        return batch

    def raw_batch() -> int:
        n = counter["raw"]
        with env.begin(write=True, db=db) as txn:
            for i in range(batch):
                txn.put(b"key/%012d" % ((n * batch + i) * 7919 % 10_000_000), VALUE)
        counter["raw"] = n + 1
        return batch

    try:
        ratio = compare(benchmark, "apply 1000-put batches", lambda: sum(
            pykv_batch() for _ in range(10)), lambda: sum(raw_batch() for _ in range(10)),
            unit="puts/s")
        assert ratio > 0.15  # a regression guard; the target is >= 100k puts/s absolute
    finally:
        store.close()
        env.close()


# --- durable commits: the three durability modes ------------------------------------------


@pytest.mark.parametrize("batch", [1, 1000])
def test_durable_commits(benchmark, workdir, batch):
    """Commits/s of the default store (checkpoint mode: commits not fsynced,
    the file synced and recorded every 0.1 s by a thread) beside raw LMDB
    fdatasyncing each commit's data pages (sync=True, metasync=False), one put
    per key; the store's other modes as variants: "commit" (one fdatasync per
    commit, the default before checkpoints) and "none" (never synced)."""
    store = Store.open(os.path.join(workdir, f"durable{batch}.db"))
    each_commit = Store.open(os.path.join(workdir, f"commit{batch}.db"), durability="commit")
    unsynced = Store.open(os.path.join(workdir, f"nosync{batch}.db"), durability="none")
    env = lmdb.open(os.path.join(workdir, f"durable-raw{batch}.db"), subdir=False,
                    map_size=1 << 30, sync=True, metasync=False, max_dbs=2, readahead=False,
                    meminit=False)
    db = env.open_db(b"kv")
    commits = 50 if batch == 1 else 5
    counter = {"pykv": 0, "commit": 0, "none": 0, "raw": 0}
    requests = [PutRequest(b"", VALUE) for _ in range(batch)]

    def key(n: int) -> bytes:
        return b"key/%012d" % (n * 7919 % 10_000_000)

    def pykv_commits(st: Store, label: str) -> int:
        for _ in range(commits):
            n = counter[label]
            for i, req in enumerate(requests):
                req.key = key(n * batch + i)
            counter[label] = n + 1
            with st.write(st.applied_index + 1) as w:
                for req in requests:
                    w.put(req)
        return commits

    def raw_commits() -> int:
        for _ in range(commits):
            n = counter["raw"]
            with env.begin(write=True, db=db) as txn:
                for i in range(batch):
                    txn.put(key(n * batch + i), VALUE)
            counter["raw"] = n + 1
        return commits

    try:
        ratio = compare(benchmark, f"durable commits, {batch} put(s) per batch",
                        lambda: pykv_commits(store, "pykv"), raw_commits, rounds=5,
                        unit="commits/s",
                        variants={"pykv durability=commit (fdatasync per commit)":
                                  lambda: pykv_commits(each_commit, "commit"),
                                  "pykv durability=none (unsafe on power loss)":
                                  lambda: pykv_commits(unsynced, "none")})
        # Checkpoint mode no longer waits for the disk: well above the
        # fsync-bound reference with one put, CPU-bound with 1,000.
        assert ratio > (1.0 if batch == 1 else 0.1)
    finally:
        store.close()
        each_commit.close()
        unsynced.close()
        env.close()


# --- point gets on many keys ---------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(workdir):
    store = Store.open(os.path.join(workdir, "gets.db"))
    env, db = raw_env(os.path.join(workdir, "gets-raw.db"))
    keys = [b"key/%010d" % i for i in range(KEYS)]
    for start in range(0, KEYS, 10_000):
        with store.write(store.applied_index + 1) as w:
            for key in keys[start:start + 10_000]:
                w.put(PutRequest(key, VALUE))
        with env.begin(write=True, db=db) as txn:
            for key in keys[start:start + 10_000]:
                txn.put(key, VALUE)
    yield store, env, db, keys
    store.close()
    env.close()


def test_point_get(benchmark, loaded):
    store, env, db, keys = loaded
    sample = random.Random(1).sample(keys, 100_000)
    get = store.get_value

    def pykv_gets() -> int:
        for key in sample:
            get(key)
        return len(sample)

    def raw_gets_txn_per_get() -> int:
        for key in sample:
            with env.begin(db=db) as txn:
                txn.get(key)
        return len(sample)

    def raw_gets_shared_txn() -> int:
        with env.begin(db=db) as txn:
            g = txn.get
            for key in sample:
                g(key)
        return len(sample)

    def pykv_get_keyvalue() -> int:
        get_kv = store.get
        for key in sample:
            get_kv(key)
        return len(sample)

    ratio = compare(benchmark, f"point get_value, {KEYS:,} keys (reference: a read txn per get)",
                    pykv_gets, raw_gets_txn_per_get, unit="gets/s",
                    variants={"get() -> KeyValue": pykv_get_keyvalue,
                              "raw lmdb, one txn for all gets": raw_gets_shared_txn})
    assert ratio >= 0.5


# --- ranges of 1,000 keys -----------------------------------------------------------------------


def test_range_1000_keys(benchmark, loaded):
    store, env, db, keys = loaded
    starts = random.Random(2).sample(range(0, KEYS - 1000), 50)
    requests = [RangeRequest(keys[s], keys[s + 1000]) for s in starts]

    def pykv_ranges() -> int:
        for req in requests:
            for kv in store.range(req).kvs:  # read what raw LMDB hands out: key and value
                kv.key, kv.value
        return len(requests)

    def pykv_ranges_items() -> int:
        for req in requests:
            for key, value in store.range(req).kvs.items():
                pass
        return len(requests)

    def pykv_ranges_raw() -> int:
        for req in requests:
            store.range_raw(req)
        return len(requests)

    def raw_ranges() -> int:
        with env.begin(db=db) as txn:
            for s in starts:
                end = keys[s + 1000]
                cur = txn.cursor()
                cur.set_range(keys[s])
                out = []
                for k, v in cur.iternext():
                    if k >= end:
                        break
                    out.append((k, v))
                for k, v in out:
                    pass
        return len(starts)

    ratio = compare(benchmark, "range of 1000 keys, reading each key and value", pykv_ranges,
                    raw_ranges, unit="ranges/s",
                    variants={"as (key, value) pairs, kvs.items()": pykv_ranges_items,
                              "as protobuf bytes, range_raw()": pykv_ranges_raw})
    assert ratio >= 0.2


# --- watch delivery -------------------------------------------------------------------------------


def test_watch_delivery_to_1000_watchers(benchmark, workdir):
    """One put, delivered to 1000 watchers of that key (and 1000 of a prefix);
    the reference appends one object to each of 2000 deques (the least any
    delivery can do)."""
    import collections

    store = Store.open(os.path.join(workdir, "watch.db"))
    watchers = [store.watch(b"hot") for _ in range(1000)]
    watchers += [store.watch(b"h", b"i") for _ in range(1000)]
    queues = [collections.deque() for _ in range(2000)]
    puts = 20

    def pykv_deliver() -> int:
        for _ in range(puts):
            with store.write(store.applied_index + 1) as w:
                w.put(PutRequest(b"hot", VALUE))
            for watcher in watchers:
                watcher.take()
        return puts * len(watchers)

    def reference() -> int:
        for _ in range(puts):
            item = object()
            for q in queues:
                q.append(item)
            for q in queues:
                q.clear()
        return puts * len(queues)

    try:
        compare(benchmark, "watch events delivered (2000 watchers, incl. take())", pykv_deliver,
                reference, unit="events/s")
    finally:
        store.close()


# --- snapshots ----------------------------------------------------------------------------------


def test_snapshot_write_and_restore(benchmark, workdir):
    """Snapshot stream out and back in, beside LMDB's own compacting file copy
    (a page copy: no per-record framing, checksums or compression)."""
    import io

    store = Store.open(os.path.join(workdir, "snap.db"))
    keys = 200_000
    for start in range(0, keys, 10_000):
        with store.write(store.applied_index + 1) as w:
            for i in range(start, start + 10_000):
                w.put(PutRequest(b"key/%010d" % i, b"value-%d" % i * 10))
    counter = [0]

    def write_and_restore() -> int:
        out = io.BytesIO()
        store.write_snapshot(out)
        out.seek(0)
        counter[0] += 1
        restored = Store.restore_snapshot(out, os.path.join(workdir, f"restored{counter[0]}.db"))
        restored.close()
        return keys

    def lmdb_copy() -> int:
        counter[0] += 1
        store._env.copy(os.path.join(workdir, f"copy{counter[0]}.db"), compact=True)
        return keys

    try:
        compare(benchmark, "snapshot write + restore, 200k keys", write_and_restore, lmdb_copy,
                rounds=3, unit="keys/s")
    finally:
        store.close()


# --- DeleteRange of ~200,000 keys (etcdctl check perf --load=l's last request) ---------------

BIG_KEYS = int(os.environ.get("PYKV_BENCH_DELETE_KEYS", "200000"))
BIG_VALUE = b"v" * 1024


def big_key(i: int) -> bytes:
    """256-byte keys under one prefix, as etcdctl check perf writes them."""
    prefix = b"/etcdctl-check-perf/"
    return prefix + (b"%010d" % i).rjust(256 - len(prefix), b"0")


@pytest.fixture(scope="module")
def big_stores(workdir):
    """Makers of a fresh store and of a fresh raw LMDB environment, each
    holding BIG_KEYS keys under one prefix; the prefix's bounds."""
    counter = [0]
    lo, hi = big_key(0)[:20], big_key(0)[:19] + b"0"

    def fresh_store() -> Store:
        counter[0] += 1
        store = Store.open(os.path.join(workdir, f"delete{counter[0]}.db"), durability="none")
        for start in range(0, BIG_KEYS, 5_000):
            with store.write(store.applied_index + 1) as w:
                for i in range(start, min(BIG_KEYS, start + 5_000)):
                    w.put(PutRequest(big_key(i), BIG_VALUE))
        return store

    def fresh_raw() -> tuple[lmdb.Environment, object, object, object]:
        counter[0] += 1
        env = lmdb.open(os.path.join(workdir, f"delete-raw{counter[0]}.db"), subdir=False,
                        map_size=8 << 30, sync=False, max_dbs=4, readahead=False,
                        meminit=False)
        kv, hist, rev = (env.open_db(name) for name in (b"kv", b"hist", b"rev"))
        record = b"h" * 40 + BIG_VALUE
        for start in range(0, BIG_KEYS, 5_000):
            with env.begin(write=True, db=kv) as txn:
                for i in range(start, min(BIG_KEYS, start + 5_000)):
                    txn.put(big_key(i), record)
        return env, kv, hist, rev

    return fresh_store, fresh_raw, lo, hi


def test_delete_range_200k_keys(benchmark, big_stores):
    """One DeleteRange over 200,000 keys (256-byte keys, 1 KiB values) applied
    in one batch, beside raw LMDB doing the same table work with the least
    Python: scan the live table, delete each key, put the moved versions and
    the tombstones into a history table, append the change log. Variant: the
    same delete key by key (pykv before its bulk path). Best of 3 each."""
    from pykv.mvcc import write
    from tests.mvcc.requests import DeleteRangeRequest

    fresh_store, fresh_raw, lo, hi = big_stores

    def timed_delete(bulk: bool) -> float:
        store = fresh_store()
        saved = write.BULK_DELETE_MIN
        write.BULK_DELETE_MIN = saved if bulk else 1 << 62
        try:
            start = time.perf_counter()
            with store.write(store.applied_index + 1) as w:
                assert w.delete_range(DeleteRangeRequest(lo, hi)).deleted == BIG_KEYS
            return time.perf_counter() - start
        finally:
            write.BULK_DELETE_MIN = saved
            store.close()

    def timed_raw_delete() -> float:
        env, kv, hist, rev = fresh_raw()
        try:
            start = time.perf_counter()
            with env.begin(write=True) as txn:
                cur = txn.cursor(kv)
                cur.set_range(lo)
                pairs = []
                for key, value in cur.iternext():
                    if key >= hi:
                        break
                    pairs.append((key, value))
                for key, _ in pairs:
                    txn.delete(key, db=kv)
                moved = []
                for n, (key, value) in enumerate(pairs):
                    moved.append((key + b"\x00\x01" + b"r" * 16, value))
                    moved.append((key + b"\x00\x01" + b"%016d" % n, b"t" * 40))
                txn.cursor(hist).putmulti(moved)
                txn.cursor(rev).putmulti([(b"%016d" % n, key) for n, (key, _) in
                                          enumerate(pairs)], append=True)
            return time.perf_counter() - start
        finally:
            env.close()

    best = {"pykv": 1e9, "reference": 1e9, "key by key": 1e9}
    for _ in range(2):
        best["pykv"] = min(best["pykv"], timed_delete(bulk=True))
        best["reference"] = min(best["reference"], timed_raw_delete())
        best["key by key"] = min(best["key by key"], timed_delete(bulk=False))
    best["pykv"] = min(best["pykv"], benchmark.pedantic(timed_delete, args=(True,), rounds=1,
                                                        iterations=1))
    best["reference"] = min(best["reference"], timed_raw_delete())
    ratio = best["reference"] / best["pykv"]
    print(f"\nDeleteRange of {BIG_KEYS:,} keys: pykv {best['pykv']:.2f} s, reference "
          f"{best['reference']:.2f} s, ratio (reference time / pykv time) {ratio:.2f}; "
          f"key by key {best['key by key']:.2f} s ({best['key by key'] / best['pykv']:.1f}x "
          "the bulk path)")
    benchmark.extra_info.update({"pykv_s": best["pykv"], "reference_s": best["reference"],
                                 "key_by_key_s": best["key by key"], "ratio": ratio})
    assert ratio > 0.5


@pytest.mark.parametrize("what", ["count_only", "keys_only"])
def test_range_over_200k_keys(benchmark, big_stores, what):
    """A count_only Range (pykv counts the smaller side of the range) and a
    keys_only range_raw() over the same 200,000 keys, beside a raw cursor
    loop doing the least for the same answer (counting keys; collecting keys
    and record headers)."""
    fresh_store, fresh_raw, lo, hi = big_stores
    store = fresh_store()
    env, kv, _hist, _rev = fresh_raw()

    def raw_count() -> int:
        with env.begin(db=kv) as txn:
            cur = txn.cursor()
            cur.set_range(lo)
            n = 0
            for key in cur.iternext(values=False):
                if key >= hi:
                    break
                n += 1
        return 1

    def raw_keys() -> int:
        with env.begin(db=kv) as txn:
            cur = txn.cursor()
            cur.set_range(lo)
            out = []
            for key, value in cur.iternext():
                if key >= hi:
                    break
                out.append((key, value[:40]))
        return 1

    try:
        if what == "count_only":
            request = RangeRequest(lo, hi, count_only=True)
            compare(benchmark, f"Range count_only over {BIG_KEYS:,} keys",
                    lambda: store.range(request).count and 1, raw_count, rounds=3,
                    unit="ranges/s")
        else:
            request = RangeRequest(lo, hi, keys_only=True)
            compare(benchmark, f"Range keys_only over {BIG_KEYS:,} keys, range_raw()",
                    lambda: store.range_raw(request).count and 1, raw_keys, rounds=3,
                    unit="ranges/s")
    finally:
        store.close()
        env.close()
