"""``RawNode``: the application's handle on one Raft peer.

Inputs are plain calls: ``tick``, ``step``, ``propose``/``propose_batch``,
``propose_conf_change``, ``read_index``, ``transfer_leader``,
``report_unreachable``, ``report_snapshot``, ``campaign``. Output is a
``Ready``; ``advance`` acknowledges it. Nothing here does I/O, reads a clock
or starts a thread.

The loop contract (the same as etcd-io/raft's doc.go, in synchronous form)
==========================================================================

Call ``tick()`` at a fixed interval (etcd: 100 ms; ``election_tick`` ticks
make an election timeout). Feed every message from a peer to ``step()``.
Then, whenever ``has_ready()``:

1. ``rd = node.ready()``. Only one Ready may be outstanding: the next
   ``ready()`` requires ``advance(rd)`` first. ``step``/``tick``/``propose``
   may be called in between (their effects go into the next Ready).
2. Persist, atomically if the storage can, in this order: ``rd.snapshot``
   (if any), then ``rd.entries`` (an entry at index i replaces every
   persisted entry >= i), then ``rd.hard_state`` (if not None). Sync to disk
   when ``rd.must_sync``. Then update the ``MemoryStorage`` the node reads:
   ``apply_snapshot``, ``append``, ``set_hard_state``.
3. Send ``rd.messages``. They may depend on what step 2 persisted (a vote,
   an acknowledged append), so a follower or candidate sends only after
   step 2 is durable. When ``rd.can_send_before_persist`` is true (the node
   led for the whole batch, with no term/vote change and no snapshot), the
   messages may go out while step 2 is in progress (Raft thesis 10.2.1):
   the leader never counts its own entries toward a commit before
   ``advance`` reports them durable. For a message carrying a snapshot
   (``MessageType.SNAP``), call ``report_snapshot(to, status)`` when the
   transfer has finished or failed.
4. Apply ``rd.snapshot`` to the state machine, then ``rd.committed_entries``
   in order. Committed entries may include entries of ``rd.entries`` of the
   same Ready (a follower learns of a commit together with the entries; a
   leader that is the only voter commits its new entries in the Ready that
   persists them), so apply them only after step 2 is durable: applying
   first is how etcd #14370 lost acknowledged writes on a single node. For every entry of type
   ``EntryType.CONF_CHANGE``, call ``apply_conf_change(decode_conf_change(
   entry.data))`` and keep the returned ``ConfState`` (it goes into the next
   snapshot). Acknowledge a client's write only once it has been applied.
   Hand ``rd.read_states`` to the waiting reads: a read with
   ``request_ctx`` may be served once the state machine has applied
   ``index``.
5. ``node.advance(rd)``.

When ``rd.snapshot_requested`` is true, the leader must catch up a follower
that joined after the latest snapshot in storage: create one at the applied
index (``storage.create_snapshot``) soon; the leader retries by itself.

Restart: fill a ``MemoryStorage`` from durable state (snapshot, entries,
hard state) and create the ``RawNode`` with ``Config.applied`` set to the
index the state machine is known to have applied *including membership*
(usually the snapshot's index). Committed entries after it are handed out
again; the application skips the data it already applied but must call
``apply_conf_change`` for conf changes, so the node's membership is restored
exactly. A brand-new cluster calls ``bootstrap(voters)`` on each founding
member's empty node; a node joining a running cluster starts empty and
learns everything from the leader.

Membership: one change at a time
================================

Changes are single-server (thesis 4.1): ADD_NODE, ADD_LEARNER_NODE (also
demotes a voter), REMOVE_NODE and UPDATE_NODE (no Raft effect), each taking
effect when *applied*, and a leader accepts a new one only once the previous
one is applied (``ProposalDropped(CONF_CHANGE_PENDING)`` otherwise). A new
leader accepts none until it has committed and applied the empty entry it
appends on election, an entry of its own term: this is the published fix of
Ongaro's 2015 single-server bug. Joint consensus is not implemented: etcd's
member API changes one member per request, etcd and hashicorp/raft use
single-server changes by default, and one-at-a-time changes with that fix
are safe; joint consensus would add an enter/leave protocol and its failure
modes for no behaviour a client of pykv can see. A leader that removes or
demotes itself steps down once the change is applied.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

from pykv.raft.core import LEADER, Raft, Role
from pykv.raft.errors import ConfigError, InvalidMessage, ProposalDropped
from pykv.raft.progress import ProgressState
from pykv.raft.readindex import ReadOnlyOption
from pykv.raft.storage import MemoryStorage
from pykv.raft.types import (
    LOCAL_MESSAGE_TYPES, NONE, RESPONSE_MESSAGE_TYPES, ConfChange, ConfChangeType, ConfState,
    Entry, EntryType, HardState, Message, MessageType, ReadState, Snapshot, encode_conf_change,
    payload_size,
)

__all__ = ["Config", "RawNode", "Ready", "SoftState", "Status", "ProgressStatus",
           "SnapshotStatus", "Role", "ReadOnlyOption"]


@dataclass
class Config:
    """Parameters of one peer; the defaults are etcd's.

    ``rng`` drives the randomized election timeout: pass a seeded
    ``random.Random`` for reproducible runs; None means a fresh unseeded one.
    ``applied``: see "Restart" in the module docstring.
    """

    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = 0   # 0: max_size_per_msg
    max_uncommitted_entries_size: int = 0   # 0: no limit
    max_inflight_msgs: int = 512
    max_inflight_bytes: int = 0             # 0: no limit
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    step_down_on_removal: bool = True
    rng: random.Random | None = None

    def validate(self) -> None:
        if self.id == NONE:
            raise ConfigError("cannot use none (0) as id")
        if self.heartbeat_tick <= 0:
            raise ConfigError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("max inflight messages must be greater than 0")
        if self.max_inflight_bytes and self.max_inflight_bytes < self.max_size_per_msg:
            raise ConfigError("max inflight bytes must be >= max message size")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ConfigError("check_quorum must be enabled when read_only_option is "
                              "LEASE_BASED")


class SnapshotStatus(enum.IntEnum):
    FINISH = 0
    FAILURE = 1


class SoftState(NamedTuple):
    """Volatile state worth showing (never persisted)."""

    leader: int
    role: Role


class Ready:
    """A batch of work for the application; see the module docstring.

    ``soft_state`` and ``hard_state`` are None when unchanged since the
    previous Ready.
    """

    __slots__ = ("soft_state", "hard_state", "entries", "snapshot", "committed_entries",
                 "messages", "read_states", "must_sync", "can_send_before_persist",
                 "snapshot_requested")

    def __init__(self) -> None:
        self.soft_state: SoftState | None = None
        self.hard_state: HardState | None = None
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None
        self.committed_entries: list[Entry] = []
        self.messages: list[Message] = []
        self.read_states: list[ReadState] = []
        self.must_sync = False
        self.can_send_before_persist = False
        self.snapshot_requested = False

    def __repr__(self) -> str:
        return (f"Ready(soft={self.soft_state}, hard={self.hard_state}, "
                f"entries={len(self.entries)}, snapshot={self.snapshot is not None}, "
                f"committed={len(self.committed_entries)}, messages={len(self.messages)}, "
                f"read_states={len(self.read_states)}, must_sync={self.must_sync})")


class ProgressStatus(NamedTuple):
    match: int
    next: int
    state: ProgressState
    recent_active: bool
    is_learner: bool
    paused: bool
    inflight: int


class Status(NamedTuple):
    id: int
    leader: int
    role: Role
    term: int
    vote: int
    commit: int
    applied: int
    lead_transferee: int
    conf_state: ConfState
    progress: dict[int, ProgressStatus]   # empty unless leader


class RawNode:
    """A thread-unsafe Raft peer driven by the application (see module doc)."""

    def __init__(self, config: Config, storage: MemoryStorage):
        config.validate()
        self.raft = Raft(config, storage)
        self._prev_soft = SoftState(*self.raft.soft_state())
        self._prev_hard = self.raft.hard_state()
        self._outstanding: Ready | None = None

    # -- inputs ---------------------------------------------------------------

    def bootstrap(self, voters: Sequence[int], contexts: Mapping[int, bytes] | None = None
                  ) -> None:
        """Found a new cluster: the initial membership becomes the first
        (committed) log entries, one ADD_NODE conf change per voter, with the
        optional ``contexts[id]`` (e.g. the member's peer URLs).

        Only on a node whose storage is empty; every founding member calls it
        with the same ``voters`` and ``contexts``.
        """
        raft = self.raft
        if raft.log.last_index() != 0 or raft.term != 0:
            raise ConfigError("can't bootstrap a node whose storage is not empty")
        if not voters:
            raise ConfigError("must provide at least one voter to bootstrap")
        if len(set(voters)) != len(voters) or NONE in voters:
            raise ConfigError(f"invalid voter ids {list(voters)}")
        contexts = contexts or {}
        raft.become_follower(1, NONE)
        changes = [ConfChange(ConfChangeType.ADD_NODE, v, contexts.get(v, b"")) for v in voters]
        raft.log.append([Entry(1, i + 1, EntryType.CONF_CHANGE, encode_conf_change(cc))
                         for i, cc in enumerate(changes)])
        raft.log.committed = len(changes)
        for cc in changes:
            raft.apply_conf_change(cc)

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (as if the election timeout had elapsed)."""
        self.raft.step(Message(MessageType.HUP, from_=self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose one entry. Raises ProposalDropped if it cannot be taken
        (no leader, a leader transfer, the uncommitted-size limit...).

        Acceptance is no promise of commit: the entry may still be lost with
        a leader change; the application waits for it to be applied and
        retries on timeout (idempotently).
        """
        self.raft.propose_data([data])

    def propose_batch(self, datas: Sequence[bytes]) -> None:
        """Propose several entries at once (one append, one message each way)."""
        if datas:
            self.raft.propose_data(list(datas))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change (one pending at a time)."""
        if cc.node_id == NONE:
            raise ConfigError("conf change for node id 0")
        ConfChangeType(cc.type)  # raises ValueError for an unknown type
        self.raft.propose_data([encode_conf_change(cc)], EntryType.CONF_CHANGE)

    def step(self, m: Message) -> None:
        """Handle a message from a peer."""
        if m.type in LOCAL_MESSAGE_TYPES:
            raise InvalidMessage(f"local message type {MessageType(m.type).name} "
                                 f"received from the network: {m!r}")
        if m.type in RESPONSE_MESSAGE_TYPES and m.from_ not in self.raft.progress:
            return  # an answer from a node that is not (or no longer) a member
        try:
            self.raft.step(m)
        except ProposalDropped:
            pass  # a forwarded proposal: its proposer times out and retries

    def read_index(self, request_ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer comes as a
        ``ReadState(index, request_ctx)`` in a later Ready. ``request_ctx``
        must be unique among pending reads. Raises ProposalDropped when there
        is no leader."""
        raft = self.raft
        if raft.lead == NONE:
            raise ProposalDropped(ProposalDropped.NO_LEADER, "read index")
        raft.step(Message(MessageType.READ_INDEX, context=request_ctx))

    def transfer_leader(self, to: int) -> None:
        """Ask the leader to hand leadership to ``to`` (a voter)."""
        self.raft.step(Message(MessageType.TRANSFER_LEADER, from_=to))

    def report_unreachable(self, peer: int) -> None:
        """A message to ``peer`` could not be sent."""
        self.raft.step(Message(MessageType.UNREACHABLE, from_=peer))

    def report_snapshot(self, peer: int, status: SnapshotStatus) -> None:
        """The snapshot sent to ``peer`` was delivered (FINISH) or not."""
        self.raft.step(Message(MessageType.SNAP_STATUS, from_=peer,
                               reject=status == SnapshotStatus.FAILURE))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change to the membership; returns it."""
        return self.raft.apply_conf_change(cc)

    # -- outputs --------------------------------------------------------------

    def has_ready(self) -> bool:
        raft = self.raft
        if raft.msgs or raft.read_states or raft.snapshot_requested:
            return True
        log = raft.log
        u = log.unstable
        if u.offset_in_progress < u.offset + len(u.entries) or u.next_snapshot() is not None:
            return True
        if log.has_next_committed_entries():
            return True
        if raft.hard_state() != self._prev_hard:
            return True
        return raft.soft_state() != tuple(self._prev_soft)

    def ready(self) -> Ready:
        """The pending work; must be passed back to ``advance`` when done."""
        if self._outstanding is not None:
            raise RuntimeError("the previous Ready has not been advanced")
        raft = self.raft
        log = raft.log
        rd = Ready()
        rd.entries = entries = log.unstable.next_entries()
        rd.snapshot = log.unstable.next_snapshot()
        if entries and raft.state == LEADER and raft.voters == (raft.id,):
            # A sole voter is its own quorum: its entries are committed the
            # moment step 2 of this very Ready has made them durable, so they
            # are handed out for application now (after that step, as the
            # contract demands) instead of in a second Ready after advance().
            # Messages already queued carry the old commit index, and any
            # made later leave in a later Ready, after this one is durable,
            # so no learner hears of a commit before it is durable here.
            log.maybe_commit(entries[-1][1], raft.term)
        rd.committed_entries = log.next_committed_entries()
        soft = raft.soft_state()
        if soft != tuple(self._prev_soft):
            self._prev_soft = rd.soft_state = SoftState(*soft)
        hard = raft.hard_state()
        prev_hard = self._prev_hard
        term_or_vote_changed = hard[0] != prev_hard[0] or hard[1] != prev_hard[1]
        if hard != prev_hard:
            self._prev_hard = rd.hard_state = hard
        rd.messages = raft.msgs
        raft.msgs = []
        rd.read_states = raft.read_states
        raft.read_states = []
        rd.snapshot_requested = raft.snapshot_requested
        raft.snapshot_requested = False
        rd.must_sync = bool(rd.entries) or rd.snapshot is not None or term_or_vote_changed
        rd.can_send_before_persist = (raft.state == LEADER and not term_or_vote_changed
                                      and rd.snapshot is None)
        log.unstable.accept_in_progress()
        if rd.committed_entries:
            log.accept_applying(rd.committed_entries[-1][1])
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """Acknowledge ``rd``: its entries, hard state and snapshot are
        durable, its committed entries and snapshot applied."""
        if rd is not self._outstanding:
            raise RuntimeError("advance() must be given the Ready last returned by ready()")
        self._outstanding = None
        raft = self.raft
        log = raft.log
        if rd.snapshot is not None:
            index = rd.snapshot.meta.index
            log.stable_snap_to(index)
            log.applied_to(index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last[1], last[0])
            if raft.state == LEADER:
                raft.self_ack()
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1][1])
            if raft.state == LEADER and raft.uncommitted_size:
                raft.reduce_uncommitted_size(payload_size(rd.committed_entries))

    def status(self) -> Status:
        raft = self.raft
        progress: dict[int, ProgressStatus] = {}
        if raft.state == LEADER:
            for node_id, pr in raft.progress.items():
                progress[node_id] = ProgressStatus(pr.match, pr.next, pr.state, pr.recent_active,
                                                   pr.is_learner, pr.is_paused(),
                                                   pr.inflights.count())
        return Status(raft.id, raft.lead, raft.state, raft.term, raft.vote, raft.log.committed,
                      raft.log.applied, raft.lead_transferee, raft.conf_state(), progress)
