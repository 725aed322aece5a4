"""The WAL's Python API: append/sync/read/release semantics, sticky records
carried across segments, limits and errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pykv import errors
from pykv.wal import WAL, Record, RecordType

from wal_helpers import (SMALL_SEGMENT_BYTES, child_env, entries, payload_for, read_all,
                         repo_root, segment_files)


def test_a_new_wal_is_empty_and_reopens_empty(wal_dir):
    with WAL.open(wal_dir) as wal:
        assert wal.last_index == 0 and read_all(wal) == []
        assert wal.recovery.records == 0 and wal.recovery.segments == 1
    assert oct(wal_dir.stat().st_mode & 0o777) == "0o700"
    with WAL.open(wal_dir) as wal:
        assert read_all(wal) == [] and wal.recovery.bytes_cut == 0


def test_a_directory_open_to_other_users_gets_a_warning(wal_dir, caplog):
    wal_dir.mkdir(mode=0o755)
    wal_dir.chmod(0o755)
    with caplog.at_level("WARNING", logger="pykv.wal"):
        WAL.open(wal_dir).close()
    assert "mode 0755" in caplog.text and "0700" in caplog.text
    caplog.clear()
    wal_dir.chmod(0o700)
    with caplog.at_level("WARNING", logger="pykv.wal"):
        WAL.open(wal_dir).close()
    assert caplog.text == ""


def test_records_come_back_in_file_order_with_their_types_and_payloads(wal_dir):
    records = [Record(RecordType.METADATA, 0, b"ids"), *entries(1, 50),
               Record(RecordType.STATE, 50, b"hard state"), Record(RecordType.ENTRY, 51, b""),
               Record(99, 52, b"a caller-defined type")]
    with WAL.open(wal_dir) as wal:
        wal.append_sync(records[:10])
        pos = wal.append(records[10:])
        wal.sync(pos)
        assert read_all(wal) == records
        assert wal.last_index == 52
    with WAL.open(wal_dir) as wal:
        assert read_all(wal) == records
        assert read_all(wal, max_records=7) == records
        assert all(len(b) <= 7 for b in wal.read(0, max_records=7))
        assert wal.recovery.records == len(records) and wal.recovery.last_index == 52


def test_positions_grow_and_sync_of_an_old_position_returns_at_once(wal_dir):
    with WAL.open(wal_dir) as wal:
        first = wal.append(entries(1, 1))
        second = wal.append(entries(2, 2))
        assert 0 < first < second
        wal.sync(second)
        assert wal.durable_position >= second
        wal.sync(first)
        with pytest.raises(ValueError, match="past the end of the log"):
            wal.sync(second + 1)


def test_append_without_sync_is_readable_and_synced_by_close(wal_dir):
    with WAL.open(wal_dir) as wal:
        wal.append(entries(1, 20))
        assert wal.durable_position == 0
        assert read_all(wal) == entries(1, 20)
    with WAL.open(wal_dir) as wal:
        assert read_all(wal) == entries(1, 20)


def test_a_repeated_index_is_kept_in_file_order(wal_dir):
    with WAL.open(wal_dir) as wal:
        wal.append_sync(entries(1, 5))
        wal.append_sync([Record(RecordType.ENTRY, 4, b"new 4"), Record(RecordType.ENTRY, 5,
                                                                          b"new 5")])
        assert [r.index for r in read_all(wal)] == [1, 2, 3, 4, 5, 4, 5]
        assert wal.last_index == 5


def test_read_from_an_index_skips_the_records_before_it(wal_dir):
    with WAL.open(wal_dir) as wal:
        wal.append_sync([Record(RecordType.METADATA, 0, b"ids")] + entries(1, 30))
        found = read_all(wal, from_index=11)
        # sticky records are context and always come; entries start at 11
        assert found == [Record(RecordType.METADATA, 0, b"ids")] + entries(11, 30)
        assert read_all(wal, from_index=31) == [Record(RecordType.METADATA, 0, b"ids")]


def test_read_from_an_index_keeps_later_replacements_of_earlier_indexes(wal_dir):
    with WAL.open(wal_dir) as wal:
        wal.append_sync(entries(1, 10))
        wal.append_sync([Record(RecordType.ENTRY, 8, b"8 again")])
        assert [r.index for r in read_all(wal, from_index=9)] == [9, 10, 8]


def test_rotation_carries_the_latest_sticky_records_into_new_segments(wal_dir):
    with WAL.open(wal_dir, segment_bytes=SMALL_SEGMENT_BYTES) as wal:
        wal.append_sync([Record(RecordType.METADATA, 0, b"node 1")])
        for i in range(1, 200):
            batch = [Record(RecordType.ENTRY, i, payload_for(i, 100))]
            if i % 10 == 0:
                batch.append(Record(RecordType.STATE, i, b"commit %d" % i))
            if i == 50:
                batch.append(Record(RecordType.SNAPSHOT, 50, b"snap 50"))
            wal.append_sync(batch)
        segments = wal.segments()
        assert len(segments) >= 4 and wal.stats()["rotations"] == len(segments) - 1
        # Reading from the last segment: its head gives the context first.
        last = segments[-1]
        found = read_all(wal, from_index=last.first_index)
        head = found[:3]
        assert [r.type for r in head] == [RecordType.METADATA, RecordType.SNAPSHOT,
                                          RecordType.STATE]
        assert head[0].payload == b"node 1" and head[1].payload == b"snap 50"
        state_before = max(i for i in range(10, last.first_index, 10))
        assert head[2] == Record(RecordType.STATE, state_before, b"commit %d" % state_before)
        assert found[3] == Record(RecordType.ENTRY, last.first_index,
                                  payload_for(last.first_index, 100))
        # Reading everything: carried copies appear nowhere.
        everything = read_all(wal)
        assert sum(r.type == RecordType.METADATA for r in everything) == 1


def test_release_removes_only_segments_wholly_below_and_never_the_last(wal_dir):
    with WAL.open(wal_dir, segment_bytes=SMALL_SEGMENT_BYTES) as wal:
        wal.append_sync([Record(RecordType.METADATA, 0, b"node 1")])
        for i in range(1, 200):
            wal.append_sync([Record(RecordType.ENTRY, i, payload_for(i, 100)),
                             Record(RecordType.STATE, i, b"state %d" % i)])
        segments = wal.segments()
        cut = segments[2].first_index
        assert wal.release(cut) == 2
        assert wal.segments() == segments[2:]
        assert [p.name for p in segment_files(wal_dir)] == [s.name for s in segments[2:]]
        assert wal.release(cut) == 0
        assert wal.release(10**9) == len(segments) - 3  # all but the last
        assert len(wal.segments()) == 1
        wal.append_sync(entries(200, 201))
    with WAL.open(wal_dir, segment_bytes=SMALL_SEGMENT_BYTES) as wal:
        found = read_all(wal)
        # The released segments' sticky records survive in the head.
        assert found[0] == Record(RecordType.METADATA, 0, b"node 1")
        assert found[1].type == RecordType.STATE
        assert found[-2:] == entries(200, 201)
        assert wal.recovery.first_index == segments[-1].first_index


def test_a_batch_larger_than_a_segment_gets_a_segment_of_its_own(wal_dir):
    big = entries(1, 60, size=1000)
    with WAL.open(wal_dir, segment_bytes=SMALL_SEGMENT_BYTES) as wal:
        wal.append_sync(entries(100, 101))
        wal.append_sync(big)
        wal.append_sync(entries(200, 201))
        assert [r.index for r in read_all(wal)] == [100, 101, *range(1, 61), 200, 201]
    with WAL.open(wal_dir, segment_bytes=SMALL_SEGMENT_BYTES) as wal:
        assert read_all(wal) == entries(100, 101) + big + entries(200, 201)


def test_a_record_of_the_maximum_size_round_trips(wal_dir):
    payload = os.urandom(1 << 20) * 64
    assert len(payload) == 64 << 20
    with WAL.open(wal_dir, unsafe_no_fsync=True) as wal:
        wal.append_sync([(RecordType.SNAPSHOT, 9, payload)])
    with WAL.open(wal_dir) as wal:
        assert read_all(wal) == [Record(RecordType.SNAPSHOT, 9, payload)]


@pytest.mark.parametrize("records,error,match", [
    ([(0, 1, b"x")], ValueError, "type 0"),
    ([(128, 1, b"x")], ValueError, "type 128"),
    ([(300, 1, b"x")], ValueError, "type"),
    ([(2, -1, b"x")], ValueError, "index"),
    ([(2, 1, "text")], TypeError, "bytes-like"),
    ([(2, 1)], TypeError, "triples"),
])
def test_bad_records_are_refused_and_nothing_is_appended(wal_dir, records, error, match):
    with WAL.open(wal_dir) as wal:
        wal.append_sync(entries(1, 1))
        with pytest.raises(error, match=match):
            wal.append(entries(2, 3) + records)
        assert read_all(wal) == entries(1, 1)


@pytest.mark.parametrize("record,error,match", [
    ((0, 1, b"x"), ValueError, "type 0"),
    ((128, 1, b"x"), ValueError, "type 128"),
    ((300, 1, b"x"), ValueError, "type"),
    (("2", 1, b"x"), ValueError, "type"),
    ((2, -1, b"x"), ValueError, "index"),
    ((2, 2**64, b"x"), ValueError, "index"),
    ((2, 1, bytes((64 << 20) + 1)), ValueError, "over the limit"),
])
def test_a_bad_single_record_is_refused_too(wal_dir, record, error, match):
    # One-record appends take a shorter path in Python; same checks.
    with WAL.open(wal_dir) as wal:
        for call in (wal.append, wal.append_sync):
            with pytest.raises(error, match=match):
                call([record])
        assert read_all(wal) == []
        wal.append_sync([(RecordType.ENTRY, 1, bytearray(b"not bytes"))])
        assert read_all(wal) == [Record(RecordType.ENTRY, 1, b"not bytes")]


def test_a_payload_over_64_mib_is_refused_before_anything_is_written(wal_dir):
    with WAL.open(wal_dir) as wal:
        with pytest.raises(ValueError, match="over the limit"):
            wal.append([(RecordType.ENTRY, 1, bytes((64 << 20) + 1))])
        assert read_all(wal) == []


def test_bad_segment_sizes_are_refused(wal_dir):
    for size in (0, 1000, 4097, 1 << 33):
        with pytest.raises(ValueError, match="segment_bytes"):
            WAL.open(wal_dir, segment_bytes=size)


def test_a_second_handle_is_locked_out_until_the_first_closes(wal_dir):
    wal = WAL.open(wal_dir)
    with pytest.raises(errors.LockedError, match="another process or handle"):
        WAL.open(wal_dir)
    code = ("import sys; from pykv import errors; from pykv.wal import WAL\n"
            "try:\n    WAL.open(sys.argv[1])\nexcept errors.LockedError:\n    sys.exit(3)\n")
    child = subprocess.run([sys.executable, "-c", code, str(wal_dir)], cwd=repo_root(),
                           env=child_env(), timeout=60)
    assert child.returncode == 3
    wal.close()
    WAL.open(wal_dir).close()


def test_calls_after_close_raise_closed_error(wal_dir):
    wal = WAL.open(wal_dir)
    wal.close()
    wal.close()  # idempotent
    assert wal.closed
    with pytest.raises(errors.ClosedError):
        wal.append(entries(1, 1))
    with pytest.raises(errors.ClosedError):
        wal.sync()
    with pytest.raises(errors.ClosedError):
        list(wal.read())


def test_a_failed_fdatasync_makes_the_handle_refuse_writes(wal_dir, monkeypatch):
    monkeypatch.setenv("PYKV_FAILPOINTS", "wal_before_sync=error@2")
    wal = WAL.open(wal_dir)
    wal.append_sync(entries(1, 1))
    with pytest.raises(errors.FatalSyncError, match="fdatasync .* failed.*refuses further"):
        wal.append_sync(entries(2, 2))
    with pytest.raises(errors.FatalSyncError):
        wal.append(entries(3, 3))
    with pytest.raises(errors.FatalSyncError):
        wal.sync()
    wal.close()
    monkeypatch.delenv("PYKV_FAILPOINTS")
    with WAL.open(wal_dir) as wal:
        assert read_all(wal)[:1] == entries(1, 1)


def test_a_bad_failpoint_spec_is_refused(wal_dir, monkeypatch):
    monkeypatch.setenv("PYKV_FAILPOINTS", "wal_before_nothing=exit")
    with pytest.raises(ValueError, match="PYKV_FAILPOINTS"):
        WAL.open(wal_dir)


def test_unsafe_no_fsync_never_calls_fdatasync(wal_dir, no_failpoints):
    with WAL.open(wal_dir, unsafe_no_fsync=True) as wal:
        wal.append_sync(entries(1, 10))
        assert wal.stats()["syncs"] == 0
        assert wal.durable_position == wal.appended_position
    with WAL.open(wal_dir) as wal:
        wal.append_sync(entries(11, 11))
        assert wal.stats()["syncs"] == 1


def test_stats_count_appends_records_and_syncs(wal_dir):
    with WAL.open(wal_dir) as wal:
        wal.append(entries(1, 5))
        wal.append(entries(6, 10))
        wal.sync()
        stats = wal.stats()
        assert (stats["appends"], stats["records"], stats["syncs"]) == (2, 10, 1)
        assert stats["synced_records_max"] == 10


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pykv", "wal", *argv], cwd=repo_root(),
                          env=child_env(), capture_output=True, text=True, timeout=60)


def test_the_wal_command_checks_dumps_and_repairs(wal_dir):
    import json
    with WAL.open(wal_dir, segment_bytes=SMALL_SEGMENT_BYTES) as wal:
        wal.append_sync(entries(1, 30, size=50))
    checked = run_cli("check", str(wal_dir))
    assert checked.returncode == 0 and json.loads(checked.stdout)["records"] == 30
    dumped = run_cli("dump", str(wal_dir), "--from-index", "29")
    assert dumped.stdout.split("\n")[:2] == ["ENTRY               29        50",
                                             "ENTRY               30        50"]
    segment = segment_files(wal_dir)[-1]
    data = bytearray(segment.read_bytes())
    data[200] ^= 1  # inside an early record of the last segment
    segment.write_bytes(bytes(data))
    refused = run_cli("check", str(wal_dir))
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["path"] == str(segment)
    repaired = run_cli("repair", str(wal_dir))
    assert repaired.returncode == 0
    report = json.loads(repaired.stdout)["repair"]
    assert report["segment"] == segment.name and report["records_lost"] > 0
    assert run_cli("check", str(wal_dir)).returncode == 0
