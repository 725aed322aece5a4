"""Model-based property test: random puts, deletes, txns, reads at old
revisions, compactions and restarts, checked against ``model.Model``.

The key alphabet holds the corners: keys that are prefixes of each other,
keys with NUL bytes, and long keys (over LMDB's 511 bytes) that share a long
prefix, whose order the store must keep exact.

CI runs 100 examples (a few seconds); ``PYKV_HYPOTHESIS=long`` runs 1000 with
longer sequences.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pykv import errors
from pykv.mvcc import Store, types as t
from tests.mvcc.requests import Compare, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest
from pykv.mvcc.requests import range_bounds
from tests.mvcc.model import Model

LONG = b"L" * 600
KEYS = [b"a", b"ab", b"a\x00", b"a\x00\x00", b"b", b"b\x00\x01", b"c", b"\xff",
        LONG + b"1", LONG + b"2", LONG, b"L" * 481]
keys = st.sampled_from(KEYS)
values = st.binary(max_size=8)
ends = st.sampled_from([b"", b"\x00", b"b", b"c", b"d", b"a\x00\x00", LONG + b"15", b"\xff\xff"])

PROFILE = os.environ.get("PYKV_HYPOTHESIS", "ci")
EXAMPLES = {"ci": 100, "long": 1000}[PROFILE]
STEPS = {"ci": 40, "long": 120}[PROFILE]


def kv_tuple(kv):
    return (kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="pykv-model-")
        self.path = os.path.join(self.dir, "db")
        self.store = Store.open(self.path, map_bytes=64 << 20)
        self.model = Model()
        self.index = 0

    def teardown(self):
        import shutil

        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _batch(self):
        self.index += 1
        return self.store.write(self.index)

    @rule(key=keys, value=values)
    def put(self, key, value):
        with self._batch() as w:
            result = w.put(PutRequest(key, value, prev_kv=True))
        before = self.model.live().get(key)
        assert result.revision == self.model.put(key, value)
        assert (kv_tuple(result.prev_kv) if result.prev_kv else None) == \
            (kv_tuple(before) if before else None)

    @rule(key=keys, end=ends)
    def delete(self, key, end):
        start, stop, single = range_bounds(key, end)
        doomed = [kv.key for kv in self.model.range(start, stop, single)[0]]
        with self._batch() as w:
            result = w.delete_range(DeleteRangeRequest(key, end))
        assert result.deleted == self.model.delete(doomed)
        assert result.revision == self.model.revision

    @rule(key=keys, other=keys, version=st.integers(0, 3), value=values, then_value=values,
          what=st.sampled_from([t.CMP_VERSION, t.CMP_VALUE, t.CMP_CREATE]),
          result=st.sampled_from([t.CMP_EQUAL, t.CMP_GREATER, t.CMP_LESS, t.CMP_NOT_EQUAL]))
    def txn(self, key, other, version, value, then_value, what, result):
        target = what
        state = self.model.live()
        current = state.get(key)
        if target == t.CMP_VERSION:
            cmp = Compare(key, target, result, version=version)
            a, b = (current.version if current else 0), version
        elif target == t.CMP_CREATE:
            cmp = Compare(key, target, result, create_revision=version)
            a, b = (current.create_revision if current else 0), version
        else:
            cmp = Compare(key, target, result, value=value)
            a, b = (current.value if current else None), value
        if a is None:
            ok = False
        else:
            ok = {t.CMP_EQUAL: a == b, t.CMP_GREATER: a > b, t.CMP_LESS: a < b,
                  t.CMP_NOT_EQUAL: a != b}[result]
        success = [RequestOp(request_put=PutRequest(key, then_value))]
        if other != key:
            success.append(RequestOp(request_delete_range=DeleteRangeRequest(other)))
        failure = [RequestOp(request_range=RangeRequest(key)),
                   RequestOp(request_put=PutRequest(other, value))]
        with self._batch() as w:
            res = w.txn(TxnRequest([cmp], success, failure))
        assert res.succeeded == ok
        main = self.model.revision + 1
        if ok:
            self.model.put(key, then_value, main=main, sub=0)
            if other != key and other in state:
                self.model.delete([other], main=main, sub=1)
        else:
            got = res.responses[0]
            assert [kv_tuple(kv) for kv in got.kvs] == ([kv_tuple(current)] if current else [])
            self.model.put(other, value, main=main, sub=0)
        assert res.revision == self.model.revision

    @rule(key=keys, end=ends, back=st.integers(0, 6), limit=st.integers(0, 3))
    def read(self, key, end, back, limit):
        rev = max(0, self.model.revision - back) if back else 0
        start, stop, single = range_bounds(key, end)
        try:
            want = self.model.range(start, stop, single, rev, limit)
        except errors.EtcdError as exc:
            with pytest.raises(type(exc)):
                self.store.range(RangeRequest(key, end, revision=rev, limit=limit))
            return
        got = self.store.range(RangeRequest(key, end, revision=rev, limit=limit))
        assert [kv_tuple(kv) for kv in got.kvs] == [kv_tuple(kv) for kv in want[0]]
        assert (got.more, got.count, got.revision) == (want[1], want[2], self.model.revision)
        counted = self.store.range(RangeRequest(key, end, revision=rev, count_only=True))
        assert counted.count == want[2] and counted.kvs == []

    @rule(back=st.integers(0, 8))
    def compact(self, back):
        rev = self.model.revision - back
        try:
            self.model.compact(rev)
        except errors.EtcdError as exc:
            with self._batch() as w, pytest.raises(type(exc)):
                w.compact(CompactionRequest(rev))
            return
        with self._batch() as w:
            w.compact(CompactionRequest(rev))

    @rule()
    def physical_compaction_step(self):
        self.store.compact_step()

    @precondition(lambda self: self.index % 3 == 0)
    @rule()
    def restart(self):
        before = self.store.hash_kv()
        self.store.close()
        self.store = Store.open(self.path, map_bytes=64 << 20)
        assert self.store.applied_index == self.index
        assert self.store.hash_kv().hash == before.hash

    @invariant()
    def revisions_agree(self):
        assert self.store.revision == self.model.revision
        assert self.store.compact_revision == max(self.model.compacted, 0)

    @invariant()
    def live_state_agrees(self):
        got = self.store.range(RangeRequest(b"\x00", b"\x00"))
        want = self.model.live()
        assert [kv_tuple(kv) for kv in got.kvs] == [kv_tuple(want[k]) for k in sorted(want)]


StoreMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_store_matches_model = StoreMachine.TestCase
