"""etcd's KV semantics corners (ETCD-FACTS §1.1-1.2), one behaviour per test."""

from __future__ import annotations

import pytest

from pykv import errors
from pykv.mvcc import Store, types as t
from tests.mvcc.requests import Compare, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest


def put(key, value=b"v", **kw):
    return RequestOp(request_put=PutRequest(key, value, **kw))


def rng(key, end=b"", **kw):
    return RequestOp(request_range=RangeRequest(key, end, **kw))


def delete(key, end=b"", **kw):
    return RequestOp(request_delete_range=DeleteRangeRequest(key, end, **kw))


def keys(result):
    return [kv.key for kv in result.kvs]


def test_new_store_is_at_revision_1_and_first_write_is_revision_2(store, apply):
    assert store.revision == 1
    assert apply.put(PutRequest(b"a", b"1")).revision == 2
    assert store.revision == 2


def test_version_counts_changes_and_resets_after_delete(store, apply):
    apply.put(PutRequest(b"k", b"1"))
    apply.put(PutRequest(b"k", b"2"))
    kv = store.get(b"k")
    assert (kv.create_revision, kv.mod_revision, kv.version) == (2, 3, 2)
    apply.delete_range(DeleteRangeRequest(b"k"))
    apply.put(PutRequest(b"k", b"3"))
    kv = store.get(b"k")
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (5, 5, 1, b"3")


def test_put_returns_previous_kv_only_when_asked(apply):
    apply.put(PutRequest(b"k", b"1", lease=0))
    assert apply.put(PutRequest(b"k", b"2")).prev_kv is None
    prev = apply.put(PutRequest(b"k", b"3", prev_kv=True)).prev_kv
    assert (prev.value, prev.version) == (b"2", 2)


def test_ignore_value_and_ignore_lease_need_an_existing_key(apply):
    with pytest.raises(errors.KeyNotFound):
        apply.put(PutRequest(b"k", ignore_value=True))
    with pytest.raises(errors.KeyNotFound):
        apply.put(PutRequest(b"k", b"v", ignore_lease=True))


def test_ignore_value_keeps_the_old_value(store, apply):
    apply.put(PutRequest(b"k", b"old"))
    apply.put(PutRequest(b"k", ignore_value=True))
    assert (store.get(b"k").value, store.get(b"k").version) == (b"old", 2)


def test_ignore_flags_with_a_value_or_lease_are_refused(apply):
    apply.put(PutRequest(b"k", b"v"))
    with pytest.raises(errors.ValueProvided):
        apply.put(PutRequest(b"k", b"x", ignore_value=True))
    with pytest.raises(errors.LeaseProvided):
        apply.put(PutRequest(b"k", lease=5, ignore_lease=True))


def test_empty_key_is_not_provided(store, apply):
    with pytest.raises(errors.KeyNotProvided):
        apply.put(PutRequest(b"", b"v"))
    with pytest.raises(errors.KeyNotProvided):
        store.range(RangeRequest(b""))
    with pytest.raises(errors.KeyNotProvided):
        apply.delete_range(DeleteRangeRequest(b""))


def test_put_with_unknown_lease_is_lease_not_found(apply):
    with pytest.raises(errors.LeaseNotFound):
        apply.put(PutRequest(b"k", b"v", lease=42))


def test_delete_range_that_deletes_nothing_takes_no_revision(store, apply):
    apply.put(PutRequest(b"a"))
    result = apply.delete_range(DeleteRangeRequest(b"zzz"))
    assert (result.deleted, result.revision, store.revision) == (0, 2, 2)


def test_delete_range_reports_count_and_prev_kvs(apply):
    for k in (b"a", b"b", b"c"):
        apply.put(PutRequest(k, k))
    result = apply.delete_range(DeleteRangeRequest(b"a", b"c", prev_kv=True))
    assert result.deleted == 2 and [kv.key for kv in result.prev_kvs] == [b"a", b"b"]
    assert result.revision == 5


def test_range_end_nul_means_every_key_from_key(store, apply):
    for k in (b"a", b"b", b"c"):
        apply.put(PutRequest(k))
    assert keys(store.range(RangeRequest(b"b", b"\x00"))) == [b"b", b"c"]
    assert keys(store.range(RangeRequest(b"\x00", b"\x00"))) == [b"a", b"b", b"c"]
    assert keys(store.range(RangeRequest(b"b", b"a"))) == []


