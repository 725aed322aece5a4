"""Durable without an fdatasync per commit: LMDB checkpoints.

In the default durability mode (``Store.open(durability="checkpoint")``)
LMDB commits with MDB_NOSYNC: a commit writes its pages and then its meta
page with plain ``pwrite``s and returns. A process crash loses nothing (the
pages are in the OS page cache), but a power loss may leave on disk a meta
page that points at data pages that never got there. Recovery from that is
what this module provides, the way etcd does it with bbolt (commit, fsync
only every 100 ms; the WAL carries durability in between):

**Checkpoint** (every ``checkpoint_interval_s``, on ``Store.checkpoint()``,
on close, and after anything that ends LMDB's read transactions):

1. holding the writer lock for a moment (no commit in between): begin a read
   transaction on the latest state T (the *pin*), note T's applied index and
   read the two meta pages (page 0 and 1 of the file) as they are now;
2. without the lock: ``fdatasync`` the file, so every page of T is on disk
   (commits go on meanwhile: they never overwrite a page of T, see below);
3. write the *checkpoint record* ``<db>-checkpoint``: page size, T's
   transaction id, its applied index, a CRC-32C of T's two root pages (the
   free and the main table's, as read in step 1), the boot id, the two meta
   pages; to ``<db>-checkpoint.tmp``, fsync, rename, fsync the directory;
4. drop the previous pin.

**Why T's pages stay intact.** LMDB reuses a page freed by transaction X only
when no reader is older than X (``mdb_find_oldest``). The pin is a reader at
T, so no page that T (or T-1, the other meta page's state) references is
overwritten until the next checkpoint has recorded a newer state. Between
two checkpoints the file therefore grows by at most the pages written in one
interval (a pinned snapshot keeps freed pages from reuse only that long).

**Recovery** (``recover``, before LMDB opens the file for writing): the record
exists only while a writer has the store open (a clean close syncs the file
and removes it). If it exists and was written since the last boot of this
machine (``/proc/sys/kernel/random/boot_id``), the process died but the OS
did not: the page cache held every write, the file is whole as of its last
commit, and nothing is done. Otherwise the machine went down with the store
open: the record's two meta pages are written over the file's, fsynced, and
LMDB opens the state T, whose pages were pinned and synced. The store is then
behind by the commits after T; its applied index says so, and the engine
replays the WAL after it (the WAL releases segments only up to an index a
checkpoint has covered: ``Store.checkpoint()`` returns after step 3).

Before writing the meta pages back, recovery checks that the file holds T's
root pages as recorded: a file that is not this store's (or lost pages of
T) is refused with a clear error rather than overwritten. The check reads
the contents, not the inode, so a data directory copied off a machine that
went down (a disk image, an rsync) recovers the same way.

A read-only open (``Store.open_readonly``) never repairs: it refuses a store
whose record comes from an earlier boot (``require_recovered``).

The record's layout (little-endian), then a CRC-32C of all that precedes it::

    magic "PYKVCKP1" | version u32 | page size u32 | txnid u64 | applied index q
    | root pages crc32c u32 | 0 u32 | boot id 16 bytes | meta page 0 | meta page 1
    | crc32c u32
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lmdb

from pykv import errors
from pykv._binding import crc32c
from pykv.mvcc.defrag import fsync_dir

if TYPE_CHECKING:
    from pykv.mvcc.store import Store

SUFFIX = "-checkpoint"
FORMAT_VERSION = 2
# Format 1 records (written before 2026-11-24) hashed only the free table's
# root: their reader took the main table's root from the wrong offset, past
# the end of the file. They are still read and checked the way they were made.
_LEGACY_FORMAT_VERSION = 1
_MAGIC = b"PYKVCKP1"
_HEADER = struct.Struct("<8sIIQqII16s")
_CRC = struct.Struct("<I")
_PAGE_BYTES_MAX = 1 << 16          # LMDB's largest page size
# LMDB 0.9 meta page: a 16-byte page header, then MDB_meta.
_PAGE_FLAGS = struct.Struct("<H")  # mp_flags at offset 10
_P_META = 0x08
_META_MAGIC = 0xBEEFC0DE
_META_HEAD = struct.Struct("<II")  # mm_magic, mm_version at offset 16
_META_TAIL = struct.Struct("<QQ")  # mm_last_pg, mm_txnid at offset 136
_META_HEAD_AT, _META_TAIL_AT = 16, 136
# md_root of mm_dbs[FREE_DBI] and of mm_dbs[MAIN_DBI]: MDB_meta starts after the
# 16-byte page header with magic, version, address and map size (24 bytes), then
# the two 48-byte MDB_db records, each with md_root at offset 40.
_META_ROOTS = struct.Struct("<Q40xQ")
_META_ROOTS_AT = 80
_NO_PAGE = 0xFFFF_FFFF_FFFF_FFFF  # P_INVALID: an empty table
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

_log = logging.getLogger(__name__)


def record_path(path: str) -> str:
    return path + SUFFIX


def current_boot_id() -> bytes:
    """16 bytes naming this boot of the machine (b"" where unknown: then
    every record is treated as older than the boot, and recovery restores)."""
    try:
        with open(_BOOT_ID_PATH, "rb") as handle:
            text = handle.read().strip().replace(b"-", b"")
        return bytes.fromhex(text.decode())[:16]
    except (OSError, ValueError):
        return b""


@dataclass(frozen=True)
class Record:
    """A checkpoint: the durable state T of a store's file."""

    page_bytes: int
    txnid: int
    applied_index: int
    roots_crc: int  # of T's root pages (``root_pages``), read when T was pinned
    boot_id: bytes
    meta_pages: bytes  # pages 0 and 1, page_bytes each
    version: int = FORMAT_VERSION

    def encode(self) -> bytes:
        body = _HEADER.pack(_MAGIC, self.version, self.page_bytes, self.txnid,
                            self.applied_index, self.roots_crc, 0,
                            self.boot_id.ljust(16, b"\0"))
        body += self.meta_pages
        return body + _CRC.pack(crc32c(body))

    @classmethod
    def decode(cls, raw: bytes, where: str) -> Record:
        if len(raw) < _HEADER.size + _CRC.size:
            raise errors.CorruptionError(f"checkpoint record {where} is truncated "
                                         f"({len(raw)} bytes)", path=where)
        magic, version, page_bytes, txnid, applied, roots_crc, _, boot = \
            _HEADER.unpack_from(raw)
        if magic != _MAGIC:
            raise errors.CorruptionError(f"{where} is not a pykv checkpoint record", path=where)
        if version not in (FORMAT_VERSION, _LEGACY_FORMAT_VERSION):
            raise errors.StorageError(f"checkpoint record {where} has format {version}; this "
                                      f"pykv reads formats {_LEGACY_FORMAT_VERSION} and "
                                      f"{FORMAT_VERSION}")
        if not 512 <= page_bytes <= _PAGE_BYTES_MAX or len(raw) != \
                _HEADER.size + 2 * page_bytes + _CRC.size:
            raise errors.CorruptionError(f"checkpoint record {where}: page size {page_bytes} "
                                         f"does not match its length {len(raw)}", path=where)
        (crc,) = _CRC.unpack_from(raw, len(raw) - _CRC.size)
        if crc != crc32c(raw[:-_CRC.size]):
            raise errors.CorruptionError(f"checkpoint record {where}: checksum mismatch",
                                         path=where)
        pages = raw[_HEADER.size:-_CRC.size]
        if newest_txnid(pages, page_bytes) != txnid:
            raise errors.CorruptionError(f"checkpoint record {where}: its meta pages do not "
                                         f"describe transaction {txnid}", path=where)
        return cls(page_bytes, txnid, applied, roots_crc, boot.rstrip(b"\0"), pages, version)

    @property
    def meta_page(self) -> bytes:
        """The meta page of T itself (the one of the two with its txnid)."""
        first = self.meta_pages[:self.page_bytes]
        return first if meta_txnid(first) == self.txnid else self.meta_pages[self.page_bytes:]


