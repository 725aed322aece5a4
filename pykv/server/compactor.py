"""Auto-compaction, as etcd's --auto-compaction-mode / --auto-compaction-retention.

- ``revision`` mode: every 5 minutes, compact to (current revision - retention).
- ``periodic`` mode: keep the history of the last ``retention``; the revision
  is sampled every retention/10 (at least every second) and, every retention
  (at most every hour, as etcd 3.4+), the store is compacted to the newest
  sample that is at least ``retention`` old.

Compaction is proposed through Raft by the leader only, like any Compact
request, so every member compacts at the same revision.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine.requests import Kind
from pykv.server.config import parse_retention

log = logging.getLogger("pykv.server.compactor")

REVISION_MODE_INTERVAL_S = 300.0
PERIODIC_MAX_INTERVAL_S = 3600.0


class AutoCompactor:
    def __init__(self, core, mode: str, retention: str, clock=time.monotonic):
        self.core = core
        self.mode, self.retention = parse_retention(mode, retention)
        self.clock = clock
        self._samples: collections.deque = collections.deque()  # (time, revision)
        self._task: asyncio.Task | None = None
        self.compacted_to = 0

    @property
    def enabled(self) -> bool:
        return self.retention > 0

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def target(self, now: float) -> int:
        """The revision to compact to now (0: nothing to do)."""
        store = self.core.store
        if self.mode == "revision":
            target = store.revision - int(self.retention)
        else:
            target = 0
            while self._samples and now - self._samples[0][0] >= self.retention:
                target = self._samples.popleft()[1]
        return target if target > max(store.compact_revision, self.compacted_to) else 0

    def sample(self, now: float) -> None:
        self._samples.append((now, self.core.store.revision))

    async def _run(self) -> None:
        if self.mode == "revision":
            interval, sample_every = REVISION_MODE_INTERVAL_S, None
        else:
            interval = min(self.retention, PERIODIC_MAX_INTERVAL_S)
            sample_every = max(1.0, self.retention / 10)
        next_compact = self.clock() + interval
        while True:
            now = self.clock()
            if sample_every is not None:
                self.sample(now)
            if now >= next_compact:
                next_compact = now + interval
                await self.compact_once(now)
            await asyncio.sleep(sample_every or interval)

    async def compact_once(self, now: float) -> int:
        if self.core.leader_id != self.core.member_id:
            return 0
        target = self.target(now)
        if not target:
            return 0
        request = rpc_pb2.CompactionRequest(revision=target)
        try:
            await self.core.propose(Kind.COMPACTION, request.SerializeToString(), request)
        except errors.EtcdError as exc:
            log.warning("auto compaction failed", extra={"fields": {
                "revision": target, "error": exc.message}})
            return 0
        self.compacted_to = target
        log.info("auto compaction", extra={"fields": {"mode": self.mode, "revision": target}})
        return target
