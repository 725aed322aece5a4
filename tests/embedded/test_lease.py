"""Leases: grant, keepalive, revoke, and keys that vanish when one expires.

Leases run down by the injected clock (the ``clock`` fixture); the engine's
background thread notices expiry within ``lease_check_interval_s`` of real
time, and the tests wait for the DELETE event, not for a fixed time.
"""

from __future__ import annotations

import pytest

import pykv
from pykv import errors
from pykv.embedded import DELETE

WAIT_S = 10.0


def test_grant_returns_a_lease_with_its_ttl(db):
    lease = db.grant(30)
    assert lease.id > 0 and lease.ttl == 30
    assert db.leases() == [lease.id]
    assert db.time_to_live(lease).granted_ttl == 30


def test_a_ttl_below_the_minimum_is_raised_to_it(db_path, clock):
    with pykv.open(db_path, clock=clock, min_lease_ttl=5) as db:
        assert db.grant(1).ttl == 5


def test_grant_with_a_chosen_id_and_a_duplicate(db):
    assert db.grant(10, lease_id=42).id == 42
    with pytest.raises(errors.LeaseExists, match="etcdserver: lease already exists"):
        db.grant(10, lease_id=42)


def test_a_zero_ttl_and_a_huge_ttl_are_refused(db):
    with pytest.raises(errors.TTLZero):
        db.grant(0)
    with pytest.raises(errors.LeaseTTLTooLarge, match="too large lease TTL"):
        db.grant(10**10)


def test_keys_vanish_when_their_lease_expires(db, clock):
    lease = db.grant(10)
    db.put("session/a", "1", lease=lease)
    db.put("session/b", "2", lease=lease.id)
    db.put("kept", "3")
    with db.watch("session/", prefix=True) as watch:
        clock.advance(11)
        first = watch.get(timeout=WAIT_S)
        second = watch.get(timeout=WAIT_S)
    assert first is not None and second is not None
    assert {first.type, second.type} == {DELETE}
    assert first.kv.mod_revision == second.kv.mod_revision  # one revision for the revoke
    assert db.range("session/", prefix=True).count == 0
    assert db.get("kept").value == b"3"
    assert db.leases() == []


def test_keepalive_postpones_expiry(db, clock):
    lease = db.grant(10)
    db.put("k", "v", lease=lease)
    clock.advance(8)
    assert lease.keepalive() == 10
    clock.advance(8)  # 16 s after the grant, 8 after the keepalive
    with db.watch("k") as watch:
        assert watch.get(timeout=0.3) is None  # several expiry checks pass
    assert db.get("k") is not None
    assert db.time_to_live(lease).ttl == 2


def test_revoke_deletes_the_keys_at_once(db):
    lease = db.grant(60)
    db.put("a", "1", lease=lease)
    db.put("b", "1", lease=lease)
    result = lease.revoke()
    assert result.deleted == 2
    assert db.get("a") is None and db.get("b") is None


def test_unknown_leases_raise_lease_not_found(db):
    with pytest.raises(errors.LeaseNotFound, match="etcdserver: requested lease not found"):
        db.put("k", "v", lease=999)
    with pytest.raises(errors.LeaseNotFound):
        db.revoke(999)
    with pytest.raises(errors.LeaseNotFound):
        db.keepalive(999)
    assert db.time_to_live(999).ttl == -1  # etcd answers, it does not fail


def test_time_to_live_lists_the_keys(db):
    lease = db.grant(60)
    db.put("x", "1", lease=lease)
    db.put("y", "1", lease=lease)
    assert db.time_to_live(lease, keys=True).keys == [b"x", b"y"]


def test_the_lease_context_manager_revokes_on_exit(db):
    with db.grant(60) as lease:
        db.put("k", "v", lease=lease)
    assert db.get("k") is None
    assert db.leases() == []


def test_leases_survive_a_reopen_and_run_down_from_then(db_path, clock):
    with pykv.open(db_path, clock=clock) as db:
        lease = db.grant(10)
        db.put("k", "v", lease=lease)
    clock.advance(100)  # while closed: a reopened store gives every lease a fresh TTL
    with pykv.open(db_path, clock=clock) as db:
        assert db.get("k") is not None
        assert db.time_to_live(lease).ttl == 10
        with db.watch("k") as watch:
            clock.advance(11)
            assert watch.get(timeout=WAIT_S).type == DELETE
