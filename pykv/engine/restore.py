"""Snapshot files as etcdctl saves them, and restoring a data directory
from one (``pykv snapshot restore``).

``etcdctl snapshot save`` (and Maintenance.Snapshot) produce: pykv's MVCC
snapshot stream (``pykv.mvcc.snapshot``), zero padding to a multiple of 512
bytes, then the SHA-256 of everything before it (32 bytes): etcdctl checks
that shape. The stream is not a bbolt file, so ``etcdutl snapshot restore``
cannot read it; ``pykv snapshot restore`` can.

Snapshots saved from real etcd (a bbolt database and its SHA-256) restore
too: their live state is imported (``pykv.engine.etcd_snapshot``); the
format is told by the first page (bbolt's meta page magic).

A restored directory is a new one-member cluster (as with etcd's restore):
new member and cluster ids, and a Raft log that starts at a snapshot marker
at the store's applied index, so nothing before it is replayed.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable

from pykv import errors
from pykv.engine import etcd_snapshot, layout
from pykv.engine.identity import cluster_id_for, member_id_for
from pykv.engine.raftlog import encode_metadata
from pykv.mvcc import Store, bbolt
from pykv.mvcc import snapshot as mvcc_snapshot
from pykv.raft.types import ConfState, HardState, SnapshotMeta, encode_hard_state, \
    encode_snapshot_meta
from pykv.wal import WAL, RecordType

SHA256_BYTES = 32


def read_snapshot_file(path: str, skip_hash_check: bool = False) -> bytes:
    """The stream part of a saved snapshot, its SHA-256 trailer checked."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise errors.StorageError(f"cannot read snapshot {path}: {exc.strerror}") from None
    if len(data) < SHA256_BYTES or (len(data) - SHA256_BYTES) % 512 != 0:
        raise errors.CorruptionError(
            f"snapshot {path}: size {len(data)} is not a multiple of 512 plus a SHA-256 "
            "(not a file saved by 'etcdctl snapshot save' from pykv)", path=path)
    body, digest = data[:-SHA256_BYTES], data[-SHA256_BYTES:]
    if not skip_hash_check and hashlib.sha256(body).digest() != digest:
        raise errors.CorruptionError(f"snapshot {path}: SHA-256 mismatch, the file is damaged",
                                     path=path)
    return body


class _HashingWriter:
    """A file that also hashes what goes through it (SHA-256)."""

    def __init__(self, handle):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)


def save_snapshot_file(store: Store, path: str) -> int:
    """Write a snapshot of ``store`` (one consistent view) to ``path`` in the
    shape ``etcdctl snapshot save`` gets from pykv (the stream, zero padding
    to a multiple of 512 bytes, the SHA-256 of both), so that ``pykv
    snapshot restore|status`` read it. Atomic: a ``.part`` file is fsynced,
    renamed over ``path``, and the directory fsynced. Returns its size."""
    part = path + ".part"
    try:
        with open(part, "wb") as handle:
            out = _HashingWriter(handle)
            store.write_snapshot(out)
            out.write(bytes(-out.size % 512))
            handle.write(out.digest.digest())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)
        layout.fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise errors.StorageError(f"cannot write the snapshot {path}: {exc}") from exc
    return out.size + SHA256_BYTES


@dataclass
class SnapshotStatus:
    hash: int
    revision: int
    total_keys: int
    total_size: int


