/* snap.c — snapshot stream framing and records, and the protobuf encoding of
 * stored key-values (see pykv_snap.h for the formats). */
#include <string.h>

#include "internal.h"
#include "pykv_native.h"

static const uint8_t FRAME_MAGIC[4] = {'P', 'K', 'S', 'F'};

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_u64(uint8_t *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

static int frame_type_known(uint32_t type) {
    return type == PYKV_SNAP_FRAME_HEADER || type == PYKV_SNAP_FRAME_CHUNK ||
           type == PYKV_SNAP_FRAME_TRAILER;
}

int pykv_snap_frame_pack(uint8_t *out, uint32_t type, uint32_t raw_len, uint32_t stored_len,
                         uint64_t digest) {
    if (!frame_type_known(type) || raw_len > PYKV_SNAP_CHUNK_MAX ||
        stored_len > PYKV_SNAP_CHUNK_MAX)
        return PYKV_EINVAL;
    memset(out, 0, PYKV_SNAP_FRAME_BYTES);
    memcpy(out, FRAME_MAGIC, 4);
    out[4] = (uint8_t)type;
    put_u32(out + 8, raw_len);
    put_u32(out + 12, stored_len);
    put_u64(out + 16, digest);
    put_u32(out + 28, pykv_crc32c(0, out, 28));
    return PYKV_OK;
}

int pykv_snap_frame_unpack(const uint8_t *in, size_t len, uint32_t *type, uint32_t *raw_len,
                           uint32_t *stored_len, uint64_t *digest) {
    if (len != PYKV_SNAP_FRAME_BYTES) return PYKV_ECORRUPT;
    if (memcmp(in, FRAME_MAGIC, 4) != 0) return PYKV_ECORRUPT;
    if (get_u32(in + 28) != pykv_crc32c(0, in, 28)) return PYKV_ECORRUPT;
    uint32_t t = in[4];
    uint32_t raw = get_u32(in + 8), stored = get_u32(in + 12);
    if (!frame_type_known(t) || raw > PYKV_SNAP_CHUNK_MAX || stored > PYKV_SNAP_CHUNK_MAX)
        return PYKV_ECORRUPT;
    *type = t;
    *raw_len = raw;
    *stored_len = stored;
    *digest = get_u64(in + 16);
    return PYKV_OK;
}

int pykv_snap_records_pack(uint8_t table, const char *keys, const uint32_t *key_lens,
                           const char *values, const uint32_t *value_lens, size_t n,
                           uint8_t *out, size_t out_cap, size_t *written) {
    size_t pos = 0, koff = 0, voff = 0;
    *written = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t kl = key_lens[i], vl = value_lens[i];
        if (kl > PYKV_SNAP_KEY_MAX) return PYKV_EINVAL;
        size_t need = PYKV_SNAP_RECORD_OVERHEAD + (size_t)kl + (size_t)vl;
        if (need > out_cap - pos) return PYKV_ETOOLARGE;
        out[pos] = table;
        put_u32(out + pos + 1, kl);
        put_u32(out + pos + 5, vl);
        memcpy(out + pos + PYKV_SNAP_RECORD_OVERHEAD, keys + koff, kl);
        memcpy(out + pos + PYKV_SNAP_RECORD_OVERHEAD + kl, values + voff, vl);
        pos += need;
        koff += kl;
        voff += vl;
    }
    PYKV_ASSERT(pos <= out_cap);
    *written = pos;
    return PYKV_OK;
}

