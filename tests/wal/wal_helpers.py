"""Helpers shared by the WAL tests (imported as wal_helpers: pytest puts
this directory on sys.path)."""

from __future__ import annotations

import hashlib
import os
import pathlib

from pykv.wal import WAL, Record, RecordType
from pykv.wal import record as ref

# Small segments make rotation, sealing and release cheap to reach.
SMALL_SEGMENT_BYTES = 8192


def payload_for(index: int, size: int | None = None) -> bytes:
    """A payload that says which record it belongs to, of a size that varies
    with the index (so frames end at every alignment)."""
    seed = hashlib.blake2b(index.to_bytes(8, "little"), digest_size=32).digest()
    size = (index * 7) % 61 + 1 if size is None else size
    return (seed * (size // 32 + 1))[:size]


def entries(first: int, last: int, size: int | None = None) -> list[Record]:
    return [Record(RecordType.ENTRY, i, payload_for(i, size)) for i in range(first, last + 1)]


def read_all(wal: WAL, from_index: int = 0, max_records: int = 4096) -> list[Record]:
    return [record for batch in wal.read(from_index, max_records) for record in batch]


def segment_files(path: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in path.iterdir() if ref.parse_segment_name(p.name))


def data_end(path: pathlib.Path) -> int:
    """Offset after the last intact frame of a segment file (reference codec)."""
    seq, _ = ref.parse_segment_name(path.name)
    end = 0
    for frame in ref.iter_frames(seq, path.read_bytes()):
        end = frame.offset + frame.frame_bytes
    return end


def frame_offsets(path: pathlib.Path) -> list[ref.Frame]:
    seq, _ = ref.parse_segment_name(path.name)
    return list(ref.iter_frames(seq, path.read_bytes()))


def patch(path: pathlib.Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo_root())
    env.pop("PYKV_FAILPOINTS", None)
    env.update(extra)
    return env
