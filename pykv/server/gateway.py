"""etcd's grpc-gateway: the v3 API as JSON over HTTP/1.1, on the client port.

Clients such as etcd3gw (OpenStack) speak only this. The behaviour is
etcd 3.4's (grpc-gateway v1 with ``JSONPb{OrigName: true}``), checked
against a real etcd 3.4.23 beside pykv in ``tests/e2e/test_gateway_parity.py``:

- every call is ``POST <prefix><path>`` with a JSON body (any content type;
  an empty body is an empty request), ``<prefix>`` ``/v3/`` or ``/v3beta/``
  (3.4 kept both; ``ROUTES`` lists the paths);
- JSON as jsonpb writes it: proto field names (``create_revision``,
  ``TTL``), bytes in base64, 64-bit integers as strings, enums by name,
  default values left out. Input takes snake_case or lowerCamel names,
  64-bit integers as strings or numbers, enums by name or number, and
  ignores unknown fields;
- streamed answers (``/v3/watch``, ``/v3/lease/keepalive``,
  ``/v3/election/observe``, ``/v3/maintenance/snapshot``) are chunked, one
  ``{"result":{...}}`` line per message; a bidirectional call takes every
  JSON object of the request body, one after another, as its requests;
- errors: the HTTP status grpc-gateway maps the gRPC code to, and a body
  ``{"error":..., "message":..., "code":N}`` (mid-stream:
  ``{"error":{"grpc_code":N,"http_code":H,"message":...,"http_status":...}}``);
- the ``Authorization`` header reaches handlers as metadata
  ``authorization`` (etcd's swagger token field), ``Grpc-Metadata-<name>``
  headers as ``<name>``, ``Grpc-Timeout`` as the call's deadline.

Calls go to the same ``pykv.server.v3rpc.Method`` objects the gRPC side
serves, so both see one behaviour. Departure from etcd, on purpose
(RELIABILITY.md 6.5): a browser request (one with an ``Origin`` header) is
refused unless ``--cors`` allows its origin, since JSON over HTTP/1 with a
wildcard CORS policy lets any web page write to the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message_factory import GetMessageClass

from pykv.server.h2server import STATUS_CODES, CallContext, status_of
from pykv.server.http1 import REASONS, HttpError, Request, Response, text_response

log = logging.getLogger("pykv.server.gateway")

PREFIXES = ("/v3/", "/v3beta/")

#: path after the prefix -> gRPC method (etcd's google.api.http options).
ROUTES: dict[str, str] = {
    "kv/range": "/etcdserverpb.KV/Range",
    "kv/put": "/etcdserverpb.KV/Put",
    "kv/deleterange": "/etcdserverpb.KV/DeleteRange",
    "kv/txn": "/etcdserverpb.KV/Txn",
    "kv/compaction": "/etcdserverpb.KV/Compact",
    "watch": "/etcdserverpb.Watch/Watch",
    "lease/grant": "/etcdserverpb.Lease/LeaseGrant",
    "lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "kv/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "lease/keepalive": "/etcdserverpb.Lease/LeaseKeepAlive",
    "lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "kv/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "kv/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "cluster/member/add": "/etcdserverpb.Cluster/MemberAdd",
    "cluster/member/remove": "/etcdserverpb.Cluster/MemberRemove",
    "cluster/member/update": "/etcdserverpb.Cluster/MemberUpdate",
    "cluster/member/list": "/etcdserverpb.Cluster/MemberList",
    "cluster/member/promote": "/etcdserverpb.Cluster/MemberPromote",
    "maintenance/alarm": "/etcdserverpb.Maintenance/Alarm",
    "maintenance/status": "/etcdserverpb.Maintenance/Status",
    "maintenance/defragment": "/etcdserverpb.Maintenance/Defragment",
    "maintenance/hash": "/etcdserverpb.Maintenance/Hash",
    "maintenance/hashkv": "/etcdserverpb.Maintenance/HashKV",
    "maintenance/snapshot": "/etcdserverpb.Maintenance/Snapshot",
    "maintenance/transfer-leadership": "/etcdserverpb.Maintenance/MoveLeader",
    "maintenance/downgrade": "/etcdserverpb.Maintenance/Downgrade",
    "auth/enable": "/etcdserverpb.Auth/AuthEnable",
    "auth/disable": "/etcdserverpb.Auth/AuthDisable",
    "auth/status": "/etcdserverpb.Auth/AuthStatus",
    "auth/authenticate": "/etcdserverpb.Auth/Authenticate",
    "auth/user/add": "/etcdserverpb.Auth/UserAdd",
    "auth/user/get": "/etcdserverpb.Auth/UserGet",
    "auth/user/list": "/etcdserverpb.Auth/UserList",
    "auth/user/delete": "/etcdserverpb.Auth/UserDelete",
    "auth/user/changepw": "/etcdserverpb.Auth/UserChangePassword",
    "auth/user/grant": "/etcdserverpb.Auth/UserGrantRole",
    "auth/user/revoke": "/etcdserverpb.Auth/UserRevokeRole",
    "auth/role/add": "/etcdserverpb.Auth/RoleAdd",
    "auth/role/get": "/etcdserverpb.Auth/RoleGet",
    "auth/role/list": "/etcdserverpb.Auth/RoleList",
    "auth/role/delete": "/etcdserverpb.Auth/RoleDelete",
    "auth/role/grant": "/etcdserverpb.Auth/RoleGrantPermission",
    "auth/role/revoke": "/etcdserverpb.Auth/RoleRevokePermission",
    "lock/lock": "/v3lockpb.Lock/Lock",
    "lock/unlock": "/v3lockpb.Lock/Unlock",
    "election/campaign": "/v3electionpb.Election/Campaign",
    "election/proclaim": "/v3electionpb.Election/Proclaim",
    "election/leader": "/v3electionpb.Election/Leader",
    "election/observe": "/v3electionpb.Election/Observe",
    "election/resign": "/v3electionpb.Election/Resign",
}

#: grpc-gateway v1's runtime.HTTPStatusFromCode, by gRPC code (etcd 3.4
#: answers FailedPrecondition with 412, which etcd3gw turns into its
#: PreconditionFailedError).
HTTP_STATUS = {0: 200, 1: 408, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
               9: 412, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}

_JSON_HEADERS = [("Grpc-Metadata-Content-Type", "application/grpc")]
_CONTENT_TYPE = "application/json"
_DECODER = json.JSONDecoder()


class GatewayError(Exception):
    """A call's failure as a gRPC status (code number and message)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _status(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, GatewayError):
        return exc.code, exc.message
    if isinstance(exc, asyncio.TimeoutError):
        return STATUS_CODES["DEADLINE_EXCEEDED"], "context deadline exceeded"
    return status_of(exc)  # as the gRPC side answers it


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(code: int, message: str) -> bytes:
    """grpc-gateway v1's errorBody, in its field order."""
    return _dumps({"error": message, "message": message, "code": code})


