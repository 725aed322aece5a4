"""Deferred commits (``Store.open(commit_interval_s=...)``, ``pykv.mvcc.deferred``):
batches go into one open LMDB transaction that commits later; every read
still sees every published batch, and nothing a batch did is lost or
half-kept when a batch fails, the map fills or the store closes."""

from __future__ import annotations

import random
import threading
import time

import pytest

from pykv import errors
from pykv.mvcc import Store, store as store_module
from tests.faults import fill_disk_under
from tests.mvcc.requests import (DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
                                 TxnRequest)

#: Long enough that the timer never commits during a test (unless it waits).
NEVER_S = 600.0
INTERVAL = 0.002


def put_batch(store: Store, *pairs: tuple[bytes, bytes]) -> None:
    with store.write(store.applied_index + 1) as w:
        for key, value in pairs:
            w.put(PutRequest(key, value))


def keys(store: Store) -> dict[bytes, bytes]:
    return {kv.key: kv.value for kv in store.range(RangeRequest(b"\0", b"\xff")).kvs}


def keys_committing_first(store: Store) -> dict[bytes, bytes]:
    """``keys`` through a read that has what is published committed first:
    a read-only txn (point gets and ranges at the current revision read the
    published batches over the last commit instead)."""
    txn = TxnRequest([], [RequestOp(request_range=RangeRequest(b"\0", b"\xff"))], [])
    return {kv.key: kv.value for kv in store.txn_read(txn).responses[0].kvs}


@pytest.fixture
def deferred_store(store_path):
    store = Store.open(store_path, commit_interval_s=NEVER_S)
    yield store
    store.close()


def test_a_point_get_sees_published_batches_without_a_commit(deferred_store):
    store = deferred_store
    put_batch(store, (b"a", b"1"))
    put_batch(store, (b"a", b"2"), (b"b", b"1"))
    with store.write(store.applied_index + 1) as w:
        w.delete_range(DeleteRangeRequest(b"b"))
    seen: dict[bytes, object] = {}

    def read() -> None:  # another thread: its own view
        seen.update(a=store.get(b"a"), b=store.get(b"b"), value=store.get_value(b"a"))

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen["a"].value == b"2" and seen["a"].version == 2 and seen["a"].mod_revision == 3
    assert seen["b"] is None and seen["value"] == b"2"
    assert store._deferred.commits == 0, "the point gets committed the parent"


def test_a_range_sees_published_batches_without_a_commit(deferred_store):
    store = deferred_store
    put_batch(store, (b"a", b"1"), (b"b", b"1"), (b"c", b"1"))
    store.checkpoint()  # (a commit: the ranges below lay batches over it)
    put_batch(store, (b"a", b"2"), (b"d", b"1"))
    with store.write(store.applied_index + 1) as w:
        w.delete_range(DeleteRangeRequest(b"b"))
    commits = store._deferred.commits
    result = store.range(RangeRequest(b"\0", b"\xff"))
    assert [(kv.key, kv.value, kv.version) for kv in result.kvs] == [
        (b"a", b"2", 2), (b"c", b"1", 1), (b"d", b"1", 1)]
    assert result.count == 3 and result.revision == store.revision == 7
    limited = store.range(RangeRequest(b"\0", b"\xff", limit=2))
    assert [kv.key for kv in limited.kvs] == [b"a", b"c"] and limited.more
    assert limited.count == 3
    assert store._deferred.commits == commits, "the ranges committed the parent"


def test_any_other_read_commits_first_and_sees_everything(deferred_store):
    store = deferred_store
    for i in range(5):
        put_batch(store, (b"k%d" % i, b"v%d" % i))
    assert store._deferred.commits == 0
    assert keys_committing_first(store) == {b"k%d" % i: b"v%d" % i for i in range(5)}
    assert store._deferred.commits == 1
    assert keys_committing_first(store) == {b"k%d" % i: b"v%d" % i for i in range(5)}
    assert store._deferred.commits == 1, "nothing new was published: no second commit"


def test_the_parent_commits_when_its_oldest_change_is_interval_old(store_path):
    with Store.open(store_path, commit_interval_s=0.05) as store:
        put_batch(store, (b"k", b"v"))
        deadline = time.monotonic() + 10
        while store._deferred.commits == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store._deferred.commits == 1
        assert not store._views.unflushed


def test_a_failed_batch_leaves_no_trace_and_earlier_batches_stay(deferred_store):
    store = deferred_store
    put_batch(store, (b"kept", b"1"))
    with pytest.raises(RuntimeError):
        with store.write(store.applied_index + 1) as w:
            w.put(PutRequest(b"undone", b"2"))
            raise RuntimeError("the batch fails half-way")
    assert store.get(b"kept").value == b"1" and store.get(b"undone") is None
    assert keys(store) == {b"kept": b"1"}
    put_batch(store, (b"after", b"3"))
    assert store.get(b"after").mod_revision == 3


