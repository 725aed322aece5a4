"""The server's core in process: batching, timeouts, restart (no gRPC)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine.requests import Kind
from pykv.server.config import ServerConfig
from pykv.server.core import Core


def _run(coro):
    return asyncio.run(coro)


async def _started(path, **overrides) -> Core:
    config = ServerConfig(data_dir=str(path), **overrides)
    core = Core(config, asyncio.get_running_loop())
    core.start()
    for _ in range(500):
        if core.leader_id:
            return core
        await asyncio.sleep(0.01)
    core.stop()
    raise AssertionError("no leader within 5 s")


def _put(core: Core, key: bytes, value: bytes = b"v"):
    request = rpc_pb2.PutRequest(key=key, value=value)
    return core.propose(Kind.PUT, request.SerializeToString(), request)


def _stall_proposals(core: Core, timeout_s: float) -> None:
    """Proposals wait, as if the leader were gone, and time out after ``timeout_s``."""
    core.raft.request_timeout_s = timeout_s
    core.raft.leader_id = 0
    core.raft._leaderless_since = None


def test_concurrent_writes_share_readies_syncs_and_lmdb_txns(tmp_path):
    async def main():
        core = await _started(tmp_path / "d")
        try:
            before = core.raft.stats.syncs
            answers = await asyncio.gather(*(_put(core, b"k%03d" % i) for i in range(300)))
            syncs = core.raft.stats.syncs - before
            revisions = sorted(rpc_pb2.PutResponse.FromString(a).header.revision
                               for a in answers)
            assert revisions == list(range(revisions[0], revisions[0] + 300))
            # 300 concurrent puts must not cost 300 fdatasyncs.
            assert syncs <= 30, f"{syncs} syncs for 300 concurrent puts"
        finally:
            core.stop()

    _run(main())


def test_a_request_nobody_answers_times_out_with_etcds_error(tmp_path):
    async def main():
        core = await _started(tmp_path / "d")
        try:
            _stall_proposals(core, timeout_s=0.3)
            future = _put(core, b"k")
            with pytest.raises(errors.Timeout):
                await asyncio.wait_for(future, 5)
        finally:
            core.stop()

    _run(main())


class _Replier:
    """Collects answers the way the native gRPC server takes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.calls: list[tuple[str, list]] = []
        self._loop = loop
        self.done = asyncio.Event()
        self.expected = 0

    def reply_many(self, answers) -> None:
        self.calls.append((threading.current_thread().name, list(answers)))
        if sum(len(a) for _, a in self.calls) >= self.expected:
            self._loop.call_soon_threadsafe(self.done.set)


def test_writes_with_a_replier_are_answered_from_the_raft_thread_in_batches(tmp_path):
    async def main():
        core = await _started(tmp_path / "d")
        try:
            replier = _Replier(asyncio.get_running_loop())
            replier.expected = 50
            for i in range(50):
                request = rpc_pb2.PutRequest(key=b"k%02d" % i, value=b"v")
                assert core.propose(Kind.PUT, request.SerializeToString(), request,
                                    replier, ("token", i)) is None
            await asyncio.wait_for(replier.done.wait(), 10)
            assert {thread for thread, _ in replier.calls} == {"pykv-raft"}
            # Requests applied in one Ready are answered in one call.
            assert len(replier.calls) < 50
            answers = [answer for _, batch in replier.calls for answer in batch]
            assert sorted(token for token, _ in answers) == [("token", i) for i in range(50)]
            revisions = sorted(rpc_pb2.PutResponse.FromString(result).header.revision
                               for _, result in answers)
            assert revisions == list(range(revisions[0], revisions[0] + 50))
            assert core.raft.pending == 0
        finally:
            core.stop()

    _run(main())


def test_a_write_with_a_replier_that_nobody_answers_gets_the_timeout_there(tmp_path):
    async def main():
        core = await _started(tmp_path / "d")
        try:
            _stall_proposals(core, timeout_s=0.3)
            replier = _Replier(asyncio.get_running_loop())
            replier.expected = 1
            request = rpc_pb2.PutRequest(key=b"k", value=b"v")
            core.propose(Kind.PUT, request.SerializeToString(), request, replier, "t")
            await asyncio.wait_for(replier.done.wait(), 5)
            [(_, [(token, result)])] = replier.calls
            assert token == "t" and isinstance(result, errors.Timeout)
            assert core.raft.pending == 0
        finally:
            core.stop()

    _run(main())


def test_snapshots_release_wal_segments_and_restart_replays_only_the_rest(tmp_path):
    async def main(path):
        core = await _started(path, snapshot_count=50, snapshot_catchup_entries=5)
        try:
            for i in range(120):
                await asyncio.gather(*(_put(core, b"k%03d" % j, b"x" * 2000) for j in range(4)))
            applied = core.raft.applied_index
            assert core._last_snapshot_index >= applied - 50
            assert core._raftlog.storage.first_index() > 1  # the in-memory log was compacted
            revision = core.store.revision
        finally:
            core.stop()
        return applied, revision

    path = tmp_path / "d"
    applied, revision = _run(main(path))

    async def again():
        core = await _started(path)
        try:
            assert core.store.applied_index >= applied
            assert core.store.revision == revision
            answer = await _put(core, b"after")
            assert rpc_pb2.PutResponse.FromString(answer).header.revision == revision + 1
        finally:
            core.stop()

    _run(again())


def test_after_a_power_loss_the_store_rolls_back_and_the_wal_replays_every_write(
        tmp_path, monkeypatch):
    """The store's commits are not fsynced; snapshots release WAL segments
    only up to a store checkpoint. A crash image (the data directory as a
    killed process leaves it) reopened after a reboot: the store rolls back
    to its last checkpoint and Raft replays every acknowledged put."""
    import shutil

    from pykv.mvcc import checkpoint

    live, crashed = tmp_path / "live", tmp_path / "crashed"

    async def write(path):
        core = await _started(path, snapshot_count=40, snapshot_catchup_entries=5)
        try:
            for i in range(60):
                await _put(core, b"a%03d" % i)
            core.store._checkpointer.stop()  # from here on, checkpoints only at snapshots
            for i in range(100):
                await _put(core, b"b%03d" % i)
            shutil.copytree(path, crashed)  # every put acknowledged: what a kill leaves
            return core.store.applied_index
        finally:
            core.stop()

    applied = _run(write(live))
    record = checkpoint.read_record(str(crashed / "member" / "snap" / "db"))
    assert record.applied_index < applied  # the store will roll back

    async def reopen():
        core = await _started(crashed)
        try:
            await core.read_barrier()  # the new term's first entry commits the replayed tail
            assert core.store.range(rpc_pb2.RangeRequest(
                key=b"a", range_end=b"c", count_only=True)).count == 160
            assert core.store.applied_index >= applied
        finally:
            core.stop()

    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: b"\x42" * 16)
    _run(reopen())
