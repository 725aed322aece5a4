"""The data directory is the server's: a directory made by ``pykv.open`` is
served by ``pykv serve --data-dir`` (read with the real etcdctl), and one the
server wrote is opened again by ``pykv.open``."""

from __future__ import annotations

import shutil

import pytest

import pykv
from pykv.embedded import put_op
from tests.e2e.harness import ServerProcess, etcdctl, etcdctl_json

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("etcdctl") is None,
                       reason="etcdctl is not installed (Debian's etcd-client)"),
]

DEFAULT_MEMBER_ID = "8e9e05c52164694d"  # etcd's id for a default one-member cluster


def serve(data_dir):
    return ServerProcess(data_dir).start()


def stop(server) -> None:
    code = server.stop()
    assert code == 0, f"pykv serve exited with {code}:\n{server.log()}"


def test_a_directory_made_by_pykv_open_is_served_and_comes_back(tmp_path):
    data_dir = tmp_path / "data"
    with pykv.open(data_dir) as db:
        db.put("app/a", "1")
        db.put("app/b", "2")
        db.txn().then(put_op("app/c", "3"), put_op("app/a", "1b")).commit()
        lease = db.grant(3600)
        db.put("app/leased", "x", lease=lease)
        db.delete("app/b")
        revision = db.status().revision

    server = serve(data_dir)
    try:
        got = etcdctl_json(server.endpoint, "get", "app/", "--prefix")
        assert {kv["key"]: kv["value"] for kv in _decoded(got)} == \
            {"app/a": "1b", "app/c": "3", "app/leased": "x"}
        assert got["header"]["revision"] == revision
        leases = etcdctl_json(server.endpoint, "lease", "list")
        assert [int(item["id"]) for item in leases["leases"]] == [lease.id]
        status = etcdctl_json(server.endpoint, "endpoint", "status")[0]["Status"]
        assert format(status["header"]["member_id"], "x") == DEFAULT_MEMBER_ID
        etcdctl(server.endpoint, "put", "app/from-server", "hello")
    finally:
        stop(server)

    with pykv.open(data_dir) as db:
        kv = db.get("app/from-server")
        assert kv.value == b"hello" and kv.mod_revision == revision + 1
        assert db.get("app/a").value == b"1b"
        assert db.put("app/after", "again").revision == revision + 2
        assert db.leases() == [lease.id]


def test_a_directory_the_server_made_opens_with_pykv_open(tmp_path):
    data_dir = tmp_path / "served"
    server = serve(data_dir)
    try:
        for i in range(20):
            etcdctl(server.endpoint, "put", f"s/{i:02d}", f"v{i}")
        etcdctl(server.endpoint, "del", "s/05")
        revision = etcdctl_json(server.endpoint, "get", "s/00")["header"]["revision"]
    finally:
        stop(server)

    with pykv.open(data_dir) as db:
        result = db.range("s/", prefix=True)
        assert result.count == 19 and result.revision == revision
        assert db.get("s/05") is None and db.get("s/19").value == b"v19"
        db.put("s/embedded", "yes")

    server = serve(data_dir)
    try:
        got = etcdctl_json(server.endpoint, "get", "s/embedded")
        assert _decoded(got)[0]["value"] == "yes"
    finally:
        stop(server)


def _decoded(response: dict) -> list[dict]:
    import base64

    return [{"key": base64.b64decode(kv["key"]).decode(),
             "value": base64.b64decode(kv.get("value", "")).decode()}
            for kv in response.get("kvs", [])]
