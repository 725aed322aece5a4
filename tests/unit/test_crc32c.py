"""CRC-32C: the C core against published vectors and against the crc32c package."""

import os

import pytest

from pykv._binding import crc32c, lib

# RFC 3720 (iSCSI), appendix B.4, and the standard "123456789" check value.
RFC3720_VECTORS = [
    (bytes(32), 0x8A9136AA),
    (bytes([0xFF] * 32), 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (
        bytes.fromhex(
            "01c00000000000000000000000000000"
            "14000000000004000000001400000018"
            "28000000000000000200000000000000"
        ),
        0xD9963A56,
    ),
    (b"123456789", 0xE3069283),
    (b"", 0x00000000),
]


@pytest.fixture(params=["hardware", "portable"])
def crc_path(request):
    if request.param == "hardware" and not lib.pykv_crc32c_hardware():
        pytest.skip("this CPU has no SSE4.2 crc32 instruction")
    lib.pykv_crc32c_force_portable(1 if request.param == "portable" else 0)
    yield request.param
    lib.pykv_crc32c_force_portable(0)


@pytest.mark.parametrize("data,expected", RFC3720_VECTORS)
def test_crc32c_matches_rfc3720_vectors(crc_path, data, expected):
    assert crc32c(data) == expected


@pytest.mark.parametrize(
    "size", [0, 1, 7, 8, 9, 255, 256, 767, 768, 769, 8191, 8192, 24575, 24576, 24577, 100003]
)
def test_crc32c_agrees_with_reference_package_at_block_edges(crc_path, size):
    ref = pytest.importorskip("crc32c")
    data = os.urandom(size)
    assert crc32c(data) == ref.crc32c(data)


def test_crc32c_chains_across_calls(crc_path):
    data = os.urandom(50_000)
    for cut in (0, 1, 4095, 24576, 49_999, 50_000):
        assert crc32c(data[cut:], crc32c(data[:cut])) == crc32c(data)


def test_crc32c_unaligned_buffers_give_same_result(crc_path):
    data = os.urandom(30_000)
    whole = memoryview(data)
    for start in range(8):
        assert crc32c(whole[start:]) == crc32c(bytes(data[start:]))
