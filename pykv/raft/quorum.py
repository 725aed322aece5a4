"""Majority quorum arithmetic (single configuration, no joint consensus).

Kept apart so that it can be checked against a brute-force count
(tests/raft/test_quorum.py), as etcd-io/raft's quorum/quick_test.go does.
"""

from __future__ import annotations

import enum
from typing import Iterable, Mapping


class VoteResult(enum.IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


def majority(n: int) -> int:
    """Votes needed among ``n`` voters."""
    return n // 2 + 1


def committed_index(voters: Iterable[int], match: Mapping[int, int]) -> int:
    """The largest index acknowledged by a majority of ``voters``.

    ``match`` maps a voter to the index it has acknowledged (missing: 0).
    With no voters the result is unbounded (``1 << 63``) so that an empty
    configuration never holds back a commit computed elsewhere (etcd does the
    same); callers with no voters do not commit.
    """
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    if not acked:
        return 1 << 63
    return acked[majority(len(acked)) - 1]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer grant."""
    voters = list(voters)
    if not voters:
        return VoteResult.WON
    granted = rejected = 0
    for v in voters:
        vote = votes.get(v)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING
