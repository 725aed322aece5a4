"""Leases: grant, attach, revoke, renew, time-to-live and expiry through an
injected clock (etcd's lessor semantics, ETCD-FACTS §1.4)."""

from __future__ import annotations

import pytest

from pykv import errors
from pykv.mvcc import Store
from tests.mvcc.requests import DeleteRangeRequest, PutRequest, RangeRequest
from pykv.mvcc.lease import EXPIRED_RETRY_S, MAX_LEASE_TTL


def test_grant_raises_short_ttls_to_the_minimum(apply):
    assert apply.lease_grant(1, 1).ttl == 2
    assert apply.lease_grant(2, 60).ttl == 60


def test_grant_errors(apply):
    apply.lease_grant(1, 10)
    with pytest.raises(errors.LeaseExists):
        apply.lease_grant(1, 10)
    with pytest.raises(errors.LeaseTTLTooLarge):
        apply.lease_grant(2, MAX_LEASE_TTL + 1)


def test_generated_ids_are_positive_unique_and_deterministic(tmp_path):
    def ids(path):
        store = Store.open(str(path))
        try:
            with store.write(7) as w:
                return [w.lease_grant(0, 10).id for _ in range(3)]
        finally:
            store.close()
    first = ids(tmp_path / "a" / "db")
    assert first == ids(tmp_path / "b" / "db")  # same entry on two replicas, same ids
    assert len(set(first)) == 3 and all(0 < i < 2 ** 63 for i in first)


def test_generated_ids_do_not_depend_on_how_entries_are_batched(tmp_path):
    """Members group the same committed entries into different batches (a
    follower's Ready is not the leader's): the ids must still agree."""
    def ids(path, batches):
        store = Store.open(str(path), sync=False)
        try:
            out, index = [], 0
            for size in batches:
                index += size
                with store.write(index) as w:
                    out += [w.lease_grant(0, 10).id for _ in range(size)]
            return out
        finally:
            store.close()
    one_by_one = ids(tmp_path / "a" / "db", [1, 1, 1, 1])
    assert one_by_one == ids(tmp_path / "b" / "db", [4])
    assert one_by_one == ids(tmp_path / "c" / "db", [3, 1])


def test_grant_is_visible_to_later_ops_in_the_same_batch(store, apply):
    with apply.batch() as w:
        w.lease_grant(5, 10)
        w.put(PutRequest(b"k", b"v", lease=5))
    assert store.get(b"k").lease == 5


def test_revoke_deletes_attached_keys_in_one_revision(store, apply):
    apply.lease_grant(5, 10)
    for key in (b"b", b"a", b"c"):
        apply.put(PutRequest(key, lease=5))
    apply.put(PutRequest(b"other"))
    result = apply.lease_revoke(5)
    assert result.deleted == 3 and result.revision == 6 and store.revision == 6
    assert [kv.key for kv in store.range(RangeRequest(b"\x00", b"\x00")).kvs] == [b"other"]
    assert store.lessor.leases() == []
    with pytest.raises(errors.LeaseNotFound):
        apply.lease_revoke(5)


def test_revoking_a_lease_without_keys_takes_no_revision(store, apply):
    apply.lease_grant(5, 10)
    assert apply.lease_revoke(5).revision == 1 and store.revision == 1


def test_keys_move_between_leases_and_detach_on_delete(store, apply):
    apply.lease_grant(1, 10)
    apply.lease_grant(2, 10)
    apply.put(PutRequest(b"k", lease=1))
    apply.put(PutRequest(b"k", lease=2))
    assert store.lessor.time_to_live(1, keys=True).keys == []
    assert store.lessor.time_to_live(2, keys=True).keys == [b"k"]
    apply.put(PutRequest(b"k", b"v2", ignore_lease=True))
    assert store.get(b"k").lease == 2
    apply.delete_range(DeleteRangeRequest(b"k"))
    assert store.lessor.time_to_live(2, keys=True).keys == []
    assert apply.lease_revoke(2).deleted == 0


def test_time_to_live_runs_down_only_on_a_primary(store, apply, clock):
    apply.lease_grant(1, 30)
    assert store.lessor.time_to_live(1).ttl == 30  # not primary: a full TTL, forever
    store.lessor.promote()
    clock.advance(10.5)
    ttl = store.lessor.time_to_live(1)
    assert (ttl.ttl, ttl.granted_ttl) == (19, 30)
    assert store.lessor.time_to_live(99).ttl == -1  # unknown lease: -1, not an error


def test_expiry_is_reported_not_acted_on(store, apply, clock):
    store.lessor.promote()
    apply.lease_grant(1, 10)
    apply.lease_grant(2, 20)
    apply.put(PutRequest(b"k", lease=1))
    clock.advance(10)
    assert store.lessor.expired() == [1]
    assert store.get(b"k") is not None  # the store does not revoke by itself
    assert store.lessor.expired() == []  # reported once...
    clock.advance(EXPIRED_RETRY_S)
    assert store.lessor.expired() == [1]  # ...and again if its revoke did not happen
    apply.lease_revoke(1)
    clock.advance(100)
    assert store.lessor.expired() == [2]


def test_renew_extends_and_refuses_unknown_or_expired(store, apply, clock):
    store.lessor.promote()
    apply.lease_grant(1, 10)
    clock.advance(8)
    assert store.lessor.renew(1) == 10
    clock.advance(8)
    assert store.lessor.expired() == []
    clock.advance(3)
    assert store.lessor.expired() == [1]
    with pytest.raises(errors.LeaseNotFound):
        store.lessor.renew(1)
    with pytest.raises(errors.LeaseNotFound):
        store.lessor.renew(404)


def test_demoted_lessor_never_expires_and_promote_refreshes(store, apply, clock):
    store.lessor.promote()
    apply.lease_grant(1, 10)
    store.lessor.demote()
    clock.advance(1000)
    assert store.lessor.expired() == []
    store.lessor.promote(extend_s=1.0)
    clock.advance(10.5)
    assert store.lessor.expired() == []
    clock.advance(0.5)
    assert store.lessor.expired() == [1]


def test_leases_survive_a_restart_with_a_fresh_ttl(store_path, clock):
    store = Store.open(store_path, clock=clock)
    store.lessor.promote()
    with store.write(1) as w:
        w.lease_grant(1, 10)
        w.put(PutRequest(b"k", lease=1))
    clock.advance(9)
    store.close()
    store = Store.open(store_path, clock=clock)
    try:
        assert store.lessor.leases() == [1] and not store.lessor.primary
        store.lessor.promote()
        clock.advance(9)
        assert store.lessor.expired() == []
        assert store.lessor.time_to_live(1, keys=True).keys == [b"k"]
    finally:
        store.close()
