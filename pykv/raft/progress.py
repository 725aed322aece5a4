"""What the leader knows of each follower: ``Progress``, and flow control.

States (etcd-io/raft's design.md):
- PROBE: the leader does not know where the follower's log ends; it sends at
  most one append per heartbeat interval and waits for the answer.
- REPLICATE: the follower is known to be in step; appends are pipelined,
  bounded by ``Inflights`` (a count and a byte budget).
- SNAPSHOT: the follower needs a snapshot; no appends until it is reported.
"""

from __future__ import annotations

import enum
from collections import deque

from pykv.raft.storage import NO_LIMIT


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


PROBE = ProgressState.PROBE
REPLICATE = ProgressState.REPLICATE
SNAPSHOT = ProgressState.SNAPSHOT


class Inflights:
    """Append messages sent but not yet acknowledged, by their last index.

    Bounded by ``size`` messages and ``max_bytes`` of entry data; indexes are
    added in increasing order and freed by prefix.
    """

    __slots__ = ("size", "max_bytes", "_queue", "bytes")

    def __init__(self, size: int, max_bytes: int = NO_LIMIT):
        self.size = size
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def add(self, index: int, size_bytes: int) -> None:
        if self.full():
            raise AssertionError("cannot add to a full Inflights")
        self._queue.append((index, size_bytes))
        self.bytes += size_bytes

    def free_le(self, index: int) -> None:
        """Forget the messages whose last index is <= ``index``."""
        queue = self._queue
        while queue and queue[0][0] <= index:
            self.bytes -= queue.popleft()[1]

    def full(self) -> bool:
        return len(self._queue) >= self.size or self.bytes >= self.max_bytes

    def count(self) -> int:
        return len(self._queue)

    def reset(self) -> None:
        self._queue.clear()
        self.bytes = 0


class Progress:
    """A follower's replication state, as the leader sees it.

    Invariant: 0 <= match < next; pending_commit < next.
    """

    __slots__ = ("match", "next", "pending_commit", "state", "pending_snapshot",
                 "recent_active", "probes_paused", "inflights", "is_learner")

    def __init__(self, next_index: int, inflights: Inflights, is_learner: bool = False,
                 match: int = 0, recent_active: bool = False):
        self.match = match
        self.next = next_index
        self.pending_commit = 0     # highest commit index sent (bounded by next - 1)
        self.state = PROBE
        self.pending_snapshot = 0   # index of the snapshot sent, in SNAPSHOT state
        self.recent_active = recent_active
        self.probes_paused = False  # no (more) appends until an answer or heartbeat
        self.inflights = inflights
        self.is_learner = is_learner

    def __repr__(self) -> str:
        extra = " learner" if self.is_learner else ""
        if self.pending_snapshot:
            extra += f" pending_snapshot={self.pending_snapshot}"
        if self.inflights.count():
            extra += f" inflight={self.inflights.count()}"
        return (f"{self.state.name} match={self.match} next={self.next}{extra}"
                f"{'' if self.recent_active else ' inactive'}")

    def reset_state(self, state: ProgressState) -> None:
        self.probes_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == SNAPSHOT:
            # The snapshot was delivered: probe just past it.
            pending = self.pending_snapshot
            self.reset_state(PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(PROBE)
            self.next = self.match + 1
            self.pending_commit = min(self.pending_commit, self.match)

    def become_replicate(self) -> None:
        self.reset_state(REPLICATE)
        self.next = self.match + 1
        self.pending_commit = min(self.pending_commit, self.match)

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, count: int, size_bytes: int) -> None:
        """An append with ``count`` entries from ``next`` on was sent."""
        if self.state == REPLICATE and count:
            self.next += count
            self.inflights.add(self.next - 1, size_bytes)
        self.probes_paused = True

    def sent_commit(self, commit: int) -> None:
        self.pending_commit = min(max(self.pending_commit, commit), self.next - 1)

    def can_bump_commit(self, commit: int) -> bool:
        return self.pending_commit < min(commit, self.next - 1)

    def can_send_entries(self, last_index: int) -> bool:
        return self.next <= last_index and (self.state == PROBE or not self.inflights.full())

    def should_send_append(self, last_index: int, commit: int) -> bool:
        """Whether an append (perhaps empty) should go to this follower now.

        In PROBE, one per answer or heartbeat. In REPLICATE, whenever there
        are entries not in flight and room for them, when the follower's
        commit index can move, or as an empty probe after a heartbeat answer
        (so that lost appends are noticed). Never in SNAPSHOT.
        """
        state = self.state
        if state == REPLICATE:
            return self.can_bump_commit(commit) or (
                self.match < last_index and (not self.probes_paused
                                             or self.can_send_entries(last_index)))
        if state == PROBE:
            return not self.probes_paused
        return False

    def maybe_update(self, index: int) -> bool:
        """An append up to ``index`` was acknowledged; False if stale."""
        if index <= self.match:
            return False
        self.match = index
        if self.next <= index:
            self.next = index + 1
        return True

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append at ``rejected`` was refused; back off (False if stale)."""
        if self.state == REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            self.pending_commit = min(self.pending_commit, self.match)
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.pending_commit = min(self.pending_commit, self.next - 1)
        self.probes_paused = False
        return True

    def is_paused(self) -> bool:
        if self.state == PROBE:
            return self.probes_paused
        if self.state == REPLICATE:
            return self.probes_paused and self.inflights.full()
        return True
