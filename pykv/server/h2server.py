"""The native gRPC server: HTTP/2 and gRPC framing in C (csrc/h2_*.c), the
handlers in Python, one crossing per batch.

The C I/O thread accepts, reads, parses and writes; complete calls come to
the event loop as a batch of events when the eventfd it watches turns
readable (``_on_events`` takes ALL of them with one ``poll``), and every
response made during one loop turn goes back in one ``respond`` call
(``_flush``). Per call the Python work is: unpack one record, slice the
payload, start the handler, pack one record.

Handlers are ``pykv.server.v3rpc.Method``s. A unary call runs its ``fn`` in
a Task, unless the method offers ``fast(raw_request) -> bytes | Future |
None``: the response (bytes or a message), a future of it, or None to
decline (the call then runs ``fn`` in a Task, e.g. when it must wait on
something first); it may raise an ``EtcdError``. Then no Task is made.
A method with ``direct(raw, replier, token)`` is called that way instead:
the server is the replier (``reply_many`` may be called from any thread, as
``pykv_h2_server_respond`` may), so a write's answer goes from the Raft
thread to the I/O thread without a turn of the event loop. ``EtcdError`` becomes etcd's gRPC status and exact message, a
request that does not parse INTERNAL, anything else UNKNOWN (and a
log line), as ``pykv.server.v3rpc`` does for grpcio.

Streaming responses are sent as the handler yields them; a stream with more
than ``STREAM_BUDGET_BYTES`` not yet sent waits for the client's window
before the handler is resumed, so a slow client cannot make the server
buffer a whole snapshot.

A client whose first bytes are an HTTP/1 request line instead of HTTP/2's
preface (curl, etcd3gw, a load balancer's health probe) is handed over with
its socket to the ``http1`` callback (``pykv.server.http1.Http1Server
.accept``), as etcd's cmux does on its client port.

The server needs Linux (epoll, eventfd); ``supported()`` says whether this
build has it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
import urllib.parse
from collections.abc import Callable
from typing import Any

from pykv._binding import check, ffi, lib
from pykv.server.v3rpc import REPLYING
from pykv.server.v3rpc import status_of as v3rpc_status_of

log = logging.getLogger("pykv.server.h2")

# gRPC status codes by name (grpc.StatusCode's names; errors.EtcdError.code).
STATUS_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
_KINDS = {"unary": lib.PYKV_H2_UNARY, "unary_stream": lib.PYKV_H2_UNARY_STREAM,
          "stream_stream": lib.PYKV_H2_STREAM_STREAM}

_EV_CALL = lib.PYKV_H2_EV_CALL
_EV_MESSAGE = lib.PYKV_H2_EV_MESSAGE
_EV_HALF_CLOSE = lib.PYKV_H2_EV_HALF_CLOSE
_EV_CANCEL = lib.PYKV_H2_EV_CANCEL
_EV_DRAINED = lib.PYKV_H2_EV_DRAINED
_EV_CONN_ERROR = lib.PYKV_H2_EV_CONN_ERROR
_EV_HTTP1 = lib.PYKV_H2_EV_HTTP1
_SEND_MESSAGE = lib.PYKV_H2_SEND_MESSAGE
_SEND_END = lib.PYKV_H2_SEND_END
_MESSAGE_END = _SEND_MESSAGE | _SEND_END
_NOTIFY_DRAIN = lib.PYKV_H2_NOTIFY_DRAIN
_NO_TIMEOUT = lib.PYKV_H2_NO_TIMEOUT

_EVENT = struct.Struct("=QIHHIIq")     # pykv_h2_event
_RESPONSE = struct.Struct("=QIHHII")   # pykv_h2_response
assert _EVENT.size == ffi.sizeof("pykv_h2_event")
assert _RESPONSE.size == ffi.sizeof("pykv_h2_response")
_ERROR_BYTES = lib.PYKV_H2_ERROR_BYTES

#: Bytes of streamed responses a call may have waiting for the client's
#: window before its handler waits too.
STREAM_BUDGET_BYTES = 4 << 20


def supported() -> bool:
    """Whether this build has the native server (Linux only)."""
    return bool(lib.pykv_h2_server_supported())


def status_of(exc: BaseException) -> tuple[int, str]:
    """The gRPC status number and message a handler's exception becomes
    (the mapping itself is ``pykv.server.v3rpc.status_of``, shared)."""
    code, message = v3rpc_status_of(exc)
    return STATUS_CODES.get(code, 2), message


class CallContext:
    """What a handler may ask about its call: the client's metadata and the
    time left before its deadline. Made only for calls that run in a Task."""

    __slots__ = ("_metadata", "_deadline")

    def __init__(self, metadata: bytes, deadline: float | None):
        self._metadata = metadata
        self._deadline = deadline

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        parts = self._metadata.decode("latin-1").split("\0")[:-1]
        return tuple(zip(parts[0::2], parts[1::2]))

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())


class _Requests:
    """The request iterator of a bidirectional call, fed by MESSAGE events;
    ends when the client half-closes."""

    __slots__ = ("_items", "_waiter", "_closed", "_deserialize")

    def __init__(self, deserialize: Callable | None):
        self._items: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False
        self._deserialize = deserialize

    def push(self, payload: bytes) -> None:
        self._items.append(payload)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        payload = self._items.popleft()
        return payload if self._deserialize is None else self._deserialize(payload)


class _Call:
    """A streaming call's state on the Python side."""

    __slots__ = ("task", "requests", "unsent_bytes", "drained")

    def __init__(self):
        self.task: asyncio.Task | None = None
        self.requests: _Requests | None = None
        self.unsent_bytes = 0
        self.drained: asyncio.Future | None = None


