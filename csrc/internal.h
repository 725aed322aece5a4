/* internal.h — helpers shared by the C sources; never fed to cffi. */
#ifndef PYKV_INTERNAL_H
#define PYKV_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>

/* PYKV_ASSERT ignores NDEBUG on purpose: an invariant broken in the storage
 * layer must stop the process rather than write bad data (TIGER_STYLE). */
#define PYKV_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "pykv: assertion failed: %s (%s:%d)\n", #cond,   \
                    __FILE__, __LINE__);                                      \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define PYKV_UNUSED(x) ((void)(x))

#endif
