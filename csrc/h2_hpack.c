/* h2_hpack.c — HPACK header-block decoding (RFC 7541).
 *
 * The decoder keeps the dynamic table as a ring of entries, newest first
 * (index 62 is the newest, section 2.3.3). Every decoded field is copied
 * into the caller's field list, because an insertion later in the same
 * block may evict the entry a field came from (section 4.4). Errors are
 * COMPRESSION_ERRORs: the connection cannot continue, since the two tables
 * would disagree from then on.
 */
#include <stdlib.h>

#include "h2_internal.h"

/* Integers above this are refused: nothing legitimate comes close, and it
 * keeps every sum below 2^32. */
#define HPACK_INT_MAX (1u << 28)
#define HPACK_ENTRY_OVERHEAD 32

typedef struct hpack_static_entry {
    const char *name;
    const char *value;
    uint8_t name_len, value_len;
} hpack_static_entry;

#define E(n, v) {n, v, sizeof(n) - 1, sizeof(v) - 1}

/* RFC 7541 Appendix A. */
static const hpack_static_entry STATIC_TABLE[61] = {
    E(":authority", ""), E(":method", "GET"), E(":method", "POST"), E(":path", "/"),
    E(":path", "/index.html"), E(":scheme", "http"), E(":scheme", "https"), E(":status", "200"),
    E(":status", "204"), E(":status", "206"), E(":status", "304"), E(":status", "400"),
    E(":status", "404"), E(":status", "500"), E("accept-charset", ""),
    E("accept-encoding", "gzip, deflate"), E("accept-language", ""), E("accept-ranges", ""),
    E("accept", ""), E("access-control-allow-origin", ""), E("age", ""), E("allow", ""),
    E("authorization", ""), E("cache-control", ""), E("content-disposition", ""),
    E("content-encoding", ""), E("content-language", ""), E("content-length", ""),
    E("content-location", ""), E("content-range", ""), E("content-type", ""), E("cookie", ""),
    E("date", ""), E("etag", ""), E("expect", ""), E("expires", ""), E("from", ""), E("host", ""),
    E("if-match", ""), E("if-modified-since", ""), E("if-none-match", ""), E("if-range", ""),
    E("if-unmodified-since", ""), E("last-modified", ""), E("link", ""), E("location", ""),
    E("max-forwards", ""), E("proxy-authenticate", ""), E("proxy-authorization", ""),
    E("range", ""), E("referer", ""), E("refresh", ""), E("retry-after", ""), E("server", ""),
    E("set-cookie", ""), E("strict-transport-security", ""), E("transfer-encoding", ""),
    E("user-agent", ""), E("vary", ""), E("via", ""), E("www-authenticate", ""),
};
#undef E

typedef struct hpack_entry {
    uint32_t name_len;
    uint32_t value_len;
    uint8_t data[];  /* name then value */
} hpack_entry;

struct pykv_hpack_decoder {
    uint32_t max_bytes;   /* what we advertised: size updates may not exceed it */
    uint32_t limit_bytes; /* the current maximum, set by size updates */
    uint32_t size_bytes;  /* sum of entry sizes */
    hpack_entry **ring;
    uint32_t ring_cap;    /* max_bytes / 32 + 1: the most entries that can fit */
    uint32_t head;        /* slot of the newest entry */
    uint32_t count;
};

int pykv_hpack_decoder_new(uint32_t max_table_bytes, pykv_hpack_decoder **out) {
    *out = NULL;
    if (max_table_bytes > (1u << 24)) return PYKV_EINVAL;
    pykv_hpack_decoder *d = calloc(1, sizeof(*d));
    if (d == NULL) return PYKV_ENOMEM;
    d->max_bytes = d->limit_bytes = max_table_bytes;
    d->ring_cap = max_table_bytes / HPACK_ENTRY_OVERHEAD + 1;
    d->ring = calloc(d->ring_cap, sizeof(hpack_entry *));
    if (d->ring == NULL) {
        free(d);
        return PYKV_ENOMEM;
    }
    *out = d;
    return PYKV_OK;
}

void pykv_hpack_decoder_free(pykv_hpack_decoder *d) {
    if (d == NULL) return;
    for (uint32_t i = 0; i < d->count; i++) {
        free(d->ring[(d->head + d->ring_cap - i) % d->ring_cap]);
    }
    free(d->ring);
    free(d);
}

uint32_t pykv_hpack_table_bytes(const pykv_hpack_decoder *d) { return d->size_bytes; }
uint32_t pykv_hpack_table_entries(const pykv_hpack_decoder *d) { return d->count; }

static void evict_oldest(pykv_hpack_decoder *d) {
    PYKV_ASSERT(d->count > 0);
    uint32_t slot = (d->head + d->ring_cap - (d->count - 1)) % d->ring_cap;
    hpack_entry *e = d->ring[slot];
    d->size_bytes -= e->name_len + e->value_len + HPACK_ENTRY_OVERHEAD;
    free(e);
    d->ring[slot] = NULL;
    d->count--;
}

static void shrink_to(pykv_hpack_decoder *d, uint32_t limit) {
    while (d->count > 0 && d->size_bytes > limit) evict_oldest(d);
}

