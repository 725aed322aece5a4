/* wal_recover.c — pykv_wal_open: lock the directory, list the segments,
 * verify every frame, tell a torn tail (cut it) from a corruption (refuse,
 * or cut with repair), and get the last segment ready for appends.
 *
 * The rules (pykv/wal/__init__.py has them in prose, with the reasons):
 * scanning a segment stops at the first frame that does not check, at
 * offset X. If only zeros follow, X is the clean end of the data. Otherwise
 * the rest of the segment is searched for intact frames (the CRC binds a
 * frame to its offset, so each can be checked on its own):
 *   - in a segment that is not the last: corruption;
 *   - intact frames follow, and some 512-byte sector piece of [X, first
 *     intact) is all zeros: a torn write whose later pages reached the disk
 *     but earlier ones did not, so none of it was synced: cut at X;
 *   - intact frames follow and no such zero piece: corruption;
 *   - nothing intact follows: a torn or garbage tail, cut at X; except a
 *     frame with a well-formed header, wholly inside the file, whose CRC
 *     fails and none of whose sector pieces is all zero: a record that was
 *     written whole and then changed, i.e. corruption.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "pykv_native.h"
#include "wal_internal.h"

#define SECTOR_BYTES 512u

/* --- the directory ---------------------------------------------------------- */

static int fsync_parent(const char *path, char *err, size_t err_bytes) {
    char *copy = strdup(path);
    if (!copy) return pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory");
    char *slash = strrchr(copy, '/');
    const char *parent = ".";
    if (slash == copy) parent = "/";
    else if (slash) {
        *slash = 0;
        parent = copy;
    }
    int rc = PYKV_OK;
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        rc = pykv_fail_os(errno, err, err_bytes, "cannot fsync directory %s", parent);
    if (fd >= 0) close(fd);
    free(copy);
    return rc;
}

/* mkdir -p with mode 0700, fsyncing the parent of each directory made. */
static int make_dirs(char *path, char *err, size_t err_bytes) {
    if (mkdir(path, 0700) == 0) return fsync_parent(path, err, err_bytes);
    if (errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) != 0)
            return pykv_fail_os(errno, err, err_bytes, "cannot stat %s", path);
        if (!S_ISDIR(st.st_mode))
            return pykv_fail(PYKV_EINVAL, err, err_bytes, "%s exists and is not a directory",
                             path);
        return PYKV_OK;
    }
    if (errno != ENOENT) return pykv_fail_os(errno, err, err_bytes, "cannot create %s", path);
    char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return pykv_fail_os(ENOENT, err, err_bytes, "cannot create %s", path);
    *slash = 0;
    int rc = make_dirs(path, err, err_bytes);
    *slash = '/';
    if (rc) return rc;
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return pykv_fail_os(errno, err, err_bytes, "cannot create %s", path);
    return fsync_parent(path, err, err_bytes);
}

static int cmp_seq(const void *a, const void *b) {
    const pykv_segment *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Collect the segment names, oldest first, and remove *.tmp leftovers of an
 * unfinished segment creation (they were never named, so hold nothing that
 * was acknowledged). */
static int list_segments(pykv_wal *w, pykv_wal_recovery *rec, char *err, size_t err_bytes) {
    int fd = dup(w->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0) close(fd);
        return pykv_fail_os(e, err, err_bytes, "cannot list WAL directory %s", w->dir);
    }
    int rc = PYKV_OK;
    struct dirent *ent;
    errno = 0;
    while (!rc && (ent = readdir(d)) != NULL) {
        uint64_t seq, first;
        if (ends_with(ent->d_name, ".wal.tmp")) {
            if (unlinkat(w->dirfd, ent->d_name, 0) != 0)
                rc = pykv_fail_os(errno, err, err_bytes, "cannot remove %s/%s", w->dir,
                                  ent->d_name);
            else rec->tmp_removed++;
        } else if (pykv_segment_parse_name(ent->d_name, &seq, &first)) {
            rc = pykv_wal_push_segment(w, seq, first);
            if (rc) rc = pykv_fail(rc, err, err_bytes, "out of memory");
        }
    }
    closedir(d);
    if (rc) return rc;
    if (rec->tmp_removed) {
        int e = pykv_wal_fsync_dir(w);
        if (e) return pykv_fail_os(e, err, err_bytes, "cannot fsync WAL directory %s", w->dir);
    }
    qsort(w->segs, w->nsegs, sizeof *w->segs, cmp_seq);
    return PYKV_OK;
}

