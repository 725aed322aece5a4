"""Real etcdctl (Debian's etcd-client 3.4) against `pykv serve`: every
everyday command, and etcd's refusals with etcd's words.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time

from tests.e2e.harness import etcdctl, etcdctl_json, etcdctl_path

ETCDCTL_ENV = dict(os.environ, ETCDCTL_API="3")


def test_get_at_an_old_revision_sees_the_old_value(pykv_server):
    first = etcdctl_json(pykv_server.endpoint, "put", "/rev/k", "one")
    etcdctl(pykv_server.endpoint, "put", "/rev/k", "two")
    old = etcdctl_json(pykv_server.endpoint, "get", "/rev/k",
                       f"--rev={first['header']['revision']}")
    assert base64.b64decode(old["kvs"][0]["value"]) == b"one"
    now = etcdctl_json(pykv_server.endpoint, "get", "/rev/k")
    assert base64.b64decode(now["kvs"][0]["value"]) == b"two"
    assert now["kvs"][0]["version"] == 2


def test_compaction_then_read_below_it_is_refused_with_etcds_error(pykv_server):
    put = etcdctl_json(pykv_server.endpoint, "put", "/cmp/k", "1")
    revision = put["header"]["revision"]
    etcdctl(pykv_server.endpoint, "put", "/cmp/k", "2")
    out = etcdctl(pykv_server.endpoint, "compaction", str(revision + 1))
    assert f"compacted revision {revision + 1}" in out.stdout.decode()
    below = etcdctl(pykv_server.endpoint, "get", "/cmp/k", f"--rev={revision}", check=False)
    assert below.returncode != 0
    assert b"etcdserver: mvcc: required revision has been compacted" in below.stderr
    future = etcdctl(pykv_server.endpoint, "get", "/cmp/k", "--rev=999999", check=False)
    assert b"etcdserver: mvcc: required revision is a future revision" in future.stderr


def test_compacting_twice_at_a_revision_is_refused_as_etcd_does(fresh_pykv):
    # Measured on etcd 3.4.23: a new store compacts to 0 once; any repeat at
    # or below the last compact revision is ErrCompacted, above the current
    # revision ErrFutureRev.
    endpoint = fresh_pykv().endpoint

    def compaction(revision: int) -> subprocess.CompletedProcess:
        return etcdctl(endpoint, "compaction", str(revision), check=False)

    def refused(revision: int) -> bytes:
        answer = compaction(revision)
        assert answer.returncode != 0, revision
        return answer.stderr

    compacted = b"Error: etcdserver: mvcc: required revision has been compacted"
    assert "compacted revision 0" in compaction(0).stdout.decode()
    assert compacted in refused(0)
    revision = etcdctl_json(endpoint, "put", "/twice/k", "v")["header"]["revision"]
    assert f"compacted revision {revision}" in compaction(revision).stdout.decode()
    assert compacted in refused(revision)
    assert compacted in refused(revision - 1)
    assert b"etcdserver: mvcc: required revision is a future revision" in refused(revision + 1)


def _watch(server, *args, events: int):
    process = subprocess.Popen(
        [etcdctl_path(), f"--endpoints={server.endpoint}", "watch", *args, "-w", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ETCDCTL_ENV)
    return process


def _read_watch(process, count: int, timeout_s: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    seen: list[dict] = []
    decoder = json.JSONDecoder()
    buffer = ""
    import os
    import select
    fd = process.stdout.fileno()
    while len(seen) < count and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 65536).decode()
        if not chunk:
            break
        buffer += chunk
        while buffer.strip():
            buffer = buffer.lstrip()
            try:
                obj, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                break
            buffer = buffer[end:]
            seen.extend(obj.get("Events") or obj.get("events") or [])
    process.kill()
    process.wait()
    return seen


def test_watch_from_a_revision_with_prefix_and_prev_kv_sees_history_then_live(pykv_server):
    start = etcdctl_json(pykv_server.endpoint, "put", "/watch/a", "1")["header"]["revision"]
    etcdctl(pykv_server.endpoint, "put", "/watch/b", "2")
    process = _watch(pykv_server, "/watch/", "--prefix", "--prev-kv", f"--rev={start}", events=4)
    time.sleep(0.5)
    etcdctl(pykv_server.endpoint, "put", "/watch/a", "3")
    etcdctl(pykv_server.endpoint, "del", "/watch/b")
    events = _read_watch(process, 4)
    # etcdctl's JSON prints the event type as a number and omits PUT (0).
    names = {0: "PUT", 1: "DELETE"}
    kinds = [(names[e.get("type", 0)], base64.b64decode(e["kv"]["key"]).decode()) for e in events]
    assert kinds == [("PUT", "/watch/a"), ("PUT", "/watch/b"), ("PUT", "/watch/a"),
                     ("DELETE", "/watch/b")]
    assert base64.b64decode(events[2]["prev_kv"]["value"]) == b"1"
    assert base64.b64decode(events[3]["prev_kv"]["value"]) == b"2"


def test_lease_grant_keepalive_timetolive_revoke_with_attached_keys(pykv_server):
    endpoint = pykv_server.endpoint
    granted = etcdctl(endpoint, "lease", "grant", "60").stdout.decode().split()
    lease_hex = granted[1]
    etcdctl(endpoint, "put", "--lease", lease_hex, "/lease/k", "v")
    ttl = etcdctl_json(endpoint, "lease", "timetolive", lease_hex, "--keys")
    assert ttl["granted-ttl"] == 60 and 0 < ttl["ttl"] <= 60
    assert [base64.b64decode(k) for k in ttl["keys"]] == [b"/lease/k"]
    kept = subprocess.run(["timeout", "3", etcdctl_path(), f"--endpoints={endpoint}", "lease",
                           "keep-alive", lease_hex], capture_output=True,
                          env=ETCDCTL_ENV)
    assert f"lease {lease_hex} keepalived with TTL(60)".encode() in kept.stdout
    assert lease_hex in etcdctl(endpoint, "lease", "list").stdout.decode()
    etcdctl(endpoint, "lease", "revoke", lease_hex)
    assert etcdctl_json(endpoint, "get", "/lease/k").get("kvs") is None
    gone = etcdctl_json(endpoint, "lease", "timetolive", lease_hex)
    assert gone["ttl"] == -1


def test_lock_is_exclusive_and_runs_the_command(pykv_server):
    out = etcdctl(pykv_server.endpoint, "lock", "/locks/e2e", "echo", "inside-the-lock")
    assert out.stdout.decode().strip() == "inside-the-lock"


def test_elect_proclaims_a_leader_value(pykv_server):
    process = subprocess.Popen([etcdctl_path(), f"--endpoints={pykv_server.endpoint}", "elect",
                                "/elect/e2e", "alice"], stdout=subprocess.PIPE,
                               env=ETCDCTL_ENV)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = etcdctl_json(pykv_server.endpoint, "get", "/elect/e2e", "--prefix")
            if listed.get("kvs"):
                break
            time.sleep(0.1)
        observed = subprocess.run(["timeout", "3", etcdctl_path(), f"--endpoints={pykv_server.endpoint}",
                                   "elect", "-l", "/elect/e2e"], capture_output=True,
                                  env=ETCDCTL_ENV)
        assert b"alice" in observed.stdout
    finally:
        process.terminate()
        process.wait()


def test_endpoint_status_and_health_report_this_member(pykv_server):
    status = etcdctl_json(pykv_server.endpoint, "endpoint", "status")[0]["Status"]
    assert status["leader"] == status["header"]["member_id"]
    assert status["raftIndex"] >= status["raftAppliedIndex"] > 0
    assert status["dbSize"] > 0
    health = etcdctl(pykv_server.endpoint, "endpoint", "health")
    assert b"is healthy" in health.stdout + health.stderr


def test_snapshot_save_writes_a_checked_file(pykv_server, tmp_path):
    etcdctl(pykv_server.endpoint, "put", "/snap/k", "v")
    path = tmp_path / "snap.db"
    out = etcdctl(pykv_server.endpoint, "snapshot", "save", str(path))
    assert f"Snapshot saved at {path}".encode() in out.stdout + out.stderr
    assert path.stat().st_size % 512 == 32


def test_value_over_the_request_limit_is_refused(pykv_server):
    big = b"x" * (1536 * 1024 + 10)
    out = etcdctl(pykv_server.endpoint, "put", "/big/k", input=big, check=False)
    assert out.returncode != 0
    assert b"etcdserver: request is too large" in out.stderr
    assert etcdctl_json(pykv_server.endpoint, "get", "/big/k").get("kvs") is None


def test_txn_of_129_ops_is_refused_and_128_is_applied(pykv_server):
    def script(n: int) -> bytes:
        return b"\n" + b"".join(b"put /ops/%d v\n" % i for i in range(n)) + b"\n\n"

    out = etcdctl(pykv_server.endpoint, "txn", input=script(129), check=False)
    assert out.returncode != 0
    assert b"etcdserver: too many operations in txn request" in out.stderr
    etcdctl(pykv_server.endpoint, "txn", input=script(128))
    count = etcdctl_json(pykv_server.endpoint, "get", "/ops/", "--prefix", "--keys-only")
    assert count["count"] == 128


def test_kubernetes_style_json_object_round_trips_byte_for_byte(pykv_server):
    obj = {"kind": "ConfigMap", "apiVersion": "v1",
           "metadata": {"name": "cfg", "namespace": "default", "uid": "1b7ab0c6-1f0b-4e1b",
                        "annotations": {"note": "ünïcødé \u2603 \"quoted\""}},
           "data": {"config.yaml": "a: 1\nb: [2, 3]\n"}}
    payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    key = "/registry/configmaps/default/cfg"
    etcdctl(pykv_server.endpoint, "put", key, input=payload)
    got = etcdctl_json(pykv_server.endpoint, "get", key)
    assert base64.b64decode(got["kvs"][0]["value"]) == payload
    raw = etcdctl(pykv_server.endpoint, "get", key, "--print-value-only").stdout
    assert raw.rstrip(b"\n") == payload


def test_defrag_while_writes_go_on_keeps_the_server_serving(fresh_pykv):
    # A defragmentation swaps the LMDB file under the Raft loop, which reads
    # the store's size on every tick (that once stopped the loop: the
    # deterministic test of the race is tests/mvcc/test_defrag.py).
    server = fresh_pykv()
    endpoint = server.endpoint
    big = b"z" * 100_000
    for i in range(30):
        etcdctl(endpoint, "put", f"/churn/{i:03d}", input=big)
    etcdctl(endpoint, "del", "/churn/", "--prefix")
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            key = f"/during/{i:05d}"
            if etcdctl(endpoint, "put", key, "v", check=False).returncode == 0:
                acked.append(key)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            assert b"Finished defragmenting" in etcdctl(endpoint, "defrag").stdout
    finally:
        stop.set()
        thread.join()
    etcdctl(endpoint, "put", "/after", "defrag")
    keys = etcdctl(endpoint, "get", "/during/", "--prefix", "--keys-only").stdout.split()
    assert acked and set(acked) <= {k.decode() for k in keys}
    assert etcdctl(endpoint, "get", "/after", "--print-value-only").stdout.strip() == b"defrag"


def test_defrag_shrinks_the_file_and_keeps_the_data(pykv_server):
    endpoint = pykv_server.endpoint
    big = b"y" * 200_000
    for i in range(40):
        etcdctl(endpoint, "put", f"/defrag/{i:03d}", input=big)
    etcdctl(endpoint, "del", "/defrag/", "--prefix")
    revision = etcdctl_json(endpoint, "put", "/defrag/keep", "v")["header"]["revision"]
    etcdctl(endpoint, "compaction", "--physical", str(revision))
    before = etcdctl_json(endpoint, "endpoint", "status")[0]["Status"]["dbSize"]
    out = etcdctl(endpoint, "defrag")
    assert b"Finished defragmenting etcd member" in out.stdout
    after = etcdctl_json(endpoint, "endpoint", "status")[0]["Status"]
    assert after["dbSize"] < before
    got = etcdctl_json(endpoint, "get", "/defrag/keep")
    assert base64.b64decode(got["kvs"][0]["value"]) == b"v"
    hashkv = etcdctl_json(endpoint, "endpoint", "hashkv")[0]["HashKV"]
    assert hashkv["hash"] != 0 and hashkv["header"]["revision"] == revision
