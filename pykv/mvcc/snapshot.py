"""Snapshots of the whole MVCC state as a framed, checksummed, compressed stream.

Stream layout (frames are specified in csrc/pykv_snap.h):

1. a HEADER frame, payload ``SNAP_HEADER``: stream format version, store
   schema version, and (for information) revision, compact revision and
   applied index of the state;
2. CHUNK frames: a zstd-compressed run of records ``table | key | value``
   (every table of ``pykv.mvcc.schema``, each in key order), packed in C;
   ``digest`` is xxh64 of the compressed payload;
3. a TRAILER frame, payload ``SNAP_TRAILER``: the number of records and
   xxh64 over all decompressed chunk payloads in order (so a dropped,
   repeated or reordered chunk is caught even though each chunk is sound).

Every frame header carries its own CRC-32C, and both lengths are bounded
(``PYKV_SNAP_CHUNK_MAX``), so a corrupt stream is refused before anything is
allocated from it. Restore writes into a temporary LMDB file next to the
target and renames it into place only after the trailer checks out.
"""

from __future__ import annotations

import itertools
import os
import struct
from operator import itemgetter
from array import array
from typing import BinaryIO, Callable

import lmdb
import xxhash
import zstandard

from pykv import errors
from pykv._binding import check, ffi, lib
from pykv.mvcc import checkpoint, index, schema as s

FORMAT_VERSION = 1
STREAM_MAGIC = b"PKSF"                  # every frame starts with it (csrc/pykv_snap.h)
SNAP_HEADER = struct.Struct("<IIqqq")   # format, schema, revision, compact revision, applied index
SNAP_TRAILER = struct.Struct("<QQ")     # records, xxh64 of all raw chunk payloads
CHUNK_RECORDS = 8192                    # records per chunk...
CHUNK_MAX_RAW_BYTES = 16 << 20          # ...unless they pass this many bytes before compression
ZSTD_LEVEL = 3
_FRAME = lib.PYKV_SNAP_FRAME_BYTES
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


class _Writer:
    def __init__(self, out: BinaryIO):
        self._out = out
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._all = xxhash.xxh64()
        self.bytes = 0
        self.records = 0

    def frame(self, frame_type: int, raw: bytes, stored: bytes) -> None:
        header = ffi.new("uint8_t[]", _FRAME)
        digest = xxhash.xxh64_intdigest(stored)
        check(lib.pykv_snap_frame_pack(header, frame_type, len(raw), len(stored), digest),
              "writing a snapshot frame", f"{len(raw)} bytes")
        self._out.write(ffi.buffer(header)[:])
        self._out.write(stored)
        self.bytes += _FRAME + len(stored)

    def chunk(self, table_id: int, keys: list[bytes], values: list[bytes]) -> None:
        key_blob, value_blob = b"".join(keys), b"".join(values)
        key_lens, value_lens = array("I", map(len, keys)), array("I", map(len, values))
        cap = len(key_blob) + len(value_blob) + lib.PYKV_SNAP_RECORD_OVERHEAD * len(keys)
        out = bytearray(cap)
        written = ffi.new("size_t *")
        check(lib.pykv_snap_records_pack(table_id, key_blob, ffi.from_buffer("uint32_t[]", key_lens),
                                         value_blob, ffi.from_buffer("uint32_t[]", value_lens),
                                         len(keys), ffi.from_buffer(out), cap, written),
              "packing snapshot records", f"table {table_id}")
        raw = bytes(memoryview(out)[:written[0]])
        self._all.update(raw)
        self.records += len(keys)
        self.frame(lib.PYKV_SNAP_FRAME_CHUNK, raw, self._zstd.compress(raw))

    def trailer(self) -> None:
        raw = SNAP_TRAILER.pack(self.records, self._all.intdigest())
        self.frame(lib.PYKV_SNAP_FRAME_TRAILER, raw, raw)


