"""Pure-Python reference codec of the WAL format (see ``pykv/wal/__init__.py``).

Slow and simple on purpose: the tests check the C core (``csrc/frame.c``,
``csrc/wal*.c``) against it, and the golden-file test pins both to the same
bytes. It imports nothing of the C core.
"""

from __future__ import annotations

import enum
import re
import struct
from typing import Iterable, Iterator, NamedTuple

HEADER_BYTES = 24
ALIGN_BYTES = 8
SECTOR_BYTES = 512
PAYLOAD_BYTES_MAX = 64 << 20
FORMAT_VERSION = 1
SEGMENT_MAGIC = b"PYKVWAL\0"
SEGMENT_HEADER_PAYLOAD_BYTES = 40
FLAG_CARRIED = 1
USER_TYPE_MAX = 127

# Statuses of check_frame (the same numbers as PYKV_FRAME_* in C).
FRAME_OK = 0
FRAME_ZERO = 1
FRAME_SHORT = 2
FRAME_BAD_HEADER = 3
FRAME_BAD_CRC = 4


class RecordType(enum.IntEnum):
    """What a record holds. The payload is opaque to the WAL; the engine's
    meanings are in docs/architecture.md. 1..127 are the caller's."""

    METADATA = 1  # node and cluster ids; sticky
    ENTRY = 2  # a Raft entry
    STATE = 3  # a Raft hard state (index: the last log index when written); sticky
    SNAPSHOT = 5  # a snapshot marker (index, term, conf state); sticky
    SEGMENT_HEADER = 128  # internal: first frame of every segment


#: Types whose latest record is carried into the head of every new segment.
STICKY_TYPES = frozenset({RecordType.METADATA, RecordType.SNAPSHOT, RecordType.STATE})
#: The order carried copies take in a segment head.
STICKY_ORDER = (RecordType.METADATA, RecordType.SNAPSHOT, RecordType.STATE)


class Record(NamedTuple):
    """One record as appended and read back."""

    type: int
    index: int
    payload: bytes


class Frame(NamedTuple):
    """A frame as found on disk."""

    offset: int
    type: int
    flags: int
    index: int
    payload: bytes
    crc: int
    frame_bytes: int


# --- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 ---------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of data, continuing from crc (chainable like the C one)."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- frames ------------------------------------------------------------------


def frame_bytes(payload_len: int) -> int:
    """Bytes a frame with payload_len bytes of payload takes: header, payload,
    zero padding to a multiple of 8."""
    return (HEADER_BYTES + payload_len + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


def _frame_crc(seq: int, offset: int, frame: bytes) -> int:
    crc = crc32c(struct.pack("<QQ", seq, offset))
    crc = crc32c(frame[:20], crc)
    return crc32c(frame[HEADER_BYTES:], crc)


def _type_known(record_type: int) -> bool:
    return 1 <= record_type <= USER_TYPE_MAX or record_type == RecordType.SEGMENT_HEADER


def encode_frame(seq: int, offset: int, record_type: int, index: int, payload: bytes,
                 flags: int = 0) -> bytes:
    """The frame for one record at offset of segment seq."""
    if not _type_known(record_type) or flags & ~FLAG_CARRIED:
        raise ValueError(f"type {record_type} / flags {flags} cannot be encoded")
    if len(payload) > PAYLOAD_BYTES_MAX:
        raise ValueError(f"payload of {len(payload)} bytes is over {PAYLOAD_BYTES_MAX}")
    size = frame_bytes(len(payload))
    body = bytes(payload) + bytes(size - HEADER_BYTES - len(payload))
    head = struct.pack("<IBBHQI", len(payload), record_type, flags, 0, index, 0)
    crc = _frame_crc(seq, offset, head + b"\0\0\0\0" + body)
    return head + struct.pack("<I", crc) + body


def check_frame(seq: int, offset: int, buf: bytes) -> tuple[int, Frame | None]:
    """Check the frame at the start of buf (the bytes from offset to the end
    of the data); returns (FRAME_* status, the frame when intact)."""
    if len(buf) < 8:
        return (FRAME_ZERO if not any(buf) else FRAME_SHORT), None
    if not any(buf[:8]):
        return FRAME_ZERO, None
    length, record_type, flags, reserved = struct.unpack_from("<IBBH", buf)
    if (not _type_known(record_type) or flags & ~FLAG_CARRIED or reserved
            or length > PAYLOAD_BYTES_MAX):
        return FRAME_BAD_HEADER, None
    size = frame_bytes(length)
    if len(buf) < HEADER_BYTES:
        return FRAME_SHORT, None
    index, reserved2, crc = struct.unpack_from("<QII", buf, 8)
    if reserved2:
        return FRAME_BAD_HEADER, None
    if len(buf) < size:
        return FRAME_SHORT, None
    if _frame_crc(seq, offset, bytes(buf[:size])) != crc:
        return FRAME_BAD_CRC, None
    payload = bytes(buf[HEADER_BYTES:HEADER_BYTES + length])
    return FRAME_OK, Frame(offset, record_type, flags, index, payload, crc, size)


# --- segments ----------------------------------------------------------------

_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.wal"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(seq, first index) of a segment file name, or None."""
    match = _SEGMENT_NAME.match(name)
    return (int(match.group(1), 16), int(match.group(2), 16)) if match else None


def segment_header_payload(seq: int, first_index: int, prev_digest: int) -> bytes:
    return SEGMENT_MAGIC + struct.pack("<IIQQQ", FORMAT_VERSION, prev_digest, seq, first_index,
                                       0)


def segment_digest(frames: Iterable[Frame]) -> int:
    """CRC-32C chained over the frames' stored CRCs (4 bytes each, little-
    endian): what the next segment's header carries."""
    digest = 0
    for frame in frames:
        digest = crc32c(struct.pack("<I", frame.crc), digest)
    return digest


def encode_segment(seq: int, first_index: int, prev_digest: int, records: list[Record],
                   carried: list[Record] = ()) -> bytes:
    """The data of a segment: its header, the carried copies, the records
    (without the preallocated zeros that follow on disk)."""
    out = bytearray(encode_frame(seq, 0, RecordType.SEGMENT_HEADER, first_index,
                                 segment_header_payload(seq, first_index, prev_digest)))
    for record in carried:
        out += encode_frame(seq, len(out), record.type, record.index, record.payload,
                            FLAG_CARRIED)
    for record in records:
        out += encode_frame(seq, len(out), record.type, record.index, record.payload)
    return bytes(out)


def iter_frames(seq: int, data: bytes) -> Iterator[Frame]:
    """The intact frames of a segment's bytes, from offset 0 up to the first
    one that does not check."""
    offset = 0
    while True:
        status, frame = check_frame(seq, offset, data[offset:])
        if status != FRAME_OK:
            return
        yield frame
        offset += frame.frame_bytes