def test_prefix_range(store, apply):
    for k in (b"app", b"apple", b"apq", b"b"):
        apply.put(PutRequest(k))
    assert keys(store.range(RangeRequest(b"app", b"apq"))) == [b"app", b"apple"]


def test_limit_sets_more_and_count_ignores_limit(store, apply):
    for k in (b"a", b"b", b"c"):
        apply.put(PutRequest(k))
    result = store.range(RangeRequest(b"a", b"\x00", limit=2))
    assert (keys(result), result.more, result.count) == ([b"a", b"b"], True, 3)
    result = store.range(RangeRequest(b"a", b"\x00", limit=3))
    assert (result.more, result.count) == (False, 3)


def test_count_ignores_min_max_filters(store, apply):
    for k in (b"a", b"b", b"c"):
        apply.put(PutRequest(k))  # mod revisions 2, 3, 4
    result = store.range(RangeRequest(b"a", b"\x00", min_mod_revision=3))
    assert keys(result) == [b"b", b"c"] and result.count == 3
    result = store.range(RangeRequest(b"a", b"\x00", max_create_revision=2))
    assert keys(result) == [b"a"] and result.count == 3


def test_sort_fetches_everything_before_truncating(store, apply):
    apply.put(PutRequest(b"a"))
    apply.put(PutRequest(b"b"))
    apply.put(PutRequest(b"c"))
    apply.put(PutRequest(b"a", b"again"))  # a now has the highest mod revision
    result = store.range(RangeRequest(b"a", b"\x00", limit=1, sort_order=t.SORT_DESCEND,
                                      sort_target=t.TARGET_MOD))
    assert keys(result) == [b"a"] and result.more and result.count == 3


def test_non_key_sort_target_without_order_sorts_ascending(store, apply):
    apply.put(PutRequest(b"a", b"3"))
    apply.put(PutRequest(b"b", b"1"))
    apply.put(PutRequest(b"c", b"2"))
    result = store.range(RangeRequest(b"a", b"\x00", sort_target=t.TARGET_VALUE))
    assert keys(result) == [b"b", b"c", b"a"]
    result = store.range(RangeRequest(b"a", b"\x00", sort_order=t.SORT_DESCEND))
    assert keys(result) == [b"c", b"b", b"a"]


def test_sort_by_create_then_max_create_revision_like_etcdctl_lock(store, apply):
    for k in (b"lock/3", b"lock/1", b"lock/2"):
        apply.put(PutRequest(k))
    owner = store.range(RangeRequest(b"lock/", b"lock0", limit=1, sort_order=t.SORT_ASCEND,
                                     sort_target=t.TARGET_CREATE))
    assert keys(owner) == [b"lock/3"]
    waiter = store.range(RangeRequest(b"lock/", b"lock0", limit=1, sort_order=t.SORT_DESCEND,
                                      sort_target=t.TARGET_CREATE, max_create_revision=3))
    assert keys(waiter) == [b"lock/1"]


def test_invalid_sort_option_is_refused(store):
    with pytest.raises(errors.InvalidSortOption):
        store.range(RangeRequest(b"a", sort_order=7))


def test_keys_only_and_count_only(store, apply):
    apply.put(PutRequest(b"a", b"value"))
    apply.put(PutRequest(b"b", b"value"))
    result = store.range(RangeRequest(b"a", b"\x00", keys_only=True))
    assert [kv.value for kv in result.kvs] == [b"", b""] and result.kvs[0].version == 1
    result = store.range(RangeRequest(b"a", b"\x00", count_only=True, limit=1))
    assert (result.kvs, result.count, result.more) == ([], 2, False)


def test_header_revision_is_current_even_for_historical_reads(store, apply):
    apply.put(PutRequest(b"a", b"1"))
    apply.put(PutRequest(b"a", b"2"))
    result = store.range(RangeRequest(b"a", revision=2))
    assert result.kvs[0].value == b"1" and result.revision == 3


