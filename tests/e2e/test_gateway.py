"""HTTP/1.1 on the client port of `pykv serve` (the native server hands HTTP/1
clients over): /health and friends, etcd's JSON gateway, keep-alive,
streaming, limits, junk. gRPC keeps working on the same port throughout."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time

import grpc
import pytest

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.harness import ServerProcess, etcdctl


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = ServerProcess(tmp_path_factory.mktemp("gw") / "data",
                            env={"PYKV_GRPC_SERVER": "native"}).start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory):
    running = ServerProcess(tmp_path_factory.mktemp("gw-cors") / "data",
                            extra_args=("--cors", "http://app.example"),
                            env={"PYKV_GRPC_SERVER": "native"}).start()
    yield running
    assert running.stop() == 0, running.log()


class Http:
    """One kept-alive HTTP/1.1 connection to the client port."""

    def __init__(self, server: ServerProcess, timeout_s: float = 30.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.client_port,
                                               timeout=timeout_s)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()

    def post(self, path: str, payload) -> tuple[int, dict]:
        status, _, body = self.request("POST", path, json.dumps(payload))
        return status, json.loads(body)

    def close(self) -> None:
        self.conn.close()


def raw_exchange(server: ServerProcess, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send bytes, half-close, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.client_port), timeout=timeout_s) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def grpc_put(server: ServerProcess, key: bytes, value: bytes) -> int:
    with grpc.insecure_channel(server.endpoint) as channel:
        reply = rpc_pb2_grpc.KVStub(channel).Put(rpc_pb2.PutRequest(key=key, value=value),
                                                 timeout=10)
    return reply.header.revision


# --- the plain endpoints on the client port ---------------------------------------------


def test_health_version_and_metrics_answer_on_the_client_port(server):
    client = Http(server)
    status, headers, body = client.request("GET", "/health")
    assert status == 200 and json.loads(body) == {"health": "true", "reason": ""}
    for path in ("/livez", "/readyz", "/health?serializable=true"):
        status, _, body = client.request("GET", path)
        assert status == 200 and json.loads(body)["health"] == "true", path
    status, headers, body = client.request("GET", "/version")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["etcdserver"] >= "3.4"
    grpc_put(server, b"/m/k", b"v")
    status, headers, body = client.request("GET", "/metrics")
    assert status == 200 and "etcd_server_has_leader 1" in body.decode()
    status, headers, body = client.request("POST", "/health", b"")
    assert status == 405 and headers["Allow"] == "GET"
    status, _, body = client.request("GET", "/nothing-here")
    assert status == 404 and body == b"404 page not found\n"
    client.close()


def test_one_connection_carries_many_requests_and_pipelined_ones_answer_in_order(server):
    client = Http(server)
    for i in range(20):
        status, _ = client.post("/v3/kv/put", {"key": b64(f"/ka/{i}"), "value": b64("v")})
        assert status == 200
    client.close()
    pipelined = b"".join(
        b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n" if i % 2 else
        b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n"
        b'{"key":"L2thLzE="}' for i in range(6))
    answers = raw_exchange(server, pipelined).split(b"HTTP/1.1 200 OK")[1:]
    assert len(answers) == 6
    assert [b"etcdserver" in a for a in answers] == [False, True] * 3
    assert all(b'"count":"1"' in a for a in answers[0::2])


def test_http10_closes_unless_asked_to_keep_alive(server):
    answer = raw_exchange(server, b"GET /version HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer


def test_chunked_request_body_and_expect_continue(server):
    body = json.dumps({"key": b64("/chunked"), "value": b64("yes")}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                       for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    answer = raw_exchange(server, b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    with socket.create_connection(("127.0.0.1", server.client_port), timeout=10) as sock:
        sock.sendall(b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(b'{"key":"L2NodW5rZWQ="}'))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b'{"key":"L2NodW5rZWQ="}')
        reply = b""
        while b'"count"' not in reply:
            reply += sock.recv(65536)
    assert base64.b64encode(b"yes") in reply


MALFORMED = [
    (b"GET /health HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
     b"431"),
    (b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", b"413"),
    (b"GET /health HTTP/2.0\r\n\r\n", b"505"),
    (b"GET  /health HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n", b"400"),
    (b"GET /health HTTP/1.1\r\n folded: x\r\n\r\n", b"400"),
    (b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"400"),
    (b"POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
    (b"POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
    (b"GET /health HTTP/1.1\r\nExpect: something-else\r\n\r\n", b"417"),
]


@pytest.mark.parametrize("request_bytes, status", MALFORMED,
                         ids=[f"{i}-{s.decode()}" for i, (_, s) in enumerate(MALFORMED)])
def test_malformed_or_oversized_requests_get_a_4xx_and_the_server_goes_on(server, request_bytes,
                                                                         status):
    answer = raw_exchange(server, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert Http(server).request("GET", "/health")[0] == 200
    assert grpc_put(server, b"/still", b"serving") > 0


def test_random_junk_after_a_method_never_hurts_the_server(server):
    import random
    rng = random.Random(7)
    for _ in range(30):
        junk = b"POST " + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        answer = raw_exchange(server, junk)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:100]
    assert Http(server).request("GET", "/health")[0] == 200
    assert grpc_put(server, b"/still", b"serving") > 0


# --- the JSON gateway -------------------------------------------------------------------


def test_kv_put_range_txn_delete_and_compaction_in_json(server):
    client = Http(server)
    status, put = client.post("/v3/kv/put", {"key": b64("/gw/a"), "value": b64("1"),
                                             "prev_kv": True})
    assert status == 200 and int(put["header"]["revision"]) > 1 and "prev_kv" not in put
    client.post("/v3/kv/put", {"key": b64("/gw/b"), "value": b64("2")})
    # lowerCamel names, an enum by number and a 64-bit integer as a number are accepted
    status, got = client.post("/v3/kv/range", {"key": b64("/gw/"), "rangeEnd": b64("/gw0"),
                                               "sort_order": 2, "limit": 5})
    assert status == 200 and got["count"] == "2"
    assert [base64.b64decode(kv["key"]) for kv in got["kvs"]] == [b"/gw/b", b"/gw/a"]
    assert set(got["kvs"][0]) == {"key", "create_revision", "mod_revision", "version", "value"}
    status, txn = client.post("/v3/kv/txn", {
        "compare": [{"key": b64("/gw/a"), "result": "EQUAL", "target": "VALUE",
                     "value": b64("1")}],
        "success": [{"request_put": {"key": b64("/gw/a"), "value": b64("one")}}],
        "failure": [{"request_range": {"key": b64("/gw/a")}}]})
    assert status == 200 and txn["succeeded"] is True
    assert "response_put" in txn["responses"][0]
    status, deleted = client.post("/v3/kv/deleterange", {"key": b64("/gw/"),
                                                         "range_end": b64("/gw0"),
                                                         "prev_kv": True})
    assert deleted["deleted"] == "2" and len(deleted["prev_kvs"]) == 2
    revision = int(deleted["header"]["revision"])
    status, _ = client.post("/v3/kv/compaction", {"revision": str(revision - 1)})
    assert status == 200
    status, error = client.post("/v3/kv/range", {"key": b64("/gw/a"), "revision": 1})
    assert status == 400 and error == {
        "error": "etcdserver: mvcc: required revision has been compacted",
        "message": "etcdserver: mvcc: required revision has been compacted", "code": 11}
    client.close()


def test_errors_map_to_grpc_gateway_statuses(server):
    client = Http(server)
    assert client.post("/v3/kv/put", {"value": b64("x")}) == (400, {
        "error": "etcdserver: key is not provided",
        "message": "etcdserver: key is not provided", "code": 3})
    status, body = client.post("/v3/lease/revoke", {"ID": 424242})
    assert status == 404 and body["code"] == 5
    status, granted = client.post("/v3/lease/grant", {"TTL": 30, "ID": 5151})
    assert status == 200 and granted["ID"] == "5151"
    status, body = client.post("/v3/lease/grant", {"TTL": 30, "ID": 5151})
    assert status == 412 and body["message"] == "etcdserver: lease already exists"
    status, _, raw = client.request("POST", "/v3/kv/range", b"{not json")
    assert status == 400 and json.loads(raw)["code"] == 3
    status, _, raw = client.request("POST", "/v3/kv/range", b'{"key": 12}')
    assert status == 400 and json.loads(raw)["code"] == 3
    status, _, raw = client.request("GET", "/v3/kv/range")
    assert (status, raw) == (405, b"Method Not Allowed\n")
    status, _, raw = client.request("POST", "/v3/kv/nothing", b"{}")
    assert (status, raw) == (404, b"Not Found\n")
    status, body = client.post("/v3/cluster/member/add", {"peerURLs": ["http://x:1"]})
    assert status == 501 and body["code"] == 12
    status, body = client.post("/v3/auth/authenticate", {"name": "root", "password": "x"})
    assert status == 412 and body["message"] == "etcdserver: authentication is not enabled"
    client.close()


def test_v3beta_prefix_legacy_lease_paths_and_every_service(server):
    client = Http(server)
    assert client.post("/v3beta/kv/put", {"key": b64("/beta"), "value": b64("b")})[0] == 200
    status, got = client.post("/v3beta/kv/range", {"key": b64("/beta")})
    assert base64.b64decode(got["kvs"][0]["value"]) == b"b"
    _, lease = client.post("/v3/lease/grant", {"TTL": 60})
    client.post("/v3/kv/put", {"key": b64("/leased"), "value": b64("x"), "lease": lease["ID"]})
    status, ttl = client.post("/v3/kv/lease/timetolive", {"ID": lease["ID"], "keys": True})
    assert status == 200 and ttl["grantedTTL"] == "60" and ttl["keys"] == [b64("/leased")]
    status, leases = client.post("/v3/kv/lease/leases", {})
    assert {"ID": lease["ID"]} in leases["leases"]
    assert client.post("/v3/kv/lease/revoke", {"ID": lease["ID"]})[0] == 200
    status, members = client.post("/v3/cluster/member/list", {})
    assert status == 200 and members["members"][0]["clientURLs"] == [server.url]
    status, state = client.post("/v3/maintenance/status", {})
    assert status == 200 and state["version"] and int(state["dbSize"]) > 0
    status, hashed = client.post("/v3/maintenance/hashkv", {})
    assert status == 200 and int(hashed["hash_revision"]) > 0
    status, hashed = client.post("/v3/maintenance/hash", {})
    assert status == 200 and 0 <= hashed["hash"] < 2**32  # uint32: a JSON number
    assert client.post("/v3/maintenance/alarm", {"action": "GET"})[0] == 200
    assert client.post("/v3/auth/status", {})[0] == 200
    status, locked = client.post("/v3/lock/lock", {"name": b64("gwlock")})
    assert status == 200 and base64.b64decode(locked["key"]).startswith(b"gwlock/")
    assert client.post("/v3/lock/unlock", {"key": locked["key"]})[0] == 200
    status, campaign = client.post("/v3/election/campaign", {"name": b64("gwelect"),
                                                             "value": b64("me")})
    assert status == 200
    status, leader = client.post("/v3/election/leader", {"name": b64("gwelect")})
    assert base64.b64decode(leader["kv"]["value"]) == b"me"
    assert client.post("/v3/election/resign", {"leader": campaign["leader"]})[0] == 200
    client.close()


class ChunkedReader:
    """Reads a chunked response off a socket: the head, then one JSON
    message per chunk."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.data = b""

    def _more(self) -> None:
        more = self.sock.recv(65536)
        assert more, "the server closed the stream"
        self.data += more

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.data:
            self._more()
        head, self.data = self.data.split(b"\r\n\r\n", 1)
        return head

    def messages(self, count: int) -> list[dict]:
        out = []
        while len(out) < count:
            while (size_end := self.data.find(b"\r\n")) < 0 or \
                    len(self.data) < size_end + 4 + int(self.data[:size_end], 16):
                self._more()
            size = int(self.data[:size_end], 16)
            chunk = self.data[size_end + 2:size_end + 2 + size]
            self.data = self.data[size_end + 4 + size:]
            assert chunk.endswith(b"\n") and chunk.count(b"\n") == 1  # one message a chunk
            out.append(json.loads(chunk))
        return out


