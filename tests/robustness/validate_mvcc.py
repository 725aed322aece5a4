"""Validators for compaction, reads at a revision and leases, against the
write log (`watcher.py`). Each returns a list of `Violation`s.

- `check_stale_reads`: a Range at revision r answered ok shows exactly the
  key's state at r in the write log; it is not below a compaction
  acknowledged before it was sent; "required revision has been compacted"
  needs a compaction above r that may have happened by then; "future
  revision" for a revision already returned is time travel.
- `check_compactions`: a compaction refused as already compacted needs an
  earlier one as high; none is refused as a future revision it has seen.
- `check_leases`: the keys of a revoked lease are deleted at the revoke's
  revision; keys deleted with no revoke were deleted by expiry, which needs
  the TTL to have elapsed; a revoked lease is never used or listed again; a
  granted lease that was not revoked is found (listed, usable) unless its
  TTL elapsed.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from tests.robustness.history import (
    COMPACT,
    DELETE,
    FAIL,
    LEASE_GRANT,
    LEASE_PUT,
    LEASE_REVOKE,
    OK,
    STALE_GET,
    UNKNOWN,
    KeyValue,
    Operation,
)
from tests.robustness.validate import LoggedWrite, Violation

COMPACTED = "required revision has been compacted"
FUTURE = "required revision is a future revision"
LEASE_NOT_FOUND = "requested lease not found"


class LogIndex:
    """Each key's state at any revision, replayed from the write log."""

    def __init__(self, log: list[LoggedWrite], gaps: list[tuple[int, int]]) -> None:
        self.first_gap = min((first for first, _ in gaps), default=None)
        self.revisions: dict[bytes, list[int]] = defaultdict(list)
        self.states: dict[bytes, list[KeyValue | None]] = defaultdict(list)
        for write in log:
            previous = self.states[write.key][-1] if self.states[write.key] else None
            if write.value is None:
                state = None
            elif previous is None:
                state = KeyValue(write.value, write.revision, 1, write.revision)
            else:
                state = KeyValue(write.value, write.revision, previous.version + 1,
                                 previous.create_revision)
            self.revisions[write.key].append(write.revision)
            self.states[write.key].append(state)

    def known(self, revision: int) -> bool:
        """A gap at or before `revision` hides events the state depends on."""
        return self.first_gap is None or revision < self.first_gap

    def state_at(self, key: bytes, revision: int) -> KeyValue | None:
        at = bisect.bisect_right(self.revisions[key], revision)
        return self.states[key][at - 1] if at else None


def _returned_before(operations: list[Operation]):
    """highest(t): the highest revision any ok response returned before time t."""
    returns = sorted((op.return_s, op.revision) for op in operations if op.status == OK)
    times = [t for t, _ in returns]
    highest, running = [], 0
    for _, revision in returns:
        running = max(running, revision)
        highest.append(running)

    def highest_before(t: float) -> int:
        at = bisect.bisect_left(times, t)
        return highest[at - 1] if at else 0
    return highest_before


def _compactions(operations: list[Operation]) -> list[Operation]:
    return [op for op in operations if op.kind == COMPACT and op.status in (OK, UNKNOWN)]


def check_stale_reads(operations: list[Operation], log: list[LoggedWrite],
                      gaps: list[tuple[int, int]]) -> list[Violation]:
    index = LogIndex(log, gaps)
    highest_before = _returned_before(operations)
    compactions = _compactions(operations)
    out = []
    for op in operations:
        if op.kind != STALE_GET:
            continue
        r = op.at_revision
        if op.status == OK:
            if index.known(r) and op.kv != index.state_at(op.key, r):
                out.append(Violation("stale read", f"read at revision {r} showed {op.kv}, the "
                                     f"write log has {index.state_at(op.key, r)} there", [op]))
            if op.revision < r:
                out.append(Violation("stale read", f"read at revision {r} answered with header "
                                     f"revision {op.revision}", [op]))
            above = [c for c in compactions if c.status == OK and c.return_s < op.invoke_s
                     and c.at_revision > r]
            if above:
                out.append(Violation("stale read", f"read at revision {r} answered ok after a "
                                     f"compaction to {above[0].at_revision} was acknowledged",
                                     [above[0], op]))
        elif op.status == FAIL:
            out += _judge_refusal(op, compactions, highest_before, "stale read")
    return out


