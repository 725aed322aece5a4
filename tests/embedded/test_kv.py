"""put, get, range, delete, compact: etcd's semantics through the embedded API."""

from __future__ import annotations

import inspect
import threading

import pytest

import pykv
from pykv import errors
from pykv.embedded import prefix_end


def test_put_returns_the_revision_and_get_reads_it_back(db):
    first = db.put(b"k", b"v1")
    assert first.revision == 2  # etcd: a new store is at revision 1
    assert first.prev_kv is None
    kv = db.get(b"k")
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) == \
        (b"k", b"v1", 2, 2, 1)


def test_str_keys_and_values_are_utf8_and_results_are_bytes(db):
    db.put("clé", "valeur é")
    assert db.get("clé").value == "valeur é".encode()
    assert db.get(b"cl\xc3\xa9").key == "clé".encode()


def test_put_with_prev_kv_returns_the_replaced_version(db):
    db.put("k", "v1")
    result = db.put("k", "v2", prev_kv=True)
    assert result.prev_kv.value == b"v1"
    assert result.prev_kv.mod_revision == result.revision - 1
    assert db.get("k").version == 2


def test_get_of_a_missing_key_is_none(db):
    assert db.get("nothing") is None
    assert db.get_value("nothing") is None


def test_get_value_returns_only_the_value(db):
    db.put("k", "v")
    db.put(b"l" * 700, b"long key")  # a long key is stored differently
    assert db.get_value("k") == b"v"
    assert db.get_value(b"l" * 700) == b"long key"
    with pytest.raises(errors.KeyNotProvided):
        db.get_value("")


def test_get_answers_alike_on_its_fast_path_and_off_it(db):
    """db.get takes a shortcut for a bytes key on a thread with a current
    view; a str key, a long key, a revision, a first read on a thread and a
    read right after a write go the long way. Same answers either way."""
    long_key = b"l" * 700
    revisions = {key: db.put(key, b"v-" + key).revision for key in (b"a", b"b", long_key)}
    db.delete(b"b")
    db.get(b"a")  # this thread's view is current now: the next gets take the shortcut

    def fields(kv):
        return None if kv is None else (kv.key, kv.value, kv.create_revision, kv.mod_revision,
                                        kv.version, kv.lease)

    def answers() -> list:
        return [fields(db.get(key)) for key in (b"a", "a", b"b", long_key, b"missing")] + [
            fields(db.get(b"a", revision=revisions[b"a"])),
            fields(db.get(b"b", revision=revisions[b"b"]))]

    here = answers()
    expected_a = (b"a", b"v-a", revisions[b"a"], revisions[b"a"], 1, 0)
    assert here[0] == here[1] == here[5] == expected_a
    assert here[2] is None and here[4] is None
    assert here[3] == (long_key, b"v-" + long_key, revisions[long_key], revisions[long_key], 1, 0)
    assert here[6] == (b"b", b"v-b", revisions[b"b"], revisions[b"b"], 1, 0)
    elsewhere: list = []
    thread = threading.Thread(target=lambda: elsewhere.extend(answers()))
    thread.start()
    thread.join()
    assert elsewhere == here
    db.put(b"a", b"again")  # the view goes stale; the next get renews it
    assert fields(db.get(b"a"))[1:5] == (b"again", revisions[b"a"], revisions[long_key] + 2, 2)
    assert db.get.__doc__ == type(db).get.__doc__
    assert str(inspect.signature(db.get)) == str(inspect.signature(type(db).get)).replace(
        "self, ", "")


def test_gets_after_a_defragmentation_read_the_new_file(db):
    """A defragmentation replaces the store's tables: the shortcut of db.get
    must not keep the old ones (two gets in a row take it)."""
    db.put(b"k", b"v1")
    db.defragment()
    assert [db.get(b"k").value for _ in range(3)] == [b"v1"] * 3
    db.put(b"k", b"v2")
    assert [db.get(b"k").value for _ in range(3)] == [b"v2"] * 3


def test_get_is_refused_as_soon_as_close_begins(db, monkeypatch):
    db.put(b"k", b"v")
    assert db.get(b"k").value == b"v"  # the shortcut is warm on this thread
    seen: list = []
    real_close = db._engine.close

    def close_and_read_meanwhile() -> None:
        try:
            seen.append(db.get(b"k"))
        except errors.ClosedError as exc:
            seen.append(exc)
        real_close()

    monkeypatch.setattr(db._engine, "close", close_and_read_meanwhile)
    db.close()
    assert len(seen) == 1 and isinstance(seen[0], errors.ClosedError)


def test_get_at_a_past_revision_sees_the_old_value(db):
    old = db.put("k", "old").revision
    db.put("k", "new")
    assert db.get("k", revision=old).value == b"old"
    assert db.get("k").value == b"new"


def test_range_by_prefix_in_key_order(db):
    for key in ["a/2", "a/1", "b/1", "a/3", "a"]:
        db.put(key, key.upper())
    result = db.range("a/", prefix=True)
    assert [kv.key for kv in result.kvs] == [b"a/1", b"a/2", b"a/3"]
    assert result.count == 3 and not result.more
    assert result.kvs.items() == [(b"a/1", b"A/1"), (b"a/2", b"A/2"), (b"a/3", b"A/3")]


def test_range_with_an_explicit_end_is_half_open(db):
    for key in "abcde":
        db.put(key, key)
    assert db.range("b", "d").kvs.keys() == [b"b", b"c"]


