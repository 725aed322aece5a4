/* spin.c — see pykv_spin.h. */
#include <time.h>

#include "pykv_native.h"

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int reached(const int64_t *a, int64_t want_a, const int64_t *b, int64_t want_b) {
    return __atomic_load_n(a, __ATOMIC_ACQUIRE) >= want_a &&
           (b == NULL || __atomic_load_n(b, __ATOMIC_ACQUIRE) >= want_b);
}

int pykv_spin_until(int64_t *announce, int64_t announce_value, const int64_t *a,
                    int64_t want_a, const int64_t *b, int64_t want_b, int64_t max_ns) {
    if (announce != NULL) __atomic_store_n(announce, announce_value, __ATOMIC_RELEASE);
    int64_t end = now_ns() + max_ns;
    for (unsigned i = 1;; i++) {
        if (reached(a, want_a, b, want_b)) return 1;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
        if ((i & 63) == 0 && now_ns() > end) return reached(a, want_a, b, want_b);
    }
}
