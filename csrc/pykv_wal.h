/* pykv_wal.h — the write-ahead log: segments, batch append, group commit,
 * recovery, reading and release. The on-disk format is specified in
 * pykv/wal/__init__.py.
 *
 * Thread safety: every function on one pykv_wal may be called from many
 * threads at once (appends are ordered by an internal mutex; sync waits on a
 * condition variable and one thread's fdatasync covers every record appended
 * before it began). A reader belongs to one thread. Fallible functions
 * return PYKV_OK or a negative PYKV_E* code and write a message naming the
 * file, the offset and the OS error (when there is one) into err.
 */
#ifndef PYKV_WAL_H
#define PYKV_WAL_H

#include <stddef.h>
#include <stdint.h>

#define PYKV_WAL_SEGMENT_BYTES_DEFAULT 67108864
#define PYKV_WAL_SEGMENT_BYTES_MIN 4096
#define PYKV_WAL_SEGMENT_BYTES_MAX 4294967296
#define PYKV_WAL_FORMAT_VERSION 1
#define PYKV_WAL_ERROR_BYTES 1024
#define PYKV_WAL_NAME_BYTES 64

/* Record types the engine uses (architecture.md). METADATA, STATE and
 * SNAPSHOT are "sticky": the latest of each is carried forward into the head
 * of every new segment, so releasing old segments never loses them. */
#define PYKV_RECORD_METADATA 1
#define PYKV_RECORD_ENTRY 2
#define PYKV_RECORD_STATE 3
#define PYKV_RECORD_SNAPSHOT 5

/* Sentinel for pykv_wal_sync: everything appended so far. */
#define PYKV_WAL_POSITION_ALL 18446744073709551615ULL

typedef struct pykv_wal pykv_wal;
typedef struct pykv_wal_reader pykv_wal_reader;

typedef struct pykv_wal_options {
    uint64_t segment_bytes;  /* size of a new segment; a multiple of 4096 in [MIN, MAX] */
    int repair;              /* cut at a corruption (keeping .broken copies) instead of refusing */
    int unsafe_no_fsync;     /* tests only: no fdatasync/fsync at all; a crash loses data */
} pykv_wal_options;

/* What open() found and did. Names are segment file names (no directory). */
typedef struct pykv_wal_recovery {
    uint64_t segments;
    uint64_t records;            /* records found (not counting headers and carried copies) */
    uint64_t first_index;        /* first index of the oldest segment */
    uint64_t last_index;         /* index of the last record (0 when there is none) */
    uint64_t tmp_removed;        /* leftover *.tmp files of an unfinished segment creation */
    /* A torn or garbage tail cut from the last segment. */
    int tail_cut;
    uint64_t tail_cut_offset;
    uint64_t tail_bytes_cut;     /* from the cut offset to the last nonzero byte */
    uint64_t tail_records_dropped; /* intact frames beyond a hole: written, never synced */
    char tail_cut_segment[64];
    char broken_copy[96];        /* the copy kept before cutting ("" if none) */
    /* repair=1 cut at a corruption: what was lost. */
    int repaired;
    uint64_t repair_offset;
    uint64_t repair_bytes_lost;
    uint64_t repair_records_lost;
    uint64_t repair_segments_removed; /* later segments renamed to *.broken */
    char repair_segment[64];
    /* Where open failed with PYKV_ECORRUPT (without repair). */
    uint64_t corrupt_offset;
    char corrupt_segment[64];
} pykv_wal_recovery;

typedef struct pykv_wal_info {
    uint64_t last_index;
    uint64_t first_index;        /* first index of the oldest segment kept */
    uint64_t appended_position;  /* log position after the last append */
    uint64_t durable_position;   /* everything before it has been fdatasync'ed */
    uint64_t segments;
    uint64_t current_seq;
    uint64_t segment_bytes;
    int fatal;
    int closed;
} pykv_wal_info;

typedef struct pykv_wal_stats {
    uint64_t appends;            /* append calls */
    uint64_t records;            /* records appended */
    uint64_t bytes;              /* frame bytes appended */
    uint64_t writes;             /* write(2) calls of appended data */
    uint64_t syncs;              /* fdatasync calls covering appended data */
    uint64_t sync_ns_total;
    uint64_t sync_ns_max;
    uint64_t synced_records_max; /* most records one fdatasync made durable */
    uint64_t rotations;
} pykv_wal_stats;

/* One batch from a reader; the arrays stay valid until the next call on the
 * reader or its free. Payloads are concatenated in payload, in order. */
typedef struct pykv_wal_batch {
    size_t count;
    const uint8_t *types;
    const uint64_t *indexes;
    const uint32_t *lengths;
    const uint8_t *payload;
    size_t payload_bytes;
} pykv_wal_batch;

/* Open the WAL in dir (created, mode 0700, when missing), recovering what is
 * there: verify every frame, cut a torn tail (see pykv/wal/__init__.py) and
 * refuse a corruption in the middle with PYKV_ECORRUPT (recovery->corrupt_*
 * say where) unless options->repair. Takes an exclusive flock on dir:
 * PYKV_ELOCKED when another handle holds it. recovery is filled on success
 * and, as far as the scan got, on failure. */
int pykv_wal_open(const char *dir, const pykv_wal_options *options, pykv_wal **out,
                  pykv_wal_recovery *recovery, char *err, size_t err_bytes);

