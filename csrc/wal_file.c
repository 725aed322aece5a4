/* wal_file.c — helpers of the WAL: buffers, error text, failpoints, file I/O,
 * segment names and headers. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pykv_native.h"
#include "wal_internal.h"

int pykv_all_zero(const uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i < n && ((uintptr_t)(p + i) & 7u); i++)
        if (p[i]) return 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w) return 0;
    }
    for (; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

int pykv_buf_reserve(pykv_buf *buf, size_t extra) {
    if (extra > SIZE_MAX - buf->len) return PYKV_ENOMEM;
    size_t need = buf->len + extra;
    if (need <= buf->cap) return PYKV_OK;
    size_t cap = buf->cap ? buf->cap : 4096;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *data = realloc(buf->data, cap);
    if (!data) return PYKV_ENOMEM;
    buf->data = data;
    buf->cap = cap;
    return PYKV_OK;
}

void pykv_buf_free(pykv_buf *buf) {
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

static void vformat(char *err, size_t err_bytes, const char *fmt, va_list ap) {
    if (!err || !err_bytes) return;
    vsnprintf(err, err_bytes, fmt, ap);
}

int pykv_fail(int rc, char *err, size_t err_bytes, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat(err, err_bytes, fmt, ap);
    va_end(ap);
    return rc;
}

int pykv_fail_os(int errnum, char *err, size_t err_bytes, const char *fmt, ...) {
    if (!err || !err_bytes) return PYKV_EIO;
    va_list ap;
    va_start(ap, fmt);
    vformat(err, err_bytes, fmt, ap);
    va_end(ap);
    size_t used = strlen(err);
    char text[128];
    /* GNU strerror_r (the build defines _GNU_SOURCE) returns the text. */
    const char *why = strerror_r(errnum, text, sizeof text);
    snprintf(err + used, err_bytes - used, ": %s (errno %d)", why, errnum);
    return PYKV_EIO;
}

/* --- failpoints ------------------------------------------------------------ */

static const char *const failpoint_names[PYKV_FP_COUNT] = {
    "wal_before_write", "wal_after_write",  "wal_before_sync", "wal_after_sync",
    "wal_before_rename", "wal_after_rename", "wal_before_cut",  "wal_before_unlink",
};

enum { FP_OFF, FP_EXIT, FP_KILL, FP_ABORT, FP_ERROR };

static int parse_failpoint(const char *item, size_t len, pykv_failpoint fps[PYKV_FP_COUNT]) {
    const char *eq = memchr(item, '=', len);
    if (!eq) return -1;
    size_t name_len = (size_t)(eq - item);
    int id = -1;
    for (int i = 0; i < PYKV_FP_COUNT; i++)
        if (strlen(failpoint_names[i]) == name_len && !memcmp(item, failpoint_names[i], name_len))
            id = i;
    if (id < 0) return -1;
    const char *action = eq + 1;
    size_t action_len = len - name_len - 1;
    const char *at = memchr(action, '@', action_len);
    uint64_t at_hit = 0;
    if (at) {
        char digits[24];
        size_t n = action_len - (size_t)(at - action) - 1;
        if (n == 0 || n >= sizeof digits) return -1;
        memcpy(digits, at + 1, n);
        digits[n] = 0;
        char *end;
        at_hit = strtoull(digits, &end, 10);
        if (*end || at_hit == 0) return -1;
        action_len = (size_t)(at - action);
    }
    static const struct { const char *name; int action; } actions[] = {
        {"exit", FP_EXIT}, {"kill", FP_KILL}, {"abort", FP_ABORT}, {"error", FP_ERROR}, {"off", FP_OFF},
    };
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
        if (strlen(actions[i].name) == action_len && !memcmp(action, actions[i].name, action_len)) {
            fps[id].action = actions[i].action;
            fps[id].at_hit = at_hit;
            return 0;
        }
    }
    return -1;
}

int pykv_failpoints_load(pykv_failpoint fps[PYKV_FP_COUNT], char *err, size_t err_bytes) {
    memset(fps, 0, sizeof(pykv_failpoint) * PYKV_FP_COUNT);
    const char *spec = getenv("PYKV_FAILPOINTS");
    if (!spec) return PYKV_OK;
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len && parse_failpoint(p, len, fps) != 0)
            return pykv_fail(PYKV_EINVAL, err, err_bytes,
                             "PYKV_FAILPOINTS: cannot parse '%.*s' (want name=exit|kill|abort|"
                             "error|off[@hit], name one of wal_before_write, wal_after_write, "
                             "wal_before_sync, wal_after_sync, wal_before_rename, "
                             "wal_after_rename, wal_before_cut, wal_before_unlink)",
                             (int)len, p);
        p += len + (comma ? 1 : 0);
    }
    return PYKV_OK;
}

int pykv_failpoint_hit(pykv_failpoint fps[PYKV_FP_COUNT], enum pykv_failpoint_id id) {
    pykv_failpoint *fp = &fps[id];
    if (fp->action == FP_OFF) return PYKV_OK;
    uint64_t hit = __atomic_add_fetch(&fp->hits, 1, __ATOMIC_RELAXED);
    if (fp->at_hit && hit != fp->at_hit) return PYKV_OK;
    switch (fp->action) {
    case FP_EXIT:
        _exit(PYKV_FAILPOINT_EXIT_STATUS);
    case FP_KILL:
        raise(SIGKILL);
        _exit(PYKV_FAILPOINT_EXIT_STATUS); /* not reached */
    case FP_ABORT:
        abort();
    case FP_ERROR:
        errno = EIO;
        return PYKV_EIO;
    }
    return PYKV_OK;
}

/* --- file I/O -------------------------------------------------------------- */

int pykv_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t offset) {
    while (len) {
        ssize_t n = pwrite(fd, buf, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        buf += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

int pykv_pread_all(int fd, uint8_t *buf, size_t len, uint64_t offset, size_t *got) {
    *got = 0;
    while (len) {
        ssize_t n = pread(fd, buf + *got, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) break; /* end of file */
        *got += (size_t)n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

int pykv_fsync_dir(int dirfd) {
    return fsync(dirfd) == 0 ? 0 : errno;
}

/* --- segment names and headers --------------------------------------------- */

void pykv_segment_name(char *out, size_t out_bytes, uint64_t seq, uint64_t first_index) {
    snprintf(out, out_bytes, "%016" PRIx64 "-%016" PRIx64 ".wal", seq, first_index);
}

static int hex16(const char *s, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return 0;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return 1;
}

int pykv_segment_parse_name(const char *name, uint64_t *seq, uint64_t *first_index) {
    /* exactly 16 hex digits, '-', 16 hex digits, ".wal" */
    if (strlen(name) != 37 || name[16] != '-' || strcmp(name + 33, ".wal") != 0) return 0;
    return hex16(name, seq) && hex16(name + 17, first_index);
}

void pykv_segment_header_payload(uint8_t out[PYKV_SEGMENT_HEADER_PAYLOAD_BYTES], uint64_t seq,
                                 uint64_t first_index, uint32_t prev_digest) {
    memcpy(out, PYKV_SEGMENT_MAGIC, 8);
    pykv_store_u32(out + 8, PYKV_WAL_FORMAT_VERSION);
    pykv_store_u32(out + 12, prev_digest);
    pykv_store_u64(out + 16, seq);
    pykv_store_u64(out + 24, first_index);
    pykv_store_u64(out + 32, 0);
}
