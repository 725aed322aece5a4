"""A small read-only reader of bbolt files (etcd's backend), in pure Python.

Enough to iterate a bucket's (key, value) pairs in key order, forwards or
backwards; nothing is ever written. The format (facts from etcd-io/bbolt
``internal/common/page.go``, ``meta.go``, ``bucket.go``, ``db.go``), all
integers little-endian:

- The file is a sequence of pages of ``page_size`` bytes. Every page starts
  with a 16-byte header ``id u64 | flags u16 | count u16 | overflow u32``;
  flags are 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist. A page with
  ``overflow`` n spans n + 1 consecutive pages (large values).
- Pages 0 and 1 are meta pages; after the header: ``magic u32 (0xED0CDAED) |
  version u32 (2) | page_size u32 | flags u32 | root bucket (root pgid u64,
  sequence u64) | freelist pgid u64 | pgid u64 (high-water mark: pages in
  use) | txid u64 | checksum u64``, the checksum being FNV-64a of the 56
  bytes before it. A reader takes the valid meta with the higher txid.
- A branch page holds ``count`` elements ``pos u32 | ksize u32 | pgid u64``,
  a leaf page ``flags u32 | pos u32 | ksize u32 | vsize u32``; ``pos`` is the
  offset of the key from the element itself, the value follows the key.
- A leaf element with flag 0x01 is a bucket: its value is ``root pgid u64 |
  sequence u64``, and when root is 0 an inline leaf page follows (a small
  bucket stored inside its parent's value). The meta's root bucket holds the
  top-level buckets.

Every offset, length and page number read from the file is checked against
the page or the file before use; a damaged file raises ``CorruptionError``
naming the page. The freelist is not read (a reader does not need it).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Iterator

from pykv import errors

MAGIC = 0xED0CDAED
VERSION = 2

PAGE_HEADER = struct.Struct("<QHHI")                # id, flags, count, overflow
META = struct.Struct("<IIIIQQQQQQ")                 # see the module doc
META_CHECKSUMMED_BYTES = META.size - 8
BRANCH_ELEMENT = struct.Struct("<IIQ")              # pos, ksize, pgid
LEAF_ELEMENT = struct.Struct("<IIII")               # flags, pos, ksize, vsize
BUCKET_HEADER = struct.Struct("<QQ")                # root pgid, sequence

FLAG_BRANCH = 0x01
FLAG_LEAF = 0x02
FLAG_META = 0x04
FLAG_FREELIST = 0x10
BUCKET_LEAF_FLAG = 0x01
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF

PAGE_BYTES_MIN = 512            # smaller pages cannot hold a meta page and a few elements
PAGE_BYTES_MAX = 1 << 20
#: Page sizes tried for meta page 1 when meta page 0 is too damaged to say.
PAGE_BYTES_GUESSES = (4096, 8192, 16384, 32768, 65536, 2048, 1024, 512)
#: A B+tree deeper than this is a cycle in a damaged file (bbolt's trees of
#: billions of keys stay under 10 levels).
DEPTH_MAX = 64

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1


def fnv64a(data: bytes) -> int:
    """FNV-1a, 64 bits: the checksum of a bbolt meta page."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _U64
    return h


def looks_like_bbolt(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file, at least 20) starts with a
    bbolt meta page (flags and magic; the checksum is checked on open)."""
    if len(head) < PAGE_HEADER.size + 4:
        return False
    _id, flags, _count, _overflow = PAGE_HEADER.unpack_from(head)
    return flags == FLAG_META and struct.unpack_from("<I", head, PAGE_HEADER.size)[0] == MAGIC


@dataclass(frozen=True)
class Meta:
    page_size: int
    root: int           # page of the root bucket's tree
    freelist: int
    high_water: int     # pages in use (bbolt's meta.pgid)
    txid: int


@dataclass(frozen=True)
class Bucket:
    """A bucket: its tree starts at page ``root``, or, when ``root`` is 0,
    is the leaf page ``inline`` stored in the parent's value."""
    name: bytes
    root: int
    inline: bytes | None = None


