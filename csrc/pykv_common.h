/* pykv_common.h — error codes and version shared by every part of the C core.
 *
 * Every pykv_* header is declaration-only and cdef-clean: csrc/build_native.py
 * strips the preprocessor guard lines and feeds the rest to cffi's cdef().
 * Only "#define NAME <integer>" constants may appear besides declarations.
 *
 * Conventions: every fallible function returns an int, PYKV_OK (0) on
 * success or a negative PYKV_E* code; details go to an out-parameter or to
 * the handle's last-error buffer. Handles are opaque.
 */
#ifndef PYKV_COMMON_H
#define PYKV_COMMON_H

#define PYKV_OK 0
#define PYKV_EIO -1          /* an OS call failed; errno is kept in the handle */
#define PYKV_ENOMEM -2
#define PYKV_EINVAL -3       /* bad argument from the caller */
#define PYKV_ECORRUPT -4     /* checksum or structure mismatch in the middle of data */
#define PYKV_ETORN -5        /* a torn or zero-filled tail (recoverable by cutting) */
#define PYKV_ECLOSED -6      /* the handle was closed */
#define PYKV_ETOOLARGE -7    /* a record or buffer over its limit */
#define PYKV_EEOF -8         /* no more data */
#define PYKV_ELOCKED -9      /* another process holds the lock */
#define PYKV_EFATAL -10      /* an earlier fsync failed: the handle refuses all writes */

/* The version string baked in at build time; pykv/_binding.py compares it
 * with pykv.__version__ so that a stale build is caught at import. */
const char *pykv_native_version(void);

#endif
