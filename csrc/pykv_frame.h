/* pykv_frame.h — one WAL record frame: encode and check.
 *
 * The byte layout is specified in prose in pykv/wal/__init__.py (and pinned
 * by tests/wal/test_golden.py); in short, a frame is
 *
 *   0  u32 payload_len    little-endian, <= PYKV_RECORD_PAYLOAD_BYTES_MAX
 *   4  u8  type           1..127 the caller's, 128 the segment header; never 0
 *   5  u8  flags          bit 0: carried forward into a new segment's head
 *   6  u16 reserved       zero
 *   8  u64 index
 *   16 u32 reserved       zero
 *   20 u32 crc            CRC-32C of seq(u64) | offset(u64) | bytes 0..19 |
 *                         bytes 24..end (payload and padding)
 *   24 payload, then zero padding to a multiple of 8 bytes
 *
 * Frames start at 8-byte aligned offsets, so the first word (length and
 * type) never straddles a sector and an all-zero first word marks the end of
 * the written data. The CRC binds a frame to its segment sequence number and
 * its offset, so a frame copied, shifted or left over from elsewhere fails.
 */
#ifndef PYKV_FRAME_H
#define PYKV_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define PYKV_FRAME_HEADER_BYTES 24
#define PYKV_FRAME_ALIGN_BYTES 8
#define PYKV_RECORD_PAYLOAD_BYTES_MAX 67108864
#define PYKV_RECORD_TYPE_USER_MAX 127
#define PYKV_RECORD_TYPE_SEGMENT_HEADER 128
#define PYKV_FRAME_FLAG_CARRIED 1

/* What pykv_frame_check found at an offset. */
#define PYKV_FRAME_OK 0
#define PYKV_FRAME_ZERO 1        /* the first 8 bytes are zero: no frame starts here */
#define PYKV_FRAME_SHORT 2       /* a well-formed header whose frame runs past the data */
#define PYKV_FRAME_BAD_HEADER 3  /* unknown type or flags, nonzero reserved, length over the cap */
#define PYKV_FRAME_BAD_CRC 4     /* a well-formed header, wholly present, whose CRC differs */

typedef struct pykv_frame_info {
    uint64_t index;
    uint64_t frame_bytes;  /* header + payload + padding */
    uint32_t payload_len;
    uint32_t crc;          /* as stored */
    uint8_t type;
    uint8_t flags;
} pykv_frame_info;

/* Bytes a frame with payload_len bytes of payload takes on disk. */
uint64_t pykv_frame_bytes(uint64_t payload_len);

/* Encode one frame at out, which must hold pykv_frame_bytes(payload_len)
 * bytes. Returns PYKV_OK, PYKV_EINVAL (type 0 or unknown flags) or
 * PYKV_ETOOLARGE (payload over the cap, or out_bytes too small). */
int pykv_frame_encode(uint64_t seq, uint64_t offset, uint8_t type, uint8_t flags,
                      uint64_t index, const uint8_t *payload, size_t payload_len,
                      uint8_t *out, size_t out_bytes);

/* Check the frame that starts at buf (avail bytes readable there), found at
 * offset in the segment with sequence number seq. Returns a PYKV_FRAME_*
 * status; info is filled from the header whenever the header is readable. */
int pykv_frame_check(uint64_t seq, uint64_t offset, const uint8_t *buf, size_t avail,
                     pykv_frame_info *info);

#endif
