"""Parity with real etcd: the same etcdctl commands against `pykv serve` and
against etcd 3.4 started beside it, the JSON answers compared field by field
(cluster and member ids and the Raft term aside, which differ by design).

The two servers here see exactly the same writes, in the same order, so that
their revisions stay equal; tests that write to one server only use the
fixtures of test_etcdctl.py instead.
"""

from __future__ import annotations

import json

from tests.e2e.harness import etcdctl

_VOLATILE = {"cluster_id", "member_id", "raft_term"}


def normalize(value):
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value



def both(pykv_twin, etcd_twin, *args, **kwargs):
    ours = etcdctl(pykv_twin.endpoint, *args, check=False, **kwargs)
    theirs = etcdctl(etcd_twin.endpoint, *args, check=False, **kwargs)
    return ours, theirs


def same_json(pykv_twin, etcd_twin, *args):
    ours, theirs = both(pykv_twin, etcd_twin, *args, "-w", "json")
    assert ours.returncode == theirs.returncode == 0, (ours.stderr, theirs.stderr)
    mine, reference = normalize(json.loads(ours.stdout)), normalize(json.loads(theirs.stdout))
    assert mine == reference
    return mine


def test_put_get_with_every_read_option_matches_etcd(pykv_twin, etcd_twin):
    for name in ("b", "a", "c", "a/1", "a/2", "a/3"):
        for server in (pykv_twin, etcd_twin):
            etcdctl(server.endpoint, "put", f"/rd/{name}", f"value-{name}")
    etcdctl(pykv_twin.endpoint, "put", "/rd/a/2", "again")
    etcdctl(etcd_twin.endpoint, "put", "/rd/a/2", "again")
    same_json(pykv_twin, etcd_twin, "get", "/rd/a")
    same_json(pykv_twin, etcd_twin, "get", "/rd/", "--prefix")
    same_json(pykv_twin, etcd_twin, "get", "/rd/", "--prefix", "--keys-only")
    same_json(pykv_twin, etcd_twin, "get", "/rd/", "--prefix", "--limit", "2")
    for target in ("CREATE", "MODIFY", "VERSION", "VALUE", "KEY"):
        for order in ("ASCEND", "DESCEND"):
            same_json(pykv_twin, etcd_twin, "get", "/rd/", "--prefix", f"--sort-by={target}",
                      f"--order={order}")
    same_json(pykv_twin, etcd_twin, "get", "/rd/a", "/rd/c")
    same_json(pykv_twin, etcd_twin, "get", "/rd/b", "--from-key", "--keys-only")
    same_json(pykv_twin, etcd_twin, "get", "/rd/", "--prefix", "--consistency=s")
    same_json(pykv_twin, etcd_twin, "get", "/nothing-here")


def test_delete_with_prefix_and_prev_kv_matches_etcd(pykv_twin, etcd_twin):
    for server in (pykv_twin, etcd_twin):
        for i in range(3):
            etcdctl(server.endpoint, "put", f"/del/{i}", f"v{i}")
    result = same_json(pykv_twin, etcd_twin, "del", "/del/", "--prefix", "--prev-kv")
    assert result["deleted"] == 3 and len(result["prev_kvs"]) == 3
    same_json(pykv_twin, etcd_twin, "del", "/del/", "--prefix")


def test_txn_success_and_failure_branches_match_etcd(pykv_twin, etcd_twin):
    script = b'value("/txn/k") = "v"\n\nput /txn/k yes\n\nput /txn/k no\nget /txn/k\n\n'
    for server in (pykv_twin, etcd_twin):
        etcdctl(server.endpoint, "put", "/txn/k", "v")
    ours, theirs = both(pykv_twin, etcd_twin, "txn", "-w", "json", input=script)
    assert normalize(json.loads(ours.stdout)) == normalize(json.loads(theirs.stdout))
    assert json.loads(ours.stdout)["succeeded"] is True
    ours, theirs = both(pykv_twin, etcd_twin, "txn", "-w", "json", input=script)
    mine = normalize(json.loads(ours.stdout))
    assert mine == normalize(json.loads(theirs.stdout))
    # etcdctl's JSON omits a false "succeeded".
    assert "succeeded" not in mine and len(mine["responses"]) == 2


def test_read_only_txn_matches_etcd(pykv_twin, etcd_twin):
    for server in (pykv_twin, etcd_twin):
        etcdctl(server.endpoint, "put", "/ro/a", "1")
        etcdctl(server.endpoint, "put", "/ro/b", "2")
    script = b'value("/ro/a") = "1"\n\nget /ro/a\nget /ro/ --prefix --keys-only\n\nget /ro/b\n\n'
    ours, theirs = both(pykv_twin, etcd_twin, "txn", "-w", "json", input=script)
    mine = normalize(json.loads(ours.stdout))
    assert mine == normalize(json.loads(theirs.stdout))
    assert mine["succeeded"] is True and len(mine["responses"]) == 2
