"""Typed errors with clear messages, and nothing lost when one is raised."""

from __future__ import annotations

import pytest

import pykv
from pykv import errors
from pykv.embedded import put_op
from pykv.embedded.requests import put_request
from pykv.engine.requests import Kind


def test_every_method_of_a_closed_database_raises_closed_error(db_path):
    db = pykv.open(db_path)
    lease = db.grant(60)
    db.put("k", "v")
    get = db.get
    assert get(b"k").value == b"v"  # this thread holds a view: gets take their fast path
    db.close()
    db.close()  # idempotent
    calls = [
        lambda: db.put("k", "v"), lambda: db.get("k"), lambda: db.get(b"k"), lambda: get(b"k"),
        lambda: db.range("k", prefix=True),
        lambda: db.delete("k"), lambda: db.txn().then(put_op("k", "v")).commit(),
        lambda: db.compact(1), lambda: db.watch("k"), lambda: db.grant(10),
        lambda: db.revoke(lease), lambda: db.keepalive(lease), lambda: db.time_to_live(lease),
        lambda: db.leases(), lambda: db.status(), lambda: db.snapshot(db_path / "s"),
        lambda: db.hash_kv(),
    ]
    for call in calls:
        with pytest.raises(errors.ClosedError, match="closed"):
            call()


def test_past_the_quota_puts_fail_with_nospace_and_reads_and_deletes_work(db_path):
    value = b"x" * 8000
    with pykv.open(db_path, quota_bytes=300_000) as db:
        written = []
        with pytest.raises(errors.NoSpace, match="etcdserver: mvcc: database space exceeded"):
            for i in range(1000):
                db.put(f"k{i}", value)
                written.append(f"k{i}")
        assert 0 < len(written) < 1000
        assert [a.alarm for a in db.alarms()] == [1]  # NOSPACE, raised through the log
        assert db.get(written[0]).value == value
        assert db.delete(written[0]).deleted == 1
        with pytest.raises(errors.NoSpace):
            db.txn().then(put_op("t", "v")).commit()
        with pytest.raises(errors.NoSpace):
            db.grant(10)
    with pykv.open(db_path, quota_bytes=300_000) as db:  # the alarm is durable
        assert [a.alarm for a in db.alarms()] == [1]
        with pytest.raises(errors.NoSpace):
            db.put("again", "v")
    with pykv.open(db_path, quota_bytes=1 << 30) as db:  # a bigger quota, then disarm
        assert [a.alarm for a in db.disarm()] == [1]
        assert db.alarms() == []
        assert db.put("again", "v").revision > 1


def test_errors_carry_etcds_grpc_codes_for_servers_and_clients(db):
    with pytest.raises(errors.LeaseNotFound) as caught:
        db.revoke(7)
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.message == "etcdserver: requested lease not found"


def test_a_failed_request_does_not_disturb_others_in_its_batch(db):
    lease = db.grant(60)
    results = db._engine.write_many([
        (Kind.PUT, put_request("a", "1")),
        (Kind.PUT, put_request("b", "2", lease=lease.id + 1)),
        (Kind.PUT, put_request("c", "3")),
    ])
    assert isinstance(results[1], errors.LeaseNotFound)
    assert results[0].revision + 1 == results[2].revision
    assert db.get("a") is not None and db.get("b") is None and db.get("c") is not None