/* Append count records in one call: record i has types[i] (1..127),
 * indexes[i] and lengths[i] bytes of payload, taken in order from payload
 * (payload_bytes must equal the sum of lengths). The batch goes into one
 * segment (a new one when it does not fit in the current one) and is
 * written before or during the next sync. *position is the log position
 * after the batch: pass it to pykv_wal_sync. Nothing is appended on error. */
int pykv_wal_append(pykv_wal *wal, size_t count, const uint8_t *types,
                    const uint64_t *indexes, const uint32_t *lengths,
                    const uint8_t *payload, size_t payload_bytes, uint64_t *position,
                    char *err, size_t err_bytes);

/* Return once every record before position is durable (one fdatasync that
 * began after they were written). Waits without holding any lock the
 * appenders need; PYKV_WAL_POSITION_ALL means everything appended so far.
 * A failed write or fdatasync makes the handle fatal: this and every later
 * write returns PYKV_EFATAL. */
int pykv_wal_sync(pykv_wal *wal, uint64_t position, char *err, size_t err_bytes);

/* pykv_wal_append then pykv_wal_sync of that batch, in one crossing. */
int pykv_wal_append_sync(pykv_wal *wal, size_t count, const uint8_t *types,
                         const uint64_t *indexes, const uint32_t *lengths,
                         const uint8_t *payload, size_t payload_bytes,
                         uint64_t *position, char *err, size_t err_bytes);

/* pykv_wal_append, then the batch is written to its segment file (pwrite,
 * no fdatasync) before this returns: from then on a crash of the process
 * (not of the machine) cannot lose it. For a caller that acts on the batch
 * before it is durable and must never be ahead of the file (the embedded
 * engine's held store batches). A failed write makes the handle fatal. */
int pykv_wal_append_write(pykv_wal *wal, size_t count, const uint8_t *types,
                          const uint64_t *indexes, const uint32_t *lengths,
                          const uint8_t *payload, size_t payload_bytes,
                          uint64_t *position, char *err, size_t err_bytes);

/* Remove the oldest segments whose records all have indexes below
 * below_index (never the segment being written), then fsync the directory. */
int pykv_wal_release(pykv_wal *wal, uint64_t below_index, uint64_t *segments_removed,
                     char *err, size_t err_bytes);

/* Name, first index and highest index of segment i (0 = oldest) of the
 * handle's current list; PYKV_EEOF past the end. */
int pykv_wal_segment(pykv_wal *wal, uint64_t i, char *name, size_t name_bytes,
                     uint64_t *seq, uint64_t *first_index, uint64_t *max_index);

void pykv_wal_get_info(pykv_wal *wal, pykv_wal_info *info);
void pykv_wal_get_stats(pykv_wal *wal, pykv_wal_stats *stats);

/* Write and sync what was appended, close the files and drop the lock.
 * Later calls return PYKV_ECLOSED. The memory stays until pykv_wal_free. */
int pykv_wal_close(pykv_wal *wal, char *err, size_t err_bytes);
void pykv_wal_free(pykv_wal *wal);

/* A reader of the records appended so far (they are written first, not
 * synced), starting at the newest segment whose first index <= from_index:
 * its carried sticky records first, then records in file order, skipping the
 * leading non-sticky records whose index is below from_index. */
int pykv_wal_reader_open(pykv_wal *wal, uint64_t from_index, pykv_wal_reader **out,
                         char *err, size_t err_bytes);

/* Fill batch with up to max_records records and (unless a single record is
 * larger) up to max_bytes of payload; count 0 at the end. */
int pykv_wal_reader_next(pykv_wal_reader *reader, size_t max_records, size_t max_bytes,
                         pykv_wal_batch *batch, char *err, size_t err_bytes);
void pykv_wal_reader_free(pykv_wal_reader *reader);

/* The syncer: a thread that makes the WAL durable while its caller does
 * something else. The embedded engine applies a batch to its store while
 * the batch's fdatasync runs: pykv_syncer_start() asks the syncer thread
 * for pykv_wal_sync(position) and returns at once; pykv_syncer_wait()
 * returns when that sync is done. Both sides spin for a while before they
 * sleep: on a virtual machine waking a sleeping thread costs the waker
 * 20-70 us, more than the work the thread hides. One caller at a time (the
 * engine's log leader); positions it asks for never decrease. */
typedef struct pykv_syncer pykv_syncer;

/* Start the thread for wal (which must outlive it). idle_spin_ns: how long
 * the thread spins for the next request before it sleeps (only an eighth
 * of that once its recent waits for one average more than all of it). */
int pykv_syncer_open(pykv_wal *wal, int64_t idle_spin_ns, pykv_syncer **out, char *err,
                     size_t err_bytes);

/* Ask for everything appended up to position to be made durable. */
void pykv_syncer_start(pykv_syncer *syncer, uint64_t position);

/* Return once a sync covering position is done: PYKV_OK, or the sync's
 * error (the WAL is then fatal: every later wait fails too). Spins up to
 * spin_ns before sleeping. */
int pykv_syncer_wait(pykv_syncer *syncer, uint64_t position, int64_t spin_ns, char *err,
                     size_t err_bytes);

/* Stop and join the thread, free it. Requests not yet synced are not. */
void pykv_syncer_close(pykv_syncer *syncer);

#endif
