"""The C frame codec (csrc/frame.c) against published CRC vectors, a pinned
frame, and the pure-Python reference codec (pykv/wal/record.py)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykv._binding import ffi, lib
from pykv.wal import record as ref


def c_encode(seq, offset, rtype, index, payload, flags=0) -> bytes:
    size = lib.pykv_frame_bytes(len(payload))
    out = ffi.new("uint8_t[]", size)
    rc = lib.pykv_frame_encode(seq, offset, rtype, flags, index, payload, len(payload), out, size)
    assert rc == lib.PYKV_OK
    return bytes(ffi.buffer(out, size))


def c_check(seq, offset, buf: bytes):
    info = ffi.new("pykv_frame_info *")
    status = lib.pykv_frame_check(seq, offset, buf, len(buf), info)
    return status, info


def test_reference_crc32c_matches_the_rfc3720_check_value():
    assert ref.crc32c(b"123456789") == 0xE3069283
    assert ref.crc32c(bytes(32)) == 0x8A9136AA
    assert ref.crc32c(b"56789", ref.crc32c(b"1234")) == 0xE3069283


def test_frame_bytes_rounds_header_and_payload_up_to_eight():
    for n in range(0, 40):
        assert lib.pykv_frame_bytes(n) == ref.frame_bytes(n) == (24 + n + 7) // 8 * 8


def test_frame_layout_is_pinned():
    # One frame, byte for byte: if this changes, the on-disk format changed.
    frame = c_encode(seq=1, offset=64, rtype=2, index=7, payload=b"hello")
    assert frame.hex() == (
        "05000000" "02" "00" "0000"      # payload_len, type ENTRY, flags, reserved
        "0700000000000000"               # index 7
        "00000000"                       # reserved
        "ceba8e0b"                       # crc
        "68656c6c6f" "000000"            # payload, zero padding to 32 bytes
    )
    crc = ref.crc32c(struct.pack("<QQ", 1, 64) + frame[:20] + frame[24:])
    assert struct.unpack_from("<I", frame, 20)[0] == crc


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**40).map(lambda o: o * 8),
       rtype=st.sampled_from([1, 2, 3, 5, 77, 127, 128]), flags=st.sampled_from([0, 1]),
       index=st.integers(0, 2**64 - 1), payload=st.binary(max_size=300))
def test_c_and_reference_codecs_agree(seq, offset, rtype, flags, index, payload):
    frame = c_encode(seq, offset, rtype, index, payload, flags)
    assert frame == ref.encode_frame(seq, offset, rtype, index, payload, flags)
    status, info = c_check(seq, offset, frame)
    assert status == lib.PYKV_FRAME_OK
    assert (info.type, info.flags, info.index, info.payload_len, info.frame_bytes) == (
        rtype, flags, index, len(payload), len(frame))
    ref_status, ref_frame = ref.check_frame(seq, offset, frame)
    assert ref_status == ref.FRAME_OK and ref_frame.payload == payload


def test_a_frame_does_not_check_at_another_offset_or_in_another_segment():
    frame = c_encode(3, 128, 2, 9, b"payload")
    assert c_check(3, 128, frame)[0] == lib.PYKV_FRAME_OK
    assert c_check(3, 136, frame)[0] == lib.PYKV_FRAME_BAD_CRC
    assert c_check(4, 128, frame)[0] == lib.PYKV_FRAME_BAD_CRC


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=1, max_size=100), data=st.data())
def test_every_single_bit_flip_is_caught(payload, data):
    frame = bytearray(c_encode(0, 8, 2, 1, payload))
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    status, _ = c_check(0, 8, bytes(frame))
    assert status != lib.PYKV_FRAME_OK
    assert status == ref.check_frame(0, 8, bytes(frame))[0]


@settings(max_examples=200, deadline=None)
@given(buf=st.binary(max_size=64))
def test_c_and_reference_checks_agree_on_arbitrary_bytes(buf):
    assert c_check(0, 0, buf)[0] == ref.check_frame(0, 0, buf)[0]


def test_zero_word_is_the_end_of_the_data():
    assert c_check(0, 0, bytes(64))[0] == lib.PYKV_FRAME_ZERO
    assert c_check(0, 0, b"")[0] == lib.PYKV_FRAME_ZERO
    assert c_check(0, 0, bytes(5))[0] == lib.PYKV_FRAME_ZERO


def test_every_truncation_of_a_frame_is_short():
    frame = c_encode(0, 0, 2, 1, b"x" * 40)
    for cut in range(1, len(frame)):
        assert c_check(0, 0, frame[:cut])[0] == lib.PYKV_FRAME_SHORT, cut


@pytest.mark.parametrize("field,value", [
    (4, b"\x00"),          # type 0
    (4, b"\x81"),          # an internal type that does not exist
    (5, b"\x02"),          # unknown flag
    (6, b"\x01"),          # reserved
    (16, b"\x01"),         # reserved
    (0, struct.pack("<I", ref.PAYLOAD_BYTES_MAX + 1)),  # length over the cap
])
def test_malformed_headers_are_rejected_before_reading_the_payload(field, value):
    frame = bytearray(c_encode(0, 0, 2, 1, b"abc"))
    frame[field:field + len(value)] = value
    status, _ = c_check(0, 0, bytes(frame))
    assert status == lib.PYKV_FRAME_BAD_HEADER
    assert ref.check_frame(0, 0, bytes(frame))[0] == ref.FRAME_BAD_HEADER


def test_a_forged_huge_length_reports_bad_header_not_short():
    # CVE-2020-15106: a length far beyond the file must not lead to a big
    # allocation; over the cap it is malformed, whatever follows.
    frame = bytearray(c_encode(0, 0, 2, 1, b"abc"))
    frame[0:4] = struct.pack("<I", 0xFFFFFFF0)
    assert c_check(0, 0, bytes(frame))[0] == lib.PYKV_FRAME_BAD_HEADER


def test_encode_refuses_unknown_types_flags_and_oversize_payloads():
    out = ffi.new("uint8_t[]", 64)
    assert lib.pykv_frame_encode(0, 0, 0, 0, 1, b"", 0, out, 64) == lib.PYKV_EINVAL
    assert lib.pykv_frame_encode(0, 0, 2, 4, 1, b"", 0, out, 64) == lib.PYKV_EINVAL
    assert lib.pykv_frame_encode(0, 0, 2, 0, 1, b"x" * 64, 64, out, 64) == lib.PYKV_ETOOLARGE
    assert lib.pykv_frame_encode(0, 0, 2, 0, 1, ffi.NULL, ref.PAYLOAD_BYTES_MAX + 1, out,
                                 64) == lib.PYKV_ETOOLARGE
