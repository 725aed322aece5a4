"""Start a throwaway single-member server (real etcd, or pykv serve) to benchmark.

Both get the same settings: a fresh data directory, loopback client and peer
URLs on free ports, default durability (fsync on), so that a comparison is
like for like. Used by ``pykv bench compare`` and by the tests.
"""

from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pykv

from .config import TLSConfig

_READY_TIMEOUT_S = 30.0


class ServerStartError(Exception):
    """The server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ServerTLS:
    """TLS for the client port, with etcd's flags (--cert-file, --key-file, ...)."""

    cert_file: str
    key_file: str
    trusted_ca_file: str = ""
    client_cert_auth: bool = False  # require a client certificate signed by trusted_ca_file

    def etcd_flags(self) -> list[str]:
        flags = ["--cert-file", self.cert_file, "--key-file", self.key_file]
        if self.trusted_ca_file:
            flags += ["--trusted-ca-file", self.trusted_ca_file]
        if self.client_cert_auth:
            flags.append("--client-cert-auth")
        return flags


@dataclass
class ServerProcess:
    """A running server. ``endpoint`` is host:port for gRPC clients (https://host:port with TLS)."""

    kind: str
    proc: subprocess.Popen
    endpoint: str
    data_dir: pathlib.Path
    log_path: pathlib.Path
    _owned_dir: pathlib.Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its data if we made it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _cluster_flags(name: str, data_dir: pathlib.Path, client_port: int, peer_port: int,
                   tls: ServerTLS | None = None) -> list[str]:
    client_url = f"{'https' if tls else 'http'}://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    # etcd's flag names; pykv serve keeps them for compatibility.
    return [
        "--name", name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{name}={peer_url}",
        *(tls.etcd_flags() if tls else []),
    ]


def etcd_command(data_dir: pathlib.Path, client_port: int, peer_port: int,
                 binary: str = "etcd", tls: ServerTLS | None = None) -> list[str]:
    path = shutil.which(binary)
    if path is None:
        raise ServerStartError(f"{binary!r} is not on PATH (Debian: apt-get install etcd-server)")
    return [path, *_cluster_flags("bench", data_dir, client_port, peer_port, tls),
            "--log-level", "warn"]


def pykv_command(data_dir: pathlib.Path, client_port: int, peer_port: int,
                 tls: ServerTLS | None = None) -> list[str]:
    # pykv.cli is the entry point of the installed ``pykv`` script: this is ``pykv serve``.
    return [sys.executable, "-m", "pykv.cli", "serve",
            *_cluster_flags("bench", data_dir, client_port, peer_port, tls)]


def start(kind: str, data_dir: pathlib.Path | None = None, *, binary: str = "etcd",
          tls: ServerTLS | None = None, client_tls: TLSConfig | None = None,
          extra_args: list[str] | None = None) -> ServerProcess:
    """Start ``kind`` ("etcd" or "pykv") with a fresh data directory; wait until it serves.

    ``extra_args`` go at the end of the server's command line (e.g. pykv's
    ``--grpc-server grpcio`` or etcd's ``--quota-backend-bytes``).

    With ``tls`` the client port speaks TLS, and ``client_tls`` is what the
    readiness probe (and so the caller's clients) must present. The caller must
    ``stop()`` the server (or use it as a context manager). Raises
    ServerStartError with the server's log when it does not come up.
    """
    owned = None
    if data_dir is None:
        owned = pathlib.Path(tempfile.mkdtemp(prefix=f"pykv-bench-{kind}-"))
        data_dir = owned / "data"
    client_port, peer_port = free_port(), free_port()
    while peer_port == client_port:
        peer_port = free_port()
    if kind == "etcd":
        command = etcd_command(data_dir, client_port, peer_port, binary, tls)
    elif kind == "pykv":
        command = pykv_command(data_dir, client_port, peer_port, tls)
    else:
        raise ValueError(f"unknown server kind {kind!r}: expected 'etcd' or 'pykv'")
    command += extra_args or []
    log_path = (owned or data_dir.parent) / f"{kind}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        root = str(pathlib.Path(pykv.__file__).resolve().parents[1])
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    endpoint = f"{'https://' if tls else ''}127.0.0.1:{client_port}"
    server = ServerProcess(kind, proc, endpoint, data_dir, log_path, owned)
    try:
        wait_until_serving(server, client_tls or TLSConfig())
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_serving(server: ServerProcess, client_tls: TLSConfig,
                       timeout_s: float = _READY_TIMEOUT_S) -> None:
    """Block until a Range call on ``server`` succeeds (it has a leader and serves)."""
    import grpc

    from . import requests as rq
    from .channels import sync_channel

    deadline = time.monotonic() + timeout_s
    channel = sync_channel(server.endpoint, client_tls)
    try:
        probe = channel.unary_unary(rq.KV_RANGE)
        while True:
            if server.proc.poll() is not None:
                raise ServerStartError(f"{server.kind} exited with code {server.proc.returncode}:\n"
                                       f"{server.log_tail()}")
            try:
                probe(rq.count_request(b"health"), timeout=1.0)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{server.kind} did not serve within {timeout_s:g} s:\n"
                                           f"{server.log_tail()}") from None
                time.sleep(0.05)  # polling a starting process; nothing to wait on instead
    finally:
        channel.close()
