"""Exceptions of the Raft core.

They stay inside ``pykv.raft`` (which imports nothing else of pykv); the
server maps them to etcd's errors, e.g. ``ProposalDropped(NO_LEADER)`` to
"etcdserver: no leader".
"""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error the Raft core raises on purpose."""


class ProposalDropped(RaftError):
    """A proposal (or read/transfer request) was refused; nothing was appended.

    ``reason`` is one of the constants below, so that the caller can map it to
    an etcd error without parsing text. The proposal may be retried later.
    """

    NO_LEADER = "no leader"
    TRANSFERRING = "leader transfer in progress"
    CONF_CHANGE_PENDING = "a configuration change is pending"
    UNCOMMITTED_LIMIT = "too many uncommitted entries"
    NOT_MEMBER = "this node is not a member of the cluster"
    FORWARDING_DISABLED = "proposal forwarding is disabled"

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        text = f"raft proposal dropped: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class CompactedError(RaftError):
    """The requested index is below the first index of the log."""

    def __init__(self, index: int, first: int):
        super().__init__(f"requested index is unavailable due to compaction "
                         f"(index {index}, first index {first})")
        self.index = index


class UnavailableError(RaftError):
    """The requested index is beyond the last index of the log."""

    def __init__(self, index: int, last: int):
        super().__init__(f"requested entry at index is unavailable (index {index}, "
                         f"last index {last})")
        self.index = index


class SnapOutOfDateError(RaftError):
    """A snapshot older than the one already held was offered."""

    def __init__(self, index: int, current: int):
        super().__init__(f"requested index is older than the existing snapshot "
                         f"(index {index}, snapshot index {current})")


class SnapshotTemporarilyUnavailable(RaftError):
    """Storage cannot produce a snapshot right now; the leader retries later."""


class DecodeError(RaftError, ValueError):
    """Bytes handed to a codec do not hold a valid record of that kind."""


class ConfigError(RaftError, ValueError):
    """A Config or a bootstrap request is invalid."""


class InvalidMessage(RaftError, ValueError):
    """A message from the network that no peer may send (e.g. a local type)."""
