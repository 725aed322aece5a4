"""The checker is critical code: it must pass good histories and fail bad ones
(stale read, lost update, duplicated apply, revision going back, ...)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.robustness import linearizability, model
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

_ids = itertools.count()


def op(client: int, kind: str, start: float, end: float | None, *, key: bytes = b"k",
       **fields) -> Operation:
    """An operation on one key; end=None makes it indeterminate."""
    return Operation(id=next(_ids), client=client, kind=kind, key=key, invoke_s=start,
                     return_s=math.inf if end is None else end,
                     status=UNKNOWN if end is None else OK, **fields)


def kv(value: bytes, mod: int, version: int = 1, create: int | None = None) -> KeyValue:
    return KeyValue(value, mod, version, mod if create is None else create)


def verdict(operations: list[Operation]) -> str:
    results = linearizability.check_history(operations, model.step, model.INITIAL, budget_s=10)
    assert all(r.verdict != linearizability.TIMED_OUT for r in results)
    if all(r.verdict == linearizability.LINEARIZABLE for r in results):
        return linearizability.LINEARIZABLE
    return linearizability.NOT_LINEARIZABLE


LIN, NOT = linearizability.LINEARIZABLE, linearizability.NOT_LINEARIZABLE


def test_sequential_put_then_get_is_linearizable():
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(2, GET, 2, 3, kv=kv(b"a", 2), revision=2)]) == LIN


def test_stale_read_after_an_acknowledged_put_is_rejected():
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(1, PUT, 2, 3, value=b"b", revision=3, prev_kv=kv(b"a", 2)),
                    op(2, GET, 4, 5, kv=kv(b"a", 2), revision=3)]) == NOT


def test_read_concurrent_with_a_put_may_see_either_value():
    put = op(1, PUT, 2, 6, value=b"b", revision=3, prev_kv=kv(b"a", 2))
    first = op(1, PUT, 0, 1, value=b"a", revision=2)
    assert verdict([first, put, op(2, GET, 3, 4, kv=kv(b"a", 2), revision=2)]) == LIN
    assert verdict([first, put, op(2, GET, 3, 4, kv=kv(b"b", 3, 2, 2), revision=3)]) == LIN


def test_read_that_goes_back_to_an_older_value_is_rejected():
    first = op(1, PUT, 0, 1, value=b"a", revision=2)
    put = op(1, PUT, 2, 9, value=b"b", revision=3, prev_kv=kv(b"a", 2))
    new = op(2, GET, 3, 4, kv=kv(b"b", 3, 2, 2), revision=3)
    old = op(3, GET, 5, 6, kv=kv(b"a", 2), revision=2)
    assert verdict([first, put, new, old]) == NOT


def test_lost_update_two_cas_on_the_same_mod_revision_both_succeed_is_rejected():
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(1, CAS, 2, 5, value=b"b", expected=2, succeeded=True, revision=3),
                    op(2, CAS, 3, 6, value=b"c", expected=2, succeeded=True, revision=4)]) == NOT


def test_one_of_two_concurrent_cas_failing_is_linearizable():
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(1, CAS, 2, 5, value=b"b", expected=2, succeeded=True, revision=3),
                    op(2, CAS, 3, 6, value=b"c", expected=2, succeeded=False, revision=3,
                       kv=kv(b"b", 3, 2, 2))]) == LIN


def test_lost_update_two_puts_that_saw_the_same_previous_value_is_rejected():
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(1, PUT, 2, 5, value=b"b", revision=3, prev_kv=kv(b"a", 2)),
                    op(2, PUT, 3, 6, value=b"c", revision=4, prev_kv=kv(b"a", 2))]) == NOT


def test_lost_acknowledged_write_is_rejected():
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(2, GET, 2, 3, kv=None, revision=2)]) == NOT


def test_write_applied_twice_shows_a_version_too_high_and_is_rejected():
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(2, GET, 2, 3, kv=kv(b"a", 3, 2, 2), revision=3)]) == NOT


def test_revision_going_back_between_a_read_and_a_later_write_is_rejected():
    assert verdict([op(1, GET, 0, 1, kv=None, revision=10),
                    op(2, PUT, 2, 3, value=b"a", revision=9)]) == NOT


def test_indeterminate_put_may_take_effect_or_not():
    lost = op(1, PUT, 0, None, value=b"a")
    assert verdict([lost, op(2, GET, 1, 2, kv=kv(b"a", 2), revision=2)]) == LIN
    assert verdict([lost, op(2, GET, 1, 2, kv=None, revision=1)]) == LIN


def test_indeterminate_put_seen_then_unseen_without_a_write_is_rejected():
    lost = op(1, PUT, 0, None, value=b"a")
    assert verdict([lost, op(2, GET, 1, 2, kv=kv(b"a", 2), revision=2),
                    op(2, GET, 3, 4, kv=None, revision=2)]) == NOT


def test_indeterminate_put_cannot_take_effect_before_it_was_sent():
    assert verdict([op(2, GET, 0, 1, kv=kv(b"a", 2), revision=2),
                    op(1, PUT, 2, None, value=b"a")]) == NOT


def test_delete_of_a_key_never_written_cannot_report_a_deletion():
    assert verdict([op(1, DELETE, 0, 1, deleted=1, prev_kv=None, revision=2)]) == NOT
    assert verdict([op(1, DELETE, 0, 1, deleted=0, revision=1)]) == LIN


def test_cas_create_on_a_missing_key_compares_mod_revision_zero():
    assert verdict([op(1, CAS, 0, 1, value=b"a", expected=0, succeeded=True, revision=2),
                    op(2, GET, 2, 3, kv=kv(b"a", 2), revision=2)]) == LIN
    assert verdict([op(1, PUT, 0, 1, value=b"a", revision=2),
                    op(1, CAS, 2, 3, value=b"b", expected=0, succeeded=True, revision=3)]) == NOT


def test_txn_get_sees_its_own_put():
    first = op(1, PUT, 0, 1, value=b"a", revision=2)
    assert verdict([first, op(2, TXN_GET, 2, 3, value=b"b", expected=b"a", succeeded=True,
                              revision=3, kv=kv(b"b", 3, 2, 2))]) == LIN
    assert verdict([first, op(2, TXN_GET, 2, 3, value=b"b", expected=b"a", succeeded=True,
                              revision=3, kv=kv(b"a", 2))]) == NOT
    assert verdict([first, op(2, TXN_GET, 2, 3, value=b"b", expected=b"a", succeeded=False,
                              revision=2, kv=kv(b"a", 2))]) == NOT


def test_keys_are_checked_separately():
    ops = [op(1, PUT, 0, 1, key=b"x", value=b"a", revision=2),
           op(2, GET, 2, 3, key=b"y", kv=None, revision=2),
           op(2, GET, 4, 5, key=b"x", kv=None, revision=2)]
    results = linearizability.check_history(ops, model.step, model.INITIAL)
    assert [(r.key, r.verdict) for r in results] == [(b"x", NOT), (b"y", LIN)]
    assert results[0].stuck is ops[2]


def test_a_long_history_runs_out_of_budget_as_unknown_not_as_a_pass():
    ops = [op(c, PUT, 0, None, value=b"v%d" % c) for c in range(40)]
    ops.append(op(99, GET, 1, 2, kv=None, revision=1))
    ops.append(op(99, GET, 3, 4, kv=kv(b"nothing", 2), revision=2))
    result, = linearizability.check_history(ops, model.step, model.INITIAL, budget_s=0.2)
    assert result.verdict == linearizability.TIMED_OUT


# A brute-force reference: try every order of every subset of the
# indeterminate operations together with all the returned ones.

def brute_force(operations: list[Operation]) -> bool:
    returned = [o for o in operations if o.status == OK]
    maybe = [o for o in operations if o.status == UNKNOWN]
    for count in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, count):
            for order in itertools.permutations(returned + list(chosen)):
                if _respects_real_time(order) and _replays(order):
                    return True
    return False


def _respects_real_time(order) -> bool:
    return all(not (later.return_s < earlier.invoke_s)
               for i, earlier in enumerate(order) for later in order[i + 1:])


def _replays(order) -> bool:
    state = model.INITIAL
    for item in order:
        state = model.step(state, item)
        if state is None:
            return False
    return True


_VALUES = [b"a", b"b", b"c", b"d", b"e", b"f"]


@st.composite
def tiny_histories(draw) -> list[Operation]:
    """Up to 5 operations on one key with plausible (often wrong) responses."""
    count = draw(st.integers(1, 5))
    ops = []
    for index in range(count):
        start = draw(st.integers(0, 8))
        end = draw(st.one_of(st.none(), st.integers(start + 1, start + 4)))
        kind = draw(st.sampled_from([GET, PUT, DELETE, CAS, TXN_GET]))
        maybe_kv = st.one_of(st.none(), st.builds(
            kv, st.sampled_from(_VALUES[:count]), st.integers(2, 4), st.integers(1, 2),
            st.integers(2, 3)))
        fields = {"revision": draw(st.integers(1, 5))}
        if kind in (PUT, CAS, TXN_GET):
            fields["value"] = _VALUES[index]
        if kind == GET:
            fields["kv"] = draw(maybe_kv)
        elif kind == PUT:
            fields["prev_kv"] = draw(maybe_kv)
        elif kind == DELETE:
            fields["deleted"] = draw(st.integers(0, 1))
            fields["prev_kv"] = draw(maybe_kv)
        elif kind == CAS:
            fields["expected"] = draw(st.integers(0, 3))
            fields["succeeded"] = draw(st.booleans())
            fields["kv"] = draw(maybe_kv)
        else:
            fields["expected"] = draw(st.sampled_from(_VALUES[:count]))
            fields["succeeded"] = draw(st.booleans())
            fields["kv"] = draw(maybe_kv)
        if end is None and kind == GET:
            end = start + 1  # an indeterminate read is dropped; keep the history meaningful
        ops.append(op(index, kind, float(start), None if end is None else float(end),
                      **fields))
    return ops


@settings(max_examples=400, deadline=None)
@given(tiny_histories())
def test_checker_agrees_with_brute_force_on_tiny_histories(history):
    assert (verdict(history) == LIN) == brute_force(history)


def test_indeterminate_put_patched_with_its_logged_revision_is_pinned_there():
    lost = op(1, PUT, 0, None, value=b"a", revision=5)  # patched: logged at revision 5
    read = op(2, GET, 1, 2, kv=None, revision=6)
    assert verdict([lost, read]) == LIN  # it may come after the read...
    later = op(2, GET, 3, 4, kv=kv(b"a", 5), revision=7)
    assert verdict([lost, read, later]) == NOT  # ...but not after a read at revision 6
