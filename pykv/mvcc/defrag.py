"""The file side of defragmentation (etcd's Defragment): a compacting copy
of the LMDB file, made durable, swapped in by an atomic rename.

LMDB, like bbolt, never shrinks its file: pages freed by compaction and
deletes are reused but not returned. ``compact_copy`` writes only the pages
in use (LMDB's MDB_CP_COMPACT) into ``<db>.tmp`` and fsyncs it;
``swap_in`` renames it over the live file and fsyncs the directory. At every
instant the live path holds a complete file: the old one until the rename,
the new (already durable) one after it. A crash before the rename leaves a
stale ``<db>.tmp``, which the next open removes.

The caller (``Store.defragment``) excludes writers for the whole run and
closes the environment before ``swap_in``: a compacted copy starts over at
LMDB transaction id 1, so the lock file of the old file must not be reused
with it either (``swap_in`` removes it; the reopen creates a fresh one).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator

import lmdb

from pykv import errors

TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = "-lock"


def tmp_path(path: str) -> str:
    return path + TMP_SUFFIX


def remove_stale_tmp(path: str) -> None:
    """Remove ``<path>.tmp`` left by a defragmentation that did not finish
    (the live file is intact in that case)."""
    try:
        os.unlink(tmp_path(path))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise errors.StorageError(f"cannot remove the stale defragmentation copy "
                                  f"{tmp_path(path)}: {exc}") from exc


def compact_copy(env: lmdb.Environment, path: str) -> str:
    """Write a compacted, fsynced copy of ``env`` (the store at ``path``) to
    ``<path>.tmp`` and return that name. No writer may run meanwhile;
    readers may. On failure nothing is left behind."""
    tmp = tmp_path(path)
    remove_stale_tmp(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise errors.StorageError(f"cannot create the defragmentation copy {tmp}: {exc}"
                                  ) from exc
    try:
        try:
            env.copyfd(fd, compact=True)
            os.fsync(fd)
        finally:
            os.close(fd)
    except (OSError, lmdb.Error) as exc:
        unlink_quietly(tmp)
        raise errors.StorageError(f"compacting copy of {path} into {tmp} failed: {exc}"
                                  ) from exc
    except BaseException:
        unlink_quietly(tmp)
        raise
    return tmp


def swap_in(tmp: str, path: str) -> None:
    """Atomically replace ``path`` by ``tmp`` and make the rename durable.
    The environment at ``path`` must be closed in this process. Removes the
    old lock file (it describes the old file's transaction ids)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        unlink_quietly(tmp)
        raise errors.StorageError(f"cannot rename {tmp} over {path}: {exc}") from exc
    try:
        os.unlink(path + LOCK_SUFFIX)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise errors.StorageError(f"cannot remove the old lock file {path}{LOCK_SUFFIX}: {exc}"
                                  ) from exc
    fsync_dir(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def swap_lock(path: str, exclusive: bool) -> Iterator[None]:
    """flock on the store's directory: read-only processes (other processes
    reading the store) open the environment holding it shared, the writer
    swaps the file in holding it exclusive, so that nobody pairs the new
    file with the old lock file or the reverse."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise errors.StorageError(f"cannot open the store directory {directory}: {exc}"
                                  ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the flock


def fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise errors.FatalSyncError(f"fsync of the directory {directory} failed: {exc}") from exc


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
