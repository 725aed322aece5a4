"""An independent HTTP/2 client (hyper-h2) to drive a sans-I/O pykv_h2_conn,
and helpers for hand-made frames. h2 checks everything the server sends, so
a protocol slip of ours fails the test that caused it."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import Frame

from tests.h2c.native import Conn

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def grpc_message(payload: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BI", int(compressed), len(payload)) + payload


def grpc_messages(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        flag, length = struct.unpack_from(">BI", data, at)
        assert flag == 0
        out.append(data[at + 5:at + 5 + length])
        at += 5 + length
    assert at == len(data), "a truncated gRPC message"
    return out


def request_headers(path: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
            (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), *extra]


def raw_frame(type_: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + \
        struct.pack(">I", stream) + payload


def parse_frames(data: bytes) -> list[Frame]:
    frames, at = [], 0
    while at + 9 <= len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[at:at + 9]))
        frame.parse_body(memoryview(data[at + 9:at + 9 + length]))
        frames.append(frame)
        at += 9 + length
    assert at == len(data), "output ends inside a frame"
    return frames


@dataclass
class Response:
    headers: dict = field(default_factory=dict)
    data: bytes = b""
    trailers: dict = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int | None:
        source = self.trailers or self.headers
        value = source.get(b"grpc-status")
        return None if value is None else int(value)

    @property
    def message(self) -> bytes:
        return (self.trailers or self.headers).get(b"grpc-message", b"")

    @property
    def messages(self) -> list[bytes]:
        return grpc_messages(self.data)


class Client:
    """hyper-h2 in client mode, wired to a Conn. ``pump`` moves bytes both
    ways until neither side has anything to say."""

    def __init__(self, conn: Conn, auto_ack: bool = True, settings: dict | None = None):
        self.conn = conn
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.auto_ack = auto_ack
        self.responses: dict[int, Response] = {}
        self.other_events: list = []
        self.pump()

    def pump(self) -> None:
        while True:
            out = self.h2.data_to_send()
            if out:
                self.conn.feed(out)
            back = self.conn.output()
            if back:
                for event in self.h2.receive_data(back):
                    self._record(event)
            if not out and not back:
                return

    def _record(self, event) -> None:
        stream = getattr(event, "stream_id", None)
        response = self.responses.setdefault(stream, Response()) if stream else None
        if isinstance(event, h2.events.ResponseReceived):
            response.headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            response.data += event.data
            if self.auto_ack and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream)
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            response.ended = True
        elif isinstance(event, h2.events.StreamReset):
            response.reset = event.error_code
        else:
            self.other_events.append(event)

    def start(self, path: bytes, *metadata: tuple[bytes, bytes], end: bool = False) -> int:
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, request_headers(path, *metadata), end_stream=end)
        return stream

    def send(self, stream: int, data: bytes, end: bool = False) -> None:
        """Send all of data, in frames and windows as h2 allows, pumping
        while the window is shut."""
        at = 0
        while at < len(data) or (end and at == len(data)):
            room = min(self.h2.local_flow_control_window(stream),
                       self.h2.max_outbound_frame_size, len(data) - at)
            if room == 0 and at < len(data):
                self.pump()
                assert self.h2.local_flow_control_window(stream) > 0, "server gave no window"
                continue
            last = at + room == len(data)
            self.h2.send_data(stream, data[at:at + room], end_stream=end and last)
            at += room
            if last:
                break
        self.pump()

    def unary(self, path: bytes, payload: bytes, *metadata: tuple[bytes, bytes]) -> int:
        stream = self.start(path, *metadata)
        self.send(stream, grpc_message(payload), end=True)
        return stream