/* --- one segment ------------------------------------------------------------ */

typedef struct scan_result {
    uint64_t end;          /* offset after the last intact frame */
    int status;            /* the PYKV_FRAME_* status found at end */
    pykv_frame_info bad;   /* that frame's header, as far as it was readable */
    uint32_t digest;       /* of the intact frames */
    const char *structure; /* set when intact frames break the segment's rules */
} scan_result;

/* Verify the header and every frame up to the first one that does not
 * check; keep the records' counts, indexes and sticky copies. Returns
 * PYKV_OK (see result), or an I/O or memory error. */
static int scan_segment(pykv_wal *w, pykv_cursor *c, pykv_segment *seg, scan_result *res,
                        char *err, size_t err_bytes) {
    memset(res, 0, sizeof *res);
    const uint8_t *frame;
    pykv_frame_info info;
    int status = pykv_cursor_frame(c, 0, &frame, &info, err, err_bytes);
    if (status < 0) return status;
    res->status = status;
    res->bad = info;
    if (status != PYKV_FRAME_OK) {
        res->structure = "its segment header does not check";
        return PYKV_OK;
    }
    if (info.type != PYKV_RECORD_TYPE_SEGMENT_HEADER ||
        info.payload_len != PYKV_SEGMENT_HEADER_PAYLOAD_BYTES) {
        res->structure = "it does not start with a segment header";
        return PYKV_OK;
    }
    const uint8_t *hp = frame + PYKV_FRAME_HEADER_BYTES;
    if (memcmp(hp, PYKV_SEGMENT_MAGIC, 8) != 0) {
        res->structure = "its header lacks the magic bytes PYKVWAL";
        return PYKV_OK;
    }
    if (pykv_load_u32(hp + 8) != PYKV_WAL_FORMAT_VERSION) {
        res->structure = "its header names a format version this build does not know";
        return PYKV_OK;
    }
    if (pykv_load_u64(hp + 16) != seg->seq || pykv_load_u64(hp + 24) != seg->first_index) {
        res->structure = "its header's sequence number or first index differs from its name";
        return PYKV_OK;
    }
    uint32_t prev_digest = pykv_load_u32(hp + 12);
    if (w->nsegs_scanned && prev_digest != w->digest) {
        res->structure = "its header does not link to the previous segment (digest mismatch)";
        return PYKV_OK;
    }
    uint64_t off = info.frame_bytes;
    res->digest = pykv_digest_add(0, info.crc);
    int in_head = 1; /* carried copies come only right after the header */
    for (;;) {
        status = pykv_cursor_frame(c, off, &frame, &info, err, err_bytes);
        if (status < 0) return status;
        if (status != PYKV_FRAME_OK) break;
        int sticky = pykv_sticky_slot(info.type) >= 0;
        if (info.type == PYKV_RECORD_TYPE_SEGMENT_HEADER) {
            res->structure = "a second segment header";
            break;
        }
        if (info.flags & PYKV_FRAME_FLAG_CARRIED) {
            if (!in_head || !sticky) {
                res->structure = "a carried copy out of place";
                break;
            }
        } else {
            in_head = 0;
            if (seg->records == 0 || info.index > seg->max_index) seg->max_index = info.index;
            seg->records++;
            w->last_index = info.index;
        }
        if (sticky) {
            int rc = pykv_wal_keep_sticky(w, info.type, info.index,
                                          frame + PYKV_FRAME_HEADER_BYTES, info.payload_len);
            if (rc) return pykv_fail(rc, err, err_bytes, "out of memory");
        }
        res->digest = pykv_digest_add(res->digest, info.crc);
        off += info.frame_bytes;
    }
    res->end = off;
    res->status = status;
    res->bad = info;
    return PYKV_OK;
}

typedef struct tail_result {
    uint64_t first_intact;    /* first intact frame after the end (0: none) */
    uint64_t intact_records;  /* intact frames after the end, headers and copies aside */
    uint64_t nonzero_end;     /* after the last nonzero byte at or past the end */
} tail_result;

