"""A granted lease, as a handle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pykv import errors
from pykv.mvcc import types as t

if TYPE_CHECKING:
    from pykv.embedded.db import DB


class Lease:
    """A lease granted by ``DB.grant``: ``id``, the granted ``ttl`` in
    seconds (raised to the minimum if it was below) and the store
    ``revision`` when it was granted.

    Keys put with ``lease=`` this lease (or its id) are deleted when it
    expires or is revoked. It expires ``ttl`` seconds after the grant or the
    last ``keepalive()``. As a context manager it is revoked on exit.
    """

    __slots__ = ("_db", "id", "ttl", "revision")

    def __init__(self, db: DB, lease_id: int, ttl: int, revision: int):
        self._db = db
        self.id = lease_id
        self.ttl = ttl
        self.revision = revision

    def keepalive(self) -> int:
        """Renew the lease for another ``ttl`` seconds; returns the TTL.
        Raises ``LeaseNotFound`` once it has expired or been revoked."""
        return self._db.keepalive(self.id)

    def revoke(self) -> t.LeaseRevokeResult:
        """Revoke it now: its keys are deleted (at one revision)."""
        return self._db.revoke(self.id)

    def time_to_live(self, keys: bool = False) -> t.LeaseTimeToLive:
        """Seconds left (``ttl``; -1 once gone), the granted TTL and, with
        ``keys``, the keys attached to it."""
        return self._db.time_to_live(self.id, keys=keys)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.revoke()
        except (errors.LeaseNotFound, errors.ClosedError):
            pass  # expired, revoked already, or the database is gone

    def __repr__(self) -> str:
        return f"Lease(id={self.id}, ttl={self.ttl}, revision={self.revision})"
