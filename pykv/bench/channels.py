"""gRPC channels to etcd endpoints, plaintext or TLS, one TCP connection each."""

from __future__ import annotations

import pathlib

import grpc

from .config import TLSConfig

# Large enough for any etcd response (etcd's own client accepts MaxInt32).
_MAX_MESSAGE_BYTES = 2**31 - 1


def parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """``"https://h:p"`` -> ``("h:p", True)``; a bare ``"h:p"`` or ``http://`` is plaintext."""
    endpoint = endpoint.strip()
    for scheme, secure in (("https://", True), ("http://", False), ("unix://", False)):
        if endpoint.startswith(scheme):
            target = endpoint[len(scheme):] if scheme != "unix://" else endpoint
            return target.rstrip("/"), secure
    return endpoint.rstrip("/"), False


def _read(path: str, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path!r}: {exc.strerror}") from exc


def credentials(tls: TLSConfig) -> grpc.ChannelCredentials:
    if bool(tls.cert) != bool(tls.key):
        raise ValueError("--cert and --key go together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.cacert, "--cacert") if tls.cacert else None,
        private_key=_read(tls.key, "--key") if tls.key else None,
        certificate_chain=_read(tls.cert, "--cert") if tls.cert else None,
    )


def channel_options(tls: TLSConfig) -> list[tuple[str, object]]:
    options: list[tuple[str, object]] = [
        # Without this, channels with equal arguments share one subchannel, i.e. one
        # TCP connection, and --conns would not mean what it says.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ]
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return options


def aio_channel(endpoint: str, tls: TLSConfig) -> grpc.aio.Channel:
    """A new asyncio channel (its own connection) to ``endpoint``."""
    target, secure = parse_endpoint(endpoint)
    options = channel_options(tls)
    if secure or tls.enabled:
        return grpc.aio.secure_channel(target, credentials(tls), options=options)
    return grpc.aio.insecure_channel(target, options=options)


def sync_channel(endpoint: str, tls: TLSConfig) -> grpc.Channel:
    """A blocking channel, for setup and checks outside the measured run."""
    target, secure = parse_endpoint(endpoint)
    options = channel_options(tls)
    if secure or tls.enabled:
        return grpc.secure_channel(target, credentials(tls), options=options)
    return grpc.insecure_channel(target, options=options)
