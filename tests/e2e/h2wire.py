"""A raw HTTP/2 client over a socket (hyper-h2), for e2e tests that need to
control windows and frames exactly: h2 checks every frame the server sends
(a DATA frame past the window raises), so these tests catch protocol slips
that grpcio's client would tolerate."""

from __future__ import annotations

import socket
import struct

import h2.config
import h2.connection
import h2.events
import h2.settings


def grpc_message(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


def grpc_messages(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        _, length = struct.unpack_from(">BI", data, at)
        out.append(data[at + 5:at + 5 + length])
        at += 5 + length
    assert at == len(data), "a truncated gRPC message"
    return out


class WireClient:
    """One connection. ``window_bytes``: the stream window we give the server
    (and the connection window stays at 65535 unless ``ack`` opens it)."""

    def __init__(self, port: int, window_bytes: int = 65535, timeout_s: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window_bytes})
        self.h2.initiate_connection()
        self.flush()
        self.data: dict[int, bytearray] = {}
        self.trailers: dict[int, dict] = {}
        self.ended: set[int] = set()
        self.terminated = None  # the server's GOAWAY
        self.most_unacked = 0   # the largest amount of data the server had in flight

    def flush(self) -> None:
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def call(self, path: bytes, payload: bytes) -> int:
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
            (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
            (b"te", b"trailers")])
        self.h2.send_data(stream, grpc_message(payload), end_stream=True)
        self.flush()
        return stream

    def read_until(self, done, ack_bytes: int | None = None) -> None:
        """Read until done() holds; acknowledge received data in steps of
        ack_bytes (None: at once)."""
        unacked = {}
        while not done():
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            for event in self.h2.receive_data(chunk):
                self._record(event, unacked, ack_bytes)
            self.flush()

    def _record(self, event, unacked, ack_bytes) -> None:
        if isinstance(event, h2.events.DataReceived):
            self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
            pending = unacked.get(event.stream_id, 0) + event.flow_controlled_length
            self.most_unacked = max(self.most_unacked, pending)
            if ack_bytes is None or pending >= ack_bytes:
                if pending:
                    self.h2.acknowledge_received_data(pending, event.stream_id)
                pending = 0
            unacked[event.stream_id] = pending
        elif isinstance(event, h2.events.TrailersReceived):
            self.trailers[event.stream_id] = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, h2.events.ResponseReceived):
            headers = dict(event.headers)
            if b"grpc-status" in headers:  # Trailers-Only
                self.trailers[event.stream_id] = headers
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event

    def close(self) -> None:
        self.sock.close()
