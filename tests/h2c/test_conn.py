"""One HTTP/2 connection carrying gRPC (csrc/h2_conn.c), sans I/O: driven by
an independent client (hyper-h2) and by hand-made frames."""

from __future__ import annotations

import struct

import h2.errors
import h2.settings
import hpack
import pytest
from hyperframe.frame import (GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

from tests.h2c.client import (PREFACE, Client, grpc_message, parse_frames, raw_frame,
                             request_headers)
from pykv._binding import lib
from tests.h2c.native import NOTIFY_DRAIN, SEND_END, SEND_MESSAGE, Conn

METHODS = [("/etcdserverpb.KV/Put", "unary"), ("/etcdserverpb.KV/Range", "unary"),
           ("/etcdserverpb.Watch/Watch", "stream_stream"),
           ("/etcdserverpb.Maintenance/Snapshot", "unary_stream")]
PUT, RANGE, WATCH, SNAPSHOT = (m[0].encode() for m in METHODS)

OK = 0
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 4, 8, 12, 13


@pytest.fixture
def conn():
    return Conn(METHODS)


@pytest.fixture
def client(conn):
    return Client(conn)


def finish(conn, client, stream, *messages, status=OK, detail=b""):
    responses = [(stream, SEND_MESSAGE, 0, m, b"") for m in messages]
    responses.append((stream, SEND_END, status, b"", detail))
    assert conn.respond(*responses) == 0
    client.pump()
    return client.responses[stream]


# --- calls ---------------------------------------------------------------------------

def test_unary_call_arrives_once_the_request_ends_with_metadata_and_timeout(conn, client):
    stream = client.unary(PUT, b"put-request", (b"token", b"abc"), (b"grpc-timeout", b"250m"),
                          (b"user-agent", b"grpc-go/1.26.0"))
    [event] = conn.events()
    assert (event.kind, event.stream, event.method) == ("call", stream, 0)
    assert event.payload == b"put-request"
    assert event.metadata == [(b"token", b"abc"), (b"user-agent", b"grpc-go/1.26.0")]
    assert event.timeout_us == 250_000
    response = finish(conn, client, stream, b"put-response")
    assert response.headers[b":status"] == b"200"
    assert response.headers[b"content-type"] == b"application/grpc"
    assert response.messages == [b"put-response"]
    assert response.status == OK and response.ended
    assert conn.info().streams == 0


@pytest.mark.parametrize("text, micros", [
    (b"1H", 3_600_000_000), (b"2M", 120_000_000), (b"3S", 3_000_000), (b"4m", 4000),
    (b"5u", 5), (b"1500n", 2), (b"99999999S", 99_999_999_000_000),
])
def test_grpc_timeout_units(conn, client, text, micros):
    client.unary(PUT, b"", (b"grpc-timeout", text))
    assert conn.events()[0].timeout_us == micros


def test_call_without_timeout_says_so(conn, client):
    client.unary(PUT, b"x")
    assert conn.events()[0].timeout_us == -1


def test_error_status_is_percent_encoded_in_grpc_message(conn, client):
    stream = client.unary(PUT, b"x")
    conn.events()
    text = "etcdserver: 100% bad\nvalue é".encode()
    response = finish(conn, client, stream, status=INTERNAL, detail=text)
    # Trailers-Only: one HEADERS with the status, no DATA
    assert response.headers[b":status"] == b"200" and response.data == b""
    assert response.status == INTERNAL
    assert response.message == b"etcdserver: 100%25 bad%0Avalue %C3%A9"


def test_many_calls_in_one_feed_come_out_in_order(conn, client):
    streams = [client.start(PUT) for _ in range(50)]
    for i, stream in enumerate(streams):
        client.h2.send_data(stream, grpc_message(b"req%d" % i), end_stream=True)
    client.pump()
    events = conn.events()
    assert [(e.stream, e.payload) for e in events] == \
        [(s, b"req%d" % i) for i, s in enumerate(streams)]
    conn.respond(*[(s, SEND_MESSAGE | SEND_END, 0, b"resp%d" % i, b"")
                   for i, s in enumerate(streams)])
    client.pump()
    assert [client.responses[s].messages for s in streams] == [[b"resp%d" % i] for i in range(50)]


def test_bidirectional_call_reports_headers_messages_and_half_close(conn, client):
    stream = client.start(WATCH, (b"hasleader", b"true"))
    client.pump()
    [call] = conn.events()
    assert (call.kind, call.payload, call.metadata) == ("call", b"", [(b"hasleader", b"true")])
    # two messages in one DATA frame, then one split over three frames
    client.send(stream, grpc_message(b"one") + grpc_message(b"two"))
    third = grpc_message(b"three" * 10)
    for piece in (third[:3], third[3:20], third[20:]):
        client.send(stream, piece)
    assert [(e.kind, e.payload) for e in conn.events()] == \
        [("message", b"one"), ("message", b"two"), ("message", b"three" * 10)]
    conn.respond((stream, SEND_MESSAGE, 0, b"created", b""))
    client.pump()
    client.send(stream, b"", end=True)
    assert [e.kind for e in conn.events()] == ["half_close"]
    response = finish(conn, client, stream, b"event")
    assert response.messages == [b"created", b"event"] and response.status == OK


def test_server_ends_a_stream_the_client_still_sends_on_with_rst_no_error(conn, client):
    stream = client.start(WATCH)
    client.pump()
    conn.events()
    response = finish(conn, client, stream, status=OK)
    assert response.ended and response.reset == h2.errors.ErrorCodes.NO_ERROR
    assert conn.info().streams == 0


def test_client_reset_cancels_the_call_and_drops_its_response(conn, client):
    stream = client.unary(RANGE, b"slow")
    conn.events()
    client.h2.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    client.pump()
    assert [(e.kind, e.stream) for e in conn.events()] == [("cancel", stream)]
    assert conn.respond((stream, SEND_MESSAGE | SEND_END, 0, b"late", b"")) == 0
    assert conn.output() == b""


def test_unknown_method_and_service_get_grpc_gos_unimplemented(conn, client):
    method = client.unary(b"/etcdserverpb.KV/Nope", b"")
    service = client.unary(b"/no.Such/Thing", b"")
    assert conn.events() == []
    assert client.responses[method].status == UNIMPLEMENTED
    assert client.responses[method].message == b"unknown method Nope for service etcdserverpb.KV"
    assert client.responses[service].message == b"unknown service no.Such"


def test_message_over_the_limit_is_resource_exhausted_and_the_rest_ignored():
    conn = Conn(METHODS, max_receive_bytes=1000)
    client = Client(conn)
    stream = client.start(PUT)
    client.send(stream, grpc_message(b"x" * 5000)[:3000])
    response = client.responses[stream]
    assert response.status == RESOURCE_EXHAUSTED
    assert response.message == b"grpc: received message larger than max (5000 vs. 1000)"
    assert response.reset == h2.errors.ErrorCodes.NO_ERROR
    # the client's remaining bytes are taken (and counted) without a complaint
    conn.feed(raw_frame(0, 1, stream, b"y" * 2000))
    assert not conn.closed and conn.events() == []
    # ... and the next call works
    again = client.unary(PUT, b"small")
    assert conn.events()[0].stream == again


def test_compressed_message_is_unimplemented(conn, client):
    stream = client.start(PUT)
    client.send(stream, grpc_message(b"zz", compressed=True), end=True)
    assert conn.events() == []
    assert client.responses[stream].status == UNIMPLEMENTED


@pytest.mark.parametrize("frames, why", [
    ([], "no message"),
    ([grpc_message(b"a"), grpc_message(b"b")], "two messages"),
    ([grpc_message(b"abcdef")[:4]], "ends inside a message"),
])
def test_unary_request_must_hold_exactly_one_message(conn, client, frames, why):
    stream = client.start(PUT)
    client.send(stream, b"".join(frames), end=True)
    assert conn.events() == [], why
    assert client.responses[stream].status == INTERNAL, why


def test_bad_content_type_method_and_oversized_headers_are_refused():
    conn = Conn(METHODS, max_header_list_bytes=2048)
    client = Client(conn)
    wrong_type = client.h2.get_next_available_stream_id()
    client.h2.send_headers(wrong_type, [(b":method", b"POST"), (b":scheme", b"http"),
                                        (b":path", PUT), (b":authority", b"x"),
                                        (b"content-type", b"text/plain")],
                           end_stream=True)
    wrong_method = client.h2.get_next_available_stream_id()
    client.h2.send_headers(wrong_method, [(b":method", b"GET"), (b":scheme", b"http"),
                                          (b":path", PUT), (b":authority", b"x")], end_stream=True)
    big = client.start(PUT, (b"token", b"t" * 4000), end=True)
    client.pump()
    assert conn.events() == []
    assert client.responses[wrong_type].headers[b":status"] == b"415"
    assert client.responses[wrong_method].headers[b":status"] == b"405"
    assert client.responses[big].headers[b":status"] == b"431"
    assert client.responses[big].status == RESOURCE_EXHAUSTED
    assert not conn.closed


@pytest.mark.parametrize("headers, why", [
    ([(b":method", b"POST"), (b":path", b"/x")], "no :scheme"),
    ([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"), (b"X-Upper", b"1")],
     "an upper-case name"),
    ([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"), (b"connection", b"x")],
     "a connection-specific header"),
    ([(b":method", b"POST"), (b"a", b"b"), (b":scheme", b"http"), (b":path", b"/x")],
     "a pseudo-header after a regular one"),
    ([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"), (b"te", b"gzip")],
     "te other than trailers"),
])
def test_malformed_requests_are_reset_with_protocol_error(conn, headers, why):
    Client(conn)  # preface and settings
    encoder = hpack.Encoder()
    conn.output()
    conn.feed(raw_frame(1, 0x5, 1, encoder.encode(headers)))
    [frame] = parse_frames(conn.output())
    assert isinstance(frame, RstStreamFrame) and frame.error_code == 1, why
    assert not conn.closed


# --- flow control ---------------------------------------------------------------------

def test_large_answer_waits_for_the_clients_windows():
    conn = Conn(METHODS)
    client = Client(conn, auto_ack=False,
                    settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    stream = client.unary(RANGE, b"big")
    conn.events()
    body = bytes(range(256)) * 400  # 102400 bytes: past the connection window too
    conn.respond((stream, SEND_MESSAGE | SEND_END, 0, body, b""))
    client.pump()
    response = client.responses[stream]
    assert len(response.data) == 1000 and not response.ended  # the stream window
    assert conn.info().queued_bytes == len(body) + 5 - 1000
    connection_window = 65535
    while not response.ended:
        # open the stream window wide, the connection window a bit at a time
        client.h2.increment_flow_control_window(200_000, stream_id=stream)
        client.h2.increment_flow_control_window(30_000)
        connection_window += 30_000
        client.pump()
        assert len(response.data) <= connection_window
    assert response.messages == [body] and response.status == OK
    assert conn.info().queued_bytes == 0


def test_window_shrunk_by_settings_goes_negative_and_recovers():
    conn = Conn(METHODS)
    client = Client(conn, auto_ack=False)
    stream = client.unary(RANGE, b"x")
    conn.events()
    conn.respond((stream, SEND_MESSAGE, 0, b"a" * 60000, b""))
    client.pump()
    assert len(client.responses[stream].data) == 60005
    client.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    client.pump()  # the stream window is now 0 - 60005 < 0
    conn.respond((stream, SEND_MESSAGE | SEND_END, 0, b"b" * 10, b""))
    client.pump()
    assert len(client.responses[stream].data) == 60005
    client.h2.increment_flow_control_window(60005 + 15, stream_id=stream)
    client.h2.increment_flow_control_window(100)
    client.pump()
    assert client.responses[stream].messages == [b"a" * 60000, b"b" * 10]
    assert client.responses[stream].ended


def test_big_request_flows_in_because_the_server_tops_up_windows(conn, client):
    body = b"v" * (3 << 20)  # more than the stream and connection windows' halves
    stream = client.unary(PUT, body)
    [event] = conn.events()
    assert event.stream == stream and event.payload == body
    assert conn.info().recv_window > (8 << 20)


def test_drained_event_comes_once_the_queue_is_empty():
    conn = Conn(METHODS)
    client = Client(conn, auto_ack=False,
                    settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    stream = client.unary(SNAPSHOT, b"")
    conn.events()
    conn.respond((stream, SEND_MESSAGE | NOTIFY_DRAIN, 0, b"c" * 1000, b""))
    client.pump()
    assert conn.events() == []
    client.h2.increment_flow_control_window(5000, stream_id=stream)
    client.pump()
    assert [(e.kind, e.stream) for e in conn.events()] == [("drained", stream)]
    # already empty: answered at once
    conn.respond((stream, NOTIFY_DRAIN, 0, b"", b""))
    assert [e.kind for e in conn.events()] == ["drained"]


def test_padded_data_counts_against_the_window(conn, client):
    stream = client.start(PUT)
    client.pump()
    payload = grpc_message(b"padded")
    padded = bytes([200]) + payload + b"\0" * 200
    conn.feed(raw_frame(0, 0x8 | 0x1, stream, padded))
    [event] = conn.events()
    assert event.payload == b"padded"
    assert conn.info().recv_window == (16 << 20) - len(padded)


# --- the connection's own frames ---------------------------------------------------

def test_server_preface_announces_settings_and_a_large_connection_window():
    conn = Conn(METHODS, max_concurrent_streams=100, stream_window_bytes=1 << 20)
    assert conn.output() == b""  # nothing before the client's preface (HTTP/1 may come)
    conn.feed(PREFACE[:10])
    assert conn.output() == b""
    conn.feed(PREFACE[10:])
    settings, window = parse_frames(conn.output())
    assert isinstance(settings, SettingsFrame)
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100
    assert settings.settings[SettingsFrame.INITIAL_WINDOW_SIZE] == 1 << 20
    assert isinstance(window, WindowUpdateFrame) and window.window_increment == (16 << 20) - 65535


def test_ping_and_settings_are_acknowledged(conn):
    conn.feed(PREFACE)
    conn.output()
    conn.feed(raw_frame(4, 0, 0, struct.pack(">HI", 5, 32768)) + raw_frame(6, 0, 0, b"12345678"))
    ack, pong = parse_frames(conn.output())
    assert isinstance(ack, SettingsFrame) and "ACK" in ack.flags
    assert isinstance(pong, PingFrame) and "ACK" in pong.flags and pong.opaque_data == b"12345678"
    assert conn.info().peer_max_frame_bytes == 32768


def test_headers_with_padding_priority_and_continuation(conn):
    conn.feed(PREFACE + raw_frame(4, 0, 0))
    block = hpack.Encoder().encode(request_headers(PUT, (b"token", b"t")))
    first = bytes([3]) + struct.pack(">IB", 0, 16) + block[:7] + b"\0\0\0"  # PADDED|PRIORITY
    conn.feed(raw_frame(1, 0x8 | 0x20, 1, first) + raw_frame(9, 0, 1, block[7:20])
              + raw_frame(9, 0x4, 1, block[20:]) + raw_frame(0, 1, 1, grpc_message(b"m")))
    [event] = conn.events()
    assert (event.kind, event.payload, event.metadata) == ("call", b"m", [(b"token", b"t")])


def test_every_split_of_the_input_gives_the_same_events():
    recorder = Conn(METHODS)
    sent = []
    original = recorder.feed
    recorder.feed = lambda data: (sent.append(data), original(data))[1]
    client = Client(recorder)
    client.unary(PUT, b"alpha", (b"token", b"x"))
    watch = client.start(WATCH)
    client.send(watch, grpc_message(b"w1") + grpc_message(b"w2" * 20), end=True)
    client.h2.ping(b"pingpong")
    client.pump()
    stream_bytes = b"".join(sent)
    expected = [(e.kind, e.stream, e.payload, e.metadata) for e in recorder.events()]
    assert [k for k, *_ in expected] == ["call", "call", "message", "message", "half_close"]

    for split in range(1, len(stream_bytes)):
        conn = Conn(METHODS)
        assert conn.feed(stream_bytes[:split]) == 0
        assert conn.feed(stream_bytes[split:]) == 0
        got = [(e.kind, e.stream, e.payload, e.metadata) for e in conn.events()]
        assert got == expected, f"split at {split}"
    conn = Conn(METHODS)
    for i in range(len(stream_bytes)):
        assert conn.feed(stream_bytes[i:i + 1]) == 0
    assert [(e.kind, e.stream, e.payload, e.metadata) for e in conn.events()] == expected


# --- errors -----------------------------------------------------------------------------

def goaway_after(frames: bytes, conn: Conn | None = None) -> GoAwayFrame:
    conn = conn or Conn(METHODS)
    conn.output()
    rc = conn.feed(PREFACE + raw_frame(4, 0, 0) + frames)
    assert rc != 0 and conn.closed
    out = parse_frames(conn.output())
    assert isinstance(out[-1], GoAwayFrame)
    assert conn.feed(raw_frame(6, 0, 0, b"12345678")) != 0  # nothing more is read
    return out[-1]


def headers_frame(stream: int, end_stream: bool = True, encoder=None) -> bytes:
    block = (encoder or hpack.Encoder()).encode(request_headers(PUT))
    return raw_frame(1, 0x4 | (0x1 if end_stream else 0), stream, block)


PROTOCOL, FLOW, FRAME_SIZE, COMPRESSION, CALM = 1, 3, 6, 9, 11


@pytest.mark.parametrize("frames, code", [
    (raw_frame(0, 0, 0, b"x"), PROTOCOL),                                   # DATA on stream 0
    (raw_frame(0, 0, 7, b"x"), PROTOCOL),                                   # DATA on an idle stream
    (raw_frame(1, 0x4, 0, b"\x82"), PROTOCOL),                              # HEADERS on stream 0
    (raw_frame(1, 0x4, 2, b"\x82"), PROTOCOL),                              # even stream id
    (headers_frame(5) + headers_frame(3), PROTOCOL),                        # ids must grow
    (raw_frame(9, 0x4, 1, b"\x82"), PROTOCOL),                              # CONTINUATION alone
    (raw_frame(1, 0, 1, b"\x82") + raw_frame(6, 0, 0, b"12345678"), PROTOCOL),  # inside a block
    (raw_frame(1, 0x4, 1, b"\x80"), COMPRESSION),                           # HPACK index 0
    (raw_frame(0, 0, 1, b"x" * 16385), FRAME_SIZE),                         # over MAX_FRAME_SIZE
    (raw_frame(4, 0, 0, b"12345"), FRAME_SIZE),                             # SETTINGS length
    (raw_frame(4, 1, 0, b"123456"), FRAME_SIZE),                            # SETTINGS ack payload
    (raw_frame(4, 0, 1), PROTOCOL),                                         # SETTINGS on a stream
    (raw_frame(4, 0, 0, struct.pack(">HI", 5, 100)), PROTOCOL),             # MAX_FRAME_SIZE small
    (raw_frame(4, 0, 0, struct.pack(">HI", 4, 1 << 31)), FLOW),             # window too large
    (raw_frame(4, 0, 0, struct.pack(">HI", 2, 2)), PROTOCOL),               # ENABLE_PUSH 2
    (raw_frame(6, 0, 0, b"1234"), FRAME_SIZE),                              # PING length
    (raw_frame(6, 0, 1, b"12345678"), PROTOCOL),                            # PING on a stream
    (raw_frame(8, 0, 0, struct.pack(">I", 0)), PROTOCOL),                   # WINDOW_UPDATE 0
    (raw_frame(8, 0, 0, struct.pack(">I", 0x7fffffff)), FLOW),              # window overflow
    (raw_frame(8, 0, 0, b"123"), FRAME_SIZE),                               # WINDOW_UPDATE length
    (raw_frame(3, 0, 0, struct.pack(">I", 8)), PROTOCOL),                   # RST_STREAM stream 0
    (raw_frame(3, 0, 9, struct.pack(">I", 8)), PROTOCOL),                   # RST_STREAM idle
    (raw_frame(5, 0x4, 1, b"\0\0\0\x02\x82"), PROTOCOL),                    # PUSH_PROMISE
    (raw_frame(7, 0, 1, b"\0" * 8), PROTOCOL),                              # GOAWAY on a stream
    (headers_frame(1, end_stream=False) + raw_frame(0, 0x8, 1, b"\x05abc"), PROTOCOL),  # padding
], ids=[
    "data-stream-0", "data-idle", "headers-stream-0", "headers-even", "ids-decrease",
    "continuation-alone", "frame-in-block", "hpack-index-0", "frame-too-big",
    "settings-length", "settings-ack-payload", "settings-on-stream", "max-frame-small",
    "window-setting-too-large", "enable-push-2", "ping-length", "ping-on-stream",
    "window-update-0", "window-overflow", "window-update-length", "rst-stream-0",
    "rst-idle", "push-promise", "goaway-on-stream", "padding-too-long"])
def test_connection_errors_answer_goaway_with_the_code(frames, code):
    assert goaway_after(frames).error_code == code


def test_continuation_flood_is_refused():
    conn = Conn(METHODS, max_header_list_bytes=1024)
    flood = raw_frame(1, 0, 1, b"\x82") + raw_frame(9, 0, 1, b"\x82" * 16000) * 3
    assert goaway_after(flood, conn).error_code == CALM


def test_not_http2_is_refused():
    conn = Conn(METHODS)
    conn.output()
    assert conn.feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") != 0  # a TLS hello
    frames = parse_frames(conn.output())
    assert isinstance(frames[-1], GoAwayFrame) and frames[-1].error_code == PROTOCOL
    assert not conn.info().http1


@pytest.mark.parametrize("pieces", [
    [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"],
    [b"P", b"OST /v3/kv/put HTTP/1.1\r\n"],   # "P" could still be HTTP/2's "PRI"
    [b"PRI", b" * HTTP/1.1\r\n"],
    [b"DELE", b"TE /x HTTP/1.0\r\n"],
])
def test_an_http1_request_line_is_handed_over_with_every_byte(pieces):
    conn = Conn(METHODS)
    for piece in pieces[:-1]:
        assert conn.feed(piece) == 0
        assert conn.output() == b"" and not conn.info().http1
    assert conn.feed(pieces[-1]) == lib.PYKV_ECLOSED
    assert conn.info().http1
    assert conn.output() == b""  # no HTTP/2 frame reaches an HTTP/1 client
    assert conn.http1_input() == b"".join(pieces)
    assert conn.events() == []


@pytest.mark.parametrize("start", [b"GET\r\n", b"get / HTTP/1.1\r\n", b"ABCDEFGHIJKLMNOPQ /",
                                   b" GET /"])
def test_what_is_neither_http2_nor_a_request_line_gets_goaway(start):
    conn = Conn(METHODS)
    assert conn.feed(start) == lib.PYKV_ECLOSED
    assert not conn.info().http1
    assert isinstance(parse_frames(conn.output())[-1], GoAwayFrame)


def test_connection_error_cancels_the_calls_python_has():
    conn = Conn(METHODS)
    client = Client(conn)
    watch = client.start(WATCH)
    client.pump()
    conn.feed(raw_frame(0, 0, 0, b"x"))
    events = conn.events()
    assert [(e.kind, e.stream) for e in events] == [("call", watch), ("cancel", watch),
                                                    ("conn_error", 0)]
    assert events[-1].payload == b"DATA on stream 0"


def test_stream_errors_reset_only_that_stream(conn, client):
    stream = client.start(PUT)
    client.pump()
    conn.output()
    conn.feed(raw_frame(8, 0, stream, struct.pack(">I", 0)))
    [rst] = parse_frames(conn.output())
    assert isinstance(rst, RstStreamFrame) and rst.error_code == PROTOCOL
    stream = client.start(PUT)
    conn.feed(client.h2.data_to_send())
    conn.feed(raw_frame(8, 0, stream, struct.pack(">I", 0x7fffffff)))
    [rst] = parse_frames(conn.output())
    assert rst.error_code == FLOW and not conn.closed


def test_data_after_the_client_ended_is_stream_closed(conn, client):
    stream = client.unary(PUT, b"x")
    conn.output()
    conn.feed(raw_frame(0, 0, stream, b"more"))
    [rst] = parse_frames(conn.output())
    assert isinstance(rst, RstStreamFrame) and rst.error_code == 5
    assert [e.kind for e in conn.events()] == ["call", "cancel"]


def test_streams_over_the_limit_are_refused():
    conn = Conn(METHODS, max_concurrent_streams=2)
    client = Client(conn)
    for _ in range(2):
        client.start(WATCH)
    client.pump()
    conn.output()
    encoder_state = client.h2.encoder  # keep HPACK in step with the client
    conn.feed(raw_frame(1, 0x4, 5, encoder_state.encode(request_headers(WATCH))))
    [rst] = parse_frames(conn.output())
    assert isinstance(rst, RstStreamFrame) and rst.error_code == 7  # REFUSED_STREAM


# --- shutdown and deadlines --------------------------------------------------------------

def test_graceful_shutdown_finishes_calls_in_flight_and_refuses_new_ones(conn, client):
    stream = client.unary(PUT, b"in flight")
    conn.events()
    conn.output()
    conn.shutdown()
    [goaway] = parse_frames(conn.output())
    assert isinstance(goaway, GoAwayFrame)
    assert goaway.error_code == 0 and goaway.last_stream_id == stream
    # (h2 treats a GOAWAY as the end; from here on the frames are read by hand)
    conn.feed(headers_frame(stream + 2, encoder=client.h2.encoder))
    [rst] = parse_frames(conn.output())
    assert isinstance(rst, RstStreamFrame) and rst.error_code == 7
    conn.respond((stream, SEND_MESSAGE | SEND_END, 0, b"done", b""))
    headers, data, trailers = parse_frames(conn.output())
    assert data.data == grpc_message(b"done") and "END_STREAM" in trailers.flags
    assert conn.info().streams == 0


def test_deadline_passing_answers_deadline_exceeded_and_cancels(conn, client):
    conn.set_time(1_000_000)
    stream = client.unary(RANGE, b"x", (b"grpc-timeout", b"100m"))
    conn.events()
    conn.expire(1_099_999)
    assert conn.events() == []
    conn.expire(1_100_000)
    assert [(e.kind, e.stream) for e in conn.events()] == [("cancel", stream)]
    client.pump()
    response = client.responses[stream]
    assert response.status == DEADLINE_EXCEEDED
    assert response.message == b"context deadline exceeded"


def test_unfinished_requests_of_a_connection_are_bounded():
    conn = Conn(METHODS, max_receive_bytes=100_000, max_buffered_request_bytes=150_000)
    client = Client(conn)
    first, second = client.start(PUT), client.start(PUT)
    client.send(first, grpc_message(b"a" * 90_000)[:80_000])
    assert conn.info().buffered_bytes == 80_000
    client.send(second, grpc_message(b"b" * 90_000)[:80_000])
    # the stream that went over the limit is refused; the other goes on
    assert client.responses[second].status == RESOURCE_EXHAUSTED
    assert conn.info().buffered_bytes == 80_000
    client.send(first, grpc_message(b"a" * 90_000)[80_000:], end=True)
    [event] = conn.events()
    assert event.stream == first and event.payload == b"a" * 90_000
    assert conn.info().buffered_bytes == 0



def test_metadata_of_calls_not_started_counts_against_the_bound():
    conn = Conn(METHODS, max_receive_bytes=1000, max_buffered_request_bytes=3000)
    client = Client(conn)
    first = client.start(PUT, (b"token", b"t" * 1400))
    second = client.start(PUT, (b"token", b"u" * 1400))
    third = client.start(PUT, (b"token", b"v" * 1400))
    client.pump()
    assert client.responses.get(first) is None and client.responses.get(second) is None
    assert client.responses[third].status == RESOURCE_EXHAUSTED
    client.send(first, grpc_message(b"go"), end=True)
    [event] = conn.events()
    assert event.metadata == [(b"token", b"t" * 1400)]
    assert conn.info().buffered_bytes == len(b"token\0" + b"u" * 1400 + b"\0")