def write(txn: lmdb.Transaction, tables: index.Tables, out: BinaryIO) -> int:
    """Write every table as seen by ``txn`` to ``out``; returns bytes written."""
    meta = {name: txn.get(name, db=tables.meta) for name in
            (s.META_REVISION, s.META_COMPACT, s.META_APPLIED_INDEX)}
    meta_int = {k: 0 if v is None else s.unpack_i64(v) for k, v in meta.items()}
    writer = _Writer(out)
    header = SNAP_HEADER.pack(FORMAT_VERSION, s.SCHEMA_VERSION, meta_int[s.META_REVISION],
                              meta_int[s.META_COMPACT], meta_int[s.META_APPLIED_INDEX])
    writer.frame(lib.PYKV_SNAP_FRAME_HEADER, header, header)
    for name, table_id in s.TABLES.items():
        records = txn.cursor(tables.by_name[name]).iternext()
        while True:
            items = list(itertools.islice(records, CHUNK_RECORDS))  # C-speed batch
            if not items:
                break
            _write_chunks(writer, table_id, list(map(_FIRST, items)), list(map(_SECOND, items)))
    writer.trailer()
    return writer.bytes


def _write_chunks(writer: _Writer, table_id: int, keys: list[bytes], values: list[bytes]) -> None:
    """One chunk, or several when large values would pass CHUNK_MAX_RAW_BYTES."""
    size = sum(map(len, keys)) + sum(map(len, values)) + lib.PYKV_SNAP_RECORD_OVERHEAD * len(keys)
    if size <= CHUNK_MAX_RAW_BYTES or len(keys) == 1:
        writer.chunk(table_id, keys, values)
        return
    half = len(keys) // 2
    _write_chunks(writer, table_id, keys[:half], values[:half])
    _write_chunks(writer, table_id, keys[half:], values[half:])


class _Reader:
    def __init__(self, stream: BinaryIO, origin: str):
        self._in = stream
        self._origin = origin
        self.offset = 0
        self.chunks = 0

    def _corrupt(self, what: str) -> errors.CorruptionError:
        return errors.CorruptionError(
            f"corrupt snapshot {self._origin} at offset {self.offset} (chunk {self.chunks}): "
            f"{what}", path=self._origin, offset=self.offset)

    def _read_exactly(self, n: int, what: str) -> bytes:
        data = self._in.read(n)
        if data is None or len(data) != n:
            raise self._corrupt(f"stream ends inside {what}")
        return data

    def frame(self) -> tuple[int, int, bytes]:
        """(type, raw_len, stored payload) of the next frame, checked."""
        header = self._read_exactly(_FRAME, "a frame header")
        frame_type = ffi.new("uint32_t *")
        raw_len = ffi.new("uint32_t *")
        stored_len = ffi.new("uint32_t *")
        digest = ffi.new("uint64_t *")
        if lib.pykv_snap_frame_unpack(header, len(header), frame_type, raw_len, stored_len,
                                      digest) != lib.PYKV_OK:
            raise self._corrupt("bad frame header (magic, CRC or length)")
        stored = self._read_exactly(stored_len[0], "a frame payload")
        if xxhash.xxh64_intdigest(stored) != digest[0]:
            raise self._corrupt("payload checksum mismatch")
        self.offset += _FRAME + stored_len[0]
        return frame_type[0], raw_len[0], stored


def restore(stream: BinaryIO, path: str, origin: str | None = None) -> None:
    """Build the LMDB file ``path`` (which must not exist) from a snapshot
    stream. Raises ``CorruptionError`` and leaves nothing behind if the
    stream is damaged."""
    origin = origin or getattr(stream, "name", "<stream>")
    build_store_file(path, lambda env: _fill(env, _Reader(stream, str(origin))))


