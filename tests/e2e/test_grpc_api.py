"""What etcdctl does not reach, through a Python gRPC client: fragmented
watch responses, min/max revision filters, nested txns, watch corner cases,
the lock and election services, and etcd's errors with etcd's codes."""

from __future__ import annotations

import queue
import threading

import grpc
import pytest

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from pykv.api.v3electionpb import v3election_pb2, v3election_pb2_grpc
from pykv.api.v3lockpb import v3lock_pb2, v3lock_pb2_grpc


@pytest.fixture(scope="module")
def channel(pykv_server):
    channel = grpc.insecure_channel(pykv_server.endpoint, options=[
        ("grpc.max_receive_message_length", 64 << 20)])
    grpc.channel_ready_future(channel).result(timeout=10)
    yield channel
    channel.close()


@pytest.fixture(scope="module")
def kv(channel):
    return rpc_pb2_grpc.KVStub(channel)


def put(kv, key: bytes, value: bytes = b"v", **kw) -> int:
    return kv.Put(rpc_pb2.PutRequest(key=key, value=value, **kw), timeout=10).header.revision


class WatchClient:
    """A watch stream fed from a queue, read with a timeout."""

    def __init__(self, channel):
        self.requests: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        stub = rpc_pb2_grpc.WatchStub(channel)
        self.call = stub.Watch(iter(self.requests.get, None))
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError:
            pass

    def send(self, **kw) -> None:
        self.requests.put(rpc_pb2.WatchRequest(**kw))

    def next(self, timeout: float = 10.0) -> rpc_pb2.WatchResponse:
        return self.responses.get(timeout=timeout)

    def close(self):
        self.requests.put(None)
        self.call.cancel()


def test_watch_responses_over_the_limit_are_fragmented(channel, kv):
    value = b"x" * 100_000
    for i in range(30):
        put(kv, b"/frag/%02d" % i, value)
    watch = WatchClient(channel)
    try:
        watch.send(create_request=rpc_pb2.WatchCreateRequest(
            key=b"/frag/", range_end=b"/frag0", prev_kv=True, fragment=True))
        assert watch.next().created
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/frag/", range_end=b"/frag0"), timeout=10)
        pieces = [watch.next()]
        while pieces[-1].fragment:
            pieces.append(watch.next())
        assert len(pieces) >= 2
        assert all(p.fragment for p in pieces[:-1]) and not pieces[-1].fragment
        events = [e for p in pieces for e in p.events]
        assert [e.kv.key for e in events] == [b"/frag/%02d" % i for i in range(30)]
        assert all(e.type == 1 and e.prev_kv.value == value for e in events)
        assert all(p.ByteSize() < (1536 + 512) * 1024 for p in pieces)
    finally:
        watch.close()


def test_range_min_and_max_revision_filters(kv):
    revisions = {}
    for name in (b"a", b"b", b"c", b"d"):
        revisions[name] = put(kv, b"/filter/" + name)
    put(kv, b"/filter/b", b"modified")  # b: created early, modified last
    span = dict(key=b"/filter/", range_end=b"/filter0")

    def keys(**kw):
        return [kv.key[-1:] for kv in kv_range(**kw).kvs]

    def kv_range(**kw):
        return kv.Range(rpc_pb2.RangeRequest(**span, **kw), timeout=10)

    assert keys(min_create_revision=revisions[b"c"]) == [b"c", b"d"]
    assert keys(max_create_revision=revisions[b"b"]) == [b"a", b"b"]
    assert keys(min_mod_revision=revisions[b"d"]) == [b"b", b"d"]
    assert keys(max_mod_revision=revisions[b"c"]) == [b"a", b"c"]
    # count ignores the filters, as in etcd
    assert kv_range(min_create_revision=revisions[b"c"]).count == 4


def test_nested_txn_runs_the_inner_branch_at_one_revision(kv):
    put(kv, b"/nest/flag", b"on")
    inner = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"/nest/flag", target=rpc_pb2.Compare.VALUE,
                                 result=rpc_pb2.Compare.EQUAL, value=b"on")],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/nest/inner", value=b"1"))],
        failure=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/nest/inner", value=b"0"))])
    outer = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"/nest/missing", target=rpc_pb2.Compare.VERSION,
                                 result=rpc_pb2.Compare.EQUAL, version=0)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/nest/outer", value=b"x")),
                 rpc_pb2.RequestOp(request_txn=inner)])
    response = kv.Txn(outer, timeout=10)
    assert response.succeeded
    assert response.responses[1].response_txn.succeeded
    got = kv.Range(rpc_pb2.RangeRequest(key=b"/nest/", range_end=b"/nest0"), timeout=10)
    values = {item.key: (item.value, item.mod_revision) for item in got.kvs}
    assert values[b"/nest/inner"] == (b"1", response.header.revision)
    assert values[b"/nest/outer"][1] == response.header.revision


