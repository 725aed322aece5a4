"""Learners, one-at-a-time membership changes, leader transfer and reads."""

from __future__ import annotations

import pytest

from pykv.raft import (
    ConfChange, ConfChangeType as CC, ConfState, ProposalDropped, ReadOnlyOption, Role,
)

from .harness import Cluster


def change(node, kind, node_id):
    node.propose_conf_change(ConfChange(kind, node_id))


def transfer_until_elected(c: Cluster, leader: int, target: int) -> None:
    """Hand leadership from ``leader`` to an up-to-date ``target`` and stop
    as soon as it is elected, before its first entry is replicated."""
    c.nodes[leader].transfer_leader(target)
    c.process_ready(leader)
    c.deliver()                          # MsgTimeoutNow
    c.process_ready(target)
    c.deliver()                          # vote requests (no pre-vote on transfer)
    for node_id in sorted(c.nodes):
        if node_id != target:
            c.process_ready(node_id)
    c.deliver()                          # votes
    assert c.role(target) == Role.LEADER


def test_learner_never_counts_toward_commit():
    c = Cluster([1, 2], learners=[3])
    c.elect(1)
    c.isolate(2)
    c.nodes[1].propose(b"x")
    c.stabilize()
    # The learner has the entry, but 1 + learner is no majority of {1, 2}.
    assert c.nodes[3].raft.log.last_index() == c.nodes[1].raft.log.last_index()
    assert c.applied_data(1) == []
    c.heal()
    c.tick_all(2)
    assert c.applied_data(1) == c.applied_data(3) == [b"x"]


def test_learner_is_promoted_by_add_node_and_then_counts():
    c = Cluster([1, 2], learners=[3])
    c.elect(1)
    change(c.nodes[1], CC.ADD_NODE, 3)
    c.stabilize()
    assert c.conf_states[1] == ConfState((1, 2, 3), ())
    assert c.conf_states[3] == ConfState((1, 2, 3), ())
    c.isolate(2)
    c.nodes[1].propose(b"x")
    c.stabilize()
    assert c.applied_data(1) == [b"x"]  # 1 and 3 are a majority of three


def test_added_node_catches_up_from_an_empty_log():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose_batch([b"a", b"b"])
    c.stabilize()
    c.add_node(4)                       # starts empty, no bootstrap
    change(c.nodes[1], CC.ADD_LEARNER_NODE, 4)
    c.stabilize()
    c.tick_all(2)
    assert c.applied_data(4) == [b"a", b"b"]
    assert c.conf_states[4] == ConfState((1, 2, 3), (4,))
    change(c.nodes[1], CC.ADD_NODE, 4)
    c.stabilize()
    assert c.conf_states[4] == ConfState((1, 2, 3, 4), ())


def test_second_conf_change_is_refused_while_one_is_pending():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.isolate(2)
    c.isolate(3)
    change(c.nodes[1], CC.REMOVE_NODE, 3)   # cannot commit yet
    with pytest.raises(ProposalDropped) as info:
        change(c.nodes[1], CC.ADD_NODE, 4)
    assert info.value.reason == ProposalDropped.CONF_CHANGE_PENDING
    c.heal()
    c.tick_all(2)
    change(c.nodes[1], CC.ADD_LEARNER_NODE, 4)  # the first one is applied now


def test_new_leader_refuses_conf_changes_until_its_first_entry_is_applied():
    # The fix for Ongaro's single-server bug: a leader may not change the
    # membership before an entry of its own term commits.
    c = Cluster([1, 2, 3])
    c.elect(1)
    transfer_until_elected(c, 1, 2)
    assert c.role(2) == Role.LEADER
    with pytest.raises(ProposalDropped) as info:
        change(c.nodes[2], CC.REMOVE_NODE, 1)
    assert info.value.reason == ProposalDropped.CONF_CHANGE_PENDING
    c.stabilize()
    change(c.nodes[2], CC.REMOVE_NODE, 1)


def test_removed_leader_steps_down_and_the_rest_elect_a_new_one():
    c = Cluster([1, 2, 3])
    c.elect(1)
    change(c.nodes[1], CC.REMOVE_NODE, 1)
    c.stabilize()
    assert c.role(1) == Role.FOLLOWER
    assert c.conf_states[2] == ConfState((2, 3), ())
    with pytest.raises(ProposalDropped):
        c.nodes[1].propose(b"x")
    for _ in range(30):
        c.tick(2)
        c.tick(3)
        c.stabilize()
    leader = c.leader()
    assert leader in (2, 3)
    c.nodes[leader].propose(b"after")
    c.stabilize()
    assert c.applied_data(2)[-1] == c.applied_data(3)[-1] == b"after"


