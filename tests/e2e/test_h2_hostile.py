"""Hostile clients against `pykv serve --grpc-server native`: random and
truncated frames, oversized headers, window overflows, half-sent prefaces,
many idle connections. Each gets a protocol error or a closed connection;
the server never crashes or hangs, and keeps serving everyone else."""

from __future__ import annotations

import random
import socket
import struct

import grpc
import hpack
import pytest
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.harness import ServerProcess

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def frame(type_: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + \
        struct.pack(">I", stream) + payload


def request_block(encoder: hpack.Encoder, path: bytes, *extra) -> bytes:
    return encoder.encode([(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                           (b":authority", b"x"), (b"content-type", b"application/grpc"),
                           *extra])


def exchange(port: int, data: bytes, timeout_s: float = 10.0) -> list[Frame]:
    """Send data, half-close, read until the server closes; the frames."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed first: fine, it read enough to decide
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    frames, at = [], 0
    while at + 9 <= len(received):
        parsed, length = Frame.parse_frame_header(memoryview(received[at:at + 9]))
        if at + 9 + length > len(received):
            break
        parsed.parse_body(memoryview(received[at + 9:at + 9 + length]))
        frames.append(parsed)
        at += 9 + length
    return frames


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("hostile") / "data",
                            extra_args=("--grpc-server", "native")).start()
    yield process
    assert process.process.poll() is None, "the server died:\n" + process.log()
    assert process.stop() == 0, process.log()


def still_serving(server) -> None:
    with grpc.insecure_channel(server.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        kv.Put(rpc_pb2.PutRequest(key=b"/alive", value=b"yes"), timeout=10)
        assert kv.Range(rpc_pb2.RangeRequest(key=b"/alive"), timeout=10).kvs[0].value == b"yes"


def test_random_frames_on_many_connections(server):
    rng = random.Random(7)
    for _ in range(150):
        data = PREFACE + SETTINGS if rng.random() < 0.8 else b""
        for _ in range(rng.randint(1, 8)):
            payload = rng.randbytes(rng.randint(0, 64))
            data += frame(rng.randint(0, 11), rng.randint(0, 255),
                          rng.choice([0, 1, 3, 2, 0x7fffffff]), payload)
        if rng.random() < 0.3:
            data = data[:rng.randint(0, len(data))]  # truncated
        exchange(server.client_port, data)
    still_serving(server)


def test_oversized_headers_are_refused_per_stream_and_floods_per_connection(server):
    encoder = hpack.Encoder()
    big = request_block(encoder, b"/etcdserverpb.KV/Range", (b"token", b"t" * 100_000))
    # one block in HEADERS + CONTINUATIONs: a 431 for the stream
    pieces = [big[i:i + 16384] for i in range(0, len(big), 16384)]
    assert len(pieces) > 1
    data = PREFACE + SETTINGS + frame(1, 0x1, 1, pieces[0])  # END_STREAM, not END_HEADERS
    for i, piece in enumerate(pieces[1:], 1):
        data += frame(9, 0x4 if i == len(pieces) - 1 else 0, 1, piece)
    frames = exchange(server.client_port, data)
    answers = [f for f in frames if isinstance(f, HeadersFrame)]
    assert answers, frames
    fields = dict(hpack.Decoder().decode(answers[0].data, raw=True))
    assert fields[b":status"] == b"431" and fields[b"grpc-status"] == b"8"
    # CONTINUATION without end: refused before it eats memory
    flood = PREFACE + SETTINGS + frame(1, 0, 3, b"\x82") + frame(9, 0, 3, b"\x82" * 16384) * 20
    goaway = [f for f in exchange(server.client_port, flood) if isinstance(f, GoAwayFrame)]
    assert goaway and goaway[0].error_code == 11  # ENHANCE_YOUR_CALM
    still_serving(server)


def test_window_overflows_are_flow_control_errors(server):
    connection = exchange(server.client_port, PREFACE + SETTINGS
                          + frame(8, 0, 0, struct.pack(">I", 0x7fffffff)))
    assert [f.error_code for f in connection if isinstance(f, GoAwayFrame)] == [3]
    block = request_block(hpack.Encoder(), b"/etcdserverpb.Watch/Watch")
    stream = exchange(server.client_port, PREFACE + SETTINGS + frame(1, 0x4, 1, block)
                      + frame(8, 0, 1, struct.pack(">I", 0x7fffffff)))
    assert [f.error_code for f in stream if isinstance(f, RstStreamFrame)] == [3]
    still_serving(server)


def test_half_sent_prefaces_and_idle_connections_do_not_block_others(server):
    sockets = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", server.client_port), timeout=10)
            sock.sendall(PREFACE[:i % len(PREFACE)])
            sockets.append(sock)
        still_serving(server)
    finally:
        for sock in sockets:
            sock.close()
    still_serving(server)


def test_neither_http2_nor_http1_gets_goaway(server):
    tls_hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32)
    frames = exchange(server.client_port, tls_hello)
    assert isinstance(frames[-1], GoAwayFrame) and frames[-1].error_code == 1
    still_serving(server)
