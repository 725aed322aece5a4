"""etcd's KV model for one key, for the linearizability search.

The state of a key is what a Range of it would return, plus `floor`: the
highest revision of any operation on this key linearized so far. Revisions
order everything in etcd, so an operation linearized later on the same key
must not show a lower revision (a read's header revision is >= floor; a write
creates a revision > floor). This makes the per-key check see revisions going
backwards, not only values.

An unknown (indeterminate) write that took effect has an unknown revision:
`mod_revision` / `create_revision` are then None until a read shows them.
Every written value is unique, so a read tells which write it saw.
"""

from __future__ import annotations

from typing import NamedTuple

from tests.robustness.history import (
    CAS,
    DELETE,
    GET,
    OK,
    PUT,
    TXN_GET,
    UNKNOWN,
    KeyValue,
    Operation,
)


class KeyState(NamedTuple):
    value: bytes | None          # None: the key does not exist
    mod_revision: int | None     # 0 when absent; None when unknown
    version: int                 # puts since creation (exact: every write is in the history)
    create_revision: int | None  # 0 when absent; None when unknown
    floor: int                   # highest revision linearized on this key


INITIAL = KeyState(None, 0, 0, 0, 0)


def _observe(state: KeyState, kv: KeyValue | None) -> KeyState | None:
    """The state refined by a read that showed `kv`, or None if it cannot have."""
    if kv is None:
        return state if state.value is None else None
    if state.value != kv.value or state.version != kv.version:
        return None
    if state.mod_revision is not None and state.mod_revision != kv.mod_revision:
        return None
    if state.create_revision is not None and state.create_revision != kv.create_revision:
        return None
    return state._replace(mod_revision=kv.mod_revision, create_revision=kv.create_revision)


def _read_at(state: KeyState, revision: int) -> KeyState | None:
    """A response header revision seen at this point: never below the floor."""
    if revision < state.floor:
        return None
    if state.mod_revision is not None and state.mod_revision > revision:
        return None
    return state._replace(floor=revision)


def _put(state: KeyState, value: bytes, revision: int | None) -> KeyState | None:
    if revision is not None and revision <= state.floor:
        return None
    created = state.value is None
    return KeyState(
        value=value,
        mod_revision=revision,
        version=1 if created else state.version + 1,
        create_revision=revision if created else state.create_revision,
        floor=state.floor if revision is None else revision,
    )


def _delete(state: KeyState, revision: int | None) -> KeyState | None:
    if state.value is None or (revision is not None and revision <= state.floor):
        return None
    return INITIAL._replace(floor=state.floor if revision is None else revision)


def _mod_revision_may_be(state: KeyState, expected: int) -> bool:
    current = _current_mod_revision(state)
    return current is None or current == expected


def _current_mod_revision(state: KeyState) -> int | None:
    """What etcd compares: a missing key's mod_revision is 0."""
    return 0 if state.value is None else state.mod_revision


def step(state: KeyState, op: Operation) -> KeyState | None:
    """The state after `op` if it can take effect now (given what it returned), else None.

    The caller must pass only OK operations and UNKNOWN writes (an unknown read
    shows nothing). An UNKNOWN write is stepped as if it took effect; the
    search models "it did not" by never linearizing it.
    """
    if op.status == UNKNOWN:
        return _step_unknown(state, op)
    assert op.status == OK, op.describe()
    revision = op.revision
    assert revision is not None, op.describe()
    if op.kind == GET:
        seen = _observe(state, op.kv)
        return seen and _read_at(seen, revision)
    if op.kind == PUT:
        seen = _observe(state, op.prev_kv)
        return seen and _put(seen, op.value, revision)
    if op.kind == DELETE:
        if not op.deleted:
            return _read_at(state, revision) if state.value is None else None
        seen = _observe(state, op.prev_kv)
        return seen and _delete(seen, revision)
    if op.kind == CAS:
        if op.succeeded:
            if not _mod_revision_may_be(state, op.expected):
                return None
            return _put(state, op.value, revision)
        # The failure branch's range shows the current state, so the compare
        # can be checked exactly against it.
        seen = _observe(state, op.kv)
        if seen is None or _current_mod_revision(seen) == op.expected:
            return None
        return _read_at(seen, revision)
    if op.kind == TXN_GET:
        if op.succeeded:
            if state.value != op.expected:
                return None
            written = _put(state, op.value, revision)
            return written and _observe(written, op.kv)
        if state.value is not None and state.value == op.expected:
            return None
        seen = _observe(state, op.kv)
        return seen and _read_at(seen, revision)
    raise ValueError(f"unknown operation kind {op.kind!r}")


def _step_unknown(state: KeyState, op: Operation) -> KeyState | None:
    """An indeterminate write that took effect, at an unknown revision unless
    the history was patched with the one it was logged at (`op.revision`)."""
    if op.kind == PUT:
        return _put(state, op.value, op.revision)
    if op.kind == DELETE:
        return _delete(state, None)
    if op.kind == CAS:
        if not _mod_revision_may_be(state, op.expected):
            return None
        return _put(state, op.value, op.revision)
    if op.kind == TXN_GET:
        return _put(state, op.value, op.revision) if state.value == op.expected else None
    raise AssertionError(f"unknown {op.kind} must not be stepped: {op.describe()}")
