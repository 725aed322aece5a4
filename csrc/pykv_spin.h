/* pykv_spin.h — busy-waiting hand-offs between two threads.
 *
 * On a virtual machine, waking a thread that sleeps on a futex costs the
 * waker 20-70 us (an interprocessor interrupt to a halted vCPU), more than
 * the whole apply of a put. A thread that expects work within a few hundred
 * microseconds spins on a word instead, and the other thread just stores
 * to it. Called through cffi, so the GIL is released while spinning.
 */
#ifndef PYKV_SPIN_H
#define PYKV_SPIN_H

#include <stdint.h>

/* First store announce_value to *announce (unless announce is NULL; release
 * ordering), which the other thread may be spinning on: it is stored once
 * the GIL is let go, so that thread takes the GIL without a wake-up. Then
 * return 1 once *a >= want_a and (b is NULL or *b >= want_b); 0 after max_ns
 * nanoseconds without that. Reads with acquire ordering. */
int pykv_spin_until(int64_t *announce, int64_t announce_value, const int64_t *a,
                    int64_t want_a, const int64_t *b, int64_t want_b, int64_t max_ns);

#endif
