"""Golden files pin the on-disk format: the C writer, the pure-Python model
of the format (pykv/wal/record.py + the rules in pykv/wal/__init__.py) and
the files in testdata/golden-v1 must agree byte for byte, and the reader
must read those files back. Regenerate (after a deliberate format change,
with a new version number) with PYKV_REWRITE_GOLDEN=1."""

from __future__ import annotations

import os
import pathlib
import shutil

from pykv.wal import WAL, Record, RecordType
from pykv.wal import record as ref

from wal_helpers import data_end, payload_for, read_all, segment_files

GOLDEN = pathlib.Path(__file__).parent / "testdata" / "golden-v1"
SEGMENT_BYTES = 4096


def golden_batches() -> list[list[Record]]:
    batches = [[Record(RecordType.METADATA, 0, b"node=1 cluster=7")]]
    for i in range(1, 61):
        batch = [Record(RecordType.ENTRY, i, payload_for(i, 100))]
        if i % 5 == 0:
            batch.append(Record(RecordType.STATE, i, f"term=1 vote=1 commit={i}".encode()))
        if i == 20:
            batch.append(Record(RecordType.SNAPSHOT, 20, b"snapshot index=20 term=1"))
        batches.append(batch)
    # A repeated index: a new leader's entries replace 58..60.
    batches.append([Record(RecordType.ENTRY, 58, b"replaced"), Record(RecordType.STATE, 58,
                                                                       b"term=2 vote=2")])
    return batches


def model_segments(batches: list[list[Record]], segment_bytes: int) -> dict[str, bytes]:
    """The segments the format's rules produce, built with the reference codec."""
    segments: dict[str, bytes] = {}
    sticky: dict[int, Record] = {}
    seq, first, data, records = 0, 0, b"", []

    def head(seq, first, prev_digest):
        carried = [sticky[t] for t in ref.STICKY_ORDER if t in sticky]
        return ref.encode_segment(seq, first, prev_digest, [], carried)

    data = head(0, 0, 0)
    for batch in batches:
        size = sum(ref.frame_bytes(len(r.payload)) for r in batch)
        if records and len(data) + size > segment_bytes:
            segments[ref.segment_name(seq, first)] = data
            prev_digest = ref.segment_digest(ref.iter_frames(seq, data))
            seq, first, records = seq + 1, batch[0].index, []
            data = head(seq, first, prev_digest)
        for r in batch:
            data += ref.encode_frame(seq, len(data), r.type, r.index, r.payload)
            records.append(r)
            if r.type in ref.STICKY_TYPES:
                sticky[r.type] = r
    segments[ref.segment_name(seq, first)] = data
    return segments


def write_with_c(path: pathlib.Path) -> dict[str, bytes]:
    with WAL.open(path, segment_bytes=SEGMENT_BYTES) as wal:
        for batch in golden_batches():
            wal.append_sync(batch)
    return {p.name: p.read_bytes()[:data_end(p)] for p in segment_files(path)}


def test_c_writer_matches_the_model_and_the_golden_files(tmp_path):
    written = write_with_c(tmp_path / "wal")
    model = model_segments(golden_batches(), SEGMENT_BYTES)
    assert len(written) >= 3, "the golden WAL should span several segments"
    assert list(written) == list(model)
    for name in model:
        assert written[name] == model[name], name
    if os.environ.get("PYKV_REWRITE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        GOLDEN.mkdir(parents=True)
        for name, data in written.items():
            (GOLDEN / name).write_bytes(data)
    golden = {p.name: p.read_bytes() for p in sorted(GOLDEN.iterdir())}
    assert golden == written


def test_sealed_segments_end_exactly_at_their_data(tmp_path):
    write_with_c(tmp_path / "wal")
    files = segment_files(tmp_path / "wal")
    for path in files[:-1]:
        assert path.stat().st_size == data_end(path), path.name
    assert files[-1].stat().st_size == SEGMENT_BYTES  # preallocated


def test_reader_reads_the_golden_files_back(tmp_path):
    shutil.copytree(GOLDEN, tmp_path / "wal")
    with WAL.open(tmp_path / "wal", segment_bytes=SEGMENT_BYTES) as wal:
        expected = [r for batch in golden_batches() for r in batch]
        assert read_all(wal) == expected
        assert wal.recovery.records == len(expected)
        assert wal.recovery.bytes_cut == 0
        assert wal.last_index == 58
