"""Power loss through the engine: the store's commits are not fsynced, so a
power loss leaves the store file as of its last checkpoint plus any subset
of the pages written since; the WAL, fdatasynced per write, holds every
acknowledged write. Each such image must reopen with every acknowledged
write there (the store rolls back to its checkpoint, the WAL replays the
rest), at the same revisions.
"""

from __future__ import annotations

import pathlib
import random
import shutil

import pykv
from pykv.embedded import put_op
from pykv.mvcc import Store, checkpoint
from tests.mvcc.power_loss import OTHER_BOOT, changed_pages, crash_image, dump

STORE = pathlib.Path("member") / "snap" / "db"


def write_some(db, rng: random.Random, count: int) -> None:
    for _ in range(count):
        key = "key/%03d" % rng.randrange(300)
        roll = rng.random()
        if roll < 0.1:
            db.delete(key, prefix=True)
        elif roll < 0.2:
            db.txn().then(*(put_op(f"{key}/{i}", rng.randbytes(50))
                            for i in range(3))).commit()
        else:
            db.put(key, rng.randbytes(rng.choice([10, 500, 5000])))


def everything(db) -> tuple[int, list[tuple]]:
    result = db.range(b"\0", b"\0")
    return result.revision, [(kv.key, kv.value, kv.create_revision, kv.mod_revision,
                              kv.version) for kv in result.kvs]


def test_power_loss_images_reopen_with_every_acknowledged_write(tmp_path, monkeypatch):
    rng = random.Random(3)
    live = tmp_path / "live"
    db = pykv.open(live, checkpoint_interval_s=None)  # checkpoints when the test says
    try:
        write_some(db, rng, 200)
        store = db._engine.store
        store.checkpoint()
        checkpointed = (dump(store), store.applied_index)
        image = (live / STORE).read_bytes()
        record = checkpoint.read_record(str(live / STORE))
        write_some(db, rng, 200)  # acknowledged: in the WAL, not in a checkpoint
        expected = everything(db)
        crashed = tmp_path / "crashed"
        shutil.copytree(live, crashed)  # the WAL as fsynced, the store file as written
        page_bytes = store._page_bytes
    finally:
        db.close()
    final = (crashed / STORE).read_bytes()
    changed = changed_pages(image, final, page_bytes)
    assert {0, 1} <= set(changed)
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    subsets = [[], changed] + [[pg for pg in changed if rng.random() < share]
                               for share in (0.1, 0.5, 0.9) for _ in range(3)]
    for number, pages in enumerate(subsets):
        directory = tmp_path / f"image{number}"
        shutil.copytree(crashed, directory)
        path = directory / STORE
        path.write_bytes(crash_image(image, final, pages, page_bytes, rng))
        pathlib.Path(checkpoint.record_path(str(path))).write_bytes(record.encode())
        if number % 2:
            # The store alone first (every other image): exactly the checkpoint.
            with Store.open(str(path), checkpoint_interval_s=None) as store:
                assert (dump(store), store.applied_index) == checkpointed, f"image {number}"
        # The engine: the WAL replays every acknowledged write on top.
        with pykv.open(directory) as reopened:
            assert everything(reopened) == expected, f"image {number}"
