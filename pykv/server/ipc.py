"""The link between gRPC front-end processes and the core process.

One Python process cannot serve etcd's load: the gRPC layer alone costs
hundreds of microseconds of CPU per request (TARGETS.md), more than the
whole write path. So ``pykv serve --frontends N`` runs N front-end processes
that share the client port (SO_REUSEPORT), terminate gRPC, and hand every
call to the core process over a Unix socket, as raw bytes, many calls in
flight at once. The core runs the same servicers it would run for gRPC.

Frame::

    length   4 bytes big-endian  (of the payload)
    type     1 byte   (below)
    call_id  8 bytes  big-endian (0 for NOTIFY)
    method   2 bytes  index into the method table (CALL), or a topic (NOTIFY)
    payload  length bytes

Front end -> core: CALL (unary: the request; streams: the first request or
nothing), IN (one more request of a client stream), IN_END (the client's
stream ended), CANCEL (the client went away). Core -> front end: OK (the
unary answer, or the end of a stream), CHUNK (one streamed answer), ERROR
("<gRPC code name>\\n<message>"), NOTIFY.

Frames are written in batches: everything sent in one turn of the event
loop leaves in one write.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable

from pykv import errors

log = logging.getLogger("pykv.server.ipc")

FRAME = struct.Struct(">IBQH")
CALL, IN, IN_END, CANCEL, OK, CHUNK, ERROR, NOTIFY = 1, 2, 3, 4, 5, 6, 7, 8
MAX_FRAME_BYTES = 1 << 30


def socket_address(address: str) -> str:
    """"@name" is the abstract Unix socket "\\0name" (Linux)."""
    return "\0" + address[1:] if address.startswith("@") else address


def listening_socket(address: str) -> socket.socket:
    """A bound, listening Unix socket (asyncio's path argument does not take
    abstract names everywhere, a socket object always works)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(socket_address(address))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def connected_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_address(address))
    sock.setblocking(False)
    return sock


class RemoteError(errors.EtcdError):
    """An etcd error raised in the core, carried across the link as is."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__()


def error_payload(exc: BaseException) -> bytes:
    if isinstance(exc, errors.EtcdError):
        return f"{exc.code}\n{exc.message}".encode()
    return f"UNKNOWN\npykv: {type(exc).__name__}: {exc}".encode()


def error_from_payload(payload: bytes) -> errors.EtcdError:
    code, _, message = bytes(payload).decode(errors="replace").partition("\n")
    return RemoteError(code, message)


class _Framed(asyncio.Protocol):
    """Frame parsing and batched writing, shared by both ends."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_event_loop()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset, end, size = 0, len(buffer), FRAME.size
        unpack = FRAME.unpack_from
        frames = []
        while end - offset >= size:
            length, kind, call_id, method = unpack(buffer, offset)
            if length > MAX_FRAME_BYTES:
                self.transport.close()
                raise ConnectionError(f"link frame of {length} bytes is over the limit")
            start = offset + size
            if end - start < length:
                break
            frames.append((kind, call_id, method, bytes(buffer[start:start + length])))
            offset = start + length
        if offset:
            del buffer[:offset]
        for frame in frames:
            self.frame_received(*frame)

    def frame_received(self, kind: int, call_id: int, method: int, payload: bytes) -> None:
        raise NotImplementedError

    def send(self, kind: int, call_id: int, method: int, payload: bytes = b"") -> None:
        self._out.append(FRAME.pack(len(payload), kind, call_id, method))
        if payload:
            self._out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out))


# ---------------------------------------------------------------------------
# core side
# ---------------------------------------------------------------------------


