"""etcdserverpb.Watch: the bidirectional stream, many watchers per stream.

As etcd's serverWatchStream: a receive side creates and cancels watchers and
answers progress requests; a send side forwards what the MVCC watch hub
buffered for them. The hub calls ``notify`` from the writer thread; the
stream coalesces those into one wake-up on the event loop, then takes every
buffered response. Watch ids are chosen per stream from 0 (etcd's
AutoWatchID) unless the client gives one; a duplicate is refused with etcd's
reason. Responses bigger than the request limit are split into fragments
when the watcher asked for it.
"""

from __future__ import annotations

import asyncio
import logging

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.api.mvccpb import kv_pb2
from pykv.mvcc import types as t
from pykv.mvcc.watch import Watcher, WatchResponse
from pykv.server.config import GRPC_OVERHEAD_BYTES
from pykv.server.responses import kv_message
from pykv.server.v3rpc.context import ServerContext

log = logging.getLogger("pykv.server.watch")

INVALID_WATCH_ID = -1
OUT_QUEUE_MAX = 128  # responses waiting for one client stream (etcd's chanBufLen)
ERR_DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"


def event_message(event: t.Event) -> kv_pb2.Event:
    message = kv_pb2.Event(type=event.type, kv=kv_message(event.kv))
    if event.prev_kv is not None:
        message.prev_kv.CopyFrom(kv_message(event.prev_kv))
    return message


def fragments(response: rpc_pb2.WatchResponse, limit_bytes: int) -> list[rpc_pb2.WatchResponse]:
    """etcd's sendFragments: split the events so that every piece stays under
    ``limit_bytes`` (a piece holds at least one event); every piece but the
    last has ``fragment`` set."""
    if response.ByteSize() < limit_bytes or len(response.events) < 2:
        return [response]
    pieces = []
    events = list(response.events)
    index = 0
    while index < len(events):
        piece = rpc_pb2.WatchResponse(
            header=response.header, watch_id=response.watch_id, created=response.created,
            canceled=response.canceled, compact_revision=response.compact_revision,
            cancel_reason=response.cancel_reason, fragment=True)
        while index < len(events):
            piece.events.append(events[index])
            if len(piece.events) > 1 and piece.ByteSize() >= limit_bytes:
                del piece.events[-1]
                break
            index += 1
        pieces.append(piece)
    pieces[-1].fragment = False
    return pieces


