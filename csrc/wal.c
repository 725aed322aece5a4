/* wal.c — the WAL handle: batch append, group commit, segment rotation,
 * release and close. Opening and recovery are in wal_recover.c, readers in
 * wal_read.c; the on-disk format is specified in pykv/wal/__init__.py.
 *
 * Group commit. Appends encode their frames into `pending` under the mutex.
 * One thread at a time holds the I/O role (io_busy): it takes the whole
 * pending buffer (swapping in the spare, so appends go on meanwhile), drops
 * the mutex, writes the bytes and calls fdatasync, then publishes
 * durable_position = the appended position at the moment it took the
 * buffer. sync(p) returns once durable_position >= p; while another thread
 * holds the role it waits on the condition variable, and the first waiter
 * to find the role free takes it for the next round. So one fdatasync covers
 * every record appended before it began, and an fdatasync that began before
 * a record was handed over never counts for that record.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "pykv_native.h"
#include "wal_internal.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int pykv_sticky_slot(uint8_t type) {
    switch (type) {
    case PYKV_RECORD_METADATA: return 0;
    case PYKV_RECORD_SNAPSHOT: return 1;
    case PYKV_RECORD_STATE: return 2;
    default: return -1;
    }
}

int pykv_wal_fdatasync(pykv_wal *w, int fd) {
    if (w->options.unsafe_no_fsync) return 0;
    return fdatasync(fd) == 0 ? 0 : errno;
}

int pykv_wal_fsync(pykv_wal *w, int fd) {
    if (w->options.unsafe_no_fsync) return 0;
    return fsync(fd) == 0 ? 0 : errno;
}

int pykv_wal_fsync_dir(pykv_wal *w) {
    if (w->options.unsafe_no_fsync) return 0;
    return pykv_fsync_dir(w->dirfd);
}

int pykv_wal_push_segment(pykv_wal *w, uint64_t seq, uint64_t first_index) {
    if (w->nsegs == w->segs_cap) {
        size_t cap = w->segs_cap ? w->segs_cap * 2 : 16;
        pykv_segment *segs = realloc(w->segs, cap * sizeof *segs);
        if (!segs) return PYKV_ENOMEM;
        w->segs = segs;
        w->segs_cap = cap;
    }
    w->segs[w->nsegs++] = (pykv_segment){.seq = seq, .first_index = first_index};
    return PYKV_OK;
}

/* Capacity for need bytes without touching the contents. */
static int buf_ensure(pykv_buf *buf, size_t need) {
    size_t len = buf->len;
    buf->len = 0;
    int rc = pykv_buf_reserve(buf, need);
    buf->len = len;
    return rc;
}

int pykv_wal_keep_sticky(pykv_wal *w, uint8_t type, uint64_t index, const uint8_t *payload,
                         size_t len) {
    int slot = pykv_sticky_slot(type);
    PYKV_ASSERT(slot >= 0);
    pykv_sticky *s = &w->sticky[slot];
    int rc = buf_ensure(&s->payload, len);
    if (rc) return rc;
    if (len) memcpy(s->payload.data, payload, len);
    s->payload.len = len;
    s->present = 1;
    s->type = type;
    s->index = index;
    return PYKV_OK;
}

int pykv_wal_encode_head(pykv_wal *w, uint64_t seq, uint64_t first_index, uint32_t prev_digest,
                         pykv_buf *out, uint32_t *digest) {
    uint8_t header[PYKV_SEGMENT_HEADER_PAYLOAD_BYTES];
    pykv_segment_header_payload(header, seq, first_index, prev_digest);
    uint64_t total = pykv_frame_bytes(sizeof header);
    for (int i = 0; i < PYKV_STICKY_COUNT; i++)
        if (w->sticky[i].present) total += pykv_frame_bytes(w->sticky[i].payload.len);
    out->len = 0;
    int rc = pykv_buf_reserve(out, (size_t)total);
    if (rc) return rc;
    uint64_t off = 0;
    rc = pykv_frame_encode(seq, off, PYKV_RECORD_TYPE_SEGMENT_HEADER, 0, first_index, header,
                           sizeof header, out->data, (size_t)total);
    PYKV_ASSERT(rc == PYKV_OK);
    *digest = pykv_digest_add(0, pykv_load_u32(out->data + 20));
    off += pykv_frame_bytes(sizeof header);
    for (int i = 0; i < PYKV_STICKY_COUNT; i++) {
        const pykv_sticky *s = &w->sticky[i];
        if (!s->present) continue;
        rc = pykv_frame_encode(seq, off, s->type, PYKV_FRAME_FLAG_CARRIED, s->index,
                               s->payload.data, s->payload.len, out->data + off,
                               (size_t)(total - off));
        PYKV_ASSERT(rc == PYKV_OK);
        *digest = pykv_digest_add(*digest, pykv_load_u32(out->data + off + 20));
        off += pykv_frame_bytes(s->payload.len);
    }
    PYKV_ASSERT(off == total);
    out->len = (size_t)total;
    return PYKV_OK;
}

