/* pykv_syncer.h — a thread that makes the WAL durable while its caller
 * does something else.
 *
 * The embedded engine applies a batch to its store while the batch's WAL
 * fdatasync runs: pykv_syncer_start() asks the syncer thread for
 * pykv_wal_sync(position) and returns at once; pykv_syncer_wait() returns
 * when that sync is done. Both sides spin for a while before they sleep:
 * on a virtual machine waking a sleeping thread costs the waker 20-70 us,
 * more than the work the thread hides. One caller at a time (the engine's
 * log leader); positions it asks for never decrease.
 */
#ifndef PYKV_SYNCER_H
#define PYKV_SYNCER_H

#include <stddef.h>
#include <stdint.h>

typedef struct pykv_syncer pykv_syncer;

/* Start the thread for wal (which must outlive it). idle_spin_ns: how long
 * the thread spins for the next request before it sleeps. */
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