def _judge_refusal(op: Operation, compactions: list[Operation], highest_before,
                   check: str) -> list[Violation]:
    """A definite failure of a read or compaction at `op.at_revision`."""
    r = op.at_revision
    if COMPACTED in op.error:
        # A compaction to c refuses reads below c and compactions to <= c.
        floor = r if op.kind == COMPACT else r + 1
        if not any(c is not op and c.at_revision >= floor and c.invoke_s < op.return_s
                   for c in compactions):
            return [Violation(check, f"revision {r} refused as compacted, but no compaction "
                              f"to >= {floor} was sent before", [op])]
        return []
    if FUTURE in op.error:
        seen = highest_before(op.invoke_s)
        if r <= seen:
            return [Violation(check, f"revision {r} refused as a future revision after "
                              f"revision {seen} was returned: revisions went back", [op])]
        return []
    return [Violation(check, f"unexpected failure: {op.error}", [op])]


def check_compactions(operations: list[Operation]) -> list[Violation]:
    highest_before = _returned_before(operations)
    compactions = _compactions(operations)
    out = []
    for op in operations:
        if op.kind != COMPACT:
            continue
        if op.status == FAIL:
            out += _judge_refusal(op, compactions, highest_before, "compaction")
        elif op.status == OK and op.revision < op.at_revision:
            out.append(Violation("compaction", f"compaction to {op.at_revision} answered with "
                                 f"header revision {op.revision}", [op]))
    return out


class _Leases:
    """The lease operations of a history, by lease ID."""

    def __init__(self, operations: list[Operation]) -> None:
        self.grants: dict[int, Operation] = {}
        self.revokes: dict[int, list[Operation]] = defaultdict(list)
        self.puts: dict[int, list[Operation]] = defaultdict(list)
        for op in operations:
            if op.kind == LEASE_GRANT and op.status != FAIL:
                self.grants[op.lease] = op
            elif op.kind == LEASE_REVOKE:
                self.revokes[op.lease].append(op)
            elif op.kind == LEASE_PUT:
                self.puts[op.lease].append(op)

    def may_have_expired(self, lease: int, t: float) -> bool:
        grant = self.grants.get(lease)
        return grant is not None and t >= grant.invoke_s + grant.ttl

    def revoke_sent_before(self, lease: int, t: float, other_than: Operation | None = None) -> bool:
        return any(op is not other_than and op.invoke_s < t for op in self.revokes[lease])

    def acked_revoke(self, lease: int) -> Operation | None:
        return next((op for op in self.revokes[lease] if op.status == OK), None)

    def may_be_gone(self, lease: int, t: float, other_than: Operation | None = None) -> bool:
        """Could the lease be missing at time t without anything going wrong?"""
        grant = self.grants.get(lease)
        return (grant is None or grant.status != OK or self.may_have_expired(lease, t)
                or self.revoke_sent_before(lease, t, other_than))


def _revision_upper_times(operations: list[Operation]):
    """existed_by(r): a time by which revision r certainly existed (the first
    return of an ok response with a revision >= r), +inf if none."""
    returns = sorted((op.revision, op.return_s) for op in operations if op.status == OK)
    revisions = [r for r, _ in returns]
    suffix_min, best = [0.0] * len(returns), float("inf")
    for i in range(len(returns) - 1, -1, -1):
        best = min(best, returns[i][1])
        suffix_min[i] = best

    def existed_by(r: int) -> float:
        at = bisect.bisect_left(revisions, r)
        return suffix_min[at] if at < len(returns) else float("inf")
    return existed_by