/* Paired assertion (STYLE habit 9): every frame about to be written checks,
 * and they tile the buffer exactly, so nothing that happened to the buffer
 * between encoding and the disk goes out unnoticed. */
static void assert_frames(uint64_t seq, uint64_t offset, const pykv_buf *out) {
    pykv_frame_info info;
    for (size_t at = 0; at < out->len; at += (size_t)info.frame_bytes) {
        int status = pykv_frame_check(seq, offset + at, out->data + at, out->len - at, &info);
        PYKV_ASSERT(status == PYKV_FRAME_OK);
    }
}

static void tmp_name(char *out, size_t out_bytes, uint64_t seq, uint64_t first_index) {
    char name[PYKV_WAL_NAME_BYTES];
    pykv_segment_name(name, sizeof name, seq, first_index);
    snprintf(out, out_bytes, "%s.tmp", name);
}

int pykv_wal_prepare_segment(pykv_wal *w, uint64_t seq, uint64_t first_index,
                             const pykv_buf *head, int *fd_out, char *err, size_t err_bytes) {
    char tmp[PYKV_WAL_NAME_BYTES + 8];
    tmp_name(tmp, sizeof tmp, seq, first_index);
    const char *what = "create";
    int e = 0;
    int fd = openat(w->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) e = errno;
    uint64_t size = w->options.segment_bytes > head->len ? w->options.segment_bytes : head->len;
    if (!e) {
        what = "preallocate";
        e = posix_fallocate(fd, 0, (off_t)size);
    }
    if (!e) {
        what = "write the head of";
        assert_frames(seq, 0, head);
        e = pykv_pwrite_all(fd, head->data, head->len, 0);
    }
    if (!e) {
        /* fsync, not fdatasync: the size and the extents are new. */
        what = "fsync";
        e = pykv_wal_fsync(w, fd);
    }
    if (e) {
        if (fd >= 0) close(fd);
        unlinkat(w->dirfd, tmp, 0);
        return pykv_fail_os(e, err, err_bytes, "cannot %s WAL segment %s/%s", what, w->dir, tmp);
    }
    *fd_out = fd;
    return PYKV_OK;
}

int pykv_wal_commit_segment(pykv_wal *w, uint64_t seq, uint64_t first_index, char *err,
                            size_t err_bytes) {
    char name[PYKV_WAL_NAME_BYTES], tmp[PYKV_WAL_NAME_BYTES + 8];
    pykv_segment_name(name, sizeof name, seq, first_index);
    tmp_name(tmp, sizeof tmp, seq, first_index);
    const char *what = "rename (failpoint)";
    int e = pykv_failpoint_hit(w->failpoints, PYKV_FP_BEFORE_RENAME) ? EIO : 0;
    if (!e) {
        what = "rename";
        e = renameat(w->dirfd, tmp, w->dirfd, name) == 0 ? 0 : errno;
    }
    if (!e) {
        what = "fsync the directory after naming";
        e = pykv_wal_fsync_dir(w);
    }
    if (!e && pykv_failpoint_hit(w->failpoints, PYKV_FP_AFTER_RENAME)) {
        what = "(failpoint) finish naming";
        e = EIO;
    }
    if (e) return pykv_fail_os(e, err, err_bytes, "cannot %s WAL segment %s/%s", what, w->dir, name);
    return PYKV_OK;
}

/* Make the handle refuse all writes from now on (a failed write or sync may
 * have lost dirty pages; ATC'20, RELIABILITY §4.2). mu held. */
static int go_fatal(pykv_wal *w, const char *text, char *err, size_t err_bytes) {
    if (!w->fatal) {
        w->fatal = 1;
        pykv_fail(0, w->fatal_text, sizeof w->fatal_text,
                  "%s; the WAL refuses further writes: close it and reopen to recover from disk",
                  text);
    }
    pthread_cond_broadcast(&w->cv);
    return pykv_fail(PYKV_EFATAL, err, err_bytes, "%s", w->fatal_text);
}

static void return_spare(pykv_wal *w, pykv_buf out) {
    out.len = 0;
    if (out.cap > PYKV_WAL_KEEP_BUFFER_BYTES) pykv_buf_free(&out);
    if (w->spare.cap >= out.cap) {
        pykv_buf_free(&out);
    } else {
        pykv_buf_free(&w->spare);
        w->spare = out;
    }
}