def error_response(code: int, message: str) -> Response:
    return Response(HTTP_STATUS.get(code, 500), error_body(code, message), _CONTENT_TYPE)


def stream_error_chunk(code: int, message: str) -> bytes:
    """How grpc-gateway v1 reports an error in a streamed answer."""
    http_code = HTTP_STATUS.get(code, 500)
    return _dumps({"error": {"grpc_code": code, "http_code": http_code, "message": message,
                             "http_status": _reason(http_code)}})


def _reason(status: int) -> str:
    return REASONS.get(status, "")


def to_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def from_json(value: Any, cls):
    """A request message from decoded JSON (None: an empty request)."""
    message = cls()
    if value is None:
        return message
    if not isinstance(value, dict):
        raise GatewayError(STATUS_CODES["INVALID_ARGUMENT"],
                           f"json: cannot unmarshal {type(value).__name__} into Go value of "
                           f"type {cls.DESCRIPTOR.full_name}")
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
        message.SerializeToString()  # e.g. a string that is not UTF-8
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise GatewayError(STATUS_CODES["INVALID_ARGUMENT"], str(exc)) from None
    return message


def _decode_one(data: bytes, final: bool) -> tuple[Any, int] | None:
    """The first JSON value in ``data`` (after whitespace) and the bytes it
    took, or None when there is none yet. Until ``final`` (the body has
    ended) a value that does not parse may just be incomplete: None; after
    it, ValueError."""
    text = data.decode("utf-8", errors="surrogateescape")
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return None
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        if not final:
            return None
        raise ValueError(exc.msg if exc.pos < len(text) else "unexpected EOF") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    return value, len(text[:end].encode("utf-8", errors="surrogateescape"))