def meta_txnid(page: bytes) -> int | None:
    """The transaction id a meta page records, or None if it is not one."""
    if len(page) < _META_TAIL_AT + _META_TAIL.size:
        return None
    (flags,) = _PAGE_FLAGS.unpack_from(page, 10)
    magic, _version = _META_HEAD.unpack_from(page, _META_HEAD_AT)
    if not flags & _P_META or magic != _META_MAGIC:
        return None
    return _META_TAIL.unpack_from(page, _META_TAIL_AT)[1]


def meta_last_page(page: bytes) -> int:
    return _META_TAIL.unpack_from(page, _META_TAIL_AT)[0]


def root_pages(fd: int, meta: bytes, page_bytes: int,
               version: int = FORMAT_VERSION) -> bytes:
    """The root pages of the free and the main table of the state ``meta``
    describes, read from the file ``fd`` (empty tables have none; a format 1
    record covered the free table's only)."""
    roots = _META_ROOTS.unpack_from(meta, _META_ROOTS_AT)
    if version == _LEGACY_FORMAT_VERSION:
        roots = roots[:1]
    last_page = meta_last_page(meta)
    for root in roots:
        if root != _NO_PAGE and root > last_page:
            raise errors.CorruptionError(f"meta page names root page {root} past its last "
                                         f"page {last_page}")
    return b"".join(os.pread(fd, page_bytes, root * page_bytes)
                    for root in roots if root != _NO_PAGE)