def watchers(server: ServerProcess) -> int:
    _, _, text = Http(server).request("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith("etcd_debugging_mvcc_watcher_total "):
            return int(line.split()[1])
    raise AssertionError("no watcher count in /metrics")


def test_watch_streams_events_and_stops_when_the_client_goes(server):
    before = watchers(server)
    body = json.dumps({"create_request": {"key": b64("/wgw/"), "range_end": b64("/wgw0"),
                                          "prev_kv": True}}).encode()
    sock = socket.create_connection(("127.0.0.1", server.client_port), timeout=20)
    sock.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))
    reader = ChunkedReader(sock)
    head = reader.head()
    [created] = reader.messages(1)
    assert b"Transfer-Encoding: chunked" in head and created["result"]["created"] is True
    assert watchers(server) == before + 1
    grpc_put(server, b"/wgw/1", b"a")
    grpc_put(server, b"/wgw/1", b"b")
    etcdctl(server.endpoint, "del", "/wgw/1")
    lines = reader.messages(3)
    events = [line["result"]["events"][0] for line in lines]
    assert [e.get("type", "PUT") for e in events] == ["PUT", "PUT", "DELETE"]
    assert base64.b64decode(events[1]["prev_kv"]["value"]) == b"a"
    sock.close()
    # The server notices the client is gone and cancels its watcher.
    deadline = time.monotonic() + 20
    while watchers(server) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watchers(server) == before
    assert grpc_put(server, b"/wgw/2", b"c") > 0


