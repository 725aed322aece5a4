"""The link between gRPC front-end processes and the core process.

One Python process cannot serve etcd's load: the gRPC layer alone costs
~170 us of CPU per request (TARGETS.md), so ``pykv serve`` can run extra
front-end processes that share the client port (SO_REUSEPORT), parse and
check requests, read LMDB directly, and hand everything that must go through
Raft to the core over a Unix socket, as bytes. This module is that socket's
protocol: small frames, no per-request parsing beyond the header, and many
calls in flight (replies come back in any order, matched by call id).

Frame::

    length   4 bytes big-endian  (of the payload)
    type     1 byte   CALL | OK | ERROR | CHUNK | NOTIFY
    call_id  8 bytes  big-endian (0 for NOTIFY)
    method   2 bytes  index into METHODS (CALL), or a notify topic (NOTIFY)
    payload  length bytes: request or response protobuf bytes; for ERROR,
             "<grpc code name>\\n<message>"
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

from pykv import errors

FRAME = struct.Struct(">IBQH")
CALL, OK, ERROR, CHUNK, NOTIFY = 1, 2, 3, 4, 5
MAX_FRAME_BYTES = 256 << 20

# Notify topics (core -> front ends).
TOPIC_APPLIED = 1  # payload: ">QQQ" applied index, revision, compact revision

APPLIED = struct.Struct(">QQQ")


class RemoteError(errors.EtcdError):
    """An etcd error raised in the core and carried across the link as is."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__()


def error_payload(exc: BaseException) -> bytes:
    if isinstance(exc, errors.EtcdError):
        return f"{exc.code}\n{exc.message}".encode()
    return f"UNKNOWN\n{type(exc).__name__}: {exc}".encode()


def error_from_payload(payload: bytes) -> errors.EtcdError:
    code, _, message = bytes(payload).decode(errors="replace").partition("\n")
    cls = errors.BY_MESSAGE.get(message)
    if cls is not None and cls.code == code:
        return cls()
    return RemoteError(code, message)


class _FrameReader:
    """Accumulates bytes and yields complete frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes):
        buffer = self._buffer
        buffer += data
        offset = 0
        size = FRAME.size
        end = len(buffer)
        frames = []
        while end - offset >= size:
            length, kind, call_id, method = FRAME.unpack_from(buffer, offset)
            if length > MAX_FRAME_BYTES:
                raise ConnectionError(f"core link: frame of {length} bytes is over the limit")
            if end - offset - size < length:
                break
            start = offset + size
            frames.append((kind, call_id, method, bytes(buffer[start:start + length])))
            offset = start + length
        if offset:
            del buffer[:offset]
        return frames


# ---------------------------------------------------------------------------
# core side
# ---------------------------------------------------------------------------

Handler = Callable[[bytes], Awaitable[bytes] | AsyncIterator[bytes]]


class CoreLinkProtocol(asyncio.Protocol):
    """One front end's connection, as the core sees it."""

    def __init__(self, handlers: dict[int, tuple[Handler, bool]], peers: set):
        self._handlers = handlers
        self._peers = peers
        self._reader = _FrameReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._peers.add(self)

    def connection_lost(self, exc) -> None:
        self._peers.discard(self)

    def data_received(self, data: bytes) -> None:
        for kind, call_id, method, payload in self._reader.feed(data):
            if kind != CALL:
                continue
            entry = self._handlers.get(method)
            if entry is None:
                self._send(ERROR, call_id, 0, b"UNIMPLEMENTED\nunknown method")
                continue
            handler, streaming = entry
            coro = self._stream(call_id, handler, payload) if streaming else \
                self._unary(call_id, handler, payload)
            asyncio.ensure_future(coro)

    def _send(self, kind: int, call_id: int, method: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(FRAME.pack(len(payload), kind, call_id, method) + payload)

    async def _unary(self, call_id: int, handler, payload: bytes) -> None:
        try:
            result = await handler(payload)
        except Exception as exc:  # every failure goes back as an error frame
            self._send(ERROR, call_id, 0, error_payload(exc))
        else:
            self._send(OK, call_id, 0, result)

    async def _stream(self, call_id: int, handler, payload: bytes) -> None:
        try:
            async for chunk in handler(payload):
                self._send(CHUNK, call_id, 0, chunk)
        except Exception as exc:
            self._send(ERROR, call_id, 0, error_payload(exc))
        else:
            self._send(OK, call_id, 0, b"")

    def notify(self, topic: int, payload: bytes) -> None:
        self._send(NOTIFY, 0, topic, payload)


# ---------------------------------------------------------------------------
# front-end side
# ---------------------------------------------------------------------------


class CoreLinkClient(asyncio.Protocol):
    """A front end's connection to the core: ``await call(method, payload)``."""

    def __init__(self, on_notify: Callable[[int, bytes], None] | None = None):
        self._reader = _FrameReader()
        self._waiting: dict[int, asyncio.Future | asyncio.Queue] = {}
        self._ids = itertools.count(1).__next__
        self._on_notify = on_notify
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_event_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        error = errors.Stopped("the core process closed the link")
        for waiter in self._waiting.values():
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait((ERROR, error))
            elif not waiter.done():
                waiter.set_exception(error)
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(exc)

    def data_received(self, data: bytes) -> None:
        for kind, call_id, method, payload in self._reader.feed(data):
            if kind == NOTIFY:
                if self._on_notify is not None:
                    self._on_notify(method, payload)
                continue
            waiter = self._waiting.get(call_id)
            if waiter is None:
                continue
            if isinstance(waiter, asyncio.Queue):
                if kind != CHUNK:
                    del self._waiting[call_id]
                waiter.put_nowait((kind, payload))
                continue
            del self._waiting[call_id]
            if waiter.done():
                continue
            if kind == OK:
                waiter.set_result(payload)
            else:
                waiter.set_exception(error_from_payload(payload))

    def _send_call(self, method: int, payload: bytes) -> int:
        if self.transport is None or self.transport.is_closing():
            raise errors.Stopped("no link to the core process")
        call_id = self._ids()
        self.transport.write(FRAME.pack(len(payload), CALL, call_id, method) + payload)
        return call_id

    def call(self, method: int, payload: bytes) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._send_call(method, payload)] = future
        return future

    async def call_stream(self, method: int, payload: bytes) -> AsyncIterator[bytes]:
        queue: asyncio.Queue = asyncio.Queue()
        call_id = self._send_call(method, payload)
        self._waiting[call_id] = queue
        try:
            while True:
                kind, payload = await queue.get()
                if kind == CHUNK:
                    yield payload
                elif kind == OK:
                    return
                else:
                    raise payload if isinstance(payload, BaseException) else \
                        error_from_payload(payload)
        finally:
            self._waiting.pop(call_id, None)
