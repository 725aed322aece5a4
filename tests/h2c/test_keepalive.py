"""Keepalive on one connection, sans I/O, with the clock driven by the test:
the server's pings to a silent client (etcd's --grpc-keepalive-interval and
--grpc-keepalive-timeout) and its policy on the client's pings
(--grpc-keepalive-min-time, grpc-go's ping strikes)."""

from __future__ import annotations

import hpack
from hyperframe.frame import GoAwayFrame, PingFrame

from pykv._binding import lib
from tests.h2c.client import PREFACE, parse_frames, raw_frame, request_headers
from tests.h2c.native import SEND_END, SEND_MESSAGE, Conn

METHODS = [("/s.S/Unary", "unary"), ("/s.S/Bidi", "stream_stream")]
S = 1_000_000  # microseconds
CALM = 11


def open_conn(now_us: int = 1000 * S, **config) -> Conn:
    conn = Conn(METHODS, **config)
    conn.set_time(now_us)
    conn.feed(PREFACE + raw_frame(4, 0, 0))
    conn.output()  # our preface and the SETTINGS ack
    return conn


def ping(opaque: bytes = b"12345678", ack: bool = False) -> bytes:
    return raw_frame(6, 1 if ack else 0, 0, opaque)


def test_a_silent_client_is_pinged_after_the_interval_and_closed_after_the_timeout():
    conn = open_conn(keepalive_interval_us=10 * S, keepalive_timeout_us=3 * S)
    start = 1000 * S
    rc, due = conn.tick(start)
    assert (rc, due) == (0, start + 10 * S)
    assert conn.tick(start + 5 * S) == (0, start + 10 * S)  # early: nothing happens
    assert conn.output() == b""
    rc, due = conn.tick(start + 10 * S)
    [frame] = parse_frames(conn.output())
    assert isinstance(frame, PingFrame) and "ACK" not in frame.flags
    assert (rc, due) == (0, start + 13 * S) and conn.info().ping_outstanding
    rc, _ = conn.tick(start + 13 * S)
    assert rc == lib.PYKV_ECLOSED and conn.closed
    assert conn.output() == b""  # grpc-go closes without a GOAWAY here
    [event] = conn.events()
    assert event.kind == "conn_error" and b"keepalive" in event.payload


def test_an_answered_ping_keeps_the_connection_and_the_next_comes_an_interval_later():
    conn = open_conn(keepalive_interval_us=10 * S, keepalive_timeout_us=3 * S)
    start = 1000 * S
    conn.tick(start)
    conn.tick(start + 10 * S)
    [frame] = parse_frames(conn.output())
    conn.set_time(start + 11 * S)
    conn.feed(ping(frame.opaque_data, ack=True))
    rc, due = conn.tick(start + 13 * S)
    assert rc == 0 and due == start + 21 * S  # an interval after the answer
    assert not conn.info().ping_outstanding and conn.output() == b""


def test_any_bytes_from_the_client_postpone_the_ping():
    conn = open_conn(keepalive_interval_us=10 * S, keepalive_timeout_us=3 * S)
    start = 1000 * S
    conn.tick(start)
    conn.set_time(start + 9 * S)
    conn.feed(raw_frame(8, 0, 0, (100).to_bytes(4, "big")))  # a WINDOW_UPDATE
    assert conn.tick(start + 10 * S) == (0, start + 19 * S)
    assert conn.output() == b""


def test_keepalive_interval_zero_never_pings():
    conn = open_conn(keepalive_interval_us=0)
    assert conn.tick(1000 * S) == (0, 0)
    assert conn.tick(10**6 * S) == (0, 0)
    assert conn.output() == b""


def call(conn: Conn, stream: int) -> None:
    """Open a bidirectional call (it stays open)."""
    block = hpack.Encoder().encode(request_headers(b"/s.S/Bidi"))
    conn.feed(raw_frame(1, 0x4, stream, block))
    assert [e.kind for e in conn.events()] == ["call"]


def test_pings_closer_than_min_time_get_goaway_enhance_your_calm_on_the_third_strike():
    conn = open_conn(keepalive_min_time_us=5 * S)
    call(conn, 1)
    now = 1000 * S
    for strike in range(4):
        conn.set_time(now + strike * S)  # one second apart: too often
        conn.feed(ping())
        frames = parse_frames(conn.output())
        assert isinstance(frames[0], PingFrame) and "ACK" in frames[0].flags
        if strike < 3:
            assert conn.info().ping_strikes == strike and not conn.closed
    assert conn.closed
    goaway = frames[-1]
    assert isinstance(goaway, GoAwayFrame) and goaway.error_code == CALM
    assert goaway.additional_data == b"too_many_pings"
    assert [e.kind for e in conn.events()] == ["cancel", "conn_error"]


def test_pings_min_time_apart_are_never_strikes():
    conn = open_conn(keepalive_min_time_us=5 * S)
    call(conn, 1)
    for i in range(10):
        conn.set_time(1000 * S + i * 5 * S)
        conn.feed(ping())
    assert conn.info().ping_strikes == 0 and not conn.closed


def test_a_ping_after_our_data_is_no_strike():
    """Clients ping to measure bandwidth when data arrives (grpc-go's BDP
    estimator): grpc-go forgives strikes once it has sent HEADERS or DATA."""
    conn = open_conn(keepalive_min_time_us=5 * S)
    call(conn, 1)
    now = 1000 * S
    for i in range(6):
        conn.respond((1, SEND_MESSAGE, 0, b"event", b""))
        conn.output()
        conn.set_time(now + i * 1000)
        conn.feed(ping())
    assert conn.info().ping_strikes == 0 and not conn.closed
    conn.respond((1, SEND_END, 0, b"", b""))


def test_without_an_open_call_pings_need_two_hours():
    conn = open_conn(keepalive_min_time_us=5 * S)
    now = 1000 * S
    for i in range(4):
        conn.set_time(now + i * 60 * S)  # a minute apart: fine with a call, not without
        conn.feed(ping())
    assert conn.closed
    assert parse_frames(conn.output())[-1].error_code == CALM


def test_min_time_zero_accepts_any_rate():
    conn = open_conn(keepalive_min_time_us=0)
    for i in range(20):
        conn.set_time(1000 * S + i)
        conn.feed(ping())
    assert not conn.closed

