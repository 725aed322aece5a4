"""The write log, taken by one watch kept for the whole run.

A watch from revision 1 taken at the end is refused once a client has
compacted, so a watcher starts with the traffic and follows every
restart: when its stream breaks it watches again from its last seen
revision + 1. If that revision was compacted meanwhile (the server cancels
the watch with its compact revision), the revisions in between are lost
to the log; they are recorded in `gaps` and the checks skip them.

Every response is also kept as it came (`responses`, with prev_kv and the
progress notifications the watcher asks for now and then), for the watch
guarantees of `validate_watch.py`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import threading

import grpc

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.robustness.history import KeyValue
from tests.robustness.traffic import key_value
from tests.robustness.validate import LoggedWrite

# How often the watcher asks for a progress notification (a bookmark).
PROGRESS_EVERY_S = 0.3


@dataclasses.dataclass(frozen=True)
class WatchedEvent:
    """One event as delivered: `kv` is the put's key-value (None for a delete)."""

    revision: int
    key: bytes
    kv: KeyValue | None
    prev_kv: KeyValue | None


@dataclasses.dataclass(frozen=True)
class WatchResponseRecord:
    session: int           # one per watch stream: a new one after each restart
    header_revision: int
    events: tuple[WatchedEvent, ...]
    progress: bool         # a progress notification: no events, all up to the header delivered


class Watcher:
    """Records every event under [key, range_end) from revision 1 on, across
    restarts. Call `start()` before the traffic and `collect()` after it."""

    def __init__(self, endpoint: str, key: bytes, range_end: bytes,
                 up: threading.Event) -> None:
        self.endpoint = endpoint
        self.key = key
        self.range_end = range_end
        self.up = up
        self.log: list[LoggedWrite] = []
        self.gaps: list[tuple[int, int]] = []  # [first, last] revisions the log lacks
        self.responses: list[WatchResponseRecord] = []
        self.reconnects = 0
        self._next_revision = 1
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._stream = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def last_revision(self) -> int:
        """Every event up to this revision is in the log (or in a gap)."""
        return self._next_revision - 1

    def start(self) -> "Watcher":
        self._thread.start()
        return self

    def collect(self, final_revision: int, timeout_s: float) -> list[LoggedWrite]:
        """Wait until the log reaches `final_revision`, stop watching and return it."""
        with self._changed:
            self._changed.wait_for(lambda: self.last_revision >= final_revision, timeout_s)
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        self._thread.join(timeout_s)
        if self.last_revision < final_revision:
            raise TimeoutError(f"the watcher reached revision {self.last_revision} of "
                               f"{final_revision} within {timeout_s}s")
        return self.log

    def save(self, path: pathlib.Path) -> None:
        """Every response as received, one JSON line each, for a failure's post-mortem."""
        with open(path, "w") as out:
            for response in self.responses:
                record = dataclasses.asdict(response)
                record["events"] = [_printable(event) for event in record["events"]]
                out.write(json.dumps(record) + "\n")

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.up.wait(0.2):
                continue
            try:
                self._watch_once()
            except grpc.RpcError:
                pass  # the server died: watch again from the next revision
            self.reconnects += 1
            self._stop.wait(0.05)

    def _watch_once(self) -> None:
        done = threading.Event()
        session = self.reconnects

        def requests():
            yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=self.key, range_end=self.range_end, start_revision=self._next_revision,
                prev_kv=True))
            while not done.wait(PROGRESS_EVERY_S):
                yield rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())

        with grpc.insecure_channel(self.endpoint) as channel:
            self._stream = rpc_pb2_grpc.WatchStub(channel).Watch(requests())
            try:
                if self._stop.is_set():
                    return
                for response in self._stream:
                    if response.compact_revision:
                        self._skip_to(response.compact_revision)
                        return
                    self._append(response, session)
            finally:
                done.set()
                self._stream.cancel()

    def _skip_to(self, compact_revision: int) -> None:
        with self._changed:
            if compact_revision > self._next_revision:
                self.gaps.append((self._next_revision, compact_revision - 1))
                self._next_revision = compact_revision
            self._changed.notify_all()

    def _append(self, response, session: int) -> None:
        events = response.events
        if not (events or response.created or response.canceled):
            self.responses.append(WatchResponseRecord(session, response.header.revision, (),
                                                      progress=True))
        elif events:
            self.responses.append(WatchResponseRecord(session, response.header.revision, tuple(
                WatchedEvent(event.kv.mod_revision, event.kv.key,
                             None if event.type == event.DELETE else key_value(event.kv),
                             key_value(event.prev_kv) if event.HasField("prev_kv") else None)
                for event in events), progress=False))
        with self._changed:
            for event in events:
                deleted = event.type == event.DELETE
                self.log.append(LoggedWrite(event.kv.mod_revision, event.kv.key,
                                            None if deleted else event.kv.value,
                                            0 if deleted else event.kv.lease))
                self._next_revision = max(self._next_revision, event.kv.mod_revision + 1)
            self._changed.notify_all()


def _printable(item):
    """bytes -> str, recursively, for JSON."""
    if isinstance(item, bytes):
        return item.decode(errors="replace")
    if isinstance(item, dict):
        return {name: _printable(value) for name, value in item.items()}
    if isinstance(item, (list, tuple)):
        return [_printable(value) for value in item]
    return item


@dataclasses.dataclass
class WatchProbe:
    """A watch opened at `start_revision` and read up to a progress
    notification at the final revision: its events, or the compact revision
    it was refused with."""

    start_revision: int
    events: list[LoggedWrite]
    compact_revision: int = 0


def probe(endpoint: str, key: bytes, range_end: bytes, start_revision: int,
          final_revision: int, timeout_s: float) -> WatchProbe:
    """Watch from `start_revision` until a progress notification says every
    event up to `final_revision` was delivered (asked for until the watcher
    has caught up), or the server cancels the watch as compacted."""
    result = WatchProbe(start_revision, [])
    done = threading.Event()

    def requests():
        yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision))
        while not done.wait(PROGRESS_EVERY_S):
            yield rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())

    with grpc.insecure_channel(endpoint) as channel:
        stream = rpc_pb2_grpc.WatchStub(channel).Watch(requests(), timeout=timeout_s)
        try:
            for response in stream:
                if response.compact_revision:
                    result.compact_revision = response.compact_revision
                    break
                for event in response.events:
                    deleted = event.type == event.DELETE
                    result.events.append(LoggedWrite(event.kv.mod_revision, event.kv.key,
                                                     None if deleted else event.kv.value,
                                                     0 if deleted else event.kv.lease))
                progress = not (response.events or response.created or response.canceled)
                if progress and response.header.revision >= final_revision:
                    break
        finally:
            done.set()
            stream.cancel()
    return result
