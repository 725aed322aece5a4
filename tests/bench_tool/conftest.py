"""A real etcd (Debian's etcd-server, from PATH) for the bench tool's tests.

One server for the whole directory: each test writes under its own key prefix,
so tests do not see each other's keys.
"""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def etcd_server():
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not on PATH (Debian: apt-get install etcd-server; scripts/test.sh does)")
    from pykv.bench import servers

    server = servers.start("etcd")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_endpoint(etcd_server) -> str:
    return etcd_server.endpoint
