"""Recovery at open: torn and garbage tails are cut (and reported), corruption
in the middle is refused with the segment and the offset, repair cuts there
and says what it lost. Damage is made by editing the files directly."""

from __future__ import annotations

import os
import pathlib
import random
import shutil

import pytest

from pykv import errors
from pykv.wal import WAL, Record, RecordType

from wal_helpers import (SMALL_SEGMENT_BYTES, data_end, entries, frame_offsets, patch,
                         payload_for, read_all, segment_files)

SEGMENT_BYTES = 64 << 10


def build(path: pathlib.Path, batches: list[list[Record]], segment_bytes=SEGMENT_BYTES) -> None:
    with WAL.open(path, segment_bytes=segment_bytes) as wal:
        for batch in batches:
            wal.append_sync(batch)


def flat(batches):
    return [r for batch in batches for r in batch]


def last_segment(path: pathlib.Path) -> pathlib.Path:
    return segment_files(path)[-1]


def reopen(path, **kw) -> tuple[list[Record], WAL]:
    wal = WAL.open(path, segment_bytes=kw.pop("segment_bytes", SEGMENT_BYTES), **kw)
    return read_all(wal), wal


def files_snapshot(path: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


# --- torn and garbage tails ------------------------------------------------------


@pytest.fixture(scope="module")
def five_records(tmp_path_factory):
    """A WAL of five records; the last one has 100 bytes of payload."""
    path = tmp_path_factory.mktemp("template") / "wal"
    batches = [[r] for r in entries(1, 4)] + [[Record(RecordType.ENTRY, 5, payload_for(5, 100))]]
    build(path, batches)
    return path, flat(batches)


def test_truncation_at_every_byte_of_the_last_record_cuts_just_that_record(
        five_records, tmp_path):
    template, records = five_records
    last = frame_offsets(last_segment(template))[-1]
    original = last_segment(template).read_bytes()
    for cut in range(last.offset, last.offset + last.frame_bytes + 1):
        path = tmp_path / f"cut{cut}"
        shutil.copytree(template, path)
        seg = last_segment(path)
        os.truncate(seg, cut)
        found, wal = reopen(path)
        with wal:
            whole = cut == last.offset + last.frame_bytes
            assert found == (records if whole else records[:-1]), cut
            lost = 0 if whole else len(original[last.offset:cut].rstrip(b"\0"))
            assert wal.recovery.bytes_cut == lost, cut
            assert wal.recovery.cut_offset == (last.offset if lost else None), cut
            if lost:
                broken = path / wal.recovery.broken_copy
                assert broken.read_bytes() == original[:cut].rstrip(b"\0")[:last.offset + lost]
            # The tail reads as zeros again: new frames never follow old bytes.
            wal.append_sync([(RecordType.ENTRY, 6, b"after the cut")])
        found, wal = reopen(path)
        with wal:
            assert found == (records if whole else records[:-1]) + [
                Record(RecordType.ENTRY, 6, b"after the cut")]
            assert wal.recovery.bytes_cut == 0
        assert seg.stat().st_size == SEGMENT_BYTES


@pytest.mark.parametrize("gap", [0, 8, 1000, 20000])
@pytest.mark.parametrize("size", [1, 7, 24, 300, 5000])
def test_appended_garbage_is_cut_and_kept_in_a_broken_copy(five_records, tmp_path, gap, size):
    template, records = five_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    seg = last_segment(path)
    end = data_end(seg)
    garbage = bytearray(random.Random(size * 31 + gap).randbytes(size))
    garbage[-1] |= 1  # so the garbage's extent is exactly its size
    patch(seg, end + gap, bytes(garbage))
    found, wal = reopen(path)
    with wal:
        assert found == records
        assert wal.recovery.cut_offset == end
        assert wal.recovery.bytes_cut == gap + size
        assert wal.recovery.records_dropped == 0
        assert (path / wal.recovery.broken_copy).read_bytes()[end + gap:] == bytes(garbage)
    assert seg.read_bytes()[end:] == bytes(SEGMENT_BYTES - end)


def test_garbage_past_the_preallocated_end_is_cut(five_records, tmp_path):
    template, records = five_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    seg = last_segment(path)
    patch(seg, SEGMENT_BYTES, b"\xff" * 100)
    found, wal = reopen(path)
    with wal:
        assert found == records
        assert wal.recovery.bytes_cut == SEGMENT_BYTES + 100 - data_end(seg)


def test_a_zeroed_last_record_is_a_clean_end(five_records, tmp_path):
    template, records = five_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    last = frame_offsets(last_segment(path))[-1]
    patch(last_segment(path), last.offset, bytes(last.frame_bytes))
    found, wal = reopen(path)
    with wal:
        assert found == records[:-1]
        assert wal.recovery.bytes_cut == 0 and wal.recovery.broken_copy is None


def test_a_zeroed_second_half_of_a_large_last_record_is_a_torn_tail(tmp_path):
    path = tmp_path / "wal"
    batches = [[r] for r in entries(1, 3)] + [[Record(RecordType.ENTRY, 4, b"\xab" * 3000)]]
    build(path, batches)
    seg = last_segment(path)
    last = frame_offsets(seg)[-1]
    half = (last.offset + 1500) // 512 * 512  # a sector boundary inside the record
    patch(seg, half, bytes(last.offset + last.frame_bytes - half))
    found, wal = reopen(path)
    with wal:
        assert found == flat(batches)[:-1]
        assert wal.recovery.cut_offset == last.offset
        assert wal.recovery.bytes_cut == half - last.offset


def test_torn_write_with_a_hole_before_intact_frames_is_cut(tmp_path):
    # Synced records, then one batch whose first sector never reached the disk
    # while later sectors did (writeback reorders pages): none of that batch was
    # synced, so it is cut, and the intact frames beyond the hole are reported.
    path = tmp_path / "wal"
    synced = entries(1, 10, size=40)
    with WAL.open(path, segment_bytes=SEGMENT_BYTES) as wal:
        wal.append_sync(synced)
        batch_start = wal.appended_position  # noqa: F841 (positions are not offsets)
        wal.append(entries(11, 60, size=100))
    seg = last_segment(path)
    frames = frame_offsets(seg)
    first_unsynced = next(f for f in frames if f.index == 11)
    hole_end = (first_unsynced.offset // 512 + 2) * 512
    patch(seg, first_unsynced.offset, bytes(hole_end - first_unsynced.offset))
    intact_after = sum(1 for f in frames if f.offset >= hole_end)
    found, wal = reopen(path)
    with wal:
        assert found == synced
        assert wal.recovery.cut_offset == first_unsynced.offset
        assert wal.recovery.records_dropped == intact_after > 0


def test_two_cuts_keep_two_broken_copies(five_records, tmp_path):
    template, records = five_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    copies = []
    for attempt in range(2):
        seg = last_segment(path)
        patch(seg, data_end(seg), b"garbage%d" % attempt)
        found, wal = reopen(path)
        with wal:
            assert found == records
            copies.append(wal.recovery.broken_copy)
    assert copies == [seg.name + ".broken", seg.name + ".1.broken"]


def test_a_truncated_last_segment_is_extended_back_to_its_preallocated_size(
        five_records, tmp_path):
    template, records = five_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    seg = last_segment(path)
    os.truncate(seg, data_end(seg))
    found, wal = reopen(path)
    with wal:
        assert found == records and wal.recovery.bytes_cut == 0
    assert seg.stat().st_size == SEGMENT_BYTES


# --- corruption -----------------------------------------------------------------


@pytest.fixture(scope="module")
def twenty_records(tmp_path_factory):
    path = tmp_path_factory.mktemp("template20") / "wal"
    batches = [[r] for r in entries(1, 20, size=50)]
    build(path, batches)
    return path, flat(batches)


# (field offset within the frame, what it is)
FIELDS = [(0, "length"), (4, "type"), (5, "flags"), (8, "index"), (17, "reserved"),
          (21, "crc"), (30, "payload"), (24 + 50, "padding")]


@pytest.mark.parametrize("field,name", FIELDS, ids=[n for _, n in FIELDS])
def test_corruption_in_the_middle_is_refused_with_segment_and_offset(
        twenty_records, tmp_path, field, name):
    template, _ = twenty_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    seg = last_segment(path)
    victim = next(f for f in frame_offsets(seg) if f.index == 10)
    data = bytearray(seg.read_bytes())
    data[victim.offset + field] ^= 0x40
    seg.write_bytes(bytes(data))
    before = files_snapshot(path)
    with pytest.raises(errors.CorruptionError) as caught:
        WAL.open(path, segment_bytes=SEGMENT_BYTES)
    assert caught.value.path == str(seg)
    assert caught.value.offset == victim.offset
    message = str(caught.value)
    assert seg.name in message and f"offset {victim.offset}" in message
    assert "10 intact records follow" in message and "repair=True" in message
    assert files_snapshot(path) == before, "a refused open must change nothing"


def test_repair_cuts_at_the_corruption_and_reports_what_it_lost(twenty_records, tmp_path):
    template, records = twenty_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    seg = last_segment(path)
    victim = next(f for f in frame_offsets(seg) if f.index == 10)
    patch(seg, victim.offset + 30, b"\x00\x01")
    found, wal = reopen(path, repair=True)
    with wal:
        assert found == records[:9]
        report = wal.recovery.repair
        assert report.segment == seg.name and report.offset == victim.offset
        assert report.records_lost == 10  # 11..20 were intact; 10 itself was not
        # to the end of the last intact frame (padding included)
        assert report.bytes_lost == data_end(template / seg.name) - victim.offset
        assert wal.recovery.broken_copy == seg.name + ".broken"
        wal.append_sync([(RecordType.ENTRY, 10, b"rewritten")])
    found, wal = reopen(path)
    with wal:
        assert found == records[:9] + [Record(RecordType.ENTRY, 10, b"rewritten")]
        assert wal.recovery.repair is None


def test_a_bit_flip_in_the_whole_last_record_is_corruption_not_a_torn_tail(
        twenty_records, tmp_path):
    template, _ = twenty_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    seg = last_segment(path)
    last = frame_offsets(seg)[-1]
    patch(seg, last.offset + 30, b"\x99")
    with pytest.raises(errors.CorruptionError) as caught:
        WAL.open(path, segment_bytes=SEGMENT_BYTES)
    assert caught.value.offset == last.offset
    assert "checksum does not match" in str(caught.value)


# --- several segments -------------------------------------------------------------


@pytest.fixture(scope="module")
def four_segments(tmp_path_factory):
    path = tmp_path_factory.mktemp("template-segs") / "wal"
    batches = [[r] for r in entries(1, 120, size=200)]
    build(path, batches, segment_bytes=SMALL_SEGMENT_BYTES)
    assert len(segment_files(path)) >= 4
    return path, flat(batches)


def test_a_zeroed_sector_in_a_sealed_segment_is_corruption(four_segments, tmp_path):
    template, _ = four_segments
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    first = segment_files(path)[0]
    patch(first, 2048, bytes(512))
    with pytest.raises(errors.CorruptionError) as caught:
        WAL.open(path, segment_bytes=SMALL_SEGMENT_BYTES)
    assert caught.value.path == str(first)
    assert "later segments" in str(caught.value)


def test_repair_in_a_sealed_segment_sets_the_later_segments_aside(four_segments, tmp_path):
    template, records = four_segments
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    files = segment_files(path)
    victim = frame_offsets(files[1])[5]
    patch(files[1], victim.offset + 30, b"\x55")
    found, wal = reopen(path, repair=True, segment_bytes=SMALL_SEGMENT_BYTES)
    with wal:
        assert found == records[:records.index(
            next(r for r in records if r.index == victim.index))]
        report = wal.recovery.repair
        assert report.segments_set_aside == len(files) - 2
        assert report.records_lost == len(records) - len(found) - 1
        assert [s.name for s in wal.segments()] == [f.name for f in files[:2]]
    for later in files[2:]:
        assert (path / (later.name + ".broken")).exists() and not later.exists()


def test_a_missing_segment_is_refused_and_repair_keeps_what_precedes_it(
        four_segments, tmp_path):
    template, records = four_segments
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    files = segment_files(path)
    files[1].unlink()
    with pytest.raises(errors.CorruptionError, match="segments are missing"):
        WAL.open(path, segment_bytes=SMALL_SEGMENT_BYTES)
    found, wal = reopen(path, repair=True, segment_bytes=SMALL_SEGMENT_BYTES)
    with wal:
        kept = [f.index for f in frame_offsets(files[0]) if f.type == RecordType.ENTRY]
        assert [r.index for r in found] == kept
        assert wal.recovery.repair.segments_set_aside == len(files) - 2


def test_a_damaged_segment_header_is_refused(four_segments, tmp_path):
    template, _ = four_segments
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    last = segment_files(path)[-1]
    patch(last, 30, b"X")  # inside the header's payload (the magic)
    with pytest.raises(errors.CorruptionError, match="segment header") as caught:
        WAL.open(path, segment_bytes=SMALL_SEGMENT_BYTES)
    assert caught.value.offset == 0


def test_a_segment_from_another_log_breaks_the_chain(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    batches = [[r] for r in entries(1, 60, size=200)]
    build(a, batches, segment_bytes=SMALL_SEGMENT_BYTES)
    other = [list(batch) for batch in batches]
    other[0] = [Record(RecordType.ENTRY, 1, b"z" * 200)]  # segment 0 differs
    build(b, other, segment_bytes=SMALL_SEGMENT_BYTES)
    second = segment_files(a)[1]
    shutil.copyfile(b / second.name, second)
    with pytest.raises(errors.CorruptionError, match="does not link"):
        WAL.open(a, segment_bytes=SMALL_SEGMENT_BYTES)


def test_trailing_zeros_after_a_sealed_segment_are_accepted(four_segments, tmp_path):
    template, records = four_segments
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    first = segment_files(path)[0]
    os.truncate(first, first.stat().st_size + 4096)
    found, wal = reopen(path, segment_bytes=SMALL_SEGMENT_BYTES)
    with wal:
        assert found == records


def test_a_leftover_tmp_segment_is_removed(five_records, tmp_path):
    template, records = five_records
    path = tmp_path / "wal"
    shutil.copytree(template, path)
    (path / "0000000000000001-0000000000000006.wal.tmp").write_bytes(b"\0" * 100)
    found, wal = reopen(path)
    with wal:
        assert found == records and wal.recovery.tmp_removed == 1
    assert not (path / "0000000000000001-0000000000000006.wal.tmp").exists()
