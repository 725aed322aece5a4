"""The validators besides linearizability: each passes a good history and
fails the bad one it exists for."""

from __future__ import annotations

from tests.robustness import validate
from tests.robustness.history import DELETE, GET, PUT
from tests.robustness.test_linearizability import kv, op
from tests.robustness.validate import LoggedWrite


def test_revisions_pass_when_they_follow_real_time():
    ops = [op(1, PUT, 0, 1, value=b"a", revision=2), op(2, GET, 2, 3, kv=kv(b"a", 2), revision=2),
           op(1, PUT, 4, 5, key=b"j", value=b"b", revision=3)]
    assert validate.check_revisions(ops, final_revision=3) == []


def test_revision_going_back_on_another_key_is_caught():
    ops = [op(1, PUT, 0, 1, key=b"x", value=b"a", revision=5),
           op(2, GET, 2, 3, key=b"y", kv=None, revision=4)]
    violations = validate.check_revisions(ops, final_revision=5)
    assert [v.operations for v in violations] == [[ops[0], ops[1]]]


def test_write_reusing_a_revision_already_returned_is_caught():
    ops = [op(1, GET, 0, 1, key=b"x", kv=None, revision=5),
           op(2, PUT, 2, 3, key=b"y", value=b"a", revision=5)]
    assert validate.check_revisions(ops, final_revision=5)


def test_two_writes_with_one_revision_are_caught():
    ops = [op(1, PUT, 0, 3, key=b"x", value=b"a", revision=2),
           op(2, PUT, 1, 2, key=b"y", value=b"b", revision=2)]
    assert "two writes" in str(validate.check_revisions(ops, final_revision=2)[0])


def test_acknowledged_write_above_the_final_revision_was_lost():
    ops = [op(1, PUT, 0, 1, value=b"a", revision=7)]
    assert "lost" in str(validate.check_revisions(ops, final_revision=6)[0])


def test_final_state_is_the_last_acknowledged_write_or_a_later_indeterminate_one():
    ops = [op(1, PUT, 0, 1, value=b"a", revision=2), op(1, PUT, 2, 3, value=b"b", revision=3),
           op(2, PUT, 4, None, value=b"c")]
    assert validate.check_final_state(ops, {b"k": kv(b"b", 3, 2, 2)}, [b"k"]) == []
    assert validate.check_final_state(ops, {b"k": kv(b"c", 9, 3, 2)}, [b"k"]) == []
    assert validate.check_final_state(ops, {b"k": kv(b"a", 2)}, [b"k"])
    assert validate.check_final_state(ops, {}, [b"k"])
    assert validate.check_final_state(ops, {b"k": kv(b"b", 4, 2, 2)}, [b"k"])


def test_final_state_may_be_missing_after_an_acknowledged_or_indeterminate_delete():
    put = op(1, PUT, 0, 1, value=b"a", revision=2)
    assert validate.check_final_state([put, op(1, DELETE, 2, 3, deleted=1, revision=3)], {},
                                      [b"k"]) == []
    assert validate.check_final_state([put, op(1, DELETE, 2, None)], {}, [b"k"]) == []


def test_write_log_matches_acknowledged_and_indeterminate_writes():
    ops = [op(1, PUT, 0, 1, value=b"a", revision=2), op(2, PUT, 0, None, value=b"b"),
           op(1, DELETE, 2, 3, deleted=1, revision=4)]
    log = [LoggedWrite(2, b"k", b"a"), LoggedWrite(3, b"k", b"b"), LoggedWrite(4, b"k", None)]
    assert validate.check_write_log(ops, log, 1, 4) == []


def test_write_log_catches_a_lost_a_duplicated_and_a_skipped_write():
    ops = [op(1, PUT, 0, 1, value=b"a", revision=2), op(1, PUT, 2, 3, value=b"b", revision=3)]
    lost = [LoggedWrite(2, b"k", b"a")]
    assert any("acknowledged write at revision 3" in str(v)
               for v in validate.check_write_log(ops, lost, 1, 3))
    twice = [LoggedWrite(2, b"k", b"a"), LoggedWrite(3, b"k", b"b"), LoggedWrite(4, b"k", b"b")]
    assert any("applied twice" in str(v) for v in validate.check_write_log(ops, twice, 1, 4))
    backwards = [LoggedWrite(3, b"k", b"b"), LoggedWrite(2, b"k", b"a")]
    assert any("not one per write" in str(v) for v in validate.check_write_log(ops, backwards, 1, 3))
    gap = [LoggedWrite(2, b"k", b"a"), LoggedWrite(4, b"k", b"b")]
    assert any("missing [3]" in str(v) for v in validate.check_write_log(ops, gap, 1, 4))
    stranger = [LoggedWrite(2, b"k", b"a"), LoggedWrite(3, b"k", b"b"), LoggedWrite(4, b"k", None)]
    assert any("no delete" in str(v) for v in validate.check_write_log(ops, stranger, 1, 4))


def test_client_with_two_requests_at_once_breaks_the_assumptions():
    assert validate.check_clients([op(1, GET, 0, 2, kv=None, revision=1),
                                   op(1, GET, 1, 3, kv=None, revision=1)])
    assert validate.check_clients([op(1, PUT, 0, None, value=b"a"),
                                   op(1, GET, 1, 3, kv=None, revision=1)]) == []


def test_failure_report_names_the_seed_the_kept_data_dir_and_the_window(tmp_path):
    from tests.robustness.run import Config, Report

    ops = [op(1, PUT, 0, 1, value=b"a", revision=2), op(2, GET, 2, 3, kv=None, revision=2),
           op(3, PUT, 50, 51, key=b"far", value=b"z", revision=3)]
    violations = validate.check_linearizable(ops)
    report = Report(Config(seed=42), tmp_path / "data", tmp_path / "h.jsonl",
                    {"ok": 3}, [], 3, 0.0, violations, ops)
    text = report.failure()
    assert "seed 42" in text and str(tmp_path / "data") in text
    assert f">> {ops[1].describe()}" in text and ops[0].describe() in text
    assert ops[2].describe() not in text  # another key, outside the window


def test_patching_drops_unlogged_indeterminate_writes_and_pins_logged_ones():
    ops = [op(1, PUT, 0, 1, value=b"a", revision=2), op(2, PUT, 0, None, value=b"b"),
           op(3, PUT, 0, None, value=b"c"), op(4, DELETE, 0, None)]
    patched = validate.patch_history(ops, [LoggedWrite(2, b"k", b"a"), LoggedWrite(3, b"k", b"c")])
    assert [(o.value, o.revision) for o in patched] == [(b"a", 2), (b"c", 3), (None, None)]
    assert ops[2].revision is None  # the recorded history is left alone