def check_leases(operations: list[Operation], log: list[LoggedWrite],
                 listed_leases: set[int] | None, listed_s: float) -> list[Violation]:
    """`listed_leases` is LeaseLeases' answer at `listed_s` (None: not taken)."""
    leases = _Leases(operations)
    existed_by = _revision_upper_times(operations)
    acked_deletes = {op.revision for op in operations if op.kind == DELETE and op.wrote()}
    out = []
    attached: dict[bytes, int] = {}         # key -> lease of its current put
    deleted_at: dict[int, dict[bytes, int]] = defaultdict(dict)  # lease -> key -> revision
    for write in log:
        lease = attached.pop(write.key, 0)
        if write.value is not None:
            if write.lease:
                attached[write.key] = write.lease
                revoke = leases.acked_revoke(write.lease)
                if revoke is not None and revoke.revision < write.revision:
                    out.append(Violation("leases", f"{write} attached to lease {write.lease} "
                                         f"after its revoke at revision {revoke.revision}",
                                         [revoke]))
            continue
        if not lease or write.revision in acked_deletes:
            continue
        deleted_at[lease][write.key] = write.revision
        revoke = leases.acked_revoke(lease)
        if revoke is not None and revoke.revision != write.revision:
            out.append(Violation("leases", f"{write}: a key of lease {lease} deleted at "
                                 f"revision {write.revision}, its revoke answered at "
                                 f"{revoke.revision}", [revoke]))
        elif revoke is None and not leases.revokes[lease] \
                and not leases.may_have_expired(lease, existed_by(write.revision)):
            out.append(Violation("leases", f"{write}: a key of lease {lease} deleted with no "
                                 "revoke before the lease's TTL elapsed",
                                 [leases.grants[lease]] if lease in leases.grants else []))
    # Every key still attached when an acknowledged revoke ran is deleted at its revision.
    for lease, revokes in leases.revokes.items():
        revoke = leases.acked_revoke(lease)
        if revoke is None:
            continue
        for key, revision in _attached_at(log, lease, revoke.revision).items():
            if deleted_at[lease].get(key) != revoke.revision:
                out.append(Violation("leases", f"key {key!r} (lease {lease} since revision "
                                     f"{revision}) is not deleted at the revoke's revision "
                                     f"{revoke.revision}", [revoke]))
        for put in leases.puts[lease]:
            if put.status == OK and put.invoke_s > revoke.return_s:
                out.append(Violation("leases", f"a put with lease {lease} succeeded after "
                                     "the lease was revoked", [revoke, put]))
    for lease, ops in list(leases.puts.items()) + list(leases.revokes.items()):
        for op in ops:
            if op.status == FAIL and LEASE_NOT_FOUND in op.error:
                if not leases.may_be_gone(lease, op.return_s, other_than=op):
                    out.append(Violation("leases", f"lease {lease} not found, though granted, "
                                         "not revoked and within its TTL",
                                         [leases.grants[lease], op]))
            elif op.status == FAIL:
                out.append(Violation("leases", f"unexpected failure: {op.error}", [op]))
    if listed_leases is not None:
        out += _check_listed(leases, listed_leases, listed_s)
    return out


def _attached_at(log: list[LoggedWrite], lease: int, revision: int) -> dict[bytes, int]:
    """The keys attached to `lease` when a revoke answered at `revision` ran
    (key -> put revision). A revoke that deleted nothing did not create
    `revision`, so a put at `revision` came before it; deletes at it are its own."""
    attached: dict[bytes, int] = {}
    for write in log:
        if write.revision > revision:
            break
        if write.revision == revision and write.value is None:
            continue
        if write.value is not None and write.lease == lease:
            attached[write.key] = write.revision
        else:
            attached.pop(write.key, None)
    return attached


def _check_listed(leases: _Leases, listed: set[int], listed_s: float) -> list[Violation]:
    out = []
    for lease, grant in leases.grants.items():
        revoke = leases.acked_revoke(lease)
        if revoke is not None and revoke.return_s < listed_s and lease in listed:
            out.append(Violation("leases", f"lease {lease} was revoked and is listed again: "
                                 "resurrected", [revoke]))
        elif lease not in listed and not leases.may_be_gone(lease, listed_s):
            out.append(Violation("leases", f"lease {lease} was granted, never revoked and its "
                                 f"TTL {grant.ttl}s has not elapsed, but it is not listed",
                                 [grant]))
    return out