/* Section 4.4: evict until the new entry fits; one larger than the whole
 * table empties it and is not added (not an error). */
static int insert(pykv_hpack_decoder *d, const uint8_t *name, uint32_t name_len,
                  const uint8_t *value, uint32_t value_len) {
    uint64_t size = (uint64_t)name_len + value_len + HPACK_ENTRY_OVERHEAD;
    if (size > d->limit_bytes) {
        shrink_to(d, 0);
        return PYKV_OK;
    }
    shrink_to(d, d->limit_bytes - (uint32_t)size);
    hpack_entry *e = malloc(sizeof(*e) + name_len + value_len);
    if (e == NULL) return PYKV_ENOMEM;
    e->name_len = name_len;
    e->value_len = value_len;
    memcpy(e->data, name, name_len);
    memcpy(e->data + name_len, value, value_len);
    PYKV_ASSERT(d->count < d->ring_cap);
    d->head = (d->head + 1) % d->ring_cap;
    d->ring[d->head] = e;
    d->count++;
    d->size_bytes += (uint32_t)size;
    return PYKV_OK;
}

/* Entry at HPACK index (1-based over the static then the dynamic table). */
static int lookup(const pykv_hpack_decoder *d, uint32_t index, const uint8_t **name,
                  uint32_t *name_len, const uint8_t **value, uint32_t *value_len) {
    if (index == 0) return PYKV_ECORRUPT;
    if (index <= 61) {
        const hpack_static_entry *s = &STATIC_TABLE[index - 1];
        *name = (const uint8_t *)s->name;
        *name_len = s->name_len;
        *value = (const uint8_t *)s->value;
        *value_len = s->value_len;
        return PYKV_OK;
    }
    uint32_t i = index - 62;
    if (i >= d->count) return PYKV_ECORRUPT;
    const hpack_entry *e = d->ring[(d->head + d->ring_cap - i) % d->ring_cap];
    *name = e->data;
    *name_len = e->name_len;
    *value = e->data + e->name_len;
    *value_len = e->value_len;
    return PYKV_OK;
}

/* Section 5.1: an integer with an N-bit prefix. *p < end on entry. */
static int read_int(const uint8_t **p, const uint8_t *end, int prefix_bits, uint32_t *out) {
    uint32_t mask = (1u << prefix_bits) - 1;
    uint32_t value = **p & mask;
    (*p)++;
    if (value < mask) {
        *out = value;
        return PYKV_OK;
    }
    for (int shift = 0; *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        if (shift > 21) return PYKV_ECORRUPT;
        value += (uint32_t)(b & 0x7f) << shift;
        if (value > HPACK_INT_MAX) return PYKV_ECORRUPT;
        if (!(b & 0x80)) {
            *out = value;
            return PYKV_OK;
        }
    }
    return PYKV_ECORRUPT;  /* truncated */
}

int pykv_hpack_huffman_decode(const uint8_t *in, size_t in_bytes, uint8_t *out,
                              size_t out_bytes, size_t *out_len) {
    uint32_t code = 0;
    unsigned bits = 0;  /* bits in code */
    size_t n = 0;
    for (size_t i = 0; i < in_bytes; i++) {
        uint8_t byte = in[i];
        for (int b = 7; b >= 0; b--) {
            code = (code << 1) | ((byte >> b) & 1u);
            bits++;
            uint32_t rel = code - h2_huffman_first_code[bits];
            if (rel < h2_huffman_count[bits]) {
                uint16_t sym = h2_huffman_symbols[h2_huffman_offset[bits] + rel];
                if (sym == 256) return PYKV_ECORRUPT;  /* EOS inside a string */
                if (n == out_bytes) return PYKV_ETOOLARGE;
                out[n++] = (uint8_t)sym;
                code = 0;
                bits = 0;
            } else if (bits >= 30) {
                return PYKV_ECORRUPT;
            }
        }
    }
    /* Section 5.2: padding is fewer than 8 bits, the high bits of EOS. */
    if (bits > 7 || code != (1u << bits) - 1) return PYKV_ECORRUPT;
    *out_len = n;
    return PYKV_OK;
}

/* A string literal (section 5.2), appended to buf at offset *off, *len bytes. */
static int read_string(const uint8_t **p, const uint8_t *end, h2_buf *buf, uint32_t *off,
                       uint32_t *len) {
    if (*p >= end) return PYKV_ECORRUPT;
    int huffman = (**p & 0x80) != 0;
    uint32_t n;
    int rc = read_int(p, end, 7, &n);
    if (rc) return rc;
    if (n > (size_t)(end - *p)) return PYKV_ECORRUPT;
    *off = (uint32_t)buf->len;
    if (!huffman) {
        rc = h2_buf_append(buf, *p, n);
        if (rc) return rc;
        *len = n;
    } else {
        /* The shortest code is 5 bits: at most 8/5 output bytes per input byte. */
        size_t cap = (size_t)n * 8 / 5 + 1;
        rc = h2_buf_reserve(buf, cap);
        if (rc) return rc;
        size_t out_len = 0;
        rc = pykv_hpack_huffman_decode(*p, n, buf->data + buf->len, cap, &out_len);
        if (rc) return PYKV_ECORRUPT;
        buf->len += out_len;
        *len = (uint32_t)out_len;
    }
    *p += n;
    return PYKV_OK;
}

