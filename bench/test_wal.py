"""WAL benchmarks, each beside a reference measured in the same run.

Run:  python -m pytest bench/test_wal.py -s -q -p no:cacheprovider
Results and their reading: bench/results/wal.md.

- append+sync of 256-byte records from 1, 4 and 16 threads, against a plain
  ``os.write`` + ``os.fdatasync`` loop on a preallocated file;
- append without sync, batches of 1,000 records, against ``os.write`` of the
  joined payloads (no framing, no checksum);
- CRC-32C GB/s against the ``crc32c`` package;
- recovery scan (``WAL.open``) of 1M records against reading the same files
  and checksumming every byte with the ``crc32c`` package.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

import crc32c as crc32c_package
import pytest

from pykv._binding import crc32c as pykv_crc32c
from pykv.wal import WAL, RecordType

RECORD = b"r" * 256
SYNC_OPS = int(os.environ.get("PYKV_BENCH_WAL_SYNC_OPS", "800"))
RECOVERY_RECORDS = int(os.environ.get("PYKV_BENCH_WAL_RECORDS", "1000000"))


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="pykv-bench-wal-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def preallocated(path: str, size: int = 64 << 20) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.posix_fallocate(fd, 0, size)
    os.fsync(fd)
    return fd


# --- append + sync ------------------------------------------------------------------


def test_append_sync_256b_records_1_4_16_threads(compare, workdir):
    fd = preallocated(os.path.join(workdir, "plain"))
    wal = WAL.open(os.path.join(workdir, "wal"))

    def plain_loop() -> int:
        # Appends into fresh preallocated space, as the WAL does (rewriting
        # the same blocks would make its fdatasyncs cheaper than real ones).
        for _ in range(SYNC_OPS):
            os.write(fd, RECORD)
            os.fdatasync(fd)
        return SYNC_OPS

    def writers(threads: int):
        per_thread = max(SYNC_OPS // 4, 1) if threads > 1 else SYNC_OPS

        def one(t: int, start: threading.Barrier) -> None:
            start.wait()
            for i in range(per_thread):
                wal.append_sync([(RecordType.ENTRY, i, RECORD)])

        def run() -> int:
            start = threading.Barrier(threads)
            pool = [threading.Thread(target=one, args=(t, start)) for t in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            return threads * per_thread

        return run

    before = wal.stats()
    best = compare("append+sync, 256-byte records (records/s)", {
        "plain write+fdatasync loop": plain_loop,
        "wal, 1 writer": writers(1),
        "wal, 4 writers": writers(4),
        "wal, 16 writers": writers(16),
    }, reference="plain write+fdatasync loop", unit="records/s")
    stats = wal.stats()
    records = stats["records"] - before["records"]
    syncs = stats["syncs"] - before["syncs"]
    print(f"  wal: {records} records in {syncs} fdatasyncs over all rounds, "
          f"at most {stats['synced_records_max']} records per fdatasync, "
          f"mean fdatasync {stats['sync_ns_total'] / max(stats['syncs'], 1) / 1e3:.0f} us")
    wal.close()
    os.close(fd)
    assert best["wal, 16 writers"] > best["wal, 1 writer"]


# --- append without sync ----------------------------------------------------------------


def test_append_without_sync_batches_of_1000(compare, workdir):
    batch = [(RecordType.ENTRY, i, RECORD) for i in range(1000)]
    batches = 200  # 200k records, 56 MB of frames: one 64 MiB segment, no rotation
    state: dict[str, object] = {}

    def setup(label: str) -> None:
        for key in ("wal", "fd"):
            if key in state:
                (state.pop(key).close() if key == "wal" else os.close(state.pop(key)))
        shutil.rmtree(os.path.join(workdir, "wal"), ignore_errors=True)
        if label == "wal.append":
            state["wal"] = WAL.open(os.path.join(workdir, "wal"))
        else:
            state["fd"] = preallocated(os.path.join(workdir, "plain"))

    def wal_append() -> int:
        wal = state["wal"]
        for _ in range(batches):
            wal.append(batch)
        return batches * len(batch)

    def plain_write() -> int:
        fd = state["fd"]
        for _ in range(batches):
            os.write(fd, b"".join(record[2] for record in batch))
        return batches * len(batch)

    best = compare("append without sync, batches of 1,000 x 256 B (records/s)", {
        "os.write of joined payloads": plain_write,
        "wal.append": wal_append,
    }, reference="os.write of joined payloads", unit="records/s", setup=setup)
    setup("")  # close what the last round opened
    mb = best["wal.append"] * len(RECORD) / 1e6
    print(f"  wal.append: {best['wal.append'] / 1e6:.2f}M records/s = {mb:,.0f} MB/s of payload "
          f"({best['wal.append'] * 280 / 1e6:,.0f} MB/s of frames)")


# --- CRC-32C ----------------------------------------------------------------------------


def test_crc32c_throughput(compare):
    data = os.urandom(16 << 20)
    gb = len(data) / 1e9

    def ours() -> float:
        for _ in range(8):
            pykv_crc32c(data)
        return 8 * gb

    def package() -> float:
        for _ in range(8):
            crc32c_package.crc32c(data)
        return 8 * gb

    assert pykv_crc32c(data) == crc32c_package.crc32c(data)
    compare("CRC-32C over 16 MiB buffers (GB/s)", {"crc32c package": package, "pykv": ours},
            reference="crc32c package", unit="GB/s", rounds=7)


# --- recovery --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def million_record_wal():
    path = tempfile.mkdtemp(prefix="pykv-bench-wal-recovery-")
    wal_path = os.path.join(path, "wal")
    with WAL.open(wal_path, unsafe_no_fsync=True) as wal:
        batch = 1000
        for first in range(1, RECOVERY_RECORDS + 1, batch):
            wal.append([(RecordType.ENTRY, i, RECORD) for i in range(first, first + batch)])
    os.sync()
    yield wal_path
    shutil.rmtree(path, ignore_errors=True)


def test_recovery_scan_of_1m_records(compare, million_record_wal):
    files = sorted(os.path.join(million_record_wal, name)
                   for name in os.listdir(million_record_wal))

    def open_scan() -> int:
        with WAL.open(million_record_wal) as wal:
            assert wal.recovery.records == RECOVERY_RECORDS
        return RECOVERY_RECORDS

    def read_and_checksum() -> int:
        buffer = bytearray(8 << 20)
        view = memoryview(buffer)
        for name in files:
            with open(name, "rb", buffering=0) as f:
                while n := f.readinto(buffer):
                    crc32c_package.crc32c(view[:n])
        return RECOVERY_RECORDS

    best = compare(f"recovery scan of {RECOVERY_RECORDS:,} records (records/s; files in the page "
                   "cache)", {"read + crc32c every byte": read_and_checksum,
                              "WAL.open": open_scan},
                   reference="read + crc32c every byte", unit="records/s", rounds=3)
    print(f"  WAL.open of {RECOVERY_RECORDS:,} records: "
          f"{RECOVERY_RECORDS / best['WAL.open']:.3f} s")
