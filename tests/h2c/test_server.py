"""The native server (csrc/h2_server.c + pykv/server/h2server.py) with
grpcio's client: unary, streaming both ways, errors, limits, cancellation,
deadlines, the fast path and graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import grpc
import pytest

from pykv import errors
from pykv.server.v3rpc import Method
from tests.h2c.client import PREFACE, parse_frames, raw_frame
from tests.h2c.serving import ServerThread


def identity(value):
    return bytes(value)


class FastMethod(Method):
    __slots__ = ("fast",)


class Service:
    """Test handlers; ``seen`` records what the server side observed."""

    def __init__(self):
        self.seen: list = []
        self.cancelled = threading.Event()
        self.release: asyncio.Event | None = None

    async def echo(self, request: bytes, context) -> bytes:
        return request

    async def metadata(self, request: bytes, context) -> bytes:
        return repr(sorted(k for k, _ in context.invocation_metadata())).encode() + b"|" + \
            dict(context.invocation_metadata()).get("token", "").encode()

    async def fail(self, request: bytes, context) -> bytes:
        raise errors.KeyNotFound()

    async def crash(self, request: bytes, context) -> bytes:
        raise RuntimeError("boom")

    async def slow(self, request: bytes, context) -> bytes:
        self.seen.append(context.time_remaining())
        self.release = asyncio.Event()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b"released"

    async def chunks(self, request: bytes, context):
        count, size = map(int, request.split(b","))
        for i in range(count):
            yield bytes([i % 256]) * size

    async def bidi(self, requests, context):
        async for request in requests:
            yield b"echo:" + request
        yield b"bye"

    def fast(self, request: bytes):
        if request == b"now":
            return b"answered now"
        if request == b"error":
            raise errors.Compacted()
        if request == b"decline":
            return None  # the Task path (fn) answers instead
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_result, b"later:" + request)
        return future


def methods(service: Service) -> list[Method]:
    def unary(name, fn):
        return Method(f"/test.Echo/{name}", name, fn, "unary", None, identity)

    fast = FastMethod("/test.Echo/Fast", "Fast", service.echo, "unary", None, identity)
    fast.fast = service.fast
    return [unary("Echo", service.echo), unary("Metadata", service.metadata),
            unary("Fail", service.fail), unary("Crash", service.crash),
            unary("Slow", service.slow), fast,
            Method("/test.Echo/Chunks", "Chunks", service.chunks, "unary_stream", None, identity),
            Method("/test.Echo/Bidi", "Bidi", service.bidi, "stream_stream", None, identity)]


@pytest.fixture(scope="module")
def service():
    return Service()


@pytest.fixture(scope="module")
def server(service):
    running = ServerThread(methods(service), max_receive_bytes=2 << 20)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(server):
    channel = grpc.insecure_channel(server.address, options=[
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20)])
    yield channel
    channel.close()


def unary(channel, name):
    return channel.unary_unary(f"/test.Echo/{name}")


def test_unary_echo(channel):
    assert unary(channel, "Echo")(b"hello", timeout=10) == b"hello"
    assert unary(channel, "Echo")(b"", timeout=10) == b""


def test_metadata_reaches_the_handler(channel):
    answer = unary(channel, "Metadata")(b"", metadata=[("token", "secret")], timeout=10)
    names, token = answer.split(b"|")
    assert token == b"secret" and b"user-agent" in names


def test_many_concurrent_calls(channel):
    echo = unary(channel, "Echo")
    futures = [echo.future(b"call-%d" % i, timeout=30) for i in range(500)]
    assert [f.result() for f in futures] == [b"call-%d" % i for i in range(500)]


def test_etcd_errors_keep_their_code_and_message(channel):
    with pytest.raises(grpc.RpcError) as info:
        unary(channel, "Fail")(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "etcdserver: key not found"


def test_unexpected_exception_is_unknown(channel):
    with pytest.raises(grpc.RpcError) as info:
        unary(channel, "Crash")(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == "pykv: RuntimeError: boom"


def test_unknown_method_is_unimplemented(channel):
    with pytest.raises(grpc.RpcError) as info:
        unary(channel, "Nope")(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == "unknown method Nope for service test.Echo"


def test_request_over_the_receive_limit_is_resource_exhausted(channel):
    big = b"x" * ((2 << 20) + 1)
    with pytest.raises(grpc.RpcError) as info:
        unary(channel, "Echo")(big, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == f"grpc: received message larger than max ({len(big)} vs. {2 << 20})"
    just_fits = b"y" * (2 << 20)
    assert unary(channel, "Echo")(just_fits, timeout=30) == just_fits


def test_forty_megabytes_stream_through_the_windows(channel):
    chunks = channel.unary_stream("/test.Echo/Chunks")
    got = list(chunks(b"40,1048576", timeout=60))
    assert len(got) == 40 and all(c == bytes([i]) * 1048576 for i, c in enumerate(got))
    [single] = list(chunks(b"1,41943040", timeout=60))
    assert len(single) == 41943040


def test_bidirectional_stream(channel):
    bidi = channel.stream_stream("/test.Echo/Bidi")
    answers = list(bidi(iter([b"a", b"b", b"c"]), timeout=10))
    assert answers == [b"echo:a", b"echo:b", b"echo:c", b"bye"]


def test_fast_path_answers_now_later_or_with_an_error(channel):
    fast = unary(channel, "Fast")
    assert fast(b"now", timeout=10) == b"answered now"
    assert fast(b"x", timeout=10) == b"later:x"
    assert fast(b"decline", timeout=10) == b"decline"  # fn: echo
    with pytest.raises(grpc.RpcError) as info:
        fast(b"error", timeout=10)
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert info.value.details() == "etcdserver: mvcc: required revision has been compacted"


def wait_for(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_client_cancel_cancels_the_handler(channel, service):
    service.cancelled.clear()
    future = unary(channel, "Slow").future(b"", timeout=30)
    wait_for(lambda: service.release is not None)
    future.cancel()
    assert service.cancelled.wait(10)


def test_deadline_cancels_the_handler_and_the_client_sees_deadline_exceeded(channel, service):
    service.cancelled.clear()
    service.release = None
    with pytest.raises(grpc.RpcError) as info:
        unary(channel, "Slow")(b"", timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert service.cancelled.wait(10)
    assert 0 < service.seen[-1] <= 0.6  # grpc rounds the timeout it sends up


def test_garbage_closes_that_connection_only(server, channel):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(PREFACE + raw_frame(4, 0, 0) + raw_frame(0, 0, 0, b"bad"))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    frames = parse_frames(data)
    assert type(frames[-1]).__name__ == "GoAwayFrame" and frames[-1].error_code == 1
    assert unary(channel, "Echo")(b"still here", timeout=10) == b"still here"


def test_graceful_stop_finishes_calls_in_flight(service):
    running = ServerThread(methods(service))
    channel = grpc.insecure_channel(running.address)
    try:
        service.release = None
        future = unary(channel, "Slow").future(b"", timeout=30)
        wait_for(lambda: service.release is not None)
        stopping = threading.Thread(target=running.stop, kwargs={"grace_s": 10})
        stopping.start()
        wait_for(lambda: running.server._stopping)
        running.call_soon(service.release.set)
        assert future.result(timeout=10) == b"released"
        stopping.join(10)
        assert not stopping.is_alive()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", running.port), timeout=5).close()
    finally:
        channel.close()
        running.stop()


def test_connections_are_counted_and_closed(service):
    running = ServerThread(methods(service))
    try:
        channel = grpc.insecure_channel(running.address)
        assert unary(channel, "Echo")(b"x", timeout=10) == b"x"
        wait_for(lambda: running.stats()["connections_open"] == 1)  # published per loop turn
        channel.close()
        wait_for(lambda: running.stats()["connections_open"] == 0)
        assert running.stats()["calls"] == 1
    finally:
        running.stop()


def test_goaway_survives_a_client_that_keeps_sending(server):
    """After a protocol error the server shuts its side and drains the
    client for a while instead of closing at once: a close with unread data
    sends a RST, which can destroy the GOAWAY before the client reads it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        flood = raw_frame(6, 0, 0, b"12345678") * 100_000  # 1.7 MB the server drops

        def send():
            try:
                sock.sendall(PREFACE + raw_frame(4, 0, 0) + raw_frame(0, 0, 0, b"bad") + flood)
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sender.join(10)
    frames = parse_frames(data)
    assert type(frames[-1]).__name__ == "GoAwayFrame" and frames[-1].error_code == 1