def test_future_revision_is_refused(store, apply):
    apply.put(PutRequest(b"a"))
    with pytest.raises(errors.FutureRevision) as info:
        store.range(RangeRequest(b"a", revision=3))
    assert str(info.value) == "etcdserver: mvcc: required revision is a future revision"


def test_compaction_boundary(store, apply):
    for value in (b"1", b"2", b"3"):
        apply.put(PutRequest(b"a", value))  # revisions 2, 3, 4
    apply.compact(CompactionRequest(3))
    with pytest.raises(errors.Compacted) as info:
        store.range(RangeRequest(b"a", revision=2))
    assert info.value.code == "OUT_OF_RANGE"
    assert store.range(RangeRequest(b"a", revision=3)).kvs[0].value == b"2"  # at compact rev: ok
    with pytest.raises(errors.Compacted):
        apply.compact(CompactionRequest(3))  # compacting to it again
    with pytest.raises(errors.FutureRevision):
        apply.compact(CompactionRequest(5))


def test_compacting_to_revision_zero_is_allowed_once_as_in_etcd(store, apply):
    # etcd 3.4 starts at compactMainRev -1: Compact(0) succeeds on a new
    # store, and a second Compact(0) is ErrCompacted like any other repeat.
    assert apply.compact(CompactionRequest(0)).revision == 1
    with pytest.raises(errors.Compacted) as info:
        apply.compact(CompactionRequest(0))
    assert str(info.value) == "etcdserver: mvcc: required revision has been compacted"
    assert info.value.code == "OUT_OF_RANGE"
    assert store.compact_revision == 0
    apply.compact(CompactionRequest(1))  # the current revision of a new store
    with pytest.raises(errors.Compacted):
        apply.compact(CompactionRequest(1))
    with pytest.raises(errors.Compacted):
        apply.compact(CompactionRequest(-1))
    with pytest.raises(errors.FutureRevision):
        apply.compact(CompactionRequest(2))


def test_a_compaction_to_zero_is_remembered_across_reopen(store_path, clock):
    never = Store.open(store_path, clock=clock, map_bytes=64 << 20)
    never.close()
    reopened = Store.open(store_path, clock=clock, map_bytes=64 << 20)
    with reopened.write(1) as w:
        w.compact(CompactionRequest(0))  # never compacted: still allowed
    reopened.close()
    compacted = Store.open(store_path, clock=clock, map_bytes=64 << 20)
    try:
        with pytest.raises(errors.Compacted), compacted.write(2) as w:
            w.compact(CompactionRequest(0))
        assert compacted.compact_revision == 0 and compacted.applied_index == 1
    finally:
        compacted.close()


def test_physical_compaction_keeps_what_is_visible(store, apply):
    for i in range(50):
        apply.put(PutRequest(b"k%d" % (i % 5), b"%d" % i))
    apply.delete_range(DeleteRangeRequest(b"k0"))
    store.compact_batch_changes = 7
    before = store.range(RangeRequest(b"\x00", b"\x00", revision=40))
    apply.compact(CompactionRequest(40))
    steps = 0
    while store.compact_step():
        steps += 1
    assert steps > 1  # it took several bounded chunks
    after = store.range(RangeRequest(b"\x00", b"\x00", revision=40))
    assert [(kv.key, kv.value) for kv in after.kvs] == [(kv.key, kv.value) for kv in before.kvs]
    with store._env.begin() as txn:
        # Five keys' history squeezed to what is visible at 40 and after it.
        assert txn.stat(store._tables.rev)["entries"] == 5 + (52 - 40)


def test_txn_ops_share_one_revision_with_sub_revisions(store, apply):
    result = apply.txn(TxnRequest([], [put(b"a"), put(b"b"), delete(b"zz")], []))
    assert result.succeeded and result.revision == 2
    assert [r.revision for r in result.responses] == [2, 2, 2]
    assert store.get(b"a").mod_revision == store.get(b"b").mod_revision == 2


def test_txn_reads_its_own_writes(apply):
    result = apply.txn(TxnRequest([], [put(b"a", b"new"), rng(b"a")], []))
    assert result.responses[1].kvs[0].value == b"new"


def test_read_only_txn_takes_no_revision(store, apply):
    apply.put(PutRequest(b"a"))
    result = apply.txn(TxnRequest([], [rng(b"a")], []))
    assert result.revision == 2 and store.revision == 2