/* Take the pending frames for writing: swap in the spare buffer. mu held. */
static pykv_buf take_pending(pykv_wal *w, uint64_t *offset) {
    pykv_buf out = w->pending;
    w->pending = w->spare;
    w->pending.len = 0;
    w->spare = (pykv_buf){0};
    *offset = w->pending_off;
    w->pending_off += out.len;
    return out;
}

/* The I/O role. One thread at a time writes and syncs the last segment.
 * Threads in sync() queue as waiters, each on its own semaphore,
 * and are woken once: when their position is durable, or to take the role
 * over (LevelDB's writer queue). Waking them all on every fdatasync costs
 * a context switch per waiter per round, which on a small machine is what
 * bounds group commit. Threads that need the role for something else
 * (rotation, back-pressure, readers, close) wait on w->cv and go first. */
enum { WAITER_WAITING, WAITER_DONE, WAITER_LEAD };

/* A semaphore rather than a condition variable: a woken waiter whose
 * records are durable returns without taking the mutex again, so the
 * waiters one fdatasync releases do not convoy on it. */
typedef struct sync_waiter {
    sem_t wake;
    uint64_t position;
    int state;
    int result; /* for DONE: PYKV_OK, or why not (fatal, closed) */
    struct sync_waiter *next;
} sync_waiter;

/* Wait until the I/O role is free and take it. mu held. */
static void acquire_io(pykv_wal *w) {
    w->io_waiters++;
    while (w->io_busy) pthread_cond_wait(&w->cv, &w->mu);
    w->io_waiters--;
    w->io_busy = 1;
}

/* Wake the sync waiters whose positions are durable (all of them once the
 * handle failed or closed). mu held. */
static void wake_covered(pykv_wal *w) {
    sync_waiter **link = (sync_waiter **)&w->waiters;
    while (*link) {
        sync_waiter *x = *link;
        int covered = x->position <= w->durable_position;
        if (covered || w->fatal || w->closed) {
            *link = x->next;
            x->state = WAITER_DONE;
            x->result = covered ? PYKV_OK : w->fatal ? PYKV_EFATAL : PYKV_ECLOSED;
            sem_post(&x->wake); /* x may be gone as soon as this returns */
        } else {
            link = &x->next;
        }
    }
}

/* Give up the I/O role: wake the covered sync waiters, then hand the role
 * to the oldest waiter left, unless a thread waits for it on w->cv. mu
 * held. */
static void release_io(pykv_wal *w) {
    PYKV_ASSERT(w->io_busy);
    wake_covered(w);
    sync_waiter *next = w->waiters;
    if (next && !w->io_waiters) {
        w->waiters = next->next;
        next->state = WAITER_LEAD; /* io_busy stays set: the role passes on */
        sem_post(&next->wake);
        return;
    }
    w->io_busy = 0;
    pthread_cond_broadcast(&w->cv);
}

/* With mu held and the I/O role taken: write the pending frames and, when
 * want_sync, fdatasync; mu is dropped meanwhile. */
static int io_flush(pykv_wal *w, int want_sync, char *err, size_t err_bytes) {
    PYKV_ASSERT(w->io_busy);
    uint64_t offset;
    pykv_buf out = take_pending(w, &offset);
    uint64_t target = w->appended_position;
    uint64_t records = w->appended_records;
    uint64_t seq = w->segs[w->nsegs - 1].seq;
    int fd = w->fd;
    pthread_mutex_unlock(&w->mu);
    assert_frames(seq, offset, &out);

    const char *what = NULL;
    int e = 0;
    uint64_t sync_ns = 0;
    if (out.len) {
        what = "write";
        if (pykv_failpoint_hit(w->failpoints, PYKV_FP_BEFORE_WRITE)) e = EIO;
        if (!e) e = pykv_pwrite_all(fd, out.data, out.len, offset);
        if (!e && pykv_failpoint_hit(w->failpoints, PYKV_FP_AFTER_WRITE)) e = EIO;
    }
    if (!e && want_sync) {
        what = "fdatasync";
        if (pykv_failpoint_hit(w->failpoints, PYKV_FP_BEFORE_SYNC)) e = EIO;
        uint64_t t0 = now_ns();
        if (!e) e = pykv_wal_fdatasync(w, fd);
        sync_ns = now_ns() - t0;
        if (!e && pykv_failpoint_hit(w->failpoints, PYKV_FP_AFTER_SYNC)) e = EIO;
    }

    pthread_mutex_lock(&w->mu);
    size_t written = out.len;
    return_spare(w, out);
    if (e) {
        char text[PYKV_WAL_ERROR_BYTES];
        pykv_fail_os(e, text, sizeof text, "%s of %zu bytes at offset %llu of WAL segment %s/%s failed",
                     what, written, (unsigned long long)offset, w->dir, w->name);
        return go_fatal(w, text, err, err_bytes);
    }
    if (written) w->stats.writes++;
    w->written_position = target;
    if (want_sync) {
        PYKV_ASSERT(target >= w->durable_position);
        uint64_t covered = records - w->durable_records;
        w->last_round_covered = covered;
        w->last_sync_ns = sync_ns;
        w->durable_position = target;
        w->durable_records = records;
        if (!w->options.unsafe_no_fsync) {
            w->stats.syncs++;
            w->stats.sync_ns_total += sync_ns;
            if (sync_ns > w->stats.sync_ns_max) w->stats.sync_ns_max = sync_ns;
            if (covered > w->stats.synced_records_max) w->stats.synced_records_max = covered;
        }
    }
    return PYKV_OK;
}