def test_a_stream_waiting_for_its_first_message_ends_when_the_client_goes(server):
    """Observe on an election nobody leads sends nothing (as in etcd) while
    it watches; a client that gives up must not leave the watch behind."""
    before = watchers(server)
    body = json.dumps({"name": b64("nobody-leads")}).encode()
    sock = socket.create_connection(("127.0.0.1", server.client_port), timeout=20)
    sock.sendall(b"POST /v3/election/observe HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                 b"\r\n%s" % (len(body), body))
    deadline = time.monotonic() + 20
    while watchers(server) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watchers(server) == before + 1
    sock.close()
    while watchers(server) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watchers(server) == before


def test_lease_keepalive_answers_each_request_then_the_connection_is_reused(server):
    client = Http(server)
    _, lease = client.post("/v3/lease/grant", {"TTL": 40})
    body = json.dumps({"ID": lease["ID"]}) * 3  # three requests, one body
    status, headers, raw = client.request("POST", "/v3/lease/keepalive", body)
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    lines = [json.loads(line) for line in raw.splitlines()]
    assert len(lines) == 3 and all(line["result"]["TTL"] == "40" for line in lines)
    status, _ = client.post("/v3/lease/revoke", {"ID": lease["ID"]})  # same connection
    assert status == 200
    client.close()


def test_a_bad_first_watch_request_is_an_unknown_error_as_in_grpc_gateway(server):
    status, _, raw = Http(server).request("POST", "/v3/watch", b"{bad")
    assert status == 500 and json.loads(raw)["code"] == 2


def test_snapshot_streams_blobs_ending_with_their_sha256(server):
    import hashlib

    status, _, raw = Http(server).request("POST", "/v3/maintenance/snapshot", b"{}")
    results = [json.loads(line)["result"] for line in raw.splitlines()]
    assert status == 200 and len(results) >= 2
    blobs = [base64.b64decode(r["blob"]) for r in results]
    assert "remaining_bytes" not in results[-1]  # 0: left out, as jsonpb does
    assert hashlib.sha256(b"".join(blobs[:-1])).digest() == blobs[-1]


def test_browser_origins_need_cors(server, cors_server):
    status, _, raw = Http(server).request("POST", "/v3/kv/range", json.dumps({"key": b64("x")}),
                                          {"Origin": "http://evil.example"})
    assert status == 403
    allowed = Http(cors_server)
    status, headers, _ = allowed.request("POST", "/v3/kv/range", json.dumps({"key": b64("x")}),
                                         {"Origin": "http://app.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://app.example"
    status, _, _ = allowed.request("POST", "/v3/kv/range", json.dumps({"key": b64("x")}),
                                   {"Origin": "http://evil.example"})
    assert status == 403
    # without an Origin (curl, etcd3gw) nothing changes
    assert Http(server).request("POST", "/v3/kv/range", json.dumps({"key": b64("x")}))[0] == 200


def test_grpc_and_http_share_the_port_at_once(server):
    client = Http(server)
    with grpc.insecure_channel(server.endpoint) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)
        for i in range(10):
            stub.Put(rpc_pb2.PutRequest(key=b"/mix/%d" % i, value=b"g"), timeout=10)
            client.post("/v3/kv/put", {"key": b64(f"/mix/h{i}"), "value": b64("h")})
        got = stub.Range(rpc_pb2.RangeRequest(key=b"/mix/", range_end=b"/mix0"), timeout=10)
    assert got.count == 20
    client.close()
