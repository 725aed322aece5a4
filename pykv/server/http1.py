"""A small HTTP/1.1 server for what etcd serves over plain HTTP: /health,
/version, /metrics and the grpc-gateway JSON API.

It serves connections the native gRPC server hands over when a client's
first bytes are an HTTP/1 request line instead of HTTP/2's preface (etcd
multiplexes its client port the same way, with cmux), and the listeners of
``--listen-metrics-urls``.

What it does: persistent connections (HTTP/1.1 keep-alive, HTTP/1.0 when
asked), pipelined requests in order, ``Content-Length`` and chunked request
bodies, ``Expect: 100-continue``, chunked streamed responses, and a
streamed response stops (its producer is cancelled) when the client goes
away. Everything is bounded (`Limits`): request line and headers, body
bytes, time to send a request head, idle time, connections. Malformed input
gets a 4xx answer and the connection closed, never an exception escaping.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("pykv.server.http1")

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    411: "Length Required", 412: "Precondition Failed", 413: "Payload Too Large",
    417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_READ_BYTES = 65536
_HEAD_END = re.compile(rb"\r?\n\r?\n")


async def _read(reader: asyncio.StreamReader, timeout_s: float | None) -> bytes:
    if timeout_s is None:
        return await reader.read(_READ_BYTES)
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no Task per read, unlike wait_for
        async with asyncio.timeout(timeout_s):
            return await reader.read(_READ_BYTES)
    return await asyncio.wait_for(reader.read(_READ_BYTES), timeout_s)  # pragma: no cover


@dataclass
class Limits:
    """Bounds on what one client may make the server hold or wait for."""

    head_bytes: int = 64 * 1024          # request line + headers
    headers: int = 100
    body_bytes: int = 8 << 20            # a request body, read whole
    head_timeout_s: float = 30.0         # from a request's first byte to its blank line
    idle_timeout_s: float = 300.0        # between requests on a kept-alive connection
    body_timeout_s: float = 60.0         # between two pieces of a request body
    connections: int = 4096              # open HTTP/1 connections (more are closed)
    half_closed_grace_s: float = 1.0     # a request whose client closed: cancelled after this


class HttpError(Exception):
    """Answer the request with ``status`` and a plain-text ``text``."""

    def __init__(self, status: int, text: str | None = None):
        super().__init__(text or REASONS.get(status, ""))
        self.status = status
        self.text = text if text is not None else REASONS.get(status, "")


class ClientGone(Exception):
    """The client closed the connection (or went silent) mid-request."""


class _Input:
    """The connection's bytes not yet parsed, over an asyncio StreamReader:
    unlike StreamReader, bytes read ahead (a pipelined request that came
    while a response streamed) stay available to the next request."""

    def __init__(self, reader: asyncio.StreamReader, initial: bytes):
        self.reader = reader
        self.buf = bytearray(initial)
        self.eof = False

    async def fill(self, timeout_s: float | None) -> bool:
        """Read more; False at EOF."""
        if self.eof:
            return False
        try:
            data = await _read(self.reader, timeout_s)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


class Body:
    """A request's body, read on demand: ``read_all`` for a whole body
    (bounded by ``Limits.body_bytes``), or ``pieces`` as it arrives."""

    def __init__(self, inp: _Input, length: int | None, chunked: bool, limits: Limits,
                 on_first_read: Callable[[], Awaitable[None]] | None = None):
        self._inp = inp
        self._left = length or 0
        self._chunked = chunked
        self._limits = limits
        self._on_first_read = on_first_read
        self.done = asyncio.Event()
        if not chunked and not length:
            self.done.set()

    async def _fill(self) -> None:
        if not await self._inp.fill(self._limits.body_timeout_s):
            raise ClientGone("the client closed the connection in a request body")

    async def _line(self) -> bytes:
        inp = self._inp
        while True:
            at = inp.buf.find(b"\n")
            if at >= 0:
                return inp.take(at + 1).rstrip(b"\r\n")
            if len(inp.buf) > 4096:
                raise HttpError(400, "chunk line too long")
            await self._fill()

    async def pieces(self) -> AsyncIterator[bytes]:
        if self.done.is_set():
            return
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            await callback()
        inp = self._inp
        try:
            while not self.done.is_set():
                if not self._chunked:
                    if not inp.buf:
                        await self._fill()
                    piece = inp.take(min(self._left, len(inp.buf)))
                    self._left -= len(piece)
                    if self._left == 0:
                        self.done.set()
                    yield piece
                    continue
                if self._left == 0:
                    size_text = (await self._line()).split(b";", 1)[0].strip()
                    if not size_text or len(size_text) > 15 or \
                            any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                        raise HttpError(400, "bad chunk size")
                    self._left = int(size_text, 16)
                    if self._left == 0:  # the last chunk: trailers, then a blank line
                        trailer_bytes = 0
                        while line := await self._line():
                            trailer_bytes += len(line)
                            if trailer_bytes > self._limits.head_bytes:
                                raise HttpError(431)
                        self.done.set()
                        return
                if not inp.buf:
                    await self._fill()
                piece = inp.take(min(self._left, len(inp.buf)))
                self._left -= len(piece)
                if self._left == 0:  # the chunk's data ends with CRLF
                    while len(inp.buf) < 2:
                        await self._fill()
                    if inp.take(2) != b"\r\n":
                        raise HttpError(400, "chunk data not followed by CRLF")
                yield piece
        except asyncio.TimeoutError:
            raise ClientGone("the request body stalled") from None

    async def read_all(self) -> bytes:
        parts, size = [], 0
        async for piece in self.pieces():
            size += len(piece)
            if size > self._limits.body_bytes:
                raise HttpError(413, f"request body over {self._limits.body_bytes} bytes")
            parts.append(piece)
        return b"".join(parts)

    async def discard(self) -> None:
        """Read what the handler left unread, so that the next request
        parses (bounded: past the limit the connection just closes)."""
        size = 0
        async for piece in self.pieces():
            size += len(piece)
            if size > self._limits.body_bytes:
                raise HttpError(413)


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]   # lower-case names; repeated fields joined with ", "
    body: Body
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass
class Response:
    """``body`` bytes go out with a Content-Length; an async iterator of
    bytes goes out chunk by chunk (each item one chunk, flushed)."""

    status: int = 200
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


def text_response(status: int, text: str | None = None,
                  headers: list[tuple[str, str]] | None = None) -> Response:
    """Go's http.Error: the text and a newline, as plain text."""
    body = (text if text is not None else REASONS.get(status, "")) + "\n"
    return Response(status, body.encode(),
                    headers=[*(headers or []), ("X-Content-Type-Options", "nosniff")])


