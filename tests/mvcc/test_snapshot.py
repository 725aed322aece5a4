"""Snapshots: the whole state round-trips through the C-framed, xxhash-
checksummed, zstd-compressed stream; damaged streams are refused."""

from __future__ import annotations

import io
import os

import pytest

from pykv import errors
from pykv._binding import ffi, lib
from pykv.mvcc import Store
from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest
from pykv.mvcc import snapshot


def fill(store, n=3000):
    with store.write(store.applied_index + 1) as w:
        w.lease_grant(9, 60)
        for i in range(n):
            w.put(PutRequest(b"key/%05d" % i, b"value-%d" % i * 3, lease=9 if i % 7 == 0 else 0))
        w.put(PutRequest(b"L" * 700, b"long key"))
    with store.write(store.applied_index + 1) as w:
        w.delete_range(DeleteRangeRequest(b"key/00100", b"key/00200"))
        w.compact(CompactionRequest(3))


def snapshot_bytes(store) -> bytes:
    out = io.BytesIO()
    written = store.write_snapshot(out)
    assert written == len(out.getvalue())
    return out.getvalue()


def test_snapshot_restores_an_equal_store(store, tmp_path):
    fill(store)
    data = snapshot_bytes(store)
    restored = Store.restore_snapshot(io.BytesIO(data), str(tmp_path / "copy" / "db"))
    try:
        assert restored.hash_kv() .hash == store.hash_kv().hash
        assert (restored.revision, restored.compact_revision, restored.applied_index) == \
            (store.revision, store.compact_revision, store.applied_index)
        assert restored.get(b"L" * 700).value == b"long key"
        assert restored.lessor.time_to_live(9, keys=True).keys == \
            store.lessor.time_to_live(9, keys=True).keys
        assert restored.range(RangeRequest(b"key/", b"key0", count_only=True)).count == 2900
    finally:
        restored.close()


def test_snapshot_is_compressed_and_chunked(store):
    fill(store)
    data = snapshot_bytes(store)
    assert len(data) < store.size_in_use_bytes / 3
    assert data.count(b"PKSF") >= 4  # header, chunks, trailer


@pytest.mark.parametrize("where", ["header", "chunk", "trailer"])
def test_a_flipped_byte_is_refused_and_leaves_nothing(store, tmp_path, where):
    fill(store, 200)
    data = bytearray(snapshot_bytes(store))
    offset = {"header": 5, "chunk": 32 + 40 + 32 + 100, "trailer": len(data) - 3}[where]
    data[offset] ^= 0x40
    target = tmp_path / "bad" / "db"
    with pytest.raises(errors.CorruptionError, match="corrupt snapshot"):
        Store.restore_snapshot(io.BytesIO(bytes(data)), str(target))
    assert not os.path.exists(target) and os.listdir(target.parent) == []


def test_a_truncated_stream_is_refused(store, tmp_path):
    fill(store, 200)
    data = snapshot_bytes(store)
    with pytest.raises(errors.CorruptionError, match="ends inside"):
        Store.restore_snapshot(io.BytesIO(data[:-10]), str(tmp_path / "t" / "db"))


def test_a_dropped_chunk_is_caught_by_the_trailer(store, tmp_path):
    fill(store, 20000)  # several chunks
    data = snapshot_bytes(store)
    frames, pos = [], 0
    while pos < len(data):
        stored = int.from_bytes(data[pos + 12:pos + 16], "little")
        frames.append(data[pos:pos + 32 + stored])
        pos += 32 + stored
    assert len(frames) > 4
    tampered = b"".join(frames[:2] + frames[3:])
    with pytest.raises(errors.CorruptionError, match="trailer mismatch"):
        Store.restore_snapshot(io.BytesIO(tampered), str(tmp_path / "d" / "db"))


def test_restore_refuses_to_overwrite_a_store(store, tmp_path):
    data = snapshot_bytes(store)
    with pytest.raises(errors.StorageError, match="existing store"):
        Store.restore_snapshot(io.BytesIO(data), store.path)


def test_frame_codec_bounds_lengths():
    out = ffi.new("uint8_t[]", 32)
    assert lib.pykv_snap_frame_pack(out, lib.PYKV_SNAP_FRAME_CHUNK, 10, 5, 1234) == lib.PYKV_OK
    header = bytes(ffi.buffer(out))
    outs = [ffi.new("uint32_t *"), ffi.new("uint32_t *"), ffi.new("uint32_t *"),
            ffi.new("uint64_t *")]
    assert lib.pykv_snap_frame_unpack(header, 32, *outs) == lib.PYKV_OK
    assert [o[0] for o in outs] == [lib.PYKV_SNAP_FRAME_CHUNK, 10, 5, 1234]
    assert lib.pykv_snap_frame_pack(out, lib.PYKV_SNAP_FRAME_CHUNK,
                                    lib.PYKV_SNAP_CHUNK_MAX + 1, 5, 0) == lib.PYKV_EINVAL
    assert lib.pykv_snap_frame_unpack(header[:31], 31, *outs) == lib.PYKV_ECORRUPT


def test_record_index_refuses_overruns():
    raw = bytes([2]) + (3).to_bytes(4, "little") + (100).to_bytes(4, "little") + b"abc" + b"v"
    cap = 4
    arrays = [ffi.new("uint32_t[]", cap) for _ in range(4)]
    n = ffi.new("size_t *")
    rc = lib.pykv_snap_records_index(raw, len(raw), ffi.new("uint8_t[]", cap), *arrays, cap, n)
    assert rc == lib.PYKV_ECORRUPT and n[0] == 0


def test_snapshot_format_constants_match_the_c_header():
    assert snapshot.SNAP_TRAILER.size == 16 and lib.PYKV_SNAP_FRAME_BYTES == 32


def test_large_values_are_split_across_chunks(store, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "CHUNK_MAX_RAW_BYTES", 64 << 10)
    with store.write(1) as w:
        for i in range(20):
            w.put(PutRequest(b"big%d" % i, bytes([i]) * (30 << 10)))
    data = snapshot_bytes(store)
    assert data.count(b"PKSF") > 10
    restored = Store.restore_snapshot(io.BytesIO(data), str(tmp_path / "big" / "db"))
    try:
        assert restored.hash_kv().hash == store.hash_kv().hash
        assert restored.get(b"big7").value == bytes([7]) * (30 << 10)
    finally:
        restored.close()
