"""The WAL handle: a thin Python face over ``csrc/wal*.c`` (format and rules
in ``pykv/wal/__init__.py``).

Every call crosses into C once; cffi releases the GIL for the call, so a
``sync`` waits for the disk without holding it. Per-record work on the
Python side is limited to packing a batch into four flat buffers.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from pykv import errors
from pykv._binding import check, ffi, lib
from pykv.wal.record import Record

SEGMENT_BYTES_DEFAULT = lib.PYKV_WAL_SEGMENT_BYTES_DEFAULT
PAYLOAD_BYTES_MAX = lib.PYKV_RECORD_PAYLOAD_BYTES_MAX
_POSITION_ALL = lib.PYKV_WAL_POSITION_ALL
#: The most the syncer thread spins for its next request before it sleeps:
#: a lone writer comes back within ~50 us (CPU on a spare core, for a
#: wake-up saved on the writer's critical path); an eighth of it while its
#: waits average more than all of it (many writers; csrc/syncer.c).
SYNCER_IDLE_SPIN_NS = 200_000
_ERROR_BYTES = lib.PYKV_WAL_ERROR_BYTES
_READ_BYTES_DEFAULT = 16 << 20

log = logging.getLogger("pykv.wal")

class _Scratch(threading.local):
    """Per-thread out-parameters and one-record arrays: allocating them per
    call would cost more than the call, and C fills them without the GIL, so
    threads must not share them."""

    def __init__(self) -> None:
        self.err = ffi.new("char[]", _ERROR_BYTES)
        self.pos = ffi.new("uint64_t *")
        self.type = ffi.new("uint8_t[1]")
        self.index = ffi.new("uint64_t[1]")
        self.length = ffi.new("uint32_t[1]")


_tls = _Scratch()


def _scratch() -> tuple[object, object]:
    return _tls.err, _tls.pos


def _text(err) -> str:
    return ffi.string(err).decode("utf-8", "replace")


def _raise(rc: int, what: str, err) -> None:
    """Raise for an error code from the C core, with its message."""
    if rc == lib.PYKV_ETOOLARGE:  # the caller's input, not the storage
        raise ValueError(f"{what}: {_text(err)}")
    check(rc, what, _text(err))


def _name(raw) -> str | None:
    text = ffi.string(raw).decode("utf-8", "replace")
    return text or None


@dataclass(frozen=True)
class RepairReport:
    """What ``repair=True`` cut at a corruption."""

    segment: str  # the segment cut (file name)
    offset: int  # where
    bytes_lost: int  # bytes of data after the cut, later segments included
    records_lost: int  # intact records among them
    segments_set_aside: int  # later segments renamed to *.broken


@dataclass(frozen=True)
class Recovery:
    """What ``WAL.open`` found and did."""

    segments: int
    records: int  # records found (segment heads and carried copies aside)
    first_index: int  # first index of the oldest segment
    last_index: int  # index of the last record; 0 when there is none
    bytes_cut: int  # torn or garbage tail bytes cut from the last segment
    cut_segment: str | None
    cut_offset: int | None
    records_dropped: int  # intact frames beyond a torn hole (written, never synced)
    broken_copy: str | None  # the .broken file kept before cutting
    tmp_removed: int  # leftover *.wal.tmp files removed
    repair: RepairReport | None

    @classmethod
    def _from_c(cls, rec) -> Recovery:
        repair = None
        if rec.repaired:
            repair = RepairReport(_name(rec.repair_segment) or "", rec.repair_offset,
                                  rec.repair_bytes_lost, rec.repair_records_lost,
                                  rec.repair_segments_removed)
        cut = bool(rec.tail_cut)
        return cls(
            segments=rec.segments, records=rec.records, first_index=rec.first_index,
            last_index=rec.last_index, bytes_cut=rec.tail_bytes_cut,
            cut_segment=_name(rec.tail_cut_segment) if cut else None,
            cut_offset=rec.tail_cut_offset if cut else None,
            records_dropped=rec.tail_records_dropped, broken_copy=_name(rec.broken_copy),
            tmp_removed=rec.tmp_removed, repair=repair,
        )


class SegmentInfo(NamedTuple):
    name: str
    seq: int
    first_index: int
    max_index: int  # highest index of its records


class _Batch(NamedTuple):
    count: int
    types: bytes
    indexes: array
    lengths: array
    payload: bytes


def _pack(records: Sequence[tuple[int, int, bytes]] | Iterable) -> _Batch:
    """Flatten (type, index, payload) triples into the buffers C takes."""
    if not isinstance(records, (list, tuple)):
        records = list(records)
    if not records:
        return _Batch(0, b"", array("Q"), array("I"), b"")
    try:
        types, indexes, payloads = zip(*records)
    except (TypeError, ValueError):
        raise TypeError("records must be (type, index, payload) triples") from None
    try:
        type_bytes = bytes(types)
    except (TypeError, ValueError):
        raise ValueError("a record type is not an int in 1..127") from None
    try:
        index_array = array("Q", indexes)
    except (TypeError, OverflowError):
        raise ValueError("a record index is not an int in 0..2**64-1") from None
    try:
        payload = b"".join(payloads)
        length_array = array("I", map(len, payloads))
    except TypeError:
        raise TypeError("a record payload is not bytes-like") from None
    except OverflowError:
        raise errors.StorageError(
            f"a record payload is over the limit of {PAYLOAD_BYTES_MAX} bytes") from None
    return _Batch(len(types), type_bytes, index_array, length_array, payload)


def _check_permissions(path: str) -> None:
    """Warn when the directory is open to other users (a directory the WAL
    creates is 0700; one that existed keeps its mode). As etcd does
    (TOB-ETCD-003): a warning, not a refusal."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        log.warning("WAL directory %s has mode %04o: other users can reach the log; the "
                    "recommended mode is 0700", path, mode)


