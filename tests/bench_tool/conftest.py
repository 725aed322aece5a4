"""Real servers for the bench tool's tests: etcd (Debian's etcd-server, from PATH)
and ``pykv serve`` from this checkout.

One server of each kind for the whole directory: each test writes under its
own key prefix, so tests do not see each other's keys. ``endpoint`` runs a
test against both, so the tool is checked against etcd's answers and pykv's.
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


@pytest.fixture(scope="session")
def pykv_server():
    from pykv.bench import servers

    server = servers.start("pykv")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["etcd", "pykv"])
def endpoint(request) -> str:
    """The client endpoint of real etcd, then of pykv serve."""
    return request.getfixturevalue(f"{request.param}_server").endpoint
