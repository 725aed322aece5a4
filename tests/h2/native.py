"""Test helpers over the h2 part of the C core (csrc/pykv_h2.h)."""

from __future__ import annotations

import struct

from pykv._binding import ffi, lib

CORRUPT = lib.PYKV_ECORRUPT


class HpackDecoder:
    """The C decoder, answering lists of (name, value) pairs."""

    def __init__(self, max_table_bytes: int = 4096):
        out = ffi.new("pykv_hpack_decoder **")
        assert lib.pykv_hpack_decoder_new(max_table_bytes, out) == 0
        self._h = ffi.gc(out[0], lib.pykv_hpack_decoder_free)
        self._out = ffi.new("uint8_t[]", 1 << 20)
        self._len = ffi.new("size_t *")

    def decode_rc(self, block: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
        rc = lib.pykv_hpack_decode(self._h, block, len(block), self._out, 1 << 20, self._len)
        raw = ffi.buffer(self._out, self._len[0])[:]
        fields, at = [], 0
        while at < len(raw):
            name_len, value_len = struct.unpack_from("=II", raw, at)
            at += 8
            fields.append((raw[at:at + name_len], raw[at + name_len:at + name_len + value_len]))
            at += name_len + value_len
        return rc, fields

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        rc, fields = self.decode_rc(block)
        assert rc == 0, f"decode failed with {rc}"
        return fields

    @property
    def table_bytes(self) -> int:
        return lib.pykv_hpack_table_bytes(self._h)

    @property
    def table_entries(self) -> int:
        return lib.pykv_hpack_table_entries(self._h)


def huffman_decode(data: bytes) -> tuple[int, bytes]:
    cap = len(data) * 8 // 5 + 1
    out = ffi.new("uint8_t[]", cap)
    n = ffi.new("size_t *")
    rc = lib.pykv_hpack_huffman_decode(data, len(data), out, cap, n)
    return rc, ffi.buffer(out, n[0])[:] if rc == 0 else b""
