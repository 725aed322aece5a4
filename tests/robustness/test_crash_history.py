"""SIGKILL `pykv serve` at seeded random moments under concurrent recorded
traffic; the history must validate (revisions, per-key linearizability, final
state, write log, hashkv across a restart). A failure prints the seed, the
window of the history around each violation and the kept data dir."""

from __future__ import annotations

import dataclasses

import pytest

from tests.robustness import validate, validate_mvcc
from tests.robustness.history import GET, LEASE_REVOKE, OK, STALE_GET
from tests.robustness.run import Config, run


def _run(tmp_path, config: Config):
    report = run(config, tmp_path / "data")
    assert not report.violations, report.failure()
    assert report.counts[OK] > 100, report.summary()
    assert len(report.kill_times_s) == config.kills, report.summary()
    return report


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_history_under_sigkill_is_linearizable_and_loses_no_write(tmp_path, need_etcdctl, seed):
    report = _run(tmp_path, Config(seed=seed, duration_s=7.0, kills=2))
    if seed == 11:
        _assert_validators_catch_a_doctored_history(report)


def _assert_validators_catch_a_doctored_history(report) -> None:
    """The same real history, made wrong in one place, must fail: the
    checks are not vacuous on this traffic."""
    operations = report.operations
    reads = [op for op in operations if op.kind == GET and op.status == OK and op.kv]
    # A stale read: a read shows the value its key had before some later write.
    for read in reads:
        older = [op for op in operations if op.key == read.key and op.wrote()
                 and op.value and op.revision < read.kv.mod_revision]
        if older:
            stale = dataclasses.replace(read, kv=read.kv._replace(
                value=older[-1].value, mod_revision=older[-1].revision))
            doctored = [stale if op is read else op for op in operations]
            assert validate.check_linearizable(doctored), f"stale read accepted: {stale.describe()}"
            break
    else:
        pytest.fail("no read to doctor in the history")
    # Time travel: an acknowledged write reports a revision from the past.
    write = next(op for op in reversed(operations) if op.wrote())
    back = dataclasses.replace(write, revision=1)
    doctored = [back if op is write else op for op in operations]
    assert validate.check_revisions(doctored, report.final_revision)


@pytest.mark.parametrize("seed", [21])
def test_compaction_stale_reads_and_leases_under_sigkill(tmp_path, need_etcdctl, seed):
    report = _run(tmp_path, Config(seed=seed, duration_s=7.0, kills=2, compaction=True,
                                   leases=True))
    operations = report.operations
    kinds = {(op.kind, op.status) for op in operations}
    assert {("compact", OK), (STALE_GET, OK), ("lease_put", OK), (LEASE_REVOKE, OK)} <= kinds
    # The same real history, doctored, must fail: a read at an old revision
    # that shows another revision's state.
    read = next(op for op in operations if op.kind == STALE_GET and op.status == OK and op.kv)
    stale = dataclasses.replace(read, kv=read.kv._replace(mod_revision=read.kv.mod_revision - 1))
    assert validate_mvcc.check_stale_reads([read], report.log, []) == []
    assert validate_mvcc.check_stale_reads([stale], report.log, []), stale.describe()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(200, 205))
def test_longer_compaction_and_lease_history_under_sigkill(tmp_path, need_etcdctl, seed):
    _run(tmp_path, Config(seed=seed, duration_s=30.0, kills=8, clients=8, ops_per_s=300.0,
                          compaction=True, leases=True))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 110))
def test_longer_history_under_frequent_sigkill(tmp_path, need_etcdctl, seed):
    _run(tmp_path, Config(seed=seed, duration_s=30.0, kills=8, clients=8, ops_per_s=300.0))
