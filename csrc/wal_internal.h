/* wal_internal.h — what frame.c and the wal*.c files share; never fed to cffi. */
#ifndef PYKV_WAL_INTERNAL_H
#define PYKV_WAL_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pykv_native.h"

/* --- little-endian fields and small helpers ------------------------------ */

static inline uint64_t pykv_align8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

static inline void pykv_store_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void pykv_store_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t pykv_load_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static inline uint64_t pykv_load_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* 1 when the n bytes at p are all zero. */
int pykv_all_zero(const uint8_t *p, size_t n);

/* --- growable byte buffer ------------------------------------------------ */

typedef struct pykv_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} pykv_buf;

/* Make room for extra more bytes after len; PYKV_OK or PYKV_ENOMEM. */
int pykv_buf_reserve(pykv_buf *buf, size_t extra);
void pykv_buf_free(pykv_buf *buf);

/* --- errors --------------------------------------------------------------- */

/* Format a message into err (may be NULL) and return rc. */
int pykv_fail(int rc, char *err, size_t err_bytes, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, with ": <strerror(errnum)>" appended; returns PYKV_EIO. */
int pykv_fail_os(int errnum, char *err, size_t err_bytes, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --- failpoints (STYLE habit 7) ------------------------------------------- */

/* Named points at the durability boundaries. PYKV_FAILPOINTS, read at open,
 * arms them: "name=action[@hit][,name=action...]", where action is exit
 * (_exit(PYKV_FAILPOINT_EXIT_STATUS)), kill (SIGKILL to self), abort, or
 * error (the operation fails as if the OS call had failed with EIO), and
 * @hit fires on that hit only (1 = the first), else on every hit. */
enum pykv_failpoint_id {
    PYKV_FP_BEFORE_WRITE,   /* wal_before_write: appended data about to be written */
    PYKV_FP_AFTER_WRITE,    /* wal_after_write */
    PYKV_FP_BEFORE_SYNC,    /* wal_before_sync: written, fdatasync about to start */
    PYKV_FP_AFTER_SYNC,     /* wal_after_sync: durable, callers not yet told */
    PYKV_FP_BEFORE_RENAME,  /* wal_before_rename: new segment ready, old one sealed */
    PYKV_FP_AFTER_RENAME,   /* wal_after_rename: new segment named, directory synced */
    PYKV_FP_BEFORE_CUT,     /* wal_before_cut: recovery kept its .broken copy */
    PYKV_FP_BEFORE_UNLINK,  /* wal_before_unlink: release about to remove a segment */
    PYKV_FP_COUNT
};

#define PYKV_FAILPOINT_EXIT_STATUS 86

typedef struct pykv_failpoint {
    int action; /* 0: disarmed */
    uint64_t at_hit;
    uint64_t hits;
} pykv_failpoint;

/* Parse PYKV_FAILPOINTS into fps (all disarmed when unset);
 * PYKV_EINVAL names a bad entry. */
int pykv_failpoints_load(pykv_failpoint fps[PYKV_FP_COUNT], char *err, size_t err_bytes);
/* Count a hit; exits or kills here when armed so; returns PYKV_EIO for an
 * armed "error", else PYKV_OK. */
int pykv_failpoint_hit(pykv_failpoint fps[PYKV_FP_COUNT], enum pykv_failpoint_id id);

/* --- segment files -------------------------------------------------------- */

#define PYKV_SEGMENT_MAGIC "PYKVWAL\0"
#define PYKV_SEGMENT_HEADER_PAYLOAD_BYTES 40

typedef struct pykv_segment {
    uint64_t seq;
    uint64_t first_index;
    uint64_t max_index;   /* highest index of its (non-carried) records */
    uint64_t records;     /* non-carried records in it */
    uint64_t scan_end;    /* recovery: offset after its last intact frame */
} pykv_segment;

/* "%016x-%016x.wal" (seq, first index). */
void pykv_segment_name(char *out, size_t out_bytes, uint64_t seq, uint64_t first_index);
/* 1 when name is a segment name; fills seq and first_index. */
int pykv_segment_parse_name(const char *name, uint64_t *seq, uint64_t *first_index);

/* The segment header's payload: magic, format version, seq, first index and
 * the digest of the previous segment. */
void pykv_segment_header_payload(uint8_t out[PYKV_SEGMENT_HEADER_PAYLOAD_BYTES], uint64_t seq,
                                 uint64_t first_index, uint32_t prev_digest);

/* A segment's digest: CRC-32C chained over the stored CRCs (4 bytes, little-
 * endian) of all its frames, header first, starting from 0. The next
 * segment's header carries it, which binds every frame of a segment to the
 * segment that follows (the chained CRC of etcd, at segment granularity). */
static inline uint32_t pykv_digest_add(uint32_t digest, uint32_t frame_crc) {
    uint8_t le[4];
    pykv_store_u32(le, frame_crc);
    return pykv_crc32c(digest, le, 4);
}

/* pwrite/pread the whole range, retrying short transfers and EINTR; 0 or errno. */
int pykv_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t offset);
int pykv_pread_all(int fd, uint8_t *buf, size_t len, uint64_t offset, size_t *got);

/* fsync a directory (by fd); 0 or errno. */
int pykv_fsync_dir(int dirfd);

/* --- the handle ------------------------------------------------------------ */

/* The sticky types (carried into each new segment's head), in head order. */
#define PYKV_STICKY_COUNT 3
int pykv_sticky_slot(uint8_t type); /* 0..2, or -1 when not sticky */

typedef struct pykv_sticky {
    int present;
    uint8_t type;
    uint64_t index;
    pykv_buf payload;
} pykv_sticky;

/* Bytes of appended frames after which an append writes them out itself
 * (write-behind), and above which appends wait for the writer. */
#define PYKV_WAL_FLUSH_BYTES (1u << 20)
#define PYKV_WAL_PENDING_BYTES_MAX (64u << 20)
/* Most fdatasync rounds one sync() caller leads in a row (see wal.c). */
#define PYKV_WAL_LEAD_ROUNDS_MAX 4
/* Longest a leader waits for writers to join its fdatasync (see wal.c). */
#define PYKV_WAL_GATHER_NS_MAX 200000
/* Buffers above this capacity are freed after use rather than kept. */
#define PYKV_WAL_KEEP_BUFFER_BYTES (16u << 20)

struct pykv_wal {
    pthread_mutex_t mu;      /* guards everything below */
    pthread_cond_t cv;       /* io_busy, rotating, durable_position changes */
    pthread_mutex_t release_mu; /* one release at a time */
    char *dir;
    int dirfd;               /* holds the flock */
    pykv_wal_options options;
    pykv_failpoint failpoints[PYKV_FP_COUNT];

    /* Segments, oldest first; the last one is being written. */
    pykv_segment *segs;
    size_t nsegs, segs_cap;
    char name[PYKV_WAL_NAME_BYTES]; /* of the last segment */
    int fd;                  /* the last segment */
    uint64_t file_bytes;     /* its allocated size */
    uint64_t tail_off;       /* where the next frame goes; invariant: pending_off + pending.len */
    uint32_t digest;         /* of the last segment's frames up to tail_off */

    /* Appended frames not yet handed to write(2); pending_off is the file
     * offset of pending.data[0]. spare is the other half of a double buffer. */
    pykv_buf pending, spare;
    uint64_t pending_off;

    /* Log positions (bytes of frames appended since open, monotonic). */
    uint64_t appended_position;
    uint64_t written_position;
    uint64_t durable_position; /* <= written_position <= appended_position */
    uint64_t appended_records, durable_records;
    uint64_t last_round_covered; /* records the last fdatasync made durable */
    uint64_t last_sync_ns;       /* how long it took */

    int io_busy;             /* one thread does file I/O on the last segment */
    int io_waiters;          /* threads waiting on cv to take the I/O role */
    void *waiters;           /* sync() callers queued for durability (wal.c) */
    int rotating;            /* a segment switch is under way: appends wait */
    int fatal;               /* a write or sync failed: refuse all writes */
    int closed;
    char fatal_text[PYKV_WAL_ERROR_BYTES];

    uint64_t last_index;
    pykv_sticky sticky[PYKV_STICKY_COUNT];
    pykv_wal_stats stats;

    /* Recovery only. */
    size_t nsegs_scanned;
    uint32_t prev_segment_digest; /* of the segment before the one being scanned */
};

/* Add a segment at the end of the list; PYKV_ENOMEM. */
int pykv_wal_push_segment(pykv_wal *w, uint64_t seq, uint64_t first_index);
/* Remember payload as the latest sticky record of its type. */
int pykv_wal_keep_sticky(pykv_wal *w, uint8_t type, uint64_t index, const uint8_t *payload,
                         size_t len);
/* Encode a segment's head (header frame, then the carried sticky records)
 * into out (replacing its contents); *digest = the digest of those frames. */
int pykv_wal_encode_head(pykv_wal *w, uint64_t seq, uint64_t first_index, uint32_t prev_digest,
                         pykv_buf *out, uint32_t *digest);
/* Segment creation in two steps, so that rotation can seal the old segment
 * in between. prepare: "<name>.tmp" preallocated to the segment size,
 * holding head, fsynced; *fd_out is open read-write; on failure the tmp
 * file is gone. commit: rename it to its name and fsync the directory. */
int pykv_wal_prepare_segment(pykv_wal *w, uint64_t seq, uint64_t first_index,
                             const pykv_buf *head, int *fd_out, char *err, size_t err_bytes);
int pykv_wal_commit_segment(pykv_wal *w, uint64_t seq, uint64_t first_index, char *err,
                            size_t err_bytes);
/* With mu held: write every appended frame (no sync), waiting for the I/O
 * role if need be. */
int pykv_wal_write_pending_locked(pykv_wal *w, char *err, size_t err_bytes);
/* fdatasync unless options.unsafe_no_fsync; 0 or errno. */
int pykv_wal_fdatasync(pykv_wal *w, int fd);
int pykv_wal_fsync(pykv_wal *w, int fd);
int pykv_wal_fsync_dir(pykv_wal *w);

/* --- reading segments (recovery and readers) ------------------------------- */

/* A window of one segment file, read with pread in large chunks. */
typedef struct pykv_cursor {
    int fd;
    uint64_t seq;
    uint64_t end;      /* never read at or past this offset (file size or a limit) */
    const char *name;  /* for messages */
    pykv_buf buf;      /* bytes [buf_off, buf_off + buf.len) of the file */
    uint64_t buf_off;
} pykv_cursor;

#define PYKV_CURSOR_CHUNK_BYTES (4u << 20)

/* Check the frame at offset: returns a PYKV_FRAME_* status (>= 0) with
 * *frame pointing at it in the cursor's buffer (valid until the next call),
 * or a negative PYKV_E* code when the file cannot be read. */
int pykv_cursor_frame(pykv_cursor *c, uint64_t offset, const uint8_t **frame,
                      pykv_frame_info *info, char *err, size_t err_bytes);
/* Make [offset, offset + len) (clamped to end) readable; *p, *avail. */
int pykv_cursor_load(pykv_cursor *c, uint64_t offset, size_t len, const uint8_t **p,
                     size_t *avail, char *err, size_t err_bytes);

#endif