def newest_txnid(pages: bytes, page_bytes: int) -> int | None:
    """The larger transaction id of the two meta pages ``pages`` (the state
    LMDB opens), or None if neither is a meta page."""
    ids = [t for t in (meta_txnid(pages[:page_bytes]), meta_txnid(pages[page_bytes:]))
           if t is not None]
    return max(ids) if ids else None


# --- the record file ---------------------------------------------------------------------


def read_record(path: str) -> Record | None:
    """The checkpoint record of the store at ``path``, or None if it has none."""
    where = record_path(path)
    try:
        with open(where, "rb") as handle:
            raw = handle.read(_HEADER.size + 2 * _PAGE_BYTES_MAX + _CRC.size + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.StorageError(f"cannot read the checkpoint record {where}: {exc}") from exc
    return Record.decode(raw, where)


def write_record(path: str, record: Record) -> None:
    """Replace the record atomically and durably (tmp, fsync, rename, fsync
    of the directory)."""
    where = record_path(path)
    tmp = where + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, record.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, where)
    except OSError as exc:
        raise errors.FatalSyncError(f"cannot write the checkpoint record {where}: {exc}"
                                    ) from exc
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def remove_record(path: str) -> None:
    """Remove the record (and a stale tmp) durably: the file at ``path`` must
    be whole on disk by itself (synced, nothing writing)."""
    where = record_path(path)
    removed = False
    for name in (where + ".tmp", where):
        try:
            os.unlink(name)
            removed = True
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise errors.StorageError(f"cannot remove the checkpoint record {name}: {exc}"
                                      ) from exc
    if removed:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


# --- recovery --------------------------------------------------------------------------------


def recover(path: str, boot_id: bytes | None = None) -> Record | None:
    """Before LMDB opens ``path`` for writing: if its writer was open when
    the machine last went down, put the last checkpoint's meta pages back
    (the store rolls back to it; the caller replays its log after the
    applied index). Returns the record restored, or None when nothing was
    needed. ``boot_id``: this boot's id (default: the machine's); tests pass
    another to play a power loss. No other process may have the store open
    for writing; one that has it open read-only implies no reboot happened
    since, so nothing is restored."""
    record = read_record(path)
    if record is None:
        return None
    boot_id = current_boot_id() if boot_id is None else boot_id
    if record.boot_id and record.boot_id == boot_id:
        return None  # the process died, the OS did not: the file is whole
    where = record_path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.StorageError(f"the checkpoint record {where} describes the MVCC store "
                                  f"{path}, which is missing") from None
    except OSError as exc:
        raise errors.StorageError(f"cannot open the MVCC store {path} to recover it: {exc}"
                                  ) from exc
    try:
        _check_same_file(fd, path, record)
        current = os.pread(fd, 2 * record.page_bytes, 0)
        if current != record.meta_pages:
            os.pwrite(fd, record.meta_pages, 0)
            os.fdatasync(fd)
    except OSError as exc:
        raise errors.FatalSyncError(f"restoring the checkpoint of the MVCC store {path} "
                                    f"failed: {exc}") from exc
    finally:
        os.close(fd)
    _log.warning("the MVCC store %s was open when the machine went down (or kept a write its "
                 "log lost): rolled back to its "
                 "last checkpoint (LMDB transaction %d, applied index %d); the log replays "
                 "the rest", path, record.txnid, record.applied_index)
    return record


