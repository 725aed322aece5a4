/* h2_internal.h — what the h2*.c files share; never fed to cffi. */
#ifndef PYKV_H2_INTERNAL_H
#define PYKV_H2_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "pykv_common.h"
#include "pykv_h2.h"

/* --- growable byte buffer ---------------------------------------------------- */

typedef struct h2_buf {
    uint8_t *data;
    size_t len;  /* bytes held */
    size_t off;  /* bytes already consumed from the front */
    size_t cap;
} h2_buf;

int h2_buf_reserve(h2_buf *buf, size_t extra);  /* room for extra more bytes */
int h2_buf_append(h2_buf *buf, const void *data, size_t n);
void h2_buf_consume(h2_buf *buf, size_t n);     /* drop n bytes from the front */
void h2_buf_reset(h2_buf *buf);                 /* empty, keeping the memory */
void h2_buf_free(h2_buf *buf);
/* Give back memory past keep_bytes of capacity once the buffer is empty, so
 * one 40 MB answer does not pin 40 MB per connection forever. */
void h2_buf_trim(h2_buf *buf, size_t keep_bytes);

static inline size_t h2_buf_pending(const h2_buf *buf) { return buf->len - buf->off; }
static inline const uint8_t *h2_buf_head(const h2_buf *buf) { return buf->data + buf->off; }

/* --- HPACK ---------------------------------------------------------------------- */

extern const uint32_t h2_huffman_first_code[32];
extern const uint16_t h2_huffman_count[32];
extern const uint16_t h2_huffman_offset[32];
extern const uint16_t h2_huffman_symbols[257];

/* One decoded field, as offsets into the field list's bytes (a later
 * insertion may evict a table entry while the block is being decoded, so
 * every field is copied out). */
typedef struct h2_field {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
} h2_field;

typedef struct h2_field_list {
    h2_field *fields;
    size_t count, cap;
    h2_buf bytes;
    uint64_t list_bytes;  /* RFC 9113 6.5.2: sum of name + value + 32 */
    uint64_t max_list_bytes;
    int too_large;        /* fields past max_list_bytes were dropped */
} h2_field_list;

void h2_field_list_reset(h2_field_list *list);
void h2_field_list_free(h2_field_list *list);

/* Decode a block into list (reset first). PYKV_ECORRUPT: a COMPRESSION_ERROR;
 * PYKV_ENOMEM. Fields over the list's limit set too_large but the block is
 * decoded to its end so that the dynamic table stays in step. */
int h2_hpack_decode(pykv_hpack_decoder *decoder, const uint8_t *block, size_t len,
                    h2_field_list *list);

#endif
