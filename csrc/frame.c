/* frame.c — the WAL record frame (layout in pykv_frame.h and pykv/wal/__init__.py). */
#include <string.h>

#include "internal.h"
#include "pykv_native.h"
#include "wal_internal.h"

uint64_t pykv_frame_bytes(uint64_t payload_len) {
    return pykv_align8(PYKV_FRAME_HEADER_BYTES + payload_len);
}

static int type_known(uint8_t type) {
    return (type >= 1 && type <= PYKV_RECORD_TYPE_USER_MAX) ||
           type == PYKV_RECORD_TYPE_SEGMENT_HEADER;
}

/* CRC of a frame whose header (with the crc field ignored) and body are in
 * place: position first, so that the same bytes elsewhere check differently. */
static uint32_t frame_crc(uint64_t seq, uint64_t offset, const uint8_t *frame,
                          uint64_t frame_bytes) {
    /* Two calls, not three: per-call overhead dominates for small frames. */
    uint8_t head[36];
    pykv_store_u64(head, seq);
    pykv_store_u64(head + 8, offset);
    memcpy(head + 16, frame, 20);
    uint32_t crc = pykv_crc32c(0, head, sizeof head);
    return pykv_crc32c(crc, frame + PYKV_FRAME_HEADER_BYTES,
                       (size_t)(frame_bytes - PYKV_FRAME_HEADER_BYTES));
}

int pykv_frame_encode(uint64_t seq, uint64_t offset, uint8_t type, uint8_t flags,
                      uint64_t index, const uint8_t *payload, size_t payload_len,
                      uint8_t *out, size_t out_bytes) {
    if (!type_known(type) || (flags & ~PYKV_FRAME_FLAG_CARRIED)) return PYKV_EINVAL;
    if (payload_len > PYKV_RECORD_PAYLOAD_BYTES_MAX) return PYKV_ETOOLARGE;
    uint64_t frame_bytes = pykv_frame_bytes(payload_len);
    if (out_bytes < frame_bytes) return PYKV_ETOOLARGE;
    pykv_store_u32(out, (uint32_t)payload_len);
    out[4] = type;
    out[5] = flags;
    out[6] = 0;
    out[7] = 0;
    pykv_store_u64(out + 8, index);
    pykv_store_u32(out + 16, 0);
    if (payload_len) memcpy(out + PYKV_FRAME_HEADER_BYTES, payload, payload_len);
    uint64_t end = PYKV_FRAME_HEADER_BYTES + payload_len;
    memset(out + end, 0, (size_t)(frame_bytes - end));
    uint32_t crc = frame_crc(seq, offset, out, frame_bytes);
    pykv_store_u32(out + 20, crc);
    return PYKV_OK;
}

int pykv_frame_check(uint64_t seq, uint64_t offset, const uint8_t *buf, size_t avail,
                     pykv_frame_info *info) {
    memset(info, 0, sizeof *info);
    if (avail < 8) {
        /* Less than a first word before the end of the data: a clean end if
         * zero, else a piece of a torn frame. */
        return pykv_all_zero(buf, avail) ? PYKV_FRAME_ZERO : PYKV_FRAME_SHORT;
    }
    if (pykv_load_u64(buf) == 0) return PYKV_FRAME_ZERO;
    info->payload_len = pykv_load_u32(buf);
    info->type = buf[4];
    info->flags = buf[5];
    if (!type_known(info->type) || (info->flags & ~PYKV_FRAME_FLAG_CARRIED) || buf[6] ||
        buf[7] || info->payload_len > PYKV_RECORD_PAYLOAD_BYTES_MAX)
        return PYKV_FRAME_BAD_HEADER;
    info->frame_bytes = pykv_frame_bytes(info->payload_len);
    if (avail < PYKV_FRAME_HEADER_BYTES) return PYKV_FRAME_SHORT;
    info->index = pykv_load_u64(buf + 8);
    info->crc = pykv_load_u32(buf + 20);
    if (pykv_load_u32(buf + 16) != 0) return PYKV_FRAME_BAD_HEADER;
    if (avail < info->frame_bytes) return PYKV_FRAME_SHORT;
    if (frame_crc(seq, offset, buf, info->frame_bytes) != info->crc) return PYKV_FRAME_BAD_CRC;
    return PYKV_FRAME_OK;
}
