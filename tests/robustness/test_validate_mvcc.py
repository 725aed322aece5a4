"""The compaction, stale-read and lease validators: each passes a good
history and fails the bad one it exists for."""

from __future__ import annotations

from tests.robustness import validate, validate_mvcc
from tests.robustness.history import (
    COMPACT,
    FAIL,
    LEASE_GRANT,
    LEASE_PUT,
    LEASE_REVOKE,
    PUT,
    STALE_GET,
)
from tests.robustness.test_linearizability import kv, op
from tests.robustness.validate import LoggedWrite

COMPACTED = "OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted"
FUTURE = "OUT_OF_RANGE: etcdserver: mvcc: required revision is a future revision"
NOT_FOUND = "NOT_FOUND: etcdserver: requested lease not found"
LOG = [LoggedWrite(2, b"k", b"a"), LoggedWrite(3, b"k", b"b"), LoggedWrite(4, b"k", None),
       LoggedWrite(5, b"k", b"c")]


def refused(client: int, kind: str, start: float, end: float, error: str, **fields):
    failed = op(client, kind, start, end, **fields)
    failed.status, failed.error = FAIL, error
    return failed


def test_read_at_a_revision_shows_the_write_log_state_there():
    reads = [op(1, STALE_GET, 0, 1, at_revision=1, kv=None, revision=5),
             op(1, STALE_GET, 2, 3, at_revision=3, kv=kv(b"b", 3, 2, 2), revision=5),
             op(1, STALE_GET, 4, 5, at_revision=4, kv=None, revision=5),
             op(1, STALE_GET, 6, 7, at_revision=5, kv=kv(b"c", 5, 1, 5), revision=5)]
    assert validate_mvcc.check_stale_reads(reads, LOG, []) == []


def test_read_at_a_revision_showing_another_revision_is_caught():
    wrong = [op(1, STALE_GET, 0, 1, at_revision=3, kv=kv(b"a", 2), revision=5)]
    assert "write log has" in str(validate_mvcc.check_stale_reads(wrong, LOG, [])[0])
    # A gap in the write log hides the state: nothing to judge.
    assert validate_mvcc.check_stale_reads(wrong, LOG, [(3, 3)]) == []


def test_read_below_an_acknowledged_compaction_must_be_refused():
    compact = op(0, COMPACT, 0, 1, key=b"", at_revision=4, physical=False, revision=5)
    below = op(1, STALE_GET, 2, 3, at_revision=3, kv=kv(b"b", 3, 2, 2), revision=5)
    at = op(1, STALE_GET, 4, 5, at_revision=4, kv=None, revision=5)
    violations = validate_mvcc.check_stale_reads([compact, below, at], LOG, [])
    assert [v.operations for v in violations] == [[compact, below]]
    # Concurrent with the compaction, the read may still be answered.
    overlapping = op(1, STALE_GET, 0.5, 3, at_revision=3, kv=kv(b"b", 3, 2, 2), revision=5)
    assert validate_mvcc.check_stale_reads([compact, overlapping], LOG, []) == []


def test_compacted_refusal_needs_a_compaction_above_the_revision():
    compact = op(0, COMPACT, 0, None, key=b"", at_revision=4, physical=True)  # indeterminate
    justified = refused(1, STALE_GET, 2, 3, COMPACTED, at_revision=3)
    assert validate_mvcc.check_stale_reads([compact, justified], LOG, []) == []
    spurious = refused(1, STALE_GET, 2, 3, COMPACTED, at_revision=4)
    assert "no compaction to >= 5" in str(
        validate_mvcc.check_stale_reads([compact, spurious], LOG, [])[0])


def test_future_revision_refusal_of_a_revision_already_returned_is_time_travel():
    put = op(1, PUT, 0, 1, value=b"c", revision=5)
    read = refused(2, STALE_GET, 2, 3, FUTURE, at_revision=5)
    assert "went back" in str(validate_mvcc.check_stale_reads([put, read], LOG, [])[0])
    compact = refused(0, COMPACT, 2, 3, FUTURE, key=b"", at_revision=4)
    assert "went back" in str(validate_mvcc.check_compactions([put, compact])[0])


def test_compaction_refused_as_compacted_needs_an_earlier_one_as_high():
    first = op(0, COMPACT, 0, 1, key=b"", at_revision=4, revision=5)
    again = refused(0, COMPACT, 2, 3, COMPACTED, key=b"", at_revision=4)
    assert validate_mvcc.check_compactions([first, again]) == []
    higher = refused(0, COMPACT, 2, 3, COMPACTED, key=b"", at_revision=5)
    assert validate_mvcc.check_compactions([first, higher])


