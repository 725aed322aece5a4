"""HPACK decoding (csrc/h2_hpack.c) against RFC 7541 Appendix C and an
independent encoder (the ``hpack`` package)."""

from __future__ import annotations

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable
from hypothesis import given, settings, strategies as st

from tests.h2c.native import CORRUPT, HpackDecoder, huffman_decode

HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def fields(*pairs: str) -> list[tuple[bytes, bytes]]:
    return [(pairs[i].encode(), pairs[i + 1].encode()) for i in range(0, len(pairs), 2)]


# --- RFC 7541 C.2: one representation each, fresh decoder -------------------

@pytest.mark.parametrize("block, expected, table_bytes", [
    ("400a637573746f6d2d6b65790d637573746f6d2d686561646572",
     fields("custom-key", "custom-header"), 55),                       # C.2.1
    ("040c2f73616d706c652f70617468", fields(":path", "/sample/path"), 0),   # C.2.2
    ("100870617373776f726406736563726574", fields("password", "secret"), 0),  # C.2.3
    ("82", fields(":method", "GET"), 0),                                  # C.2.4
])
def test_rfc7541_c2_single_representations(block, expected, table_bytes):
    decoder = HpackDecoder()
    assert decoder.decode(bytes.fromhex(block)) == expected
    assert decoder.table_bytes == table_bytes


REQUESTS = [
    (fields(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"),
     57, 1),
    (fields(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com",
            "cache-control", "no-cache"), 110, 2),
    (fields(":method", "GET", ":scheme", "https", ":path", "/index.html", ":authority",
            "www.example.com", "custom-key", "custom-value"), 164, 3),
]


@pytest.mark.parametrize("blocks", [
    # C.3: without Huffman
    ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
     "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"],
    # C.4: with Huffman
    ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
     "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"],
], ids=["C.3", "C.4"])
def test_rfc7541_request_sequences_share_the_dynamic_table(blocks):
    decoder = HpackDecoder()
    for block, (expected, table_bytes, entries) in zip(blocks, REQUESTS):
        assert decoder.decode(bytes.fromhex(block)) == expected
        assert (decoder.table_bytes, decoder.table_entries) == (table_bytes, entries)


DATE_21 = "Mon, 21 Oct 2013 20:13:21 GMT"
COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
RESPONSES = [
    (fields(":status", "302", "cache-control", "private", "date", DATE_21,
            "location", "https://www.example.com"), 222, 4),
    (fields(":status", "307", "cache-control", "private", "date", DATE_21,
            "location", "https://www.example.com"), 222, 4),
    (fields(":status", "200", "cache-control", "private", "date", "Mon, 21 Oct 2013 20:13:22 GMT",
            "location", "https://www.example.com", "content-encoding", "gzip",
            "set-cookie", COOKIE), 215, 3),
]


@pytest.mark.parametrize("blocks", [
    # C.5: without Huffman, a 256-byte table: entries are evicted
    ["4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a32312047"
     "4d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
     "4803333037c1c0bf",
     "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a6970773866"
     "6f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630"
     "303b2076657273696f6e3d31"],
    # C.6: the same with Huffman
    ["488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863"
     "c78f0b97c8e9ae82ae43d3",
     "4883640effc1c0bf",
     "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b3"
     "35dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"],
], ids=["C.5", "C.6"])
def test_rfc7541_response_sequences_evict_the_oldest_entries(blocks):
    decoder = HpackDecoder(max_table_bytes=256)
    for block, (expected, table_bytes, entries) in zip(blocks, RESPONSES):
        assert decoder.decode(bytes.fromhex(block)) == expected
        assert (decoder.table_bytes, decoder.table_entries) == (table_bytes, entries)


def test_static_table_matches_rfc7541_appendix_a():
    decoder = HpackDecoder()
    got = [decoder.decode(bytes([0x80 | i]))[0] for i in range(1, 62)]
    assert got == list(HeaderTable.STATIC_TABLE)


# --- Huffman ----------------------------------------------------------------------

def test_huffman_decodes_every_byte_value():
    for value in range(256):
        data = bytes([value]) * 3
        assert huffman_decode(HUFFMAN.encode(data)) == (0, data)


@given(st.binary(max_size=300))
def test_huffman_round_trips_arbitrary_bytes(data):
    assert huffman_decode(HUFFMAN.encode(data)) == (0, data)


@pytest.mark.parametrize("encoded, why", [
    (b"\x00", "padding of zero bits is not a prefix of EOS"),
    (bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff") + b"\xff", "8 bits of padding or more"),
    (b"\xff\xff\xff\xff", "EOS (30 ones) inside the string"),
    (b"\xfe", "a 7-bit padding that is not all ones"),
])
def test_huffman_rejects_bad_padding_and_eos(encoded, why):
    assert huffman_decode(encoded)[0] == CORRUPT, why


# --- malformed blocks are COMPRESSION_ERRORs -----------------------------------------

@pytest.mark.parametrize("block, why", [
    ("80", "index 0"),
    ("be", "index 62 with an empty dynamic table"),
    ("ff80808080808008", "an integer past 2^28"),
    ("ff", "a truncated integer"),
    ("400a6375", "a string longer than the block"),
    ("0f", "a literal without its value"),
    ("3fe21f", "a table size update above the advertised 4096"),
    ("823f01", "a table size update after a field"),
    # literal name "a" Huffman-coded (00011 + padding 111) with zero padding instead
    ("0081180178", "a Huffman name with bad padding"),
])
def test_malformed_blocks_are_refused(block, why):
    rc, _ = HpackDecoder().decode_rc(bytes.fromhex(block))
    assert rc == CORRUPT, why


def test_table_size_update_evicts_and_zero_empties_the_table():
    decoder = HpackDecoder()
    decoder.decode(bytes.fromhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"))
    assert decoder.table_entries == 1
    assert decoder.decode(bytes.fromhex("20")) == []  # size update to 0
    assert (decoder.table_entries, decoder.table_bytes) == (0, 0)
    # the entry is gone: index 62 is out of range now
    assert decoder.decode_rc(bytes.fromhex("be"))[0] == CORRUPT


def test_entry_larger_than_the_table_empties_it_and_is_not_added():
    decoder = HpackDecoder(max_table_bytes=64)
    decoder.decode(bytes.fromhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"))
    block = b"\x40\x03abc\x40" + b"x" * 64  # name "abc", value of 64 bytes: 99 > 64
    assert decoder.decode(block) == [(b"abc", b"x" * 64)]
    assert (decoder.table_entries, decoder.table_bytes) == (0, 0)


def test_never_indexed_and_unindexed_literals_leave_the_table_alone():
    decoder = HpackDecoder()
    decoder.decode(bytes.fromhex("100870617373776f726406736563726574"))
    decoder.decode(bytes.fromhex("040c2f73616d706c652f70617468"))
    assert decoder.table_entries == 0


# --- against an independent encoder -------------------------------------------------------

header_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20)
header_value = st.binary(max_size=80)
header_lists = st.lists(st.tuples(header_name.map(str.encode), header_value), max_size=12)


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(header_lists, min_size=1, max_size=8), huffman=st.booleans(),
       table_bytes=st.sampled_from([0, 64, 256, 4096]))
def test_decodes_what_an_independent_encoder_writes(blocks, huffman, table_bytes):
    encoder = hpack.Encoder()
    encoder.header_table_size = table_bytes  # emitted as a size update in the next block
    decoder = HpackDecoder()
    for headers in blocks:
        block = encoder.encode(headers, huffman=huffman)
        assert decoder.decode(block) == headers
        assert decoder.table_bytes == encoder.header_table._current_size