@pytest.mark.parametrize("call,request_,message", [
    ("Put", rpc_pb2.PutRequest(key=b""), "etcdserver: key is not provided"),
    ("Range", rpc_pb2.RangeRequest(key=b""), "etcdserver: key is not provided"),
    ("Put", rpc_pb2.PutRequest(key=b"k", lease=0x7777), "etcdserver: requested lease not found"),
    ("Put", rpc_pb2.PutRequest(key=b"/never/there", ignore_value=True),
     "etcdserver: key not found"),
    ("Txn", rpc_pb2.TxnRequest(success=[
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"d")),
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"d"))]),
     "etcdserver: duplicate key given in txn request"),
])
def test_bad_requests_get_etcds_message_and_code(kv, call, request_, message):
    with pytest.raises(grpc.RpcError) as info:
        getattr(kv, call)(request_, timeout=10)
    assert info.value.details() == message
    expected = {"etcdserver: requested lease not found": grpc.StatusCode.NOT_FOUND}.get(
        message, grpc.StatusCode.INVALID_ARGUMENT)
    assert info.value.code() == expected


def test_watch_from_a_compacted_revision_is_canceled_with_the_compact_revision(channel, kv):
    first = put(kv, b"/wc/k", b"1")
    put(kv, b"/wc/k", b"2")
    last = put(kv, b"/wc/k", b"3")
    kv.Compact(rpc_pb2.CompactionRequest(revision=last), timeout=10)
    watch = WatchClient(channel)
    try:
        watch.send(create_request=rpc_pb2.WatchCreateRequest(key=b"/wc/k", start_revision=first))
        created = watch.next()
        assert created.created
        canceled = watch.next()
        assert canceled.canceled and canceled.compact_revision == last
    finally:
        watch.close()


def test_watch_progress_request_and_cancel(channel, kv):
    watch = WatchClient(channel)
    try:
        watch.send(create_request=rpc_pb2.WatchCreateRequest(key=b"/wp/a", watch_id=7))
        created = watch.next()
        assert created.created and created.watch_id == 7
        watch.send(create_request=rpc_pb2.WatchCreateRequest(key=b"/wp/b", watch_id=7))
        duplicate = watch.next()
        assert duplicate.canceled and duplicate.watch_id == -1
        assert "duplicate watch ID" in duplicate.cancel_reason
        revision = put(kv, b"/wp/other")
        watch.send(progress_request=rpc_pb2.WatchProgressRequest())
        progress = watch.next()
        assert progress.watch_id == -1 and not progress.events
        assert progress.header.revision >= revision
        watch.send(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7))
        assert watch.next().canceled
        watch.send(create_request=rpc_pb2.WatchCreateRequest(key=b"/wp/a", start_revision=-1))
        negative = watch.next()
        assert negative.created and negative.canceled and negative.watch_id == -1
    finally:
        watch.close()


def test_lease_keepalive_and_timetolive_of_an_unknown_lease(channel):
    lease = rpc_pb2_grpc.LeaseStub(channel)
    answers = list(lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=0x5151)]),
                                        timeout=10))
    assert len(answers) == 1 and answers[0].TTL == 0
    assert lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=0x5151), timeout=10).TTL == -1
    with pytest.raises(grpc.RpcError) as info:
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x5151), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    granted = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=1), timeout=10)
    assert granted.TTL == 2  # raised to the minimum TTL, as etcd does (no error)


def test_lock_service_serializes_holders(channel):
    lease = rpc_pb2_grpc.LeaseStub(channel)
    locks = v3lock_pb2_grpc.LockStub(channel)
    first_lease = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
    second_lease = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
    held = locks.Lock(v3lock_pb2.LockRequest(name=b"/svc-lock", lease=first_lease), timeout=10)
    assert held.key == b"/svc-lock/%x" % first_lease
    waiting = locks.Lock.future(v3lock_pb2.LockRequest(name=b"/svc-lock", lease=second_lease),
                                timeout=20)
    with pytest.raises(grpc.FutureTimeoutError):
        waiting.result(timeout=0.5)
    locks.Unlock(v3lock_pb2.UnlockRequest(key=held.key), timeout=10)
    assert waiting.result(timeout=10).key == b"/svc-lock/%x" % second_lease


