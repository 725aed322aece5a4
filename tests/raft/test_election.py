"""Elections: the rules of the Raft paper's figure 2 (section 5.2, 5.4.1),
PreVote (thesis 9.6) and CheckQuorum (thesis 6.2)."""

from __future__ import annotations

import pytest

from pykv.raft import Config, MemoryStorage, Message, MessageType, RawNode, Role
from pykv.raft.types import Entry, HardState

from .harness import Cluster


def test_randomized_election_timeout_is_in_election_tick_to_twice_that():
    seen = set()
    for seed in range(40):
        c = Cluster([1, 2, 3], seed=seed)
        seen.add(c.nodes[1].raft.randomized_election_timeout)
    assert seen <= set(range(10, 20)) and len(seen) > 3


def test_follower_campaigns_after_election_timeout_and_wins_with_a_majority():
    c = Cluster([1, 2, 3])
    c.tick(1, 2 * 10)               # past any randomized timeout
    c.stabilize()
    assert c.role(1) == Role.LEADER
    assert {c.role(2), c.role(3)} == {Role.FOLLOWER}
    assert c.term(1) == c.term(2) == c.term(3) == 2


def test_candidate_persists_its_vote_before_sending_vote_requests():
    c = Cluster([1, 2, 3], pre_vote=False)
    c.nodes[1].campaign()
    rd = c.nodes[1].ready()
    assert rd.hard_state == HardState(2, 1, 3)
    assert rd.must_sync and not rd.can_send_before_persist
    assert sorted((m.type, m.to) for m in rd.messages) == [(MessageType.VOTE, 2),
                                                          (MessageType.VOTE, 3)]


def test_node_grants_at_most_one_vote_per_term():
    c = Cluster([1, 2, 3], pre_vote=False)
    c.nodes[1].campaign()
    c.nodes[3].campaign()
    c.process_ready(1)
    c.process_ready(3)
    votes_for = {}
    while c.queue:
        m = c.queue.popleft()
        if m.to == 2:
            c.nodes[2].step(m)
    rd = c.nodes[2].ready()
    for m in rd.messages:
        votes_for[m.to] = not m.reject
    assert votes_for == {1: True, 3: False}
    assert rd.hard_state.vote == 1


def test_vote_is_refused_to_a_candidate_with_a_stale_log():
    c = Cluster([1, 2, 3], pre_vote=False, check_quorum=False)
    c.elect(1)
    c.isolate(3)
    c.nodes[1].propose(b"x")
    c.stabilize()
    c.heal()
    # 3 missed the entry: 2 must refuse it (paper 5.4.1).
    c.nodes[3].campaign()
    c.process_ready(3)
    c.deliver(lambda m: m.to == 2)
    answer = [m for m in c.nodes[2].ready().messages if m.type == MessageType.VOTE_RESP]
    assert len(answer) == 1 and answer[0].reject


def test_candidate_becomes_follower_on_an_append_of_its_term():
    c = Cluster([1, 2, 3], pre_vote=False)
    c.nodes[2].campaign()            # term 2 candidate whose requests are lost
    c.process_ready(2)
    c.queue.clear()
    c.nodes[1].campaign()            # term 2 as well: 3 votes for 1, 2 refuses
    c.stabilize()
    assert c.role(1) == Role.LEADER and c.term(1) == 2
    assert c.role(2) == Role.FOLLOWER and c.status(2).leader == 1 and c.term(2) == 2


def test_follower_rejects_stale_term():
    c = Cluster([1, 2, 3])
    c.elect(1)
    term = c.term(2)
    stale = Message(MessageType.APP, to=2, from_=3, term=term - 1, log_term=1, index=3,
                    entries=[Entry(term - 1, 4, 0, b"stale")], commit=4)
    c.nodes[2].step(stale)
    rd = c.nodes[2].ready()
    assert rd.entries == []
    # It tells the stale leader its newer term (check_quorum / pre-vote rule).
    assert [(m.type, m.to, m.term) for m in rd.messages] == [(MessageType.APP_RESP, 3, term)]
    c.nodes[2].advance(rd)


def test_single_voter_elects_itself():
    c = Cluster([1])
    c.elect(1)
    c.nodes[1].propose(b"a")
    c.stabilize()
    assert c.applied_data(1) == [b"a"]


