"""Protobuf bytes for Range answers, built in C from stored records.

``encode_kvs`` turns the ``(key, record)`` pairs of a Range into the
concatenated ``RangeResponse.kvs`` fields (tag 2, each an encoded
``mvccpb.KeyValue``), so the gRPC server answers without building a message
per key. Python only joins the inputs (C-speed builtins); the per-pair work
is one pass in ``pykv_kv_encode`` (csrc/snap.c). The output buffer is kept
per thread: a fresh large buffer costs a page fault per 4 KiB here.
"""

from __future__ import annotations

import threading
from array import array
from operator import itemgetter

from pykv._binding import check, ffi, lib
from pykv.mvcc import schema as s

_local = threading.local()
_KEY = itemgetter(0)
_RECORD = itemgetter(1)
_HB = s.HDR_BYTES
_KMAX = s.KV_KEY_MAX


def _buffer(size: int) -> bytearray:
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = bytearray(max(size, 64 << 10))
    return buf


def encode_kvs(pairs: list[tuple[bytes, bytes]], keys_only: bool = False) -> bytes:
    if not pairs:
        return b""
    keys = list(map(_KEY, pairs))
    if keys_only:
        # No value goes out: join the record headers only (a long key's record
        # whole, its header says where the stored key ends), not every value.
        records = [rec if len(key) > _KMAX else rec[:_HB] for key, rec in pairs]
    else:
        records = list(map(_RECORD, pairs))
    key_blob = b"".join(keys)
    rec_blob = b"".join(records)
    key_lens = array("I", map(len, keys))
    rec_lens = array("I", map(len, records))
    cap = lib.pykv_kv_encode_bound(len(pairs), len(key_blob), len(rec_blob))
    out = _buffer(cap)
    out_len = ffi.new("size_t *")
    rc = lib.pykv_kv_encode(key_blob, ffi.from_buffer("uint32_t[]", key_lens), rec_blob,
                            ffi.from_buffer("uint32_t[]", rec_lens), len(pairs), int(keys_only),
                            ffi.from_buffer(out), len(out), out_len)
    check(rc, "encoding a Range answer", f"{len(pairs)} key-values")
    return bytes(memoryview(out)[:out_len[0]])
