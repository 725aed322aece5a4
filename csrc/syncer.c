/* syncer.c — the WAL syncer thread, see pykv_wal.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pykv_native.h"

struct pykv_syncer {
    pykv_wal *wal;
    int64_t idle_spin_ns;
    int64_t idle_ewma_ns;      /* the thread's own: recent waits for work */
    int64_t requested_ns;      /* atomic: when the last request came (now_ns) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;       /* the thread sleeps on it (sleeping = 1) */
    pthread_cond_t done_cond;  /* waiters sleep on it (waiters > 0) */
    uint64_t requested;        /* highest position asked for (atomic) */
    uint64_t done;             /* highest position synced (atomic) */
    int sleeping;              /* atomic: the thread waits on work */
    int waiters;               /* under mu */
    int stop;                  /* atomic */
    int rc;                    /* atomic: the first failed sync's code, sticky */
    char err[PYKV_WAL_ERROR_BYTES];  /* its message (written before rc) */
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int has_work(pykv_syncer *s, uint64_t taken) {
    return __atomic_load_n(&s->requested, __ATOMIC_SEQ_CST) > taken ||
           __atomic_load_n(&s->stop, __ATOMIC_SEQ_CST);
}

static int finished(pykv_syncer *s, uint64_t position) {
    return __atomic_load_n(&s->done, __ATOMIC_ACQUIRE) >= position ||
           __atomic_load_n(&s->rc, __ATOMIC_ACQUIRE);
}

/* Spin until ready(s, arg), at most max_ns: 1 if it became true. */
static int spin(pykv_syncer *s, int (*ready)(pykv_syncer *, uint64_t), uint64_t arg,
                int64_t max_ns) {
    int64_t end = now_ns() + max_ns;
    for (unsigned i = 1;; i++) {
        if (ready(s, arg)) return 1;
        cpu_relax();
        if ((i & 63) == 0 && now_ns() > end) return ready(s, arg);
    }
}

/* How long to spin for the next request: the whole cap while requests
 * come within it on average (a lone writer's next request, tens of us
 * away, or ~150 us when it reads a range between puts: caught without a
 * wake-up), an eighth of it when they come further apart (many writers,
 * whose Python between batches holds the GIL: a spinning core is one the
 * woken writers would have used). Spinning twice the average instead
 * missed the slower half of a lone writer's requests: 10 % slower puts;
 * under half the cap instead of under all of it, a put then a range of 10
 * keys took 348 us instead of 302. */
static int64_t idle_spin_budget(const pykv_syncer *s) {
    return s->idle_ewma_ns <= s->idle_spin_ns ? s->idle_spin_ns : s->idle_spin_ns / 8;
}

static void note_idle(pykv_syncer *s, int64_t waited_ns) {
    /* Clamped, so that one long pause (a checkpoint) does not stop the spin
     * of a lone writer for many batches. */
    if (waited_ns > 2 * s->idle_spin_ns) waited_ns = 2 * s->idle_spin_ns;
    s->idle_ewma_ns += (waited_ns - s->idle_ewma_ns) / 8;
}

static void *run(void *arg) {
    pykv_syncer *s = arg;
    uint64_t taken = 0;
    char err[PYKV_WAL_ERROR_BYTES];
    for (;;) {
        int64_t idle_from = now_ns();
        if (!spin(s, has_work, taken, idle_spin_budget(s))) {
            pthread_mutex_lock(&s->mu);
            __atomic_store_n(&s->sleeping, 1, __ATOMIC_SEQ_CST);
            while (!has_work(s, taken)) pthread_cond_wait(&s->work, &s->mu);
            __atomic_store_n(&s->sleeping, 0, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&s->mu);
        }
        /* The wait until the request came, not until this thread woke:
         * counting its own wake-up latency, a syncer that once slept could
         * stay above the spin threshold for good. (A request that came
         * during the last sync waited for nothing.) */
        int64_t came = __atomic_load_n(&s->requested_ns, __ATOMIC_RELAXED);
        note_idle(s, came > idle_from ? came - idle_from : 0);
        if (__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) return NULL;
        taken = __atomic_load_n(&s->requested, __ATOMIC_SEQ_CST);
        err[0] = '\0';
        int rc = pykv_wal_sync(s->wal, taken, err, sizeof err);
        pthread_mutex_lock(&s->mu);
        if (rc && !__atomic_load_n(&s->rc, __ATOMIC_ACQUIRE)) {
            snprintf(s->err, sizeof s->err, "%s", err);
            __atomic_store_n(&s->rc, rc, __ATOMIC_RELEASE);
        }
        __atomic_store_n(&s->done, taken, __ATOMIC_RELEASE);
        if (s->waiters) pthread_cond_broadcast(&s->done_cond);
        pthread_mutex_unlock(&s->mu);
    }
}

int pykv_syncer_open(pykv_wal *wal, int64_t idle_spin_ns, pykv_syncer **out, char *err,
                     size_t err_bytes) {
    *out = NULL;
    pykv_syncer *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, err_bytes, "out of memory for the WAL syncer");
        return PYKV_ENOMEM;
    }
    s->wal = wal;
    s->idle_spin_ns = idle_spin_ns;
    s->idle_ewma_ns = idle_spin_ns / 4;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done_cond, NULL);
    int e = pthread_create(&s->thread, NULL, run, s);
    if (e) {
        snprintf(err, err_bytes, "cannot start the WAL syncer thread: %s", strerror(e));
        pthread_cond_destroy(&s->done_cond);
        pthread_cond_destroy(&s->work);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return PYKV_EIO;
    }
    *out = s;
    return PYKV_OK;
}

void pykv_syncer_start(pykv_syncer *s, uint64_t position) {
    __atomic_store_n(&s->requested_ns, now_ns(), __ATOMIC_RELAXED);
    __atomic_store_n(&s->requested, position, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->sleeping, __ATOMIC_SEQ_CST)) {
        /* Under mu: the thread is either in pthread_cond_wait or has not
         * yet checked requested (it does so under mu), never in between. */
        pthread_mutex_lock(&s->mu);
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
    }
}

int pykv_syncer_wait(pykv_syncer *s, uint64_t position, int64_t spin_ns, char *err,
                     size_t err_bytes) {
    if (!spin(s, finished, position, spin_ns)) {
        pthread_mutex_lock(&s->mu);
        s->waiters++;
        while (!finished(s, position)) pthread_cond_wait(&s->done_cond, &s->mu);
        s->waiters--;
        pthread_mutex_unlock(&s->mu);
    }
    /* A failed sync makes the WAL fatal: every wait fails from then on. */
    int rc = __atomic_load_n(&s->rc, __ATOMIC_ACQUIRE);
    if (rc) snprintf(err, err_bytes, "%s", s->err);
    return rc;
}

void pykv_syncer_close(pykv_syncer *s) {
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    __atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->done_cond);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