def test_closing_commits_the_parent(store_path):
    with Store.open(store_path, commit_interval_s=NEVER_S) as store:
        for i in range(20):
            put_batch(store, (b"k%02d" % i, b"%d" % i))
        applied = store.applied_index
    with Store.open(store_path) as store:
        assert store.applied_index == applied
        assert len(keys(store)) == 20


def test_a_full_map_mid_batch_keeps_the_batches_before_it(store_path, monkeypatch):
    monkeypatch.setattr(store_module, "_MIN_MAP_BYTES", 256 << 10)
    rng = random.Random(5)
    expected: dict[bytes, bytes] = {}
    with Store.open(store_path, commit_interval_s=NEVER_S, map_bytes=256 << 10) as store:
        start = store._env.info()["map_size"]
        for i in range(120):
            pairs = [(b"k%03d-%d" % (i, j), rng.randbytes(3000)) for j in range(3)]
            put_batch(store, *pairs)
            expected.update(pairs)
        assert store._env.info()["map_size"] > start, "the map never filled: the test shows nothing"
        assert keys(store) == expected
    with Store.open(store_path) as store:
        assert keys(store) == expected


def test_a_checkpoint_covers_every_published_batch(deferred_store):
    store = deferred_store
    for i in range(3):
        put_batch(store, (b"k%d" % i, b"v"))
    assert store.checkpoint() == store.applied_index == 3
    assert store._deferred.commits == 1


def test_reads_from_many_threads_never_go_back_in_time(store_path):
    """A writer counts up one key (and a second in the same batch); readers,
    by point get and by range, must see at least what was acknowledged
    before their read began, never less than they saw before, and the two
    keys of one batch together."""
    store = Store.open(store_path, commit_interval_s=INTERVAL)
    acked = [0]
    stop = threading.Event()
    problems: list[str] = []

    def writer() -> None:
        for n in range(1, 1501):
            put_batch(store, (b"count", b"%d" % n), (b"shadow", b"%d" % n))
            acked[0] = n
        stop.set()

    def reader(by_range: bool) -> None:
        last = 0
        while not stop.is_set():
            floor = acked[0]
            if by_range:
                got = store.range(RangeRequest(b"count", b"shadox")).kvs
                values = [int(kv.value) for kv in got]
                if len(set(values)) > 1:
                    problems.append(f"one batch seen half: {values}")
                now = values[0] if values else 0
            else:
                kv = store.get(b"count")
                now = 0 if kv is None else int(kv.value)
            if now < floor or now < last:
                problems.append(f"read {now} after {last}, with {floor} acknowledged")
            last = now

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(by_range,)) for by_range in (False, True, False)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        store.close()
    assert not problems, problems[:5]


def test_a_failed_commit_refuses_reads_and_writes_and_keeps_the_last_commit(store_path):
    """A disk that fills up: the commit fails, the batches since the last
    commit are lost from the file (the caller's log holds them), and the
    store says so rather than serve a state that is not in the file."""
    store = Store.open(store_path, commit_interval_s=NEVER_S)
    try:
        put_batch(store, (b"committed", b"1"))
        store.checkpoint()  # (a commit)
        put_batch(store, (b"published", b"2"))
        assert store._views.unflushed
        fill_disk_under(store_path)
        with pytest.raises(errors.StorageError, match="No space left.*reopen"):
            keys_committing_first(store)
        with pytest.raises(errors.StorageError, match="reopen"):
            store.get(b"committed")
        with pytest.raises(errors.StorageError, match="reopen"):
            store.range(RangeRequest(b"published"))
        with pytest.raises(errors.StorageError, match="no more writes"):
            put_batch(store, (b"refused", b"3"))
    finally:
        store.close()
    with Store.open(store_path) as store:
        assert keys(store) == {b"committed": b"1"}
        assert store.applied_index == 1


def test_after_a_failed_commit_no_checkpoint_claims_the_lost_batches(store_path):
    """The in-memory applied index counts batches the failed commit lost: a
    checkpoint must refuse rather than report it (a caller would release its
    log up to it)."""
    store = Store.open(store_path, commit_interval_s=NEVER_S, checkpoint_interval_s=None)
    try:
        put_batch(store, (b"a", b"1"))
        assert store.checkpoint() == 1
        put_batch(store, (b"b", b"2"))
        fill_disk_under(store_path)
        with pytest.raises(errors.StorageError):
            keys_committing_first(store)
        assert store.failure() is not None
        with pytest.raises(errors.FatalSyncError, match="No space left"):
            store.checkpoint()
    finally:
        store.close()
    with Store.open(store_path) as store:
        assert store.applied_index == 1


