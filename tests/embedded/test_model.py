"""Model-based property test of the embedded API: random puts, deletes,
txns, reads at old revisions, compactions and reopens, checked against the
dict-of-histories model of tests/mvcc/model.py (STYLE habit 5). Every reopen
goes through recovery (the WAL read from the store's applied index, a new
term), so the engine's log handling is checked with the store's semantics.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import pykv
from pykv import errors
from pykv.embedded import put_op, value as value_of
from tests.mvcc.model import Model

KEYS = [b"a", b"ab", b"a\x00", b"b", b"b/1", b"b/2", b"c", b"\xff", b"L" * 600 + b"1"]
keys = st.sampled_from(KEYS)
values = st.binary(max_size=8)


def fields(kv):
    return (kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value)


class EmbeddedMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pykv-embedded-model-")
        self.db = pykv.open(self.dir, sync=False)
        self.model = Model()
        self.term = self.db.status().raft_term

    def teardown(self):
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(key=keys, value=values)
    def put(self, key, value):
        result = self.db.put(key, value)
        assert result.revision == self.model.put(key, value)

    @rule(prefix=st.sampled_from([b"a", b"b/", b"b", b"\xff"]))
    def delete_prefix(self, prefix):
        doomed = sorted(k for k in self.model.live() if k.startswith(prefix))
        result = self.db.delete(prefix, prefix=True)
        assert result.deleted == self.model.delete(doomed)
        assert result.revision == self.model.revision

    @rule(key=keys, expected=values, new=values)
    def compare_and_set(self, key, expected, new):
        current = self.model.live().get(key)
        holds = current is not None and current.value == expected
        result = self.db.txn().if_(value_of(key) == expected).then(put_op(key, new)).commit()
        assert result.succeeded == holds
        if holds:
            assert result.revision == self.model.put(key, new)

    @rule(key=keys, back=st.integers(min_value=0, max_value=6))
    def get_in_the_past(self, key, back):
        revision = max(1, self.model.revision - back)
        try:
            expected, _, _ = self.model.range(key, key, True, revision)
        except errors.Compacted:
            try:
                self.db.get(key, revision=revision)
            except errors.Compacted:
                return
            raise AssertionError("a compacted revision was readable")
        got = self.db.get(key, revision=revision)
        assert (fields(got) if got else None) == (fields(expected[0]) if expected else None)

    @rule(back=st.integers(min_value=0, max_value=4))
    def compact(self, back):
        revision = self.model.revision - back
        try:
            self.model.compact(revision)
        except (errors.Compacted, errors.FutureRevision) as exc:
            try:
                self.db.compact(revision)
            except type(exc):
                return
            raise AssertionError(f"compact({revision}) should fail with {type(exc).__name__}")
        self.db.compact(revision)

    @rule()
    def reopen(self):
        self.db.close()
        self.db = pykv.open(self.dir, sync=False)
        term = self.db.status().raft_term
        assert term == self.term + 1
        self.term = term

    @invariant()
    def every_key_and_the_revision_match(self):
        result = self.db.range(b"", prefix=True)
        expected, _, count = self.model.range(b"\x00", None, False)
        assert [fields(kv) for kv in result.kvs] == [fields(kv) for kv in expected]
        assert result.count == count and result.revision == self.model.revision


TestEmbeddedModel = EmbeddedMachine.TestCase
TestEmbeddedModel.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
