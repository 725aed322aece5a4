"""The watch hub: history then live with no gap and no duplicate, prev_kv,
filters, slow watchers moved aside and caught up, compaction cancels,
progress notifications, many watchers on overlapping ranges."""

from __future__ import annotations

import random
import threading

from pykv.mvcc import types as t
from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest


def events(watcher):
    return [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision)
            for r in watcher.take() for e in r.events]


def put(apply, key, value=b"v"):
    return apply.put(PutRequest(key, value)).revision


def test_live_events_for_a_key_and_a_delete_carries_its_revision(store, apply):
    w = store.watch(b"k")
    put(apply, b"k", b"1")
    put(apply, b"other")
    apply.delete_range(DeleteRangeRequest(b"k"))
    responses = w.take()
    got = [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision, e.kv.version)
           for r in responses for e in r.events]
    assert got == [(t.PUT, b"k", b"1", 2, 1), (t.DELETE, b"k", b"", 4, 0)]
    assert [r.revision for r in responses] == [2, 4]


def test_history_then_live_without_gap_or_duplicate(store, apply):
    for i in range(10):
        put(apply, b"k%d" % (i % 3), b"%d" % i)
    w = store.watch(b"k", b"l", start_revision=4)
    assert not w.synced
    put(apply, b"k1", b"live-before-sync")
    assert store.hub.sync() == 0 and w.synced
    put(apply, b"k2", b"live-after-sync")
    revs = [rev for *_, rev in events(w)]
    assert revs == list(range(4, store.revision + 1))


def test_prev_kv_live_and_from_history(store, apply):
    put(apply, b"k", b"1")
    put(apply, b"k", b"2")
    old = store.watch(b"k", start_revision=2, prev_kv=True)
    live = store.watch(b"k", prev_kv=True)
    plain = store.watch(b"k")
    apply.delete_range(DeleteRangeRequest(b"k"))
    store.hub.sync()
    got = [(e.type, e.prev_kv and e.prev_kv.value) for r in old.take() for e in r.events]
    assert got == [(t.PUT, None), (t.PUT, b"1"), (t.DELETE, b"2")]
    assert [e.prev_kv.value for r in live.take() for e in r.events] == [b"2"]
    assert [e.prev_kv for r in plain.take() for e in r.events] == [None]


def test_filters_drop_puts_or_deletes(store, apply):
    no_put = store.watch(b"k", filters=[t.FILTER_NOPUT])
    no_delete = store.watch(b"k", filters=[t.FILTER_NODELETE])
    put(apply, b"k")
    apply.delete_range(DeleteRangeRequest(b"k"))
    assert [e[0] for e in events(no_put)] == [t.DELETE]
    assert [e[0] for e in events(no_delete)] == [t.PUT]


def test_future_start_revision_waits_for_it(store, apply):
    w = store.watch(b"k", start_revision=4)
    put(apply, b"k", b"2")
    put(apply, b"k", b"3")
    put(apply, b"k", b"4")
    assert [rev for *_, rev in events(w)] == [4]


def test_empty_key_watches_from_the_smallest_key(store, apply):
    w = store.watch(b"", b"\x00")
    put(apply, b"\x00a")
    put(apply, b"z")
    assert [key for _, key, *_ in events(w)] == [b"\x00a", b"z"]


def test_slow_watcher_is_moved_aside_and_caught_up_in_order(store, apply):
    store.hub.buffer_responses = 2
    slow = store.watch(b"k", b"l")
    fast = store.watch(b"k", b"l")
    seen_fast = []
    for i in range(10):
        put(apply, b"k%d" % i)
        seen_fast += events(fast)  # drains after every write
    assert not slow.synced and fast.synced  # the writer never waited for it
    got = []
    while True:
        got += events(slow)
        if store.hub.sync() == 0 and not slow.pending():
            break
    put(apply, b"k-live")
    got += events(slow)
    assert [rev for *_, rev in got] == list(range(2, 13))
    assert [rev for *_, rev in seen_fast] == list(range(2, 12))


def test_compacted_start_revision_cancels_the_watcher(store, apply):
    for i in range(5):
        put(apply, b"k", b"%d" % i)
    apply.compact(CompactionRequest(4))
    w = store.watch(b"k", start_revision=2)
    at_compact = store.watch(b"k", start_revision=4)
    store.hub.sync()
    [response] = w.take()
    assert response.canceled and response.compact_revision == 4 and w.canceled
    assert [rev for *_, rev in events(at_compact)] == [4, 5, 6]


