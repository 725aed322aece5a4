"""Log replication: paper sections 5.3 and 5.4.2, flow control, snapshots,
proposal forwarding and the persistence contract."""

from __future__ import annotations

import pytest

from pykv.raft import (
    ConfState, Entry, HardState, MemoryStorage, Message, MessageType, ProposalDropped, Role,
)
from pykv.raft.types import EntryType

from .harness import Cluster


def test_new_leader_appends_an_empty_entry_of_its_term():
    c = Cluster([1, 2, 3])
    c.elect(1)
    last = c.nodes[1].raft.log.unstable.entries or c.storages[1].entries(4, 5)
    assert c.log_terms(1)[-1] == (4, 2)
    assert c.storages[1].entries(4, 5) == [Entry(2, 4, EntryType.NORMAL, b"")]
    assert last


def test_committed_entries_are_applied_in_order_on_every_node():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose_batch([b"a", b"b"])
    c.nodes[2].propose(b"c")         # forwarded to the leader
    c.stabilize()
    for node_id in (1, 2, 3):
        assert c.applied_data(node_id) == [b"a", b"b", b"c"]


def test_follower_without_leader_refuses_proposals():
    c = Cluster([1, 2, 3])
    with pytest.raises(ProposalDropped) as info:
        c.nodes[2].propose(b"x")
    assert info.value.reason == ProposalDropped.NO_LEADER


def test_proposal_forwarding_can_be_disabled():
    c = Cluster([1, 2, 3], disable_proposal_forwarding=True)
    c.elect(1)
    with pytest.raises(ProposalDropped) as info:
        c.nodes[2].propose(b"x")
    assert info.value.reason == ProposalDropped.FORWARDING_DISABLED


def test_sole_voter_commits_its_entries_in_the_ready_that_persists_them():
    # A sole voter is its own quorum: the Ready that persists an entry also
    # hands it out as committed, with the commit index in the same hard state,
    # so both reach the disk together. Applying it only after that Ready is
    # durable (the contract's step 4) is what etcd #14370 got wrong.
    c = Cluster([1])
    c.elect(1)
    c.nodes[1].propose(b"w")
    rd = c.nodes[1].ready()
    assert [e.data for e in rd.entries] == [b"w"]
    assert rd.committed_entries == rd.entries
    assert rd.hard_state.commit == rd.entries[-1].index
    c.storages[1].append(rd.entries)
    c.storages[1].set_hard_state(rd.hard_state)
    c.nodes[1].advance(rd)
    assert not c.nodes[1].has_ready()  # no second Ready for the same entry
    assert c.nodes[1].status().applied == rd.entries[-1].index


def test_sole_voter_tells_learners_of_a_commit_only_after_it_is_durable():
    c = Cluster([1], learners=[2])
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"w")
    rd = c.nodes[1].ready()
    index = rd.entries[-1].index
    assert [e.index for e in rd.committed_entries] == [index]
    # The append may go to the learner before the leader persists (thesis
    # 10.2.1), but it must not announce the commit of an entry that a crash
    # of the leader right now would lose.
    appends = [m for m in rd.messages if m.type == MessageType.APP]
    assert appends and all(m.commit < index for m in appends)
    c.storages[1].append(rd.entries)
    c.storages[1].set_hard_state(rd.hard_state)
    c.nodes[1].advance(rd)
    c._send(rd.messages)
    c.stabilize()
    assert c.applied_data(2) == [b"w"]


def test_leader_may_send_appends_before_persisting():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"w")
    rd = c.nodes[1].ready()
    assert rd.entries and rd.can_send_before_persist
    assert {m.type for m in rd.messages} == {MessageType.APP}
    c.nodes[1].advance(rd)  # (storage not even updated: nothing counts on it)


def test_leader_does_not_count_itself_before_its_entries_are_durable():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"w")
    rd = c.nodes[1].ready()
    c._send(rd.messages)
    # Both followers acknowledge before the leader's own write completes.
    c.deliver()
    for follower in (2, 3):
        c.process_ready(follower)
    c.deliver()
    index = rd.entries[-1].index
    assert c.commit(1) == index      # two followers are a quorum on their own
    c.storages[1].append(rd.entries)
    c.nodes[1].advance(rd)


def test_follower_sends_acknowledgments_only_with_a_ready_to_persist():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"w")
    c.process_ready(1)
    c.deliver()
    rd = c.nodes[2].ready()
    assert rd.entries and rd.must_sync and not rd.can_send_before_persist
    assert [m.type for m in rd.messages] == [MessageType.APP_RESP]
    c.storages[2].append(rd.entries)
    c.nodes[2].advance(rd)


