"""The Raft state machine: roles, elections, replication, reads, membership.

This is the algorithm alone: no I/O, no clock (time is ``tick()``), no
threads, and randomness only from ``Config.rng``. The application drives it
through ``pykv.raft.rawnode.RawNode``; this module's ``Raft`` is internal.

It follows etcd-io/raft's behaviour (a fact-for-fact port of the algorithm,
not of the code): PreVote (thesis 9.6), CheckQuorum and the leader lease on
votes (thesis 6.2 / 4.2.3), fast backtracking with reject hints (paper 5.3),
probe/replicate/snapshot flow control, commit by counting only entries of
the current term (paper 5.4.2) with an empty entry appended on election,
ReadIndex (thesis 6.4), learners, one membership change at a time taking
effect when applied (thesis 4.1, with the fix for Ongaro's 2015 bug: no
change is accepted until the leader has applied every entry up to its
election, so a new leader first commits an entry of its own term), and
leader transfer (thesis 3.10).
"""

from __future__ import annotations

import enum
import random
from itertools import repeat

from pykv.raft.errors import CompactedError, ConfigError, ProposalDropped, \
    SnapshotTemporarilyUnavailable
from pykv.raft.log import RaftLog
from pykv.raft.progress import PROBE, REPLICATE, SNAPSHOT, Inflights, Progress
from pykv.raft.quorum import VoteResult, vote_result
from pykv.raft.readindex import ReadOnly, ReadOnlyOption
from pykv.raft.storage import NO_LIMIT, MemoryStorage
from pykv.raft.types import (
    EMPTY_HARD_STATE, NONE, ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState,
    Message, MessageType, ReadState, Snapshot, payload_size,
)


