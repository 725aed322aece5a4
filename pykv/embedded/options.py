"""The options of ``pykv.open``, checked once at open."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable

from pykv.wal import log as wal_log

MIB = 1 << 20


@dataclass(frozen=True)
class Options:
    """What ``pykv.open(path, **options)`` accepts; every field has a default.

    ``sync``: True (the default): a write returns once it is on disk: its
    WAL record is fdatasynced (concurrent writers share each fdatasync). The
    store that applies it is made durable by checkpoints every
    ``checkpoint_interval_s`` (``pykv.mvcc.Store``'s checkpoint mode): after
    a power loss it reopens whole at its last checkpoint and the WAL replays
    the rest, as etcd does with bbolt. False: nothing is ever fsynced
    (etcd's ``--unsafe-no-fsync``): a write returns once the OS has it,
    which survives the process crashing but not the machine (an OS crash or
    power loss may lose recent writes or leave a store file that does not
    open).
    """

    sync: bool = True
    #: How often the store's applied state is fsynced and recorded (seconds;
    #: None: only at snapshots and close). Shorter: less WAL to replay after a
    #: power loss, and the store file grows less between checkpoints (pages a
    #: checkpoint references are not reused before the next one: each store
    #: commit copies ~40-60 KB of B-tree pages, so with ``commit_interval_s``
    #: None a stream of single puts at ~5k/s keeps a file of ~25-30 MB
    #: however little data it holds; ~1 MB with the default).
    checkpoint_interval_s: float | None = 0.1
    #: (``sync=True`` only) How long applied writes may wait to be committed
    #: to the store file together (seconds; None: one commit per write batch).
    #: Each commit copies the B-tree pages it touched, so fewer commits mean
    #: less to write and fsync and a smaller file; reads never wait for the
    #: interval (a read that follows a write has the commit made first).
    commit_interval_s: float | None = 0.02
    #: etcd's --quota-backend-bytes: past it, writes that add data fail with
    #: NoSpace ("database space exceeded") until space is freed.
    quota_bytes: int = 2 << 30
    #: etcd's --max-request-bytes: a larger put or txn raises ValueTooLarge.
    max_request_bytes: int = 3 * MIB // 2
    #: etcd's --max-txn-ops.
    max_txn_ops: int = 128
    #: Leases granted with a shorter TTL get this one (etcd: 2 s, which is
    #: 1.5 election timeouts; an embedded store has no elections to outlive).
    min_lease_ttl: int = 1
    #: Applied entries between snapshots (LMDB fsynced, the WAL before it
    #: released); etcd's --snapshot-count is 100,000 Raft entries, each of
    #: which is one request there and a whole group-commit batch here.
    snapshot_count: int = 10_000
    #: Size of a new WAL segment; a smaller one bounds the disk the WAL holds
    #: between snapshots, a larger one rotates less often.
    wal_segment_bytes: int = 16 * MIB
    #: How often lease expiry is checked (seconds); keys of an expired lease
    #: vanish within this much of its deadline.
    lease_check_interval_s: float = 0.05
    #: The clock leases run down by (seconds, monotonic); tests and
    #: simulations pass a fake one to expire leases without waiting.
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        positive = ("quota_bytes", "max_request_bytes", "max_txn_ops", "min_lease_ttl",
                    "snapshot_count", "lease_check_interval_s")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"option {name} must be a positive number, not {value!r}")
        for name in ("checkpoint_interval_s", "commit_interval_s"):
            interval = getattr(self, name)
            if interval is not None and (isinstance(interval, bool) or
                                         not isinstance(interval, (int, float)) or interval <= 0):
                raise ValueError(f"option {name} must be a positive number or None, "
                                 f"not {interval!r}")
        if not callable(self.clock):
            raise ValueError(f"option clock must be callable, not {self.clock!r}")
        if not isinstance(self.sync, bool):
            raise ValueError(f"option sync must be True or False, not {self.sync!r}")
        if self.max_request_bytes > wal_log.PAYLOAD_BYTES_MAX - 4096:
            raise ValueError(f"option max_request_bytes must be under "
                             f"{wal_log.PAYLOAD_BYTES_MAX - 4096} (the WAL's record limit)")
        segment = self.wal_segment_bytes
        if segment % 4096 or not 1 * MIB <= segment <= 1 << 32:
            raise ValueError("option wal_segment_bytes must be a multiple of 4096 "
                             f"between 1 MiB and 4 GiB, not {segment!r}")

    @classmethod
    def from_kwargs(cls, options: dict) -> Options:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"pykv.open() got unknown option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return cls(**options)
