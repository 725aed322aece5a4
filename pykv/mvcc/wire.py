"""Protobuf bytes for Range answers, built in C from stored records.

``encode_kvs`` turns the ``(key, record)`` pairs of a Range into the
concatenated ``RangeResponse.kvs`` fields (tag 2, each an encoded
``mvccpb.KeyValue``), so the gRPC server answers without building a message
per key. Python only joins the inputs (C-speed builtins); the per-pair work
is one pass in ``pykv_kv_encode`` (csrc/snap.c).
"""

from __future__ import annotations

from array import array

from pykv._binding import check, ffi, lib


def encode_kvs(pairs: list[tuple[bytes, bytes]], keys_only: bool = False) -> bytes:
    if not pairs:
        return b""
    keys, records = zip(*pairs)
    key_blob = b"".join(keys)
    rec_blob = b"".join(records)
    key_lens = array("I", map(len, keys))
    rec_lens = array("I", map(len, records))
    cap = lib.pykv_kv_encode_bound(len(pairs), len(key_blob), len(rec_blob))
    out = bytearray(cap)
    out_len = ffi.new("size_t *")
    rc = lib.pykv_kv_encode(key_blob, ffi.from_buffer("uint32_t[]", key_lens), rec_blob,
                            ffi.from_buffer("uint32_t[]", rec_lens), len(pairs), int(keys_only),
                            ffi.from_buffer(out), cap, out_len)
    check(rc, "encoding a Range answer", f"{len(pairs)} key-values")
    return bytes(memoryview(out)[:out_len[0]])