class NativeServer:
    """A plaintext gRPC server for ``methods`` (``pykv.server.v3rpc.Method``).

    Use: ``add_port`` for each listener, ``await start()``, and ``await
    stop(grace)`` once (it waits up to ``grace`` seconds for calls in flight,
    then cancels the rest). Runs on the event loop that calls ``start``.
    """

    def __init__(self, methods: list, *, max_receive_bytes: int = 4 << 20,
                 http1: Callable[[socket.socket, bytes], None] | None = None, **limits: int):
        """``limits``: other fields of ``pykv_h2_config`` (csrc/pykv_h2.h), e.g.
        ``max_connections``, ``max_queued_bytes`` or ``keepalive_interval_us``.
        ``http1(sock, first_bytes)`` takes over HTTP/1 clients (called on the
        event loop; it owns the socket); without it they are disconnected."""
        self._methods = list(methods)
        self._http1 = http1
        config = ffi.new("pykv_h2_config *")
        lib.pykv_h2_config_default(config)
        config.max_receive_bytes = max_receive_bytes
        for name, value in limits.items():
            setattr(config, name, value)
        paths = b"".join(m.path.encode() + b"\0" for m in self._methods)
        kinds = bytes(_KINDS[m.kind] for m in self._methods)
        out = ffi.new("pykv_h2_server **")
        err = ffi.new("char[]", _ERROR_BYTES)
        rc = lib.pykv_h2_server_new(config, paths, len(paths), kinds, len(kinds), out, err,
                                    _ERROR_BYTES)
        check(rc, "creating the gRPC server", ffi.string(err).decode(errors="replace"))
        self._h = ffi.gc(out[0], lib.pykv_h2_server_free)
        self._err = err
        self._batch = ffi.new("pykv_h2_events *")
        # Per method: (handler, takes a replier): ``direct`` if it has one.
        self._fast = [(m.direct, True) if getattr(m, "direct", None) is not None
                      else (getattr(m, "fast", None), False) for m in self._methods]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: dict[int, Any] = {}  # key -> Task (unary) or _Call (streaming)
        self._records: list[bytes] = []
        self._data: list[bytes] = []
        self._flush_scheduled = False
        self._stopping = False
        self._idle: asyncio.Event | None = None
        self.ports: list[int] = []

    # -- life cycle ---------------------------------------------------------

    def add_port(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        port_io = ffi.new("uint16_t *", port)
        rc = lib.pykv_h2_server_listen(self._h, host.encode(), port_io, self._err, _ERROR_BYTES)
        check(rc, f"listening on {host}:{port}", ffi.string(self._err).decode(errors="replace"))
        self.ports.append(port_io[0])
        return port_io[0]

    def add_url(self, url: str) -> int:
        """Listen on an ``http://host:port`` client URL."""
        parsed = urllib.parse.urlparse(url)
        return self.add_port(parsed.hostname or "localhost", parsed.port or 0)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        rc = lib.pykv_h2_server_start(self._h, self._err, _ERROR_BYTES)
        check(rc, "starting the gRPC server", ffi.string(self._err).decode(errors="replace"))
        self._loop.add_reader(lib.pykv_h2_server_event_fd(self._h), self._on_events)

    async def stop(self, grace: float | None = None) -> None:
        """GOAWAY to every client, wait up to ``grace`` seconds for the
        calls in flight, cancel the rest, close every connection."""
        if self._loop is None or self._stopping:
            return
        self._stopping = True
        lib.pykv_h2_server_shutdown(self._h)
        if self._calls and grace:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except asyncio.TimeoutError:
                pass
        tasks = [c if isinstance(c, asyncio.Task) else c.task for c in self._calls.values()]
        for task in tasks:
            if task is not None:
                task.cancel()
        if tasks:
            await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        self._flush()
        self._loop.remove_reader(lib.pykv_h2_server_event_fd(self._h))
        lib.pykv_h2_server_stop(self._h)

    def stats(self) -> dict[str, int]:
        stats = ffi.new("pykv_h2_stats *")
        lib.pykv_h2_server_get_stats(self._h, stats)
        return {name: getattr(stats, name) for name, _ in ffi.typeof(stats[0]).fields}

    # -- events ---------------------------------------------------------------

    def _on_events(self) -> None:
        batch = self._batch
        lib.pykv_h2_server_poll(self._h, batch)
        count = batch.count
        if count == 0:
            return
        records = ffi.buffer(batch.events, count * _EVENT.size)
        payload = ffi.buffer(batch.payload, batch.payload_bytes)
        at = 0
        calls = self._calls
        for conn, stream, kind, index, payload_bytes, metadata_bytes, timeout_us in \
                _EVENT.iter_unpack(records):
            key = (conn << 32) | stream
            data = payload[at:at + payload_bytes]
            at += payload_bytes
            if kind == _EV_CALL:
                metadata = payload[at:at + metadata_bytes] if metadata_bytes else b""
                at += metadata_bytes
                try:
                    self._start_call(key, conn, stream, index, data, metadata, timeout_us)
                except Exception as exc:  # noqa: BLE001 - one call's failure, not the batch's
                    status, text = status_of(exc)
                    self._queue(conn, stream, _SEND_END, status, b"", text.encode())
            elif kind == _EV_MESSAGE:
                call = calls.get(key)
                if call is not None and call.requests is not None:
                    call.requests.push(data)
            elif kind == _EV_HALF_CLOSE:
                call = calls.get(key)
                if call is not None and call.requests is not None:
                    call.requests.close()
            elif kind == _EV_CANCEL:
                call = calls.pop(key, None)
                if call is not None:
                    (call if isinstance(call, asyncio.Task) else call.task).cancel()
                    self._forget()
            elif kind == _EV_DRAINED:
                call = calls.get(key)
                if call is not None and not isinstance(call, asyncio.Task):
                    call.unsent_bytes = 0
                    if call.drained is not None and not call.drained.done():
                        call.drained.set_result(None)
            elif kind == _EV_CONN_ERROR:
                log.debug("client connection closed for a protocol error",
                          extra={"fields": {"error": data.decode(errors="replace")}})
            elif kind == _EV_HTTP1:
                self._hand_over(timeout_us, data)

    def _hand_over(self, fd: int, first_bytes: bytes) -> None:
        """An HTTP/1 client: its socket is ours now (an HTTP1 event)."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        if self._http1 is None or self._stopping:
            sock.close()
            return
        try:
            self._http1(sock, first_bytes)
        except Exception:  # noqa: BLE001 - one connection, not the batch
            log.exception("HTTP/1 connection could not be taken over")
            sock.close()

    def _start_call(self, key: int, conn: int, stream: int, index: int, data: bytes,
                    metadata: bytes, timeout_us: int) -> None:
        method = self._methods[index]
        kind = method.kind
        if kind == "unary":
            fast, direct = self._fast[index]
            if fast is not None and self._unary_fast(fast, direct, method, conn, stream, data):
                return
            task = self._loop.create_task(self._unary(method, key, conn, stream, data,
                                                      self._context(metadata, timeout_us)))
            self._calls[key] = task
            return
        call = _Call()
        context = self._context(metadata, timeout_us)
        if kind == "unary_stream":
            call.task = self._loop.create_task(
                self._unary_stream(method, key, call, conn, stream, data, context))
        else:
            call.requests = _Requests(method.deserialize)
            call.task = self._loop.create_task(
                self._stream_stream(method, key, call, conn, stream, context))
        self._calls[key] = call

    def _context(self, metadata: bytes, timeout_us: int) -> CallContext:
        deadline = None if timeout_us == _NO_TIMEOUT else self._loop.time() + timeout_us / 1e6
        return CallContext(metadata, deadline)

    def _forget(self) -> None:
        if self._idle is not None and not self._calls:
            self._idle.set()

    # -- handlers ----------------------------------------------------------------

    def _unary_fast(self, fast: Callable, direct: bool, method, conn: int, stream: int,
                    data: bytes) -> bool:
        """Answer through ``fast`` (a ``direct`` one gets this server as its
        replier); False when it declined (returned None) and the call must
        run ``fn`` in a Task instead."""
        try:
            result = fast(data, self, (conn, stream)) if direct else fast(data)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            status, text = status_of(exc)
            self._queue(conn, stream, _SEND_END, status, b"", text.encode())
            return True
        if result is None:
            return False
        if result is REPLYING:
            return True
        if not isinstance(result, asyncio.Future):
            self._queue(conn, stream, _MESSAGE_END, 0, method.serialize(result), b"")
            return True
        result.add_done_callback(
            lambda future: self._future_done(future, method, conn, stream))
        return True

    def _future_done(self, future: asyncio.Future, method, conn: int, stream: int) -> None:
        if future.cancelled():
            self._queue(conn, stream, _SEND_END, STATUS_CODES["CANCELLED"], b"",
                        b"the call was cancelled")
            return
        exc = future.exception()
        if exc is not None:
            status, text = status_of(exc)
            self._queue(conn, stream, _SEND_END, status, b"", text.encode())
            return
        self._queue(conn, stream, _MESSAGE_END, 0, method.serialize(future.result()), b"")

    async def _unary(self, method, key: int, conn: int, stream: int, data: bytes,
                     context: CallContext) -> None:
        try:
            request = data if method.deserialize is None else method.deserialize(data)
            result = await method.fn(request, context)
            response = method.serialize(result)
        except asyncio.CancelledError:
            raise  # the client went away (or the server stops): no answer
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            status, text = status_of(exc)
            self._queue(conn, stream, _SEND_END, status, b"", text.encode())
        else:
            self._queue(conn, stream, _MESSAGE_END, 0, response, b"")
        finally:
            if self._calls.pop(key, None) is not None:
                self._forget()

    async def _unary_stream(self, method, key: int, call: _Call, conn: int, stream: int,
                            data: bytes, context: CallContext) -> None:
        try:
            request = data if method.deserialize is None else method.deserialize(data)
            await self._send_all(method, method.fn(request, context), call, conn, stream)
        finally:
            if self._calls.pop(key, None) is not None:
                self._forget()

    async def _stream_stream(self, method, key: int, call: _Call, conn: int, stream: int,
                             context: CallContext) -> None:
        try:
            await self._send_all(method, method.fn(call.requests, context), call, conn, stream)
        finally:
            if self._calls.pop(key, None) is not None:
                self._forget()

    async def _send_all(self, method, responses, call: _Call, conn: int, stream: int) -> None:
        serialize = method.serialize
        try:
            async for item in responses:
                message = serialize(item)
                call.unsent_bytes += len(message)
                if call.unsent_bytes <= STREAM_BUDGET_BYTES:
                    self._queue(conn, stream, _SEND_MESSAGE, 0, message, b"")
                    continue
                call.drained = self._loop.create_future()
                self._queue(conn, stream, _SEND_MESSAGE | _NOTIFY_DRAIN, 0, message, b"")
                await call.drained
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            status, text = status_of(exc)
            self._queue(conn, stream, _SEND_END, status, b"", text.encode())
        else:
            self._queue(conn, stream, _SEND_END, 0, b"", b"")

    # -- responses ---------------------------------------------------------------

    def _queue(self, conn: int, stream: int, flags: int, status: int, message: bytes,
               detail: bytes) -> None:
        self._records.append(_RESPONSE.pack(conn, stream, flags, status, len(message),
                                            len(detail)))
        self._data.append(message)
        if detail:
            self._data.append(detail)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def reply_many(self, answers: list[tuple[tuple[int, int], object]]) -> None:
        """Answer unary calls at once, from any thread (``Replier``): each
        token is the call's (conn, stream), each result the response bytes
        (or a message) or an exception. One crossing for the lot."""
        pack = _RESPONSE.pack
        records: list[bytes] = []
        data: list[bytes] = []
        for (conn, stream), result in answers:
            if isinstance(result, BaseException):
                status, text = status_of(result)
                detail = text.encode()
                records.append(pack(conn, stream, _SEND_END, status, 0, len(detail)))
                data.append(detail)
            else:
                message = result if isinstance(result, bytes) else result.SerializeToString()
                records.append(pack(conn, stream, _MESSAGE_END, 0, len(message), 0))
                data.append(message)
        joined = b"".join(data)
        rc = lib.pykv_h2_server_respond(self._h, ffi.from_buffer("pykv_h2_response[]",
                                                                  b"".join(records)),
                                        len(records), joined, len(joined))
        if rc != lib.PYKV_OK:  # never raise into the Raft thread: say these calls are lost
            log.error("answers could not be handed to the gRPC server",
                      extra={"fields": {"rc": rc, "answers": len(records)}})

    def _flush(self) -> None:
        """Hand every response of this loop turn to the I/O thread at once."""
        self._flush_scheduled = False
        if not self._records:
            return
        records = b"".join(self._records)
        data = b"".join(self._data)
        count = len(self._records)
        self._records = []
        self._data = []
        rc = lib.pykv_h2_server_respond(self._h, ffi.from_buffer("pykv_h2_response[]", records),
                                        count, data, len(data))
        check(rc, "handing responses to the gRPC server")


def split_client_urls(urls: list[str], choice: str) -> tuple[list[str], list[str]]:
    """(URLs the native server answers, URLs left to grpcio): with
    ``--grpc-server native`` every plaintext http URL is native; TLS and
    unix URLs always stay with grpcio."""
    if choice != "native" or not supported():
        return [], list(urls)
    native = [u for u in urls if urllib.parse.urlparse(u).scheme == "http"]
    return native, [u for u in urls if u not in native]
