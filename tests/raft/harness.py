"""An in-memory cluster of RawNodes for protocol tests.

The harness is a faithful application: it persists each Ready into the
node's MemoryStorage before sending (a leader may send first), applies
committed entries (calling apply_conf_change), and round-trips every message
through the binary codec, as the peer transport will.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Callable, Iterable

from pykv.raft import (
    Config, ConfState, Entry, EntryType, MemoryStorage, Message, MessageType, RawNode, ReadState,
    Role, SnapshotStatus,
)
from pykv.raft.types import decode_conf_change, decode_message, encode_message


class Cluster:
    def __init__(self, ids: Iterable[int], *, learners: Iterable[int] = (), seed: int = 0,
                 bootstrap: bool = True, **config):
        self.config = config
        self.seed = seed
        self.nodes: dict[int, RawNode] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.applied: dict[int, list] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.conf_states: dict[int, ConfState] = {}
        self.queue: deque[Message] = deque()
        self.blocked: set[tuple[int, int]] = set()
        self.dropped: list[Message] = []
        self.snapshot_requests: list[int] = []
        ids = sorted(ids)
        learners = sorted(learners)
        for node_id in ids + learners:
            self.add_node(node_id)
            if bootstrap:
                self.nodes[node_id].bootstrap(ids)
        if bootstrap and learners:
            from pykv.raft import ConfChange, ConfChangeType
            for node_id in ids + learners:
                for learner in learners:
                    self.nodes[node_id].apply_conf_change(
                        ConfChange(ConfChangeType.ADD_LEARNER_NODE, learner))
        self.stabilize()

    # -- membership of the harness --------------------------------------------

    def add_node(self, node_id: int, storage: MemoryStorage | None = None, applied: int = 0
                 ) -> RawNode:
        storage = storage if storage is not None else MemoryStorage()
        cfg = Config(node_id, rng=random.Random(self.seed * 1000 + node_id), applied=applied,
                     **self.config)
        node = RawNode(cfg, storage)
        self.nodes[node_id] = node
        self.storages[node_id] = storage
        self.applied.setdefault(node_id, [])
        self.read_states.setdefault(node_id, [])
        return node

    def restart(self, node_id: int) -> RawNode:
        """Crash and restart ``node_id`` from what it persisted."""
        storage = self.storages[node_id]
        del self.nodes[node_id]
        return self.add_node(node_id, storage, applied=storage.snapshot().meta.index)

    # -- network --------------------------------------------------------------

    def isolate(self, node_id: int) -> None:
        for other in self.nodes:
            if other != node_id:
                self.blocked.add((node_id, other))
                self.blocked.add((other, node_id))

    def cut(self, frm: int, to: int) -> None:
        self.blocked.add((frm, to))

    def heal(self) -> None:
        self.blocked.clear()

    def _send(self, messages: list[Message]) -> None:
        for m in messages:
            m = decode_message(encode_message(m))
            if (m.from_, m.to) in self.blocked or m.to not in self.nodes:
                self.dropped.append(m)
                if m.type == MessageType.SNAP and m.from_ in self.nodes:
                    self.nodes[m.from_].report_snapshot(m.to, SnapshotStatus.FAILURE)
                continue
            self.queue.append(m)

    def deliver(self, keep: Callable[[Message], bool] = lambda m: True) -> int:
        """Deliver every queued message for which ``keep`` is true (the
        others are dropped); returns the number delivered."""
        delivered = 0
        while self.queue:
            m = self.queue.popleft()
            if not keep(m) or m.to not in self.nodes:
                self.dropped.append(m)
                if m.type == MessageType.SNAP and m.from_ in self.nodes:
                    self.nodes[m.from_].report_snapshot(m.to, SnapshotStatus.FAILURE)
                continue
            self.nodes[m.to].step(m)
            if m.type == MessageType.SNAP:
                self.nodes[m.from_].report_snapshot(m.to, SnapshotStatus.FINISH)
            delivered += 1
        return delivered

    # -- the application loop ---------------------------------------------------

    def process_ready(self, node_id: int) -> list[Message]:
        """Handle one Ready of ``node_id`` as the application must; the
        messages are queued for delivery and also returned."""
        node = self.nodes[node_id]
        storage = self.storages[node_id]
        rd = node.ready()
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        self._send(rd.messages)
        if rd.snapshot is not None:
            self.applied[node_id].append(("snapshot", rd.snapshot.meta.index))
            self.conf_states[node_id] = rd.snapshot.meta.conf_state
        for entry in rd.committed_entries:
            if entry.type == EntryType.CONF_CHANGE:
                self.conf_states[node_id] = node.apply_conf_change(decode_conf_change(entry.data))
            self.applied[node_id].append(entry)
        self.read_states[node_id].extend(rd.read_states)
        if rd.snapshot_requested:
            self.snapshot_requests.append(node_id)
        node.advance(rd)
        return rd.messages

    def round(self, keep: Callable[[Message], bool] = lambda m: True) -> bool:
        """Process every node's Readies, then deliver what they sent; False
        when nothing happened."""
        moved = False
        for node_id in sorted(self.nodes):
            while self.nodes[node_id].has_ready():
                self.process_ready(node_id)
                moved = True
        if self.deliver(keep):
            moved = True
        return moved

    def stabilize(self, keep: Callable[[Message], bool] = lambda m: True,
                  max_rounds: int = 1000) -> None:
        """Process Readies and deliver messages until nothing moves."""
        for _ in range(max_rounds):
            if not self.round(keep):
                return
        raise AssertionError("cluster did not stabilize")

    def tick(self, node_id: int, ticks: int = 1) -> None:
        for _ in range(ticks):
            self.nodes[node_id].tick()

    def tick_all(self, ticks: int = 1) -> None:
        for _ in range(ticks):
            for node_id in sorted(self.nodes):
                self.nodes[node_id].tick()
            self.stabilize()

    def elect(self, node_id: int) -> None:
        self.nodes[node_id].campaign()
        self.stabilize()
        assert self.role(node_id) == Role.LEADER, self.status(node_id)

    # -- observation ------------------------------------------------------------

    def status(self, node_id: int):
        return self.nodes[node_id].status()

    def role(self, node_id: int) -> Role:
        return self.nodes[node_id].status().role

    def term(self, node_id: int) -> int:
        return self.nodes[node_id].status().term

    def commit(self, node_id: int) -> int:
        return self.nodes[node_id].status().commit

    def leader(self) -> int:
        leaders = [i for i in self.nodes if self.role(i) == Role.LEADER]
        assert len(leaders) <= 1 or len({self.term(i) for i in leaders}) == len(leaders)
        return max(leaders, key=self.term) if leaders else 0

    def log_terms(self, node_id: int) -> list[tuple[int, int]]:
        log = self.nodes[node_id].raft.log
        return [(e.index, e.term) for e in log.slice(log.first_index(), log.last_index() + 1)]

    def applied_data(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.applied[node_id]
                if isinstance(e, Entry) and e.type == EntryType.NORMAL and e.data]
