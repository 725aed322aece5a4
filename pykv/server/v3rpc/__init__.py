"""etcd's gRPC services, one module per service.

Every handler has the same shape (etcd's v3rpc/key.go): validate, call,
fill the header, map errors. ``service_handler`` turns a servicer object into
a grpc generic handler and does the error mapping once: an ``EtcdError``
becomes etcd's gRPC status (code and exact message), a request that does not
parse becomes INVALID_ARGUMENT, and anything else is logged and answered
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


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, errors.EtcdError):
        await context.abort(grpc.StatusCode[exc.code], exc.message)
    if isinstance(exc, DecodeError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"grpc: error unmarshalling request: {exc}")
    log.error("request failed", exc_info=exc)
    await context.abort(grpc.StatusCode.UNKNOWN, f"pykv: {type(exc).__name__}: {exc}")


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


def service_handler(service_descriptor, servicer: object,
                    raw: frozenset[str] = frozenset()) -> grpc.GenericRpcHandler:
    """Handlers for every method of ``service_descriptor`` that ``servicer``
    implements; methods in ``raw`` take and return bytes."""
    from google.protobuf import symbol_database  # noqa: F401  (descriptor classes)
    from google.protobuf.message_factory import GetMessageClass

    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service_descriptor.methods:
        fn = getattr(servicer, method.name, None)
        if fn is None:
            continue
        request_cls = GetMessageClass(method.input_type)
        if method.name in raw:
            deserialize, serialize = None, None
        else:
            deserialize = request_cls.FromString
            serialize = _serialize
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _stream_stream(fn), request_deserializer=deserialize,
                response_serializer=serialize)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _unary_stream(fn), request_deserializer=deserialize,
                response_serializer=serialize)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary(fn), request_deserializer=deserialize, response_serializer=serialize)
    return grpc.method_handlers_generic_handler(service_descriptor.full_name, handlers)


def _serialize(message: Any) -> bytes:
    if isinstance(message, (bytes, bytearray)):
        return bytes(message)
    return message.SerializeToString()
