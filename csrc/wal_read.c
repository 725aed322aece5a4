/* wal_read.c — reading segment files: the chunked cursor shared with
 * recovery, and readers of the records appended so far. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pykv_native.h"
#include "wal_internal.h"

int pykv_cursor_load(pykv_cursor *c, uint64_t offset, size_t len, const uint8_t **p,
                     size_t *avail, char *err, size_t err_bytes) {
    *p = c->buf.data;
    *avail = 0;
    if (offset >= c->end) return PYKV_OK;
    uint64_t want_end = offset + len > c->end ? c->end : offset + len;
    if (offset >= c->buf_off && want_end <= c->buf_off + c->buf.len) {
        *p = c->buf.data + (offset - c->buf_off);
        *avail = (size_t)(c->buf_off + c->buf.len - offset);
        return PYKV_OK;
    }
    uint64_t n = len > PYKV_CURSOR_CHUNK_BYTES ? len : PYKV_CURSOR_CHUNK_BYTES;
    if (n > c->end - offset) n = c->end - offset;
    c->buf.len = 0;
    c->buf_off = offset;
    if (pykv_buf_reserve(&c->buf, (size_t)n))
        return pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory reading WAL segment %s",
                         c->name);
    size_t got;
    int e = pykv_pread_all(c->fd, c->buf.data, (size_t)n, offset, &got);
    if (e)
        return pykv_fail_os(e, err, err_bytes, "cannot read WAL segment %s at offset %llu",
                            c->name, (unsigned long long)offset);
    c->buf.len = got;
    if (got < n) c->end = offset + got; /* the file is shorter than it was */
    *p = c->buf.data;
    *avail = got;
    return PYKV_OK;
}

int pykv_cursor_frame(pykv_cursor *c, uint64_t offset, const uint8_t **frame,
                      pykv_frame_info *info, char *err, size_t err_bytes) {
    const uint8_t *p;
    size_t avail;
    int rc = pykv_cursor_load(c, offset, PYKV_FRAME_HEADER_BYTES, &p, &avail, err, err_bytes);
    if (rc) return rc;
    int status = pykv_frame_check(c->seq, offset, p, avail, info);
    if (status == PYKV_FRAME_SHORT && info->frame_bytes > avail &&
        offset + info->frame_bytes <= c->end) {
        /* The frame fits in the file: bring all of it in (bounded by the
         * payload cap, which pykv_frame_check enforced). */
        rc = pykv_cursor_load(c, offset, (size_t)info->frame_bytes, &p, &avail, err, err_bytes);
        if (rc) return rc;
        status = pykv_frame_check(c->seq, offset, p, avail, info);
    }
    *frame = p;
    return status;
}

/* --- readers ---------------------------------------------------------------- */

struct pykv_wal_reader {
    char *dir;
    int dirfd;
    pykv_segment *segs; /* the segments to read, oldest first */
    size_t nsegs;
    size_t at;          /* index in segs of the open segment */
    uint64_t last_end;  /* read the last segment only up to here */
    uint64_t from_index;
    int started;        /* a record with index >= from_index has been seen */
    pykv_cursor cursor; /* cursor.fd < 0 when no segment is open */
    uint64_t offset;    /* next frame in the open segment */
    char name[PYKV_WAL_NAME_BYTES];
    /* the batch handed out */
    uint8_t *types;
    uint64_t *indexes;
    uint32_t *lengths;
    size_t batch_cap;
    pykv_buf payload;
};

