"""Checkpoint durability (``pykv.mvcc.checkpoint``): commits are not fsynced,
and a power loss rolls the store back to its last checkpoint, whole.

The power-loss images: the file as of a checkpoint, then NOSYNC commits go
on; a power loss may leave on disk any subset of the pages written since
(including the meta pages, and pages torn half-way). Each such image, with
the checkpoint record, must reopen at exactly the checkpointed state. And
the reason it can: no page that the checkpointed state references is
written before the next checkpoint (checked page by page, with a control
run without the pin showing that the check bites).
"""

from __future__ import annotations

import os
import pathlib
import random
import subprocess
import sys
import threading
import time

import lmdb
import pytest

from pykv import errors
from pykv.mvcc import Store, checkpoint, store as store_module
from tests.mvcc.requests import CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest
from tests.mvcc import lmdb_pages
from tests.mvcc.power_loss import (OTHER_BOOT, changed_pages, crash_image, dump,
                                    pages_of, referenced_by_both_metas)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def workload(store: Store, rng: random.Random, batches: int) -> None:
    """Overwrites, deletes and compaction over a few hundred keys, with values
    from a few bytes to overflow pages: commits that free and reuse pages."""
    for _ in range(batches):
        with store.write(store.applied_index + 1) as w:
            for _ in range(rng.randint(1, 6)):
                key = b"key/%04d" % rng.randrange(400)
                if rng.random() < 0.1:
                    w.delete_range(DeleteRangeRequest(key, key + b"\xff"))
                else:
                    w.put(PutRequest(key, rng.randbytes(rng.choice([8, 200, 1500, 6000]))))
            # Past the last compaction only: batches of deletes that found
            # nothing take no revision, and compacting again is refused.
            if rng.random() < 0.03 and w.revision - 40 > store.compact_revision:
                w.compact(CompactionRequest(w.revision - 40))
        while store.compact_pending:
            store.compact_step()


