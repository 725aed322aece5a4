/* h2_buf.c — the growable byte buffer the h2 server is built on. */
#include <stdlib.h>

#include "h2_internal.h"

/* --- h2_buf ------------------------------------------------------------------ */

int h2_buf_reserve(h2_buf *buf, size_t extra) {
    if (buf->cap - buf->len >= extra) return PYKV_OK;
    /* Reclaim the consumed front before growing. */
    if (buf->off > 0) {
        size_t pending = buf->len - buf->off;
        memmove(buf->data, buf->data + buf->off, pending);
        buf->len = pending;
        buf->off = 0;
        if (buf->cap - buf->len >= extra) return PYKV_OK;
    }
    if (extra > SIZE_MAX / 2 - buf->len) return PYKV_ENOMEM;
    size_t want = buf->len + extra;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < want) cap *= 2;
    uint8_t *data = realloc(buf->data, cap);
    if (data == NULL) return PYKV_ENOMEM;
    buf->data = data;
    buf->cap = cap;
    return PYKV_OK;
}

int h2_buf_append(h2_buf *buf, const void *data, size_t n) {
    if (n == 0) return PYKV_OK;
    int rc = h2_buf_reserve(buf, n);
    if (rc) return rc;
    memcpy(buf->data + buf->len, data, n);
    buf->len += n;
    return PYKV_OK;
}

void h2_buf_consume(h2_buf *buf, size_t n) {
    PYKV_ASSERT(n <= buf->len - buf->off);
    buf->off += n;
    if (buf->off == buf->len) buf->off = buf->len = 0;
}

void h2_buf_reset(h2_buf *buf) { buf->len = buf->off = 0; }

void h2_buf_free(h2_buf *buf) {
    free(buf->data);
    memset(buf, 0, sizeof(*buf));
}

void h2_buf_trim(h2_buf *buf, size_t keep_bytes) {
    if (buf->len == buf->off && buf->cap > keep_bytes) {
        h2_buf_free(buf);
    }
}