class _Route:
    __slots__ = ("method", "request_class", "response_class", "kind")

    def __init__(self, method, request_class, response_class):
        self.method = method
        self.request_class = request_class
        self.response_class = response_class
        self.kind = method.kind


class Gateway:
    """Routes ``POST /v3/...`` requests to ``methods``
    (``pykv.server.v3rpc.Method``). ``handle`` answers a request, or returns
    None for paths that are not the gateway's."""

    def __init__(self, methods: list, *, cors: list[str] | None = None,
                 max_message_bytes: int = 8 << 20):
        from pykv.server.services import SERVICES

        by_path = {m.path: m for m in methods}
        descriptors = {f"/{service.full_name}/{method.name}": method
                       for service in SERVICES for method in service.methods}
        self.routes: dict[str, _Route | str] = {}
        for suffix, path in ROUTES.items():
            descriptor = descriptors.get(path)
            method = by_path.get(path)
            if method is None or descriptor is None:
                service, _, name = path[1:].partition("/")
                # grpc's answer for a method the server does not register
                self.routes[suffix] = f"unknown method {name} for service {service}"
                continue
            self.routes[suffix] = _Route(method, GetMessageClass(descriptor.input_type),
                                         GetMessageClass(descriptor.output_type))
        self.cors = list(cors or [])
        self.max_message_bytes = max_message_bytes

    def route(self, path: str) -> _Route | str | None:
        for prefix in PREFIXES:
            if path.startswith(prefix):
                return self.routes.get(path[len(prefix):])
        return None

    def owns(self, path: str) -> bool:
        return path.startswith(PREFIXES)

    async def handle(self, request: Request) -> Response | None:
        if not self.owns(request.path):
            return None
        cors_headers = self._cors(request)
        if cors_headers is None:
            return text_response(403, "cross-origin requests are not allowed (see --cors)")
        if request.method == "OPTIONS" and cors_headers:
            return Response(200, b"", headers=cors_headers)
        route = self.route(request.path)
        if route is None:
            return text_response(404, "Not Found", headers=cors_headers)
        if request.method != "POST":
            return text_response(405, "Method Not Allowed")
        context = _context(request)
        if isinstance(route, str):
            await request.body.discard()
            response = error_response(STATUS_CODES["UNIMPLEMENTED"], route)
        elif route.kind == "unary":
            response = await self._unary(route, request, context)
        else:
            response = await self._streaming(route, request, context)
        response.headers = cors_headers + response.headers
        return response

    def _cors(self, request: Request) -> list[tuple[str, str]] | None:
        """CORS headers to add ([] for a non-browser request), or None to
        refuse a browser request from an origin --cors does not allow."""
        origin = request.header("origin")
        if not origin:
            return []
        if "*" in self.cors:
            allowed = "*"
        elif origin in self.cors:
            allowed = origin
        else:
            return None
        return [("Access-Control-Allow-Origin", allowed),
                ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
                ("Access-Control-Allow-Headers", "accept, content-type, authorization")]

    # -- unary ----------------------------------------------------------------

    async def _unary(self, route: _Route, request: Request, context: CallContext) -> Response:
        method = route.method
        try:
            message = self._parse_body(await request.body.read_all(), route.request_class)
            argument = message.SerializeToString() if method.deserialize is None else message
            call = method.fn(argument, context)
            remaining = context.time_remaining()
            result = await (asyncio.wait_for(call, remaining) if remaining is not None else call)
            answer = route.response_class.FromString(method.serialize(result))
        except HttpError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            return error_response(*_status(exc))
        return Response(200, _dumps(to_json(answer)), _CONTENT_TYPE, list(_JSON_HEADERS))

    def _parse_body(self, body: bytes, cls):
        """grpc-gateway's unary decoding: one JSON value (nothing: an empty
        request); a body that is not JSON is INVALID_ARGUMENT."""
        try:
            decoded = _decode_one(body, final=True)
        except ValueError as exc:
            raise GatewayError(STATUS_CODES["INVALID_ARGUMENT"], str(exc)) from None
        return from_json(decoded[0] if decoded else None, cls)

    # -- streaming ------------------------------------------------------------

    async def _streaming(self, route: _Route, request: Request,
                         context: CallContext) -> Response:
        method = route.method
        try:
            if route.kind == "unary_stream":
                message = self._parse_body(await request.body.read_all(), route.request_class)
                argument = message.SerializeToString() if method.deserialize is None else message
                responses = method.fn(argument, context)
            else:
                requests = _RequestStream(request, route.request_class, method.deserialize,
                                          self.max_message_bytes)
                await requests.start()
                responses = method.fn(requests, context)
        except GatewayError as exc:
            # grpc-gateway answers a first request it cannot decode with the
            # error as is: UNKNOWN for a bidirectional call, HTTP 500.
            code = STATUS_CODES["UNKNOWN"] if route.kind == "stream_stream" else exc.code
            return error_response(code, exc.message)
        iterator = responses.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            return Response(200, _empty(), _CONTENT_TYPE, list(_JSON_HEADERS))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            code, message = _status(exc)
            return Response(HTTP_STATUS.get(code, 500), _once(stream_error_chunk(code, message)),
                            _CONTENT_TYPE)
        return Response(200, self._chunks(route, first, iterator), _CONTENT_TYPE,
                        list(_JSON_HEADERS))

    async def _chunks(self, route: _Route, first, iterator) -> AsyncIterator[bytes]:
        serialize = route.method.serialize
        cls = route.response_class
        item = first
        try:
            while True:
                answer = cls.FromString(serialize(item))
                yield _dumps({"result": to_json(answer)}) + b"\n"
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the stream, as grpc-gateway
            yield stream_error_chunk(*_status(exc))
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # an async generator with nothing in it