def _leased_history(revoke_revision: int = 4):
    grant = op(1, LEASE_GRANT, 0, 1, key=b"", lease=7, ttl=60, revision=1)
    puts = [op(1, LEASE_PUT, 1, 2, key=b"x", lease=7, value=b"a", revision=2),
            op(1, LEASE_PUT, 2, 3, key=b"y", lease=7, value=b"b", revision=3)]
    revoke = op(1, LEASE_REVOKE, 3, 4, key=b"", lease=7, revision=revoke_revision)
    log = [LoggedWrite(2, b"x", b"a", 7), LoggedWrite(3, b"y", b"b", 7),
           LoggedWrite(4, b"x", None), LoggedWrite(4, b"y", None)]
    return [grant, *puts, revoke], log


def test_revoke_deletes_the_lease_keys_at_its_revision():
    ops, log = _leased_history()
    assert validate_mvcc.check_leases(ops, log, set(), 5) == []
    # Both deletes share revision 4: the write log check accepts that for a lease.
    assert validate.check_write_log(ops, log, 1, 4) == []


def test_revoked_lease_keys_left_or_deleted_elsewhere_are_caught():
    ops, log = _leased_history()
    kept = log[:3]  # y survives the revoke
    assert any("not deleted at the revoke's revision 4" in str(v)
               for v in validate_mvcc.check_leases(ops, kept, set(), 5))
    ops, _ = _leased_history(revoke_revision=5)
    assert any("its revoke answered at 5" in str(v)
               for v in validate_mvcc.check_leases(ops, log, set(), 5))


def test_lease_keys_deleted_without_a_revoke_before_the_ttl_are_caught():
    ops, log = _leased_history()
    # Revision 4 is known to exist at t=3, when a response showed it.
    no_revoke = ops[:3] + [op(2, PUT, 2.5, 3, key=b"z", value=b"z", revision=4)]
    assert any("no revoke before the lease's TTL" in str(v)
               for v in validate_mvcc.check_leases(no_revoke, log, None, 5))
    no_revoke[0].ttl = 2  # the TTL elapsed by t=2: expiry explains the deletes
    assert validate_mvcc.check_leases(no_revoke, log, None, 5) == []


def test_key_taken_by_another_lease_at_the_revoke_revision_stays():
    """A revoke that deletes nothing answers the current revision, which may
    be a put that moved the lease's last key to another lease."""
    grant = op(1, LEASE_GRANT, 0, 1, key=b"", lease=7, ttl=60, revision=1)
    puts = [op(1, LEASE_PUT, 1, 2, key=b"x", lease=7, value=b"a", revision=2),
            op(2, LEASE_PUT, 2, 3, key=b"x", lease=8, value=b"b", revision=3)]
    revoke = op(1, LEASE_REVOKE, 3, 4, key=b"", lease=7, revision=3)
    log = [LoggedWrite(2, b"x", b"a", 7), LoggedWrite(3, b"x", b"b", 8)]
    assert validate_mvcc.check_leases([grant, *puts, revoke], log, None, 5) == []


def test_revoked_lease_listed_again_is_resurrected():
    ops, log = _leased_history()
    assert any("resurrected" in str(v) for v in validate_mvcc.check_leases(ops, log, {7}, 5))


def test_put_with_a_revoked_lease_that_succeeds_is_caught():
    ops, log = _leased_history()
    late = op(2, LEASE_PUT, 5, 6, key=b"z", lease=7, value=b"z", revision=5)
    violations = validate_mvcc.check_leases(ops + [late], log + [LoggedWrite(5, b"z", b"z", 7)],
                                            set(), 7)
    assert any("after its revoke" in str(v) for v in violations)
    assert any("succeeded after the lease was revoked" in str(v) for v in violations)


def test_granted_lease_not_revoked_must_still_exist_until_its_ttl():
    grant = op(1, LEASE_GRANT, 0, 1, key=b"", lease=7, ttl=60, revision=1)
    assert any("not listed" in str(v) for v in validate_mvcc.check_leases([grant], [], set(), 5))
    assert validate_mvcc.check_leases([grant], [], {7}, 5) == []
    assert validate_mvcc.check_leases([grant], [], set(), 61) == []  # expired
    lost = refused(1, LEASE_PUT, 2, 3, NOT_FOUND, key=b"x", lease=7, value=b"a")
    assert any("not found, though granted" in str(v)
               for v in validate_mvcc.check_leases([grant, lost], [], None, 5))
