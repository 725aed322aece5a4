"""Quorum arithmetic checked against a brute-force definition."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings, strategies as st

from pykv.raft.quorum import VoteResult, committed_index, majority, vote_result

# The machine is shared and loaded: a slow example is not a failure.
no_deadline = settings(deadline=None)
voter_sets = st.lists(st.integers(1, 9), unique=True, min_size=1, max_size=7)


@no_deadline
@given(voter_sets, st.data())
def test_committed_index_is_the_largest_index_a_majority_has(voters, data):
    match = {v: data.draw(st.integers(0, 20)) for v in voters}
    need = majority(len(voters))
    brute = max(min(match[v] for v in group) for group in combinations(voters, need))
    assert committed_index(voters, match) == brute


@no_deadline
@given(voter_sets, st.data())
def test_vote_result_matches_counting(voters, data):
    votes = {v: data.draw(st.sampled_from([True, False, None])) for v in voters}
    votes = {v: b for v, b in votes.items() if b is not None}
    granted = sum(votes.values())
    missing = len(voters) - len(votes)
    need = majority(len(voters))
    expected = (VoteResult.WON if granted >= need
                else VoteResult.LOST if granted + missing < need else VoteResult.PENDING)
    assert vote_result(voters, votes) == expected


def test_votes_of_non_voters_do_not_count():
    assert vote_result([1, 2, 3], {1: True, 4: True, 5: True}) == VoteResult.PENDING