def test_prevote_does_not_disrupt_a_stable_leader():
    c = Cluster([1, 2, 3])
    c.elect(1)
    term = c.term(1)
    c.isolate(3)
    c.tick(3, 100)                   # many election timeouts alone
    c.stabilize()
    assert c.term(3) == term        # pre-votes never bump the term
    assert c.role(3) == Role.PRE_CANDIDATE
    c.heal()
    c.tick_all(3)                    # heartbeats reach 3 again
    assert c.role(1) == Role.LEADER and c.term(1) == term
    assert c.status(3).leader == 1


def test_without_prevote_a_rejoining_node_forces_a_new_term():
    c = Cluster([1, 2, 3], pre_vote=False, check_quorum=False)
    c.elect(1)
    term = c.term(1)
    c.isolate(3)
    c.tick(3, 40)
    c.stabilize()
    assert c.term(3) > term
    c.heal()
    c.tick_all(40)
    assert c.term(1) > term          # the disruption PreVote prevents


def test_check_quorum_steps_a_partitioned_leader_down():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.isolate(1)
    for _ in range(2 * 10):
        c.tick(1)
        c.stabilize()
    assert c.role(1) == Role.FOLLOWER and c.status(1).leader == 0


def test_voters_in_lease_ignore_a_disruptive_candidate():
    c = Cluster([1, 2, 3], pre_vote=False)
    c.elect(1)
    term = c.term(1)
    # 3 campaigns although the leader is alive (e.g. a clock jump).
    c.nodes[3].campaign()
    c.stabilize()
    assert c.role(1) == Role.LEADER and c.term(1) == term
    assert c.term(2) == term


def test_stale_leader_after_partition_steps_down_and_loses_uncommitted_entries():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.isolate(1)
    c.nodes[1].propose(b"lost")      # cannot commit: no quorum
    c.stabilize()
    for _ in range(30):
        c.tick(2)
        c.tick(3)
        c.stabilize()
    new_leader = max((2, 3), key=c.term)
    assert c.role(new_leader) == Role.LEADER
    assert c.term(new_leader) > c.term(1)
    c.nodes[new_leader].propose(b"kept")
    c.stabilize()
    c.heal()
    c.tick_all(3)
    assert c.role(1) == Role.FOLLOWER
    assert c.log_terms(1) == c.log_terms(new_leader)
    for node_id in (1, 2, 3):
        assert c.applied_data(node_id) == [b"kept"]


def test_learner_does_not_campaign():
    c = Cluster([1, 2], learners=[3])
    c.tick(3, 100)
    c.stabilize()
    assert c.role(3) == Role.FOLLOWER and c.term(3) == 1


def test_learner_votes_are_not_counted_by_a_candidate():
    c = Cluster([1, 2], learners=[3], pre_vote=False)
    c.isolate(2)
    c.nodes[1].campaign()
    c.stabilize()
    # 3 granted its vote but is a learner in 1's configuration: no majority.
    assert c.role(1) == Role.CANDIDATE


def test_restart_restores_term_vote_log_and_commit_exactly():
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[1].propose_batch([b"a", b"b"])
    c.stabilize()
    before = c.status(2)
    log_before = c.log_terms(2)
    c.restart(2)
    after = c.status(2)
    assert (after.term, after.vote, after.commit) == (before.term, before.vote, before.commit)
    assert c.log_terms(2) == log_before
    # Membership comes back as the committed conf changes are re-applied.
    c.stabilize()
    assert c.status(2).conf_state == before.conf_state
    # The restarted node re-delivers committed entries after its snapshot.
    assert c.applied_data(2)[-2:] == [b"a", b"b"]


def test_invalid_config_is_refused_with_a_clear_error():
    from pykv.raft import ConfigError, ReadOnlyOption
    with pytest.raises(ConfigError, match="id"):
        RawNode(Config(0), MemoryStorage())
    with pytest.raises(ConfigError, match="election tick"):
        RawNode(Config(1, election_tick=1), MemoryStorage())
    with pytest.raises(ConfigError, match="check_quorum"):
        RawNode(Config(1, check_quorum=False, read_only_option=ReadOnlyOption.LEASE_BASED),
                MemoryStorage())
