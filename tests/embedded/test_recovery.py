"""Reopening: what a restart reads back, snapshots of the log, and the
directories ``pykv.open`` refuses to guess about."""

from __future__ import annotations

import os
import pathlib

import pytest

import pykv
from pykv import errors
from pykv.engine import layout
from pykv.engine.identity import cluster_id_for, default_member
from pykv.engine.raftlog import load
from pykv.wal import WAL, RecordType


def test_reopen_keeps_every_key_and_continues_revisions_and_the_log(db_path):
    with pykv.open(db_path) as db:
        for i in range(30):
            db.put(f"k{i}", f"v{i}")
        before = db.status()
    with pykv.open(db_path) as db:
        after = db.status()
        assert after.revision == before.revision
        assert after.raft_term == before.raft_term + 1  # a restart wins a new term
        assert after.raft_index == before.raft_index + 1  # its empty entry
        assert db.range("k", prefix=True).count == 30
        assert db.put("k30", "v").revision == before.revision + 1


def test_a_clean_close_leaves_a_snapshot_marker_at_the_last_entry(db_path):
    with pykv.open(db_path) as db:
        for i in range(10):
            db.put(f"k{i}", "v")
        last = db.status().raft_index
    with WAL.open(layout.DataDir(str(db_path)).wal) as wal:
        state = load(wal)
    assert state.snapshot is not None and state.snapshot.index == last
    assert state.hard_state.commit == last
    assert state.entries == []  # nothing after the marker: a reopen replays nothing


def test_snapshots_release_old_wal_segments(db_path):
    value = b"x" * 20_000
    with pykv.open(db_path, wal_segment_bytes=1 << 20, snapshot_count=10) as db:
        for i in range(300):  # about 6 MB of WAL
            db.put(f"k{i % 20}", value)
        segments = db.status().wal_segments
    assert segments <= 3, f"{segments} WAL segments kept after snapshots"
    with pykv.open(db_path) as db:
        assert db.get("k19").value == value


def test_a_torn_wal_tail_is_cut_and_the_data_before_it_kept(db_path):
    with pykv.open(db_path) as db:
        for i in range(5):
            db.put(f"k{i}", "v")
    wal_dir = layout.DataDir(str(db_path)).wal
    last = sorted(os.listdir(wal_dir))[-1]
    with open(os.path.join(wal_dir, last), "r+b") as segment:
        data = segment.read()
        # Past the last frame (whose payload may end in zeros), in the
        # preallocated zeros: garbage as a crash mid-write leaves it.
        garbage_at = len(data.rstrip(b"\0")) + 64
        segment.seek(garbage_at - garbage_at % 8)
        segment.write(b"\x55" * 100)
    with pykv.open(db_path) as db:
        assert db.range("k", prefix=True).count == 5
        db.put("k5", "v")


def test_a_directory_whose_wal_is_gone_is_refused(db_path):
    with pykv.open(db_path) as db:
        db.put("k", "v")
    wal_dir = layout.DataDir(str(db_path)).wal
    for name in os.listdir(wal_dir):
        os.unlink(os.path.join(wal_dir, name))
    with pytest.raises(errors.CorruptionError, match="WAL of this directory is missing"):
        pykv.open(db_path)


def test_a_directory_of_a_several_member_cluster_is_refused(db_path):
    data_dir = layout.prepare(str(db_path))
    member_id, _ = default_member()
    with WAL.open(data_dir.wal) as wal:
        from pykv.engine.raftlog import encode_metadata

        two = cluster_id_for([member_id, member_id + 1])
        wal.append_sync([(RecordType.METADATA, 0, encode_metadata(member_id, two, "default"))])
    with pytest.raises(errors.StorageError, match="one-member data directories only"):
        pykv.open(db_path)
    with pytest.raises(errors.StorageError):  # and it left nothing locked or half-open
        pykv.open(db_path)


def test_a_failed_open_releases_the_lock(db_path):
    test_a_directory_whose_wal_is_gone_is_refused(db_path)
    data_dir = layout.DataDir(str(db_path))
    lock = layout.DirectoryLock(data_dir)
    lock.acquire()  # would raise LockedError if the failed open still held it
    lock.release()


def test_a_snapshot_restores_with_pykv_snapshot_restore_into_a_directory_that_opens(db_path,
                                                                                   tmp_path):
    import subprocess
    import sys

    with pykv.open(db_path) as db:
        for i in range(50):
            db.put(f"k{i:02d}", f"v{i}")
        db.delete("k07")
        revision = db.status().revision
        digest = db.hash_kv().hash
        size = db.snapshot(tmp_path / "snap.db")
    assert (tmp_path / "snap.db").stat().st_size == size and size % 512 == 32
    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    status = subprocess.run([sys.executable, "-m", "pykv", "snapshot", "status",
                             str(tmp_path / "snap.db"), "-w", "json"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert '"revision": %d' % revision in status.stdout and '"totalKey": 49' in status.stdout
    restored = subprocess.run([sys.executable, "-m", "pykv", "snapshot", "restore",
                               str(tmp_path / "snap.db"), "--data-dir", str(tmp_path / "new")],
                              cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert restored.returncode == 0, restored.stderr
    with pykv.open(tmp_path / "new") as db:
        assert db.status().revision == revision
        assert db.hash_kv().hash == digest
        assert db.get("k07") is None and db.get("k49").value == b"v49"
        db.put("k50", "after")


def test_a_damaged_snapshot_file_is_refused(db, tmp_path):
    from pykv.engine import restore

    db.put("k", "v")
    db.snapshot(tmp_path / "snap.db")
    data = bytearray((tmp_path / "snap.db").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "bad.db").write_bytes(bytes(data))
    with pytest.raises(errors.CorruptionError, match="SHA-256 mismatch"):
        restore.read_snapshot_file(str(tmp_path / "bad.db"))


def test_defragment_gives_back_what_a_compacted_mass_delete_left(db_path):
    import time

    from pykv.embedded import put_op

    with pykv.open(db_path) as db:
        for j in range(0, 20_000, 100):
            db.txn().then(*(put_op(b"p/%06d" % i, b"v" * 100) for i in range(j, j + 100))).commit()
        db.put("kept", "1")
        db.delete("p/", prefix=True)
        db.compact(db.status().revision)
        while db._engine.store.compact_pending:  # history goes in the background
            time.sleep(0.01)
        before, after = db.defragment()
        store_file = db._engine.store.path
        assert before > 2 * after
        assert os.path.getsize(store_file) == after
        assert db.get("kept").value == b"1"
        assert db.range("p/", prefix=True).count == 0
        assert db.put("next", "2").revision == db.status().revision
    with pykv.open(db_path) as db:  # and it reopens as it was
        assert db.get("kept").value == b"1" and db.get("next").value == b"2"
