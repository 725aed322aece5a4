"""Validators of a recorded history, for etcd's model; each returns a list of
`Violation`s (empty when the history passes).

- `check_clients`: the assumptions (one request at a time per client).
- `check_revisions`: no time travel of header revisions, write revisions
  unique and increasing in real-time order, the final revision covers every
  acknowledged write.
- `check_linearizable`: per-key linearizability (`linearizability.py`).
- `check_final_state`: the final read agrees with the last acknowledged write
  to each key (or a later indeterminate one).
- `check_write_log`: the write log (a watch from revision 1, resumed across
  restarts: the store's complete write log) agrees with the history: no acknowledged write lost or moved, none
  applied twice, no revision skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict

from tests.robustness import linearizability, model
from tests.robustness.history import DELETE, OK, UNKNOWN, KeyValue, Operation


@dataclasses.dataclass
class Violation:
    check: str
    message: str
    operations: list[Operation] = dataclasses.field(default_factory=list)  # the ones to show

    def __str__(self) -> str:
        return f"[{self.check}] {self.message}"


def check_clients(operations: list[Operation]) -> list[Violation]:
    """Each client sends one request at a time (it abandons an indeterminate one)."""
    by_client: dict[int, list[Operation]] = defaultdict(list)
    for op in operations:
        by_client[op.client].append(op)
    out = []
    for client, ops in by_client.items():
        ops.sort(key=lambda op: op.invoke_s)
        for before, after in itertools.pairwise(ops):
            if before.status != UNKNOWN and after.invoke_s <= before.return_s:
                out.append(Violation("clients", f"client {client} had two requests at once",
                                     [before, after]))
    return out


def check_revisions(operations: list[Operation], final_revision: int) -> list[Violation]:
    """Header revisions against real time: an ok response's revision is >= every
    revision returned before its invoke, and a write's is > it; write
    revisions are unique; the final revision is >= every write's."""
    out = []
    oks = [op for op in operations if op.status == OK]
    # Sweep in time: returns (with their revisions) before invokes at equal times
    # would be too strict, so invokes come first.
    events = sorted([(op.invoke_s, 0, op) for op in oks] + [(op.return_s, 1, op) for op in oks],
                    key=lambda event: (event[0], event[1]))
    highest: Operation | None = None
    for _, is_return, op in events:
        if is_return:
            if highest is None or op.revision > highest.revision:
                highest = op
            continue
        if highest is None:
            continue
        if op.revision < highest.revision:
            out.append(Violation("revisions", f"revision went back: {op.revision} after "
                                 f"{highest.revision} was returned", [highest, op]))
        elif op.wrote() and op.revision == highest.revision:
            out.append(Violation("revisions", f"a write got revision {op.revision}, which was "
                                 "returned before it was sent", [highest, op]))
    by_revision: dict[int, Operation] = {}
    for op in oks:
        if not op.wrote():
            continue
        if op.revision in by_revision:
            out.append(Violation("revisions", f"two writes got revision {op.revision}",
                                 [by_revision[op.revision], op]))
        by_revision[op.revision] = op
        if op.revision > final_revision:
            out.append(Violation("revisions", f"write revision {op.revision} is above the final "
                                 f"revision {final_revision}: lost in a crash", [op]))
    return out


def check_linearizable(operations: list[Operation], budget_s: float = 60.0) -> list[Violation]:
    out = []
    for result in linearizability.check_history(operations, model.step, model.INITIAL,
                                                budget_s):
        key = result.key.decode(errors="replace")
        if result.verdict == linearizability.LINEARIZABLE:
            continue
        if result.verdict == linearizability.TIMED_OUT:
            out.append(Violation("linearizability", f"key {key}: {result.verdict} after "
                                 f"{len(result.operations)} operations"))
            continue
        shown = result.partial[-6:] + ([result.stuck] if result.stuck else [])
        out.append(Violation(
            "linearizability",
            f"key {key}: {result.verdict}; the longest linearization found places "
            f"{len(result.partial)} of {len(result.operations)} operations, ending in state "
            f"{result.state}; {result.stuck.describe() if result.stuck else '?'} cannot follow",
            shown))
    return out


def check_final_state(operations: list[Operation], final: dict[bytes, KeyValue],
                      keys: list[bytes]) -> list[Violation]:
    """Each key's final state is the effect of its last acknowledged write
    (highest revision) or of an indeterminate write that may have come later."""
    out = []
    for key in keys:
        ops = [op for op in operations if op.key == key]
        acked = [op for op in ops if op.wrote()]
        last = max(acked, key=lambda op: op.revision, default=None)
        floor = last.revision if last else 0
        found = final.get(key)
        name = key.decode(errors="replace")
        if found is None:
            deleted_last = last is None or last.kind == DELETE
            maybe_deleted = any(op.kind == DELETE and op.status == UNKNOWN for op in ops)
            if not (deleted_last or maybe_deleted):
                out.append(Violation("final state", f"key {name} is missing, but its last "
                                     f"acknowledged write put {last.value!r}", [last]))
            continue
        writer = next((op for op in ops if op.value == found.value and op.may_have_written()),
                      None)
        if writer is None:
            out.append(Violation("final state", f"key {name} holds {found}, which no write "
                                 "of the history wrote", [last] if last else []))
        elif found.mod_revision < floor:
            out.append(Violation("final state", f"key {name} holds {found}, older than its last "
                                 f"acknowledged write at revision {floor}", [last, writer]))
        elif writer.wrote() and writer.revision != found.mod_revision:
            out.append(Violation("final state", f"key {name} holds {found}, but that write was "
                                 f"acknowledged at revision {writer.revision}", [writer]))
    return out


