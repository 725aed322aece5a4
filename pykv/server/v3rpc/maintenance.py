"""etcdserverpb.Maintenance: Status, Alarm, Defragment, Hash, HashKV,
Snapshot, MoveLeader."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine.requests import Kind
from pykv.mvcc import types as mvcc_types
from pykv.server.v3rpc.context import ServerContext

# The etcd API this server speaks; clients read it from Status (etcd3gw picks
# its URL prefix from it).
ETCD_API_VERSION = "3.5.0"
SNAPSHOT_CHUNK_BYTES = 32 * 1024  # etcd streams the backend in 32 KiB chunks
_ALARM_NAMES = {mvcc_types.ALARM_NOSPACE: "NOSPACE", mvcc_types.ALARM_CORRUPT: "CORRUPT"}


def alarm_string(alarm: mvcc_types.AlarmMember) -> str:
    """What etcd puts in StatusResponse.errors: the AlarmMember's text form."""
    return f"memberID:{alarm.member_id} alarm:{_ALARM_NAMES.get(alarm.alarm, 'NONE')} "


class MaintenanceService:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    async def Status(self, request, context):
        ctx = self.ctx
        core = ctx.core
        store = ctx.store
        status = core.status()
        return rpc_pb2.StatusResponse(
            header=ctx.headers.message(store.revision), version=ETCD_API_VERSION,
            dbSize=status["db_size"], leader=status["leader"], raftIndex=status["raft_index"],
            raftTerm=status["raft_term"], raftAppliedIndex=status["raft_applied_index"],
            errors=[alarm_string(a) for a in status["alarms"]],
            dbSizeInUse=status["db_size_in_use"], isLearner=False,
            dbSizeQuota=ctx.config.effective_quota_backend_bytes)

    async def Alarm(self, request: rpc_pb2.AlarmRequest, context):
        ctx = self.ctx
        if request.action == rpc_pb2.AlarmRequest.GET:
            alarms = [a for a in ctx.store.alarms()
                      if request.alarm == rpc_pb2.NONE or a.alarm == request.alarm]
            return rpc_pb2.AlarmResponse(
                header=ctx.headers.message(ctx.store.revision),
                alarms=[rpc_pb2.AlarmMember(memberID=a.member_id, alarm=a.alarm)
                        for a in alarms])
        raw = request.SerializeToString()
        return rpc_pb2.AlarmResponse.FromString(
            await ctx.core.propose(Kind.ALARM, raw, request))

    async def Hash(self, request, context):
        ctx = self.ctx
        result = await asyncio.get_running_loop().run_in_executor(None, ctx.store.hash)
        return rpc_pb2.HashResponse(header=ctx.headers.message(result.revision),
                                    hash=result.hash)

    async def HashKV(self, request: rpc_pb2.HashKVRequest, context):
        ctx = self.ctx
        result = await asyncio.get_running_loop().run_in_executor(
            None, ctx.store.hash_kv, request.revision)
        # etcd's hash is a CRC-32 (uint32 on the wire); the store's is 64-bit
        # xxh3: fold it, so every member still reports the same value.
        folded = (result.hash ^ (result.hash >> 32)) & 0xFFFFFFFF
        return rpc_pb2.HashKVResponse(
            header=ctx.headers.message(ctx.store.revision), hash=folded,
            compact_revision=result.compact_revision, hash_revision=result.revision)

    async def Snapshot(self, request, context):
        """Stream a snapshot of the store as etcd does: 32 KiB blobs with
        ``remaining_bytes``, the data padded to a multiple of 512 bytes, then
        a last message holding the SHA-256 of all of it (etcdctl's snapshot
        save checks both). The data is pykv's snapshot stream
        (``pykv snapshot restore`` reads it), not a bbolt file."""
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        handle = tempfile.TemporaryFile(dir=os.path.dirname(ctx.store.path))
        try:
            size = await loop.run_in_executor(None, ctx.store.write_snapshot, handle)
            padded = -(-size // 512) * 512
            handle.seek(0)
            digest = hashlib.sha256()
            remaining = padded + digest.digest_size
            header = ctx.headers.message(ctx.store.revision)
            sent = 0
            while sent < padded:
                chunk = await loop.run_in_executor(None, handle.read, SNAPSHOT_CHUNK_BYTES)
                if not chunk:
                    chunk = bytes(min(SNAPSHOT_CHUNK_BYTES, padded - sent))
                digest.update(chunk)
                sent += len(chunk)
                remaining -= len(chunk)
                yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=remaining,
                                               blob=chunk)
            yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=0,
                                           blob=digest.digest())
        finally:
            handle.close()

    async def MoveLeader(self, request: rpc_pb2.MoveLeaderRequest, context):
        ctx = self.ctx
        core = ctx.core
        if core.leader_id != ctx.headers.member_id:
            raise errors.NotLeader()
        voters = core.status_voters()
        if request.targetID not in voters:
            raise errors.BadLeaderTransferee()
        if request.targetID != ctx.headers.member_id:
            await core.transfer_leader(request.targetID)
        return rpc_pb2.MoveLeaderResponse(header=ctx.headers.message(ctx.store.revision))

    async def Defragment(self, request, context):
        ctx = self.ctx
        # Blocks writes on this member while it runs, as etcd's does.
        await asyncio.get_running_loop().run_in_executor(None, ctx.store.defragment)
        return rpc_pb2.DefragmentResponse(header=ctx.headers.message(ctx.store.revision))
