"""Auxiliary tables (membership and auth for the server): plain key/value
tables written in the same LMDB transaction as the applied index, in
snapshots and in store.hash()."""

from __future__ import annotations

import io

import pytest

from pykv.mvcc import Store, schema
from tests.mvcc.requests import PutRequest


def test_put_get_delete_and_items_in_key_order(store, apply):
    with apply.batch() as w:
        w.aux_put("members", b"\x00\x00\x00\x02", b"member two")
        w.aux_put("members", b"\x00\x00\x00\x01", b"member one")
        w.aux_put("auth_users", b"root", b"user record")
        assert w.aux_get("members", b"\x00\x00\x00\x01") == b"member one"  # its own writes
        assert store.aux_get("members", b"\x00\x00\x00\x01") is None  # not committed yet
    assert store.aux_get("members", b"\x00\x00\x00\x02") == b"member two"
    assert store.aux_items("members") == [(b"\x00\x00\x00\x01", b"member one"),
                                          (b"\x00\x00\x00\x02", b"member two")]
    assert store.aux_items("auth_users") == [(b"root", b"user record")]
    assert store.aux_items("auth_roles") == []
    with apply.batch() as w:
        assert w.aux_delete("members", b"\x00\x00\x00\x01") is True
        assert w.aux_delete("members", b"\x00\x00\x00\x09") is False
        w.aux_put("auth_users", b"root", b"changed")
        assert w.aux_items("members") == [(b"\x00\x00\x00\x02", b"member two")]
    assert store.aux_items("members") == [(b"\x00\x00\x00\x02", b"member two")]
    assert store.aux_get("auth_users", b"root") == b"changed"


def test_items_under_a_prefix(store, apply):
    with apply.batch() as w:
        for key in (b"role/a", b"role/b", b"rolf", b"user/a", b"rol"):
            w.aux_put("auth", key, key.upper())
    assert store.aux_items("auth", b"role/") == [(b"role/a", b"ROLE/A"), (b"role/b", b"ROLE/B")]
    assert [k for k, _ in store.aux_items("auth", b"rol")] == [b"rol", b"role/a", b"role/b",
                                                                 b"rolf"]
    assert store.aux_items("auth", b"zzz") == []


def test_aux_writes_commit_with_the_applied_index_or_not_at_all(store, apply):
    with apply.batch() as w:
        w.aux_put("cluster", b"version", b"3.4.0")
    applied = store.applied_index
    with pytest.raises(RuntimeError):
        with store.write(applied + 1) as w:
            w.aux_put("cluster", b"version", b"3.5.0")
            w.put(PutRequest(b"k", b"v"))
            raise RuntimeError("the apply loop fails mid-batch")
    assert store.applied_index == applied
    assert store.aux_get("cluster", b"version") == b"3.4.0"
    assert store.get(b"k") is None


def test_bad_table_names_and_keys_are_refused_and_change_nothing(store, apply):
    with apply.batch() as w:
        with pytest.raises(ValueError, match="unknown auxiliary table 'kv'"):
            w.aux_put("kv", b"a", b"b")  # the MVCC tables are not reachable this way
        with pytest.raises(ValueError, match="1 to 511 bytes"):
            w.aux_put("members", b"", b"b")
        with pytest.raises(ValueError, match="1 to 511 bytes"):
            w.aux_put("members", b"k" * 512, b"b")
        with pytest.raises(TypeError):
            w.aux_put("members", "text", b"b")
        w.aux_put("members", b"k" * 511, b"longest key")
    with pytest.raises(ValueError, match="unknown auxiliary table"):
        store.aux_items("nope")
    assert store.aux_items("members") == [(b"k" * 511, b"longest key")]


def test_aux_tables_survive_reopen_defragment_and_snapshots(store_path, tmp_path):
    store = Store.open(store_path, sync=False)
    with store.write(1) as w:
        for i in range(200):
            w.aux_put("auth_roles", b"role%03d" % i, b"perm" * i)
        w.aux_put("members_removed", b"\x00" * 8, b"")
    with store.write(2) as w:
        for i in range(0, 200, 2):
            w.aux_delete("auth_roles", b"role%03d" % i)
    expected = {name: store.aux_items(name) for name in schema.AUX_TABLES}
    digest = store.hash().hash
    store.defragment()
    assert {name: store.aux_items(name) for name in schema.AUX_TABLES} == expected
    stream = io.BytesIO()
    store.write_snapshot(stream)
    store.close()
    store = Store.open(store_path, sync=False)
    try:
        assert {name: store.aux_items(name) for name in schema.AUX_TABLES} == expected
    finally:
        store.close()
    stream.seek(0)
    restored = Store.restore_snapshot(stream, str(tmp_path / "restored" / "db"))
    try:
        assert {name: restored.aux_items(name) for name in schema.AUX_TABLES} == expected
        assert restored.hash().hash == digest
        assert restored.applied_index == 2
    finally:
        restored.close()


def test_aux_writes_change_the_store_hash(store, apply):
    before = store.hash().hash
    with apply.batch() as w:
        w.aux_put("members", b"\x01", b"m")
    changed = store.hash().hash
    assert changed != before
    with apply.batch() as w:
        w.aux_delete("members", b"\x01")
    assert store.hash().hash == before


def test_aux_writes_are_replayed_when_the_map_grows_mid_batch(store_path):
    store = Store.open(store_path, map_bytes=1 << 20, sync=False)  # the 64 MiB minimum
    try:
        start = store._env.info()["map_size"]
        with store.write(1) as w:
            for i in range(100):
                w.aux_put("auth", b"blob%03d" % i, b"%03d" % i * (350 << 10))
        assert store._env.info()["map_size"] > start
        items = store.aux_items("auth")
        assert [k for k, _ in items] == [b"blob%03d" % i for i in range(100)]
        assert items[99][1] == b"099" * (350 << 10)
    finally:
        store.close()
