"""Helpers of the power-loss tests (``test_checkpoint.py`` and
``tests/embedded/test_power_loss.py``): the state of a store, and crash
images of its file."""

from __future__ import annotations

import random

from pykv.mvcc import Store
from tests.mvcc import lmdb_pages

OTHER_BOOT = b"\x42" * 16  # a boot id that is not this machine's: plays a power loss


def dump(store: Store) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every table's contents, from one read transaction on the latest state."""
    with store._env.begin() as txn:
        return {name: list(txn.cursor(db)) for name, db in store._tables.by_name.items()}


def referenced_by_both_metas(image: bytes, page_bytes: int) -> set[int]:
    """The pages that either state of the image's meta pages references."""
    read = lmdb_pages.image_reader(image, page_bytes)
    return set(lmdb_pages.referenced_pages(read, read(0))) | \
        set(lmdb_pages.referenced_pages(read, read(1)))


def pages_of(image: bytes, page_bytes: int) -> int:
    return -(-len(image) // page_bytes)


def changed_pages(before: bytes, after: bytes, page_bytes: int) -> list[int]:
    return [pg for pg in range(pages_of(after, page_bytes))
            if after[pg * page_bytes:(pg + 1) * page_bytes]
            != before[pg * page_bytes:(pg + 1) * page_bytes]]


def crash_image(before: bytes, after: bytes, pages: list[int], page_bytes: int,
                rng: random.Random) -> bytes:
    """``before`` with ``pages`` of ``after`` on top; some torn (half new)."""
    image = bytearray(before)
    for pg in pages:
        start = pg * page_bytes
        new = after[start:start + page_bytes]
        if rng.random() < 0.15:
            cut = rng.randrange(1, page_bytes // 512) * 512  # sector-sized tear
            old = bytes(before[start:start + page_bytes]).ljust(page_bytes, b"\0")
            new = new[:cut] + old[cut:]
        if len(image) < start:
            image.extend(bytes(start - len(image)))
        image[start:start + page_bytes] = new
    return bytes(image)