def test_reading_pauses_while_python_is_behind_and_every_call_is_answered(service):
    running = ServerThread(methods(service), max_queued_bytes=64 * 1024)
    channel = grpc.insecure_channel(running.address)
    try:
        echo = unary(channel, "Echo")
        assert echo(b"warm", timeout=10) == b"warm"
        stall = threading.Event()
        running.call_soon(stall.wait, 30)  # the event loop stops taking events
        futures = [echo.future(b"%d" % i + b"x" * 4000, timeout=60) for i in range(200)]
        wait_for(lambda: running.stats()["read_pauses"] > 0)
        stall.set()
        assert [f.result()[:3].rstrip(b"x") for f in futures] == [b"%d" % i for i in range(200)]
        assert running.stats()["read_pauses"] >= 1
    finally:
        channel.close()
        running.stop()


def test_connections_over_the_limit_are_closed_at_once(service):
    running = ServerThread(methods(service), max_connections=2)
    sockets = []
    try:
        for _ in range(2):
            sockets.append(socket.create_connection(("127.0.0.1", running.port), timeout=10))
            sockets[-1].sendall(PREFACE)
            assert sockets[-1].recv(9)  # the server preface: accepted
        extra = socket.create_connection(("127.0.0.1", running.port), timeout=10)
        assert extra.recv(9) == b""  # closed without a word
        extra.close()
        wait_for(lambda: running.stats()["connections_refused"] == 1)  # published per loop turn
    finally:
        for sock in sockets:
            sock.close()
        running.stop()


