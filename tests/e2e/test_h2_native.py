"""`pykv serve --grpc-server native` with real clients, where the network
layer matters: big requests, a 40 MB answer through a small window, many
streams at once, clients that cancel, and shutdown with GOAWAY."""

from __future__ import annotations

import signal
import threading

import grpc
import pytest

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from pykv.api.v3lockpb import v3lock_pb2, v3lock_pb2_grpc
from tests.e2e.h2wire import WireClient, grpc_messages
from tests.e2e.harness import ServerProcess, etcdctl

MIB = 1 << 20
NATIVE = ("--grpc-server", "native")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("h2") / "data", extra_args=NATIVE).start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def channel(server):
    channel = grpc.insecure_channel(server.endpoint, options=[
        ("grpc.max_receive_message_length", 64 * MIB),
        ("grpc.max_send_message_length", 64 * MIB)])
    grpc.channel_ready_future(channel).result(timeout=10)
    yield channel
    channel.close()


@pytest.fixture(scope="module")
def kv(channel):
    return rpc_pb2_grpc.KVStub(channel)


def test_requests_up_to_the_limit_pass_and_larger_ones_get_etcds_and_grpcs_errors(kv):
    value = bytes(range(256)) * (MIB * 3 // 2 // 256 - 1)  # 1.5 MiB less 256 bytes
    revision = kv.Put(rpc_pb2.PutRequest(key=b"/big/ok", value=value), timeout=30).header.revision
    got = kv.Range(rpc_pb2.RangeRequest(key=b"/big/ok"), timeout=30)
    assert got.kvs[0].value == value and got.kvs[0].mod_revision == revision
    with pytest.raises(grpc.RpcError) as info:  # over --max-request-bytes, under grpc's limit
        kv.Put(rpc_pb2.PutRequest(key=b"/big/no", value=b"x" * (MIB * 19 // 10)), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "etcdserver: request is too large"
    with pytest.raises(grpc.RpcError) as info:  # over max-request-bytes + 512 KiB
        kv.Put(rpc_pb2.PutRequest(key=b"/big/no", value=b"x" * (MIB * 21 // 10)), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "grpc: received message larger than max" in info.value.details()


def test_etcdctl_puts_a_value_of_a_mebibyte(server):
    value = b"v" * MIB  # from stdin: too long for an argument
    etcdctl(server.endpoint, "put", "/big/ctl", input=value)
    out = etcdctl(server.endpoint, "get", "/big/ctl", "--print-value-only").stdout
    assert out.rstrip(b"\n") == value


@pytest.fixture(scope="module")
def forty_mebibytes(kv):
    values = {b"/forty/%02d" % i: bytes([i]) * MIB for i in range(40)}
    for key, value in values.items():
        kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=30)
    return values


def test_forty_megabyte_range_through_a_16_kib_window(server, forty_mebibytes):
    client = WireClient(server.client_port, window_bytes=16384)
    try:
        request = rpc_pb2.RangeRequest(key=b"/forty/", range_end=b"/forty0").SerializeToString()
        stream = client.call(b"/etcdserverpb.KV/Range", request)
        # acknowledge in 16 KiB steps: the server may never have more in flight
        client.read_until(lambda: stream in client.ended, ack_bytes=16384)
        assert client.trailers[stream][b"grpc-status"] == b"0"
        assert client.most_unacked <= 65535  # never past the connection window
        [message] = grpc_messages(bytes(client.data[stream]))
        response = rpc_pb2.RangeResponse.FromString(message)
        assert {kv.key: kv.value for kv in response.kvs} == forty_mebibytes
    finally:
        client.close()


def test_forty_megabyte_range_with_grpcio(kv, forty_mebibytes):
    response = kv.Range(rpc_pb2.RangeRequest(key=b"/forty/", range_end=b"/forty0"), timeout=60)
    assert len(response.kvs) == 40 and sum(len(kv.value) for kv in response.kvs) == 40 * MIB


def test_a_thousand_calls_and_two_hundred_watch_streams_at_once(channel, kv):
    futures = [kv.Put.future(rpc_pb2.PutRequest(key=b"/many/%04d" % i, value=b"v"), timeout=60)
               for i in range(1000)]
    revisions = [f.result().header.revision for f in futures]
    assert len(set(revisions)) == 1000
    watch = rpc_pb2_grpc.WatchStub(channel)
    streams, gates = [], []
    for i in range(200):
        gate = threading.Event()
        requests = iter([rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b"/many-watch/%03d" % i))] + [None])
        gates.append(gate)

        def feed(requests=requests, gate=gate):
            yield next(requests)
            gate.wait(60)  # keep the client side open until the test ends

        streams.append(watch.Watch(feed(), timeout=60))
    try:
        assert all(next(s).created for s in streams)
        for i in range(200):
            kv.Put(rpc_pb2.PutRequest(key=b"/many-watch/%03d" % i, value=b"x"), timeout=10)
        for i, stream in enumerate(streams):
            [event] = next(stream).events
            assert event.kv.key == b"/many-watch/%03d" % i
    finally:
        for gate in gates:
            gate.set()
        for stream in streams:
            stream.cancel()


def test_cancelled_watches_and_timed_out_calls_leave_the_server_serving(channel, kv, server):
    watch = rpc_pb2_grpc.WatchStub(channel)
    gate = threading.Event()

    def requests():
        yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"/cancel/"))
        gate.wait(30)

    calls = [watch.Watch(requests(), timeout=30) for _ in range(50)]
    assert all(next(c).created for c in calls)
    for call in calls:
        call.cancel()
    gate.set()
    # a call that waits on the server (a lock held by another lease) times out
    lease = rpc_pb2_grpc.LeaseStub(channel)
    locks = v3lock_pb2_grpc.LockStub(channel)
    holder, waiter = (lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
                      for _ in range(2))
    held = locks.Lock(v3lock_pb2.LockRequest(name=b"/cancel-lock", lease=holder), timeout=10)
    with pytest.raises(grpc.RpcError) as info:
        locks.Lock(v3lock_pb2.LockRequest(name=b"/cancel-lock", lease=waiter), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    locks.Unlock(v3lock_pb2.UnlockRequest(key=held.key), timeout=10)
    kv.Put(rpc_pb2.PutRequest(key=b"/cancel/after", value=b"ok"), timeout=10)
    assert etcdctl(server.endpoint, "get", "/cancel/after", "--print-value-only").stdout == b"ok\n"


def test_sigterm_sends_goaway_ends_open_streams_and_exits_cleanly(tmp_path):
    process = ServerProcess(tmp_path / "data", extra_args=NATIVE).start()
    channel = grpc.insecure_channel(process.endpoint)
    wire = WireClient(process.client_port)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        gate = threading.Event()

        def requests():
            yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"/w"))
            gate.wait(30)

        watch = rpc_pb2_grpc.WatchStub(channel).Watch(requests(), timeout=30)
        assert next(watch).created
        wire.read_until(lambda: wire.h2.remote_settings.initial_window_size is not None)
        process.process.send_signal(signal.SIGTERM)
        wire.read_until(lambda: wire.terminated is not None)
        assert wire.terminated.error_code == 0  # graceful: NO_ERROR
        with pytest.raises(grpc.RpcError):
            next(watch)  # the open stream ends within the grace period
        gate.set()
        assert process.process.wait(timeout=20) == 0
    finally:
        wire.close()
        channel.close()
        process.stop()
