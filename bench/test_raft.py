"""Raft core throughput: committed entries through an in-memory 3-node cluster.

Run: ``python -m pytest bench/test_raft.py -q`` (add ``--benchmark-json=FILE``
to keep the numbers). Each figure is reported beside a reference measured in
the same run on the same machine, and the assertions compare ratios.

- ``cluster``: one round = the leader takes ``propose_batch`` of 100 entries
  (64-byte payloads), then every node's Readies are handled (persisted into
  its MemoryStorage, messages handed over in memory, committed entries
  "applied") until the batch is applied on all three nodes. Time per round /
  100 = the Python cost of one committed entry for the whole cluster.
- ``reference_floor``: the least any Python replication of the same batch
  must do: build 100 entry tuples and append them to three logs.
- codecs: ``encode_entries``/``decode_entries`` of the same batch, beside
  ``marshal`` of the same tuples (a C serializer: the speed floor).
"""

from __future__ import annotations

import marshal
import random

import pytest

from pykv.raft import Config, EntryType, MemoryStorage, RawNode
from pykv.raft.types import Entry, decode_conf_change, decode_entries, encode_entries

BATCH = 100
PAYLOAD = b"v" * 64


class InMemoryCluster:
    """Three RawNodes and the minimal correct application loop."""

    def __init__(self) -> None:
        self.storages = {i: MemoryStorage() for i in (1, 2, 3)}
        self.nodes = {i: RawNode(Config(i, rng=random.Random(i)), self.storages[i])
                      for i in (1, 2, 3)}
        for node in self.nodes.values():
            node.bootstrap([1, 2, 3])
        self.applied = {i: 0 for i in (1, 2, 3)}
        self.drive()
        self.nodes[1].campaign()
        self.drive()

    def drive(self) -> None:
        nodes, storages, applied = self.nodes, self.storages, self.applied
        moved = True
        while moved:
            moved = False
            for node_id, node in nodes.items():
                if not node.has_ready():
                    continue
                moved = True
                rd = node.ready()
                storage = storages[node_id]
                if rd.entries:
                    storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                for m in rd.messages:
                    nodes[m.to].step(m)
                committed = rd.committed_entries
                if committed:
                    for entry in committed:
                        if entry.type == EntryType.CONF_CHANGE:
                            node.apply_conf_change(decode_conf_change(entry.data))
                    applied[node_id] += len(committed)
                node.advance(rd)

    def compact(self) -> None:
        for node_id, storage in self.storages.items():
            applied = self.nodes[node_id].status().applied
            if applied - storage.first_index() > 20_000:
                storage.compact(applied - 5_000)


@pytest.fixture(scope="module")
def cluster() -> InMemoryCluster:
    return InMemoryCluster()


def test_cluster_commits_batches_of_100(benchmark, cluster):
    batch = [PAYLOAD] * BATCH
    leader = cluster.nodes[1]

    def round_trip() -> None:
        before = cluster.applied[3]
        leader.propose_batch(batch)
        cluster.drive()
        assert cluster.applied[3] - before == BATCH

    benchmark.pedantic(round_trip, rounds=300, iterations=1, warmup_rounds=20)
    cluster.compact()
    per_entry_us = benchmark.stats.stats.median / BATCH * 1e6
    benchmark.extra_info["us_per_committed_entry"] = round(per_entry_us, 3)
    benchmark.extra_info["entries_per_second"] = round(1e6 / per_entry_us)
    assert all(c >= 300 * BATCH for c in cluster.applied.values())


def test_cluster_commits_single_proposals(benchmark, cluster):
    leader = cluster.nodes[1]

    def round_trip() -> None:
        leader.propose(PAYLOAD)
        cluster.drive()

    benchmark.pedantic(round_trip, rounds=1000, iterations=1, warmup_rounds=50)
    benchmark.extra_info["us_per_committed_entry"] = round(benchmark.stats.stats.median * 1e6, 3)


def test_reference_floor(benchmark):
    """Build 100 entry tuples and append them to three lists: the floor."""
    logs: list[list] = [[], [], []]
    index = [0]
    new = tuple.__new__

    def floor() -> None:
        first = index[0]
        entries = [new(Entry, (1, first + i, 0, PAYLOAD)) for i in range(BATCH)]
        for log in logs:
            log.extend(entries)
        index[0] += BATCH
        if len(logs[0]) > 100_000:
            for log in logs:
                del log[:]

    benchmark.pedantic(floor, rounds=300, iterations=1, warmup_rounds=20)
    benchmark.extra_info["us_per_entry"] = round(benchmark.stats.stats.median / BATCH * 1e6, 3)


ENTRIES = [Entry(7, 1000 + i, 0, PAYLOAD) for i in range(BATCH)]
ENCODED = encode_entries(ENTRIES)


def test_encode_entries(benchmark):
    out = benchmark(encode_entries, ENTRIES)
    assert out == ENCODED


def test_decode_entries(benchmark):
    out = benchmark(decode_entries, ENCODED)
    assert out == ENTRIES


def test_reference_marshal_dumps(benchmark):
    benchmark(marshal.dumps, [tuple(e) for e in ENTRIES])


def test_reference_marshal_loads(benchmark):
    benchmark(marshal.loads, marshal.dumps([tuple(e) for e in ENTRIES]))
