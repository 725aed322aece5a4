#include "pykv_native.h"

#ifndef PYKV_VERSION
#error "PYKV_VERSION must be defined by the build (csrc/build_native.py)"
#endif

const char *pykv_native_version(void) { return PYKV_VERSION; }
