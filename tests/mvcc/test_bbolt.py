"""The read-only bbolt reader on files made by REAL etcd at run time (never a
committed binary), and on copies of them damaged on purpose."""

from __future__ import annotations

import shutil
import struct

import pytest

from pykv import errors
from pykv.api.mvccpb import kv_pb2
from pykv.mvcc import bbolt

SHA256_BYTES = 32
PUTS = 400
BIG_BYTES = 20_000  # spans overflow pages
TXID_AT = bbolt.PAGE_HEADER.size + 48  # a meta page's txid


@pytest.fixture(scope="module")
def etcd_db(tmp_path_factory):
    """The bbolt database part of an ``etcdctl snapshot save`` from real etcd
    after PUTS puts (one of them BIG_BYTES long)."""
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        pytest.skip("etcd/etcdctl are not installed (Debian's etcd-server and etcd-client)")
    grpc = pytest.importorskip("grpc")
    from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
    from tests.e2e.harness import ServerProcess, etcdctl

    tmp = tmp_path_factory.mktemp("bbolt")
    server = ServerProcess(tmp / "etcd", etcd=True).start()
    try:
        with grpc.insecure_channel(server.endpoint) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            for i in range(PUTS - 1):
                kv.Put(rpc_pb2.PutRequest(key=b"key/%05d" % i, value=b"value %d" % i), timeout=10)
            kv.Put(rpc_pb2.PutRequest(key=b"big", value=b"B" * BIG_BYTES), timeout=10)
        snapshot = tmp / "etcd.db"
        etcdctl(server.endpoint, "snapshot", "save", str(snapshot))
    finally:
        server.stop()
    db = tmp / "db"
    db.write_bytes(snapshot.read_bytes()[:-SHA256_BYTES])
    return db


def damaged_copy(src, dst, edits) -> str:
    data = bytearray(src.read_bytes())
    for offset, raw in edits:
        data[offset:offset + len(raw)] = raw
    dst.write_bytes(bytes(data))
    return str(dst)


def meta_page(meta: bbolt.Meta, page_id: int, version: int = bbolt.VERSION,
              txid: int | None = None) -> bytes:
    """A meta page's first bytes as bbolt writes them, checksum included."""
    body = struct.pack("<IIIIQQQQQ", bbolt.MAGIC, version, meta.page_size, 0, meta.root, 0,
                       meta.freelist, meta.high_water, meta.txid if txid is None else txid)
    return bbolt.PAGE_HEADER.pack(page_id, bbolt.FLAG_META, 0, 0) + body + \
        struct.pack("<Q", bbolt.fnv64a(body))


def test_etcd_buckets_are_found_and_small_ones_are_inline(etcd_db):
    with bbolt.BoltFile(str(etcd_db)) as bolt:
        names = [b.name for b in bolt.buckets()]
        assert {b"key", b"meta", b"lease", b"members"} <= set(names)
        assert names == sorted(names)
        assert bolt.bucket(b"key").root >= 2       # a tree of pages
        meta = bolt.bucket(b"meta")
        assert meta.root == 0 and meta.inline      # stored inside the root bucket's leaf
        assert b"consistent_index" in {k for k, _v, _b in bolt.items(meta)}
        assert bolt.bucket(b"no such bucket") is None
        assert bolt.db_size_bytes == bolt.meta.high_water * bolt.meta.page_size <= \
            etcd_db.stat().st_size


def test_key_bucket_iterates_every_revision_in_order_both_ways(etcd_db):
    with bbolt.BoltFile(str(etcd_db)) as bolt:
        key_bucket = bolt.bucket(b"key")
        forward = list(bolt.items(key_bucket))
        backward = list(bolt.items(key_bucket, reverse=True))
    assert backward == forward[::-1]
    assert len(forward) == PUTS
    mains = [struct.unpack(">Q", k[:8])[0] for k, _v, _b in forward]
    assert mains == list(range(2, PUTS + 2))   # etcd's first write is revision 2
    kvs = [kv_pb2.KeyValue.FromString(v) for _k, v, _b in forward]
    assert [kv.mod_revision for kv in kvs] == mains
    assert kvs[0].key == b"key/00000" and kvs[0].value == b"value 0"
    assert kvs[-1].key == b"big" and kvs[-1].value == b"B" * BIG_BYTES


def test_the_valid_meta_with_the_higher_txid_wins(etcd_db, tmp_path):
    with bbolt.BoltFile(str(etcd_db)) as bolt:
        meta = bolt.meta
    size = meta.page_size
    newer0 = damaged_copy(etcd_db, tmp_path / "a", [(0, meta_page(meta, 0, txid=meta.txid + 5))])
    with bbolt.BoltFile(newer0) as bolt:
        assert bolt.meta.txid == meta.txid + 5
    newer1 = damaged_copy(etcd_db, tmp_path / "b", [(0, meta_page(meta, 0, txid=meta.txid + 5)),
                                                    (size, meta_page(meta, 1,
                                                                     txid=meta.txid + 7))])
    with bbolt.BoltFile(newer1) as bolt:
        assert bolt.meta.txid == meta.txid + 7
    # A newer meta page with a bad checksum is passed over for the other one.
    bad_newer = bytearray(meta_page(meta, 0, txid=meta.txid + 9))
    bad_newer[-1] ^= 0xFF
    fallback = damaged_copy(etcd_db, tmp_path / "c", [(0, bytes(bad_newer))])
    page1_txid = struct.unpack_from("<Q", etcd_db.read_bytes(), size + TXID_AT)[0]
    with bbolt.BoltFile(fallback) as bolt:
        assert bolt.meta.txid == page1_txid  # etcd's snapshot writes txid - 1 there
        assert len(list(bolt.items(bolt.bucket(b"key")))) == PUTS