def test_batches_that_commit_themselves_keep_the_room_measured(store_path, monkeypatch):
    """After readers' flushes batches commit one by one (no parent): they
    must go on measuring the map's room, or the next parent, trusting an
    old figure, fills the map and its commit fails."""
    monkeypatch.setattr(store_module, "_MIN_MAP_BYTES", 64 << 10)
    rng = random.Random(1)
    with Store.open(store_path, commit_interval_s=NEVER_S, checkpoint_interval_s=None,
                    map_bytes=4 << 20) as store:
        start = store._env.info()["map_size"]
        keys_committing_first(store)  # a reader's flush: batches commit themselves from now on
        store._deferred._direct_until = time.monotonic() + NEVER_S  # (and go on doing so)
        for _ in range(1500):
            put_batch(store, (b"k%06d" % rng.randrange(10**6), rng.randbytes(1500)))
        store._deferred._direct_until = 0  # a parent again
        for _ in range(300):
            put_batch(store, (b"k%06d" % rng.randrange(10**6), rng.randbytes(1500)))
        assert store.failure() is None
        assert store._env.info()["map_size"] > start, "the map never filled: shows nothing"
        assert store.range(RangeRequest(b"k", b"l", count_only=True)).count > 1000


def test_a_watch_hook_may_read_inside_the_publication(store_path):
    """Watch hooks run on the writer's thread while it publishes (writer
    lock held); a range there needs the parent committed and must not wait
    for the lock its own thread holds."""
    store = Store.open(store_path, commit_interval_s=NEVER_S)
    seen: list[int] = []
    store.watch(b"a", b"z", notify=lambda _w: seen.append(
        store.range(RangeRequest(b"a", b"z")).count))
    writer = threading.Thread(target=put_batch, args=(store, (b"k", b"v")), daemon=True)
    writer.start()
    writer.join(10)
    try:
        assert not writer.is_alive(), "the writer deadlocked in its own publication"
        assert seen and seen[-1] == 1
    finally:
        if not writer.is_alive():
            store.close()


def test_commit_interval_needs_checkpoint_mode_and_a_positive_value(store_path):
    with pytest.raises(ValueError, match="positive"):
        Store.open(store_path, commit_interval_s=0)


def test_a_range_never_lays_recent_writes_over_a_newer_commit(deferred_store):
    """After a reader's flush batches commit themselves: one whose commit
    has landed but is not yet published. A range that copied the table of
    recent writes before that must not lay it over a view of the newer
    commit (it answered revision 2 with a key written at 3)."""
    store = deferred_store
    put_batch(store, (b"a", b"1"))  # revision 2, in the parent
    assert store._views.unflushed
    at_lock, go_read = threading.Event(), threading.Event()
    committed, go_publish = threading.Event(), threading.Event()
    publishing = store._publishing

    class PausingLock:  # the range stops just before it copies the table
        def __enter__(self):
            if threading.current_thread().name == "reader" and not go_read.is_set():
                at_lock.set()
                go_read.wait(10)
            return publishing.__enter__()

        def __exit__(self, *exc):
            return publishing.__exit__(*exc)

    real_committed = store._committed

    def committed_then_paused(batch, compact_done):  # LMDB commit done, not published
        committed.set()
        go_publish.wait(10)
        real_committed(batch, compact_done)

    store._publishing = PausingLock()
    store._committed = committed_then_paused
    answers = []
    reader = threading.Thread(name="reader", target=lambda: answers.append(
        store.range(RangeRequest(b"\0", b"\0"))))
    reader.start()
    assert at_lock.wait(10)
    store._flush_published()  # another reader's flush: batches commit themselves
    writer = threading.Thread(target=put_batch, args=(store, (b"b", b"2")))  # revision 3
    writer.start()
    assert committed.wait(10)
    go_read.set()
    reader.join(10)
    go_publish.set()
    writer.join(10)
    (answer,) = answers
    assert all(kv.mod_revision <= answer.revision for kv in answer.kvs), \
        [(kv.key, kv.mod_revision, answer.revision) for kv in answer.kvs]
    assert answer.count == len(answer.kvs)


def test_a_refused_commit_interval_leaves_no_thread_running(store_path):
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="positive"):
        Store.open(store_path, commit_interval_s=-1)
    assert set(threading.enumerate()) - before == set()