def _check_same_file(fd: int, path: str, record: Record) -> None:
    """Refuse to write the record's meta pages into a file that does not
    hold its state T: one put in the store's place by hand, say."""
    where = record_path(path)
    size = os.fstat(fd).st_size
    needed = (max(meta_last_page(record.meta_pages[:record.page_bytes]),
                  meta_last_page(record.meta_pages[record.page_bytes:])) + 1) * record.page_bytes
    if size < needed:
        problem = f"it is shorter ({size} bytes) than that state ({needed} bytes)"
    elif crc32c(root_pages(fd, record.meta_page, record.page_bytes, record.version)) != \
            record.roots_crc:
        problem = "its root pages differ"
    else:
        return
    raise errors.CorruptionError(
        f"the MVCC store {path} does not hold the state its checkpoint record {where} "
        f"describes (LMDB transaction {record.txnid}): {problem}. The file is not the one "
        f"the record was written for, or it lost pages; if {path} was replaced on purpose "
        f"by a file that is whole, remove {where}", path=path)


def require_recovered(path: str) -> None:
    """For read-only opens: refuse a store that its writer has not recovered
    since the machine went down (its file may be inconsistent until then)."""
    record = read_record(path)
    if record is not None and record.boot_id != current_boot_id():
        raise errors.StorageError(f"the MVCC store {path} was open for writing when the "
                                  "machine went down: open it for writing first, which "
                                  "recovers it")


# --- the writer's side -----------------------------------------------------------------------


