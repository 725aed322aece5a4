"""The protobuf varint encoder of every hand-built answer: the MVCC store's
``RangeRawResult`` and the server's responses (``pykv.server.responses``).
It lives in mvcc, the lowest layer that encodes protobuf by hand, because the
server may import mvcc and mvcc may not import the server. No imports: any
module of the store can use it without a cycle.
"""

from __future__ import annotations

_ONE_BYTE = [bytes((n,)) for n in range(0x80)]  # most lengths, counts and small ids


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint; a negative int64 takes ten bytes (two's
    complement), as protobuf encodes it. ``n`` must fit in 64 bits."""
    if n < 0x80:
        if n >= 0:
            return _ONE_BYTE[n]
        n += 1 << 64
    elif n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
