"""The data directory, the same for ``pykv serve`` and ``pykv.open``::

    <data-dir>/
      LOCK               flock'd by the one process that has the directory open
      member/
        wal/             WAL segments (pykv.wal)
        snap/
          db             the LMDB environment of the MVCC store (one file)
          db-lock

Directories are created 0700 (etcd's TOB-ETCD-003: data directories must not
be readable by other users) and their parent is fsynced after creation, so
that a crash right after start-up does not lose the directory entries.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass

from pykv import errors

DIR_MODE = 0o700


@dataclass(frozen=True)
class DataDir:
    root: str

    @property
    def member(self) -> str:
        return os.path.join(self.root, "member")

    @property
    def wal(self) -> str:
        return os.path.join(self.member, "wal")

    @property
    def snap(self) -> str:
        return os.path.join(self.member, "snap")

    @property
    def db(self) -> str:
        return os.path.join(self.snap, "db")

    @property
    def lock_path(self) -> str:
        return os.path.join(self.root, "LOCK")

    def exists(self) -> bool:
        """True when a store has been created here before."""
        return os.path.exists(self.db)


def fsync_dir(path: str) -> None:
    """fsync a directory, so that the entries made in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """Create ``path`` and its missing parents with mode 0700, fsyncing each
    parent whose entries changed; refuse an existing directory that others can
    read or write."""
    path = os.path.abspath(path)
    missing = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise errors.StorageError(f"cannot create directory {directory}: {exc.strerror}") \
                from None
        fsync_dir(os.path.dirname(directory))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077 and path not in missing:
        # etcd refuses to start in this case; we tighten it, and say so.
        os.chmod(path, DIR_MODE)


class DirectoryLock:
    """An exclusive flock on ``<data-dir>/LOCK``: a second process (a second
    ``pykv serve``, or ``pykv.open`` of a served directory) gets a clear error
    instead of two writers on one WAL and one LMDB file."""

    def __init__(self, data_dir: DataDir):
        self.path = data_dir.lock_path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = _read_holder(self.path)
                raise errors.LockedError(
                    f"data directory {os.path.dirname(self.path)} is in use by another process"
                    f"{' (pid ' + holder + ')' if holder else ''}") from None
            raise errors.StorageError(f"cannot lock {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _read_holder(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def prepare(root: str) -> DataDir:
    """Create the directory tree (idempotent) and return its layout."""
    data_dir = DataDir(os.path.abspath(root))
    for path in (data_dir.root, data_dir.member, data_dir.wal, data_dir.snap):
        make_dirs(path)
    return data_dir
