"""A linearizability checker in the WGL / porcupine style, partitioned per key.

Wing & Gong's search with Lowe's memoisation (the algorithm porcupine
implements): walk the history's call/return entries in time order; at a
call, try to linearize that operation now (the model must accept it, and the
pair (set of linearized operations, model state) must be new); at a return,
the operation returning was not linearized in time, so undo the last choice.

P-compositionality (Herlihy & Wing): a history is linearizable iff each
key's sub-history is, because every operation here touches one key.

Indeterminate operations have no return entry (their return is +infinity):
the search may linearize them anywhere after their call, or never, which is
"it did not take effect". The search succeeds once every operation that
returned is linearized.

The result is LINEARIZABLE, NOT_LINEARIZABLE (with the longest partial
linearization found and the operation that could not be placed) or UNKNOWN
when the time budget ran out; UNKNOWN is not a pass.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Hashable

from tests.robustness.history import FAIL, OK, UNKNOWN, Operation

LINEARIZABLE = "linearizable"
NOT_LINEARIZABLE = "not linearizable"
TIMED_OUT = "unknown (time budget exhausted)"

Step = Callable[[Hashable, Operation], "Hashable | None"]


@dataclasses.dataclass
class KeyResult:
    key: bytes
    verdict: str
    operations: list[Operation]
    # For NOT_LINEARIZABLE: the longest linearized prefix found, the model
    # state after it, and the operation whose return came before it could be placed.
    partial: list[Operation] = dataclasses.field(default_factory=list)
    state: Hashable = None
    stuck: Operation | None = None


class _Entry:
    __slots__ = ("index", "is_call", "match", "next", "op", "prev")

    def __init__(self, op: Operation | None, index: int, is_call: bool) -> None:
        self.op = op
        self.index = index
        self.is_call = is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _entries(operations: list[Operation]) -> _Entry:
    """The doubly linked list of entries in time order, behind a head sentinel.
    At equal times calls come first (the more permissive order)."""
    events = []
    for index, op in enumerate(operations):
        call = _Entry(op, index, True)
        events.append((op.invoke_s, 0, call))
        if op.status == OK:
            ret = _Entry(op, index, False)
            call.match = ret
            events.append((op.return_s, 1, ret))
    events.sort(key=lambda event: (event[0], event[1]))
    head = _Entry(None, -1, False)
    last = head
    for _, _, entry in events:
        last.next = entry
        entry.prev = last
        last = entry
    return head


def _lift(entry: _Entry) -> None:
    """Take a call and its return out of the list (the operation is linearized)."""
    for item in (entry, entry.match):
        if item is None:
            continue
        item.prev.next = item.next
        if item.next is not None:
            item.next.prev = item.prev


def _unlift(entry: _Entry) -> None:
    for item in (entry.match, entry):
        if item is None:
            continue
        item.prev.next = item
        if item.next is not None:
            item.next.prev = item


def check_operations(key: bytes, operations: list[Operation], step: Step, initial: Hashable,
                     deadline_s: float) -> KeyResult:
    """Check one key's operations. The caller passes only OK and UNKNOWN ones
    that the model can step (unknown reads dropped); `deadline_s` is on
    time.monotonic()."""
    head = _entries(operations)
    returned = sum(1 for op in operations if op.status == OK)
    linearized = 0              # bit i set: operations[i] is linearized
    state = initial
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[_Entry, Hashable]] = []
    best: tuple[list[Operation], Hashable, Operation | None] = ([], initial, None)
    best_depth = -1
    entry = head.next
    iterations = 0
    while returned:
        iterations += 1
        if iterations % 4096 == 0 and time.monotonic() > deadline_s:
            return KeyResult(key, TIMED_OUT, operations)
        assert entry is not None, "a return entry must stop the walk while any remain"
        if entry.is_call:
            after = step(state, entry.op)
            if after is not None:
                marked = linearized | (1 << entry.index)
                if (marked, after) not in seen:
                    seen.add((marked, after))
                    stack.append((entry, state))
                    state, linearized = after, marked
                    _lift(entry)
                    returned -= entry.match is not None
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # A return: its operation was not linearized before it returned.
        if len(stack) > best_depth:
            best_depth = len(stack)
            best = ([e.op for e, _ in stack], state, entry.op)
        if not stack:
            return KeyResult(key, NOT_LINEARIZABLE, operations, *best)
        entry, state = stack.pop()
        linearized &= ~(1 << entry.index)
        _unlift(entry)
        returned += entry.match is not None
        entry = entry.next
    return KeyResult(key, LINEARIZABLE, operations)


def check_history(operations: list[Operation], step: Step, initial: Hashable,
                  budget_s: float = 60.0) -> list[KeyResult]:
    """Check every key's sub-history; returns one result per key, keys sorted.

    Failed operations (definitely not applied) and indeterminate reads (they
    change nothing) are left out, as etcd's validator does.
    """
    by_key: dict[bytes, list[Operation]] = defaultdict(list)
    for op in operations:
        if op.status == FAIL or (op.status == UNKNOWN and not op.is_write):
            continue
        by_key[op.key].append(op)
    deadline = time.monotonic() + budget_s
    return [check_operations(key, by_key[key], step, initial, deadline)
            for key in sorted(by_key)]