def test_range_from_key_and_every_key(db):
    for key in "abc":
        db.put(key, key)
    assert db.range("b", from_key=True).kvs.keys() == [b"b", b"c"]
    assert db.range("", prefix=True).kvs.keys() == [b"a", b"b", b"c"]


def test_range_limit_sets_more_and_count_counts_all(db):
    for i in range(10):
        db.put(f"k{i}", "v")
    result = db.range("k", prefix=True, limit=3)
    assert len(result.kvs) == 3 and result.more and result.count == 10


def test_range_sorted_by_mod_revision_descending(db):
    for key in ["x1", "x2", "x3"]:
        db.put(key, "v")
    db.put("x1", "again")
    result = db.range("x", prefix=True, sort_order="descend", sort_target="mod")
    assert result.kvs.keys() == [b"x1", b"x3", b"x2"]


def test_range_keys_only_and_count_only(db):
    db.put("k1", "value")
    db.put("k2", "value")
    keys_only = db.range("k", prefix=True, keys_only=True)
    assert [kv.value for kv in keys_only.kvs] == [b"", b""]
    counted = db.range("k", prefix=True, count_only=True)
    assert counted.count == 2 and len(counted.kvs) == 0


def test_range_at_a_revision_sees_the_past(db):
    db.put("a", "1")
    rev = db.put("b", "1").revision
    db.delete("a")
    db.put("c", "1")
    assert db.range("", prefix=True, revision=rev).kvs.keys() == [b"a", b"b"]


def test_range_filters_by_create_revision(db):
    early = db.put("k1", "v").revision
    db.put("k2", "v")
    result = db.range("k", prefix=True, max_create_revision=early)
    assert result.kvs.keys() == [b"k1"]


def test_range_rejects_a_bad_sort_option(db):
    with pytest.raises(ValueError, match="sort_order"):
        db.range("k", prefix=True, sort_order="sideways")


def test_delete_returns_the_count_and_prev_kvs(db):
    for key in ["p/1", "p/2", "q"]:
        db.put(key, key)
    result = db.delete("p/", prefix=True, prev_kv=True)
    assert result.deleted == 2
    assert [kv.key for kv in result.prev_kvs] == [b"p/1", b"p/2"]
    assert db.range("", prefix=True).kvs.keys() == [b"q"]


def test_deleting_nothing_takes_no_revision(db):
    rev = db.put("k", "v").revision
    result = db.delete("missing")
    assert result.deleted == 0 and result.revision == rev


def test_every_change_takes_one_revision_in_order(db):
    revisions = [db.put(f"k{i}", "v").revision for i in range(5)]
    revisions.append(db.delete("k0").revision)
    assert revisions == list(range(2, 8))
    assert db.status().revision == 7


def test_compact_makes_older_revisions_unreadable(db):
    old = db.put("k", "1").revision
    db.put("k", "2")
    current = db.put("k", "3").revision
    db.compact(current, physical=True)
    with pytest.raises(errors.Compacted) as caught:
        db.get("k", revision=old)
    assert str(caught.value) == "etcdserver: mvcc: required revision has been compacted"
    assert db.get("k", revision=current).value == b"3"
    assert db.status().compact_revision == current


def test_compact_twice_to_the_same_revision_is_an_error(db):
    rev = db.put("k", "v").revision
    db.compact(rev)
    with pytest.raises(errors.Compacted):
        db.compact(rev)


def test_reading_or_compacting_a_future_revision_is_an_error(db):
    rev = db.put("k", "v").revision
    with pytest.raises(errors.FutureRevision, match="future revision"):
        db.get("k", revision=rev + 1)
    with pytest.raises(errors.FutureRevision):
        db.compact(rev + 10)


def test_an_empty_key_is_refused_with_etcds_message(db):
    with pytest.raises(errors.KeyNotProvided, match="etcdserver: key is not provided"):
        db.put("", "v")
    with pytest.raises(errors.KeyNotProvided):
        db.get("")


def test_a_key_of_the_wrong_type_is_a_type_error(db):
    with pytest.raises(TypeError, match="key must be bytes or str"):
        db.put(12, "v")  # type: ignore[arg-type]


def test_a_value_over_max_request_bytes_is_refused_and_nothing_is_written(db_path):
    with pykv.open(db_path, max_request_bytes=1000) as db:
        with pytest.raises(errors.ValueTooLarge, match="max_request_bytes"):
            db.put("big", b"x" * 2000)
        assert db.get("big") is None
        assert db.put("small", b"x" * 500).revision == 2


def test_long_keys_round_trip_and_keep_byte_order(db):
    keys = [b"k" * 600 + bytes([i]) for i in (3, 1, 2)] + [b"k" * 5000]
    for key in keys:
        db.put(key, key[-8:])
    assert db.range(b"k" * 600, prefix=True).kvs.keys() == sorted(keys)
    assert db.get(b"k" * 5000).value == (b"k" * 5000)[-8:]


def test_prefix_end_follows_etcd():
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def test_unknown_options_are_refused():
    with pytest.raises(TypeError, match="unknown option"):
        pykv.open("/nonexistent-never-created", synk=True)


def test_bad_option_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="quota_bytes"):
        pykv.open(tmp_path / "d", quota_bytes=0)
    with pytest.raises(ValueError, match="wal_segment_bytes"):
        pykv.open(tmp_path / "d", wal_segment_bytes=12345)


def test_compacted_history_is_removed_in_the_background(db):
    for i in range(300):
        db.put("k", str(i))
    revision = db.status().revision
    db.compact(revision)  # returns at once; the engine's thread removes the history
    assert db._engine.store.wait_compacted(revision, timeout=30)
    assert db.get("k").value == b"299"
