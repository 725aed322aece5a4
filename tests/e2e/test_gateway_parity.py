"""The JSON gateway beside real etcd 3.4's: the same HTTP requests to both,
the status codes and bodies compared (cluster and member ids and the Raft
term aside). Both servers see exactly the same writes, so revisions match."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from tests.e2e.test_etcd_parity import normalize


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def call(server, path: str, body) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=30)
    try:
        conn.request("POST", path, body if isinstance(body, (bytes, str)) else json.dumps(body))
        response = conn.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type", "")
    finally:
        conn.close()
    if content_type.startswith("application/json"):
        lines = raw.splitlines()
        value = [json.loads(line) for line in lines] if len(lines) > 1 else json.loads(raw)
        return response.status, normalize(value)
    return response.status, raw


def same(pykv_twin, etcd_twin, path: str, body) -> object:
    ours, theirs = call(pykv_twin, path, body), call(etcd_twin, path, body)
    assert ours == theirs, f"{path} {body}"
    return ours[1]


@pytest.mark.parametrize("prefix", ["/v3/", "/v3beta/"])
def test_kv_calls_answer_as_etcds_gateway(pykv_twin, etcd_twin, prefix):
    root = f"/par{prefix.strip('/')}/"
    for i, name in enumerate(("b", "a", "c")):
        same(pykv_twin, etcd_twin, prefix + "kv/put",
             {"key": b64(root + name), "value": b64(f"v{i}"), "prev_kv": True})
    same(pykv_twin, etcd_twin, prefix + "kv/put",
         {"key": b64(root + "a"), "value": b64("again"), "prev_kv": True})
    same(pykv_twin, etcd_twin, prefix + "kv/range", {"key": b64(root + "a")})
    same(pykv_twin, etcd_twin, prefix + "kv/range",
         {"key": b64(root), "range_end": b64(root[:-1] + "0"), "sort_order": "DESCEND",
          "sort_target": "MOD", "limit": "2"})
    same(pykv_twin, etcd_twin, prefix + "kv/range",
         {"key": b64(root), "rangeEnd": b64(root[:-1] + "0"), "keysOnly": True,
          "sortOrder": 1, "sortTarget": 2})
    same(pykv_twin, etcd_twin, prefix + "kv/range",
         {"key": b64(root), "range_end": b64(root[:-1] + "0"), "count_only": True})
    same(pykv_twin, etcd_twin, prefix + "kv/range", {"key": b64("/nothing/here")})
    same(pykv_twin, etcd_twin, prefix + "kv/txn", {
        "compare": [{"key": b64(root + "a"), "result": "EQUAL", "target": "VALUE",
                     "value": b64("again")},
                    {"key": b64(root + "b"), "target": "CREATE", "result": "GREATER",
                     "create_revision": "0"}],
        "success": [{"request_put": {"key": b64(root + "t"), "value": b64("yes")}},
                    {"request_range": {"key": b64(root + "t")}}],
        "failure": [{"request_delete_range": {"key": b64(root + "t")}}]})
    same(pykv_twin, etcd_twin, prefix + "kv/txn", {
        "compare": [{"key": b64(root + "a"), "result": "NOT_EQUAL", "target": "VALUE",
                     "value": b64("again")}],
        "success": [{"request_put": {"key": b64(root + "t"), "value": b64("no")}}],
        "failure": [{"request_range": {"key": b64(root), "range_end": b64(root[:-1] + "0")}}]})
    same(pykv_twin, etcd_twin, prefix + "kv/deleterange",
         {"key": b64(root), "range_end": b64(root[:-1] + "0"), "prev_kv": True})


def test_errors_answer_as_etcds_gateway(pykv_twin, etcd_twin):
    same(pykv_twin, etcd_twin, "/v3/kv/put", {"value": b64("no key")})
    same(pykv_twin, etcd_twin, "/v3/kv/range", {"key": b64("k"), "revision": "100000"})
    same(pykv_twin, etcd_twin, "/v3/lease/revoke", {"ID": "123456789"})
    same(pykv_twin, etcd_twin, "/v3/lease/timetolive", {"ID": "123456789"})
    same(pykv_twin, etcd_twin, "/v3/kv/txn", {"success": [
        {"request_put": {"key": b64("dup"), "value": b64("1")}},
        {"request_put": {"key": b64("dup"), "value": b64("2")}}]})
    same(pykv_twin, etcd_twin, "/v3/auth/authenticate", {"name": "root", "password": "x"})
    same(pykv_twin, etcd_twin, "/v3/kv/nothing", {})
    for server in (pykv_twin, etcd_twin):  # the status, not the JSON parser's wording
        status, body = call(server, "/v3/kv/range", b"{not json")
        assert status == 400 and body["code"] == 3
        status, body = call(server, "/v3/watch", b"{not json")
        assert status == 500 and body["code"] == 2


def test_leases_answer_as_etcds_gateway(pykv_twin, etcd_twin):
    same(pykv_twin, etcd_twin, "/v3/lease/grant", {"TTL": "60", "ID": 4242})
    same(pykv_twin, etcd_twin, "/v3/lease/grant", {"TTL": 60, "ID": "4242"})  # exists: 412
    same(pykv_twin, etcd_twin, "/v3/kv/put",
         {"key": b64("/par/leased"), "value": b64("x"), "lease": "4242"})
    ours = call(pykv_twin, "/v3/kv/lease/timetolive", {"ID": 4242, "keys": True})
    theirs = call(etcd_twin, "/v3/kv/lease/timetolive", {"ID": 4242, "keys": True})
    for answer in (ours, theirs):  # the TTL left may differ by a second
        answer[1].pop("TTL")
    assert ours == theirs
    ours = call(pykv_twin, "/v3/lease/keepalive", b'{"ID":4242}{"ID":"4242"}')
    theirs = call(etcd_twin, "/v3/lease/keepalive", b'{"ID":4242}{"ID":"4242"}')
    assert ours == theirs and len(ours[1]) == 2
    same(pykv_twin, etcd_twin, "/v3/kv/lease/revoke", {"ID": 4242})
    same(pykv_twin, etcd_twin, "/v3/kv/range", {"key": b64("/par/leased")})
