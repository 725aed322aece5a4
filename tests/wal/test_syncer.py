"""The WAL's syncer thread (``WAL.sync_start`` / ``sync_wait``, csrc/syncer.c):
the fdatasync runs while the caller does something else."""

from __future__ import annotations

import pytest

from pykv import errors
from pykv.wal import WAL, RecordType

from wal_helpers import payload_for, read_all, segment_files


def batch(first: int, last: int) -> list[tuple[int, int, bytes]]:
    return [(RecordType.ENTRY, i, payload_for(i, 40)) for i in range(first, last + 1)]


@pytest.mark.parametrize("spin_ns", [0, 300_000])
def test_a_started_sync_makes_the_records_durable_by_the_wait(wal_dir, no_failpoints, spin_ns):
    with WAL.open(wal_dir) as wal:
        for i in range(1, 201):
            position = wal.append(batch(i, i))
            wal.sync_start(position)
            wal.sync_wait(position, spin_ns)
            # The contract: once the wait returns, the record is durable.
            assert wal.durable_position >= position
        assert wal.stats()["syncs"] >= 1
    with WAL.open(wal_dir) as wal:
        assert [r.index for r in read_all(wal)] == list(range(1, 201))


def test_one_sync_may_cover_several_starts(wal_dir, no_failpoints):
    with WAL.open(wal_dir) as wal:
        positions = [wal.append(batch(i, i)) for i in range(1, 11)]
        for position in positions:
            wal.sync_start(position)
        wal.sync_wait(positions[-1])
        assert wal.durable_position >= positions[-1]
        wal.sync_wait(positions[0])  # long done: returns at once


def test_a_failed_sync_fails_the_wait_and_every_later_one(wal_dir, monkeypatch):
    monkeypatch.setenv("PYKV_FAILPOINTS", "wal_before_sync=error@2")
    wal = WAL.open(wal_dir)
    first = wal.append(batch(1, 1))
    wal.sync_start(first)
    wal.sync_wait(first)
    second = wal.append(batch(2, 2))
    wal.sync_start(second)
    with pytest.raises(errors.FatalSyncError, match="fdatasync"):
        wal.sync_wait(second, 300_000)
    with pytest.raises(errors.FatalSyncError):
        wal.sync_wait(first)  # the WAL is fatal from now on
    wal.close()


def test_closing_stops_the_thread_and_syncs_what_was_appended(wal_dir, no_failpoints):
    wal = WAL.open(wal_dir)
    position = wal.append(batch(1, 3))
    wal.sync_start(position)
    wal.close()  # joins the syncer first, then closes the files (which syncs)
    with WAL.open(wal_dir) as wal:
        assert [r.index for r in read_all(wal)] == [1, 2, 3]


def test_a_wait_without_a_start_is_a_programming_error(wal_dir, no_failpoints):
    with WAL.open(wal_dir) as wal:
        with pytest.raises(RuntimeError, match="sync_start"):
            wal.sync_wait(wal.append(batch(1, 1)))


def test_append_write_puts_the_records_in_the_file_before_any_sync(wal_dir, no_failpoints):
    """What the embedded engine relies on before it commits a held batch: a
    killed process keeps what is in the file, not what is in WAL memory."""
    with WAL.open(wal_dir) as wal:
        durable = wal.durable_position
        writes = wal.stats()["writes"]
        records = batch(1, 3)
        position = wal.append_write(records)
        assert wal.durable_position == durable < position  # written, not synced
        assert wal.stats()["writes"] == writes + 1
        on_file = b"".join(path.read_bytes() for path in segment_files(wal_dir))
        assert all(payload in on_file for _, _, payload in records)
        wal.sync_start(position)
        wal.sync_wait(position)
        assert wal.durable_position >= position
    with WAL.open(wal_dir) as wal:
        assert [r.index for r in read_all(wal)] == [1, 2, 3]


def test_a_failed_append_write_fails_the_log(wal_dir, monkeypatch):
    monkeypatch.setenv("PYKV_FAILPOINTS", "wal_before_write=error@1")
    wal = WAL.open(wal_dir)
    with pytest.raises(errors.FatalSyncError, match="write"):
        wal.append_write(batch(1, 1))
    with pytest.raises(errors.FatalSyncError):
        wal.append(batch(2, 2))
    wal.close()