class Checkpointer:
    """Checkpoints of one writable store (see the module docstring).

    Locks, always taken in this order: ``_checkpoint_lock`` (one checkpoint
    at a time), the store's writer lock, ``_record_lock`` (the record file and
    ``_recorded``). Code holding the writer lock (map growth, defragment,
    close) calls ``checkpoint_locked`` and never takes ``_checkpoint_lock``.
    """

    def __init__(self, store: Store, interval_s: float | None):
        self._store = store
        self.path = store.path
        self.interval_s = interval_s
        self.boot_id = current_boot_id()
        self._checkpoint_lock = threading.Lock()
        self._record_lock = threading.Lock()
        self._pin: lmdb.Transaction | None = None
        self._gen = 0                 # bumped whenever LMDB ended the pin (writer lock held)
        self._recorded = (-1, -1)     # (gen, txnid) of the record on disk
        self._fd = -1
        self._commits_seen = -1
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the protocol -------------------------------------------------------------

    def checkpoint(self) -> int:
        """Make the latest committed state durable and recorded; returns its
        applied index. Must not be called with the writer lock held."""
        with self._checkpoint_lock:
            return self._checkpoint()

    def _checkpoint(self) -> int:
        store = self._store
        with store._write_lock:
            store._check_open()
            self._check_failure()
            pin, txnid, applied, pages, gen = self._capture()
        try:
            self._sync()
            with self._record_lock:
                if gen == self._gen and (gen, txnid) > self._recorded:
                    self._write(txnid, applied, pages)
        except BaseException:
            pin.abort()
            raise
        with store._write_lock:
            # A remap since the capture ended the pin and recorded a newer
            # state under the writer lock; taking the lock waited for that.
            if gen == self._gen:
                old, self._pin = self._pin, pin
                if old is not None:
                    old.abort()
            else:
                pin.abort()  # ended by LMDB already; aborting again is harmless
        return applied

    def exclusive(self) -> threading.Lock:
        """Held (before the writer lock) by whoever closes or replaces the
        environment, so that no checkpoint runs meanwhile."""
        return self._checkpoint_lock

    def checkpoint_locked(self) -> None:
        """The whole checkpoint with the writer lock held (no commit can
        happen): after a remap or on reopening, and before closing."""
        self._check_failure()
        pin, txnid, applied, pages, gen = self._capture()
        try:
            self._sync()
            with self._record_lock:
                self._write(txnid, applied, pages)
        except BaseException:
            pin.abort()
            raise
        old, self._pin = self._pin, pin
        if old is not None:
            old.abort()

    def _capture(self) -> tuple[lmdb.Transaction, int, int, bytes, int]:
        """(Writer lock held.) Pin the latest state; its txnid, applied index
        and meta pages."""
        store = self._store
        if store._deferred is not None:
            # A failed commit lost batches the in-memory applied index
            # counts: no checkpoint may claim them. Else the pin must see
            # every published batch (then the index is the file's).
            store._deferred.check_usable()
            store._deferred.flush()
        pin = store._env.begin()
        try:
            txnid = pin.id()
            page_bytes = store._page_bytes
            pages = os.pread(self._fd, 2 * page_bytes, 0)
            if len(pages) != 2 * page_bytes or newest_txnid(pages, page_bytes) != txnid:
                raise errors.StorageError(
                    f"the meta pages of the MVCC store {self.path} do not describe its last "
                    f"commit (transaction {txnid}): cannot checkpoint it")
        except OSError as exc:
            pin.abort()
            raise errors.StorageError(f"cannot read the meta pages of {self.path}: {exc}"
                                      ) from exc
        except BaseException:
            pin.abort()
            raise
        return pin, txnid, store._applied_index, pages, self._gen

    def _roots_crc(self, pages: bytes) -> int:
        """(T pinned.) The CRC of T's root pages, which no commit changes
        while T is pinned."""
        page_bytes = self._store._page_bytes
        meta = pages[:page_bytes]
        if meta_txnid(meta) != newest_txnid(pages, page_bytes):
            meta = pages[page_bytes:]
        try:
            return crc32c(root_pages(self._fd, meta, page_bytes))
        except OSError as exc:
            raise errors.StorageError(f"cannot read the root pages of {self.path}: {exc}"
                                      ) from exc

    def _sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            # The kernel may have dropped the dirty pages: nothing written
            # since the last checkpoint can be trusted to reach the disk.
            self.failure = errors.FatalSyncError(
                f"fdatasync of the MVCC store {self.path} failed: {exc}")
            raise self.failure from exc

    def _write(self, txnid: int, applied: int, pages: bytes) -> None:
        """(Record lock held.)"""
        self._check_failure()  # after roll_back_on_reopen, the record must stay as it is
        record = Record(self._store._page_bytes, txnid, applied, self._roots_crc(pages),
                        self.boot_id, pages)
        try:
            write_record(self.path, record)
        except errors.FatalSyncError as exc:
            self.failure = exc
            raise
        self._recorded = (self._gen, txnid)

    def roll_back_on_reopen(self, failure: BaseException) -> None:
        """A commit after the recorded state will never be covered by the
        log (a held batch whose WAL fdatasync failed): stop, and make the
        next open restore the recorded state as after a power loss, even
        without a reboot (a record with no boot id reads as older than any).
        Commits after that state never overwrote its pages (the pin)."""
        with self._record_lock:
            if self.failure is None:
                self.failure = failure
            record = read_record(self.path)
            if record is not None and record.boot_id:
                write_record(self.path, dataclasses.replace(record, boot_id=b""))

    def _check_failure(self) -> None:
        if self.failure is not None:
            raise errors.FatalSyncError(f"the MVCC store {self.path} failed earlier and takes "
                                        f"no more writes: {self.failure}")

    # --- the environment's life (writer lock held) ----------------------------------

    def pins_ended(self) -> None:
        """LMDB ended every read transaction (``set_mapsize``): record the
        current state again before any commit can reuse a page."""
        self._pin = None
        self._gen += 1
        self.checkpoint_locked()

    def detach(self) -> None:
        """Before the environment closes (defragment, close): the file must
        be synced already; the record goes (the file is whole by itself)."""
        self._sync()
        if self._pin is not None:
            self._pin.abort()
            self._pin = None
        self._gen += 1
        with self._record_lock:
            remove_record(self.path)
            self._recorded = (self._gen, -1)
        self.close_fd()

    def attach(self) -> None:
        """After the environment is (re)opened on a file that is whole on
        disk: record it before the first commit."""
        self._open_fd()
        self._gen += 1
        self.checkpoint_locked()

    def _open_fd(self) -> None:
        self.close_fd()
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise errors.StorageError(f"cannot open the MVCC store {self.path}: {exc}") from exc

    def close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- the background thread ------------------------------------------------------

    def start(self) -> None:
        if self.interval_s:
            self._thread = threading.Thread(target=self._run, name="pykv-mvcc-checkpoint",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (not from it); a checkpoint in progress finishes."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        store = self._store
        while not self._stop.wait(self.interval_s):
            commits = store._commits
            if commits == self._commits_seen:
                continue
            try:
                self.checkpoint()
            except errors.ClosedError:
                return
            except errors.PykvError:
                _log.exception("checkpoint of the MVCC store %s failed", self.path)
                if self.failure is not None:
                    return
                continue
            except Exception as exc:  # a bug: stop writes loudly rather than pin forever
                _log.critical("checkpoint of the MVCC store %s failed; the store takes no "
                              "more writes", self.path, exc_info=True)
                self.failure = errors.StorageError(f"checkpoint failed: {exc!r}")
                return
            self._commits_seen = commits
