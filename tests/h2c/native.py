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


# --- one connection, sans I/O --------------------------------------------------------

KINDS = {"unary": lib.PYKV_H2_UNARY, "unary_stream": lib.PYKV_H2_UNARY_STREAM,
         "stream_stream": lib.PYKV_H2_STREAM_STREAM}
EVENT_NAMES = {lib.PYKV_H2_EV_CALL: "call", lib.PYKV_H2_EV_MESSAGE: "message",
               lib.PYKV_H2_EV_HALF_CLOSE: "half_close", lib.PYKV_H2_EV_CANCEL: "cancel",
               lib.PYKV_H2_EV_DRAINED: "drained", lib.PYKV_H2_EV_CONN_ERROR: "conn_error",
               lib.PYKV_H2_EV_HTTP1: "http1"}
SEND_MESSAGE = lib.PYKV_H2_SEND_MESSAGE
SEND_END = lib.PYKV_H2_SEND_END
NOTIFY_DRAIN = lib.PYKV_H2_NOTIFY_DRAIN
EVENT_FORMAT = "=QIHHIIq"
RESPONSE_FORMAT = "=QIHHII"


class Event:
    __slots__ = ("kind", "stream", "method", "payload", "metadata", "timeout_us")

    def __init__(self, kind, stream, method, payload, metadata, timeout_us):
        self.kind, self.stream, self.method = kind, stream, method
        self.payload, self.metadata, self.timeout_us = payload, metadata, timeout_us

    def __repr__(self):
        return (f"Event({self.kind}, stream={self.stream}, method={self.method}, "
                f"payload={self.payload[:40]!r}, metadata={self.metadata}, "
                f"timeout_us={self.timeout_us})")


def parse_metadata(raw: bytes) -> list[tuple[bytes, bytes]]:
    parts = raw.split(b"\0")[:-1]
    return list(zip(parts[0::2], parts[1::2]))


def parse_events(batch) -> list[Event]:
    raw = ffi.buffer(batch.events, batch.count * struct.calcsize(EVENT_FORMAT))[:]
    payload = ffi.buffer(batch.payload, batch.payload_bytes)[:] if batch.payload_bytes else b""
    out, at = [], 0
    for conn, stream, kind, method, plen, mlen, timeout in struct.iter_unpack(EVENT_FORMAT, raw):
        out.append(Event(EVENT_NAMES[kind], stream, method, payload[at:at + plen],
                         parse_metadata(payload[at + plen:at + plen + mlen]), timeout))
        at += plen + mlen
    return out


def pack_responses(responses) -> tuple[bytes, bytes, int]:
    """(conn, stream, flags, status, message, detail) tuples -> records, data, count."""
    records, data = [], []
    for conn, stream, flags, status, message, detail in responses:
        records.append(struct.pack(RESPONSE_FORMAT, conn, stream, flags, status, len(message),
                                   len(detail)))
        data += [message, detail]
    return b"".join(records), b"".join(data), len(responses)


def method_table(methods: list[tuple[str, str]]) -> tuple[bytes, bytes]:
    return (b"".join(p.encode() + b"\0" for p, _ in methods),
            bytes(KINDS[k] for _, k in methods))


def config(**overrides):
    cfg = ffi.new("pykv_h2_config *")
    lib.pykv_h2_config_default(cfg)
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg


class Conn:
    """A pykv_h2_conn: feed bytes, read output, take events, respond."""

    def __init__(self, methods: list[tuple[str, str]], **config_overrides):
        paths, kinds = method_table(methods)
        out = ffi.new("pykv_h2_conn **")
        err = ffi.new("char[]", 256)
        rc = lib.pykv_h2_conn_new(config(**config_overrides), paths, len(paths), kinds,
                                  len(kinds), out, err, 256)
        assert rc == 0, ffi.string(err)
        self._h = ffi.gc(out[0], lib.pykv_h2_conn_free)
        self._batch = ffi.new("pykv_h2_events *")
        self._data = ffi.new("const uint8_t **")
        self._len = ffi.new("size_t *")
        self.closed = False

    def feed(self, data: bytes) -> int:
        rc = lib.pykv_h2_conn_feed(self._h, data, len(data))
        if rc == lib.PYKV_ECLOSED:
            self.closed = True
        return rc

    def output(self) -> bytes:
        lib.pykv_h2_conn_output(self._h, self._data, self._len)
        data = ffi.buffer(self._data[0], self._len[0])[:]
        lib.pykv_h2_conn_consume(self._h, len(data))
        return data

    def events(self) -> list[Event]:
        lib.pykv_h2_conn_events(self._h, self._batch)
        return parse_events(self._batch)

    def respond(self, *responses) -> int:
        """(stream, flags, status, message, detail) tuples."""
        records, data, count = pack_responses([(1, *r) for r in responses])
        return lib.pykv_h2_conn_respond(self._h, ffi.cast("pykv_h2_response *",
                                                          ffi.from_buffer(records)),
                                        count, data, len(data))

    def shutdown(self) -> None:
        lib.pykv_h2_conn_shutdown(self._h)

    def expire(self, now_us: int) -> None:
        lib.pykv_h2_conn_set_time(self._h, now_us)
        lib.pykv_h2_conn_expire(self._h)

    def set_time(self, now_us: int) -> None:
        lib.pykv_h2_conn_set_time(self._h, now_us)

    def http1_input(self) -> bytes:
        lib.pykv_h2_conn_http1_input(self._h, self._data, self._len)
        return ffi.buffer(self._data[0], self._len[0])[:]

    def tick(self, now_us: int) -> tuple[int, int]:
        """The keepalive tick at now_us: (rc, the time of the next one)."""
        lib.pykv_h2_conn_set_time(self._h, now_us)
        next_us = ffi.new("int64_t *")
        rc = lib.pykv_h2_conn_tick(self._h, next_us)
        if rc == lib.PYKV_ECLOSED:
            self.closed = True
        return rc, next_us[0]

    def info(self):
        info = ffi.new("pykv_h2_conn_info *")
        lib.pykv_h2_conn_get_info(self._h, info)
        return info