void h2_field_list_reset(h2_field_list *list) {
    list->count = 0;
    list->list_bytes = 0;
    list->too_large = 0;
    h2_buf_reset(&list->bytes);
}

void h2_field_list_free(h2_field_list *list) {
    free(list->fields);
    h2_buf_free(&list->bytes);
    memset(list, 0, sizeof(*list));
}

/* Keep the field whose bytes start at mark, or drop them past the limit. */
static int keep_field(h2_field_list *list, size_t mark, uint32_t name_off, uint32_t name_len,
                      uint32_t value_off, uint32_t value_len) {
    list->list_bytes += (uint64_t)name_len + value_len + HPACK_ENTRY_OVERHEAD;
    if (list->list_bytes > list->max_list_bytes) {
        list->too_large = 1;
        list->bytes.len = mark;
        return PYKV_OK;
    }
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        h2_field *fields = realloc(list->fields, cap * sizeof(*fields));
        if (fields == NULL) return PYKV_ENOMEM;
        list->fields = fields;
        list->cap = cap;
    }
    list->fields[list->count++] = (h2_field){name_off, name_len, value_off, value_len};
    return PYKV_OK;
}

int h2_hpack_decode(pykv_hpack_decoder *d, const uint8_t *block, size_t len,
                    h2_field_list *list) {
    h2_field_list_reset(list);
    const uint8_t *p = block, *end = block + len;
    int fields_seen = 0;
    while (p < end) {
        uint8_t b = *p;
        const uint8_t *name, *value;
        uint32_t name_len, value_len, index;
        uint32_t name_off, value_off;
        size_t mark = list->bytes.len;
        int rc;
        if (b & 0x80) {  /* 6.1 indexed */
            if ((rc = read_int(&p, end, 7, &index))) return rc;
            if ((rc = lookup(d, index, &name, &name_len, &value, &value_len))) return rc;
            if ((rc = h2_buf_reserve(&list->bytes, (size_t)name_len + value_len))) return rc;
            name_off = (uint32_t)list->bytes.len;
            h2_buf_append(&list->bytes, name, name_len);
            value_off = (uint32_t)list->bytes.len;
            h2_buf_append(&list->bytes, value, value_len);
        } else if ((b & 0xe0) == 0x20) {  /* 6.3 dynamic table size update */
            if (fields_seen) return PYKV_ECORRUPT;
            uint32_t size;
            if ((rc = read_int(&p, end, 5, &size))) return rc;
            if (size > d->max_bytes) return PYKV_ECORRUPT;
            d->limit_bytes = size;
            shrink_to(d, size);
            continue;
        } else {  /* 6.2 literals: with (01), without (0000) or never (0001) indexing */
            int indexing = (b & 0xc0) == 0x40;
            if ((rc = read_int(&p, end, indexing ? 6 : 4, &index))) return rc;
            if (index == 0) {
                if ((rc = read_string(&p, end, &list->bytes, &name_off, &name_len))) return rc;
            } else {
                if ((rc = lookup(d, index, &name, &name_len, &value, &value_len))) return rc;
                name_off = (uint32_t)list->bytes.len;
                if ((rc = h2_buf_append(&list->bytes, name, name_len))) return rc;
            }
            if ((rc = read_string(&p, end, &list->bytes, &value_off, &value_len))) return rc;
            if (indexing) {
                rc = insert(d, list->bytes.data + name_off, name_len,
                            list->bytes.data + value_off, value_len);
                if (rc) return rc;
            }
        }
        fields_seen = 1;
        if ((rc = keep_field(list, mark, name_off, name_len, value_off, value_len))) return rc;
    }
    return PYKV_OK;
}

int pykv_hpack_decode(pykv_hpack_decoder *d, const uint8_t *block, size_t block_bytes,
                      uint8_t *out, size_t out_bytes, size_t *out_len) {
    h2_field_list list;
    memset(&list, 0, sizeof(list));
    list.max_list_bytes = UINT64_MAX;
    int rc = h2_hpack_decode(d, block, block_bytes, &list);
    *out_len = 0;
    if (rc == PYKV_OK) {
        size_t at = 0;
        for (size_t i = 0; i < list.count; i++) {
            const h2_field *f = &list.fields[i];
            size_t need = 8 + (size_t)f->name_len + f->value_len;
            if (need > out_bytes - at) {
                rc = PYKV_ETOOLARGE;
                break;
            }
            memcpy(out + at, &f->name_len, 4);
            memcpy(out + at + 4, &f->value_len, 4);
            memcpy(out + at + 8, list.bytes.data + f->name_off, f->name_len);
            memcpy(out + at + 8 + f->name_len, list.bytes.data + f->value_off, f->value_len);
            at += need;
        }
        *out_len = at;
    }
    h2_field_list_free(&list);
    return rc;
}
