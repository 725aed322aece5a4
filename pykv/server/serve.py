"""``pykv serve``: run one member of an etcd-compatible cluster.

Start-up order: configuration, logging, the core (data directory lock, WAL
recovery, store, Raft), then the gRPC listeners. Shutdown (SIGINT/SIGTERM)
in the reverse order: stop taking requests (with a short grace for the ones
in flight), stop the Raft loop, checkpoint and close the store, close the
WAL, release the lock.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys

from pykv import errors
from pykv.server import config as config_mod
from pykv.server import log as log_mod

log = logging.getLogger("pykv.server")

SHUTDOWN_GRACE_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_mod.from_args(args)
    except config_mod.ConfigError as exc:
        print(f"pykv serve: {exc}", file=sys.stderr)
        return 2
    log_mod.setup(config.log_level, config.log_outputs)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        uvloop = None
    try:
        if uvloop is not None:
            uvloop.run(serve(config))
        else:
            asyncio.run(serve(config))
    except errors.LockedError as exc:
        log.error("cannot start", extra=log_mod.fields(error=str(exc)))
        print(f"pykv serve: {exc}", file=sys.stderr)
        return 1
    except (errors.StorageError, OSError, RuntimeError) as exc:
        text = str(exc) or repr(exc)
        log.error("cannot start", exc_info=exc, extra=log_mod.fields(error=text))
        print(f"pykv serve: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _keepalive_limits(config: config_mod.ServerConfig) -> dict[str, int]:
    return {"keepalive_interval_us": int(config.grpc_keepalive_interval_s * 1e6),
            "keepalive_timeout_us": int(config.grpc_keepalive_timeout_s * 1e6),
            "keepalive_min_time_us": int(config.grpc_keepalive_min_time_s * 1e6)}


def _client_port_http(config: config_mod.ServerConfig, core, methods):
    """The HTTP/1 side of the client port: /health and the like, and the
    JSON gateway unless --enable-grpc-gateway=false."""
    from pykv.server import http
    from pykv.server.gateway import Gateway
    from pykv.server.http1 import Limits

    # A JSON body holds the request in base64 (4/3) plus names and quotes.
    body_bytes = 2 * config.grpc_max_receive_bytes
    gateway = None
    if config.enable_grpc_gateway:
        gateway = Gateway(methods, cors=config.cors, max_message_bytes=body_bytes)
    return http.client_port_server(core, methods, gateway, Limits(body_bytes=body_bytes))


async def serve(config: config_mod.ServerConfig) -> None:
    from pykv.server.compactor import AutoCompactor
    from pykv.server.core import Core
    from pykv.server import grpc_server
    from pykv.server.services import build_methods
    from pykv.server.v3rpc import grpc_handlers

    loop = asyncio.get_running_loop()
    core = Core(config, loop)
    core.start()
    server = None
    native = None
    client_http = None
    metrics_http = None
    try:
        methods, _ = build_methods(config, core)
        from pykv.server import h2server

        if config.grpc_server == "native" and not h2server.supported():
            log.warning("the native gRPC server needs Linux (epoll); serving gRPC with "
                        "grpcio, without HTTP/1 on the client port")
        native_urls, grpcio_urls = h2server.split_client_urls(
            config.listen_client_urls, config.grpc_server)
        if native_urls:
            client_http = _client_port_http(config, core, methods)
            native = h2server.NativeServer(
                methods, max_receive_bytes=config.grpc_max_receive_bytes,
                http1=client_http.accept, **_keepalive_limits(config))
            for url in native_urls:
                native.add_url(url)
            await native.start()
        if grpcio_urls:
            server = grpc_server.build(
                dataclasses.replace(config, listen_client_urls=grpcio_urls),
                grpc_handlers(methods))
            await server.start()
        if config.listen_metrics_urls:
            from pykv.server import http

            metrics_http = await http.start(core, config.listen_metrics_urls, methods)
        compactor = AutoCompactor(core, config.auto_compaction_mode,
                                  config.auto_compaction_retention)
        compactor.start()
        if config.effective_quota_backend_bytes > config_mod.MAX_QUOTA_BACKEND_BYTES_WARN:
            log.warning("quota-backend-bytes is larger than the suggested maximum (8 GiB)",
                        extra=log_mod.fields(quota=config.effective_quota_backend_bytes))
        log.info("ready to serve client requests", extra=log_mod.fields(
            urls=config.listen_client_urls, member_id=f"{core.member_id:x}",
            grpc_server=config.grpc_server))
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("received a stop signal, shutting down")
    finally:
        if metrics_http is not None:
            await metrics_http.close()
        if native is not None:
            await native.stop(SHUTDOWN_GRACE_S)
        if client_http is not None:
            await client_http.close()
        if server is not None:
            await server.stop(SHUTDOWN_GRACE_S)
        core.stop()
        log.info("stopped")