def test_a_file_whose_meta_pages_are_both_bad_is_refused(etcd_db, tmp_path):
    with bbolt.BoltFile(str(etcd_db)) as bolt:
        meta = bolt.meta
    flip = TXID_AT  # inside the checksummed bytes
    path = damaged_copy(etcd_db, tmp_path / "db", [(flip, b"\xff"),
                                                   (meta.page_size + flip, b"\xff")])
    with pytest.raises(errors.CorruptionError, match="no valid meta page.*checksum mismatch"):
        bbolt.BoltFile(path)
    old = damaged_copy(etcd_db, tmp_path / "v1", [(0, meta_page(meta, 0, version=1)),
                                                  (meta.page_size, meta_page(meta, 1, version=1))])
    with pytest.raises(errors.CorruptionError, match="format version 1"):
        bbolt.BoltFile(old)


def test_a_truncated_file_is_refused(etcd_db, tmp_path):
    short = tmp_path / "short"
    short.write_bytes(etcd_db.read_bytes()[:etcd_db.stat().st_size // 2])
    with pytest.raises(errors.CorruptionError, match="truncated"):
        bbolt.BoltFile(str(short))
    tiny = tmp_path / "tiny"
    tiny.write_bytes(etcd_db.read_bytes()[:40])
    with pytest.raises(errors.CorruptionError, match="too small"):
        bbolt.BoltFile(str(tiny))


def _key_root(etcd_db) -> tuple[int, int]:
    """(page size, page number) of the key bucket's root, a branch page."""
    with bbolt.BoltFile(str(etcd_db)) as bolt:
        root = bolt.bucket(b"key").root
        size = bolt.meta.page_size
    flags = bbolt.PAGE_HEADER.unpack_from(etcd_db.read_bytes(), root * size)[1]
    assert flags == bbolt.FLAG_BRANCH
    return size, root


def test_a_page_number_out_of_range_names_the_page(etcd_db, tmp_path):
    size, root = _key_root(etcd_db)
    first_child = root * size + bbolt.PAGE_HEADER.size + 8  # element 0's pgid
    path = damaged_copy(etcd_db, tmp_path / "db", [(first_child, struct.pack("<Q", 10**9))])
    with bbolt.BoltFile(path) as bolt:
        with pytest.raises(errors.CorruptionError, match=r"page 1000000000: page number out of "
                                                         r"range") as caught:
            list(bolt.items(bolt.bucket(b"key")))
    assert caught.value.path == path


def test_a_page_that_is_not_what_its_parent_says_is_refused(etcd_db, tmp_path):
    size, root = _key_root(etcd_db)
    data = etcd_db.read_bytes()
    child = struct.unpack_from("<Q", data, root * size + bbolt.PAGE_HEADER.size + 8)[0]
    wrong_id = damaged_copy(etcd_db, tmp_path / "a", [(child * size, struct.pack("<Q", 7))])
    with bbolt.BoltFile(wrong_id) as bolt:
        with pytest.raises(errors.CorruptionError, match=f"page {child}: its header says page 7"):
            list(bolt.items(bolt.bucket(b"key")))
    # A leaf element whose value would run past the page.
    vsize_at = child * size + bbolt.PAGE_HEADER.size + 12
    long_value = damaged_copy(etcd_db, tmp_path / "b", [(vsize_at, struct.pack("<I", 1 << 30))])
    with bbolt.BoltFile(long_value) as bolt:
        with pytest.raises(errors.CorruptionError, match=f"page {child}: element 0: key and "
                                                         "value run past the page"):
            list(bolt.items(bolt.bucket(b"key")))
    # A branch pointing back at itself: a cycle, not an endless walk.
    cycle = damaged_copy(etcd_db, tmp_path / "c", [
        (root * size + bbolt.PAGE_HEADER.size + 8, struct.pack("<Q", root))])
    with bbolt.BoltFile(cycle) as bolt:
        with pytest.raises(errors.CorruptionError, match="deeper than"):
            list(bolt.items(bolt.bucket(b"key")))


def test_only_bbolt_files_look_like_bbolt(etcd_db):
    assert bbolt.looks_like_bbolt(etcd_db.read_bytes()[:64])
    assert not bbolt.looks_like_bbolt(b"PKSF" + bytes(60))
    assert not bbolt.looks_like_bbolt(b"")