class Captured:
    """The file, the state and the record as of each checkpoint record write."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.store: Store | None = None
        self.last: tuple[bytes, dict, bytes] | None = None
        real = checkpoint.write_record

        def write_record(path: str, record: checkpoint.Record) -> None:
            real(path, record)
            if self.store is not None and not self.store._closed:
                with open(path, "rb") as handle:
                    image = handle.read()
                with open(checkpoint.record_path(path), "rb") as handle:
                    self.last = (image, dump(self.store), handle.read())

        monkeypatch.setattr(checkpoint, "write_record", write_record)


def run_to_power_loss(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, seed: int,
                      grow: bool = False, commit_interval_s: float | None = None):
    """A store through workload A, a checkpoint, workload B (NOSYNC commits;
    with ``grow``, map growth in between, each one a checkpoint; with
    ``commit_interval_s``, batches committed together). Returns
    (last checkpoint's file image, its state, its record, the file as B
    left it, page size)."""
    if grow:
        monkeypatch.setattr(store_module, "_MIN_MAP_BYTES", 256 << 10)
    captured = Captured(monkeypatch)
    path = str(tmp_path / "live" / "db")
    rng = random.Random(seed)
    store = Store.open(path, checkpoint_interval_s=None, map_bytes=256 << 10 if grow else None,
                       commit_interval_s=commit_interval_s)
    captured.store = store
    try:
        workload(store, rng, 150)
        store.checkpoint()
        grown_from = store._env.info()["map_size"]
        workload(store, rng, 150)
        if grow:
            assert store._env.info()["map_size"] > grown_from
        with open(path, "rb") as handle:
            final = handle.read()
        page_bytes = store._page_bytes
        image, state, record = captured.last
    finally:
        captured.store = None
        store.close()
    return image, state, record, final, page_bytes


@pytest.mark.parametrize("seed, grow, commit_interval_s",
                         [(1, False, None), (2, False, None), (3, True, None),
                          (4, False, 0.001), (5, True, 0.001)])
def test_no_page_of_the_checkpointed_state_is_written_before_the_next_checkpoint(
        tmp_path, monkeypatch, seed, grow, commit_interval_s):
    image, _state, _record, final, page_bytes = run_to_power_loss(tmp_path, monkeypatch, seed,
                                                                  grow, commit_interval_s)
    referenced = referenced_by_both_metas(image, page_bytes)
    changed = set(changed_pages(image, final, page_bytes))
    assert {0, 1} & changed, "the workload after the checkpoint committed nothing"
    assert changed & set(range(2, pages_of(image, page_bytes))), \
        "no page of the old file was reused: the test shows nothing"
    assert not referenced & changed


def test_without_the_pin_commits_overwrite_the_checkpointed_state(tmp_path, monkeypatch):
    """The control: what the page check above catches when nothing pins."""
    real_capture = checkpoint.Checkpointer._capture

    def capture_without_pin(self):
        pin, *rest = real_capture(self)
        pin.abort()  # no reader holds the checkpointed state
        return (pin, *rest)

    monkeypatch.setattr(checkpoint.Checkpointer, "_capture", capture_without_pin)
    image, _state, _record, final, page_bytes = run_to_power_loss(tmp_path, monkeypatch, 1)
    referenced = referenced_by_both_metas(image, page_bytes)
    assert referenced & set(changed_pages(image, final, page_bytes))


@pytest.mark.parametrize("seed, grow, commit_interval_s",
                         [(11, False, None), (12, True, None), (13, True, 0.001)])
def test_every_power_loss_image_reopens_at_the_checkpoint_exactly(tmp_path, monkeypatch, seed,
                                                                    grow, commit_interval_s):
    image, state, record_bytes, final, page_bytes = run_to_power_loss(
        tmp_path, monkeypatch, seed, grow, commit_interval_s)
    record = checkpoint.Record.decode(record_bytes, "captured")
    changed = changed_pages(image, final, page_bytes)
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    rng = random.Random(seed)
    subsets = [[], changed, [0, 1], [pg for pg in changed if pg > 1]]
    subsets += [[pg for pg in changed if rng.random() < share]
                for share in (0.05, 0.2, 0.5, 0.8, 0.95) for _ in range(5)]
    for number, pages in enumerate(subsets):
        path = tmp_path / f"image{number}" / "db"
        path.parent.mkdir()
        path.write_bytes(crash_image(image, final, pages, page_bytes, rng))
        pathlib.Path(checkpoint.record_path(str(path))).write_bytes(record_bytes)
        store = Store.open(str(path), checkpoint_interval_s=None)
        try:
            assert dump(store) == state, f"image {number} ({len(pages)} pages of {len(changed)})"
            assert store.applied_index == record.applied_index
            # The state is whole enough to go on: its free list is right.
            workload(store, rng, 20)
            after = dump(store)
        finally:
            store.close()
        with Store.open(str(path), checkpoint_interval_s=None) as store:
            assert dump(store) == after


# --- the record and the modes --------------------------------------------------------------


def test_a_clean_close_removes_the_record_and_a_running_store_has_one(store_path):
    store = Store.open(store_path, checkpoint_interval_s=None)
    with store.write(1) as w:
        w.put(PutRequest(b"a", b"1"))
    applied = store.checkpoint()
    record = checkpoint.read_record(store_path)
    assert applied == 1 and record.applied_index == 1
    assert record.txnid == store._env.info()["last_txnid"]
    assert record.boot_id == checkpoint.current_boot_id()
    store.close()
    assert checkpoint.read_record(store_path) is None


def crash_child(store_path: str, script: str) -> None:
    """Run ``script`` with ``st`` an open store at ``store_path``; it ends
    with os._exit (no close: a killed process)."""
    code = ("import os, sys\n"
            "from pykv.mvcc import Store\n"
            "from tests.mvcc.requests import PutRequest\n"
            "st = Store.open(sys.argv[1], checkpoint_interval_s=None)\n" + script +
            "os._exit(9)\n")
    proc = subprocess.run([sys.executable, "-c", code, store_path], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr


CRASH_AFTER_CHECKPOINT = (
    "for i in range(1, 41):\n"
    "    with st.write(i) as w:\n"
    "        w.put(PutRequest(b'k%d' % i, b'v'))\n"
    "    if i == 20:\n"
    "        st.checkpoint()\n")


def test_a_killed_process_loses_no_commit(store_path):
    """Same boot: the page cache held every commit, nothing rolls back."""
    crash_child(store_path, CRASH_AFTER_CHECKPOINT)
    assert checkpoint.read_record(store_path).applied_index == 20
    with Store.open(store_path) as store:
        assert store.applied_index == 40
        assert store.range(RangeRequest(b"k", b"l", count_only=True)).count == 40


def test_after_a_reboot_the_store_rolls_back_to_its_last_checkpoint(store_path, monkeypatch):
    crash_child(store_path, CRASH_AFTER_CHECKPOINT)
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    with pytest.raises(errors.StorageError, match="open it for writing first"):
        Store.open_readonly(store_path)
    with Store.open(store_path) as store:
        assert store.applied_index == 20 and store.revision == 21
        assert store.range(RangeRequest(b"k", b"l", count_only=True)).count == 20
        with store.write(21) as w:  # the caller's log replay goes on from here
            w.put(PutRequest(b"k21", b"v"))


def test_a_copy_of_the_files_recovers_like_the_original(store_path, tmp_path, monkeypatch):
    """A data directory copied off a machine that went down (new inodes)."""
    crash_child(store_path, CRASH_AFTER_CHECKPOINT)
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    copy = tmp_path / "copy" / "db"
    copy.parent.mkdir()
    for suffix in ("", checkpoint.SUFFIX):
        copy.with_name("db" + suffix).write_bytes(pathlib.Path(store_path + suffix).read_bytes())
    with Store.open(str(copy)) as store:
        assert store.applied_index == 20


@pytest.mark.parametrize("value_bytes, problem", [(1, "shorter"),
                                                   (20_000, "root pages differ")])
def test_a_record_of_another_file_is_refused_with_advice(store_path, tmp_path, monkeypatch,
                                                         value_bytes, problem):
    crash_child(store_path, CRASH_AFTER_CHECKPOINT)
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    other = str(tmp_path / "other" / "db")
    with Store.open(other, durability="commit") as store:  # another store, put in place
        for i in range(1, 41):
            with store.write(i) as w:
                w.put(PutRequest(b"other%d" % i, b"v" * value_bytes))
    os.replace(other, store_path)
    with pytest.raises(errors.CorruptionError, match=f"does not hold the state.*{problem}.*"
                                                     "remove"):
        Store.open(store_path)
    os.unlink(checkpoint.record_path(store_path))
    with Store.open(store_path) as store:
        assert store.get(b"other40") is not None


def test_a_damaged_record_is_refused(store_path, monkeypatch):
    crash_child(store_path, CRASH_AFTER_CHECKPOINT)
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    where = checkpoint.record_path(store_path)
    raw = bytearray(pathlib.Path(where).read_bytes())
    raw[100] ^= 0x01
    pathlib.Path(where).write_bytes(bytes(raw))
    with pytest.raises(errors.CorruptionError, match="checksum mismatch"):
        Store.open(store_path)


def test_other_modes_drop_a_record_left_by_a_checkpoint_run(store_path):
    crash_child(store_path, CRASH_AFTER_CHECKPOINT)
    with Store.open(store_path, durability="commit") as store:
        assert store.applied_index == 40
        assert checkpoint.read_record(store_path) is None  # stale once this run commits


def test_the_pin_bounds_file_growth_between_checkpoints(tmp_path):
    """A pinned state keeps its pages; the file grows by what is written
    between two checkpoints, not more."""
    value = b"x" * 1000

    def run(path: str, checkpoint_every: int | None, durability: str = "checkpoint") -> int:
        with Store.open(path, durability=durability, checkpoint_interval_s=None) as store:
            for i in range(1, 2001):
                with store.write(i) as w:
                    w.put(PutRequest(b"key/%03d" % (i % 100), value))
                    if i % 500 == 0:
                        w.compact(CompactionRequest(w.revision - 10))
                while store.compact_pending:
                    store.compact_step()
                if checkpoint_every and i % checkpoint_every == 0:
                    store.checkpoint()
            return store.size_bytes

    unpinned = run(str(tmp_path / "commit" / "db"), None, durability="commit")
    checkpointed = run(str(tmp_path / "a" / "db"), 50)
    pinned_forever = run(str(tmp_path / "b" / "db"), None)
    # A one-put commit copies well under 16 pages (leaves and branches of
    # four tables, the main and free tables).
    assert checkpointed < unpinned + 50 * 16 * 4096
    assert pinned_forever > 10 * checkpointed


def test_background_checkpoints_follow_commits(store_path):
    """With an interval, a thread records new states without being asked."""
    import threading

    with Store.open(store_path, checkpoint_interval_s=0.01) as store:
        recorded = threading.Event()
        real = store._checkpointer._write

        def write(*args):
            real(*args)
            if checkpoint.read_record(store_path).applied_index == 7:
                recorded.set()

        store._checkpointer._write = write
        with store.write(7) as w:
            w.put(PutRequest(b"a", b"1"))
        assert recorded.wait(30)


def test_durability_arguments_are_checked(store_path):
    with pytest.raises(ValueError, match="durability must be one of"):
        Store.open(store_path, durability="sometimes")
    with pytest.raises(ValueError, match="contradicts"):
        Store.open(store_path, durability="checkpoint", sync=True)
    with pytest.raises(ValueError, match="sync must be True or False"):
        Store.open(store_path, sync="yes")


def test_a_failed_fdatasync_stops_writes(store_path, monkeypatch):
    store = Store.open(store_path, checkpoint_interval_s=None)
    try:
        with store.write(1) as w:
            w.put(PutRequest(b"a", b"1"))

        def failing(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(checkpoint.os, "fdatasync", failing)
        with pytest.raises(errors.FatalSyncError, match="fdatasync"):
            store.checkpoint()
        monkeypatch.undo()
        with pytest.raises(errors.FatalSyncError, match="no more writes"):
            store.write(2)
    finally:
        store.close()
    assert checkpoint.read_record(store_path) is not None  # not a clean close


def test_defragment_records_the_new_file(store_path, monkeypatch):
    store = Store.open(store_path, checkpoint_interval_s=None)
    try:
        workload(store, random.Random(5), 100)
        store.defragment()
        record = checkpoint.read_record(store_path)
        assert record.txnid == store._env.info()["last_txnid"]  # the new file's
        assert record.applied_index == store.applied_index
        state = dump(store)
        applied = store.applied_index
    finally:
        store._checkpointer.stop()
        store._closed = True  # leave it as a crash would (no close)
        store._env.close()
        store._checkpointer.close_fd()
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    with Store.open(store_path) as store:
        assert store.applied_index == applied and dump(store) == state


def test_a_restored_snapshot_is_checkpointed(store, tmp_path):
    import io

    with store.write(1) as w:
        w.put(PutRequest(b"a", b"1"))
    buffer = io.BytesIO()
    store.write_snapshot(buffer)
    buffer.seek(0)
    path = str(tmp_path / "restored" / "db")
    with Store.restore_snapshot(buffer, path) as restored:
        assert restored.get(b"a").value == b"1"
        assert checkpoint.read_record(path).applied_index == restored.applied_index


def test_a_new_store_is_created_whole(tmp_path):
    """Creation goes through a synced file renamed into place: nothing is
    left under another name, and the file opens as an LMDB environment."""
    path = tmp_path / "new" / "db"
    Store.open(str(path)).close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["db", "db-lock"]
    env = lmdb.open(str(path), subdir=False, readonly=True, max_dbs=20)
    env.close()


@pytest.mark.parametrize("commit_interval_s", [None, 0.001])
def test_concurrent_commits_checkpoints_and_map_growth_keep_each_checkpoint_whole(
        store_path, monkeypatch, commit_interval_s):
    """A writer commits (growing the map now and then) while the background
    thread and another thread checkpoint: at each record write, every page
    of the previously recorded states is as it was when recorded; and the
    file, left as a crash leaves it, recovers to the last record exactly."""
    import threading

    monkeypatch.setattr(store_module, "_MIN_MAP_BYTES", 256 << 10)
    violations: list[str] = []
    guarded: dict[int, bytes] = {}
    records = [0]
    real_write_record = checkpoint.write_record

    def write_record(path: str, record: checkpoint.Record) -> None:
        size = record.page_bytes
        fd = os.open(path, os.O_RDONLY)
        try:
            def read(pgno: int) -> bytes:
                return os.pread(fd, size, pgno * size)
            for pgno, data in guarded.items():
                if read(pgno) != data:
                    violations.append(f"page {pgno} changed before record {records[0] + 1}")
            guarded.clear()
            for meta in (record.meta_pages[:size], record.meta_pages[size:]):
                guarded.update(lmdb_pages.referenced_pages(read, meta))
        finally:
            os.close(fd)
        real_write_record(path, record)
        records[0] += 1

    monkeypatch.setattr(checkpoint, "write_record", write_record)
    store = Store.open(store_path, checkpoint_interval_s=0.002, map_bytes=256 << 10,
                       commit_interval_s=commit_interval_s)
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(9)
        try:
            for i in range(1, 4001):
                with store.write(i) as w:
                    w.put(PutRequest(b"k%06d" % i, rng.randbytes(rng.choice([10, 300, 5000]))))
                    w.put(PutRequest(b"hot", b"%d" % i))
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            stop.set()

    def checkpointer() -> None:
        try:
            while not stop.is_set():
                store.checkpoint()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=checkpointer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert not violations, violations[:5]
    assert records[0] >= 8 and store._env.info()["map_size"] > 1 << 20
    store._checkpointer.stop()
    with store._write_lock:  # the process dies: no close, no last checkpoint
        if store._deferred is not None:  # (and what the parent held is lost)
            store._deferred.abort(RuntimeError("the process died"))
            store._deferred.stop()
        store._closed = True
        store._env.close()
        store._checkpointer.close_fd()
    last = checkpoint.read_record(store_path)
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    with Store.open(store_path, checkpoint_interval_s=None) as store:
        applied = store.applied_index
        assert applied == last.applied_index
        assert store.range(RangeRequest(b"k", b"l", count_only=True)).count == applied
        assert store.get(b"hot").value == b"%d" % applied


def _meta_roots_by_layout(meta: bytes) -> list[int]:
    """md_root of the free and the main table, located from LMDB's MDB_meta
    layout (16-byte page header; magic, version, address, map size; two
    48-byte MDB_db with md_root at 40), independently of checkpoint.py."""
    import struct

    free_root = struct.unpack_from("<Q", meta, 16 + 24 + 40)[0]
    main_root = struct.unpack_from("<Q", meta, 16 + 24 + 48 + 40)[0]
    return [root for root in (free_root, main_root) if root != 0xFFFF_FFFF_FFFF_FFFF]


def test_the_record_covers_the_root_pages_of_both_tables(store_path):
    from pykv._binding import crc32c

    store = Store.open(store_path, checkpoint_interval_s=None)
    try:
        workload(store, random.Random(5), 60)
        store.checkpoint()
        record = checkpoint.read_record(store_path)
        roots = _meta_roots_by_layout(record.meta_page)
        assert len(roots) == 2  # the main table holds the named tables: never empty here
        with open(store_path, "rb") as handle:
            pages = b"".join(os.pread(handle.fileno(), record.page_bytes,
                                      root * record.page_bytes) for root in roots)
        assert len(pages) == 2 * record.page_bytes
        assert record.roots_crc == crc32c(pages) and record.version == 2
    finally:
        store.close()


def test_a_format_1_record_still_recovers(store_path, monkeypatch):
    # Written by pykv before format 2: its CRC covers the free table's root only.
    from pykv._binding import crc32c

    crash_child(store_path, CRASH_AFTER_CHECKPOINT)
    record = checkpoint.read_record(store_path)
    with open(store_path, "rb") as handle:
        free_root = _meta_roots_by_layout(record.meta_page)[0]
        legacy_crc = crc32c(os.pread(handle.fileno(), record.page_bytes,
                                     free_root * record.page_bytes))
    legacy = checkpoint.Record(record.page_bytes, record.txnid, record.applied_index,
                               legacy_crc, record.boot_id, record.meta_pages, version=1)
    pathlib.Path(checkpoint.record_path(store_path)).write_bytes(legacy.encode())
    monkeypatch.setattr(checkpoint, "current_boot_id", lambda: OTHER_BOOT)
    with Store.open(store_path) as store:
        assert store.applied_index == 20


def test_an_unexpected_checkpoint_error_stops_writes_rather_than_pinning_forever(store_path):
    # A checkpoint thread that died quietly left its pin in place: the file grew
    # by every commit's pages (2.4 GB under etcdctl check perf --load=l).
    store = Store.open(store_path, checkpoint_interval_s=0.01)
    try:
        failed = threading.Event()

        def broken() -> int:
            failed.set()
            raise RuntimeError("a bug")

        store._checkpointer.checkpoint = broken
        with store.write(1) as w:
            w.put(PutRequest(b"a", b"1"))
        assert failed.wait(30)
        deadline = time.monotonic() + 30
        while store._checkpointer.failure is None:
            assert time.monotonic() < deadline
            failed.wait(0.01)
        with pytest.raises(errors.FatalSyncError, match="no more writes"):
            store.write(2)
    finally:
        store.close()
