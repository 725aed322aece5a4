"""Deterministic simulation of a pykv Raft cluster under faults.

One seed decides everything: cluster size (3 or 5), fault rates, timings.
A step is one tick of simulated time: every running node ticks, messages
that are due are delivered in random order, Readies are handled (persist,
send, apply, advance, as the loop contract says), clients propose and read,
and faults are injected: message loss, delay (reordering), duplication,
partitions (symmetric, one node, one-way), crashes at every point of Ready
handling (a crashed node keeps only what it persisted: possibly a prefix of
a Ready's entries), restarts, membership changes (add learner, promote,
remove, including the leader), leader transfers, snapshots and compaction.

Checked at every step: at most one leader per term; log matching (an
(index, term) pair identifies one entry and one predecessor term); leader
completeness (a new leader holds every committed entry); state machine
safety (every node applies the same entry at an index, and the same state
hash, snapshots included); durable term and vote never go back; reads are
linearizable (a ReadState index covers every write acknowledged before the
read was asked). After the fault phase everything heals: a leader must
appear and every member must apply every acknowledged write within a bounded
number of ticks.

Every message goes through the binary codec. Nothing here reads a clock or
iterates a set in a way that depends on hashing: one seed, one run.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from pykv.raft import (
    Config, ConfChange, ConfChangeType, ConfState, EntryType, MemoryStorage, MessageType,
    ProposalDropped, RawNode, Role, SnapshotStatus,
)
from pykv.raft.types import decode_conf_change, decode_message, encode_message

ELECTION_TICK = 10


class InvariantViolation(AssertionError):
    pass


@dataclass
class Options:
    """Everything a seed decides (printed with a failure)."""

    seed: int
    nodes: int
    drop: float
    duplicate: float
    max_delay: int
    crash: float
    partition: float
    propose: float
    read: float
    conf_change: float
    transfer: float
    snapshot_every: int
    max_size_per_msg: int

    @classmethod
    def from_seed(cls, seed: int) -> "Options":
        rng = random.Random(f"options-{seed}")
        return cls(seed=seed, nodes=rng.choice([3, 3, 5]), drop=rng.choice([0.0, 0.02, 0.1]),
                   duplicate=rng.choice([0.0, 0.02, 0.05]), max_delay=rng.choice([0, 1, 3]),
                   crash=rng.choice([0.0, 0.003, 0.01]), partition=rng.choice([0.0, 0.01, 0.03]),
                   propose=rng.choice([0.3, 0.7]), read=rng.choice([0.0, 0.1]),
                   conf_change=rng.choice([0.0, 0.01, 0.03]),
                   transfer=rng.choice([0.0, 0.005, 0.02]),
                   snapshot_every=rng.choice([8, 30, 100]),
                   max_size_per_msg=rng.choice([64, 1 << 20]))


@dataclass
class SimNode:
    id: int
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    node: RawNode | None = None
    down_until: int = 0
    # The state machine, durable like the LMDB store: applied index and a
    # hash chained over every applied entry.
    sm_index: int = 0
    sm_hash: int = 0
    conf_state: ConfState = ConfState()
    durable_term: int = 0
    durable_vote: int = 0
    proposed: set = field(default_factory=set)
    reads: dict = field(default_factory=dict)   # ctx -> index required


class Simulation:
    def __init__(self, seed: int, steps: int = 2000):
        self.opts = Options.from_seed(seed)
        self.rng = random.Random(seed)
        self.steps = steps
        self.now = 0
        self.nodes: dict[int, SimNode] = {}
        self.next_id = self.opts.nodes + 1
        self.in_flight: list[tuple[int, int, bytes]] = []   # (due, seq, encoded message)
        self.seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.heal_at = 0
        self.proposal_seq = 0
        self.read_seq = 0
        # Global knowledge for the checks.
        self.leaders: dict[int, int] = {}                   # term -> leader
        self.entries_seen: dict[tuple[int, int], tuple[int, int]] = {}
        self.committed_terms: dict[int, int] = {}           # index -> term
        self.max_committed = 0
        self.applied_entries: dict[int, tuple[int, int]] = {}   # index -> (term, crc)
        self.hash_at: dict[int, int] = {}
        self.acked: dict[bytes, int] = {}                   # data -> index
        self.max_acked = 0
        self.stats = {"elections": 0, "crashes": 0, "partitions": 0, "conf_changes": 0,
                      "transfers": 0, "snapshots_sent": 0, "reads": 0, "acked": 0,
                      "dropped": 0, "duplicated": 0}
        voters = list(range(1, self.opts.nodes + 1))
        for node_id in voters:
            sim_node = SimNode(node_id)
            self.nodes[node_id] = sim_node
            self._start(sim_node)
            sim_node.node.bootstrap(voters)

    # -- lifecycle ----------------------------------------------------------------

    def _start(self, n: SimNode) -> None:
        snap = n.storage.snapshot()
        if snap.meta.index > n.sm_index:
            # Like a server that finds a newer snapshot than its store.
            n.sm_index, n.sm_hash = _decode_state(snap.data)
        n.conf_state = snap.meta.conf_state
        cfg = Config(n.id, election_tick=ELECTION_TICK, applied=snap.meta.index,
                     max_size_per_msg=self.opts.max_size_per_msg, max_inflight_msgs=16,
                     rng=random.Random(self.rng.random()))
        n.node = RawNode(cfg, n.storage)
        n.reads = {}

    def _crash(self, n: SimNode) -> None:
        n.node = None
        n.down_until = self.now + self.rng.randint(5, 5 * ELECTION_TICK)
        self.stats["crashes"] += 1

    def up(self) -> list[SimNode]:
        return [n for _, n in sorted(self.nodes.items()) if n.node is not None]

    # -- network ------------------------------------------------------------------

    def _send(self, frm: int, messages) -> None:
        opts, rng = self.opts, self.rng
        for m in messages:
            if (frm, m.to) in self.blocked or rng.random() < opts.drop:
                self.stats["dropped"] += 1
                if m.type == MessageType.SNAP:
                    self._report_snapshot(frm, m.to, SnapshotStatus.FAILURE)
                elif (frm, m.to) in self.blocked and rng.random() < 0.2:
                    # The transport noticed the broken connection.
                    sender = self.nodes[frm]
                    if sender.node is not None:
                        sender.node.report_unreachable(m.to)
                continue
            copies = 2 if rng.random() < opts.duplicate else 1
            self.stats["duplicated"] += copies - 1
            buf = encode_message(m)
            for _ in range(copies):
                self.seq += 1
                self.in_flight.append((self.now + rng.randint(0, opts.max_delay), self.seq, buf))

    def _report_snapshot(self, frm: int, to: int, status: SnapshotStatus) -> None:
        sender = self.nodes.get(frm)
        if sender is not None and sender.node is not None:
            sender.node.report_snapshot(to, status)

    def _deliver_due(self) -> bool:
        due = [item for item in self.in_flight if item[0] <= self.now]
        if not due:
            return False
        self.in_flight = [item for item in self.in_flight if item[0] > self.now]
        self.rng.shuffle(due)                      # reordering
        for _, _, buf in due:
            m = decode_message(buf)
            target = self.nodes.get(m.to)
            if target is None or target.node is None:
                if m.type == MessageType.SNAP:
                    self._report_snapshot(m.from_, m.to, SnapshotStatus.FAILURE)
                continue
            target.node.step(m)
            if m.type == MessageType.SNAP:
                self.stats["snapshots_sent"] += 1
                self._report_snapshot(m.from_, m.to, SnapshotStatus.FINISH)
        return True

    # -- the application loop -------------------------------------------------------

    def _handle_ready(self, n: SimNode) -> None:
        node = n.node
        rd = node.ready()
        crash_at = -1
        if self.opts.crash and self.rng.random() < self.opts.crash * 5:
            crash_at = self.rng.randint(0, 4)
        if rd.can_send_before_persist and self.rng.random() < 0.5:
            self._send(n.id, rd.messages)
            sent = True
        else:
            sent = False
        if crash_at == 0:
            return self._crash(n)
        self._persist(n, rd, torn=crash_at == 1)
        if crash_at == 1:
            return self._crash(n)
        if not sent:
            self._send(n.id, rd.messages)
        if crash_at == 2:
            return self._crash(n)
        self._apply(n, rd)
        if crash_at == 3:
            return self._crash(n)
        node.advance(rd)
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            self._check_leader_completeness(n)
        self._maybe_snapshot(n, force=rd.snapshot_requested)

    def _persist(self, n: SimNode, rd, torn: bool) -> None:
        storage = n.storage
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        entries = rd.entries
        if torn and entries:
            entries = entries[:self.rng.randint(0, len(entries))]
        if entries:
            storage.append(entries)
            self._check_log_matching(n, entries)
        if torn:
            return  # the hard state record comes last: lost with the tail
        hs = rd.hard_state
        if hs is not None:
            if hs.term < n.durable_term:
                raise InvariantViolation(f"node {n.id}: durable term went back "
                                         f"{n.durable_term} -> {hs.term}")
            if hs.term == n.durable_term and n.durable_vote and hs.vote != n.durable_vote:
                raise InvariantViolation(f"node {n.id}: changed its vote in term {hs.term} "
                                         f"from {n.durable_vote} to {hs.vote}")
            n.durable_term, n.durable_vote = hs.term, hs.vote
            storage.set_hard_state(hs)
            self._record_commit(n, hs.commit)

    def _apply(self, n: SimNode, rd) -> None:
        if rd.snapshot is not None:
            index, state = _decode_state(rd.snapshot.data)
            self._check_state(n.id, index, state)
            n.sm_index, n.sm_hash = index, state
            n.conf_state = rd.snapshot.meta.conf_state
        for entry in rd.committed_entries:
            if entry.type == EntryType.CONF_CHANGE:
                n.conf_state = n.node.apply_conf_change(decode_conf_change(entry.data))
            if entry.index <= n.sm_index:
                self._check_entry(n.id, entry)   # replayed after a restart
                continue
            if entry.index != n.sm_index + 1:
                raise InvariantViolation(f"node {n.id}: applies {entry.index} after "
                                         f"{n.sm_index}")
            self._check_entry(n.id, entry)
            n.sm_hash = zlib.crc32(entry.data, zlib.crc32(b"%d" % entry.term, n.sm_hash))
            n.sm_index = entry.index
            self._check_state(n.id, n.sm_index, n.sm_hash)
            if entry.data in n.proposed:
                n.proposed.discard(entry.data)
                self.acked[entry.data] = entry.index
                self.max_acked = max(self.max_acked, entry.index)
                self.stats["acked"] += 1
        for rs in rd.read_states:
            required = n.reads.pop(rs.request_ctx, None)
            if required is not None and rs.index < required:
                raise InvariantViolation(f"node {n.id}: read {rs.request_ctx!r} at index "
                                         f"{rs.index} misses a write acknowledged at {required}")

    def _maybe_snapshot(self, n: SimNode, force: bool = False) -> None:
        storage = n.storage
        snap_index = storage.snapshot().meta.index
        if n.sm_index - snap_index < (1 if force else self.opts.snapshot_every):
            return
        applied = n.node.status().applied
        if applied <= snap_index or applied != n.sm_index:
            return
        storage.create_snapshot(applied, n.conf_state, _encode_state(n.sm_index, n.sm_hash))
        keep = self.rng.randint(0, 5)
        if applied - keep > storage.first_index() - 1:
            storage.compact(applied - keep)

    # -- checks -------------------------------------------------------------------------

    def _check_log_matching(self, n: SimNode, entries) -> None:
        storage = n.storage
        first = entries[0].index
        try:
            prev_term = storage.term(first - 1)
        except Exception:
            prev_term = -1
        seen = self.entries_seen
        for e in entries:
            key = (e.index, e.term)
            value = (zlib.crc32(e.data) ^ e.type, prev_term)
            old = seen.setdefault(key, value)
            if old != value and not (old[0] == value[0] and -1 in (old[1], value[1])):
                raise InvariantViolation(f"node {n.id}: log matching broken at "
                                         f"{e.index}/{e.term}: {old} vs {value}")
            prev_term = e.term

    def _record_commit(self, n: SimNode, commit: int) -> None:
        if commit <= self.max_committed:
            return
        raft_log = n.node.raft.log
        for index in range(self.max_committed + 1, commit + 1):
            self.committed_terms[index] = raft_log.term(index)
        self.max_committed = commit

    def _check_leader_completeness(self, n: SimNode) -> None:
        raft_log = n.node.raft.log
        first = raft_log.first_index()
        for index in range(max(first, 1), self.max_committed + 1):
            if raft_log.term_or_zero(index) != self.committed_terms[index]:
                raise InvariantViolation(
                    f"node {n.id} leads term {n.node.raft.term} without committed entry "
                    f"{index}/{self.committed_terms[index]}")

    def _check_entry(self, node_id: int, entry) -> None:
        value = (entry.term, zlib.crc32(entry.data))
        old = self.applied_entries.setdefault(entry.index, value)
        if old != value:
            raise InvariantViolation(f"node {node_id} applies {entry.index}/{entry.term}, "
                                     f"another node applied {entry.index}/{old[0]} there")

    def _check_state(self, node_id: int, index: int, state: int) -> None:
        old = self.hash_at.setdefault(index, state)
        if old != state:
            raise InvariantViolation(f"node {node_id}: state at {index} differs from another "
                                     f"node's")

    def _check_leaders(self) -> None:
        for n in self.up():
            raft = n.node.raft
            if raft.state == Role.LEADER:
                leader = self.leaders.setdefault(raft.term, n.id)
                if leader != n.id:
                    raise InvariantViolation(f"two leaders in term {raft.term}: {leader} "
                                             f"and {n.id}")

    # -- clients and faults ---------------------------------------------------------------

    def _leader(self) -> SimNode | None:
        best = None
        for n in self.up():
            if n.node.raft.state == Role.LEADER and (best is None
                                                   or n.node.raft.term > best.node.raft.term):
                best = n
        return best

    def _client_ops(self) -> None:
        rng, opts = self.rng, self.opts
        up = self.up()
        if not up:
            return
        if rng.random() < opts.propose:
            n = rng.choice(up)
            batch = []
            for _ in range(rng.randint(1, 3)):
                self.proposal_seq += 1
                batch.append(b"p%d" % self.proposal_seq)
            try:
                n.node.propose_batch(batch)
                n.proposed.update(batch)
            except ProposalDropped:
                pass
        if rng.random() < opts.read:
            n = rng.choice(up)
            self.read_seq += 1
            ctx = b"r%d" % self.read_seq
            try:
                n.node.read_index(ctx)
                n.reads[ctx] = self.max_acked
                self.stats["reads"] += 1
            except ProposalDropped:
                pass

    def _faults(self) -> None:
        rng, opts = self.rng, self.opts
        for n in list(self.nodes.values()):
            if n.node is None and n.down_until <= self.now:
                self._start(n)
            elif n.node is not None and rng.random() < opts.crash:
                self._crash(n)
        if self.blocked and self.now >= self.heal_at:
            self.blocked.clear()
        if not self.blocked and rng.random() < opts.partition:
            self._partition()
        if rng.random() < opts.conf_change:
            self._conf_change()
        if rng.random() < opts.transfer:
            leader = self._leader()
            if leader is not None:
                voters = [v for v in leader.conf_state.voters if v != leader.id]
                if voters:
                    leader.node.transfer_leader(rng.choice(voters))
                    self.stats["transfers"] += 1

    def _partition(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        kind = rng.choice(["split", "isolate", "one-way"])
        if kind == "split":
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) // 2)
            side = set(ids[:cut])
            self.blocked = {(a, b) for a in ids for b in ids if (a in side) != (b in side)}
        elif kind == "isolate":
            victim = rng.choice(ids)
            self.blocked = {(a, b) for a in ids for b in ids if a != b and victim in (a, b)}
        else:
            self.blocked = {(a, b) for a in ids for b in ids if a != b and rng.random() < 0.3}
        self.heal_at = self.now + rng.randint(ELECTION_TICK, 6 * ELECTION_TICK)
        self.stats["partitions"] += 1

    def _conf_change(self) -> None:
        rng = self.rng
        leader = self._leader()
        if leader is None:
            return
        cs = leader.conf_state
        choices = []
        if len(cs.learners) < 2 and len(cs.voters) + len(cs.learners) < 7:
            choices.append("add")
        if cs.learners:
            choices += ["promote", "remove-learner"]
        if len(cs.voters) > 3:
            choices.append("remove-voter")
        if not choices:
            return
        kind = rng.choice(choices)
        if kind == "add":
            cc = ConfChange(ConfChangeType.ADD_LEARNER_NODE, self.next_id)
        elif kind == "promote":
            cc = ConfChange(ConfChangeType.ADD_NODE, rng.choice(cs.learners))
        elif kind == "remove-learner":
            cc = ConfChange(ConfChangeType.REMOVE_NODE, rng.choice(cs.learners))
        else:
            cc = ConfChange(ConfChangeType.REMOVE_NODE, rng.choice(cs.voters))  # maybe the leader
        try:
            leader.node.propose_conf_change(cc)
        except ProposalDropped:
            return
        self.stats["conf_changes"] += 1
        if kind == "add":
            new = SimNode(self.next_id)   # empty: learns everything from the leader
            self.nodes[new.id] = new
            self._start(new)
            self.next_id += 1

    # -- driving ------------------------------------------------------------------------

    def step(self, faults: bool = True) -> None:
        self.now += 1
        for n in self.up():
            n.node.tick()
        if faults:
            self._faults()
        self._client_ops()
        for _ in range(20):
            moved = self._deliver_due()
            for n in self.up():
                if n.node is not None and n.node.has_ready():
                    self._handle_ready(n)
                    moved = True
            self._check_leaders()
            if not moved:
                break

    def members(self) -> list[SimNode]:
        leader = self._leader()
        cs = leader.conf_state if leader is not None else ConfState()
        return [self.nodes[i] for i in sorted(cs.voters + cs.learners)]

    def run(self) -> dict:
        for _ in range(self.steps):
            self.step()
        # Liveness: heal everything and stop injecting faults.
        self.blocked.clear()
        self.opts.drop = self.opts.duplicate = self.opts.crash = 0.0
        for n in self.nodes.values():
            if n.node is None:
                self._start(n)
        limit = 60 * ELECTION_TICK
        probe, probe_tick = None, 0
        for tick in range(limit):
            self.step(faults=False)
            leader = self._leader()
            if leader is None:
                continue
            if probe not in self.acked and tick >= probe_tick:
                # A client writes, and retries (a new request) on timeout: a
                # proposal may be lost with a leader change.
                self.proposal_seq += 1
                probe = b"probe%d" % self.proposal_seq
                probe_tick = tick + 3 * ELECTION_TICK
                try:
                    leader.node.propose(probe)
                    leader.proposed.add(probe)
                except ProposalDropped:
                    probe_tick = tick
                continue
            if probe in self.acked:
                members = self.members()
                if members and all(m.node is not None and m.sm_index >= self.max_acked
                                   and m.sm_hash == self.hash_at[m.sm_index] for m in members):
                    self.stats["converged_after_ticks"] = tick + 1
                    return self.result()
        raise InvariantViolation(f"no convergence within {limit} ticks after healing "
                                 f"(leader: {self._leader() and self._leader().id}, "
                                 f"acked up to {self.max_acked})")

    def result(self) -> dict:
        self.stats["elections"] = len(self.leaders)
        digest = zlib.crc32(repr(sorted((n.id, n.sm_index, n.sm_hash)
                                        for n in self.nodes.values())).encode())
        return {"seed": self.opts.seed, "digest": digest, "ticks": self.now, **self.stats}


def _encode_state(index: int, state: int) -> bytes:
    return b"%d:%d" % (index, state)


def _decode_state(data: bytes) -> tuple[int, int]:
    index, state = data.split(b":")
    return int(index), int(state)


def run_seed(seed: int, steps: int = 2000) -> dict:
    """Run one seed; raises InvariantViolation (with the seed and options)."""
    sim = Simulation(seed, steps)
    try:
        return sim.run()
    except Exception as exc:
        raise InvariantViolation(f"seed {seed} failed at tick {sim.now}: {exc!r}\n"
                                 f"  options: {sim.opts}\n"
                                 f"  reproduce: python -m tests.sim --seed {seed} "
                                 f"--steps {steps}") from exc