int pykv_wal_reader_open(pykv_wal *w, uint64_t from_index, pykv_wal_reader **out, char *err,
                         size_t err_bytes) {
    *out = NULL;
    pykv_wal_reader *r = calloc(1, sizeof *r);
    if (!r) return pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory");
    r->cursor.fd = -1;
    r->dirfd = -1;
    r->from_index = from_index;

    pthread_mutex_lock(&w->mu);
    /* Hand every appended frame to the file first, so that the reader sees
     * them (it reads files, not the pending buffer). */
    int rc = pykv_wal_write_pending_locked(w, err, err_bytes);
    if (!rc) {
        /* The newest segment whose first index <= from_index (like etcd's
         * searchIndex): later segments hold only what came after. */
        size_t start = 0;
        for (size_t i = 0; i < w->nsegs; i++)
            if (w->segs[i].first_index <= from_index) start = i;
        r->nsegs = w->nsegs - start;
        r->segs = malloc(r->nsegs * sizeof *r->segs);
        r->dir = strdup(w->dir);
        if (!r->segs || !r->dir) rc = pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory");
        else memcpy(r->segs, w->segs + start, r->nsegs * sizeof *r->segs);
        r->last_end = w->tail_off;
        if (!rc) {
            r->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (r->dirfd < 0)
                rc = pykv_fail_os(errno, err, err_bytes, "cannot open WAL directory %s", w->dir);
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (rc) {
        pykv_wal_reader_free(r);
        return rc;
    }
    r->at = (size_t)-1;
    *out = r;
    return PYKV_OK;
}

/* Open segment r->at + 1; PYKV_EEOF when there is none. */
static int next_segment(pykv_wal_reader *r, char *err, size_t err_bytes) {
    if (r->cursor.fd >= 0) close(r->cursor.fd);
    r->cursor.fd = -1;
    r->at++;
    if (r->at >= r->nsegs) return PYKV_EEOF;
    const pykv_segment *s = &r->segs[r->at];
    pykv_segment_name(r->name, sizeof r->name, s->seq, s->first_index);
    int fd = openat(r->dirfd, r->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return pykv_fail(PYKV_EIO, err, err_bytes,
                             "WAL segment %s/%s is gone: it was released while being read",
                             r->dir, r->name);
        return pykv_fail_os(e, err, err_bytes, "cannot open WAL segment %s/%s", r->dir, r->name);
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0) {
        int e = errno;
        close(fd);
        return pykv_fail_os(e, err, err_bytes, "cannot size WAL segment %s/%s", r->dir, r->name);
    }
    r->cursor.fd = fd;
    r->cursor.seq = s->seq;
    r->cursor.name = r->name;
    r->cursor.end = (uint64_t)size;
    if (r->at == r->nsegs - 1 && r->last_end < r->cursor.end) r->cursor.end = r->last_end;
    r->cursor.buf.len = 0;
    r->cursor.buf_off = 0;
    r->offset = 0;
    return PYKV_OK;
}

static int grow_batch(pykv_wal_reader *r, size_t n) {
    if (n <= r->batch_cap) return PYKV_OK;
    uint8_t *t = realloc(r->types, n);
    if (!t) return PYKV_ENOMEM;
    r->types = t;
    uint64_t *ix = realloc(r->indexes, n * sizeof *ix);
    if (!ix) return PYKV_ENOMEM;
    r->indexes = ix;
    uint32_t *len = realloc(r->lengths, n * sizeof *len);
    if (!len) return PYKV_ENOMEM;
    r->lengths = len;
    r->batch_cap = n;
    return PYKV_OK;
}

int pykv_wal_reader_next(pykv_wal_reader *r, size_t max_records, size_t max_bytes,
                         pykv_wal_batch *batch, char *err, size_t err_bytes) {
    memset(batch, 0, sizeof *batch);
    if (max_records == 0) max_records = 1;
    if (grow_batch(r, max_records))
        return pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory for a read batch");
    r->payload.len = 0;
    size_t n = 0;
    int rc = PYKV_OK;
    while (n < max_records) {
        if (r->cursor.fd < 0) {
            rc = next_segment(r, err, err_bytes);
            if (rc == PYKV_EEOF) {
                rc = PYKV_OK;
                break;
            }
            if (rc) break;
        }
        const uint8_t *frame;
        pykv_frame_info info;
        int status = pykv_cursor_frame(&r->cursor, r->offset, &frame, &info, err, err_bytes);
        if (status < 0) {
            rc = status;
            break;
        }
        if (status == PYKV_FRAME_ZERO) {
            /* The end of this segment's data (open() checked that only
             * zeros follow). */
            close(r->cursor.fd);
            r->cursor.fd = -1;
            continue;
        }
        if (status != PYKV_FRAME_OK) {
            /* open() verified these bytes: they changed under us. */
            rc = pykv_fail(PYKV_ECORRUPT, err, err_bytes,
                           "WAL segment %s/%s: the frame at offset %llu no longer checks "
                           "(status %d) although it did when the WAL was opened",
                           r->dir, r->name, (unsigned long long)r->offset, status);
            break;
        }
        if (n && r->payload.len + info.payload_len > max_bytes) break;
        r->offset += info.frame_bytes;
        if (info.type == PYKV_RECORD_TYPE_SEGMENT_HEADER) continue;
        int sticky = pykv_sticky_slot(info.type) >= 0;
        if (info.flags & PYKV_FRAME_FLAG_CARRIED) {
            /* Carried copies give the context at the start of the first
             * segment read; later ones repeat what was already read. */
            if (r->at != 0) continue;
        } else if (!r->started) {
            if (info.index >= r->from_index) r->started = 1;
            else if (!sticky) continue;
        }
        if (pykv_buf_reserve(&r->payload, info.payload_len)) {
            rc = pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory for a read batch");
            break;
        }
        memcpy(r->payload.data + r->payload.len, frame + PYKV_FRAME_HEADER_BYTES,
               info.payload_len);
        r->payload.len += info.payload_len;
        r->types[n] = info.type;
        r->indexes[n] = info.index;
        r->lengths[n] = info.payload_len;
        n++;
    }
    if (rc) return rc;
    batch->count = n;
    batch->types = r->types;
    batch->indexes = r->indexes;
    batch->lengths = r->lengths;
    batch->payload = r->payload.data;
    batch->payload_bytes = r->payload.len;
    return PYKV_OK;
}

void pykv_wal_reader_free(pykv_wal_reader *r) {
    if (!r) return;
    if (r->cursor.fd >= 0) close(r->cursor.fd);
    if (r->dirfd >= 0) close(r->dirfd);
    pykv_buf_free(&r->cursor.buf);
    pykv_buf_free(&r->payload);
    free(r->types);
    free(r->indexes);
    free(r->lengths);
    free(r->segs);
    free(r->dir);
    free(r);
}