def test_compare_targets_and_results(apply):
    apply.put(PutRequest(b"k", b"m"))
    apply.put(PutRequest(b"k", b"m"))  # version 2, create 2, mod 3
    cases = [
        (Compare(b"k", t.CMP_VERSION, t.CMP_EQUAL, version=2), True),
        (Compare(b"k", t.CMP_VERSION, t.CMP_GREATER, version=2), False),
        (Compare(b"k", t.CMP_CREATE, t.CMP_LESS, create_revision=3), True),
        (Compare(b"k", t.CMP_MOD, t.CMP_NOT_EQUAL, mod_revision=3), False),
        (Compare(b"k", t.CMP_VALUE, t.CMP_GREATER, value=b"a"), True),
        (Compare(b"k", t.CMP_LEASE, t.CMP_EQUAL, lease=0), True),
        (Compare(b"missing", t.CMP_CREATE, t.CMP_EQUAL, create_revision=0), True),
    ]
    for cmp, expected in cases:
        assert apply.txn(TxnRequest([cmp], [], [])).succeeded is expected, cmp.target


def test_value_compare_on_a_missing_key_is_always_false(apply):
    for result in (t.CMP_EQUAL, t.CMP_NOT_EQUAL, t.CMP_LESS, t.CMP_GREATER):
        cmp = Compare(b"missing", t.CMP_VALUE, result, value=b"")
        assert apply.txn(TxnRequest([cmp], [], [])).succeeded is False


def test_compare_over_a_range_needs_every_key(apply):
    apply.put(PutRequest(b"a1", b"x"))
    apply.put(PutRequest(b"a2", b"y"))
    all_x = Compare(b"a", t.CMP_VALUE, t.CMP_EQUAL, range_end=b"b", value=b"x")
    some = Compare(b"a", t.CMP_VERSION, t.CMP_GREATER, range_end=b"b", version=0)
    assert apply.txn(TxnRequest([all_x], [], [])).succeeded is False
    assert apply.txn(TxnRequest([some], [], [])).succeeded is True


def test_failure_branch_runs_when_a_compare_fails(store, apply):
    cmp = Compare(b"k", t.CMP_VERSION, t.CMP_EQUAL, version=1)
    result = apply.txn(TxnRequest([cmp], [put(b"yes")], [put(b"no")]))
    assert result.succeeded is False and store.get(b"no") and store.get(b"yes") is None


def test_nested_txn_compares_see_the_state_before_the_outer_txn(store, apply):
    inner = TxnRequest([Compare(b"a", t.CMP_VERSION, t.CMP_EQUAL, version=0)],
                       [put(b"inner-saw-no-a")], [put(b"inner-saw-a")])
    result = apply.txn(TxnRequest([], [put(b"a"), RequestOp(request_txn=inner)], []))
    assert result.responses[1].succeeded is True
    assert store.get(b"inner-saw-no-a") is not None
    assert store.get(b"a").mod_revision == store.get(b"inner-saw-no-a").mod_revision == 2


def test_too_many_ops_counts_the_largest_list(store_path):
    store = Store.open(store_path, max_txn_ops=3)
    try:
        with store.write(1) as w:
            w.txn(TxnRequest([Compare(b"a")] * 3, [put(b"%d" % i) for i in range(3)], []))
            with pytest.raises(errors.TooManyOps):
                w.txn(TxnRequest([Compare(b"a")] * 4, [], []))
            with pytest.raises(errors.TooManyOps):
                w.txn(TxnRequest([], [], [put(b"%d" % i) for i in range(4)]))
            nested = TxnRequest([], [put(b"x"), put(b"y")], [])
            with pytest.raises(errors.TooManyOps):  # budget left for the nested txn: 3 - 2
                w.txn(TxnRequest([], [put(b"p"), RequestOp(request_txn=nested)], []))
    finally:
        store.close()


