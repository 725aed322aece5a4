"""pykv's write-ahead log: durable Raft state on disk, with its hot path in C.

Usage (the contract the engine builds on)::

    from pykv.wal import WAL, RecordType

    wal = WAL.open(path, segment_bytes=64 << 20, repair=False)
    wal.recovery                 # what open() found and did (Recovery)
    pos = wal.append([(RecordType.ENTRY, 7, b"..."), ...])   # one C call per batch
    wal.sync(pos)                # returns once all up to pos is durable
    wal.append_sync(records)     # both, in one C call
    pos = wal.append_write(records)  # appended and in the file (not synced): a process
                                     # crash keeps it; sync_start/sync_wait(pos) finish it
    for batch in wal.read(from_index=0): ...   # lists of Record(type, index, payload)
    wal.release(below_index)     # drop segments wholly below (after a snapshot)
    wal.close()

The implementation is ``csrc/frame.c`` and ``csrc/wal*.c``; ``record.py`` is a
pure-Python reference codec of the same format for the tests. What follows is
the on-disk format, version 1. The code is kept in step with it, and
``tests/wal/test_golden.py`` pins the bytes.

Directory
---------
A WAL is a directory (created with mode 0700) of *segment files* named
``%016x-%016x.wal``: the segment's sequence number, then the index of its
first record (the first record appended into it; 0 for the very first
segment), both in lower-case hex, so that sorting by name sorts by sequence.
Sequence numbers are consecutive; a gap refuses to open. An open handle
holds an exclusive ``flock`` on the directory: a second handle, in this
process or another, gets ``LockedError``.

A new segment is made as ``<name>.tmp``: preallocated to ``segment_bytes``
(``posix_fallocate``, so the unwritten part reads as zeros), its head
written, fsynced, then renamed to its name and the directory fsynced.
Leftover ``*.wal.tmp`` files (a creation that never finished) are removed at
open. Before a new segment gets its name, the previous one is *sealed*: its
data written and fdatasynced, the file truncated to the end of its data and
fsynced. So every segment but the last ends exactly where its data ends, and
only the last one can have a torn tail. A segment runs over
``segment_bytes`` only when a single batch is larger than a segment (a batch
never spans two segments).

Frames
------
Every record is one *frame*; frames follow each other without gaps, each at
an offset that is a multiple of 8, so the first 8-byte word of a frame never
straddles a 512-byte sector and is written whole or not at all. Integers are
little-endian::

    offset  size  field
    0       4     payload_len   bytes of payload, at most 64 MiB (67108864)
    4       1     type          1..127 the caller's; 128 = segment header; 0 never
    5       1     flags         bit 0 (CARRIED): a copy carried into a segment head;
                                the other bits are zero
    6       2     reserved      zero
    8       8     index         the record's index (opaque to the WAL)
    16      4     reserved      zero
    20      4     crc           CRC-32C (Castagnoli, as in etcd) of: the segment's
                                sequence number (8 bytes), the frame's offset
                                (8 bytes), frame bytes 0..19, and frame bytes
                                24..end (payload and padding)
    24      n     payload
    24+n    0..7  zero padding to a multiple of 8

Since type is never 0, a frame's first word is never zero: an all-zero word
where a frame would start is the end of the data. Folding the sequence
number and the offset into the CRC binds each frame to its place, so a frame
that was shifted, copied from another segment or left from an earlier write
fails its check. etcd gets the same from a CRC chained through all records;
the position-bound CRC also lets recovery check any frame on its own, which
is what tells a torn tail from a corruption in the middle (below).

Segment head
------------
A segment starts with a *segment header* frame (type 128, index = the
segment's first index) whose 40-byte payload is::

    0   8  magic "PYKVWAL\\0"
    8   4  format version (1)
    12  4  digest of the previous segment (0 for the first segment): CRC-32C
           chained over the stored CRCs (4 bytes each) of all its frames, from
           its header to its last frame
    16  8  sequence number (as in the name)
    24  8  first index (as in the name)
    32  8  reserved, zero

then, with the CARRIED flag, a copy of the latest METADATA, SNAPSHOT and STATE
record appended before the segment was created (those present, in that
order). These *sticky* types are carried forward so that releasing old
segments never loses the latest hard state, snapshot marker or metadata.
Readers skip the carried copies except at the head of the first segment they
read. The digest link is checked at open: it chains the segments as etcd's
running CRC chains records, so a segment (or any frame in it) replaced by
one from another log breaks the chain.

Writing and durability
----------------------
``append`` encodes a whole batch into a buffer under a mutex (one C call).
``sync(pos)`` returns once an fdatasync that *began* after every frame up to
``pos`` was handed to write(2) has finished. One thread at a time holds the
I/O role: it takes the whole buffer (appends go on into a second one),
checks every frame's CRC again (STYLE habit 9), writes and fdatasyncs, then
publishes the durable position. Callers that find the role taken queue as
waiters, each on its own semaphore, in C and without the GIL, and are woken
once: when their records are durable, or to take the role over. A leader
that is running leads up to four rounds in a row rather than hand the role
to a sleeping thread, and when the last fdatasync covered several writers it
gives them up to half an fdatasync (200 us at most) to append again before
it takes the buffer, so that one fdatasync covers them all (group commit;
bench/results/wal.md has the figures). Without sync calls, appends write
their frames out themselves once 1 MiB has gathered.

A failed write or fdatasync makes the handle refuse all further writes
(``FatalSyncError``): the kernel may have dropped the dirty pages, so only a
reopen, which reads what really is on disk, is safe. ``unsafe_no_fsync=True``
skips every fsync/fdatasync: for tests of the layers above only, as etcd's
``--unsafe-no-fsync``; a machine crash then loses data.

Failpoints at the durability boundaries (``wal_before_write``,
``wal_after_write``, ``wal_before_sync``, ``wal_after_sync``,
``wal_before_rename``, ``wal_after_rename``, ``wal_before_cut``,
``wal_before_unlink``) are armed by ``PYKV_FAILPOINTS``, read at open:
``name=action[@hit],...`` with action ``exit`` (status 86), ``kill``
(SIGKILL), ``abort`` or ``error`` (the operation fails as with EIO), on
every hit or only the given one.

Recovery
--------
``WAL.open`` checks every frame of every segment. In each segment the scan
stops at the first frame that does not check, at offset X:

- only zero bytes from X to the end of the file: the clean end of the data;
- in any segment but the last: corruption (sealed segments end exactly at
  their data);
- in the last segment, the rest is searched for intact frames:

  - none, and the frame at X has a damaged header, runs past the end of the
    file, or has a 512-byte sector piece that is all zeros: a *torn tail*
    (a crash during a write, or garbage after the data). It is cut at X;
  - none, and the frame at X has a sound header, lies wholly in the file,
    fails its CRC and has no all-zero sector piece: that record was written
    whole and changed afterwards: corruption;
  - intact frames follow, and some sector piece of [X, first intact frame)
    is all zeros: a torn write whose later pages reached the disk and
    earlier ones did not, so none of it had been synced: cut at X, and the
    intact frames beyond are reported (``records_dropped``);
  - intact frames follow and no such piece: corruption in the middle.

A cut first keeps a copy of the segment's data as ``<name>.broken`` (or
``<name>.<k>.broken``), fsynced, then truncates the file at X and
preallocates it again, so that the tail reads as zeros before anything is
appended (etcd's ZeroToEnd: a torn tail must never be followed by new
frames). ``Recovery`` reports how many bytes were cut. Corruption refuses to
open with a ``CorruptionError`` naming the segment and the offset; with
``repair=True`` it is cut there instead (same .broken copy), later segments
are renamed ``<name>.broken``, and ``Recovery.repair`` says what was lost.
Known limit, shared with etcd: a zeroed sector in the middle of the last
segment followed by intact frames looks like a torn write and is cut.

Reading
-------
``read(from_index)`` starts at the newest segment whose first index is at
most ``from_index`` (etcd's searchIndex), yields that segment's carried
sticky records, then every record in file order, except that it skips the
leading non-sticky records whose index is below ``from_index``. Records
with a repeated index are all returned, in file order: a later ENTRY with
the same index replaces the earlier one, and the WAL does not interpret
that.
"""

from pykv.wal.log import WAL, Recovery, RepairReport, SegmentInfo
from pykv.wal.record import Record, RecordType

__all__ = ["WAL", "Record", "RecordType", "Recovery", "RepairReport", "SegmentInfo"]
