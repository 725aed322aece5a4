"""``pykv.aio``: the asyncio face of the embedded engine.

::

    import pykv.aio

    async with pykv.aio.open("app.pykv") as db:
        await db.put("greeting", "hello")
        kv = await db.get("greeting")
        async for event in db.watch("user/", prefix=True):
            ...

The same engine, methods and results as ``pykv.open`` (see ``pykv.embedded``),
as coroutines. ``get`` runs in the event loop's thread (one LMDB lookup,
microseconds); everything else runs on a private pool of threads, so the
loop never waits for a disk, and writes from concurrent tasks share
fdatasyncs exactly as writes from threads do (group commit). Watches are
async iterators woken from the writer's thread without polling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
from typing import Any, Callable, TypeVar

from pykv import errors
from pykv.embedded import db as db_module
from pykv.embedded.db import DB, Status
from pykv.embedded.keys import Bytes
from pykv.embedded.lease import Lease
from pykv.embedded.txn import Txn
from pykv.embedded.watch import Watch
from pykv.mvcc import Event, KeyValue
from pykv.mvcc import types as t

__all__ = ["AsyncDB", "AsyncLease", "AsyncTxn", "AsyncWatch", "open"]

#: Threads of an AsyncDB's pool: as many writes as this can wait for the same
#: fdatasync at once.
DEFAULT_WORKERS = 32

R = TypeVar("R")


class AsyncDB:
    """An open data directory for asyncio code; made by ``pykv.aio.open``.
    ``db`` is the underlying ``pykv.embedded.DB`` (usable from threads)."""

    def __init__(self, db: DB, executor: concurrent.futures.ThreadPoolExecutor):
        self.db = db
        self._executor = executor

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except RuntimeError:  # the pool is shut down: closed
            raise errors.ClosedError(f"the database {self.db.path} is closed") from None
        return await future

    @property
    def path(self) -> str:
        return self.db.path

    @property
    def closed(self) -> bool:
        return self.db.closed

    async def put(self, key: Bytes, value: Bytes, *, lease: object = 0,
                  prev_kv: bool = False) -> t.PutResult:
        """See ``DB.put``."""
        return await self._run(self.db.put, key, value, lease=lease, prev_kv=prev_kv)

    async def get(self, key: Bytes, *, revision: int = 0) -> KeyValue | None:
        """See ``DB.get`` (runs in the loop's thread)."""
        return self.db.get(key, revision=revision)

    async def get_value(self, key: Bytes) -> bytes | None:
        """See ``DB.get_value`` (runs in the loop's thread)."""
        return self.db.get_value(key)

    async def range(self, key: Bytes, range_end: Bytes | None = None, **options: Any
                    ) -> t.RangeResult:
        """See ``DB.range``."""
        return await self._run(self.db.range, key, range_end, **options)

    async def delete(self, key: Bytes, range_end: Bytes | None = None, **options: Any
                     ) -> t.DeleteRangeResult:
        """See ``DB.delete``."""
        return await self._run(self.db.delete, key, range_end, **options)

    def txn(self) -> AsyncTxn:
        """See ``DB.txn``; ``await db.txn().if_(...).then(...).commit()``."""
        return AsyncTxn(self)

    async def compact(self, revision: int, *, physical: bool = False) -> t.CompactResult:
        """See ``DB.compact``."""
        return await self._run(self.db.compact, revision, physical=physical)

    def watch(self, key: Bytes, range_end: Bytes | None = None, **options: Any) -> AsyncWatch:
        """See ``DB.watch``; iterate with ``async for``."""
        return AsyncWatch(self.db.watch(key, range_end, **options))

    async def grant(self, ttl: int, *, lease_id: int = 0) -> AsyncLease:
        """See ``DB.grant``."""
        lease = await self._run(self.db.grant, ttl, lease_id=lease_id)
        return AsyncLease(self, lease)

    async def revoke(self, lease: object) -> t.LeaseRevokeResult:
        """See ``DB.revoke``."""
        return await self._run(self.db.revoke, lease)

    async def keepalive(self, lease: object) -> int:
        """See ``DB.keepalive`` (in memory: runs in the loop's thread)."""
        return self.db.keepalive(lease)

    async def time_to_live(self, lease: object, *, keys: bool = False) -> t.LeaseTimeToLive:
        """See ``DB.time_to_live``."""
        return await self._run(self.db.time_to_live, lease, keys=keys)

    async def leases(self) -> list[int]:
        """See ``DB.leases``."""
        return self.db.leases()

    async def snapshot(self, path: str | os.PathLike) -> int:
        """See ``DB.snapshot``."""
        return await self._run(self.db.snapshot, path)

    async def defragment(self) -> tuple[int, int]:
        """See ``DB.defragment``."""
        return await self._run(self.db.defragment)

    async def hash_kv(self, revision: int = 0) -> t.HashKVResult:
        """See ``DB.hash_kv``."""
        return await self._run(self.db.hash_kv, revision)

    async def alarms(self) -> list[t.AlarmMember]:
        """See ``DB.alarms``."""
        return self.db.alarms()

    async def disarm(self) -> list[t.AlarmMember]:
        """See ``DB.disarm``."""
        return await self._run(self.db.disarm)

    async def status(self) -> Status:
        """See ``DB.status``."""
        return await self._run(self.db.status)

    async def close(self) -> None:
        """See ``DB.close``; also shuts the thread pool down."""
        try:
            await self._run(self.db.close)
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncDB:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<pykv.aio.AsyncDB {self.db!r}>"


class AsyncTxn(Txn):
    """``Txn`` whose ``commit()`` is a coroutine."""

    def __init__(self, adb: AsyncDB):
        super().__init__(adb.db)
        self._adb = adb

    async def commit(self) -> t.TxnResult:  # type: ignore[override]
        """Run the txn; see ``DB.txn``."""
        return await self._adb._run(self._db._txn, self.request())


class AsyncLease:
    """``Lease`` with coroutine methods; ``async with`` revokes it on exit.
    ``lease`` is the underlying ``Lease``; either can be passed as ``lease=``
    (anything with an ``id`` can)."""

    def __init__(self, adb: AsyncDB, lease: Lease):
        self._adb = adb
        self.lease = lease

    @property
    def id(self) -> int:
        """The lease id."""
        return self.lease.id

    @property
    def ttl(self) -> int:
        """The granted TTL in seconds."""
        return self.lease.ttl

    @property
    def revision(self) -> int:
        """The store revision when it was granted."""
        return self.lease.revision

    async def keepalive(self) -> int:
        """See ``Lease.keepalive``."""
        return await self._adb.keepalive(self.lease)

    async def revoke(self) -> t.LeaseRevokeResult:
        """See ``Lease.revoke``."""
        return await self._adb.revoke(self.lease)

    async def time_to_live(self, keys: bool = False) -> t.LeaseTimeToLive:
        """See ``Lease.time_to_live``."""
        return await self._adb.time_to_live(self.lease, keys=keys)

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.revoke()
        except (errors.LeaseNotFound, errors.ClosedError):
            pass

    def __repr__(self) -> str:
        return f"Async{self.lease!r}"


class AsyncWatch:
    """An async iterator of ``Event``s over a ``Watch`` (``watch``); the
    writer's thread wakes the loop through ``call_soon_threadsafe``."""

    def __init__(self, watch: Watch):
        self.watch = watch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def _hook(self) -> None:
        loop, ready = self._loop, self._ready
        if loop is None or ready is None:
            return
        try:
            loop.call_soon_threadsafe(ready.set)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> Event:
        if self._ready is None:
            self._loop = asyncio.get_running_loop()
            self._ready = asyncio.Event()
            self.watch.add_notify_hook(self._hook)
        ready = self._ready
        while True:
            ready.clear()
            try:
                event = self.watch.poll()
            except StopIteration:
                raise StopAsyncIteration from None
            if event is not None:
                return event
            await ready.wait()

    @property
    def revision(self) -> int:
        """See ``Watch.revision``."""
        return self.watch.revision

    def cancel(self) -> None:
        """See ``Watch.cancel``."""
        self.watch.cancel()

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class _Opening:
    """What ``open`` returns: await it, or use it with ``async with``."""

    def __init__(self, path: str | os.PathLike, workers: int, options: dict[str, Any]):
        self._path = path
        self._workers = workers
        self._options = options
        self._db: AsyncDB | None = None

    async def _open(self) -> AsyncDB:
        executor = concurrent.futures.ThreadPoolExecutor(self._workers,
                                                         thread_name_prefix="pykv-aio")
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(
                executor, functools.partial(db_module.open, self._path, **self._options))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return AsyncDB(db, executor)

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self) -> AsyncDB:
        self._db = await self._open()
        return self._db

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()


def open(path: str | os.PathLike, *, workers: int = DEFAULT_WORKERS,  # noqa: A001
         **options: Any) -> _Opening:
    """Open (or create) a data directory for asyncio code: ``db = await
    pykv.aio.open(path)`` or ``async with pykv.aio.open(path) as db``.
    ``options`` are ``pykv.open``'s; ``workers`` sizes the thread pool."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    return _Opening(path, workers, options)