def test_duplicate_key_rule(apply):
    with pytest.raises(errors.DuplicateKey):
        apply.txn(TxnRequest([], [put(b"a"), put(b"a")], []))
    with pytest.raises(errors.DuplicateKey):
        apply.txn(TxnRequest([], [delete(b"a", b"c"), put(b"b")], []))
    nested = TxnRequest([], [put(b"a")], [])
    with pytest.raises(errors.DuplicateKey):
        apply.txn(TxnRequest([], [put(b"a"), RequestOp(request_txn=nested)], []))
    # Puts may overlap across the then/else branches of one nested txn.
    branches = TxnRequest([], [put(b"a")], [put(b"a")])
    apply.txn(TxnRequest([], [RequestOp(request_txn=branches)], []))
    # Deletes may overlap each other.
    apply.txn(TxnRequest([], [delete(b"a", b"c"), delete(b"b")], []))
    # Ranges overlap anything; the failure branch is checked too.
    apply.txn(TxnRequest([], [put(b"a"), rng(b"a", b"z"), put(b"b")], []))
    with pytest.raises(errors.DuplicateKey):
        apply.txn(TxnRequest([], [put(b"x")], [put(b"y"), rng(b"y"), put(b"y")]))


def test_empty_request_op_is_key_not_found(apply):
    with pytest.raises(errors.KeyNotFound):
        apply.txn(TxnRequest([], [RequestOp()], []))


def test_txn_range_at_future_revision_fails_the_whole_txn(store, apply):
    with pytest.raises(errors.FutureRevision):
        apply.txn(TxnRequest([], [put(b"a"), rng(b"a", revision=99)], []))
    assert store.get(b"a") is None and store.revision == 1


def test_failed_op_leaves_no_trace_and_the_batch_goes_on(store, apply):
    with apply.batch() as w:
        w.put(PutRequest(b"a", b"1"))
        with pytest.raises(errors.LeaseNotFound):
            w.put(PutRequest(b"b", b"1", lease=7))
        with pytest.raises(errors.DuplicateKey):
            w.txn(TxnRequest([], [put(b"c"), put(b"c")], []))
        w.put(PutRequest(b"d", b"1"))
    assert keys(store.range(RangeRequest(b"\x00", b"\x00"))) == [b"a", b"d"]
    assert store.revision == 3


def test_an_exception_in_the_batch_applies_nothing(store, apply):
    with pytest.raises(RuntimeError):
        with apply.batch() as w:
            w.put(PutRequest(b"a"))
            raise RuntimeError("engine failed mid-batch")
    assert store.get(b"a") is None and store.revision == 1 and store.applied_index == 0
    apply.put(PutRequest(b"b"))  # the store still works
    assert store.revision == 2


def test_batch_sees_its_own_writes(apply):
    with apply.batch() as w:
        w.put(PutRequest(b"a", b"1"))
        assert w.range(RangeRequest(b"a")).kvs[0].value == b"1"
        assert w.revision == 2


def _fields(message: bytes) -> list[tuple[int, object]]:
    """A minimal protobuf reader: [(field number, int or bytes)]."""
    out, i = [], 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            b = message[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value
    while i < len(message):
        tag = varint()
        if tag & 7 == 0:
            out.append((tag >> 3, varint()))
        else:
            n = varint()
            out.append((tag >> 3, message[i:i + n]))
            i += n
    return out


def test_range_raw_is_the_protobuf_range_response(store, apply):
    apply.put(PutRequest(b"a", b"x" * 200))
    apply.put(PutRequest(b"b", b""))
    raw = store.range_raw(RangeRequest(b"a", b"\x00", limit=1))
    fields = _fields(raw.response_bytes(b"\x18\x03"))
    assert fields[0] == (1, b"\x18\x03")
    assert _fields(fields[1][1]) == [(1, b"a"), (2, 2), (3, 2), (4, 1), (5, b"x" * 200)]
    assert fields[2:] == [(3, 1), (4, 2)]  # more, count
    keys_only = store.range_raw(RangeRequest(b"b", keys_only=True))
    assert _fields(_fields(keys_only.kvs_wire)[0][1]) == [(1, b"b"), (2, 3), (3, 3), (4, 1)]


def test_range_raw_keys_only_sends_no_value_for_short_or_long_keys(store, apply):
    from pykv.api.etcdserverpb import rpc_pb2

    apply.put(PutRequest(b"L" * 600, b"long value", lease=0))
    apply.put(PutRequest(b"a", b"x" * 3000))
    apply.put(PutRequest(b"a", b"y"))
    raw = store.range_raw(RangeRequest(b"\x00", b"\x00", keys_only=True))
    answer = rpc_pb2.RangeResponse.FromString(raw.response_bytes(b""))
    assert [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)
            for kv in answer.kvs] == [(b"L" * 600, b"", 2, 2, 1), (b"a", b"", 3, 4, 2)]