def snapshot_format(path: str) -> str:
    """``"etcd"`` (a bbolt database) or ``"pykv"`` (pykv's stream), from the
    first bytes of ``path``; StorageError for anything else."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise errors.StorageError(f"cannot read snapshot {path}: {exc.strerror}") from None
    if bbolt.looks_like_bbolt(head):
        return "etcd"
    if head.startswith(mvcc_snapshot.STREAM_MAGIC):
        return "pykv"
    raise errors.StorageError(f"{path} is neither an etcd snapshot (a bbolt file) nor a pykv "
                              "snapshot: not a file saved by 'etcdctl snapshot save'")


def status(path: str) -> SnapshotStatus:
    """What ``etcdctl snapshot status`` shows, for a pykv or an etcd snapshot
    file (for etcd's, the very figures etcdctl computes)."""
    if snapshot_format(path) == "etcd":
        etcd = etcd_snapshot.status(path)
        return SnapshotStatus(etcd.hash, etcd.revision, etcd.total_keys, etcd.total_size)
    body = read_snapshot_file(path)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "db")
        mvcc_snapshot.restore(io.BytesIO(body), db, origin=path)
        store = Store.open(db)
        try:
            result = store.hash_kv(0)
            keys = store.range(_AllKeys()).count
            return SnapshotStatus(result.hash, store.revision, keys, os.path.getsize(path))
        finally:
            store.close()


class _AllKeys:
    key = b"\x00"
    range_end = b"\x00"
    limit = 0
    revision = 0
    sort_order = 0
    sort_target = 0
    serializable = True
    keys_only = True
    count_only = True
    min_mod_revision = max_mod_revision = min_create_revision = max_create_revision = 0


@dataclass
class RestoreResult:
    member_id: int
    cluster_id: int
    applied_index: int
    etcd_import: etcd_snapshot.EtcdImport | None = None   # set for an etcd snapshot


def _restore_store(snapshot_path: str, data_dir: str, skip_hash_check: bool,
                   progress: Callable[[str], None] | None
                   ) -> tuple[layout.DataDir, etcd_snapshot.EtcdImport | None]:
    """The data directory's tree and its store, from either kind of snapshot."""
    if snapshot_format(snapshot_path) == "etcd":
        etcd_snapshot.database_bytes(snapshot_path, skip_hash_check)  # before creating anything
        paths = layout.prepare(data_dir)
        return paths, etcd_snapshot.import_store(snapshot_path, paths.db,
                                                 skip_hash_check=skip_hash_check,
                                                 progress=progress)
    body = read_snapshot_file(snapshot_path, skip_hash_check)
    paths = layout.prepare(data_dir)
    mvcc_snapshot.restore(io.BytesIO(body), paths.db, origin=snapshot_path)
    return paths, None


def restore_data_dir(snapshot_path: str, data_dir: str, *, name: str, peer_urls: list[str],
                     cluster_token: str, initial_cluster: dict[str, list[str]] | None = None,
                     skip_hash_check: bool = False,
                     progress: Callable[[str], None] | None = None) -> RestoreResult:
    """Build ``data_dir`` from a saved snapshot, pykv's or etcd's (told apart
    by the first page). Refuses an existing, non-empty data directory.
    ``progress`` receives a line now and then while a big etcd snapshot is
    imported."""
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        raise errors.StorageError(f"data-dir {data_dir!r} exists")
    existed = os.path.isdir(data_dir)
    try:
        paths, etcd_import = _restore_store(snapshot_path, data_dir, skip_hash_check, progress)
    except BaseException:
        # Nothing half-built stays behind: the same command can be run again.
        if existed:
            shutil.rmtree(layout.DataDir(os.path.abspath(data_dir)).member, ignore_errors=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    store = Store.open(paths.db)
    try:
        applied = max(store.applied_index, 1)
        store.checkpoint()
    finally:
        store.close()
    members = initial_cluster or {name: peer_urls}
    member_id = member_id_for(members.get(name, peer_urls), cluster_token)
    cluster_id = cluster_id_for([member_id_for(urls, cluster_token) for urls in members.values()])
    voters = tuple(sorted(member_id_for(urls, cluster_token) for urls in members.values()))
    meta = SnapshotMeta(applied, 1, ConfState(voters=voters))
    wal = WAL.open(paths.wal)
    try:
        wal.append_sync([
            (RecordType.METADATA, 0, encode_metadata(member_id, cluster_id, name)),
            (RecordType.SNAPSHOT, applied, encode_snapshot_meta(meta)),
            (RecordType.STATE, applied, encode_hard_state(HardState(1, 0, applied))),
        ])
    finally:
        wal.close()
    return RestoreResult(member_id, cluster_id, applied, etcd_import)
