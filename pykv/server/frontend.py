"""A gRPC front-end process: terminates gRPC for the clients that the kernel
hands it on the shared client port, and forwards every call to the core
process over the link (pykv/server/ipc.py), as raw bytes both ways. It parses
nothing: all checks and all answers come from the core, so a front end can
never disagree with it.

Started by ``pykv serve --frontends N`` as
``python -m pykv.server.frontend --link ADDRESS`` with the server's
configuration in the environment (``PYKV_FRONTEND_CONFIG``, JSON); it prints
"ready" on stdout once it listens, and exits when the link closes or on
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import grpc

from pykv.server import config as config_mod
from pykv.server import grpc_server, ipc
from pykv.server import log as log_mod
from pykv.server.services import SERVICES
from pykv.server.v3rpc import method_kind

log = logging.getLogger("pykv.server.frontend")

CONFIG_ENV = "PYKV_FRONTEND_CONFIG"


def method_table() -> list[tuple[str, str, str]]:
    """``(service, method, kind)`` for every method of every service, in the
    order both ends number them."""
    return [(service.full_name, method.name, method_kind(method))
            for service in SERVICES for method in service.methods]


async def _abort(context, exc: ipc.RemoteError):
    try:
        code = grpc.StatusCode[exc.code]
    except KeyError:
        code = grpc.StatusCode.UNKNOWN
    await context.abort(code, exc.message)


def forwarding_handlers(link: ipc.CoreLinkClient) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for index, (service, name, kind) in enumerate(method_table()):
        if kind == "unary":
            async def handler(raw, context, index=index):
                try:
                    return await link.call(index, raw)
                except ipc.RemoteError as exc:
                    await _abort(context, exc)
            rpc = grpc.unary_unary_rpc_method_handler(handler)
        elif kind == "unary_stream":
            async def handler(raw, context, index=index):
                try:
                    async for chunk in link.call_stream(index, raw):
                        yield chunk
                except ipc.RemoteError as exc:
                    await _abort(context, exc)
            rpc = grpc.unary_stream_rpc_method_handler(handler)
        else:
            async def handler(requests, context, index=index):
                try:
                    async for chunk in link.call_stream(index, b"", requests):
                        yield chunk
                except ipc.RemoteError as exc:
                    await _abort(context, exc)
            rpc = grpc.stream_stream_rpc_method_handler(handler)
        by_service.setdefault(service, {})[name] = rpc
    return [grpc.method_handlers_generic_handler(service, handlers)
            for service, handlers in by_service.items()]


async def serve(config: config_mod.ServerConfig, address: str) -> None:
    loop = asyncio.get_running_loop()
    _, link = await loop.create_unix_connection(ipc.CoreLinkClient,
                                                sock=ipc.connected_socket(address))
    server = grpc_server.build(config, forwarding_handlers(link))
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    closed = asyncio.ensure_future(link.closed)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([closed, stopping], return_when=asyncio.FIRST_COMPLETED)
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pykv.server.frontend")
    parser.add_argument("--link", required=True, help="the core's link address")
    args = parser.parse_args(argv)
    config = config_mod.from_json(os.environ[CONFIG_ENV])
    log_mod.setup(config.log_level, config.log_outputs)
    try:
        import uvloop
        uvloop.run(serve(config, args.link))
    except ImportError:  # pragma: no cover - uvloop is optional
        asyncio.run(serve(config, args.link))
    return 0


if __name__ == "__main__":
    sys.exit(main())
