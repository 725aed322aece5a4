"""The lessor: leases in memory, their expiry driven by an injected clock.

Grants and revokes change the store, so they go through the write batch
(``WriteBatch.lease_grant`` / ``lease_revoke``), are persisted in the
``lease`` table and reach this object only after their LMDB transaction has
committed. Renewals and expiry are in-memory only, as in etcd: a restarted
or newly promoted member gives every lease a fresh TTL.

Only a primary (the Raft leader) runs leases down: ``expired()`` reports the
leases whose time is up and the caller revokes them through Raft, so every
replica deletes the keys at the same revision. A demoted lessor's leases never
expire (etcd's ``forever``). Thread-safe: renewals arrive from request
threads while the writer applies grants and revokes.
"""

from __future__ import annotations

import heapq
import math
import threading
from typing import Callable

from pykv import errors
from pykv.mvcc import types as t

#: etcd's MaxLeaseTTL: larger TTLs are refused with "too large lease TTL".
MAX_LEASE_TTL = 9_000_000_000
#: etcd's minimum TTL with default timers: ceil(1.5 x 1 s election timeout).
DEFAULT_MIN_TTL = 2
#: etcd's expiredLeaseRetryInterval: an expired lease is reported again after
#: this long if its revoke has not been applied by then.
EXPIRED_RETRY_S = 3.0

_FOREVER = math.inf


class Lease:
    __slots__ = ("id", "ttl", "expiry", "revoking")

    def __init__(self, lease_id: int, ttl: int, expiry: float):
        self.id = lease_id
        self.ttl = ttl          # granted TTL in seconds (after the minimum is applied)
        self.expiry = expiry    # clock time; inf while not primary
        self.revoking = False   # reported by expired(): renewals are refused


class Lessor:
    """Lease bookkeeping for one store. ``clock()`` returns seconds (monotonic)."""

    def __init__(self, clock: Callable[[], float], min_ttl: int = DEFAULT_MIN_TTL,
                 keys_of: Callable[[int], list[bytes]] | None = None):
        self._clock = clock
        self.min_ttl = min_ttl
        self._keys_of = keys_of or (lambda lease_id: [])
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._heap: list[tuple[float, int]] = []  # (expiry, id); stale entries skipped
        self._primary = False

    # --- state changes from the store --------------------------------------------

    def _load(self, leases: dict[int, int]) -> None:
        """Start from the persisted leases (id -> ttl); none runs down until
        ``promote()``."""
        with self._lock:
            self._leases = {lid: Lease(lid, ttl, _FOREVER) for lid, ttl in leases.items()}
            self._heap = []
            self._primary = False

    def _apply(self, changes: dict[int, int | None]) -> None:
        """Apply committed grants (id -> ttl) and revokes (id -> None)."""
        with self._lock:
            now = self._clock()
            for lease_id, ttl in changes.items():
                if ttl is None:
                    self._leases.pop(lease_id, None)
                    continue
                expiry = now + ttl if self._primary else _FOREVER
                self._leases[lease_id] = Lease(lease_id, ttl, expiry)
                if self._primary:
                    heapq.heappush(self._heap, (expiry, lease_id))

    def has(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def ttl_of(self, lease_id: int) -> int | None:
        lease = self._leases.get(lease_id)
        return None if lease is None else lease.ttl

    # --- leadership ------------------------------------------------------------------

    @property
    def primary(self) -> bool:
        return self._primary

    def promote(self, extend_s: float = 0.0) -> None:
        """Become primary: every lease gets a full TTL (plus ``extend_s``, e.g.
        the election timeout, as etcd does) from now."""
        with self._lock:
            now = self._clock()
            self._primary = True
            self._heap = []
            for lease in self._leases.values():
                lease.expiry = now + lease.ttl + extend_s
                lease.revoking = False
                self._heap.append((lease.expiry, lease.id))
            heapq.heapify(self._heap)

    def demote(self) -> None:
        """Stop running leases down (a follower never expires leases)."""
        with self._lock:
            self._primary = False
            for lease in self._leases.values():
                lease.expiry = _FOREVER
                lease.revoking = False
            self._heap = []

    # --- requests --------------------------------------------------------------------

    def renew(self, lease_id: int) -> int:
        """Refresh a lease; returns its TTL. Unknown, or already expired and
        waiting to be revoked: ``LeaseNotFound`` (the server answers a
        keepalive for it with TTL 0)."""
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None:
                raise errors.LeaseNotFound()
            now = self._clock()
            if self._primary and (lease.revoking or lease.expiry <= now):
                raise errors.LeaseNotFound("expired, pending revoke")
            if self._primary:
                lease.expiry = now + lease.ttl
                heapq.heappush(self._heap, (lease.expiry, lease_id))
            return lease.ttl

    def time_to_live(self, lease_id: int, keys: bool = False) -> t.LeaseTimeToLive:
        """etcd's LeaseTimeToLive: an unknown lease has TTL -1 (not an error)."""
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None:
                return t.LeaseTimeToLive(lease_id, -1, 0, [])
            if lease.expiry == _FOREVER:
                remaining = lease.ttl
            else:
                remaining = max(0, int(lease.expiry - self._clock()))
            granted = lease.ttl
        return t.LeaseTimeToLive(lease_id, remaining, granted,
                                 self._keys_of(lease_id) if keys else [])

    def leases(self) -> list[int]:
        with self._lock:
            return sorted(self._leases)

    def expired(self, now: float | None = None, limit: int = 0) -> list[int]:
        """Ids of leases whose time is up (primary only), at most ``limit``
        (0: all). Each is reported again after ``EXPIRED_RETRY_S`` until its
        revoke is applied; the caller revokes them through the write path."""
        with self._lock:
            if not self._primary:
                return []
            now = self._clock() if now is None else now
            out: list[int] = []
            heap = self._heap
            while heap and heap[0][0] <= now and (not limit or len(out) < limit):
                expiry, lease_id = heapq.heappop(heap)
                lease = self._leases.get(lease_id)
                if lease is None or lease.expiry != expiry:
                    continue  # revoked, or renewed since this heap entry
                out.append(lease_id)
                lease.revoking = True
                lease.expiry = now + EXPIRED_RETRY_S
                heapq.heappush(heap, (lease.expiry, lease_id))
            return out