class _Date:
    """The Date header, formatted once per second."""

    def __init__(self):
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._text = email.utils.formatdate(now, usegmt=True)
        return self._text


_date = _Date()


def _parse_head(head: bytes, limits: Limits) -> tuple[str, str, str, dict[str, str]]:
    lines = head.split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if any(c not in _TOKEN for c in method):
        raise HttpError(400, "malformed method")
    if any(c <= 0x20 or c == 0x7f for c in target):
        raise HttpError(400, "malformed request target")
    if not version.startswith(b"HTTP/"):
        raise HttpError(400, "malformed HTTP version")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505)
    headers: dict[str, str] = {}
    fields = [line for line in lines[1:] if line]
    if len(fields) > limits.headers:
        raise HttpError(431, "too many header fields")
    for line in fields:
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete line folding")
        name, sep, value = line.partition(b":")
        if not sep or not name or any(c not in _TOKEN for c in name):
            raise HttpError(400, "malformed header field")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return method.decode("ascii"), target.decode("latin-1"), version.decode("ascii"), headers


def _body_framing(headers: dict[str, str]) -> tuple[int | None, bool]:
    """(Content-Length, chunked) per RFC 9112 6; both given is refused (it
    is how requests are smuggled past proxies)."""
    encoding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if encoding is not None:
        if length is not None:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        if codings != ["chunked"]:
            raise HttpError(501, f"transfer coding {encoding!r} is not supported")
        return None, True
    if length is None:
        return None, False
    values = {v.strip() for v in length.split(",")}
    if len(values) != 1:
        raise HttpError(400, "conflicting Content-Length")
    value = values.pop()
    if not value.isdigit() or len(value) > 18:
        raise HttpError(400, "malformed Content-Length")
    return int(value), False