class BoltFile:
    """A bbolt file opened read-only (memory-mapped). Use as a context
    manager, or call ``close()``; nothing read from it may be used after."""

    def __init__(self, path: str, size_bytes: int | None = None):
        """``size_bytes``: how much of the file is the database (an etcd
        snapshot has a SHA-256 appended; pass the size without it)."""
        self.path = path
        try:
            with open(path, "rb") as handle:
                file_bytes = os.fstat(handle.fileno()).st_size
                self.size_bytes = file_bytes if size_bytes is None else min(size_bytes, file_bytes)
                if self.size_bytes < PAGE_HEADER.size + META.size:
                    raise errors.CorruptionError(
                        f"{path}: {self.size_bytes} bytes is too small for a bbolt file",
                        path=path)
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise errors.StorageError(f"cannot read {path}: {exc.strerror}") from None
        try:
            self.meta = self._choose_meta()
        except BaseException:
            self._map.close()
            raise

    def close(self) -> None:
        self._map.close()

    def __enter__(self) -> BoltFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db_size_bytes(self) -> int:
        """The database's size as bbolt reports it (``Tx.Size``: the pages
        in use), what ``etcdctl snapshot status`` shows as total size."""
        return self.meta.high_water * self.meta.page_size

    # --- meta pages ---------------------------------------------------------------------

    def _corrupt(self, page: int | None, what: str) -> errors.CorruptionError:
        where = f"page {page}" if page is not None else "file"
        offset = None if page is None else page * self.meta.page_size
        return errors.CorruptionError(f"bbolt file {self.path}, {where}: {what}",
                                      path=self.path, offset=offset)

    def _read_meta(self, offset: int) -> Meta | str:
        """The meta page at ``offset``, or why it is not a valid one."""
        if offset + PAGE_HEADER.size + META.size > self.size_bytes:
            return "beyond the end of the file"
        _id, flags, _count, _overflow = PAGE_HEADER.unpack_from(self._map, offset)
        body = offset + PAGE_HEADER.size
        (magic, version, page_size, _flags, root, _sequence, freelist, high_water, txid,
         checksum) = META.unpack_from(self._map, body)
        if flags != FLAG_META:
            return f"not a meta page (flags {flags:#x})"
        if magic != MAGIC:
            return f"bad magic {magic:#x}"
        if version != VERSION:
            return f"bbolt format version {version}, this reader knows {VERSION}"
        if fnv64a(self._map[body:body + META_CHECKSUMMED_BYTES]) != checksum:
            return "checksum mismatch"
        if not PAGE_BYTES_MIN <= page_size <= PAGE_BYTES_MAX:
            return f"page size {page_size} out of range"
        return Meta(page_size, root, freelist, high_water, txid)

    def _choose_meta(self) -> Meta:
        first = self._read_meta(0)
        sizes = [first.page_size] if isinstance(first, Meta) else []
        if not sizes:
            # Meta 0 is damaged: its page size field may still be right.
            raw_size = struct.unpack_from("<I", self._map, PAGE_HEADER.size + 8)[0]
            sizes = [raw_size] if PAGE_BYTES_MIN <= raw_size <= PAGE_BYTES_MAX else []
            sizes += [s for s in PAGE_BYTES_GUESSES if s not in sizes]
        second: Meta | str = "not found"
        for size in sizes:
            second = self._read_meta(size)
            if isinstance(second, Meta) and second.page_size == size:
                break
            if isinstance(second, Meta):
                second = f"says page size {second.page_size} but sits at offset {size}"
        valid = [m for m in (first, second) if isinstance(m, Meta)]
        if not valid:
            raise errors.CorruptionError(
                f"bbolt file {self.path}: no valid meta page (page 0: {first}; page 1: "
                f"{second})", path=self.path, offset=0)
        meta = max(valid, key=lambda m: m.txid)
        self.meta = meta
        if meta.high_water * meta.page_size > self.size_bytes:
            raise self._corrupt(None, f"truncated: {self.size_bytes} bytes, but its meta page "
                                      f"(txid {meta.txid}) uses {meta.high_water} pages of "
                                      f"{meta.page_size} bytes")
        if meta.root < 2 or meta.root >= meta.high_water:
            raise self._corrupt(None, f"root page {meta.root} out of range (2 to "
                                      f"{meta.high_water - 1})")
        return meta

    # --- pages --------------------------------------------------------------------------

    def _page(self, pgid: int) -> bytes:
        """Page ``pgid`` with its overflow pages, checked: in range, its
        header names it, and it is a branch or leaf page."""
        meta = self.meta
        if not 2 <= pgid < meta.high_water:
            raise self._corrupt(pgid, f"page number out of range (2 to {meta.high_water - 1})")
        start = pgid * meta.page_size
        page_id, flags, _count, overflow = PAGE_HEADER.unpack_from(self._map, start)
        if page_id != pgid:
            raise self._corrupt(pgid, f"its header says page {page_id}")
        if flags not in (FLAG_BRANCH, FLAG_LEAF):
            raise self._corrupt(pgid, f"expected a branch or leaf page, found flags {flags:#x}")
        if pgid + overflow >= meta.high_water:
            raise self._corrupt(pgid, f"{overflow} overflow pages run past the last page")
        return self._map[start:start + (overflow + 1) * meta.page_size]

    def _elements(self, page: bytes, pgid: int, inline_in: bytes | None = None
                  ) -> tuple[int, list[tuple]]:
        """(flags, elements) of a branch or leaf page: for a leaf, (key,
        value, is_bucket); for a branch, (key, child pgid). ``inline_in``:
        the bucket whose inline page this is (for messages)."""
        where = pgid if inline_in is None else None

        def bad(what: str) -> errors.CorruptionError:
            if inline_in is not None:
                return errors.CorruptionError(
                    f"bbolt file {self.path}, inline bucket {inline_in!r}: {what}",
                    path=self.path)
            return self._corrupt(where, what)

        if len(page) < PAGE_HEADER.size:
            raise bad("shorter than a page header")
        _id, flags, count, _overflow = PAGE_HEADER.unpack_from(page)
        element = BRANCH_ELEMENT if flags == FLAG_BRANCH else LEAF_ELEMENT
        if flags not in (FLAG_BRANCH, FLAG_LEAF):
            raise bad(f"expected a branch or leaf page, found flags {flags:#x}")
        table_end = PAGE_HEADER.size + count * element.size
        if table_end > len(page):
            raise bad(f"{count} elements do not fit in {len(page)} bytes")
        out: list[tuple] = []
        if flags == FLAG_BRANCH:
            for i in range(count):
                at = PAGE_HEADER.size + i * element.size
                pos, ksize, child = element.unpack_from(page, at)
                if at + pos + ksize > len(page):
                    raise bad(f"element {i}: key runs past the page")
                out.append((page[at + pos:at + pos + ksize], child))
        else:
            for i in range(count):
                at = PAGE_HEADER.size + i * element.size
                eflags, pos, ksize, vsize = element.unpack_from(page, at)
                key_at = at + pos
                if key_at + ksize + vsize > len(page):
                    raise bad(f"element {i}: key and value run past the page")
                out.append((page[key_at:key_at + ksize],
                            page[key_at + ksize:key_at + ksize + vsize],
                            bool(eflags & BUCKET_LEAF_FLAG)))
        return flags, out

    # --- buckets ------------------------------------------------------------------------

    def root_bucket(self) -> Bucket:
        return Bucket(b"", self.meta.root)

    def bucket(self, name: bytes, parent: Bucket | None = None) -> Bucket | None:
        """The bucket ``name`` in ``parent`` (default: the top level), or None."""
        for key, value, is_bucket in self.items(parent or self.root_bucket()):
            if key == name:
                return self._bucket_of(key, value) if is_bucket else None
            if key > name:
                return None
        return None

    def buckets(self, parent: Bucket | None = None) -> Iterator[Bucket]:
        """The buckets directly in ``parent`` (default: the top level), in order."""
        for key, value, is_bucket in self.items(parent or self.root_bucket()):
            if is_bucket:
                yield self._bucket_of(key, value)

    def _bucket_of(self, name: bytes, value: bytes) -> Bucket:
        if len(value) < BUCKET_HEADER.size:
            raise errors.CorruptionError(
                f"bbolt file {self.path}: bucket {name!r} has a {len(value)}-byte header",
                path=self.path)
        root, _sequence = BUCKET_HEADER.unpack_from(value)
        if root == 0:
            return Bucket(name, 0, value[BUCKET_HEADER.size:])
        return Bucket(name, root)

    def items(self, bucket: Bucket, reverse: bool = False
              ) -> Iterator[tuple[bytes, bytes, bool]]:
        """(key, value, is_bucket) of every element of ``bucket``, in key
        order (``reverse``: descending). Raises ``CorruptionError`` on a
        damaged page, on keys out of order, or on a tree deeper than
        ``DEPTH_MAX`` (a cycle)."""
        previous: bytes | None = None
        for key, value, is_bucket in self._walk(bucket, reverse):
            if previous is not None and (key <= previous if not reverse else key >= previous):
                raise errors.CorruptionError(
                    f"bbolt file {self.path}, bucket {bucket.name!r}: keys out of order "
                    f"({previous!r} then {key!r})", path=self.path)
            previous = key
            yield key, value, is_bucket

    def _walk(self, bucket: Bucket, reverse: bool) -> Iterator[tuple[bytes, bytes, bool]]:
        if bucket.root == 0:
            flags, elements = self._elements(bucket.inline or b"", 0, inline_in=bucket.name)
            if flags != FLAG_LEAF:
                raise errors.CorruptionError(
                    f"bbolt file {self.path}, inline bucket {bucket.name!r}: not a leaf page",
                    path=self.path)
            yield from reversed(elements) if reverse else elements
            return
        # Depth-first with an explicit stack of (page's elements, next index).
        stack: list[tuple[int, list[tuple], int]] = []

        def push(pgid: int) -> None:
            if len(stack) >= DEPTH_MAX:
                raise self._corrupt(pgid, f"tree deeper than {DEPTH_MAX} levels (a cycle?)")
            flags, elements = self._elements(self._page(pgid), pgid)
            if reverse:
                elements.reverse()
            stack.append((flags, elements, 0))

        push(bucket.root)
        while stack:
            flags, elements, i = stack.pop()
            if flags == FLAG_LEAF:
                yield from elements
                continue
            if i < len(elements):
                stack.append((flags, elements, i + 1))
                push(elements[i][1])
