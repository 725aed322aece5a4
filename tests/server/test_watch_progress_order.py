"""A progress notification (WatchProgressRequest) promises that every event
up to its revision was delivered (etcd's Bookmarkable guarantee), so it
must not overtake events the hub published but the stream has not yet
flushed. Found by tests/robustness (seed 501 of the unthrottled
compaction + leases run): revision 6373 arrived after a notification at 6373."""

from __future__ import annotations

import types

from pykv.api.etcdserverpb import rpc_pb2
from pykv.mvcc import Store
from pykv.server.v3rpc.watch import INVALID_WATCH_ID, WatchStream
from tests.mvcc.conftest import Applier
from tests.mvcc.requests import PutRequest


class UnrunLoop:
    """An event loop that has not yet run the flush the writer scheduled."""

    def __init__(self) -> None:
        self.scheduled: list = []

    def call_soon_threadsafe(self, callback, *args) -> None:
        self.scheduled.append((callback, args))


def _stream(store: Store) -> WatchStream:
    ctx = types.SimpleNamespace(
        store=store, config=types.SimpleNamespace(max_request_bytes=1 << 20),
        headers=types.SimpleNamespace(message=lambda revision: rpc_pb2.ResponseHeader(
            revision=revision)))
    return WatchStream(ctx, UnrunLoop())


def _drain(stream: WatchStream) -> list[tuple[int, int, list[int]]]:
    out = []
    while not stream.out.empty():
        response = stream.out.get_nowait()
        out.append((response.watch_id, response.header.revision,
                    [event.kv.mod_revision for event in response.events]))
    return out


def test_progress_notification_follows_the_events_published_before_it(tmp_path):
    store = Store.open(str(tmp_path / "db"), map_bytes=64 << 20)
    try:
        stream = _stream(store)
        stream.create(rpc_pb2.WatchCreateRequest(key=b"k"))
        revision = Applier(store).put(PutRequest(b"k", b"v")).revision
        stream.progress_all()
        responses = _drain(stream)
        assert responses[1:] == [(0, revision, [revision]), (INVALID_WATCH_ID, revision, [])], \
            responses
    finally:
        store.close()
