"""Ranges read a chunk at a time, checked against brute force over every
chunk size: count_only (``index.count_live`` counts whichever side of the
range is smaller) and the keys of a range (``index._take_below`` lists
chunks and bisects the last one), with limits."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from pykv.mvcc import Store, index
from tests.mvcc.requests import DeleteRangeRequest, PutRequest, RangeRequest

KEYS = st.lists(st.binary(min_size=1, max_size=3), max_size=60, unique=True)
BOUND = st.binary(min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(keys=KEYS, start=BOUND, end=st.one_of(st.none(), BOUND, st.just(b"\x00")),
       deleted=st.lists(st.binary(min_size=1, max_size=3), max_size=10),
       chunk=st.sampled_from([1, 2, 3, 7, 1024]))
def test_count_only_equals_a_brute_force_count(tmp_path_factory, keys, start, end, deleted,
                                               chunk):
    path = str(tmp_path_factory.mktemp("count") / "db")
    old_chunk = index._COUNT_CHUNK
    index._COUNT_CHUNK = chunk
    try:
        with Store.open(path, durability="none") as store:
            with store.write(1) as w:
                for key in keys:
                    w.put(PutRequest(key, b"v"))
                for key in deleted:
                    w.delete_range(DeleteRangeRequest(key))
            live = set(keys) - set(deleted)
            if end is None:
                expected = int(start in live)
                request = RangeRequest(start, count_only=True)
            elif end == b"\x00":
                expected = sum(1 for k in live if k >= start)
                request = RangeRequest(start, end, count_only=True)
            else:
                expected = sum(1 for k in live if start <= k < end)
                request = RangeRequest(start, end, count_only=True)
            assert store.range(request).count == expected
    finally:
        index._COUNT_CHUNK = old_chunk


@settings(max_examples=150, deadline=None)
@given(keys=KEYS, start=BOUND, end=st.one_of(BOUND, st.just(b"\x00")),
       limit=st.sampled_from([0, 1, 2, 5, 100]), first=st.sampled_from([1, 2, 16]),
       chunk=st.sampled_from([1, 2, 3, 128]))
def test_range_keys_equal_a_brute_force_scan(tmp_path_factory, keys, start, end, limit, first,
                                             chunk):
    path = str(tmp_path_factory.mktemp("scan") / "db")
    saved = index._SCAN_FIRST_CHUNK, index._SCAN_CHUNK
    index._SCAN_FIRST_CHUNK, index._SCAN_CHUNK = first, chunk
    try:
        with Store.open(path, durability="none") as store:
            with store.write(1) as w:
                for key in keys:
                    w.put(PutRequest(key, key * 2))
            inside = sorted(k for k in keys if k >= start and (end == b"\x00" or k < end))
            result = store.range(RangeRequest(start, end, limit=limit))
            expected = inside[:limit] if limit else inside
            assert result.kvs.items() == [(k, k * 2) for k in expected]
            assert result.count == len(inside)
            assert result.more == (bool(limit) and len(inside) > limit)
    finally:
        index._SCAN_FIRST_CHUNK, index._SCAN_CHUNK = saved