def test_range_kvs_is_a_lazy_sequence_with_fast_item_access(store, apply):
    apply.put(PutRequest(b"a", b"1"))
    apply.put(PutRequest(b"L" * 600, b"long"))  # a long key: its record carries the key
    apply.put(PutRequest(b"b", b"2"))
    kvs = store.range(RangeRequest(b"\x00", b"\x00")).kvs
    assert len(kvs) == 3 and kvs[0].key == b"L" * 600 and kvs[-1].value == b"2"
    assert kvs.items() == [(b"L" * 600, b"long"), (b"a", b"1"), (b"b", b"2")]
    assert kvs.keys() == [b"L" * 600, b"a", b"b"]
    assert [kv.version for kv in kvs[1:]] == [1, 1]
    plain = store.range(RangeRequest(b"a", b"c")).kvs
    assert plain.items() == [(b"a", b"1"), (b"b", b"2")]
    assert list(plain) == [store.get(b"a"), store.get(b"b")]


def test_a_txn_failing_midway_leaves_no_trace(store, apply):
    """etcd checks duplicates on a from-key delete as an empty interval, so
    [delete k.. , put k ignore_value] passes the checks and then finds k gone
    (etcd panics there); pykv refuses the txn and keeps nothing of it."""
    apply.put(PutRequest(b"k", b"v"))
    txn = TxnRequest([], [delete(b"a", b"\x00"), put(b"k", b"", ignore_value=True)], [])
    with apply.batch() as w:
        with pytest.raises(errors.KeyNotFound):
            w.txn(txn)
        w.put(PutRequest(b"after", b"1"))
    assert store.get(b"k").value == b"v" and store.get(b"after").mod_revision == 3
    assert store.revision == 3


def test_read_only_txn_is_served_without_a_write_batch(store, apply):
    apply.put(PutRequest(b"a", b"1"))
    apply.put(PutRequest(b"a", b"2"))
    inner = TxnRequest([Compare(b"a", t.CMP_VALUE, t.CMP_EQUAL, value=b"2")],
                       [rng(b"a", revision=2)], [])
    req = TxnRequest([Compare(b"a", t.CMP_VERSION, t.CMP_EQUAL, version=2)],
                     [rng(b"a"), RequestOp(request_txn=inner)], [rng(b"zzz")])
    result = store.txn_read(req)
    assert result.succeeded and result.revision == 3
    assert result.responses[0].kvs[0].value == b"2"
    nested = result.responses[1]
    assert nested.succeeded and nested.responses[0].kvs[0].value == b"1"
    with pytest.raises(errors.FutureRevision):
        store.txn_read(TxnRequest([], [rng(b"a", revision=9)], []))
    with pytest.raises(ValueError, match="write path"):
        store.txn_read(TxnRequest([], [rng(b"a")], [put(b"b")]))
    assert store.revision == 3


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only txn", "txn with a put"])
def test_txn_range_at_a_negative_revision_as_etcd_judges_it(store, apply, read_only):
    # etcd 3.4.23 (checked): in a txn, -1 reads the current revision while the
    # store was never compacted and everything below is compacted; a plain Range
    # reads the current revision for any revision <= 0.
    apply.put(PutRequest(b"a", b"1"))

    def txn_at(revision):
        ops = [rng(b"a", revision=revision)] + ([] if read_only else [put(b"b")])
        if read_only:
            return store.txn_read(TxnRequest([], ops, []))
        return apply.txn(TxnRequest([], ops, []))

    assert [kv.value for kv in txn_at(-1).responses[0].kvs] == [b"1"]
    with pytest.raises(errors.Compacted):
        txn_at(-5)
    assert [kv.value for kv in store.range(RangeRequest(b"a", revision=-5)).kvs] == [b"1"]
    apply.compact(CompactionRequest(0))
    with pytest.raises(errors.Compacted):
        txn_at(-1)
