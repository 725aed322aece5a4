"""Held batches (``Store.write(index, held=True)``): committed to LMDB
before their log entry is durable, seen by nobody until ``publish()``.

The embedded engine applies a batch while its WAL fdatasync runs; if a
reader, a watcher or a checkpoint saw the batch before the fdatasync
returned, a crash could take back a write somebody had already observed
(etcd #14370). These tests hold a batch open and look from every side.
"""

from __future__ import annotations

import threading

import pytest

from pykv import errors
from pykv.mvcc import Store
from tests.mvcc.requests import PutRequest

#: Long enough for a blocked reader to have come back if it were not blocked.
SETTLE_S = 0.2


@pytest.fixture
def store(tmp_path):
    st = Store.open(str(tmp_path / "db"), durability="checkpoint")
    yield st
    st.close()


def put(store: Store, key: bytes, value: bytes) -> None:
    with store.write(store.applied_index + 1) as w:
        w.put(PutRequest(key, value))


def held_put(store: Store, key: bytes, value: bytes):
    held = store.write(store.applied_index + 1, held=True)
    with held:
        held.put(PutRequest(key, value))
    return held


def in_thread(fn):
    """Run ``fn`` in a new thread (a reader with no view yet); returns
    (thread, box) where box gets its result or error."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_readers_see_a_held_batch_only_once_published(store):
    put(store, b"k", b"v1")
    assert store.get(b"k").value == b"v1"  # this thread now has a view
    held = held_put(store, b"k", b"v2")

    # A view begun before the commit stays current and shows the old state.
    assert store.get(b"k").value == b"v1"
    assert store.revision == 2
    # A thread that must begin a view waits for the publication.
    thread, box = in_thread(lambda: store.get(b"k").value)
    thread.join(SETTLE_S)
    assert thread.is_alive() and not box, "a reader saw a held batch"

    held.publish()
    thread.join(5)
    assert box == {"result": b"v2"}
    assert store.get(b"k").value == b"v2"
    assert store.revision == 3 and store.applied_index == 2


def test_watchers_get_a_held_batch_at_its_publication(store):
    put(store, b"k", b"v1")
    watcher = store.watch(b"k")
    held = held_put(store, b"k", b"v2")
    assert _events(watcher) == []
    held.publish()
    assert _events(watcher) == [(b"k", b"v2", 3)]


def _events(watcher) -> list:
    return [(e.kv.key, e.kv.value, e.kv.mod_revision)
            for response in watcher.take() for e in response.events]


def test_a_checkpoint_waits_for_the_publication(store):
    put(store, b"k", b"v1")
    held = held_put(store, b"k", b"v2")
    thread, box = in_thread(store.checkpoint)
    thread.join(SETTLE_S)
    assert thread.is_alive(), "a checkpoint recorded a batch whose log entry may be lost"
    held.publish()
    thread.join(5)
    assert box["result"] == 2  # the held batch's index, once published


def test_a_failed_held_batch_releases_readers_and_writers(store):
    put(store, b"k", b"v1")
    with pytest.raises(RuntimeError):
        with store.write(store.applied_index + 1, held=True) as held:
            held.put(PutRequest(b"k", b"v2"))
            raise RuntimeError("the apply failed")
    thread, box = in_thread(lambda: store.get(b"k").value)
    thread.join(5)
    assert box == {"result": b"v1"}
    put(store, b"k", b"v3")
    assert store.get(b"k").value == b"v3" and store.revision == 3


def test_a_discarded_batch_is_never_seen_and_stops_the_store(tmp_path):
    path = str(tmp_path / "db")
    store = Store.open(path, durability="checkpoint")
    put(store, b"k", b"v1")
    store.checkpoint()
    held = held_put(store, b"k", b"v2")
    thread, box = in_thread(lambda: store.get(b"k").value)
    thread.join(SETTLE_S)
    assert thread.is_alive()

    held.discard(OSError(5, "fdatasync failed"))
    thread.join(5)
    assert isinstance(box.get("error"), errors.FatalSyncError), box
    with pytest.raises(errors.FatalSyncError):
        put(store, b"k", b"v3")
    store.close()

    # The store reopens at its checkpoint: the discarded batch is not there
    # (its log entry would be replayed on top, if it had been durable).
    reopened = Store.open(path, durability="checkpoint")
    try:
        assert reopened.applied_index == 1
        assert reopened.get(b"k").value == b"v1"
    finally:
        reopened.close()


def test_held_batches_need_checkpoint_mode(tmp_path):
    store = Store.open(str(tmp_path / "db"), durability="commit")
    try:
        with pytest.raises(ValueError, match="checkpoint"):
            store.write(1, held=True)
    finally:
        store.close()
