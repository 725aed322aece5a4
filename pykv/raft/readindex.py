"""Pending ReadIndex requests on the leader (Raft thesis section 6.4).

In SAFE mode a read request records the commit index at its arrival and is
answered once a quorum has acknowledged a heartbeat carrying its context,
which proves that no newer leader existed at that moment. Requests are
answered in arrival order: an acknowledgment for a later request confirms
all earlier ones too.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from pykv.raft.types import Message


class ReadOnlyOption(enum.IntEnum):
    SAFE = 0          # a quorum round of heartbeats per read (batched)
    LEASE_BASED = 1   # trust the leader lease; needs check_quorum; clock drift matters


class ReadIndexStatus(NamedTuple):
    request: Message
    index: int
    acks: dict[int, bool]


class ReadOnly:
    __slots__ = ("option", "pending", "queue")

    def __init__(self, option: ReadOnlyOption):
        self.option = option
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, request: Message) -> None:
        ctx = request.context
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(request, index, {})
        self.queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        status = self.pending.get(ctx)
        if status is None:
            return None
        status.acks[node_id] = True
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Release the request with ``ctx`` and every request before it."""
        if ctx not in self.pending:
            return []
        released = []
        for i, queued in enumerate(self.queue):
            released.append(self.pending.pop(queued))
            if queued == ctx:
                del self.queue[:i + 1]
                break
        return released

    def last_pending_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