class Http1Server:
    """Serves HTTP/1.1 connections with one ``handler``. ``accept`` takes a
    socket (and bytes already read from it) from the native gRPC server;
    ``start_listeners`` listens itself; ``close`` ends every connection."""

    def __init__(self, handler: Handler, limits: Limits | None = None):
        self.handler = handler
        self.limits = limits or Limits()
        self._tasks: set[asyncio.Task] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self.connections_refused = 0

    # -- entry points -------------------------------------------------------

    def accept(self, sock: socket.socket, initial: bytes) -> None:
        """Take over an accepted socket whose first ``initial`` bytes were
        read elsewhere. Call on the event loop."""
        if len(self._tasks) >= self.limits.connections:
            self.connections_refused += 1
            sock.close()
            return
        asyncio.get_running_loop().create_task(self._serve_socket(sock, initial))

    async def start_listeners(self, urls: list[str]) -> None:
        loop = asyncio.get_running_loop()
        for url in urls:
            parsed = urllib.parse.urlparse(url)
            self._servers.append(await loop.create_server(
                lambda: self._connection(b"").protocol, parsed.hostname or "localhost",
                parsed.port, reuse_port=True))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _connection(self, initial: bytes) -> _Connection:
        """A connection whose task starts once its transport is made
        (refused at once past ``Limits.connections``)."""
        return _Connection(self, initial, len(self._tasks) < self.limits.connections)

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_socket(self, sock: socket.socket, initial: bytes) -> None:
        loop = asyncio.get_running_loop()
        connection = self._connection(initial)
        try:
            sock.setblocking(False)
            await loop.connect_accepted_socket(lambda: connection.protocol, sock=sock)
        except (OSError, RuntimeError):
            sock.close()

    # -- one connection -----------------------------------------------------

    async def serve(self, connection: _Connection) -> None:
        inp = _Input(connection.reader, connection.initial)
        writer = connection.writer
        try:
            while await self._one_request(inp, writer, connection):
                pass
        except (ConnectionError, ClientGone, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            if not connection.gone:
                raise  # the server is closing
        except Exception:  # noqa: BLE001 - one connection's bug must not end the server
            log.exception("HTTP connection failed")
        finally:
            writer.close()

    async def _read_head(self, inp: _Input) -> bytes | None:
        """The next request's head (through its blank line), or None when
        the client closed or idled out between requests."""
        limits = self.limits
        while inp.buf[:2] == b"\r\n" or inp.buf[:1] == b"\n":  # RFC 9112 2.2: skip
            del inp.buf[:2 if inp.buf[:2] == b"\r\n" else 1]
        started = bool(inp.buf)
        deadline = time.monotonic() + limits.head_timeout_s
        scanned = 0
        while True:
            end = _HEAD_END.search(inp.buf, max(0, scanned - 3))
            if end is not None:
                if end.end() > limits.head_bytes:
                    raise HttpError(431, "request head too large")
                return inp.take(end.end())
            scanned = len(inp.buf)
            if scanned > limits.head_bytes:
                raise HttpError(431, "request head too large")
            timeout = max(0.0, deadline - time.monotonic()) if started else limits.idle_timeout_s
            try:
                more = await inp.fill(timeout)
            except asyncio.TimeoutError:
                if started:
                    raise HttpError(408) from None
                return None
            if not more:
                if inp.buf.strip():
                    raise ClientGone("the client closed the connection in a request head")
                return None
            if not started:
                started = True
                deadline = time.monotonic() + limits.head_timeout_s

    async def _one_request(self, inp: _Input, writer: asyncio.StreamWriter,
                           connection: _Connection) -> bool:
        """Serve one request; whether the connection goes on."""
        try:
            head = await self._read_head(inp)
            if head is None:
                return False
            method, target, version, headers = _parse_head(head, self.limits)
            length, chunked = _body_framing(headers)
            if length is not None and length > self.limits.body_bytes:
                raise HttpError(413, f"request body over {self.limits.body_bytes} bytes")
        except HttpError as error:
            await self._write(writer, text_response(error.status, error.text), "HTTP/1.1",
                              False, False)
            return False
        tokens = headers.get("connection", "").lower()
        keep_alive = ("close" not in tokens) if version == "HTTP/1.1" else ("keep-alive" in tokens)
        expect = headers.get("expect", "").lower()
        if expect and expect != "100-continue":
            await self._write(writer, text_response(417), version, False, False)
            return False

        async def send_continue() -> None:
            # The client waits for this before sending a body it announced.
            if expect and version == "HTTP/1.1":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()

        body = Body(inp, length, chunked, self.limits, send_continue)
        url = urllib.parse.urlsplit(target)
        request = Request(method, target, version, headers, body, url.path,
                          urllib.parse.parse_qs(url.query))
        try:
            with connection.phase(_CALL):
                response = await self.handler(request)
        except HttpError as error:
            response = text_response(error.status, error.text)
            keep_alive = False  # the body may be half read
        except ClientGone:
            return False
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a handler's bug: answer 500, keep serving others
            log.exception("HTTP request failed", extra={"fields": {"path": request.path}})
            response = text_response(500)
            keep_alive = False
        head_only = method == "HEAD"
        streamed = not isinstance(response.body, (bytes, bytearray))
        if keep_alive and not streamed and not body.done.is_set():
            # What the handler left unread must go before the next request
            # parses; but a client that waits for 100 Continue never sends it.
            keep_alive = False
            if not expect:
                try:
                    await body.discard()
                    keep_alive = True
                except (HttpError, ClientGone):
                    pass
        return await self._write(writer, response, version, keep_alive, head_only, connection)

    async def _write(self, writer: asyncio.StreamWriter, response: Response, version: str,
                     keep_alive: bool, head_only: bool,
                     connection: _Connection | None = None) -> bool:
        streamed = not isinstance(response.body, (bytes, bytearray))
        if streamed and version == "HTTP/1.0":
            keep_alive = False  # no chunked coding: the body ends with the connection
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
                 f"Content-Type: {response.content_type}", f"Date: {_date()}"]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if not streamed:
            lines.append(f"Content-Length: {len(response.body)}")
        elif version == "HTTP/1.1":
            lines.append("Transfer-Encoding: chunked")
        if not keep_alive:
            lines.append("Connection: close")
        elif version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not streamed:
            # one write, one send(2): the head and body together
            writer.write(head if head_only else head + response.body)
            await writer.drain()
            return keep_alive
        writer.write(head)
        chunked = version == "HTTP/1.1"
        completed = await self._stream(writer, response.body, chunked and not head_only,
                                       head_only, connection)
        return keep_alive and completed

    async def _stream(self, writer, chunks: AsyncIterator[bytes], chunked: bool,
                      head_only: bool, connection: _Connection | None) -> bool:
        """Send the chunks; when the client goes away the producer is
        cancelled (a watch must not outlive its client). Whether the stream
        ended normally."""
        try:
            with connection.phase(_STREAM) if connection else contextlib.nullcontext():
                async for chunk in chunks:
                    if not chunk or head_only:
                        continue
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                    await writer.drain()
                if chunked:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
        except (ConnectionError, ClientGone):
            return False
        except asyncio.CancelledError:
            if connection is None or not connection.gone:
                raise
            return False
        except Exception:  # noqa: BLE001 - the producer's bug ends this response only
            log.exception("streamed HTTP response failed")
            return False
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return connection is None or not connection.gone


