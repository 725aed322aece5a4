"""Ranges right after writes, with deferred commits: a range at the current
revision reads the last LMDB commit with what was published since laid
over it (``Store._range_overlaid``), instead of committing first. Checked
against a second database given the same writes with no deferred commits
(``sync=False``: every batch commits itself), which answers every range
from a commit: same revisions, same answers, for every kind of range."""

from __future__ import annotations

import random

import pytest

import pykv
from pykv.embedded import delete_op, put_op

SHORT_KEYS = [b"a", b"a\x00", b"a/1", b"a/2", b"a/3", b"ab", b"b", b"b/1", b"b/2", b"b/x",
              b"c", b"c/1", b"d", b"\xff", b"\xff\xff"] + [b"n/%02d" % i for i in range(20)]
PREFIXES = [b"a", b"a/", b"b/", b"n/", b"n/1", b"c", b"\xff", b"z"]


def fields(result):
    kvs = [(kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)
           for kv in result.kvs]
    return kvs, result.more, result.count, result.revision


def random_range(rng: random.Random) -> dict:
    shape = rng.random()
    if shape < 0.4:
        args = {"key": rng.choice(PREFIXES), "prefix": True}
    elif shape < 0.6:
        args = {"key": rng.choice(SHORT_KEYS)}
    elif shape < 0.8:
        start, end = sorted(rng.sample(SHORT_KEYS, 2))
        args = {"key": start, "range_end": end}
    else:
        args = {"key": rng.choice(SHORT_KEYS), "from_key": True}
    args["limit"] = rng.choice([0, 0, 1, 2, 3, 5])
    if rng.random() < 0.3:
        args["sort_order"] = rng.choice(["ascend", "descend", "none"])
        args["sort_target"] = rng.choice(["key", "version", "create", "mod", "value"])
    if rng.random() < 0.15:
        args["keys_only"] = True
    if rng.random() < 0.15:
        args["count_only"] = True
    if rng.random() < 0.15:
        args["min_mod_revision"] = rng.randint(1, 40)
    return args


def random_write(rng: random.Random, db) -> None:
    kind = rng.random()
    if kind < 0.55:
        db.put(rng.choice(SHORT_KEYS), b"v%d" % rng.randint(0, 999))
    elif kind < 0.7:
        db.delete(rng.choice(SHORT_KEYS))
    elif kind < 0.8:
        db.delete(rng.choice(PREFIXES), prefix=True)
    else:
        keys = rng.sample(SHORT_KEYS, rng.randint(1, 4))
        ops = [put_op(key, b"t%d" % rng.randint(0, 999)) if rng.random() < 0.7
               else delete_op(key) for key in keys]
        db.txn().then(*ops).commit()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ranges_over_recent_writes_match_a_store_that_commits_every_batch(tmp_path, seed):
    rng = random.Random(seed)
    overlaid = pykv.open(tmp_path / "overlaid", commit_interval_s=60, checkpoint_interval_s=60)
    reference = pykv.open(tmp_path / "reference", sync=False)
    store = overlaid._store
    ranges = over_recent = 0
    try:
        for step in range(250):
            if step % 15 == 14:
                store.checkpoint()  # commits: later writes overlay a committed state
            write_seed = rng.random()
            for db in (overlaid, reference):
                random_write(random.Random(write_seed), db)
            for _ in range(3):
                args = random_range(rng)
                over_recent += bool(store._recent)
                ranges += 1
                assert fields(overlaid.range(**args)) == fields(reference.range(**args)), args
    finally:
        overlaid.close()
        reference.close()
    assert over_recent > 0.8 * ranges, "the ranges did not read over recent writes"


def test_a_long_key_in_range_reads_a_commit_instead(tmp_path):
    """Keys over the kv table's key size are stored under a digest, out of
    key order: laid over, they would sort wrong; such ranges commit first."""
    long_key = b"L" * 600 + b"1"
    with pykv.open(tmp_path / "data", commit_interval_s=60, checkpoint_interval_s=60) as db:
        db.put(b"L", b"short")
        db.put(long_key, b"long")
        db.put(b"M", b"m")
        assert db._store._recent
        result = db.range(b"L", prefix=True)
        assert [kv.key for kv in result.kvs] == [b"L", long_key]
        assert result.count == 2 and result.revision == 4
        assert [kv.key for kv in db.range(b"M", prefix=True).kvs] == [b"M"]


def test_a_range_sees_the_writes_of_other_threads_published_before_it(tmp_path):
    """Writers on other threads while this one reads: every answer is one
    revision's state (every kv's mod_revision at most the answer's
    revision, the count matching the keys), and revisions never go back."""
    import threading

    with pykv.open(tmp_path / "data", commit_interval_s=60, checkpoint_interval_s=60) as db:
        stop = threading.Event()

        def writer(t: int) -> None:
            k = 0
            while not stop.is_set():
                db.put(b"w/%d/%04d" % (t, k % 50), b"%d" % k)
                k += 1

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        try:
            last = 0
            for _ in range(300):
                result = db.range(b"w/", prefix=True)
                assert result.revision >= last
                last = result.revision
                assert all(kv.mod_revision <= result.revision for kv in result.kvs)
                assert result.count == len(result.kvs)
                # Each put adds one revision: the keys' versions add up to
                # the revisions since the first put (none are deleted).
                assert sum(kv.version for kv in result.kvs) == result.revision - 1
        finally:
            stop.set()
            for thread in threads:
                thread.join()
