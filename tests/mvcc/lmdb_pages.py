"""A reader of LMDB 0.9's page format, for the checkpoint tests: which pages
of a file image a state (a meta page) references.

Written from LMDB's documented layout (``mdb.c``: ``MDB_page``,
``MDB_node``, ``MDB_db``, ``MDB_meta``); little-endian, 64-bit page
numbers. The store uses no duplicate-key tables, so F_DUPDATA is refused.
"""

from __future__ import annotations

import struct
from typing import Callable

PAGE_HEADER = 16                       # PAGEHDRSZ
P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
P_INVALID = 0xFFFF_FFFF_FFFF_FFFF
NODE_HEADER = struct.Struct("<HHHH")   # mn_lo, mn_hi, mn_flags, mn_ksize
DB = struct.Struct("<IHHQQQQQ")        # MDB_db: pad, flags, depth, 3 page counts, entries, root
META_DBS_AT = PAGE_HEADER + 24         # after mm_magic, mm_version, mm_address, mm_mapsize


def image_reader(image: bytes, page_bytes: int) -> Callable[[int], bytes]:
    """Pages of a file image, by number."""
    def read(pgno: int) -> bytes:
        start = pgno * page_bytes
        if start + page_bytes > len(image):
            raise ValueError(f"page {pgno} is past the end of the image ({len(image)} bytes)")
        return image[start:start + page_bytes]
    return read


def referenced_pages(read: Callable[[int], bytes], meta: bytes) -> dict[int, bytes]:
    """Every page (number -> contents) that the state of meta page ``meta``
    reaches through ``read``: the free table's tree, the main table's tree,
    every named table's tree and their overflow pages (not the free pages
    the free table lists)."""
    assert struct.unpack_from("<H", meta, 10)[0] & P_META, "not a meta page"
    found: dict[int, bytes] = {}
    for slot in range(2):  # FREE_DBI, MAIN_DBI
        root = DB.unpack_from(meta, META_DBS_AT + slot * DB.size)[-1]
        _walk(read, root, found, named=slot == 1)
    return found


def _walk(read: Callable[[int], bytes], root: int, found: dict[int, bytes], named: bool
          ) -> None:
    stack = [] if root == P_INVALID else [root]
    while stack:
        pgno = stack.pop()
        if pgno in found:
            raise ValueError(f"page {pgno} is reached twice")
        data = found[pgno] = read(pgno)
        flags = struct.unpack_from("<H", data, 10)[0]
        if flags & P_LEAF2:
            continue  # fixed-size keys only, no children
        lower = struct.unpack_from("<H", data, 12)[0]
        for i in range((lower - PAGE_HEADER) // 2):
            offset = struct.unpack_from("<H", data, PAGE_HEADER + 2 * i)[0]
            lo, hi, node_flags, key_size = NODE_HEADER.unpack_from(data, offset)
            if flags & P_BRANCH:
                stack.append(lo | hi << 16 | node_flags << 32)
                continue
            assert flags & P_LEAF, f"page {pgno} has flags {flags:#x}"
            value_at = offset + NODE_HEADER.size + key_size
            if node_flags & F_DUPDATA:
                raise ValueError("duplicate-key tables are not supported")
            if node_flags & F_BIGDATA:
                first = struct.unpack_from("<Q", data, value_at)[0]
                head = read(first)
                count = struct.unpack_from("<I", head, 12)[0]
                for overflow in range(first, first + count):
                    if overflow in found:
                        raise ValueError(f"overflow page {overflow} is reached twice")
                    found[overflow] = head if overflow == first else read(overflow)
            elif node_flags & F_SUBDATA and named:
                sub_root = DB.unpack_from(data, value_at)[-1]
                _walk(read, sub_root, found, named=False)
