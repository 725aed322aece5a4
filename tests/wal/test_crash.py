"""Crash consistency.

1. A child process appends and syncs from several threads and is killed
   (SIGKILL at a random moment, or by a failpoint at a durability boundary)
   over and over; after each reopen every record whose append_sync had
   returned is present and intact, and what is there is a per-thread prefix.
2. Power-loss crash states (ALICE-style): after each sync, anything written
   later may have reached the disk sector by sector, in any subset. Every
   such state must open (never "corrupt"), keep every acknowledged record,
   and hold only whole records.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys

import pytest

from pykv.wal import WAL, RecordType

from wal_helpers import child_env, entries, payload_for, read_all, repo_root, segment_files

HERE = pathlib.Path(__file__).resolve().parent
THREADS = 3
SEGMENT_BYTES = 32 << 10
FAILPOINTS = ["wal_before_write", "wal_after_write", "wal_before_sync", "wal_after_sync",
              "wal_before_rename", "wal_after_rename"]


def run_child_until_killed(path: pathlib.Path, rng: random.Random) -> dict[int, int]:
    """Start the child, kill it, return the highest acknowledged k per thread."""
    env = child_env()
    env["PYTHONPATH"] += os.pathsep + str(HERE)
    if rng.random() < 0.5:
        point = rng.choice(FAILPOINTS)
        hits = rng.randint(1, 3) if "rename" in point else rng.randint(1, 200)
        env["PYKV_FAILPOINTS"] = f"{point}=kill@{hits}"
    child = subprocess.Popen(
        [sys.executable, str(HERE / "crash_child.py"), str(path), str(THREADS),
         str(SEGMENT_BYTES)], cwd=repo_root(), env=env, stdout=subprocess.PIPE)
    acked: dict[int, int] = {}
    try:
        # A failpoint may fire while open() creates the first segment, before
        # "ready": a crash like any other, with nothing acknowledged.
        if child.stdout.readline() != b"ready\n":
            child.wait(timeout=60)
            assert child.returncode in (-signal.SIGKILL, 86), child.returncode
            return acked
        budget = rng.randint(1, 400)
        for line in child.stdout:
            if not line.endswith(b"\n"):
                break  # cut off by the kill: not an acknowledgment we can trust
            t, k = map(int, line.split())
            acked[t] = max(acked.get(t, -1), k)
            budget -= 1
            if budget == 0:
                child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode in (-signal.SIGKILL, 86), child.returncode
    return acked


def check_after_crash(path: pathlib.Path, acked_ever: dict[int, int]) -> None:
    with WAL.open(path, segment_bytes=SEGMENT_BYTES) as wal:
        found = [r for r in read_all(wal) if r.type == RecordType.ENTRY]
    per_thread: dict[int, list[int]] = {}
    for record in found:
        assert record.payload == payload_for(record.index, 40 + record.index % 300)
        t = (record.index - 1) % THREADS
        per_thread.setdefault(t, []).append((record.index - 1) // THREADS)
    for t, top in acked_ever.items():
        ks = per_thread.get(t, [])
        assert ks == list(range(len(ks))), f"thread {t}: not a prefix"
        assert len(ks) > top, f"thread {t}: acknowledged {top} but only {len(ks)} survived"


def crash_loop(tmp_path: pathlib.Path, iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "wal"
    acked_ever: dict[int, int] = {}
    for iteration in range(iterations):
        for t, k in run_child_until_killed(path, rng).items():
            acked_ever[t] = max(acked_ever.get(t, -1), k)
        try:
            check_after_crash(path, acked_ever)
        except BaseException as exc:
            raise AssertionError(f"seed {seed}, iteration {iteration}: {exc!r}") from exc
    assert len(segment_files(path)) > 1, "the loop should have crossed segments"


def test_killed_writers_never_lose_an_acknowledged_record(tmp_path):
    crash_loop(tmp_path, iterations=24, seed=20240601)


@pytest.mark.slow
def test_killed_writers_never_lose_an_acknowledged_record_many_times(tmp_path):
    crash_loop(tmp_path, iterations=300, seed=int.from_bytes(os.urandom(4), "little"))


# --- power-loss crash states -----------------------------------------------------

SECTOR = 512
STATE_SEGMENT_BYTES = 512 << 10


def record_workload(path: pathlib.Path, rng: random.Random):
    """Append batches with syncs; after each sync note the durable length of
    the (single) segment and how many records were acknowledged."""
    sync_points = []
    appended = []
    with WAL.open(path, segment_bytes=STATE_SEGMENT_BYTES) as wal:
        index = 1
        for _ in range(40):
            batch = entries(index, index + rng.randint(0, 12), size=rng.randint(0, 700))
            index += len(batch)
            wal.append(batch)
            appended += batch
            if rng.random() < 0.6:
                wal.sync()
                seg = segment_files(path)[0]
                durable = len(seg.read_bytes().rstrip(b"\0"))
                sync_points.append((durable, len(appended)))
    final = segment_files(path)[0].read_bytes()
    return final, sync_points, appended


@pytest.mark.parametrize("seed", range(3))
def test_power_loss_crash_states_keep_every_synced_record(tmp_path, seed):
    power_loss_states(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 40))
def test_power_loss_crash_states_keep_every_synced_record_many_seeds(tmp_path, seed):
    power_loss_states(tmp_path, seed)


def power_loss_states(tmp_path: pathlib.Path, seed: int) -> None:
    rng = random.Random(seed)
    final, sync_points, appended = record_workload(tmp_path / "source", rng)
    name = segment_files(tmp_path / "source")[0].name
    # Frames end on 8-byte boundaries and may end with zero padding: round up.
    written_end = -(-len(final.rstrip(b"\0")) // SECTOR) * SECTOR
    states = 0
    for durable, acked in [(64, 0)] + sync_points:
        first_sector = durable // SECTOR
        last_sector = (written_end + SECTOR - 1) // SECTOR
        for variant in range(8):
            state = bytearray(final)
            for sector in range(first_sector, last_sector):
                lost = rng.random() < (0.5 if variant else 1.0)
                if lost:
                    start = max(sector * SECTOR, durable)
                    state[start:(sector + 1) * SECTOR] = bytes((sector + 1) * SECTOR - start)
            path = tmp_path / f"state{states}"
            path.mkdir()
            # Only up to the written data: open() preallocates the rest again.
            (path / name).write_bytes(bytes(state[:written_end]))
            # No fsync needed to judge the state: keeps 1000 opens cheap.
            with WAL.open(path, segment_bytes=STATE_SEGMENT_BYTES, unsafe_no_fsync=True) as wal:
                found = read_all(wal)
            assert found == appended[:len(found)], "only whole records, in order"
            assert len(found) >= acked, "a synced record was lost"
            shutil.rmtree(path)
            states += 1
    assert states > 100
