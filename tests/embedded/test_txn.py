"""Transactions through the readable builder."""

from __future__ import annotations

import pytest

import pykv
from pykv import errors
from pykv.embedded import (
    create_revision, delete_op, get_op, lease_of, mod_revision, put_op, txn_op, value, version,
)


def test_then_branch_runs_when_every_compare_holds(db):
    db.put("mode", "blue")
    result = (db.txn()
              .if_(value("mode") == "blue", version("lock") == 0)
              .then(put_op("mode", "green"), get_op("mode"))
              .else_(put_op("mode", "red"))
              .commit())
    assert result.succeeded
    put, got = result.responses
    assert put.revision == result.revision
    assert got.kvs[0].value == b"green"  # a range sees the ops before it
    assert db.get("mode").value == b"green"


def test_else_branch_runs_when_a_compare_fails(db):
    db.put("mode", "blue")
    result = (db.txn().if_(value("mode") == "green")
              .then(put_op("mode", "x")).else_(get_op("mode")).commit())
    assert not result.succeeded
    assert result.responses[0].kvs[0].value == b"blue"
    assert db.get("mode").value == b"blue"


def test_all_ops_of_a_txn_share_one_revision(db):
    result = db.txn().then(put_op("a", "1"), put_op("b", "2"), delete_op("c")).commit()
    assert db.get("a").mod_revision == db.get("b").mod_revision == result.revision == 2


def test_compare_operators_on_revisions(db):
    rev = db.put("k", "v").revision
    assert db.txn().if_(mod_revision("k") == rev, create_revision("k") < rev + 1,
                        version("k") > 0, mod_revision("k") != 0).commit().succeeded
    assert not db.txn().if_(version("k") > 1).commit().succeeded


def test_compare_over_a_prefix_holds_for_every_key(db):
    db.put("p/1", "same")
    db.put("p/2", "same")
    assert db.txn().if_(value("p/", prefix=True) == "same").commit().succeeded
    db.put("p/3", "other")
    assert not db.txn().if_(value("p/", prefix=True) == "same").commit().succeeded


def test_compare_on_a_lease(db):
    lease = db.grant(60)
    db.put("held", "v", lease=lease)
    assert db.txn().if_(lease_of("held") == lease).commit().succeeded
    assert db.txn().if_(lease_of("held") != 0).commit().succeeded


def test_create_if_absent_the_lock_idiom(db):
    def acquire(owner: str) -> bool:
        return db.txn().if_(create_revision("lock") == 0).then(put_op("lock", owner)) \
            .commit().succeeded

    assert acquire("first")
    assert not acquire("second")
    assert db.get("lock").value == b"first"


def test_nested_txn(db):
    db.put("outer", "1")
    result = (db.txn().if_(value("outer") == "1")
              .then(txn_op([value("inner") == "x"], [put_op("r", "then")],
                           [put_op("r", "else")]))
              .commit())
    inner = result.responses[0]
    assert result.succeeded and not inner.succeeded
    assert db.get("r").value == b"else"


def test_read_only_txn_takes_no_revision(db):
    rev = db.put("k", "v").revision
    result = db.txn().if_(value("k") == "v").then(get_op("k")).commit()
    assert result.revision == rev and db.status().revision == rev


def test_too_many_ops_is_refused_with_etcds_message(db_path):
    with pykv.open(db_path, max_txn_ops=3) as db:
        with pytest.raises(errors.TooManyOps,
                           match="etcdserver: too many operations in txn request"):
            db.txn().then(*(put_op(f"k{i}", "v") for i in range(4))).commit()
        assert db.range("k", prefix=True).count == 0


def test_a_key_written_twice_in_a_txn_is_refused(db):
    with pytest.raises(errors.DuplicateKey):
        db.txn().then(put_op("k", "1"), put_op("k", "2")).commit()
    assert db.get("k") is None


def test_a_failing_op_leaves_no_trace(db):
    with pytest.raises(errors.LeaseNotFound):
        db.txn().then(put_op("a", "1"), put_op("b", "2", lease=12345)).commit()
    assert db.get("a") is None


def test_builder_parts_are_given_once_and_in_order(db):
    with pytest.raises(ValueError, match="already given"):
        db.txn().then(put_op("a", "1")).then(put_op("b", "1"))
    with pytest.raises(ValueError, match="comes before"):
        db.txn().else_(put_op("a", "1")).then(put_op("b", "1"))
    with pytest.raises(TypeError, match="compare"):
        db.txn().if_("not a compare").commit()  # type: ignore[arg-type]


def test_compare_operand_types_are_checked():
    with pytest.raises(TypeError, match="compares with an int"):
        version("k") == "one"  # noqa: B015 - the comparison builds the compare