async def _once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


class _RequestStream:
    """The requests of a bidirectional call: every JSON object of the HTTP
    request body, decoded as it arrives. The first must decode (``start``);
    a later one that does not ends the stream, as grpc-gateway does."""

    def __init__(self, request: Request, cls, deserialize, max_message_bytes: int):
        self._pieces = request.body.pieces().__aiter__()
        self._cls = cls
        self._raw = deserialize is None
        self._max = max_message_bytes
        self._buf = b""
        self._ended = False
        self._first = None

    async def start(self) -> None:
        self._first = await self._next(strict=True)

    async def _next(self, strict: bool):
        """The next request, None at the end of the body."""
        fresh = True  # only new bytes can complete a value
        while True:
            decoded = None
            if fresh:
                try:
                    decoded = _decode_one(self._buf, final=self._ended)
                except ValueError as exc:
                    if strict:
                        raise GatewayError(STATUS_CODES["INVALID_ARGUMENT"], str(exc)) from None
                    return None
            if decoded is not None:
                value, end = decoded
                self._buf = self._buf[end:]
                try:
                    message = from_json(value, self._cls)
                except GatewayError:
                    if strict:
                        raise
                    return None
                return message.SerializeToString() if self._raw else message
            if self._ended:
                return None
            if len(self._buf) > self._max:
                raise GatewayError(STATUS_CODES["RESOURCE_EXHAUSTED"],
                                   f"a request message over {self._max} bytes")
            try:
                piece = await self._pieces.__anext__()
            except StopAsyncIteration:
                self._ended = True
                fresh = True
                continue
            self._buf += piece
            fresh = b"}" in piece or b"]" in piece

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            item = await self._next(strict=False)
        except Exception:  # noqa: BLE001 - the client's side of the stream just ends
            item = None
        if item is None:
            raise StopAsyncIteration
        return item


def _context(request: Request) -> CallContext:
    pairs = []
    authorization = request.header("authorization")
    if authorization:
        pairs.append(("authorization", authorization))
    for name, value in request.headers.items():
        if name.startswith("grpc-metadata-") and len(name) > 14:
            pairs.append((name[14:], value))
    metadata = "".join(f"{n}\0{v}\0" for n, v in pairs).encode("latin-1", errors="replace")
    deadline = None
    timeout = _grpc_timeout(request.header("grpc-timeout"))
    if timeout is not None:
        deadline = asyncio.get_running_loop().time() + timeout
    return CallContext(metadata, deadline)


_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _grpc_timeout(text: str) -> float | None:
    if len(text) < 2 or len(text) > 9 or not text[:-1].isdigit() or text[-1] not in _UNITS:
        return None
    return int(text[:-1]) * _UNITS[text[-1]]