static int refuse(pykv_wal *w, char *err, size_t err_bytes) {
    if (w->fatal) return pykv_fail(PYKV_EFATAL, err, err_bytes, "%s", w->fatal_text);
    if (w->closed) return pykv_fail(PYKV_ECLOSED, err, err_bytes, "the WAL in %s is closed", w->dir);
    return PYKV_OK;
}

/* Seal the last segment and start segment seq+1 whose first record has
 * first_index. mu held and the I/O role taken (released on return). A
 * failure to create the new file (no space, ...) changes nothing; a
 * failure once the old segment is being sealed is fatal. */
static void end_rotation(pykv_wal *w) {
    w->rotating = 0;
    pthread_cond_broadcast(&w->cv); /* appends wait on rotating */
    release_io(w);
}

static int rotate(pykv_wal *w, uint64_t first_index, char *err, size_t err_bytes) {
    PYKV_ASSERT(w->io_busy);
    w->rotating = 1;
    uint64_t seq = w->segs[w->nsegs - 1].seq + 1;
    pykv_buf head = {0};
    uint32_t head_digest = 0;
    int rc = pykv_wal_encode_head(w, seq, first_index, w->digest, &head, &head_digest);
    if (rc) {
        end_rotation(w);
        return pykv_fail(rc, err, err_bytes, "out of memory encoding a WAL segment head");
    }
    uint64_t offset;
    pykv_buf out = take_pending(w, &offset);
    uint64_t target = w->appended_position, records = w->appended_records;
    uint64_t old_end = w->tail_off;
    uint64_t old_seq = w->segs[w->nsegs - 1].seq;
    int old_fd = w->fd;
    char old_name[PYKV_WAL_NAME_BYTES], new_name[PYKV_WAL_NAME_BYTES];
    memcpy(old_name, w->name, sizeof old_name);
    pykv_segment_name(new_name, sizeof new_name, seq, first_index);
    pthread_mutex_unlock(&w->mu);

    /* 1. The new file, up to but not including its rename. */
    char text[PYKV_WAL_ERROR_BYTES];
    int fd = -1;
    rc = pykv_wal_prepare_segment(w, seq, first_index, &head, &fd, text, sizeof text);
    uint64_t head_bytes = head.len;
    uint64_t size = w->options.segment_bytes > head_bytes ? w->options.segment_bytes : head_bytes;
    pykv_buf_free(&head);
    if (rc) {
        pthread_mutex_lock(&w->mu);
        /* Nothing changed: put the pending frames back (appends waited). */
        PYKV_ASSERT(w->pending.len == 0);
        pykv_buf_free(&w->pending);
        w->pending = out;
        w->pending_off = offset;
        end_rotation(w);
        return pykv_fail(rc, err, err_bytes, "%s", text);
    }

    /* 2. Seal the old segment: its frames written and synced, its size cut
     * to them (so that a scan finds data up to its very end), and that size
     * synced, all before the new segment gets its name. */
    const char *what = "write";
    int e = 0;
    assert_frames(old_seq, offset, &out);
    if (out.len) {
        if (pykv_failpoint_hit(w->failpoints, PYKV_FP_BEFORE_WRITE)) e = EIO;
        if (!e) e = pykv_pwrite_all(old_fd, out.data, out.len, offset);
    }
    if (!e) {
        what = "fdatasync";
        if (pykv_failpoint_hit(w->failpoints, PYKV_FP_BEFORE_SYNC)) e = EIO;
        if (!e) e = pykv_wal_fdatasync(w, old_fd);
    }
    if (!e) {
        what = "truncate";
        e = ftruncate(old_fd, (off_t)old_end) == 0 ? 0 : errno;
    }
    if (!e) {
        what = "fsync";
        e = pykv_wal_fsync(w, old_fd);
    }
    if (e) {
        pykv_fail_os(e, text, sizeof text, "cannot %s WAL segment %s/%s while sealing it", what,
                     w->dir, old_name);
        char tmp[PYKV_WAL_NAME_BYTES + 8];
        tmp_name(tmp, sizeof tmp, seq, first_index);
        unlinkat(w->dirfd, tmp, 0);
    } else {
        /* 3. Name the new segment and make the name durable. */
        rc = pykv_wal_commit_segment(w, seq, first_index, text, sizeof text);
        if (rc) e = EIO;
    }

    pthread_mutex_lock(&w->mu);
    size_t written = out.len;
    return_spare(w, out);
    if (e) {
        close(fd);
        rc = go_fatal(w, text, err, err_bytes);
        end_rotation(w);
        return rc;
    }
    rc = pykv_wal_push_segment(w, seq, first_index);
    if (rc) {
        close(fd);
        rc = go_fatal(w, "out of memory recording a new WAL segment", err, err_bytes);
        end_rotation(w);
        return rc;
    }
    close(old_fd);
    w->fd = fd;
    memcpy(w->name, new_name, sizeof w->name);
    w->file_bytes = size;
    w->tail_off = w->pending_off = head_bytes;
    w->digest = head_digest;
    if (written) w->stats.writes++;
    w->written_position = w->durable_position = target;
    w->durable_records = records;
    w->stats.rotations++;
    end_rotation(w);
    return PYKV_OK;
}

