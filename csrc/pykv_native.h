/* pykv_native.h — the C core's whole public contract, for C sources.
 *
 * Each part has its own declaration-only header (pykv_<part>.h); the build
 * (csrc/build_native.py) feeds every pykv_*.h except this one to cffi's
 * cdef(), so a new part only adds its header and its .c file.
 */
#ifndef PYKV_NATIVE_H
#define PYKV_NATIVE_H

#include "pykv_common.h"
#include "pykv_crc32c.h"
#include "pykv_frame.h"
#include "pykv_h2.h"
#include "pykv_snap.h"
#include "pykv_wal.h"

#endif