def test_only_entries_of_the_current_term_are_committed_by_counting():
    # Raft paper figure 8: an entry of an earlier term replicated on a
    # majority is not committed by that alone.
    c = Cluster([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False)
    c.elect(1)
    c.isolate(1)
    c.nodes[1].propose(b"old")        # term 2, only on 1
    c.stabilize()
    old_index = c.log_terms(1)[-1][0]
    # 5 wins term 3 with the votes of 3 and 4, but its appends are lost.
    c.heal()
    c.isolate(1)
    c.cut(5, 2)
    c.nodes[5].campaign()
    c.stabilize(keep=lambda m: m.type != MessageType.APP)
    assert c.role(5) == Role.LEADER and c.term(5) == 3
    # 1 restarts and wins term 4 with the votes of 2 and 3 (4, 5 cut off).
    c.restart(1)
    c.stabilize()
    c.heal()
    for a in (4, 5):
        for b in (1, 2, 3):
            c.cut(a, b)
            c.cut(b, a)
    while c.role(1) != Role.LEADER:
        c.nodes[1].campaign()
        # Appends reach 2 and 3, every acknowledgment is held back.
        c.stabilize(keep=lambda m: m.type != MessageType.APP_RESP or m.reject)
    assert c.term(1) == 4
    assert all((old_index, 2) in c.log_terms(n) for n in (1, 2, 3))
    # "old" is on a majority (1, 2, 3) but of term 2: counting commits nothing.
    leader = c.nodes[1].raft
    leader.progress[2].match = leader.progress[3].match = old_index
    assert not leader._maybe_commit()
    assert c.commit(1) < old_index
    # Once the term-4 entry is acknowledged, both commit.
    c.tick(1)
    c.stabilize()
    assert c.commit(1) > old_index
    assert c.applied_data(1) == [b"old"]


def test_follower_truncates_a_conflicting_uncommitted_tail():
    c = Cluster([1, 2, 3, 4, 5])
    c.elect(1)
    # Follower 2 takes entries from 1 that never commit: the acknowledgments
    # are lost and the others never see them.
    for other in (3, 4, 5):
        c.cut(1, other)
    c.nodes[1].propose_batch([b"x1", b"x2", b"x3"])
    c.stabilize(keep=lambda m: not (m.type == MessageType.APP_RESP and not m.reject))
    assert c.log_terms(2) == c.log_terms(1) and c.commit(1) < c.log_terms(1)[-1][0]
    # 3, 4, 5 elect a leader among themselves and commit "y" over the same indexes.
    c.heal()
    c.isolate(1)
    c.isolate(2)
    for _ in range(40):
        for node_id in (3, 4, 5):
            c.tick(node_id)
        c.stabilize()
    leader = c.leader()
    assert leader in (3, 4, 5)
    c.nodes[leader].propose(b"y")
    c.stabilize()
    c.heal()
    c.tick_all(3)
    for node_id in (1, 2, 3, 4, 5):
        assert c.applied_data(node_id) == [b"y"]
        assert c.log_terms(node_id) == c.log_terms(leader)


def test_reject_hint_skips_a_divergent_tail_in_one_round_per_term():
    c = Cluster([1, 2, 3])
    c.elect(1)
    # 1 appends 50 entries at term 2 that only it has.
    c.isolate(1)
    for i in range(50):
        c.nodes[1].propose(b"u%d" % i)
    c.stabilize()
    c.heal()
    c.isolate(1)
    for _ in range(40):
        c.tick(2)
        c.tick(3)
        c.stabilize()
    leader = c.leader()
    assert leader in (2, 3)
    c.heal()
    c.queue.clear()
    c.tick(leader, 1)                # a heartbeat reaches 1, which answers
    rounds = 0
    while c.log_terms(1) != c.log_terms(leader):
        rounds += 1
        c.round()                    # readies, then one delivery
        assert rounds < 8, "backtracking took one round per entry"


def test_inflight_appends_are_bounded_by_max_inflight_msgs():
    c = Cluster([1, 2, 3], max_inflight_msgs=3)
    c.elect(1)
    c.cut(1, 2)                       # appends to 2 are lost, so never acknowledged
    for i in range(10):
        c.nodes[1].propose(b"p%d" % i)
        c.process_ready(1)
    sent_to_2 = [m for m in c.dropped if m.to == 2 and m.type == MessageType.APP and m.entries]
    assert len(sent_to_2) == 3
    assert c.status(1).progress[2].paused


def test_appends_are_cut_to_max_size_per_msg():
    c = Cluster([1, 2, 3], max_size_per_msg=1000)
    c.elect(1)
    c.nodes[1].propose_batch([b"v" * 300] * 10)
    msgs = c.process_ready(1)
    for m in msgs:
        assert m.type == MessageType.APP and 1 <= len(m.entries) <= 3
    c.stabilize()
    assert len(c.applied_data(2)) == 10


def test_uncommitted_size_limit_drops_proposals_until_commits_catch_up():
    c = Cluster([1, 2, 3], max_uncommitted_entries_size=1000)
    c.elect(1)
    c.isolate(1)
    c.nodes[1].propose(b"x" * 600)
    with pytest.raises(ProposalDropped) as info:
        c.nodes[1].propose(b"y" * 600)
    assert info.value.reason == ProposalDropped.UNCOMMITTED_LIMIT
    c.heal()
    c.stabilize()
    c.tick_all(1)
    c.nodes[1].propose(b"y" * 600)   # the first one committed: room again


def test_follower_behind_the_compacted_log_gets_a_snapshot():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.isolate(3)
    for i in range(20):
        c.nodes[1].propose(b"e%d" % i)
    c.stabilize()
    for node_id in (1, 2):
        storage = c.storages[node_id]
        applied = c.status(node_id).applied
        storage.create_snapshot(applied, ConfState((1, 2, 3)), b"image@%d" % applied)
        storage.compact(applied)
    c.heal()
    c.tick_all(3)
    assert ("snapshot", c.storages[1].snapshot().meta.index) in c.applied[3]
    assert c.storages[3].snapshot().data == c.storages[1].snapshot().data
    c.nodes[1].propose(b"after")
    c.stabilize()
    assert c.applied_data(3)[-1] == b"after"
    assert c.status(1).progress[3].state.name == "REPLICATE"


def test_failed_snapshot_is_retried():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.isolate(3)
    c.nodes[1].propose(b"a")
    c.stabilize()
    storage = c.storages[1]
    applied = c.status(1).applied
    storage.create_snapshot(applied, ConfState((1, 2, 3)), b"img")
    storage.compact(applied)
    c.heal()
    no_snapshots = lambda m: m.type != MessageType.SNAP  # noqa: E731
    for _ in range(3):
        c.tick(1)
        c.stabilize(keep=no_snapshots)
    assert any(m.type == MessageType.SNAP for m in c.dropped)
    assert c.storages[3].snapshot().meta.index == 0
    c.tick_all(3)
    assert c.storages[3].snapshot().meta.index == applied


def test_duplicated_and_reordered_messages_change_nothing():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose_batch([b"a", b"b"])
    msgs = list(c.process_ready(1))
    c.deliver()
    c.nodes[1].propose(b"c")
    msgs += c.process_ready(1)
    # Redeliver everything twice, newest first.
    for m in reversed(msgs + msgs):
        c.nodes[m.to].step(m)
    c.stabilize()
    for node_id in (1, 2, 3):
        assert c.applied_data(node_id) == [b"a", b"b", b"c"]


def test_ready_reports_must_sync_only_for_entries_term_or_vote():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"a")
    c.stabilize()
    # A heartbeat that only raises the commit index needs no sync.
    c.tick(1)
    c.process_ready(1)
    c.deliver()
    rd = c.nodes[2].ready()
    assert not rd.must_sync and not rd.entries
    c.nodes[2].advance(rd)


