"""The native server is Linux's (epoll, eventfd); elsewhere h2_server.c must
still compile (to stubs), so that `pip install .` builds on any POSIX system
and `pykv serve` falls back to grpcio."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from pykv._binding import lib
from pykv.server import h2server

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to check with")
def test_h2_server_compiles_without_linux():
    result = subprocess.run(
        ["cc", "-fsyntax-only", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-Wno-unused-parameter", "-U__linux__", "-Ulinux", "-D_GNU_SOURCE", "-Icsrc",
         "csrc/h2_server.c"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_this_linux_build_has_the_native_server():
    assert lib.pykv_h2_server_supported() == 1 and h2server.supported()


def test_without_the_native_server_every_url_goes_to_grpcio(monkeypatch):
    urls = ["http://127.0.0.1:2379", "https://127.0.0.1:2380"]
    assert h2server.split_client_urls(urls, "native") == (urls[:1], urls[1:])
    monkeypatch.setattr(h2server, "supported", lambda: False)
    assert h2server.split_client_urls(urls, "native") == ([], urls)
