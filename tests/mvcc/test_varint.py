"""The one hand-written varint encoder agrees with protobuf's own encoding."""

from __future__ import annotations

from hypothesis import given, strategies as st

from pykv.api.etcdserverpb import rpc_pb2
from pykv.mvcc.varint import varint

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
EDGES = [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, (1 << 63) - 1, -1, -(1 << 63)]


def _protobuf_int64(n: int) -> bytes:
    # ResponseHeader.revision is field 3, an int64: tag 0x18, then the varint.
    encoded = rpc_pb2.ResponseHeader(revision=n).SerializeToString()
    return encoded[1:] if encoded else b"\x00"


@given(INT64)
def test_varint_matches_protobuf_for_every_int64(n):
    assert varint(n) == _protobuf_int64(n)


def test_varint_matches_protobuf_at_the_length_boundaries():
    for n in EDGES:
        assert varint(n) == _protobuf_int64(n), n
    assert len(varint(-1)) == 10
