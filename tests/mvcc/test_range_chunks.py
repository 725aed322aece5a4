"""count_only (``index.count_live``) against a brute-force count: it counts
whichever side of the range is smaller, chunk by chunk, so the chunk edges
and both sides get every shape of range."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from pykv.mvcc import DeleteRangeRequest, PutRequest, RangeRequest, Store, index

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