def build_store_file(path: str, fill: Callable[[lmdb.Environment], None]) -> None:
    """Create the LMDB file ``path`` (which must not exist) with ``fill(env)``,
    which writes every table (it commits its own transactions and may grow
    the map). Built under a temporary name, synced, and renamed into place
    only if ``fill`` returns; if it raises, nothing is left behind."""
    if os.path.exists(path):
        raise errors.StorageError(f"cannot restore a snapshot over the existing store {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".restoring"
    for leftover in (tmp, tmp + "-lock"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    env = lmdb.open(tmp, subdir=False, map_size=64 << 20, max_dbs=len(s.TABLES) + 1, sync=False,
                    metasync=False, readahead=False, meminit=False)
    try:
        fill(env)
        env.sync(True)
    except BaseException:
        env.close()
        for leftover in (tmp, tmp + "-lock"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    env.close()
    os.unlink(tmp + "-lock")
    checkpoint.remove_record(path)  # one left beside a store removed by hand is not this one's
    os.rename(tmp, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _fill(env: lmdb.Environment, reader: _Reader) -> None:
    frame_type, _raw_len, payload = reader.frame()
    if frame_type != lib.PYKV_SNAP_FRAME_HEADER or len(payload) != SNAP_HEADER.size:
        raise reader._corrupt("the stream does not start with a snapshot header")
    fmt, schema_version, *_ = SNAP_HEADER.unpack(payload)
    if fmt != FORMAT_VERSION or schema_version != s.SCHEMA_VERSION:
        raise errors.StorageError(f"snapshot format {fmt}, schema {schema_version}: this pykv "
                                  f"reads format {FORMAT_VERSION}, schema {s.SCHEMA_VERSION}")
    with env.begin(write=True) as txn:
        dbs = {table_id: env.open_db(name, txn=txn, create=True)
               for name, table_id in s.TABLES.items()}
    zstd = zstandard.ZstdDecompressor()
    total = xxhash.xxh64()
    records = 0
    while True:
        frame_type, raw_len, payload = reader.frame()
        if frame_type == lib.PYKV_SNAP_FRAME_TRAILER:
            break
        if frame_type != lib.PYKV_SNAP_FRAME_CHUNK:
            raise reader._corrupt(f"unexpected frame type {frame_type}")
        try:
            raw = zstd.decompress(payload, max_output_size=raw_len)
        except zstandard.ZstdError as exc:
            raise reader._corrupt(f"chunk does not decompress: {exc}") from exc
        if len(raw) != raw_len:
            raise reader._corrupt("chunk length mismatch")
        total.update(raw)
        records += _load_chunk(env, dbs, raw, reader)
        reader.chunks += 1
    if len(payload) != SNAP_TRAILER.size:
        raise reader._corrupt("bad trailer")
    want_records, want_digest = SNAP_TRAILER.unpack(payload)
    if want_records != records or want_digest != total.intdigest():
        raise reader._corrupt(f"trailer mismatch: {records} records read, {want_records} "
                              "written, or a chunk was lost or reordered")
    with env.begin() as txn:
        if txn.get(s.META_SCHEMA, db=dbs[s.TABLES[s.TABLE_META]]) is None:
            raise reader._corrupt("no store metadata in the snapshot")


def _load_chunk(env: lmdb.Environment, dbs: dict, raw: bytes, reader: _Reader) -> int:
    cap = max(1, len(raw) // lib.PYKV_SNAP_RECORD_OVERHEAD)
    table_ids = ffi.new("uint8_t[]", cap)
    arrays = [ffi.new("uint32_t[]", cap) for _ in range(4)]
    n = ffi.new("size_t *")
    if lib.pykv_snap_records_index(raw, len(raw), table_ids, *arrays, cap, n) != lib.PYKV_OK:
        raise reader._corrupt(f"bad record {n[0]} in chunk")
    count = n[0]
    key_offs, key_lens, value_offs, value_lens = (ffi.unpack(a, count) for a in arrays)
    tables = ffi.unpack(ffi.cast("uint8_t *", table_ids), count)
    groups: dict[int, list[tuple[bytes, bytes]]] = {}
    for i in range(count):
        ko, vo = key_offs[i], value_offs[i]
        groups.setdefault(tables[i], []).append((raw[ko:ko + key_lens[i]],
                                                 raw[vo:vo + value_lens[i]]))
    for table_id, items in groups.items():
        db = dbs.get(table_id)
        if db is None:
            raise reader._corrupt(f"unknown table id {table_id}")
        while True:
            try:
                with env.begin(write=True, db=db) as txn:
                    _, added = txn.cursor().putmulti(items, append=True)
                if added != len(items):
                    raise reader._corrupt(f"records out of order in table {table_id}")
                break
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)
            except lmdb.Error as exc:
                raise reader._corrupt(f"cannot store records of table {table_id}: {exc}"
                                      ) from exc
    return count