_IDLE, _CALL, _STREAM = 0, 1, 2


class _Connection:
    """One client connection: its protocol, reader and writer, and what it
    is doing. The transport reports the client's EOF (or a reset) here at
    once, whoever is reading: a handler still working on a request is
    cancelled ``Limits.half_closed_grace_s`` later (a client that only
    half-closed may still read its answer), a streamed answer at once."""

    def __init__(self, server: Http1Server, initial: bytes, admitted: bool):
        self.server = server
        self.initial = initial
        self.admitted = admitted
        self.reader = asyncio.StreamReader(limit=server.limits.head_bytes)
        self.protocol = _Protocol(self.reader, self)
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.gone = False
        self._phase = _IDLE
        self._serial = 0  # which call a delayed cancel was meant for

    def connected(self, transport) -> None:
        loop = asyncio.get_running_loop()
        self.writer = asyncio.StreamWriter(transport, self.protocol, self.reader, loop)
        if not self.admitted:
            self.server.connections_refused += 1
            transport.close()
            return
        self.task = loop.create_task(self.server.serve(self))
        self.server._track(self.task)

    def lost(self) -> None:
        if self.gone or self.task is None:
            return
        self.gone = True
        if self._phase == _STREAM:
            self.task.cancel()
        elif self._phase == _CALL:
            serial = self._serial
            asyncio.get_running_loop().call_later(
                self.server.limits.half_closed_grace_s, self._cancel_call, serial)

    def _cancel_call(self, serial: int) -> None:
        if self._phase == _CALL and self._serial == serial and self.task is not None:
            self.task.cancel()

    @contextlib.contextmanager
    def phase(self, phase: int):
        self._phase = phase
        self._serial += 1
        if self.gone and phase == _STREAM:
            raise ClientGone("the client went away")
        if self.gone and phase == _CALL:
            self.gone = False  # rearm: lost() schedules the grace for this call
            self.lost()
        try:
            yield
        finally:
            self._phase = _IDLE


class _Protocol(asyncio.StreamReaderProtocol):
    def __init__(self, reader: asyncio.StreamReader, connection: _Connection):
        super().__init__(reader)
        self._connection = connection

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._connection.connected(transport)

    def eof_received(self):
        keep_open = super().eof_received()  # half-closed: we may still answer
        self._connection.lost()
        return keep_open

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self._connection.lost()