/* Check a batch before taking the lock; *frame_total = bytes it takes. */
static int validate_batch(size_t count, const uint8_t *types, const uint32_t *lengths,
                          size_t payload_bytes, uint64_t *frame_total, char *err,
                          size_t err_bytes) {
    uint64_t sum = 0, total = 0;
    for (size_t i = 0; i < count; i++) {
        if (types[i] < 1 || types[i] > PYKV_RECORD_TYPE_USER_MAX)
            return pykv_fail(PYKV_EINVAL, err, err_bytes,
                             "record %zu of the batch: type %u is not a record type "
                             "(1..%d; the others are the WAL's own)",
                             i, types[i], PYKV_RECORD_TYPE_USER_MAX);
        if (lengths[i] > PYKV_RECORD_PAYLOAD_BYTES_MAX)
            return pykv_fail(PYKV_ETOOLARGE, err, err_bytes,
                             "record %zu of the batch: payload of %u bytes is over the limit "
                             "of %d bytes per record",
                             i, lengths[i], PYKV_RECORD_PAYLOAD_BYTES_MAX);
        sum += lengths[i];
        total += pykv_frame_bytes(lengths[i]);
    }
    if (sum != payload_bytes)
        return pykv_fail(PYKV_EINVAL, err, err_bytes,
                         "the record lengths add up to %llu bytes but %zu bytes of payload "
                         "were given",
                         (unsigned long long)sum, payload_bytes);
    *frame_total = total;
    return PYKV_OK;
}