def test_election_service_campaign_leader_proclaim_resign(channel):
    lease = rpc_pb2_grpc.LeaseStub(channel)
    election = v3election_pb2_grpc.ElectionStub(channel)
    lease_id = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
    with pytest.raises(grpc.RpcError) as info:
        election.Leader(v3election_pb2.LeaderRequest(name=b"/svc-elect"), timeout=10)
    assert info.value.details() == "election: no leader"
    won = election.Campaign(v3election_pb2.CampaignRequest(
        name=b"/svc-elect", lease=lease_id, value=b"alice"), timeout=10)
    assert won.leader.key == b"/svc-elect/%x" % lease_id
    leader = election.Leader(v3election_pb2.LeaderRequest(name=b"/svc-elect"), timeout=10)
    assert leader.kv.value == b"alice"
    election.Proclaim(v3election_pb2.ProclaimRequest(leader=won.leader, value=b"bob"), timeout=10)
    assert election.Leader(v3election_pb2.LeaderRequest(name=b"/svc-elect"),
                           timeout=10).kv.value == b"bob"
    election.Resign(v3election_pb2.ResignRequest(leader=won.leader), timeout=10)
    with pytest.raises(grpc.RpcError):
        election.Proclaim(v3election_pb2.ProclaimRequest(leader=won.leader, value=b"c"),
                          timeout=10)


@pytest.mark.parametrize("method", ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range",
                                    "/etcdserverpb.KV/Txn", "/etcdserverpb.Lease/LeaseGrant"])
def test_a_malformed_request_gets_a_clear_error_and_the_server_stays_up(channel, kv, method):
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        call(b"\x0a\xff\xff\xff\xff\x0f" + b"garbage", timeout=10)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "unmarshal" in info.value.details()
    assert put(kv, b"/still/alive") > 0


def test_grpc_health_service_reports_serving(channel):
    from pykv.api.healthpb import health_pb2, health_pb2_grpc

    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_an_expired_lease_deletes_its_keys_on_an_idle_server(channel, kv):
    """Lease expiry must not wait for unrelated traffic to wake the node."""
    import time

    lease = rpc_pb2_grpc.LeaseStub(channel)
    lease_id = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2), timeout=10).ID
    put(kv, b"/idle/expiring", lease=lease_id)
    watch = WatchClient(channel)
    try:
        watch.send(create_request=rpc_pb2.WatchCreateRequest(key=b"/idle/expiring"))
        assert watch.next().created
        started = time.monotonic()
        event = watch.next(timeout=8).events[0]
        assert event.type == 1 and event.kv.key == b"/idle/expiring"
        assert time.monotonic() - started < 5
    finally:
        watch.close()


def test_physical_compaction_answers_once_the_history_is_gone(kv):
    for i in range(2000):
        put(kv, b"/phys/k", b"v%d" % i)
    revision = put(kv, b"/phys/k", b"last")
    import time

    started = time.monotonic()
    kv.Compact(rpc_pb2.CompactionRequest(revision=revision, physical=True), timeout=30)
    assert time.monotonic() - started < 20


def test_a_client_that_stops_reading_does_not_grow_the_server(fresh_pykv):
    """A stalled watch client: the server keeps a bounded backlog (the hub's
    victims are caught up from history later), and once the client reads
    again it gets every event, in order, none lost. (Small snapshot settings
    keep the in-memory Raft log, which holds recent entries by design, out of
    the measure.)"""
    import pathlib
    import time

    server = fresh_pykv(extra_args=("--snapshot-count", "100",
                                    "--snapshot-catchup-entries", "10"))

    def anon_kib() -> int:
        for line in pathlib.Path(f"/proc/{server.process.pid}/status").read_text().split("\n"):
            if line.startswith("RssAnon:"):  # not the LMDB file pages it maps
                return int(line.split()[1])
        return 0

    # Catch-up answers carry up to 1,000 revisions, as etcd's: allow big messages.
    channel = grpc.insecure_channel(server.endpoint,
                                    options=[("grpc.max_receive_message_length", 1 << 30)])
    kv = rpc_pb2_grpc.KVStub(channel)
    stalled = rpc_pb2_grpc.WatchStub(channel).Watch(iter([rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=b"/slow/", range_end=b"/slow0"))]))
    assert next(stalled).created
    value = b"s" * 20_000
    put(kv, b"/slow/warmup", value)
    before = anon_kib()
    revisions = [put(kv, b"/slow/%04d" % (i % 50), value) for i in range(4000)]
    time.sleep(0.5)
    grown_mib = (anon_kib() - before) / 1024
    # 4000 events of 20 kB = 80 MB were written; the server must not queue them all.
    assert grown_mib < 40, f"server grew {grown_mib:.0f} MiB for a stalled watcher"
    seen = []
    for response in stalled:
        seen.extend(e.kv.mod_revision for e in response.events if e.kv.key != b"/slow/warmup")
        if len(seen) >= len(revisions):
            break
    stalled.cancel()
    channel.close()
    assert seen == revisions