class CoreLinkProtocol(_Framed):
    """One front end's connection, as the core sees it. ``methods[i]`` is a
    ``pykv.server.v3rpc.Method`` (or None where the core does not serve it)."""

    def __init__(self, methods: list, peers: set):
        super().__init__()
        self._methods = methods
        self._peers = peers
        self._calls: dict[int, asyncio.Task] = {}
        self._inputs: dict[int, asyncio.Queue] = {}

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._peers.add(self)

    def connection_lost(self, exc) -> None:
        self._peers.discard(self)
        for task in self._calls.values():
            task.cancel()
        self._calls.clear()

    def frame_received(self, kind: int, call_id: int, method: int, payload: bytes) -> None:
        if kind == CALL:
            entry = self._methods[method] if method < len(self._methods) else None
            if entry is None:
                self.send(ERROR, call_id, 0, b"UNIMPLEMENTED\nunknown service method")
                return
            if entry.fast is not None:
                try:
                    future = entry.fast(payload)
                except Exception as exc:
                    self.send(ERROR, call_id, 0, error_payload(exc))
                    return
                if future is not None:
                    future.add_done_callback(
                        lambda f, cid=call_id: self._fast_done(cid, f))
                    return
            if entry.kind == "unary":
                coro = self._unary(call_id, entry, payload)
            elif entry.kind == "unary_stream":
                coro = self._unary_stream(call_id, entry, payload)
            else:
                queue: asyncio.Queue = asyncio.Queue()
                self._inputs[call_id] = queue
                coro = self._stream_stream(call_id, entry, queue)
            task = self._loop.create_task(coro)
            self._calls[call_id] = task
            task.add_done_callback(lambda _, cid=call_id: self._calls.pop(cid, None))
        elif kind == IN:
            queue = self._inputs.get(call_id)
            if queue is not None:
                queue.put_nowait(payload)
        elif kind == IN_END:
            queue = self._inputs.get(call_id)
            if queue is not None:
                queue.put_nowait(None)
        elif kind == CANCEL:
            task = self._calls.pop(call_id, None)
            if task is not None:
                task.cancel()

    def _fast_done(self, call_id: int, future: asyncio.Future) -> None:
        if future.cancelled():
            self.send(ERROR, call_id, 0, b"CANCELLED\ncanceled")
            return
        exc = future.exception()
        if exc is not None:
            self.send(ERROR, call_id, 0, error_payload(exc))
        else:
            self.send(OK, call_id, 0, future.result())

    async def _unary(self, call_id: int, method, payload: bytes) -> None:
        try:
            request = payload if method.deserialize is None else method.deserialize(payload)
            response = await method.fn(request, None)
            self.send(OK, call_id, 0, method.serialize(response))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure goes back to the caller
            self.send(ERROR, call_id, 0, error_payload(exc))

    async def _unary_stream(self, call_id: int, method, payload: bytes) -> None:
        try:
            request = payload if method.deserialize is None else method.deserialize(payload)
            async for response in method.fn(request, None):
                self.send(CHUNK, call_id, 0, method.serialize(response))
            self.send(OK, call_id, 0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.send(ERROR, call_id, 0, error_payload(exc))

    async def _stream_stream(self, call_id: int, method, queue: asyncio.Queue) -> None:
        deserialize = method.deserialize

        async def requests():
            while True:
                payload = await queue.get()
                if payload is None:
                    return
                yield payload if deserialize is None else deserialize(payload)

        try:
            async for response in method.fn(requests(), None):
                self.send(CHUNK, call_id, 0, method.serialize(response))
            self.send(OK, call_id, 0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.send(ERROR, call_id, 0, error_payload(exc))
        finally:
            self._inputs.pop(call_id, None)


# ---------------------------------------------------------------------------
# front-end side
# ---------------------------------------------------------------------------


class CoreLinkClient(_Framed):
    """A front end's connection to the core."""

    def __init__(self, on_notify: Callable[[int, bytes], None] | None = None):
        super().__init__()
        self._waiting: dict[int, asyncio.Future | asyncio.Queue] = {}
        self._ids = itertools.count(1).__next__
        self._on_notify = on_notify
        self.closed: asyncio.Future = self._loop.create_future()

    def connection_lost(self, exc) -> None:
        error = errors.Stopped("the core process closed the link")
        for waiter in self._waiting.values():
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait((ERROR, error_payload(error)))
            elif not waiter.done():
                waiter.set_exception(error)
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(exc)

    def frame_received(self, kind: int, call_id: int, method: int, payload: bytes) -> None:
        if kind == NOTIFY:
            if self._on_notify is not None:
                self._on_notify(method, payload)
            return
        waiter = self._waiting.get(call_id)
        if waiter is None:
            return
        if isinstance(waiter, asyncio.Queue):
            if kind != CHUNK:
                del self._waiting[call_id]
            waiter.put_nowait((kind, payload))
            return
        del self._waiting[call_id]
        if waiter.done():
            return
        if kind == OK:
            waiter.set_result(payload)
        else:
            waiter.set_exception(error_from_payload(payload))

    def _start(self, method: int, payload: bytes) -> int:
        if self.transport is None or self.transport.is_closing():
            raise errors.Stopped("no link to the core process")
        call_id = self._ids()
        self.send(CALL, call_id, method, payload)
        return call_id

    def call(self, method: int, payload: bytes) -> asyncio.Future:
        future = self._loop.create_future()
        self._waiting[self._start(method, payload)] = future
        return future

    async def call_stream(self, method: int, payload: bytes = b"",
                          requests: AsyncIterator[bytes] | None = None) -> AsyncIterator[bytes]:
        """Yield the core's answers; ``requests`` (a client stream) is pumped
        to the core meanwhile."""
        queue: asyncio.Queue = asyncio.Queue()
        call_id = self._start(method, payload)
        self._waiting[call_id] = queue
        pump = None
        if requests is not None:
            pump = self._loop.create_task(self._pump(call_id, requests))
        finished = False
        try:
            while True:
                kind, payload = await queue.get()
                if kind == CHUNK:
                    yield payload
                elif kind == OK:
                    finished = True
                    return
                else:
                    finished = True
                    raise error_from_payload(payload)
        finally:
            if pump is not None:
                pump.cancel()
            self._waiting.pop(call_id, None)
            if not finished and self.transport is not None and not self.transport.is_closing():
                self.send(CANCEL, call_id, 0)

    async def _pump(self, call_id: int, requests: AsyncIterator[bytes]) -> None:
        try:
            async for request in requests:
                self.send(IN, call_id, 0, request)
            self.send(IN_END, call_id, 0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("client stream ended with an error", exc_info=True)
            self.send(CANCEL, call_id, 0)