def test_victim_overtaken_by_compaction_is_canceled(store, apply):
    store.hub.buffer_responses = 1
    w = store.watch(b"k")
    put(apply, b"k")
    put(apply, b"k")  # buffer full: w becomes a victim needing revision 3
    assert not w.synced
    put(apply, b"k")
    apply.compact(CompactionRequest(4))
    w.take()
    store.hub.sync()
    [response] = w.take()
    assert response.canceled and response.compact_revision == 4


def test_progress_notifications(store, apply):
    synced = store.watch(b"k")
    behind = store.watch(b"k", start_revision=1)
    put(apply, b"other")
    assert store.hub.progress(synced) is True
    assert store.hub.progress(behind) is False
    [response] = synced.take()
    assert (response.events, response.revision) == ([], 2)
    assert store.hub.progress_revision([synced, behind]) is None
    store.hub.sync()
    assert store.hub.progress_revision([synced, behind]) == 2


def test_notify_hook_is_called_after_delivery(store, apply):
    calls = []
    w = store.watch(b"k", notify=lambda watcher: calls.append(watcher.pending()))
    put(apply, b"k")
    assert calls == [1]
    w.cancel()
    put(apply, b"k")
    assert calls == [1] and w.take() != []  # canceled: nothing new delivered


def test_many_watchers_on_overlapping_ranges(store, apply):
    rnd = random.Random(7)
    keys = [b"k%02d" % i for i in range(20)]
    specs = []
    for _ in range(200):
        a, b = sorted(rnd.sample(range(21), 2))
        end = b"\x00" if rnd.random() < 0.1 else (b"" if b == a + 1 and rnd.random() < 0.5
                                                    else b"k%02d" % b)
        start_rev = rnd.choice([0, 0, 1, 2, 5])
        specs.append((b"k%02d" % a, end, start_rev))
    for i in range(5):
        put(apply, rnd.choice(keys), b"early%d" % i)
    watchers = [store.watch(k, e, r) for k, e, r in specs]
    created_at = store.revision
    with apply.batch() as w:
        for i in range(30):
            w.put(PutRequest(rnd.choice(keys), b"batch%d" % i))
    for i in range(30):
        key = rnd.choice(keys)
        if rnd.random() < 0.3:
            apply.delete_range(DeleteRangeRequest(key))
        else:
            put(apply, key, b"late%d" % i)
        if i % 7 == 0:
            store.hub.sync()
    while store.hub.sync():
        pass
    changes = _changes(store)
    for (key, end, start_rev), watcher in zip(specs, watchers):
        lo = start_rev or created_at + 1
        want = [(rev, k) for rev, k in changes if rev >= lo and watcher.covers(k)]
        got = [(rev, k) for _, k, _, rev in events(watcher)]
        assert got == want, (key, end, start_rev)


def _changes(store):
    from pykv.mvcc import index

    slot, view = store._views.begin()
    try:
        return [(main, key) for main, _sub, key, _rec in
                index.changes(view.txn, store._tables, 1, store.revision)]
    finally:
        store._views.end(slot, view)


def test_background_sync_keeps_up_with_a_writer_thread(store, apply):
    store.hub.buffer_responses = 4
    store.hub.start(interval_s=0.01)
    watchers = [store.watch(b"k", b"l", start_revision=1) for _ in range(5)]
    total = 300
    done = threading.Condition()
    got = {id(w): [] for w in watchers}

    def on_event(watcher):
        with done:
            done.notify_all()

    for w in watchers:
        w._notify = on_event

    def writer():
        for i in range(total):
            put(apply, b"k%03d" % (i % 50), b"%d" % i)

    thread = threading.Thread(target=writer)
    thread.start()
    last = total + 1
    with done:
        ok = done.wait_for(lambda: all(_drain(w, got) and got[id(w)][-1:] == [last]
                                       for w in watchers), timeout=60)
    thread.join()
    assert ok
    for w in watchers:
        assert got[id(w)] == list(range(2, last + 1))


def _drain(w, got):
    got[id(w)].extend(rev for *_, rev in events(w))
    return True


def test_a_failing_notify_hook_does_not_break_the_writer(store, apply, caplog):
    def broken(watcher):
        raise RuntimeError("consumer bug")

    w = store.watch(b"k", notify=broken)
    put(apply, b"k")
    put(apply, b"k")
    assert store.revision == 3 and len(w.take()) == 2
    assert "notify hook" in caplog.text


def test_a_hub_failure_cancels_watchers_but_keeps_the_commit(store, apply, monkeypatch):
    w = store.watch(b"k")

    def broken(*args):
        raise RuntimeError("hub bug")

    monkeypatch.setattr(store.hub, "_publish", broken)
    result = put(apply, b"k", b"kept")
    assert store.get(b"k").value == b"kept" and store.revision == result
    [response] = w.take()
    assert response.canceled and w.canceled
