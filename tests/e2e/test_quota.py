"""--quota-backend-bytes as etcd applies it: past the quota, puts fail with
"database space exceeded" and the NOSPACE alarm is raised; reads and deletes
go on; etcd's documented way out (compact, defrag, alarm disarm) works."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.harness import etcdctl, etcdctl_json

QUOTA_BYTES = 4 << 20
VALUE = b"q" * 200_000


@pytest.mark.parametrize("etcd", [False, True], ids=["pykv", "etcd"])
def test_past_the_quota_puts_fail_until_compact_defrag_and_disarm(fresh_pykv, etcd):
    # The same steps against real etcd show that they are etcd's behaviour.
    if etcd and not shutil.which("etcd"):
        pytest.skip("real etcd (Debian's etcd-server) is not installed")
    server = fresh_pykv(extra_args=("--quota-backend-bytes", str(QUOTA_BYTES)), etcd=etcd)
    endpoint = server.endpoint
    written, refused = [], None
    for i in range(200):  # 40 MB if nothing stopped it
        result = etcdctl(endpoint, "put", f"/q/{i:03d}", input=VALUE, check=False)
        if result.returncode != 0:
            refused = result.stderr.decode()
            break
        written.append(f"/q/{i:03d}")
    assert refused is not None and "etcdserver: mvcc: database space exceeded" in refused
    assert written, "the first puts fit under the quota"
    assert "alarm:NOSPACE" in etcdctl(endpoint, "alarm", "list").stdout.decode()

    # Reads and deletes still work; puts stay refused while the alarm is up.
    got = etcdctl(endpoint, "get", written[0], "--print-value-only").stdout
    assert got.rstrip(b"\n") == VALUE
    deleted = etcdctl(endpoint, "del", "/q/", "--prefix").stdout.decode().split()[0]
    # Real etcd sometimes has applied the put it answered with the error (its
    # quota check runs before the proposal and again at apply): one more key.
    assert len(written) <= int(deleted) <= len(written) + 1
    again = etcdctl(endpoint, "put", "/q/again", "small", check=False)
    assert again.returncode != 0 and b"database space exceeded" in again.stderr

    # etcd's remedy: compact the history away, defragment, disarm.
    revision = etcdctl_json(endpoint, "get", "/q/", "--prefix")["header"]["revision"]
    etcdctl(endpoint, "compaction", "--physical", str(revision))
    etcdctl(endpoint, "defrag")
    status = etcdctl_json(endpoint, "endpoint", "status")[0]["Status"]
    assert status["dbSize"] < QUOTA_BYTES
    etcdctl(endpoint, "alarm", "disarm")
    assert etcdctl(endpoint, "alarm", "list").stdout.strip() == b""
    etcdctl(endpoint, "put", "/q/again", "small")
    assert etcdctl(endpoint, "get", "/q/again", "--print-value-only").stdout.strip() == b"small"