/* Check a frame that does not fit in the cursor's window, by itself. */
static int check_alone(pykv_cursor *c, uint64_t offset, uint64_t frame_bytes,
                       pykv_frame_info *info, char *err, size_t err_bytes) {
    uint8_t *buf = malloc((size_t)frame_bytes);
    if (!buf) return pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory");
    size_t got;
    int e = pykv_pread_all(c->fd, buf, (size_t)frame_bytes, offset, &got);
    int status = e ? pykv_fail_os(e, err, err_bytes, "cannot read WAL segment %s at offset %llu",
                                  c->name, (unsigned long long)offset)
                   : pykv_frame_check(c->seq, offset, buf, got, info);
    free(buf);
    return status;
}

/* Search [from, end of file) for intact frames and the last nonzero byte. */
static int scan_after(pykv_cursor *c, uint64_t from, tail_result *t, char *err,
                      size_t err_bytes) {
    memset(t, 0, sizeof *t);
    t->nonzero_end = from;
    uint64_t p = from;
    const uint8_t *win = NULL;
    uint64_t win_off = 0;
    size_t win_len = 0;
    while (p < c->end) {
        if (p < win_off || p >= win_off + win_len) {
            int rc = pykv_cursor_load(c, p, PYKV_CURSOR_CHUNK_BYTES, &win, &win_len, err,
                                      err_bytes);
            if (rc) return rc;
            win_off = p;
            if (!win_len) break;
        }
        /* Skip zero words quickly: the preallocated tail is mostly zeros. */
        uint64_t win_end = win_off + win_len;
        while (p + 8 <= win_end) {
            uint64_t word;
            memcpy(&word, win + (p - win_off), 8);
            if (word) break;
            p += 8;
        }
        if (p >= win_end) continue;
        const uint8_t *at = win + (p - win_off);
        size_t wl = win_end - p < 8 ? (size_t)(win_end - p) : 8;
        if (pykv_all_zero(at, wl)) {
            p += wl;
            continue;
        }
        for (size_t k = wl; k > 0; k--)
            if (at[k - 1]) {
                if (p + k > t->nonzero_end) t->nonzero_end = p + k;
                break;
            }
        if (p > from || from == 0) {
            pykv_frame_info info;
            int status = pykv_frame_check(c->seq, p, at, (size_t)(win_end - p), &info);
            if (status == PYKV_FRAME_SHORT && info.frame_bytes &&
                p + info.frame_bytes <= c->end) {
                status = check_alone(c, p, info.frame_bytes, &info, err, err_bytes);
                if (status < 0) return status;
                win_len = 0; /* keep it simple: reload the window next */
            }
            if (status == PYKV_FRAME_OK) {
                if (!t->first_intact) t->first_intact = p;
                if (info.type != PYKV_RECORD_TYPE_SEGMENT_HEADER &&
                    !(info.flags & PYKV_FRAME_FLAG_CARRIED))
                    t->intact_records++;
                p += info.frame_bytes;
                if (p > t->nonzero_end) t->nonzero_end = p;
                continue;
            }
        }
        p += 8;
    }
    return PYKV_OK;
}

/* 1 in *found when some 512-byte sector piece of [a, b) is all zeros (the
 * mark of a write that did not reach the disk; etcd's isTornEntry). */
static int zero_sector_piece(pykv_cursor *c, uint64_t a, uint64_t b, int *found, char *err,
                             size_t err_bytes) {
    *found = 0;
    if (b > c->end) b = c->end;
    for (uint64_t p = a; p < b;) {
        uint64_t piece_end = (p / SECTOR_BYTES + 1) * SECTOR_BYTES;
        if (piece_end > b) piece_end = b;
        const uint8_t *at;
        size_t avail;
        int rc = pykv_cursor_load(c, p, (size_t)(piece_end - p), &at, &avail, err, err_bytes);
        if (rc) return rc;
        size_t n = avail < piece_end - p ? avail : (size_t)(piece_end - p);
        if (pykv_all_zero(at, n)) {
            *found = 1;
            return PYKV_OK;
        }
        p = piece_end;
    }
    return PYKV_OK;
}

enum verdict { CLEAN, TORN, CORRUPT };