def test_ready_must_be_advanced_before_the_next():
    c = Cluster([1, 2, 3])
    c.nodes[1].campaign()
    rd = c.nodes[1].ready()
    with pytest.raises(RuntimeError):
        c.nodes[1].ready()
    c.nodes[1].advance(rd)


def test_local_message_types_from_the_network_are_refused():
    from pykv.raft import InvalidMessage
    c = Cluster([1, 2, 3])
    with pytest.raises(InvalidMessage):
        c.nodes[1].step(Message(MessageType.HUP, to=1, from_=2))


def test_bootstrap_needs_an_empty_storage():
    from pykv.raft import Config, ConfigError, RawNode
    s = MemoryStorage()
    s.append([Entry(1, 1, 0, b"")])
    s.set_hard_state(HardState(1, 0, 0))
    with pytest.raises(ConfigError, match="not empty"):
        RawNode(Config(1), s).bootstrap([1])


def test_unreachable_follower_goes_back_to_probing_and_recovers():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"a")
    c.stabilize()
    assert c.status(1).progress[2].state.name == "REPLICATE"
    c.nodes[1].report_unreachable(2)
    assert c.status(1).progress[2].state.name == "PROBE"
    c.nodes[1].propose(b"b")
    c.stabilize()
    c.tick_all(2)
    assert c.status(1).progress[2].state.name == "REPLICATE"
    assert c.applied_data(2) == [b"a", b"b"]
