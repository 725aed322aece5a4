"""Build the client-facing grpc.aio server: limits, keepalive, TLS, listeners.

Limits follow etcd: the receive limit is ``--max-request-bytes`` plus 512 KiB
of gRPC overhead (so requests between the two get etcd's "request is too
large" from the handler, and larger ones gRPC's own ResourceExhausted), the
send limit is unbounded. SO_REUSEPORT lets the front-end processes of one
server share the client port.
"""

from __future__ import annotations

import urllib.parse

import grpc

from pykv.server.config import ServerConfig, TLSConfig

_NEVER_MS = 2**31 - 1  # grpc's "no keepalive ping"


def _ms(seconds: float) -> int:
    return min(_NEVER_MS, int(seconds * 1000))


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    interval_ms = _ms(config.grpc_keepalive_interval_s) or _NEVER_MS  # etcd: 0 disables
    return [
        ("grpc.max_receive_message_length", config.grpc_max_receive_bytes),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.so_reuseport", 1),
        ("grpc.keepalive_time_ms", interval_ms),
        ("grpc.keepalive_timeout_ms", _ms(config.grpc_keepalive_timeout_s)),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(config.grpc_keepalive_min_time_s)),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise OSError(f"cannot read {what} {path}: {exc.strerror}") from None


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    key = _read(tls.key_file, "--key-file")
    cert = _read(tls.cert_file, "--cert-file")
    ca = _read(tls.trusted_ca_file, "--trusted-ca-file") if tls.trusted_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=tls.client_cert_auth)


def listen_address(url: str) -> str:
    """``http://localhost:2379`` -> ``localhost:2379`` (grpc's address form)."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{parsed.port}"


def build(config: ServerConfig, handlers: list[grpc.GenericRpcHandler]) -> grpc.aio.Server:
    server = grpc.aio.server(options=server_options(config),
                             maximum_concurrent_rpcs=None)
    server.add_generic_rpc_handlers(handlers)
    credentials = None
    for url in config.listen_client_urls:
        address = listen_address(url)
        if urllib.parse.urlparse(url).scheme in ("https", "unixs"):
            credentials = credentials or server_credentials(config.client_tls)
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"cannot listen on {url}: the address is in use or not local")
    return server
