"""Real processes for end-to-end tests: `pykv serve`, real etcd, real etcdctl."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None,
                  log_path: pathlib.Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = log_path.read_text() if log_path and log_path.exists() else ""
            raise RuntimeError(f"server exited with {process.returncode} before listening:\n{log}")
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout_s}s")


class ServerProcess:
    """A `pykv serve` (or etcd) process on free local ports, with its log file."""

    def __init__(self, data_dir: pathlib.Path, *, etcd: bool = False, name: str = "default",
                 extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 scheme: str = "http"):
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"
        self.url = f"{scheme}://127.0.0.1:{self.client_port}"
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.etcd = etcd
        self.name = name
        self.extra_args = tuple(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.env["PYTHONPATH"] = str(ROOT) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        common = [
            "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}",
        ]
        if self.etcd:
            return [shutil.which("etcd") or "etcd", *common, *self.extra_args]
        return [sys.executable, "-m", "pykv", "serve", *common, *self.extra_args]

    def start(self, timeout_s: float = 30.0) -> "ServerProcess":
        log = open(self.log_path, "ab")
        start_offset = log.tell()  # a restart appends: only its own lines count
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        cwd=str(ROOT), env=self.env)
        log.close()
        wait_for_port(self.client_port, timeout_s, self.process, self.log_path)
        if not self.etcd:
            # With front ends the port opens with the first of them; "ready"
            # is logged once all of them listen.
            deadline = time.monotonic() + timeout_s
            while b"ready to serve client requests" not in self._log_bytes(start_offset):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pykv serve did not get ready:\n{self.log()}")
                time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: the crash a durability test needs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 15.0) -> int:
        if not self.process:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _log_bytes(self, offset: int) -> bytes:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""


def etcdctl_path() -> str | None:
    return shutil.which("etcdctl")


def etcdctl(endpoint: str, *args: str, input: bytes | None = None, timeout_s: float = 30.0,
            check: bool = True, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, ETCDCTL_API="3")
    command = [etcdctl_path() or "etcdctl", f"--endpoints={endpoint}", *extra, *args]
    result = subprocess.run(command, input=input, capture_output=True, timeout=timeout_s, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"etcdctl {' '.join(args)} failed ({result.returncode}):\n"
            f"stdout: {result.stdout.decode(errors='replace')}\n"
            f"stderr: {result.stderr.decode(errors='replace')}")
    return result


def etcdctl_json(endpoint: str, *args: str, **kwargs) -> dict:
    return json.loads(etcdctl(endpoint, *args, "-w", "json", **kwargs).stdout)