class WatchStream:
    """One client stream: its watchers and its outgoing queue."""

    def __init__(self, ctx: ServerContext, loop: asyncio.AbstractEventLoop):
        self.ctx = ctx
        self.loop = loop
        self.out: asyncio.Queue = asyncio.Queue()
        self.watchers: dict[int, Watcher] = {}
        self.fragmented: set[int] = set()
        self.progress_wanted: dict[int, bool] = {}
        self._next_id = 0
        self._dirty: set[Watcher] = set()
        self._scheduled = False
        self._closed = False
        self.limit_bytes = ctx.config.max_request_bytes + GRPC_OVERHEAD_BYTES

    # -- the hub's side (writer or sync thread) ------------------------------

    def notify(self, watcher: Watcher) -> None:
        self._dirty.add(watcher)
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._flush)
            except RuntimeError:
                pass  # the loop is closed: the server is stopping

    # -- the loop's side ------------------------------------------------------

    def header(self, revision: int) -> rpc_pb2.ResponseHeader:
        return self.ctx.headers.message(revision)

    def _flush(self) -> None:
        """Move buffered responses to the stream, but never more than
        ``OUT_QUEUE_MAX`` waiting for a slow client: the rest stay in the
        hub, whose bounded per-watcher buffers turn a slow watcher into a
        victim caught up from history later (no event lost, memory bounded)."""
        self._scheduled = False
        out = self.out
        while self._dirty and out.qsize() < OUT_QUEUE_MAX:
            watcher = self._dirty.pop()
            for response in watcher.take():
                self._send(watcher, response)

    def pulled(self) -> None:
        """The client took a response: refill if watchers were held back."""
        if self._dirty and not self._scheduled and self.out.qsize() < OUT_QUEUE_MAX // 2:
            self._flush()

    def _send(self, watcher: Watcher, response: WatchResponse) -> None:
        if self._closed:
            return
        message = rpc_pb2.WatchResponse(
            header=self.header(response.revision), watch_id=response.watch_id,
            events=[event_message(e) for e in response.events],
            compact_revision=response.compact_revision,
            canceled=response.canceled or bool(response.compact_revision))
        if response.events:
            self.progress_wanted[response.watch_id] = False
        if message.canceled:
            self.watchers.pop(response.watch_id, None)
            self.fragmented.discard(response.watch_id)
            self.progress_wanted.pop(response.watch_id, None)
        if response.watch_id in self.fragmented:
            for piece in fragments(message, self.limit_bytes):
                self.out.put_nowait(piece)
        else:
            self.out.put_nowait(message)

    def _new_id(self) -> int:
        while self._next_id in self.watchers:
            self._next_id += 1
        watch_id = self._next_id
        self._next_id += 1
        return watch_id

    def create(self, request: rpc_pb2.WatchCreateRequest) -> None:
        store = self.ctx.store
        if request.start_revision < 0:
            self.out.put_nowait(rpc_pb2.WatchResponse(
                header=self.header(store.revision), watch_id=INVALID_WATCH_ID, created=True,
                canceled=True, cancel_reason=errors.Compacted.message))
            return
        watch_id = request.watch_id
        if watch_id != 0 and watch_id in self.watchers:
            self.out.put_nowait(rpc_pb2.WatchResponse(
                header=self.header(store.revision), watch_id=INVALID_WATCH_ID, created=True,
                canceled=True, cancel_reason=ERR_DUPLICATE_WATCH_ID))
            return
        if watch_id == 0:
            watch_id = self._new_id()
        range_end = request.range_end
        # The "created" answer must go out before any event of the watcher.
        self.out.put_nowait(rpc_pb2.WatchResponse(
            header=self.header(store.revision), watch_id=watch_id, created=True))
        if request.fragment:
            self.fragmented.add(watch_id)
        if request.progress_notify:
            self.progress_wanted[watch_id] = True
        self.watchers[watch_id] = store.hub.watch(
            request.key, range_end, request.start_revision, prev_kv=request.prev_kv,
            filters=list(request.filters), notify=self.notify, watch_id=watch_id,
            progress_notify=request.progress_notify)

    def cancel(self, request: rpc_pb2.WatchCancelRequest) -> None:
        watcher = self.watchers.pop(request.watch_id, None)
        if watcher is None:
            return  # etcd ignores an unknown id
        watcher.cancel()
        self.fragmented.discard(request.watch_id)
        self.progress_wanted.pop(request.watch_id, None)
        self._dirty.discard(watcher)
        self.out.put_nowait(rpc_pb2.WatchResponse(
            header=self.header(self.ctx.store.revision), watch_id=request.watch_id,
            canceled=True))

    def progress_all(self) -> None:
        """WatchProgressRequest: one response with watch_id -1 once every
        watcher of the stream is synced (etcd's RequestProgressAll)."""
        revision = self.ctx.store.hub.progress_revision(self.watchers.values())
        if revision is None:
            return
        # Events up to `revision` may still sit in the watchers' buffers (the
        # writer's flush has not run yet): they go out first, else the
        # notification would promise events the client has not got.
        self._dirty.update(self.watchers.values())
        self._flush()
        if any(watcher.pending() for watcher in self.watchers.values()):
            return  # held back for a slow client: no promise to make yet
        self.out.put_nowait(rpc_pb2.WatchResponse(header=self.header(revision),
                                                  watch_id=INVALID_WATCH_ID))

    def progress_tick(self) -> None:
        """The periodic progress notification for watchers that asked for it
        and got no event since the last one."""
        hub = self.ctx.store.hub
        for watch_id, wanted in list(self.progress_wanted.items()):
            watcher = self.watchers.get(watch_id)
            if watcher is not None and wanted:
                hub.progress(watcher)
            self.progress_wanted[watch_id] = True

    async def receive(self, requests) -> None:
        """Handle the client's requests. When the client half-closes, the
        stream stays open for events, as etcd's does; an error ends it."""
        try:
            async for request in requests:
                which = request.WhichOneof("request_union")
                if which == "create_request":
                    self.create(request.create_request)
                elif which == "cancel_request":
                    self.cancel(request.cancel_request)
                elif which == "progress_request":
                    self.progress_all()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("watch stream receive ended", exc_info=True)
            self.out.put_nowait(None)

    def close(self) -> None:
        self._closed = True
        for watcher in self.watchers.values():
            watcher.cancel()
        self.watchers.clear()


class WatchService:
    progress_interval_s = 600.0  # etcd: 10 minutes (plus jitter)

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.streams: set[WatchStream] = set()
        self._ticker: asyncio.Task | None = None

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval_s)
            for stream in list(self.streams):
                stream.progress_tick()

    async def Watch(self, requests, context):
        loop = asyncio.get_running_loop()
        if self._ticker is None:
            self._ticker = loop.create_task(self._progress_loop())
        stream = WatchStream(self.ctx, loop)
        self.streams.add(stream)
        receiver = loop.create_task(stream.receive(requests))
        try:
            while True:
                message = await stream.out.get()
                if message is None:
                    break
                stream.pulled()
                yield message
        finally:
            receiver.cancel()
            stream.close()
            self.streams.discard(stream)