/* Append a validated batch. mu held. */
static int append_locked(pykv_wal *w, size_t count, const uint8_t *types,
                         const uint64_t *indexes, const uint32_t *lengths,
                         const uint8_t *payload, uint64_t frame_total, int write_behind,
                         uint64_t *position, char *err, size_t err_bytes) {
    int rc;
    for (;;) {
        if ((rc = refuse(w, err, err_bytes))) return rc;
        if (w->rotating) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        int rotation = count && w->tail_off + frame_total > w->file_bytes &&
                       w->segs[w->nsegs - 1].records;
        /* Back-pressure: the writer is behind by more than the cap. */
        int backlog = w->pending.len && w->pending.len + frame_total > PYKV_WAL_PENDING_BYTES_MAX;
        if (!rotation && !backlog) break;
        acquire_io(w);
        if (w->fatal || w->closed || w->rotating) {
            release_io(w);
            continue;
        }
        if (rotation) {
            if ((rc = rotate(w, indexes[0], err, err_bytes))) return rc;
            continue; /* and check again: others may have filled the new one */
        }
        rc = io_flush(w, 0, err, err_bytes);
        release_io(w);
        if (rc) return rc;
    }
    if (frame_total > SIZE_MAX) return pykv_fail(PYKV_ENOMEM, err, err_bytes, "batch too large");
    /* Reserve everything first, so that an error appends nothing. */
    if ((rc = pykv_buf_reserve(&w->pending, (size_t)frame_total)))
        return pykv_fail(rc, err, err_bytes, "out of memory for a batch of %llu bytes",
                         (unsigned long long)frame_total);
    ptrdiff_t last_sticky[PYKV_STICKY_COUNT] = {-1, -1, -1};
    size_t starts[PYKV_STICKY_COUNT] = {0, 0, 0};
    size_t start = 0;
    for (size_t i = 0; i < count; i++) {
        int slot = pykv_sticky_slot(types[i]);
        if (slot >= 0) {
            last_sticky[slot] = (ptrdiff_t)i;
            starts[slot] = start;
        }
        start += lengths[i];
    }
    for (int s = 0; s < PYKV_STICKY_COUNT; s++)
        if (last_sticky[s] >= 0 && (rc = buf_ensure(&w->sticky[s].payload,
                                                    lengths[last_sticky[s]])))
            return pykv_fail(rc, err, err_bytes, "out of memory keeping a sticky record");

    pykv_segment *seg = &w->segs[w->nsegs - 1];
    uint8_t *out = w->pending.data + w->pending.len;
    const uint8_t *p = payload;
    uint64_t off = w->tail_off;
    for (size_t i = 0; i < count; i++) {
        uint64_t fb = pykv_frame_bytes(lengths[i]);
        rc = pykv_frame_encode(seg->seq, off, types[i], 0, indexes[i], p, lengths[i], out,
                               (size_t)fb);
        PYKV_ASSERT(rc == PYKV_OK);
        w->digest = pykv_digest_add(w->digest, pykv_load_u32(out + 20));
        out += fb;
        off += fb;
        p += lengths[i];
        if (seg->records == 0 || indexes[i] > seg->max_index) seg->max_index = indexes[i];
        seg->records++;
        w->last_index = indexes[i];
    }
    for (int s = 0; s < PYKV_STICKY_COUNT; s++) {
        if (last_sticky[s] < 0) continue;
        size_t i = (size_t)last_sticky[s];
        rc = pykv_wal_keep_sticky(w, types[i], indexes[i], payload + starts[s], lengths[i]);
        PYKV_ASSERT(rc == PYKV_OK); /* capacity was reserved above */
    }
    w->pending.len += (size_t)frame_total;
    w->tail_off = off;
    if (off > w->file_bytes) w->file_bytes = off; /* a batch larger than a segment */
    w->appended_position += frame_total;
    w->appended_records += count;
    w->stats.appends++;
    w->stats.records += count;
    w->stats.bytes += frame_total;
    *position = w->appended_position;
    PYKV_ASSERT(w->pending_off + w->pending.len == w->tail_off);

    if (write_behind && w->pending.len >= PYKV_WAL_FLUSH_BYTES && !w->io_busy) {
        w->io_busy = 1;
        rc = io_flush(w, 0, err, err_bytes);
        release_io(w);
        if (rc) return rc;
    }
    return PYKV_OK;
}

int pykv_wal_write_pending_locked(pykv_wal *w, char *err, size_t err_bytes) {
    int rc = refuse(w, err, err_bytes);
    if (rc || !w->pending.len) return rc;
    acquire_io(w);
    rc = refuse(w, err, err_bytes);
    if (!rc && w->pending.len) rc = io_flush(w, 0, err, err_bytes);
    release_io(w);
    return rc;
}

/* Adaptive group-commit delay. When the last fdatasync covered several
 * writers, they are about to append again (each must get back through the
 * GIL first, one after the other); the leader gives them a moment, at most
 * half an fdatasync, before it takes the buffer, so that one fdatasync
 * covers them all instead of half of them. It yields rather than sleeps:
 * a sleeping CPU on a VM is slow to wake. A lone writer never waits.
 * mu held, I/O role taken. */
static void gather_writers(pykv_wal *w) {
    uint64_t want = w->last_round_covered;
    if (want < 2) return;
    uint64_t limit = w->last_sync_ns / 2;
    if (limit > PYKV_WAL_GATHER_NS_MAX) limit = PYKV_WAL_GATHER_NS_MAX;
    uint64_t start = now_ns();
    while (w->appended_records - w->durable_records < want && now_ns() - start < limit &&
           !w->io_waiters) {
        pthread_mutex_unlock(&w->mu);
        sched_yield();
        pthread_mutex_lock(&w->mu);
    }
}

/* Return once position is durable. Called with mu held; returns with it
 * released (a waiter that is told its records are durable never takes it
 * again). */