int pykv_snap_records_index(const uint8_t *buf, size_t len, uint8_t *tables,
                            uint32_t *key_offs, uint32_t *key_lens, uint32_t *value_offs,
                            uint32_t *value_lens, size_t cap, size_t *n) {
    size_t pos = 0, i = 0;
    *n = 0;
    if (len > PYKV_SNAP_CHUNK_MAX) return PYKV_ECORRUPT;
    while (pos < len) {
        if (i >= cap) return PYKV_ECORRUPT;
        if (len - pos < PYKV_SNAP_RECORD_OVERHEAD) return PYKV_ECORRUPT;
        uint32_t kl = get_u32(buf + pos + 1), vl = get_u32(buf + pos + 5);
        if (kl > PYKV_SNAP_KEY_MAX) return PYKV_ECORRUPT;
        size_t body = len - pos - PYKV_SNAP_RECORD_OVERHEAD;
        if ((size_t)kl > body || (size_t)vl > body - kl) return PYKV_ECORRUPT;
        tables[i] = buf[pos];
        key_offs[i] = (uint32_t)(pos + PYKV_SNAP_RECORD_OVERHEAD);
        key_lens[i] = kl;
        value_offs[i] = (uint32_t)(pos + PYKV_SNAP_RECORD_OVERHEAD + kl);
        value_lens[i] = vl;
        pos += PYKV_SNAP_RECORD_OVERHEAD + (size_t)kl + (size_t)vl;
        *n = ++i;
    }
    return PYKV_OK;
}

/* --- protobuf encoding of key-values ------------------------------------- */

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A proto3 int64 field: omitted when zero, else tag + varint (negative
 * numbers take ten bytes, as two's complement uint64). */
static size_t int_field_len(int64_t v) { return v ? 1 + varint_len((uint64_t)v) : 0; }

static uint8_t *put_int_field(uint8_t *p, uint8_t tag, int64_t v) {
    if (!v) return p;
    *p++ = tag;
    return put_varint(p, (uint64_t)v);
}

static size_t bytes_field_len(size_t len) { return len ? 1 + varint_len(len) + len : 0; }

static uint8_t *put_bytes_field(uint8_t *p, uint8_t tag, const char *data, size_t len) {
    if (!len) return p;
    *p++ = tag;
    p = put_varint(p, len);
    memcpy(p, data, len);
    return p + len;
}

size_t pykv_kv_encode_bound(size_t n, size_t keys_total, size_t records_total) {
    /* per pair: outer tag + 5-byte length, key tag + 5-byte length, four
     * int fields of at most 11 bytes, value tag + 5-byte length; the value
     * itself is within the record, whose 40-byte header is not copied. */
    return keys_total + records_total + n * 64;
}

int pykv_kv_encode(const char *keys, const uint32_t *key_lens, const char *records,
                   const uint32_t *record_lens, size_t n, int keys_only, uint8_t *out,
                   size_t out_cap, size_t *out_len) {
    size_t koff = 0, roff = 0;
    uint8_t *p = out, *end = out + out_cap;
    *out_len = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = (const uint8_t *)records + roff;
        size_t rlen = record_lens[i], klen = key_lens[i];
        if (rlen < PYKV_KV_RECORD_HEADER) return PYKV_ECORRUPT;
        int64_t create = (int64_t)get_u64(rec);
        int64_t mod = (int64_t)get_u64(rec + 8);
        int64_t version = (int64_t)get_u64(rec + 16);
        int64_t lease = (int64_t)get_u64(rec + 24);
        size_t extra = get_u32(rec + 36);
        if (extra > rlen - PYKV_KV_RECORD_HEADER) return PYKV_ECORRUPT;
        const char *value = (const char *)rec + PYKV_KV_RECORD_HEADER + extra;
        size_t vlen = keys_only ? 0 : rlen - PYKV_KV_RECORD_HEADER - extra;
        size_t body = bytes_field_len(klen) + int_field_len(create) + int_field_len(mod) +
                      int_field_len(version) + bytes_field_len(vlen) + int_field_len(lease);
        size_t need = 1 + varint_len(body) + body;
        if (need > (size_t)(end - p)) return PYKV_ETOOLARGE;
        uint8_t *start = p;
        *p++ = 0x12; /* RangeResponse.kvs, length-delimited */
        p = put_varint(p, body);
        p = put_bytes_field(p, 0x0a, keys + koff, klen);
        p = put_int_field(p, 0x10, create);
        p = put_int_field(p, 0x18, mod);
        p = put_int_field(p, 0x20, version);
        p = put_bytes_field(p, 0x2a, value, vlen);
        p = put_int_field(p, 0x30, lease);
        PYKV_ASSERT((size_t)(p - start) == need);
        koff += klen;
        roff += rlen;
    }
    *out_len = (size_t)(p - out);
    return PYKV_OK;
}
