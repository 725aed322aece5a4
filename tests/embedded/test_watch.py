"""Watches: iterators of events, from a revision, with prev_kv."""

from __future__ import annotations

import threading

import pytest

from pykv import errors
from pykv.embedded import DELETE, PUT, WatchCompacted

WAIT_S = 10.0  # generous: the machine is shared; an event normally takes microseconds


def take(watch, n: int) -> list:
    events = []
    for _ in range(n):
        event = watch.get(timeout=WAIT_S)
        assert event is not None, f"only {len(events)} of {n} events arrived"
        events.append(event)
    return events


def test_watch_sees_puts_and_deletes_in_order(db):
    with db.watch("k") as watch:
        db.put("k", "1")
        db.put("other", "x")
        db.delete("k")
        put, delete = take(watch, 2)
    assert (put.type, put.kv.value, put.kv.mod_revision) == (PUT, b"1", 2)
    assert (delete.type, delete.kv.key, delete.kv.mod_revision) == (DELETE, b"k", 4)


def test_watch_a_prefix_with_prev_kv(db):
    db.put("p/a", "old")
    with db.watch("p/", prefix=True, prev_kv=True) as watch:
        db.put("p/a", "new")
        db.put("q", "outside")
        db.put("p/b", "first")
        changed, created = take(watch, 2)
    assert changed.prev_kv.value == b"old" and changed.kv.value == b"new"
    assert created.kv.key == b"p/b" and created.prev_kv is None


def test_watch_from_a_past_revision_replays_history(db):
    start = db.put("k", "1").revision
    db.put("k", "2")
    db.delete("k")
    with db.watch("k", start_revision=start) as watch:
        events = take(watch, 3)
        db.put("k", "3")
        events += take(watch, 1)
    assert [(e.type, e.kv.value) for e in events] == \
        [(PUT, b"1"), (PUT, b"2"), (DELETE, b""), (PUT, b"3")]
    assert [e.kv.mod_revision for e in events] == [start, start + 1, start + 2, start + 3]


def test_filters_drop_puts_or_deletes(db):
    with db.watch("k", no_put=True) as deletes_only:
        db.put("k", "v")
        db.delete("k")
        (event,) = take(deletes_only, 1)
    assert event.type == DELETE


def test_iterating_blocks_until_a_writer_thread_puts(db):
    watch = db.watch("k")
    writer = threading.Thread(target=lambda: [db.put("k", str(i)) for i in range(50)])
    writer.start()
    values = [next(watch).kv.value for _ in range(50)]
    writer.join()
    watch.cancel()
    assert values == [str(i).encode() for i in range(50)]


def test_get_times_out_with_none_when_nothing_happens(db):
    with db.watch("quiet") as watch:
        assert watch.get(timeout=0.01) is None


def test_a_watch_behind_a_compaction_is_canceled_with_the_compact_revision(db):
    start = db.put("k", "1").revision
    db.put("k", "2")
    current = db.put("k", "3").revision
    db.compact(current)
    watch = db.watch("k", start_revision=start)
    with pytest.raises(WatchCompacted) as caught:
        watch.get(timeout=WAIT_S)
    assert caught.value.compact_revision == current
    assert isinstance(caught.value, errors.Compacted)


def test_cancel_ends_the_iteration(db):
    watch = db.watch("k")
    watch.cancel()
    assert list(watch) == []
    assert watch.canceled


def test_closing_the_database_ends_a_blocked_iteration(db_path):
    import pykv

    db = pykv.open(db_path)
    watch = db.watch("k")
    seen: list = []
    reader = threading.Thread(target=lambda: seen.extend(watch))
    reader.start()
    db.put("k", "v")
    db.close()
    reader.join(WAIT_S)
    assert not reader.is_alive()
    assert [e.kv.value for e in seen] == [b"v"]


def test_many_watchers_each_see_every_event(db):
    watches = [db.watch("shared") for _ in range(20)]
    for i in range(5):
        db.put("shared", str(i))
    for watch in watches:
        assert [e.kv.value for e in take(watch, 5)] == [str(i).encode() for i in range(5)]
        watch.cancel()