static int sync_and_unlock(pykv_wal *w, uint64_t position, char *err, size_t err_bytes) {
    if (position == PYKV_WAL_POSITION_ALL) position = w->appended_position;
    int rc = PYKV_OK;
    if (w->closed)
        rc = pykv_fail(PYKV_ECLOSED, err, err_bytes, "the WAL in %s is closed", w->dir);
    else if (position > w->appended_position)
        rc = pykv_fail(PYKV_EINVAL, err, err_bytes,
                       "position %llu is past the end of the log (%llu): positions come from "
                       "append() on this handle",
                       (unsigned long long)position, (unsigned long long)w->appended_position);
    while (!rc && w->durable_position < position && !(rc = refuse(w, err, err_bytes))) {
        if (w->io_busy) {
            sync_waiter x = {.position = position, .state = WAITER_WAITING};
            sem_init(&x.wake, 0, 0);
            sync_waiter **link = (sync_waiter **)&w->waiters;
            while (*link) link = &(*link)->next;
            *link = &x;
            pthread_mutex_unlock(&w->mu);
            while (sem_wait(&x.wake) != 0) PYKV_ASSERT(errno == EINTR);
            sem_destroy(&x.wake);
            if (x.state == WAITER_DONE) {
                if (x.result == PYKV_EFATAL) /* fatal_text is fixed once fatal is set */
                    return pykv_fail(PYKV_EFATAL, err, err_bytes, "%s", w->fatal_text);
                if (x.result == PYKV_ECLOSED)
                    return pykv_fail(PYKV_ECLOSED, err, err_bytes, "the WAL in %s is closed",
                                     w->dir);
                return PYKV_OK;
            }
            pthread_mutex_lock(&w->mu); /* LEAD: the I/O role was handed to us */
        }
        w->io_busy = 1;
        /* A leader that is running leads a few more rounds while others
         * wait: handing the role to a sleeping thread puts its wake-up
         * (tens of microseconds on a VM whose CPUs idled during the
         * fdatasync) on the path of every round. Bounded, so the caller
         * still returns soon after its own records are durable. */
        for (int round = 1;; round++) {
            gather_writers(w);
            rc = io_flush(w, 1, err, err_bytes);
            if (rc || round >= PYKV_WAL_LEAD_ROUNDS_MAX || w->io_waiters) break;
            wake_covered(w);
            if (!w->waiters) break;
        }
        release_io(w);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Validate a batch, take mu and append it. On success mu stays held for the
 * caller's next step; on failure it is released. */
static int lock_and_append(pykv_wal *wal, size_t count, const uint8_t *types,
                           const uint64_t *indexes, const uint32_t *lengths,
                           const uint8_t *payload, size_t payload_bytes, int write_behind,
                           uint64_t *position, char *err, size_t err_bytes) {
    uint64_t total = 0;  /* set by validate_batch; gcc cannot see it through the inlining */
    int rc = validate_batch(count, types, lengths, payload_bytes, &total, err, err_bytes);
    if (rc) return rc;
    pthread_mutex_lock(&wal->mu);
    rc = append_locked(wal, count, types, indexes, lengths, payload, total, write_behind,
                       position, err, err_bytes);
    if (rc) pthread_mutex_unlock(&wal->mu);
    return rc;
}

int pykv_wal_append(pykv_wal *wal, size_t count, const uint8_t *types,
                    const uint64_t *indexes, const uint32_t *lengths,
                    const uint8_t *payload, size_t payload_bytes, uint64_t *position,
                    char *err, size_t err_bytes) {
    int rc = lock_and_append(wal, count, types, indexes, lengths, payload, payload_bytes, 1,
                             position, err, err_bytes);
    if (!rc) pthread_mutex_unlock(&wal->mu);
    return rc;
}

int pykv_wal_sync(pykv_wal *wal, uint64_t position, char *err, size_t err_bytes) {
    pthread_mutex_lock(&wal->mu);
    return sync_and_unlock(wal, position, err, err_bytes);
}

int pykv_wal_append_sync(pykv_wal *wal, size_t count, const uint8_t *types,
                         const uint64_t *indexes, const uint32_t *lengths,
                         const uint8_t *payload, size_t payload_bytes,
                         uint64_t *position, char *err, size_t err_bytes) {
    int rc = lock_and_append(wal, count, types, indexes, lengths, payload, payload_bytes, 0,
                             position, err, err_bytes);
    if (rc) return rc;
    return sync_and_unlock(wal, *position, err, err_bytes);
}

int pykv_wal_append_write(pykv_wal *wal, size_t count, const uint8_t *types,
                          const uint64_t *indexes, const uint32_t *lengths,
                          const uint8_t *payload, size_t payload_bytes,
                          uint64_t *position, char *err, size_t err_bytes) {
    int rc = lock_and_append(wal, count, types, indexes, lengths, payload, payload_bytes, 0,
                             position, err, err_bytes);
    if (rc) return rc;
    /* Everything pending goes out, this batch included: a later sync may
     * then find nothing left to write. */
    rc = pykv_wal_write_pending_locked(wal, err, err_bytes);
    pthread_mutex_unlock(&wal->mu);
    return rc;
}

int pykv_wal_release(pykv_wal *wal, uint64_t below_index, uint64_t *segments_removed,
                     char *err, size_t err_bytes) {
    *segments_removed = 0;
    pthread_mutex_lock(&wal->release_mu);
    pthread_mutex_lock(&wal->mu);
    int rc = refuse(wal, err, err_bytes);
    size_t n = 0;
    while (!rc && n + 1 < wal->nsegs &&
           (wal->segs[n].records == 0 || wal->segs[n].max_index < below_index))
        n++;
    pykv_segment *doomed = NULL;
    if (!rc && n) {
        doomed = malloc(n * sizeof *doomed);
        if (!doomed) rc = pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory");
        else memcpy(doomed, wal->segs, n * sizeof *doomed);
    }
    pthread_mutex_unlock(&wal->mu);

    /* Oldest first, so that a crash part way leaves a contiguous run. Only
     * release removes from the front of the list, and release_mu serializes
     * it, so the first n entries are still these when we drop them. */
    size_t removed = 0;
    for (; !rc && removed < n; removed++) {
        char name[PYKV_WAL_NAME_BYTES];
        pykv_segment_name(name, sizeof name, doomed[removed].seq, doomed[removed].first_index);
        int e = pykv_failpoint_hit(wal->failpoints, PYKV_FP_BEFORE_UNLINK) ? EIO : 0;
        if (!e && unlinkat(wal->dirfd, name, 0) != 0 && errno != ENOENT) e = errno;
        if (e) {
            rc = pykv_fail_os(e, err, err_bytes, "cannot remove WAL segment %s/%s", wal->dir, name);
            break;
        }
    }
    free(doomed);
    if (removed) {
        pthread_mutex_lock(&wal->mu);
        memmove(wal->segs, wal->segs + removed, (wal->nsegs - removed) * sizeof *wal->segs);
        wal->nsegs -= removed;
        pthread_mutex_unlock(&wal->mu);
        int e = pykv_wal_fsync_dir(wal);
        if (e && !rc)
            rc = pykv_fail_os(e, err, err_bytes, "cannot fsync WAL directory %s after removing "
                              "segments", wal->dir);
    }
    *segments_removed = removed;
    pthread_mutex_unlock(&wal->release_mu);
    return rc;
}

int pykv_wal_segment(pykv_wal *wal, uint64_t i, char *name, size_t name_bytes, uint64_t *seq,
                     uint64_t *first_index, uint64_t *max_index) {
    pthread_mutex_lock(&wal->mu);
    int rc = PYKV_EEOF;
    if (i < wal->nsegs) {
        const pykv_segment *s = &wal->segs[i];
        pykv_segment_name(name, name_bytes, s->seq, s->first_index);
        *seq = s->seq;
        *first_index = s->first_index;
        *max_index = s->max_index;
        rc = PYKV_OK;
    }
    pthread_mutex_unlock(&wal->mu);
    return rc;
}

void pykv_wal_get_info(pykv_wal *wal, pykv_wal_info *info) {
    pthread_mutex_lock(&wal->mu);
    info->last_index = wal->last_index;
    info->first_index = wal->nsegs ? wal->segs[0].first_index : 0;
    info->appended_position = wal->appended_position;
    info->durable_position = wal->durable_position;
    info->segments = wal->nsegs;
    info->current_seq = wal->nsegs ? wal->segs[wal->nsegs - 1].seq : 0;
    info->segment_bytes = wal->options.segment_bytes;
    info->fatal = wal->fatal;
    info->closed = wal->closed;
    pthread_mutex_unlock(&wal->mu);
}

void pykv_wal_get_stats(pykv_wal *wal, pykv_wal_stats *stats) {
    pthread_mutex_lock(&wal->mu);
    *stats = wal->stats;
    pthread_mutex_unlock(&wal->mu);
}

int pykv_wal_close(pykv_wal *wal, char *err, size_t err_bytes) {
    pthread_mutex_lock(&wal->mu);
    if (wal->closed) {
        pthread_mutex_unlock(&wal->mu);
        return PYKV_OK;
    }
    acquire_io(wal);
    int rc = PYKV_OK;
    if (!wal->fatal && !wal->closed && wal->durable_position < wal->appended_position)
        rc = io_flush(wal, 1, err, err_bytes);
    wal->closed = 1;
    if (wal->fd >= 0) close(wal->fd);
    wal->fd = -1;
    if (wal->dirfd >= 0) close(wal->dirfd); /* drops the flock */
    wal->dirfd = -1;
    release_io(wal);
    pthread_mutex_unlock(&wal->mu);
    return rc;
}

void pykv_wal_free(pykv_wal *wal) {
    if (!wal) return;
    pykv_wal_close(wal, NULL, 0);
    pthread_mutex_destroy(&wal->mu);
    pthread_mutex_destroy(&wal->release_mu);
    pthread_cond_destroy(&wal->cv);
    pykv_buf_free(&wal->pending);
    pykv_buf_free(&wal->spare);
    for (int i = 0; i < PYKV_STICKY_COUNT; i++) pykv_buf_free(&wal->sticky[i].payload);
    free(wal->segs);
    free(wal->dir);
    free(wal);
}
