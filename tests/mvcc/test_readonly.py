"""Another process reading the store: Store.open_readonly, refresh(), and a
watch hub that follows the writer's commits (hub.advance), against a real
writer process."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys

import pytest

from pykv import errors
from pykv.mvcc import Store
from tests.mvcc.requests import CompactionRequest, PutRequest, RangeRequest
from tests.mvcc import follower_writer

ROOT = pathlib.Path(__file__).resolve().parents[2]


class WriterProcess:
    """The store's writer, in its own process (tests/mvcc/follower_writer.py)."""

    def __init__(self, path: str, map_bytes: int | None = None):
        args = [sys.executable, "-m", "tests.mvcc.follower_writer", path]
        if map_bytes:
            args.append(str(map_bytes))
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        word, revision = self.proc.stdout.readline().split()
        assert word == "ready"
        self.revision = int(revision)

    def do(self, command: str) -> int:
        """Run one command; the revision the writer has committed after it."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        word, revision = line.split()
        assert word == "committed", line
        self.revision = int(revision)
        return self.revision

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=60)


@pytest.fixture
def writer(store_path):
    proc = WriterProcess(store_path)
    yield proc
    proc.close()


def events_of(watcher) -> list[tuple]:
    out = []
    for response in watcher.take():
        assert not response.canceled, response
        for ev in response.events:
            prev = None if ev.prev_kv is None else (ev.prev_kv.value, ev.prev_kv.mod_revision)
            out.append((ev.type, ev.kv.key, ev.kv.value, ev.kv.mod_revision, ev.kv.version, prev))
    return out


def watch_all(store: Store, start_revision: int = 0) -> dict:
    return {
        "range+prev": store.watch(b"k", b"l", start_revision, prev_kv=True),
        "one key": store.watch(b"k03", start_revision=start_revision),
        "prefix k0, no deletes": store.watch(b"k0", b"k1", start_revision, prev_kv=True,
                                             filters=[1]),
    }


def test_a_follower_delivers_every_event_of_a_writer_process_in_order(writer, store_path,
                                                                       tmp_path):
    follower = Store.open_readonly(store_path)
    # The reference: the same workload applied in this process, watched directly.
    reference = Store.open(str(tmp_path / "reference" / "db"), sync=False)
    rnd = random.Random(7)
    try:
        assert follower.revision == reference.revision == writer.revision
        followed = watch_all(follower)
        expected = watch_all(reference)
        late_followed = late_expected = None
        first_file = follower._file_id
        for n in range(1, 61):
            if n == 30:
                revision = writer.do("defrag")  # a new file under the follower
                reference.defragment()
                with reference.write(reference.applied_index + 1):
                    pass
            else:
                revision = writer.do("step")
                follower_writer.step(reference, rnd, reference.applied_index + 1)
            assert follower.hub.advance(revision) == revision == reference.revision
            if n == 40:
                # Watchers from an old revision catch up from history.
                late_followed = watch_all(follower, start_revision=5)
                late_expected = watch_all(reference, start_revision=5)
                while follower.hub.sync() or reference.hub.sync():
                    pass
        assert follower._file_id != first_file  # it followed the writer to the new file
        got = {name: events_of(w) for name, w in followed.items()}
        want = {name: events_of(w) for name, w in expected.items()}
        assert got == want
        assert all(len(events) > 10 for events in got.values())
        kinds = {(e[0], e[5] is not None) for e in got["range+prev"]}
        assert kinds == {(0, False), (0, True), (1, True)}  # puts, overwrites, deletes
        assert {name: events_of(w) for name, w in late_followed.items()} == \
            {name: events_of(w) for name, w in late_expected.items()}
        # Reads and hashes agree too.
        everything = RangeRequest(b"\x00", b"\x00")
        assert [(kv.key, kv.value, kv.mod_revision) for kv in follower.range(everything).kvs] \
            == [(kv.key, kv.value, kv.mod_revision) for kv in reference.range(everything).kvs]
        assert follower.hash_kv().hash == reference.hash_kv().hash
        assert follower.applied_index > 0
    finally:
        follower.close()
        reference.close()


def test_a_follower_keeps_up_with_a_writer_that_does_not_wait(writer, store_path, tmp_path):
    """The writer commits 300 batches back to back while this process
    advances on each notification as it comes (the store may already show
    later commits than the one announced)."""
    follower = Store.open_readonly(store_path)
    reference = Store.open(str(tmp_path / "reference" / "db"), sync=False)
    try:
        followed, expected = watch_all(follower), watch_all(reference)
        writer.proc.stdin.write("run 300\n")
        writer.proc.stdin.flush()
        announced = []
        for _ in range(300):
            word, revision = writer.proc.stdout.readline().split()
            announced.append(int(revision))
            assert follower.hub.advance(int(revision)) == int(revision)
        rnd = random.Random(7)
        for _ in range(300):
            follower_writer.step(reference, rnd, reference.applied_index + 1)
        assert announced[-1] == reference.revision
        assert {name: events_of(w) for name, w in followed.items()} == \
            {name: events_of(w) for name, w in expected.items()}
    finally:
        follower.close()
        reference.close()


def test_a_lagging_follower_cancels_watchers_whose_history_was_compacted(writer, store_path):
    follower = Store.open_readonly(store_path)
    try:
        watcher = follower.watch(b"k", b"l")
        first = writer.do("step")
        assert follower.hub.advance(first) == first
        delivered = events_of(watcher)
        for _ in range(5):
            writer.do("step")
        compacted = writer.do("compact")  # the follower never saw the revisions in between
        assert follower.hub.advance(compacted) == compacted
        follower.hub.sync()
        responses = watcher.take()
        assert delivered and len(responses) == 1
        assert responses[0].canceled and responses[0].compact_revision == compacted
        fresh = follower.watch(b"k", b"l")
        after = writer.do("step")
        follower.hub.advance(after)
        fresh_events = events_of(fresh)
        assert fresh_events and all(compacted < e[3] <= after for e in fresh_events)
    finally:
        follower.close()


def test_refresh_follows_the_writer_and_reads_see_new_data(writer, store_path):
    follower = Store.open_readonly(store_path)
    try:
        revision = writer.do("step")
        assert follower.revision < revision  # not yet refreshed
        follower.refresh()
        assert follower.revision == revision
        before = follower.range(RangeRequest(b"k", b"l")).revision
        assert before == revision
        for _ in range(3):
            revision = writer.do("step")
        follower.refresh()
        assert follower.range(RangeRequest(b"k", b"l")).revision == revision
        assert follower.applied_index == 4
    finally:
        follower.close()


def test_a_follower_adopts_the_map_size_the_writer_grew_to(store_path):
    writer = WriterProcess(store_path, map_bytes=64 << 20)
    follower = Store.open_readonly(store_path)
    try:
        assert follower.get_value(b"big0000") is None  # a view of the small map
        revision = writer.do("big 100")  # 100 MiB: past the 64 MiB map
        follower.refresh()
        assert follower.revision == revision
        assert follower._env.info()["map_size"] > 64 << 20
        assert follower.get_value(b"big0099") == b"0099" * (256 << 10)
        assert follower.range(RangeRequest(b"big", b"bih", count_only=True)).count == 100
    finally:
        follower.close()
        writer.close()


def test_a_read_only_store_refuses_to_write(writer, store_path):
    follower = Store.open_readonly(store_path)
    try:
        for call in (lambda: follower.write(99), follower.compact_step, follower.defragment,
                     follower.checkpoint):
            with pytest.raises(errors.StorageError, match="read-only"):
                call()
    finally:
        follower.close()


def test_the_writers_process_cannot_open_its_store_again(store_path):
    store = Store.open(store_path)
    try:
        with pytest.raises(errors.StorageError, match="already open in this process"):
            Store.open_readonly(store_path)
        assert store.get(b"a") is None  # the writable store is unharmed
    finally:
        store.close()


def test_opening_a_missing_store_read_only_says_so(tmp_path):
    with pytest.raises(errors.StorageError, match="no MVCC store"):
        Store.open_readonly(str(tmp_path / "nothing" / "db"))


@pytest.mark.parametrize("cleared_by", ["checkpoint", "periodic check", "nothing"])
def test_a_killed_reader_process_stops_pinning_pages(store_path, monkeypatch, cleared_by):
    """A reader process killed while it held a read view leaves its LMDB
    reader slot behind; the writer clears it at checkpoint() and every
    READER_CHECK_COMMITS commits. "nothing" shows what the slot costs."""
    from pykv.mvcc import store as store_module

    monkeypatch.setattr(store_module, "READER_CHECK_COMMITS",
                        50 if cleared_by == "periodic check" else 10 ** 9)
    store = Store.open(store_path, sync=False)
    with store.write(1) as w:
        w.put(PutRequest(b"key", b"v" * 1024))
    code = ("import sys\n"
            "from pykv.mvcc import Store\n"
            "st = Store.open_readonly(sys.argv[1])\n"
            "assert st.get(b'key') is not None\n"  # a read view now pins revision 2
            "print('reading', flush=True)\n"
            "sys.stdin.readline()\n")
    reader = subprocess.Popen([sys.executable, "-c", code, store_path], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait()
        if cleared_by == "checkpoint":
            store.checkpoint()
        for i in range(2, 2002):
            with store.write(i) as w:
                w.put(PutRequest(b"key", b"v" * 1024))
                if i % 500 == 0:
                    w.compact(CompactionRequest(store.revision - 10))
        # ~1.9 MB with no reader at all; ~12 KB more per commit while pinned.
        if cleared_by == "nothing":
            assert store.size_bytes > 16 << 20
        else:
            assert store.size_bytes < 4 << 20
    finally:
        if reader.poll() is None:
            reader.kill()
        store.close()