@dataclasses.dataclass(frozen=True)
class LoggedWrite:
    """One event of the store's write log (`watcher.py`)."""

    revision: int
    key: bytes
    value: bytes | None  # None: a delete
    lease: int = 0       # a put's lease (0: none)


def check_write_log(operations: list[Operation], log: list[LoggedWrite], first_revision: int,
                    final_revision: int) -> list[Violation]:
    """The write log holds every revision in (first_revision, final_revision]
    once; each acknowledged write is in it at its revision; each logged write
    is one of the history's writes (ok or indeterminate), applied once."""
    out = []
    # A lease's revoke or expiry deletes all its keys at one revision; no
    # other revision may hold two events.
    leased = _lease_deletes(log)
    revisions = [write.revision for i, write in enumerate(log)
                 if not (write in leased and i and log[i - 1].revision == write.revision)]
    expected = list(range(first_revision + 1, final_revision + 1))
    if revisions != expected:
        missing = sorted(set(expected) - set(revisions))
        extra = sorted(r for r in set(revisions) if r not in set(expected))
        repeated = sorted({r for r in revisions if revisions.count(r) > 1})
        out.append(Violation("write log", f"revisions not one per write from {first_revision + 1} "
                             f"to {final_revision}: missing {missing[:10]}, unexpected "
                             f"{extra[:10]}, repeated {repeated[:10]}"))
    at = {write.revision: write for write in log}
    for op in operations:
        if not op.wrote():
            continue
        write = at.get(op.revision)
        value = None if op.kind == DELETE else op.value
        if write is None or write.key != op.key or write.value != value:
            out.append(Violation("write log", f"acknowledged write at revision {op.revision} "
                                 f"is logged as {write}", [op]))
    puts: dict[bytes, Operation] = {op.value: op for op in operations
                                     if op.value is not None and op.may_have_written()}
    applied: dict[bytes, LoggedWrite] = {}
    acked_deletes = {op.revision for op in operations if op.kind == DELETE and op.wrote()}
    unknown_deletes: dict[bytes, int] = defaultdict(int)
    for op in operations:
        if op.kind == DELETE and op.status == UNKNOWN:
            unknown_deletes[op.key] += 1
    for write in log:
        if write in leased:
            continue  # judged by validate_mvcc.check_leases
        if write.value is None:
            if write.revision in acked_deletes:
                continue
            unknown_deletes[write.key] -= 1
            if unknown_deletes[write.key] < 0:
                out.append(Violation("write log", f"{write} was requested by no delete of "
                                     "the history"))
            continue
        op = puts.get(write.value)
        if op is None or op.key != write.key:
            out.append(Violation("write log", f"{write} was written by no request of the history"))
        elif write.value in applied:
            out.append(Violation("write log", f"{op.describe()} was applied twice: at revisions "
                                 f"{applied[write.value].revision} and {write.revision}", [op]))
        else:
            applied[write.value] = write
    return out


def _lease_deletes(log: list[LoggedWrite]) -> set[LoggedWrite]:
    """The deletes of keys that were attached to a lease (a revoke's or an expiry's)."""
    attached: set[bytes] = set()
    out = set()
    for write in log:
        if write.value is None and write.key in attached:
            out.add(write)
        attached.discard(write.key)
        if write.value is not None and write.lease:
            attached.add(write.key)
    return out


def patch_history(operations: list[Operation], log: list[LoggedWrite]) -> list[Operation]:
    """What etcd's patch_history does with the WAL, done with the write log:
    an indeterminate put / cas / txn_get whose (unique) value is not in the
    log never took effect and is left out; one that is took effect at the
    logged revision, which pins it in the search. Indeterminate deletes stay
    as they are (a delete carries no value to find). The recorded operations
    are not changed; patched ones are copies."""
    logged = {write.value: write.revision for write in log if write.value is not None}
    out = []
    for op in operations:
        if op.status == UNKNOWN and op.is_write and op.value is not None:
            revision = logged.get(op.value)
            if revision is None:
                continue
            op = dataclasses.replace(op, revision=revision)
        out.append(op)
    return out


def indeterminate_count(operations: list[Operation]) -> int:
    return sum(1 for op in operations if math.isinf(op.return_s))