class WAL:
    """An open write-ahead log. Thread-safe: appends from many threads are
    ordered, and concurrent syncs share fdatasyncs (group commit).

    Use ``WAL.open``. The caller must ``close()`` it (or use ``with``) so
    that the directory lock is dropped promptly; close syncs what was
    appended.
    """

    def __init__(self, handle, path: str, recovery: Recovery):
        self._h = handle
        self._syncer: Any = None  # pykv_syncer *, started by the first sync_start
        self._syncer_lock = threading.Lock()
        self.path = path
        self.recovery = recovery

    @classmethod
    def open(cls, path: str | os.PathLike, segment_bytes: int = SEGMENT_BYTES_DEFAULT,
             repair: bool = False, unsafe_no_fsync: bool = False) -> WAL:
        """Open the WAL in directory ``path``, creating it when missing and
        recovering what is there (see the module docstring).

        Raises ``CorruptionError`` (with ``path`` and ``offset``) for
        corruption that is not a torn tail, unless ``repair``;
        ``LockedError`` when another handle has it open. ``unsafe_no_fsync``
        is for tests only: a machine crash then loses data.
        """
        path = os.path.abspath(os.fspath(path))
        options = ffi.new("pykv_wal_options *", {
            "segment_bytes": segment_bytes, "repair": int(repair),
            "unsafe_no_fsync": int(unsafe_no_fsync)})
        out = ffi.new("pykv_wal **")
        rec = ffi.new("pykv_wal_recovery *")
        err = ffi.new("char[]", _ERROR_BYTES)
        rc = lib.pykv_wal_open(os.fsencode(path), options, out, rec, err, _ERROR_BYTES)
        if rc == lib.PYKV_ECORRUPT:
            segment = _name(rec.corrupt_segment)
            raise errors.CorruptionError(
                _text(err), path=os.path.join(path, segment) if segment else path,
                offset=rec.corrupt_offset)
        if rc:
            _raise(rc, f"opening the WAL in {path}", err)
        handle = ffi.gc(out[0], lib.pykv_wal_free)
        _check_permissions(path)
        return cls(handle, path, Recovery._from_c(rec))

    # --- writing --------------------------------------------------------

    def append(self, records: Sequence[tuple[int, int, bytes]]) -> int:
        """Append a batch of (type, index, payload) records in one call and
        return the log position after it (for ``sync``). Types are 1..127;
        payloads at most 64 MiB each. Nothing is appended on error."""
        return self._append(lib.pykv_wal_append, records)

    def _append(self, function, records) -> int:
        scratch = _tls
        if type(records) is list and len(records) == 1 and type(records[0]) is tuple \
                and len(records[0]) == 3 and type(records[0][2]) is bytes:
            # One record, the common case of concurrent writers: skip packing
            # (their Python time is serialized by the GIL; see bench/).
            record_type, index, payload = records[0]
            try:
                scratch.type[0] = record_type
            except (OverflowError, TypeError):
                raise ValueError("a record type is not an int in 1..127") from None
            try:
                scratch.index[0] = index
            except (OverflowError, TypeError):
                raise ValueError("a record index is not an int in 0..2**64-1") from None
            if len(payload) > PAYLOAD_BYTES_MAX:
                raise ValueError(f"a record payload of {len(payload)} bytes is over the limit "
                                 f"of {PAYLOAD_BYTES_MAX} bytes")
            scratch.length[0] = len(payload)
            rc = function(self._h, 1, scratch.type, scratch.index, scratch.length, payload,
                          len(payload), scratch.pos, scratch.err, _ERROR_BYTES)
        else:
            batch = _pack(records)
            rc = function(self._h, batch.count, batch.types,
                          ffi.from_buffer("uint64_t[]", batch.indexes),
                          ffi.from_buffer("uint32_t[]", batch.lengths), batch.payload,
                          len(batch.payload), scratch.pos, scratch.err, _ERROR_BYTES)
        if rc:
            _raise(rc, "appending to the WAL", scratch.err)
        return scratch.pos[0]

    def sync(self, position: int | None = None) -> None:
        """Return once everything appended up to ``position`` (default: all
        appended so far) is durable. Concurrent callers share fdatasyncs."""
        err, _ = _scratch()
        rc = lib.pykv_wal_sync(self._h, _POSITION_ALL if position is None else position, err,
                               _ERROR_BYTES)
        if rc:
            _raise(rc, "syncing the WAL", err)

    def sync_start(self, position: int) -> None:
        """Have a background thread make everything appended up to
        ``position`` durable, and return at once; ``sync_wait(position)``
        returns when that is done. One caller at a time, positions that
        never decrease (the embedded engine's log leader)."""
        syncer = self._syncer
        if syncer is None:
            syncer = self._open_syncer()
        lib.pykv_syncer_start(syncer, position)

    def sync_wait(self, position: int, spin_ns: int = 0) -> None:
        """After ``sync_start(position)``: return once it is durable, or
        raise the sync's error. Spins up to ``spin_ns`` (GIL released)
        before sleeping: waking a sleeping thread costs more on a VM."""
        if self._syncer is None:
            raise RuntimeError("sync_wait without sync_start")
        err, _ = _scratch()
        rc = lib.pykv_syncer_wait(self._syncer, position, spin_ns, err, _ERROR_BYTES)
        if rc:
            _raise(rc, "syncing the WAL", err)

    def _open_syncer(self) -> Any:
        with self._syncer_lock:
            if self._syncer is None:
                err, _ = _scratch()
                out = ffi.new("pykv_syncer **")
                rc = lib.pykv_syncer_open(self._h, SYNCER_IDLE_SPIN_NS, out, err, _ERROR_BYTES)
                if rc:
                    _raise(rc, "starting the WAL syncer", err)
                self._syncer = out[0]
            return self._syncer

    def append_write(self, records: Sequence[tuple[int, int, bytes]]) -> int:
        """``append``, and the records are written to the segment file (not
        yet synced) when this returns: a crash of the process can no longer
        lose them, only one of the machine. For callers that act on records
        before they are durable (the embedded engine's held store batches)."""
        return self._append(lib.pykv_wal_append_write, records)

    def append_sync(self, records: Sequence[tuple[int, int, bytes]]) -> int:
        """``append`` then ``sync`` of exactly those records, in one call."""
        return self._append(lib.pykv_wal_append_sync, records)

    def release(self, below_index: int) -> int:
        """Remove the oldest segments whose records all have indexes below
        ``below_index`` (never the one being written); returns how many.
        The caller must not be reading those segments."""
        err, _ = _scratch()
        removed = ffi.new("uint64_t *")
        rc = lib.pykv_wal_release(self._h, below_index, removed, err, _ERROR_BYTES)
        if rc:
            _raise(rc, "releasing WAL segments", err)
        return removed[0]

    # --- reading --------------------------------------------------------

    def read(self, from_index: int = 0, max_records: int = 4096,
             max_bytes: int = _READ_BYTES_DEFAULT) -> Iterator[list[Record]]:
        """Yield lists of records appended so far (see the module docstring
        for where reading starts), each list at most ``max_records`` records
        and ``max_bytes`` of payload (unless one record is larger). The
        caller must not release the segments being read."""
        err = ffi.new("char[]", _ERROR_BYTES)
        out = ffi.new("pykv_wal_reader **")
        rc = lib.pykv_wal_reader_open(self._h, from_index, out, err, _ERROR_BYTES)
        if rc:
            _raise(rc, "reading the WAL", err)
        reader = ffi.gc(out[0], lib.pykv_wal_reader_free)
        batch = ffi.new("pykv_wal_batch *")
        make = Record._make
        while True:
            rc = lib.pykv_wal_reader_next(reader, max_records, max_bytes, batch, err,
                                          _ERROR_BYTES)
            if rc:
                if rc == lib.PYKV_ECORRUPT:
                    raise errors.CorruptionError(_text(err), path=self.path)
                _raise(rc, "reading the WAL", err)
            count = batch.count
            if not count:
                return
            data = ffi.unpack(ffi.cast("char *", batch.payload), batch.payload_bytes)
            lengths = ffi.unpack(batch.lengths, count)
            ends = list(accumulate(lengths))
            payloads = map(data.__getitem__, map(slice, [0, *ends[:-1]], ends))
            yield list(map(make, zip(ffi.unpack(batch.types, count),
                                     ffi.unpack(batch.indexes, count), payloads)))

    # --- state ----------------------------------------------------------

    def _info(self):
        info = ffi.new("pykv_wal_info *")
        lib.pykv_wal_get_info(self._h, info)
        return info

    @property
    def last_index(self) -> int:
        """Index of the last record appended (or found at open); 0 if none."""
        return self._info().last_index

    @property
    def first_index(self) -> int:
        """First index of the oldest segment kept."""
        return self._info().first_index

    @property
    def appended_position(self) -> int:
        return self._info().appended_position

    @property
    def durable_position(self) -> int:
        return self._info().durable_position

    @property
    def closed(self) -> bool:
        return bool(self._info().closed)

    def segments(self) -> list[SegmentInfo]:
        """The segments, oldest first; the last one is being written."""
        out = []
        name = ffi.new("char[]", 64)
        seq, first, top = ffi.new("uint64_t *"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
        while lib.pykv_wal_segment(self._h, len(out), name, 64, seq, first, top) == lib.PYKV_OK:
            out.append(SegmentInfo(ffi.string(name).decode(), seq[0], first[0], top[0]))
        return out

    def stats(self) -> dict[str, int]:
        """Counters since open: appends, records, bytes, writes, syncs
        (fdatasyncs), sync_ns_total, sync_ns_max, synced_records_max (the
        most records one fdatasync covered), rotations."""
        stats = ffi.new("pykv_wal_stats *")
        lib.pykv_wal_get_stats(self._h, stats)
        return {field: getattr(stats, field) for field, _ in ffi.typeof(stats[0]).fields}

    # --- closing --------------------------------------------------------

    def close(self) -> None:
        """Write and sync what was appended, close the files and drop the
        lock. Idempotent; later calls on the handle raise ``ClosedError``."""
        with self._syncer_lock:
            syncer, self._syncer = self._syncer, None
        if syncer is not None:
            lib.pykv_syncer_close(syncer)
        err = ffi.new("char[]", _ERROR_BYTES)
        rc = lib.pykv_wal_close(self._h, err, _ERROR_BYTES)
        if rc:
            _raise(rc, "closing the WAL", err)

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self._info()
        state = "closed" if info.closed else ("fatal" if info.fatal else "open")
        return (f"<WAL {self.path} {state} segments={info.segments} "
                f"last_index={info.last_index}>")
