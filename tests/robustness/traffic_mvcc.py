"""Traffic beyond single-key reads and writes: compaction, reads at an
explicit revision (stale reads) and leases, mixed into the `Client`'s.

Client 0 compacts now and then, at a revision it has seen and the
watcher has already logged (so the write log stays complete). Every client
reads keys at past revisions, some below the compact revision on purpose;
and grants leases with its own IDs, puts keys attached to them (sometimes
to one it revoked already; sometimes a key only that lease uses, which
stays until the lease is revoked or expires) and revokes them.
"""

from __future__ import annotations

import threading

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.robustness.history import (
    COMPACT,
    LEASE_GRANT,
    LEASE_PUT,
    LEASE_REVOKE,
    STALE_GET,
    Operation,
)
from tests.robustness.traffic import MIX, Client, _first
from tests.robustness.watcher import Watcher

COMPACTION_MIX = {STALE_GET: 15}
COMPACTOR_MIX = {COMPACT: 4}
LEASE_MIX = {LEASE_GRANT: 3, LEASE_PUT: 8, LEASE_REVOKE: 1}
# Some expire during a run (their keys then go without a revoke), some outlive it.
LEASE_TTLS_S = (3, 60)
LEASE_KEYS = 3


class Shared:
    """What the clients know together: the highest compaction asked for."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.lock = threading.Lock()
        self.compact_revision = 0


class MvccClient(Client):
    def __init__(self, *args, shared: Shared, compaction: bool, leases: bool,
                 lease_keys: list[bytes], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shared = shared
        self.lease_keys = lease_keys
        self.mix = dict(MIX)
        if compaction:
            self.mix |= COMPACTION_MIX | (COMPACTOR_MIX if self.number == 0 else {})
        if leases:
            self.mix |= LEASE_MIX
        self.lease_sequence = 0
        self.live_leases: list[int] = []     # granted (or maybe granted) and not revoked
        self.revoked_leases: list[int] = []  # revoke asked for
        self.lease_stub: rpc_pb2_grpc.LeaseStub | None = None
        self.lease_channel = None  # the channel lease_stub was made on
        self.put_lease = 0  # the lease of the LEASE_PUT being sent

    def request(self, kind: str, key: bytes) -> Operation:
        if kind in (LEASE_PUT, LEASE_REVOKE) and not self.live_leases:
            kind = LEASE_GRANT
        if kind == LEASE_PUT:
            revoked = self.revoked_leases and self.rng.random() < 0.1
            self.put_lease = self.rng.choice(self.revoked_leases if revoked else self.live_leases)
            # A key of the lease's own outlives it unless revoked: its
            # expiry is seen. The shared keys move between leases.
            key = (self.lease_keys[0] + b"-own-%d" % self.put_lease if self.rng.random() < 0.3
                   else self.rng.choice(self.lease_keys))
        elif kind in (COMPACT, LEASE_GRANT, LEASE_REVOKE):
            key = b""
        return super().request(kind, key)

    def fields(self, kind: str, key: bytes) -> dict:
        if kind == STALE_GET:
            low = max(1, self.shared.compact_revision - 3)
            return {"at_revision": self.rng.randint(low, max(low, self.highest_revision))}
        if kind == COMPACT:
            with self.shared.lock:
                low = max(1, self.shared.compact_revision + 1)
                high = min(self.highest_revision, self.shared.watcher.last_revision)
                # Now and then a revision already compacted: a definite failure.
                revision = self.rng.randint(low, high) if high >= low else low - 1
                revision = max(1, revision)
                self.shared.compact_revision = max(self.shared.compact_revision, revision)
            return {"at_revision": revision, "physical": self.rng.random() < 0.3}
        if kind == LEASE_GRANT:
            self.lease_sequence += 1
            lease = self.number * 100_000 + self.lease_sequence
            self.live_leases.append(lease)
            return {"lease": lease, "ttl": self.rng.choice(LEASE_TTLS_S)}
        if kind == LEASE_PUT:
            return {"lease": self.put_lease, "value": self.unique_value()}
        if kind == LEASE_REVOKE:
            lease = self.rng.choice(self.live_leases)
            self.live_leases.remove(lease)
            self.revoked_leases.append(lease)
            return {"lease": lease}
        return super().fields(kind, key)

    def _leases(self) -> rpc_pb2_grpc.LeaseStub:
        if self.lease_stub is None or self.lease_channel is not self.channel:
            self.lease_stub = rpc_pb2_grpc.LeaseStub(self.channel)
            self.lease_channel = self.channel
        return self.lease_stub

    def _stale_get(self, op: Operation) -> dict:
        response = self.kv.Range(rpc_pb2.RangeRequest(key=op.key, revision=op.at_revision),
                                 timeout=self.timeout_s)
        return {"revision": response.header.revision, "kv": _first(response.kvs)}

    def _compact(self, op: Operation) -> dict:
        response = self.kv.Compact(rpc_pb2.CompactionRequest(revision=op.at_revision,
                                                             physical=op.physical),
                                   timeout=self.timeout_s)
        return {"revision": response.header.revision}

    def _lease_grant(self, op: Operation) -> dict:
        response = self._leases().LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=op.ttl, ID=op.lease),
                                             timeout=self.timeout_s)
        if response.error:
            raise AssertionError(f"LeaseGrant answered error {response.error!r}")
        return {"revision": response.header.revision, "ttl": response.TTL}

    def _lease_put(self, op: Operation) -> dict:
        response = self.kv.Put(rpc_pb2.PutRequest(key=op.key, value=op.value, lease=op.lease),
                               timeout=self.timeout_s)
        return {"revision": response.header.revision}

    def _lease_revoke(self, op: Operation) -> dict:
        response = self._leases().LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=op.lease),
                                              timeout=self.timeout_s)
        return {"revision": response.header.revision}
