"""Fixtures that start real servers. Every test here is marked ``e2e``."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.harness import ServerProcess


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _need_etcdctl():
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl is not installed (Debian's etcd-client; scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def pykv_server(tmp_path_factory):
    _need_etcdctl()
    server = ServerProcess(tmp_path_factory.mktemp("pykv") / "data").start()
    yield server
    code = server.stop()
    assert code == 0, f"pykv serve exited with {code}:\n{server.log()}"


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory):
    _need_etcdctl()
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed (Debian's etcd-server; scripts/test.sh installs it)")
    server = ServerProcess(tmp_path_factory.mktemp("etcd") / "data", etcd=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pykv_twin(tmp_path_factory):
    """pykv for the parity tests: it sees exactly the writes etcd_twin sees."""
    _need_etcdctl()
    server = ServerProcess(tmp_path_factory.mktemp("pykv-twin") / "data").start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def etcd_twin(etcd_server):
    return etcd_server


@pytest.fixture
def fresh_pykv(tmp_path):
    """A server of the test's own, for tests that restart or kill it."""
    _need_etcdctl()
    servers = []

    def start(data_dir=None, **kwargs):
        server = ServerProcess(data_dir or tmp_path / f"data{len(servers)}", **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        try:
            server.stop()
        except Exception:
            server.kill()