def test_an_http1_client_is_handed_over_with_its_socket_and_first_bytes(service):
    handed: list = []
    got = threading.Event()

    def http1(sock, first):
        handed.append(first)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        sock.close()
        got.set()

    running = ServerThread(methods(service), http1=http1)
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while chunk := sock.recv(1024):
                reply += chunk
        assert reply == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"  # no HTTP/2 byte
        assert got.wait(10) and handed == [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"]
        stats = running.stats()
        assert stats["http1_handoffs"] == 1 and stats["connections_open"] == 0
        assert unary(grpc.insecure_channel(running.address), "Echo")(b"x", timeout=10) == b"x"
    finally:
        running.stop()


def test_without_an_http1_taker_the_client_is_disconnected(service):
    running = ServerThread(methods(service))
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
            assert sock.recv(1024) == b""
    finally:
        running.stop()


def test_a_client_that_never_answers_pings_is_closed_after_interval_and_timeout(service):
    running = ServerThread(methods(service), keepalive_interval_us=200_000,
                           keepalive_timeout_us=200_000)
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(PREFACE + raw_frame(4, 0, 0))
            started = time.monotonic()
            received = b""
            while chunk := sock.recv(65536):  # never answering the server's PING
                received += chunk
            waited = time.monotonic() - started
        pings = [f for f in parse_frames(received) if type(f).__name__ == "PingFrame"
                 and "ACK" not in f.flags]
        assert pings and waited >= 0.35
        # The I/O thread publishes its counters once per loop turn, which may
        # come just after the close the client saw.
        wait_for(lambda: running.stats()["keepalive_closes"] == 1)
    finally:
        running.stop()


def test_grpc_clients_with_keepalive_pings_are_told_to_calm_down(service):
    """A client pinging every 100 ms against min time 5 s (etcd's default)
    gets GOAWAY ENHANCE_YOUR_CALM, as grpc-go's server would send it."""
    running = ServerThread(methods(service))
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(PREFACE + raw_frame(4, 0, 0))
            for i in range(4):
                sock.sendall(raw_frame(6, 0, 0, b"%08d" % i))
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        goaway = parse_frames(received)[-1]
        assert type(goaway).__name__ == "GoAwayFrame" and goaway.error_code == 11
        assert goaway.additional_data == b"too_many_pings"
    finally:
        running.stop()
