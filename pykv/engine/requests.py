"""The payload of a Raft entry: a batch of client requests.

The Raft loop packs every request that arrived while it was busy into ONE
entry (batching is per Ready anyway; one entry per batch keeps the Raft and
WAL cost per batch, not per request). Layout of ``Entry.data``::

    version (1 byte, = 1)
    then, per request:
      kind        1 byte   (Kind below)
      request_id  8 bytes  big-endian; unique across the cluster: the proposer's
                           waiter for the result is keyed by it
      length      4 bytes  big-endian
      body        length bytes: the request's protobuf encoding, usually the very
                  bytes the client sent (the front end does not re-encode them)

An empty ``data`` is the empty entry a new leader appends; it carries nothing.
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections.abc import Iterable, Iterator

VERSION = 1
_HEADER = struct.Struct(">BQI")
_VERSION_BYTE = bytes([VERSION])


class Kind(enum.IntEnum):
    PUT = 1
    DELETE_RANGE = 2
    TXN = 3
    COMPACTION = 4
    LEASE_GRANT = 5
    LEASE_REVOKE = 6
    # 7 is reserved (lease checkpoints), 9 too (reads through the log): kinds
    # are stored in WAL entries, so numbers are never reused.
    ALARM = 8


class EntryFormatError(ValueError):
    """An entry's data does not follow the layout above (a bug or corruption)."""


def encode(requests: Iterable[tuple[int, int, bytes]]) -> bytes:
    """Pack ``(kind, request_id, body)`` triples into one entry's data."""
    pack = _HEADER.pack
    parts = [_VERSION_BYTE]
    for kind, request_id, body in requests:
        parts.append(pack(kind, request_id, len(body)))
        parts.append(body)
    return b"".join(parts)


def decode(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(kind, request_id, body)`` from one entry's data."""
    if not data:
        return
    if data[0] != VERSION:
        raise EntryFormatError(f"entry data version {data[0]} is not {VERSION}")
    view = memoryview(data)
    offset, end = 1, len(data)
    unpack = _HEADER.unpack_from
    size = _HEADER.size
    while offset < end:
        if end - offset < size:
            raise EntryFormatError(f"truncated request header at offset {offset}")
        kind, request_id, length = unpack(data, offset)
        offset += size
        if length > end - offset:
            raise EntryFormatError(
                f"request at offset {offset} claims {length} bytes, {end - offset} remain")
        yield kind, request_id, view[offset:offset + length]
        offset += length


class RequestIds:
    """Request ids unique across the cluster and across restarts.

    The top 16 bits are the low bits of the member id (as etcd's idutil), the
    rest a counter that starts from the wall clock in milliseconds at start-up,
    so a restarted member does not reuse ids of requests still in flight.
    """

    def __init__(self, member_id: int, now_ms: int):
        prefix = (member_id & 0xFFFF) << 48
        self._next = itertools.count(prefix | ((now_ms << 8) & ((1 << 48) - 1))).__next__

    def next(self) -> int:
        return self._next()
