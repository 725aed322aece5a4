"""Hostile input to one connection: random frames, random bytes, truncated
frames. The connection answers with a protocol error (RST_STREAM or GOAWAY)
or keeps going; it never crashes, never writes a broken frame, and once it
has said GOAWAY it reads nothing more."""

from __future__ import annotations

import hpack
from hyperframe.frame import GoAwayFrame
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.h2c.client import PREFACE, grpc_message, parse_frames, raw_frame, request_headers
from tests.h2c.native import SEND_END, SEND_MESSAGE, Conn

METHODS = [("/s.S/Unary", "unary"), ("/s.S/Bidi", "stream_stream")]

frame_types = st.integers(0, 12)
stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 0x7fffffff])
payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(grpc_message, st.binary(max_size=40)),
    st.builds(lambda n: (n).to_bytes(4, "big"), st.integers(0, 2**32 - 1)),
    st.builds(lambda k, v: k.to_bytes(2, "big") + v.to_bytes(4, "big"),
              st.integers(0, 8), st.integers(0, 2**32 - 1)),
)


@st.composite
def frames(draw):
    kind = draw(st.sampled_from(["random", "headers", "data", "garbage"]))
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=40))
    stream = draw(stream_ids)
    if kind == "headers":
        path = draw(st.sampled_from([b"/s.S/Unary", b"/s.S/Bidi", b"/s.S/None", b"x"]))
        block = hpack.Encoder().encode(request_headers(path))
        cut = draw(st.integers(0, len(block)))
        flags = draw(st.sampled_from([0x4, 0x5, 0x0, 0x1]))
        return raw_frame(1, flags, stream, block[:cut] if draw(st.booleans()) else block)
    if kind == "data":
        return raw_frame(0, draw(st.sampled_from([0, 1, 8, 9])), stream, draw(payloads))
    return raw_frame(draw(frame_types), draw(st.integers(0, 255)), stream, draw(payloads))


def check_output(conn: Conn, data: bytes) -> None:
    out = parse_frames(data)  # never a broken frame
    if conn.closed and conn.info().http1:
        assert out == []  # handed over as HTTP/1: not a byte of HTTP/2
    elif conn.closed:
        assert out and isinstance(out[-1], GoAwayFrame)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), max_size=12), st.booleans(), st.data())
def test_random_frames_get_protocol_errors_never_a_crash(sequence, with_preface, data):
    conn = Conn(METHODS)
    out = conn.output()
    stream = PREFACE + raw_frame(4, 0, 0) if with_preface else b""
    stream += b"".join(sequence)
    # deliver in random pieces
    at = 0
    while at < len(stream):
        size = data.draw(st.integers(1, max(1, len(stream) - at)))
        conn.feed(stream[at:at + size])
        at += size
        # answer whatever calls came, as Python would
        for event in conn.events():
            if event.kind == "call":
                conn.respond((event.stream, SEND_MESSAGE | SEND_END, 0, b"ok", b""))
        out += conn.output()
    check_output(conn, out)
    if conn.closed:
        assert conn.feed(PREFACE) != 0
        assert conn.output() == b""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_after_the_preface(garbage):
    conn = Conn(METHODS)
    out = conn.output()
    conn.feed(PREFACE + garbage)
    check_output(conn, out + conn.output())


def test_truncated_frame_waits_and_a_closed_connection_stays_closed():
    conn = Conn(METHODS)
    assert conn.feed(PREFACE) == 0
    conn.output()  # our preface
    whole = raw_frame(4, 0, 0) + raw_frame(6, 0, 0, b"12345678")
    assert conn.feed(whole[:-3]) == 0
    assert [type(f).__name__ for f in parse_frames(conn.output())] == ["SettingsFrame"]
    assert conn.feed(whole[-3:]) == 0
    assert [type(f).__name__ for f in parse_frames(conn.output())] == ["PingFrame"]