def test_removed_follower_no_longer_counts():
    c = Cluster([1, 2, 3])
    c.elect(1)
    change(c.nodes[1], CC.REMOVE_NODE, 3)
    c.stabilize()
    c.isolate(3)
    c.nodes[1].propose(b"x")
    c.stabilize()
    assert c.applied_data(1) == [b"x"] and c.status(1).progress.keys() == {1, 2}


def test_leader_transfer_catches_the_target_up_then_it_times_out_at_once():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.cut(1, 3)
    c.nodes[1].propose(b"x")
    c.stabilize()
    c.heal()
    c.nodes[1].transfer_leader(3)
    with pytest.raises(ProposalDropped) as info:
        c.nodes[1].propose(b"during")
    assert info.value.reason == ProposalDropped.TRANSFERRING
    for _ in range(3):                   # a heartbeat round restarts replication to 3
        c.tick(1)
        c.stabilize()
        if c.role(3) == Role.LEADER:
            break
    assert c.role(3) == Role.LEADER and c.role(1) == Role.FOLLOWER
    assert c.applied_data(3) == [b"x"]


def test_leader_transfer_to_an_unreachable_node_is_abandoned_after_an_election_timeout():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.isolate(3)
    c.nodes[1].transfer_leader(3)
    c.stabilize()
    for _ in range(10):
        c.tick(1)
        c.stabilize()
    assert c.role(1) == Role.LEADER and c.status(1).lead_transferee == 0
    c.nodes[1].propose(b"ok")


def test_transfer_request_on_a_follower_is_forwarded_to_the_leader():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[2].transfer_leader(2)
    c.stabilize()
    assert c.role(2) == Role.LEADER


def test_read_index_needs_a_quorum_round_and_returns_the_commit_index():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"x")
    c.stabilize()
    commit = c.commit(1)
    c.isolate(1)
    c.nodes[1].read_index(b"r1")
    c.stabilize()
    assert c.read_states[1] == []        # no quorum heard: no answer
    c.heal()
    c.tick(1)
    c.stabilize()
    assert [(rs.index, rs.request_ctx) for rs in c.read_states[1]] == [(commit, b"r1")]


def test_read_index_on_a_follower_goes_through_the_leader():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"x")
    c.stabilize()
    c.nodes[2].read_index(b"f1")
    c.stabilize()
    assert [(rs.index, rs.request_ctx) for rs in c.read_states[2]] == [(c.commit(1), b"f1")]


def test_read_index_waits_for_the_new_leader_to_commit_in_its_term():
    c = Cluster([1, 2, 3])
    c.elect(1)
    transfer_until_elected(c, 1, 2)
    assert c.role(2) == Role.LEADER
    c.nodes[2].read_index(b"early")
    c.process_ready(2)
    assert c.read_states[2] == []        # its empty entry is not committed yet
    c.stabilize()
    assert [rs.request_ctx for rs in c.read_states[2]] == [b"early"]
    assert c.read_states[2][0].index == c.commit(2)


def test_read_index_without_leader_is_refused():
    c = Cluster([1, 2, 3])
    with pytest.raises(ProposalDropped) as info:
        c.nodes[1].read_index(b"r")
    assert info.value.reason == ProposalDropped.NO_LEADER


def test_lease_based_read_answers_without_a_round_trip():
    c = Cluster([1, 2, 3], read_only_option=ReadOnlyOption.LEASE_BASED)
    c.elect(1)
    c.nodes[1].read_index(b"lease")
    rd = c.nodes[1].ready()
    assert [rs.request_ctx for rs in rd.read_states] == [b"lease"] and rd.messages == []
    c.nodes[1].advance(rd)


def test_single_node_read_index_is_answered_at_once():
    c = Cluster([1])
    c.elect(1)
    c.nodes[1].read_index(b"solo")
    c.stabilize()
    assert [rs.request_ctx for rs in c.read_states[1]] == [b"solo"]


def test_member_added_after_the_latest_snapshot_makes_the_leader_ask_for_a_newer_one():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose(b"a")
    c.stabilize()
    storage = c.storages[1]
    applied = c.status(1).applied
    storage.create_snapshot(applied, ConfState((1, 2, 3)), b"old")
    storage.compact(applied)
    c.add_node(4)
    change(c.nodes[1], CC.ADD_LEARNER_NODE, 4)
    c.tick_all(3)
    # The only snapshot predates node 4, which would ignore it: none is sent.
    assert c.snapshot_requests and set(c.snapshot_requests) == {1}
    assert c.storages[4].snapshot().meta.index == 0
    applied = c.status(1).applied
    storage.create_snapshot(applied, c.conf_states[1], b"new")
    storage.compact(applied)
    c.tick_all(3)
    assert c.storages[4].snapshot().data == b"new"
    assert c.conf_states[4] == ConfState((1, 2, 3), (4,))
