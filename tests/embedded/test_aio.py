"""pykv.aio: the same engine from asyncio code."""

from __future__ import annotations

import asyncio

import pytest

import pykv.aio
from pykv import errors
from pykv.embedded import DELETE, PUT, put_op, value

WAIT_S = 10.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_put_get_range_delete_and_txn(db_path):
    async def main():
        async with pykv.aio.open(db_path) as db:
            assert (await db.put("a", "1")).revision == 2
            assert (await db.get("a")).value == b"1"
            await db.put("a/x", "2")
            assert (await db.range("a", prefix=True)).count == 2
            result = await db.txn().if_(value("a") == "1").then(put_op("b", "3")).commit()
            assert result.succeeded
            assert (await db.delete("a", prefix=True)).deleted == 2
            assert (await db.status()).revision == 5
            before, after = await db.defragment()
            assert 0 < after <= before
            assert (await db.get("b")).value == b"3"

    run(main())


def test_concurrent_tasks_share_fdatasyncs(db_path):
    async def main():
        db = await pykv.aio.open(db_path)
        try:
            results = await asyncio.gather(*(db.put(f"k{i}", "v") for i in range(200)))
            assert sorted(r.revision for r in results) == list(range(2, 202))
            assert db.db._engine.committer.batches < 200
        finally:
            await db.close()

    run(main())


def test_async_watch_is_woken_by_writes(db_path):
    async def main():
        async with pykv.aio.open(db_path) as db:
            seen = []

            async def consume(watch):
                async for event in watch:
                    seen.append((event.type, event.kv.key))
                    if len(seen) == 3:
                        return

            async with db.watch("w/", prefix=True) as watch:
                consumer = asyncio.create_task(consume(watch))
                await db.put("w/1", "a")
                await db.put("w/2", "b")
                await db.delete("w/1")
                await asyncio.wait_for(consumer, WAIT_S)
            assert seen == [(PUT, b"w/1"), (PUT, b"w/2"), (DELETE, b"w/1")]

    run(main())


def test_async_leases(db_path):
    async def main():
        async with pykv.aio.open(db_path) as db:
            async with await db.grant(60) as lease:
                await db.put("k", "v", lease=lease)
                assert await lease.keepalive() == 60
                assert (await lease.time_to_live(keys=True)).keys == [b"k"]
            assert await db.get("k") is None
            with pytest.raises(errors.LeaseNotFound):
                await db.revoke(lease)

    run(main())


def test_errors_surface_in_the_coroutine(db_path):
    async def main():
        async with pykv.aio.open(db_path) as db:
            with pytest.raises(errors.FutureRevision):
                await db.range("k", revision=100)
        with pytest.raises(errors.ClosedError):
            await db.put("k", "v")

    run(main())


def test_the_async_face_has_every_method_of_db():
    """A method added to DB and forgotten here would leave asyncio users
    without it (or blocking their loop through ``.db``)."""
    import inspect

    from pykv.embedded.db import DB

    def public(cls):
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(DB) == public(pykv.aio.AsyncDB)
    for name in public(DB):
        sync, async_ = getattr(DB, name), getattr(pykv.aio.AsyncDB, name)
        if not callable(sync):
            continue
        params = inspect.signature(async_).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue  # passes its options on as they are (watch)
        assert inspect.signature(sync).parameters.keys() == params.keys(), name