static void describe(const scan_result *s, char *why, size_t why_bytes) {
    const pykv_frame_info *b = &s->bad;
    if (s->structure) {
        snprintf(why, why_bytes, "%s", s->structure);
        return;
    }
    switch (s->status) {
    case PYKV_FRAME_ZERO:
        snprintf(why, why_bytes, "zero bytes where a frame should start, with data after them");
        break;
    case PYKV_FRAME_SHORT:
        snprintf(why, why_bytes, "a frame (type %u, %u bytes of payload) runs past the end of the file",
                 b->type, b->payload_len);
        break;
    case PYKV_FRAME_BAD_HEADER:
        snprintf(why, why_bytes, "a frame header is damaged (type %u, flags %u, length %u)",
                 b->type, b->flags, b->payload_len);
        break;
    default:
        snprintf(why, why_bytes,
                 "a frame's checksum does not match (type %u, index %llu, %u bytes of payload)",
                 b->type, (unsigned long long)b->index, b->payload_len);
    }
}

static int classify(pykv_cursor *c, int is_last, const scan_result *s, tail_result *t,
                    enum verdict *v, char *err, size_t err_bytes) {
    int rc = scan_after(c, s->end, t, err, err_bytes);
    if (rc) return rc;
    if (s->structure) {
        *v = CORRUPT;
        return PYKV_OK;
    }
    if (s->status == PYKV_FRAME_ZERO && t->nonzero_end == s->end) {
        *v = CLEAN;
        return PYKV_OK;
    }
    if (!is_last) {
        *v = CORRUPT;
        return PYKV_OK;
    }
    int zero_piece = 0;
    if (t->first_intact) {
        rc = zero_sector_piece(c, s->end, t->first_intact, &zero_piece, err, err_bytes);
        *v = zero_piece ? TORN : CORRUPT;
        return rc;
    }
    if (s->status == PYKV_FRAME_BAD_CRC) {
        rc = zero_sector_piece(c, s->end, s->end + s->bad.frame_bytes, &zero_piece, err,
                               err_bytes);
        *v = zero_piece ? TORN : CORRUPT;
        return rc;
    }
    *v = TORN;
    return PYKV_OK;
}

/* --- cutting ----------------------------------------------------------------- */

