"""etcd's gRPC services, one module per service.

Every handler has the same shape (etcd's v3rpc/key.go): validate, call,
fill the header, map errors. ``service_handler`` turns a servicer object into
a grpc generic handler and does the error mapping once: an ``EtcdError``
becomes etcd's gRPC status (code and exact message), a request that does not
parse becomes INTERNAL (as grpc-go answers it), and anything else is logged and answered
with UNKNOWN, never a crashed server.

Hot unary methods take and return raw bytes (``RAW``): the handler parses
what it must check and forwards the client's own bytes, and the answer is
encoded once, by hand or by the applier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from pykv import errors

log = logging.getLogger("pykv.server.v3rpc")


class _Replying:
    """What a ``direct`` method returns once its answer is on its way to the
    replier it was given."""

    def __repr__(self) -> str:
        return "REPLYING"


REPLYING = _Replying()


def status_of(exc: BaseException) -> tuple[str, str]:
    """The gRPC status (a ``grpc.StatusCode`` name) and message a handler's
    exception becomes, for every server pykv has (grpcio, native, gateway):
    etcd's code and exact text for an EtcdError, grpc-go's INTERNAL
    "error unmarshalling request" for bytes that do not parse, UNKNOWN (and
    a log line) for anything else."""
    if isinstance(exc, errors.EtcdError):
        return exc.code, exc.message
    if isinstance(exc, DecodeError):
        return "INTERNAL", f"grpc: error unmarshalling request: {exc}"
    log.error("request failed", exc_info=exc)
    return "UNKNOWN", f"pykv: {type(exc).__name__}: {exc}"


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    code, message = status_of(exc)
    await context.abort(grpc.StatusCode[code], message)


def _unary(fn: Callable) -> Callable:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(request, context)
        except (errors.EtcdError, DecodeError, ValueError) as exc:
            await _abort(context, exc)
    handler.__name__ = fn.__name__
    return handler


def _unary_stream(fn: Callable) -> Callable:
    async def handler(request: Any, context: grpc.aio.ServicerContext):
        try:
            async for item in fn(request, context):
                yield item
        except (errors.EtcdError, DecodeError, ValueError) as exc:
            await _abort(context, exc)
    handler.__name__ = fn.__name__
    return handler


def _stream_stream(fn: Callable) -> Callable:
    async def handler(requests: Any, context: grpc.aio.ServicerContext):
        try:
            async for item in fn(requests, context):
                yield item
        except (errors.EtcdError, DecodeError, ValueError) as exc:
            await _abort(context, exc)
    handler.__name__ = fn.__name__
    return handler


class Method:
    """One RPC as the server offers it, to gRPC or to the front-end link.

    ``deserialize`` is None for methods that take raw bytes; ``serialize``
    turns what the servicer returns (a message or bytes) into bytes.
    """

    __slots__ = ("path", "name", "fn", "kind", "deserialize", "serialize", "fast", "direct")

    def __init__(self, path: str, name: str, fn: Callable, kind: str,
                 deserialize: Callable | None, serialize: Callable,
                 fast: Callable | None = None, direct: Callable | None = None):
        self.path = path
        self.name = name
        self.fn = fn
        self.kind = kind  # "unary", "unary_stream" or "stream_stream"
        self.deserialize = deserialize
        self.serialize = serialize
        # Optional, raw unary methods only: ``fast(raw)`` answers without a
        # coroutine: a Future of the response bytes, or None for "use fn"
        # (the rare path, e.g. the quota alarm). Raises EtcdError on bad input.
        self.fast = fast
        # Optional, as ``fast`` but ``direct(raw, replier, token)``: it may
        # also return REPLYING, when the answer will go to
        # ``replier.reply_many([(token, result)])`` from whichever thread has
        # it (writes answered by the Raft thread; see
        # pykv.server.raftnode.Replier). A server that can take answers from
        # any thread prefers it to ``fast``.
        self.direct = direct


def method_kind(method_descriptor) -> str:
    if method_descriptor.client_streaming and method_descriptor.server_streaming:
        return "stream_stream"
    if method_descriptor.server_streaming:
        return "unary_stream"
    if method_descriptor.client_streaming:
        raise ValueError(f"{method_descriptor.full_name}: client streaming is not used by etcd")
    return "unary"


def service_methods(service_descriptor, servicer: object,
                    raw: frozenset[str] = frozenset()) -> list[Method]:
    """Every method of ``service_descriptor`` that ``servicer`` implements;
    methods in ``raw`` take and return bytes."""
    from google.protobuf.message_factory import GetMessageClass

    methods = []
    for method in service_descriptor.methods:
        fn = getattr(servicer, method.name, None)
        if fn is None:
            continue
        if method.name in raw:
            deserialize = None
        else:
            deserialize = GetMessageClass(method.input_type).FromString
        fast = direct = None
        if deserialize is None:
            fast = getattr(servicer, f"{method.name}_fast", None)
            direct = getattr(servicer, f"{method.name}_direct", None)
        methods.append(Method(f"/{service_descriptor.full_name}/{method.name}", method.name, fn,
                              method_kind(method), deserialize, _serialize, fast, direct))
    return methods


_WRAP = {"unary": (_unary, grpc.unary_unary_rpc_method_handler),
         "unary_stream": (_unary_stream, grpc.unary_stream_rpc_method_handler),
         "stream_stream": (_stream_stream, grpc.stream_stream_rpc_method_handler)}


def grpc_handlers(methods: list[Method]) -> list[grpc.GenericRpcHandler]:
    """gRPC generic handlers for ``methods``, grouped by service."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for method in methods:
        service = method.path.split("/")[1]
        wrap, make = _WRAP[method.kind]
        by_service.setdefault(service, {})[method.name] = make(
            wrap(method.fn), request_deserializer=method.deserialize,
            response_serializer=None if method.deserialize is None else method.serialize)
    return [grpc.method_handlers_generic_handler(service, handlers)
            for service, handlers in by_service.items()]


def _serialize(message: Any) -> bytes:
    if isinstance(message, (bytes, bytearray)):
        return bytes(message)
    return message.SerializeToString()