class Role(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


FOLLOWER = Role.FOLLOWER
CANDIDATE = Role.CANDIDATE
LEADER = Role.LEADER
PRE_CANDIDATE = Role.PRE_CANDIDATE

# Message types as module constants: the hot paths compare against them.
HUP = MessageType.HUP
BEAT = MessageType.BEAT
PROP = MessageType.PROP
APP = MessageType.APP
APP_RESP = MessageType.APP_RESP
VOTE = MessageType.VOTE
VOTE_RESP = MessageType.VOTE_RESP
SNAP = MessageType.SNAP
HEARTBEAT = MessageType.HEARTBEAT
HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
UNREACHABLE = MessageType.UNREACHABLE
SNAP_STATUS = MessageType.SNAP_STATUS
CHECK_QUORUM = MessageType.CHECK_QUORUM
TRANSFER_LEADER = MessageType.TRANSFER_LEADER
TIMEOUT_NOW = MessageType.TIMEOUT_NOW
READ_INDEX = MessageType.READ_INDEX
READ_INDEX_RESP = MessageType.READ_INDEX_RESP
PRE_VOTE = MessageType.PRE_VOTE
PRE_VOTE_RESP = MessageType.PRE_VOTE_RESP

_VOTE_TYPES = (VOTE, PRE_VOTE)
_VOTE_AND_RESP_TYPES = frozenset({VOTE, VOTE_RESP, PRE_VOTE, PRE_VOTE_RESP})
_FROM_LEADER_TYPES = (APP, HEARTBEAT, SNAP)

NORMAL = EntryType.NORMAL
CONF_CHANGE = EntryType.CONF_CHANGE


class Campaign(enum.Enum):
    PRE_ELECTION = "pre-election"
    ELECTION = "election"
    TRANSFER = "transfer"


#: Context of a vote request caused by a leader transfer: it bypasses the
#: leader lease of the voters (they know the leader asked for it).
TRANSFER_CONTEXT = b"CampaignTransfer"

_new_tuple = tuple.__new__


class Raft:
    """One Raft peer. Internal: use ``RawNode``.

    ``msgs`` collects outgoing messages and ``read_states`` answered reads,
    until the RawNode hands them out in a Ready.
    """

    def __init__(self, config, storage: MemoryStorage):
        self.id: int = config.id
        self.log = RaftLog(storage, config.max_committed_size_per_ready or
                           config.max_size_per_msg)
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.max_msg_bytes: int = config.max_size_per_msg
        self.max_uncommitted_bytes: int = config.max_uncommitted_entries_size or NO_LIMIT
        self.max_inflight: int = config.max_inflight_msgs
        self.max_inflight_bytes: int = config.max_inflight_bytes or NO_LIMIT
        self.check_quorum: bool = config.check_quorum
        self.pre_vote: bool = config.pre_vote
        self.disable_proposal_forwarding: bool = config.disable_proposal_forwarding
        self.step_down_on_removal: bool = config.step_down_on_removal
        self.heartbeat_timeout: int = config.heartbeat_tick
        self.election_timeout: int = config.election_tick
        self.rng: random.Random = config.rng if config.rng is not None else random.Random()
        self.read_only = ReadOnly(ReadOnlyOption(config.read_only_option))
        self.pending_read_index_messages: list[Message] = []
        # Membership (single configuration; see module docstring).
        self.voters: tuple[int, ...] = ()
        self.learners: tuple[int, ...] = ()
        self.progress: dict[int, Progress] = {}
        self.peer_ids: list[int] = []     # sorted ids of the others in progress
        self.votes: dict[int, bool] = {}
        self.lead_transferee = NONE
        # Only one conf change may be pending (in the log, not yet applied):
        # none is accepted while pending_conf_index > applied.
        self.pending_conf_index = 0
        self.uncommitted_size = 0         # leader: data bytes not yet committed
        self.snapshot_requested = False   # leader: its latest snapshot is too old
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout

        hard_state, conf_state = storage.initial_state()
        self._set_membership(conf_state.voters, conf_state.learners)
        self.is_learner = self.id in self.learners
        if hard_state != EMPTY_HARD_STATE:
            self._load_state(hard_state)
        if config.applied > 0:
            self.log.applied_to(config.applied)
        self.become_follower(self.term, NONE)

    def _load_state(self, hs: HardState) -> None:
        log = self.log
        if hs.commit > log.last_index():
            raise ConfigError(f"hard state commit {hs.commit} is beyond the last index "
                              f"{log.last_index()}: was the log truncated or lost?")
        # A commit below the snapshot is fine: a crash between persisting a
        # snapshot and the hard state that follows it; a snapshot only ever
        # holds committed entries.
        log.committed = max(hs.commit, log.committed)
        self.term = hs.term
        self.vote = hs.vote

    # -- state ----------------------------------------------------------------

    def soft_state(self) -> tuple[int, Role]:
        return (self.lead, self.state)

    def hard_state(self) -> HardState:
        return _new_tuple(HardState, (self.term, self.vote, self.log.committed))

    def conf_state(self) -> ConfState:
        return ConfState(self.voters, self.learners)

    def promotable(self) -> bool:
        pr = self.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.log.has_pending_snapshot()

    # -- role transitions -----------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = (self.election_timeout
                                            + self.rng.randrange(self.election_timeout))
        self.lead_transferee = NONE
        self.votes = {}
        log = self.log
        next_index = log.last_index() + 1
        # Our own match is what is durable: a leader counts itself toward a
        # commit only for entries it has persisted (see advance()).
        own_match = log.persisted_last_index() if not log.has_pending_snapshot() else 0
        max_inflight, max_bytes = self.max_inflight, self.max_inflight_bytes
        for node_id, pr in self.progress.items():
            self.progress[node_id] = Progress(
                next_index, Inflights(max_inflight, max_bytes), pr.is_learner,
                match=own_match if node_id == self.id else 0)
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(self.read_only.option)
        # Reads queued for a first commit in a term are dropped with it; the
        # application retries them (as it retries any read on timeout).
        self.pending_read_index_messages = []

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = FOLLOWER

    def become_candidate(self) -> None:
        if self.state == LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.state == LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # Neither the term nor the vote changes: a pre-campaign is harmless.
        self._step = self._step_candidate
        self.votes = {}
        self._tick = self._tick_election
        self.lead = NONE
        self.state = PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.state == FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = LEADER
        pr = self.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # An empty entry of this term, so that earlier entries commit with it
        # (paper 5.4.2) and ReadIndex can serve (thesis 6.4).
        self.log.append([_new_tuple(Entry, (self.term, self.log.last_index() + 1, NORMAL, b""))])
        # Refuse conf changes until that entry is applied: the log may hold
        # an unapplied change, and a leader must commit an entry of its own
        # term before changing membership (the fix of Ongaro's 2015
        # single-server bug).
        self.pending_conf_index = self.log.last_index()

    # -- ticks ----------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
            self.election_elapsed = 0
            self.step(Message(HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(CHECK_QUORUM, from_=self.id))
            # A transfer that did not finish within an election timeout is
            # abandoned: this node leads on.
            if self.state == LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE
        if self.state != LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(BEAT, from_=self.id))

    # -- elections ------------------------------------------------------------

    def _has_unapplied_conf_changes(self) -> bool:
        log = self.log
        if log.applied >= log.committed:
            return False
        entries = log.slice(log.applied + 1, log.committed + 1)
        return any(e[2] == CONF_CHANGE for e in entries)

    def _hup(self, campaign: Campaign) -> None:
        if self.state == LEADER:
            return
        if not self.promotable():
            return
        if self._has_unapplied_conf_changes():
            # The configuration this node would lead with may be stale.
            return
        self._campaign(campaign)

    def _campaign(self, campaign: Campaign) -> None:
        if campaign is Campaign.PRE_ELECTION:
            self.become_pre_candidate()
            vote_type = PRE_VOTE
            term = self.term + 1    # pre-votes ask about the next term
        else:
            self.become_candidate()
            vote_type = VOTE
            term = self.term
        # Our own vote: it is part of the hard state, which is persisted
        # before the requests below are sent.
        self.votes[self.id] = True
        if vote_result(self.voters, self.votes) is VoteResult.WON:
            # A single voter wins alone.
            if campaign is Campaign.PRE_ELECTION:
                self._campaign(Campaign.ELECTION)
            else:
                self.become_leader()
            return
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        context = TRANSFER_CONTEXT if campaign is Campaign.TRANSFER else b""
        for node_id in self.voters:
            if node_id == self.id:
                continue
            self.msgs.append(Message(vote_type, node_id, self.id, term, last_term, last_index,
                                     context=context))

    def _poll(self, node_id: int, granted: bool) -> VoteResult:
        if node_id not in self.votes:
            self.votes[node_id] = granted
        return vote_result(self.voters, self.votes)

    # -- step -----------------------------------------------------------------

    def _send(self, m: Message) -> None:
        if m.from_ == NONE:
            m.from_ = self.id
        if m.type in _VOTE_AND_RESP_TYPES:
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {m!r}")
        elif m.type != PROP and m.type != READ_INDEX:
            # Proposals and read requests are forwarded as local messages
            # (term 0) so that any leader accepts them.
            m.term = self.term
        self.msgs.append(m)

    def step(self, m: Message) -> None:
        """Handle one message. Raises ProposalDropped for a refused local
        proposal; never mutates ``m``."""
        mterm = m.term
        mtype = m.type
        if mterm == 0:
            pass  # local message
        elif mterm > self.term:
            if mtype == VOTE or mtype == PRE_VOTE:
                force = m.context == TRANSFER_CONTEXT
                in_lease = (self.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.election_timeout)
                if not force and in_lease:
                    # Heard from a leader within the minimum election
                    # timeout: do not update the term or vote (thesis 4.2.3).
                    return
            if mtype == PRE_VOTE:
                pass  # never change term on a pre-vote
            elif mtype == PRE_VOTE_RESP and not m.reject:
                pass  # the term is bumped once a quorum grants the pre-vote
            elif mtype in _FROM_LEADER_TYPES:
                self.become_follower(mterm, m.from_)
            else:
                self.become_follower(mterm, NONE)
        elif mterm < self.term:
            if (self.check_quorum or self.pre_vote) and (mtype == HEARTBEAT or mtype == APP):
                # A leader of an older term: tell it our term so it steps
                # down (with check_quorum/pre-vote we may never bump terms by
                # votes, so this is how a node stuck at a higher term rejoins).
                self._send(Message(APP_RESP, to=m.from_))
            elif mtype == PRE_VOTE:
                self._send(Message(PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            return

        if mtype == HUP:
            self._hup(Campaign.PRE_ELECTION if self.pre_vote else Campaign.ELECTION)
        elif mtype == VOTE or mtype == PRE_VOTE:
            self._handle_vote_request(m)
        else:
            self._step(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (self.vote == m.from_
                    or (self.vote == NONE and self.lead == NONE)
                    or (m.type == PRE_VOTE and m.term > self.term))
        resp_type = VOTE_RESP if m.type == VOTE else PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Learners answer too: a candidate that counts them as voters
            # knows of a promotion this node has not applied yet. A candidate
            # that knows them as learners ignores their votes.
            # The response carries the request's term (ahead of ours for a
            # pre-vote) so that the candidate does not drop it as stale.
            self._send(Message(resp_type, to=m.from_, term=m.term))
            if m.type == VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._send(Message(resp_type, to=m.from_, term=self.term, reject=True))

    # -- leader -----------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        mtype = m.type
        if mtype == APP_RESP:
            pr = self.progress.get(m.from_)
            if pr is not None:
                self._handle_append_response(m, pr)
            return
        if mtype == HEARTBEAT_RESP:
            pr = self.progress.get(m.from_)
            if pr is not None:
                self._handle_heartbeat_response(m, pr)
            return
        if mtype == BEAT:
            self._bcast_heartbeat(self.read_only.last_pending_ctx())
            return
        if mtype == CHECK_QUORUM:
            if not self._quorum_active():
                self.become_follower(self.term, NONE)
            for node_id, pr in self.progress.items():
                if node_id != self.id:
                    pr.recent_active = False
            return
        if mtype == PROP:
            self._leader_propose(m.entries, local=False)
            return
        if mtype == READ_INDEX:
            if len(self.voters) == 1:
                self._respond_read_index(m, self.log.committed)
            elif not self._committed_entry_in_current_term():
                # The commit index of a new leader may lag (thesis 6.4):
                # answer once an entry of this term is committed.
                self.pending_read_index_messages.append(m)
            else:
                self._send_read_index_response(m)
            return
        pr = self.progress.get(m.from_)
        if pr is None:
            return
        if mtype == SNAP_STATUS:
            if pr.state != SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the follower's answer (or a heartbeat) before the next append.
            pr.probes_paused = True
        elif mtype == UNREACHABLE:
            # Appends in flight were probably lost.
            if pr.state == REPLICATE:
                pr.become_probe()
        elif mtype == TRANSFER_LEADER:
            self._handle_transfer_leader(m.from_, pr)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        log = self.log
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Skip every index whose term is above the follower's term at
                # the hint: none of them can match (paper 5.3).
                next_probe, _ = log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(m.from_, pr)
            return
        index = m.index
        if pr.maybe_update(index) or (pr.match == index and pr.state == PROBE):
            state = pr.state
            if state == REPLICATE:
                pr.inflights.free_le(index)
            elif state == PROBE:
                pr.become_replicate()
            elif pr.match + 1 >= log.first_index():
                # SNAPSHOT, and the follower can now be caught up from the log.
                pr.become_probe()
                pr.become_replicate()
            if self._maybe_commit():
                self._release_pending_read_index()
                self._bcast_append()
            # Flow control may allow more (size-limited) appends now.
            while self._maybe_send_append(m.from_, pr):
                pass
            if m.from_ == self.lead_transferee and pr.match == log.last_index():
                self._send(Message(TIMEOUT_NOW, to=m.from_))

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.probes_paused = False
        # Also recovers a follower whose in-flight appends were all lost.
        self._maybe_send_append(m.from_, pr)
        if self.read_only.option != ReadOnlyOption.SAFE or not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or vote_result(self.voters, acks) is not VoteResult.WON:
            return
        for status in self.read_only.advance(m.context):
            self._respond_read_index(status.request, status.index)

    def _handle_transfer_leader(self, transferee: int, pr: Progress) -> None:
        if pr.is_learner:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = NONE
        if transferee == self.id:
            return
        # The transfer must finish within an election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.log.last_index():
            self._send(Message(TIMEOUT_NOW, to=transferee))
        else:
            self._maybe_send_append(transferee, pr)

    def _quorum_active(self) -> bool:
        active = 0
        for node_id in self.voters:
            if node_id == self.id or self.progress[node_id].recent_active:
                active += 1
        return active >= len(self.voters) // 2 + 1

    def _maybe_commit(self) -> bool:
        voters = self.voters
        if not voters:
            return False
        progress = self.progress
        matches = sorted([progress[v].match for v in voters], reverse=True)
        return self.log.maybe_commit(matches[len(matches) // 2], self.term)

    def self_ack(self) -> None:
        """The leader's own entries up to its durable index count as acked."""
        pr = self.progress.get(self.id)
        if pr is not None and pr.maybe_update(self.log.persisted_last_index()):
            if self._maybe_commit():
                self._release_pending_read_index()
                self._bcast_append()

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _check_can_propose(self) -> None:
        if self.id not in self.progress:
            raise ProposalDropped(ProposalDropped.NOT_MEMBER)
        if self.lead_transferee != NONE:
            raise ProposalDropped(ProposalDropped.TRANSFERRING,
                                  f"transferring leadership to {self.lead_transferee}")

    def _leader_propose(self, entries, local: bool) -> None:
        """Append proposed entries (term/index assigned here) and replicate."""
        self._check_can_propose()
        log = self.log
        first = log.last_index() + 1
        term = self.term
        out = []
        for i, entry in enumerate(entries):
            etype, data = entry[2], entry[3]
            if etype == CONF_CHANGE:
                if self.pending_conf_index > log.applied:
                    if local:
                        raise ProposalDropped(
                            ProposalDropped.CONF_CHANGE_PENDING,
                            f"possible unapplied conf change at index {self.pending_conf_index} "
                            f"(applied to {log.applied})")
                    # A forwarded one becomes an empty entry (its proposer
                    # times out), as etcd does.
                    etype, data = NORMAL, b""
                else:
                    self.pending_conf_index = first + i
            out.append(_new_tuple(Entry, (term, first + i, etype, data)))
        self._append_proposals(out)

    def propose_data(self, datas: list[bytes], etype: int = NORMAL) -> None:
        """Local proposals. Raises ProposalDropped if they cannot be accepted."""
        if self.state != LEADER:
            entries = [_new_tuple(Entry, (0, 0, etype, d)) for d in datas]
            self.step(Message(PROP, from_=self.id, entries=entries))
            return
        if etype == CONF_CHANGE:
            self._leader_propose([_new_tuple(Entry, (0, 0, etype, d)) for d in datas], True)
            return
        self._check_can_propose()
        first = self.log.last_index() + 1
        # One tuple per entry, built in C: this is the proposal hot path.
        self._append_proposals(list(map(_new_tuple, repeat(Entry), zip(
            repeat(self.term), range(first, first + len(datas)), repeat(NORMAL), datas))))

    def _append_proposals(self, entries: list[Entry]) -> None:
        if self.max_uncommitted_bytes < NO_LIMIT:
            size = payload_size(entries)
            if (self.uncommitted_size > 0 and size > 0
                    and self.uncommitted_size + size > self.max_uncommitted_bytes):
                raise ProposalDropped(ProposalDropped.UNCOMMITTED_LIMIT,
                                      f"{self.uncommitted_size} bytes uncommitted")
            self.uncommitted_size += size
        self.log.append(entries)
        self._bcast_append()

    def reduce_uncommitted_size(self, size: int) -> None:
        self.uncommitted_size = max(0, self.uncommitted_size - size)

    def _bcast_append(self) -> None:
        progress = self.progress
        for node_id in self.peer_ids:
            self._maybe_send_append(node_id, progress[node_id])

    def _maybe_send_append(self, to: int, pr: Progress) -> bool:
        """Send an append to ``to`` if its flow control allows; True if sent."""
        log = self.log
        last = log.last_index()
        commit = log.committed
        if not pr.should_send_append(last, commit):
            return False
        prev_index = pr.next - 1
        try:
            prev_term = log.term(prev_index)
        except CompactedError:
            return self._maybe_send_snapshot(to, pr)
        entries = ()
        if pr.can_send_entries(last):
            try:
                entries = log.entries(pr.next, self.max_msg_bytes)
            except CompactedError:
                return self._maybe_send_snapshot(to, pr)
        self.msgs.append(Message(APP, to, self.id, self.term, prev_term, prev_index, entries,
                                 commit))
        # Counting bytes costs a pass over the entries: only when limited.
        pr.sent_entries(len(entries), payload_size(entries)
                        if entries and self.max_inflight_bytes < NO_LIMIT else 0)
        pr.sent_commit(commit)
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snapshot = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        if snapshot.meta.index == 0:
            raise AssertionError("need a non-empty snapshot to catch up a follower")
        cs = snapshot.meta.conf_state
        if to not in cs.voters and to not in cs.learners:
            # The follower joined after this snapshot and would ignore it:
            # ask the application for a newer one (at its applied index,
            # which includes the follower's addition) and retry later.
            self.snapshot_requested = True
            return False
        pr.become_snapshot(snapshot.meta.index)
        self.msgs.append(Message(SNAP, to, self.id, self.term, snapshot=snapshot))
        return True

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        committed = self.log.committed
        progress = self.progress
        for node_id in self.peer_ids:
            pr = progress[node_id]
            # Never tell a follower to commit beyond what it is known to hold.
            commit = min(pr.match, committed)
            self.msgs.append(Message(HEARTBEAT, node_id, self.id, self.term, commit=commit,
                                     context=ctx))
            pr.sent_commit(commit)

    def _respond_read_index(self, request: Message, index: int) -> None:
        if request.from_ == NONE or request.from_ == self.id:
            self.read_states.append(ReadState(index, request.context))
        else:
            self._send(Message(READ_INDEX_RESP, to=request.from_, index=index,
                               context=request.context))

    def _send_read_index_response(self, m: Message) -> None:
        if self.read_only.option == ReadOnlyOption.SAFE:
            self.read_only.add_request(self.log.committed, m)
            self.read_only.recv_ack(self.id, m.context)
            self._bcast_heartbeat(m.context)
        else:
            self._respond_read_index(m, self.log.committed)

    def _release_pending_read_index(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._send_read_index_response(m)

    # -- candidate ------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        mtype = m.type
        my_response = PRE_VOTE_RESP if self.state == PRE_CANDIDATE else VOTE_RESP
        if mtype == PROP:
            raise ProposalDropped(ProposalDropped.NO_LEADER, f"term {self.term}")
        if mtype == APP:
            self.become_follower(m.term, m.from_)
            self._handle_append_entries(m)
        elif mtype == HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif mtype == SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif mtype == my_response:
            result = self._poll(m.from_, not m.reject)
            if result is VoteResult.WON:
                if self.state == PRE_CANDIDATE:
                    self._campaign(Campaign.ELECTION)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif result is VoteResult.LOST:
                # A pre-vote response carries the future term: keep ours.
                self.become_follower(self.term, NONE)

    # -- follower -------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        mtype = m.type
        if mtype == APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif mtype == HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif mtype == SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif mtype == PROP:
            if self.lead == NONE:
                raise ProposalDropped(ProposalDropped.NO_LEADER, f"term {self.term}")
            if self.disable_proposal_forwarding:
                raise ProposalDropped(ProposalDropped.FORWARDING_DISABLED)
            self._send(m.copy(to=self.lead))
        elif mtype == TRANSFER_LEADER or mtype == READ_INDEX:
            if self.lead != NONE:
                self._send(m.copy(to=self.lead))
        elif mtype == TIMEOUT_NOW:
            # A transfer skips the pre-vote: the leader asked for it.
            self._hup(Campaign.TRANSFER)
        elif mtype == READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append_entries(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self.msgs.append(Message(APP_RESP, m.from_, self.id, self.term, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new >= 0:
            self.msgs.append(Message(APP_RESP, m.from_, self.id, self.term, index=last_new))
            return
        # Hint the largest (index, term) that may match: every entry of ours
        # above it has a term above the leader's at m.index (paper 5.3).
        hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()),
                                                          m.log_term)
        self.msgs.append(Message(APP_RESP, m.from_, self.id, self.term, hint_term, m.index,
                                 reject=True, reject_hint=hint_index))

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self.msgs.append(Message(HEARTBEAT_RESP, m.from_, self.id, self.term, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        snapshot = m.snapshot
        if snapshot is not None and self._restore(snapshot):
            index = self.log.last_index()
        else:
            index = self.log.committed
        self.msgs.append(Message(APP_RESP, m.from_, self.id, self.term, index=index))

    def _restore(self, snapshot: Snapshot) -> bool:
        """Install ``snapshot`` in the log; False if it was ignored."""
        meta = snapshot.meta
        log = self.log
        if meta.index <= log.committed:
            return False
        if self.state != FOLLOWER:
            # Defense in depth: only followers receive snapshots.
            self.become_follower(self.term + 1, NONE)
            return False
        cs = meta.conf_state
        if self.id not in cs.voters and self.id not in cs.learners:
            return False
        if log.match_term(meta.index, meta.term):
            # We have that entry: just fast-forward the commit index.
            log.commit_to(meta.index)
            return False
        log.restore(snapshot)
        self.progress = {}
        self._set_membership(cs.voters, cs.learners)
        self._switch_to_config()
        return True

    # -- membership -----------------------------------------------------------

    def _set_membership(self, voters, learners) -> None:
        voters = tuple(sorted(voters))
        learners = tuple(sorted(learners))
        next_index = self.log.last_index() + 1
        old = self.progress
        progress: dict[int, Progress] = {}
        for node_id in sorted(voters + learners):
            is_learner = node_id in learners
            pr = old.get(node_id)
            if pr is None:
                # A new member counts as active: CheckQuorum must not depose
                # the leader before the member could answer.
                pr = Progress(next_index, Inflights(self.max_inflight, self.max_inflight_bytes),
                              is_learner, recent_active=True)
            pr.is_learner = is_learner
            progress[node_id] = pr
        self.progress = progress
        self.voters = voters
        self.learners = learners
        self.peer_ids = [node_id for node_id in progress if node_id != self.id]

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        voters = set(self.voters)
        learners = set(self.learners)
        node_id = cc.node_id
        if cc.type == ConfChangeType.ADD_NODE:
            learners.discard(node_id)
            voters.add(node_id)
        elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
            voters.discard(node_id)
            learners.add(node_id)
        elif cc.type == ConfChangeType.REMOVE_NODE:
            voters.discard(node_id)
            learners.discard(node_id)
        elif cc.type != ConfChangeType.UPDATE_NODE:
            raise ConfigError(f"unknown conf change type {cc.type}")
        if not voters:
            raise ConfigError(f"conf change {cc} would remove every voter")
        self._set_membership(voters, learners)
        return self._switch_to_config()

    def _switch_to_config(self) -> ConfState:
        cs = ConfState(self.voters, self.learners)
        pr = self.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == LEADER:
            # Removed or demoted while leading.
            if self.step_down_on_removal:
                self.become_follower(self.term, NONE)
            return cs
        if self.state != LEADER or not self.voters:
            return cs
        # A smaller quorum may commit more; new members get probed at once.
        if self._maybe_commit():
            self._bcast_append()
        else:
            for node_id in self.peer_ids:
                self._maybe_send_append(node_id, self.progress[node_id])
        if self.lead_transferee != NONE and self.lead_transferee not in self.voters:
            self.lead_transferee = NONE
        return cs