/* Open a new "<name>.broken" (or "<name>.<k>.broken") for writing. */
static int create_broken(pykv_wal *w, const char *name, char *out, size_t out_bytes) {
    for (int k = 0; k < 1000; k++) {
        if (k == 0) snprintf(out, out_bytes, "%s.broken", name);
        else snprintf(out, out_bytes, "%s.%d.broken", name, k);
        int fd = openat(w->dirfd, out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Keep bytes [0, len) of a segment in a .broken file before cutting it. */
static int keep_broken_copy(pykv_wal *w, int fd, const char *name, uint64_t len, char *copy,
                            size_t copy_bytes, char *err, size_t err_bytes) {
    int out = create_broken(w, name, copy, copy_bytes);
    if (out < 0)
        return pykv_fail_os(errno, err, err_bytes, "cannot create a .broken copy of %s/%s",
                            w->dir, name);
    int e = 0;
    uint8_t *buf = malloc(1u << 20);
    if (!buf) e = ENOMEM;
    for (uint64_t off = 0; !e && off < len;) {
        size_t n = len - off < (1u << 20) ? (size_t)(len - off) : (1u << 20);
        size_t got;
        e = pykv_pread_all(fd, buf, n, off, &got);
        if (!e && got == 0) break;
        if (!e) e = pykv_pwrite_all(out, buf, got, off);
        off += got;
    }
    free(buf);
    if (!e) e = pykv_wal_fsync(w, out);
    close(out);
    if (!e) e = pykv_wal_fsync_dir(w);
    if (e)
        return pykv_fail_os(e, err, err_bytes, "cannot write %s/%s (a copy of %s kept before "
                            "cutting it)", w->dir, copy, name);
    return PYKV_OK;
}

/* Cut the last segment at end (zeros from there on) and give it its full
 * preallocated size again. */
static int cut_and_preallocate(pykv_wal *w, int fd, const char *name, uint64_t end, int cut,
                               char *err, size_t err_bytes) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return pykv_fail_os(errno, err, err_bytes, "cannot stat WAL segment %s/%s", w->dir, name);
    const char *what = NULL;
    int e = 0;
    if (cut) {
        what = "cut (failpoint)";
        if (pykv_failpoint_hit(w->failpoints, PYKV_FP_BEFORE_CUT)) e = EIO;
        /* Truncate, then preallocate again: what follows the end reads as
         * zeros without writing them (the kernel zeroes the partial block). */
        if (!e) {
            what = "truncate";
            e = ftruncate(fd, (off_t)end) == 0 ? 0 : errno;
        }
        if (!e) {
            what = "fsync";
            e = pykv_wal_fsync(w, fd);
        }
        st.st_size = (off_t)end;
    }
    uint64_t want = w->options.segment_bytes > end ? w->options.segment_bytes : end;
    if (!e && (uint64_t)st.st_size < want) {
        what = "preallocate";
        e = posix_fallocate(fd, 0, (off_t)want);
        if (!e) {
            what = "fsync";
            e = pykv_wal_fsync(w, fd);
        }
    }
    if (e)
        return pykv_fail_os(e, err, err_bytes, "cannot %s WAL segment %s/%s at offset %llu", what,
                            w->dir, name, (unsigned long long)end);
    return PYKV_OK;
}

/* Rename segments [from, nsegs) to *.broken (repair); count what they held. */
static int set_aside_later(pykv_wal *w, size_t from, pykv_wal_recovery *rec, char *err,
                           size_t err_bytes) {
    for (size_t i = from; i < w->nsegs; i++) {
        char name[PYKV_WAL_NAME_BYTES], broken[PYKV_WAL_NAME_BYTES + 16];
        pykv_segment_name(name, sizeof name, w->segs[i].seq, w->segs[i].first_index);
        int fd = openat(w->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            struct stat st;
            pykv_cursor c = {.fd = fd, .seq = w->segs[i].seq, .name = name};
            if (fstat(fd, &st) == 0) c.end = (uint64_t)st.st_size;
            tail_result t;
            if (scan_after(&c, 0, &t, NULL, 0) == PYKV_OK) {
                rec->repair_records_lost += t.intact_records;
                rec->repair_bytes_lost += t.nonzero_end;
            }
            pykv_buf_free(&c.buf);
            close(fd);
        }
        int out = create_broken(w, name, broken, sizeof broken);
        if (out >= 0) close(out);
        if (out < 0 || renameat(w->dirfd, name, w->dirfd, broken) != 0)
            return pykv_fail_os(errno, err, err_bytes, "cannot set WAL segment %s/%s aside",
                                w->dir, name);
        rec->repair_segments_removed++;
    }
    w->nsegs = from;
    int e = pykv_wal_fsync_dir(w);
    if (e) return pykv_fail_os(e, err, err_bytes, "cannot fsync WAL directory %s", w->dir);
    return PYKV_OK;
}

/* --- open -------------------------------------------------------------------- */

static int create_first_segment(pykv_wal *w, uint64_t seq, uint64_t first_index, char *err,
                                size_t err_bytes) {
    pykv_buf head = {0};
    uint32_t digest;
    int rc = pykv_wal_encode_head(w, seq, first_index, 0, &head, &digest);
    if (rc) return pykv_fail(rc, err, err_bytes, "out of memory");
    int fd = -1;
    rc = pykv_wal_prepare_segment(w, seq, first_index, &head, &fd, err, err_bytes);
    if (!rc) rc = pykv_wal_commit_segment(w, seq, first_index, err, err_bytes);
    if (!rc) rc = pykv_wal_push_segment(w, seq, first_index);
    if (rc) {
        if (fd >= 0) close(fd);
        pykv_buf_free(&head);
        return rc;
    }
    w->fd = fd;
    pykv_segment_name(w->name, sizeof w->name, seq, first_index);
    w->file_bytes = w->options.segment_bytes > head.len ? w->options.segment_bytes : head.len;
    w->tail_off = w->pending_off = head.len;
    w->digest = digest;
    pykv_buf_free(&head);
    return PYKV_OK;
}

static int check_options(const pykv_wal_options *o, char *err, size_t err_bytes) {
    if (o->segment_bytes < PYKV_WAL_SEGMENT_BYTES_MIN ||
        o->segment_bytes > PYKV_WAL_SEGMENT_BYTES_MAX || o->segment_bytes % 4096)
        return pykv_fail(PYKV_EINVAL, err, err_bytes,
                         "segment_bytes must be a multiple of 4096 from %d to %llu, not %llu",
                         PYKV_WAL_SEGMENT_BYTES_MIN,
                         (unsigned long long)PYKV_WAL_SEGMENT_BYTES_MAX,
                         (unsigned long long)o->segment_bytes);
    return PYKV_OK;
}

/* Scan every segment; cut, refuse or repair; leave the last one open. */
static int recover(pykv_wal *w, pykv_wal_recovery *rec, char *err, size_t err_bytes) {
    for (size_t i = 1; i < w->nsegs; i++) {
        if (w->segs[i].seq == w->segs[i - 1].seq + 1) continue;
        char name[PYKV_WAL_NAME_BYTES], prev[PYKV_WAL_NAME_BYTES];
        pykv_segment_name(name, sizeof name, w->segs[i].seq, w->segs[i].first_index);
        pykv_segment_name(prev, sizeof prev, w->segs[i - 1].seq, w->segs[i - 1].first_index);
        if (!w->options.repair) {
            snprintf(rec->corrupt_segment, sizeof rec->corrupt_segment, "%s", name);
            return pykv_fail(PYKV_ECORRUPT, err, err_bytes,
                             "WAL directory %s: segment %s does not follow %s (%s); refusing "
                             "to open (repair=True sets the later segments aside as .broken)",
                             w->dir, name, prev,
                             w->segs[i].seq == w->segs[i - 1].seq ? "two segments share a "
                             "sequence number" : "segments are missing between them");
        }
        rec->repaired = 1;
        snprintf(rec->repair_segment, sizeof rec->repair_segment, "%s", prev);
        int rc = set_aside_later(w, i, rec, err, err_bytes);
        if (rc) return rc;
        break;
    }

    for (size_t i = 0; i < w->nsegs; i++) {
        pykv_segment *seg = &w->segs[i];
        int is_last = i + 1 == w->nsegs;
        char name[PYKV_WAL_NAME_BYTES];
        pykv_segment_name(name, sizeof name, seg->seq, seg->first_index);
        int fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return pykv_fail_os(errno, err, err_bytes, "cannot open WAL segment %s/%s", w->dir,
                                name);
        struct stat st;
        if (fstat(fd, &st) != 0) {
            int e = errno;
            close(fd);
            return pykv_fail_os(e, err, err_bytes, "cannot stat WAL segment %s/%s", w->dir, name);
        }
        pykv_cursor c = {.fd = fd, .seq = seg->seq, .end = (uint64_t)st.st_size, .name = name};
        scan_result s;
        tail_result t;
        enum verdict v = CLEAN;
        int rc = scan_segment(w, &c, seg, &s, err, err_bytes);
        if (!rc) rc = classify(&c, is_last, &s, &t, &v, err, err_bytes);
        pykv_buf_free(&c.buf);
        if (rc) {
            close(fd);
            return rc;
        }
        w->nsegs_scanned++;
        w->digest = s.digest;
        seg->scan_end = s.end;
        int cut = 0;
        if (v == TORN) {
            cut = 1;
            rec->tail_cut = 1;
            rec->tail_cut_offset = s.end;
            rec->tail_bytes_cut = t.nonzero_end - s.end;
            rec->tail_records_dropped = t.intact_records;
            snprintf(rec->tail_cut_segment, sizeof rec->tail_cut_segment, "%s", name);
        } else if (v == CORRUPT) {
            char why[256];
            describe(&s, why, sizeof why);
            if (!w->options.repair) {
                close(fd);
                rec->corrupt_offset = s.end;
                snprintf(rec->corrupt_segment, sizeof rec->corrupt_segment, "%s", name);
                return pykv_fail(PYKV_ECORRUPT, err, err_bytes,
                                 "WAL segment %s/%s is corrupt at offset %llu: %s; %llu intact "
                                 "records follow it in this segment and %zu later segments "
                                 "exist; refusing to open (repair=True cuts there, keeps a "
                                 ".broken copy and reports what was lost)",
                                 w->dir, name, (unsigned long long)s.end, why,
                                 (unsigned long long)t.intact_records, w->nsegs - i - 1);
            }
            cut = 1;
            rec->repaired = 1;
            rec->repair_offset = s.end;
            rec->repair_bytes_lost += t.nonzero_end - s.end;
            rec->repair_records_lost += t.intact_records;
            snprintf(rec->repair_segment, sizeof rec->repair_segment, "%s", name);
            if (s.end == 0) {
                /* Nothing of this segment is usable: set it aside too. */
                close(fd);
                rc = set_aside_later(w, i, rec, err, err_bytes);
                if (rc) return rc;
                if (w->nsegs == 0) return create_first_segment(w, seg->seq, seg->first_index,
                                                              err, err_bytes);
                /* The previous segment becomes the last: reopen it. */
                char prev[PYKV_WAL_NAME_BYTES];
                const pykv_segment *p = &w->segs[w->nsegs - 1];
                pykv_segment_name(prev, sizeof prev, p->seq, p->first_index);
                fd = openat(w->dirfd, prev, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                    return pykv_fail_os(errno, err, err_bytes, "cannot open WAL segment %s/%s",
                                        w->dir, prev);
                memcpy(name, prev, sizeof name);
                s.end = p->scan_end;
                w->digest = w->prev_segment_digest;
                cut = 0;
            } else {
                rc = set_aside_later(w, i + 1, rec, err, err_bytes);
                if (rc) {
                    close(fd);
                    return rc;
                }
            }
            is_last = 1;
        }
        if (!is_last) {
            w->prev_segment_digest = s.digest;
            close(fd);
            continue;
        }
        /* The last segment: keep what a cut would lose, cut, preallocate. */
        if (cut && t.nonzero_end > s.end) {
            rc = keep_broken_copy(w, fd, name, t.nonzero_end, rec->broken_copy,
                                  sizeof rec->broken_copy, err, err_bytes);
            if (rc) {
                close(fd);
                return rc;
            }
        }
        rc = cut_and_preallocate(w, fd, name, s.end, cut, err, err_bytes);
        if (rc) {
            close(fd);
            return rc;
        }
        w->fd = fd;
        memcpy(w->name, name, sizeof w->name);
        w->file_bytes = w->options.segment_bytes > s.end ? w->options.segment_bytes : s.end;
        w->tail_off = w->pending_off = s.end;
        return PYKV_OK;
    }
    PYKV_ASSERT(0 && "recover: no last segment");
    return PYKV_EIO;
}

int pykv_wal_open(const char *dir, const pykv_wal_options *options, pykv_wal **out,
                  pykv_wal_recovery *recovery, char *err, size_t err_bytes) {
    *out = NULL;
    memset(recovery, 0, sizeof *recovery);
    pykv_wal_options opts = *options;
    int rc = check_options(&opts, err, err_bytes);
    if (rc) return rc;
    pykv_wal *w = calloc(1, sizeof *w);
    if (!w) return pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory");
    w->fd = -1;
    w->dirfd = -1;
    w->closed = 1; /* until open succeeds: pykv_wal_free then skips the final sync */
    w->options = opts;
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->release_mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->dir = strdup(dir);
    char *path = strdup(dir);
    if (!w->dir || !path) {
        free(path);
        pykv_wal_free(w);
        return pykv_fail(PYKV_ENOMEM, err, err_bytes, "out of memory");
    }
    rc = make_dirs(path, err, err_bytes);
    free(path);
    if (!rc) {
        w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w->dirfd < 0) rc = pykv_fail_os(errno, err, err_bytes, "cannot open WAL directory %s", dir);
    }
    if (!rc && flock(w->dirfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            rc = pykv_fail(PYKV_ELOCKED, err, err_bytes,
                           "the WAL in %s is open in another process or handle (it holds the "
                           "directory's flock)", dir);
        else rc = pykv_fail_os(errno, err, err_bytes, "cannot lock WAL directory %s", dir);
    }
    if (!rc) rc = pykv_failpoints_load(w->failpoints, err, err_bytes);
    if (!rc) rc = list_segments(w, recovery, err, err_bytes);
    if (!rc) {
        if (w->nsegs == 0) rc = create_first_segment(w, 0, 0, err, err_bytes);
        else rc = recover(w, recovery, err, err_bytes);
    }
    if (rc) {
        if (w->fd >= 0) close(w->fd);
        w->fd = -1;
        if (w->dirfd >= 0) close(w->dirfd);
        w->dirfd = -1;
        pykv_wal_free(w);
        return rc;
    }
    w->closed = 0;
    recovery->segments = w->nsegs;
    recovery->first_index = w->segs[0].first_index;
    recovery->last_index = w->last_index;
    for (size_t i = 0; i < w->nsegs; i++) recovery->records += w->segs[i].records;
    *out = w;
    return PYKV_OK;
}
