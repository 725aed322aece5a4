"""What every service needs: the core, the store, the headers, the limits."""

from __future__ import annotations

from dataclasses import dataclass

from pykv import errors
from pykv.engine.quota import nospace_alarm
from pykv.engine.requests import Kind
from pykv.mvcc import Store
from pykv.server.config import ServerConfig
from pykv.server.responses import Headers


@dataclass
class ServerContext:
    config: ServerConfig
    core: object   # pykv.server.core.Core: propose, read_barrier, leader_id, ...
    store: Store
    headers: Headers

    def check_size(self, raw: bytes) -> None:
        if len(raw) > self.config.max_request_bytes:
            raise errors.RequestTooLarge(f"{len(raw)} bytes > {self.config.max_request_bytes}")

    async def check_quota(self, extra_bytes: int) -> None:
        """etcd's quota check before a write: past the backend quota, raise
        the NOSPACE alarm (through Raft, so every member sees it) and refuse."""
        if not self.core.quota_exceeded(extra_bytes):
            return
        alarm = nospace_alarm(self.store, self.headers.member_id)
        if alarm is not None:
            try:
                await self.core.propose(Kind.ALARM, alarm.SerializeToString(), alarm)
            except errors.EtcdError:
                pass  # the write is refused below either way
        raise errors.NoSpace()
