/* h2_server.c — listeners, connections and the batch crossing to Python.
 *
 * One I/O thread owns every socket and every connection (so connections
 * need no locks): it waits in epoll, accepts, reads and parses, applies
 * the responses Python handed over, writes, and expires deadlines. What
 * crosses threads goes through two queues under one mutex:
 *
 *   events    I/O thread -> Python. Each loop turn's events are staged
 *             privately, then published at once; the event eventfd is
 *             written only when Python has not been told yet, so a busy
 *             server costs one wake-up per Python batch, not per call.
 *   responses Python -> I/O thread, the same way, through the wake eventfd.
 *
 * Backpressure: when more than max_queued_bytes of event payload wait for
 * Python, the thread stops reading sockets (their EPOLLIN is dropped) until
 * a poll has taken them; TCP then pushes back on the clients.
 *
 * epoll and eventfd are Linux's: elsewhere this file builds stubs that
 * refuse to create a server (pykv_h2_server_supported() is 0), and pykv
 * serve answers gRPC with grpcio instead.
 */
#include "h2_internal.h"

#if defined(__linux__)

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 16
#define EPOLL_BATCH 256
#define READ_CHUNK_BYTES (256 * 1024)
#define READS_PER_TURN 4          /* per connection, for fairness */
#define ACCEPTS_PER_TURN 64
#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define HEAP_CHECK_MIN 65536
/* After our last frame (a GOAWAY), read and drop what the client still
 * sends for a while before closing: closing with unread data makes the
 * kernel send a RST, which can destroy the GOAWAY before the client reads
 * it (the "lingering close" of HTTP servers). */
#define LINGER_US 1000000
#define LINGER_BYTES_MAX (4u << 20)
#define LINGER_STREAM 0   /* a deadline entry for stream 0 ends a linger */
#define KEEPALIVE_STREAM 0xffffffffu  /* one for no stream id (31 bits) runs a keepalive tick */

enum { TAG_LISTENER = 1, TAG_WAKE = 2, TAG_CONN = 3 };
enum { EOF_NONE = 0, EOF_CLEAN = 1, EOF_BROKEN = 2 };

static uint64_t tag(uint32_t kind, uint32_t index) { return ((uint64_t)kind << 32) | index; }

typedef struct conn_slot {
    pykv_h2_conn *conn;   /* NULL: free */
    int fd;
    uint32_t gen;         /* bumped on every reuse: stale ids miss */
    uint32_t epoll_mask;
    int dirty;            /* in the dirty list this turn */
    int eof;              /* EOF_CLEAN: the peer closed; EOF_BROKEN: the socket failed */
    int lingering;        /* our side is shut: reading and dropping until the peer closes */
    int handoff;          /* the peer spoke HTTP/1: hand the socket to Python */
    uint64_t linger_bytes;
    uint32_t next_free;
} conn_slot;

typedef struct deadline {
    int64_t at_us;
    uint64_t conn;
    uint32_t stream;
} deadline;

typedef struct response_queue {
    h2_buf records;
    h2_buf data;
} response_queue;

struct pykv_h2_server {
    h2_proto proto;
    int epoll_fd;
    int wake_fd;          /* Python -> I/O thread */
    int event_fd;         /* I/O thread -> Python */
    int reserve_fd;       /* spare descriptor, given up to refuse accepts at EMFILE */
    int listeners[MAX_LISTENERS];
    int listener_count;
    pthread_t thread;
    int started, stopped;

    /* Everything from here to the shared part belongs to whoever holds
     * conn_mu: the I/O thread for a whole loop turn, or Python's respond
     * when it finds the thread asleep (then it writes the answers itself,
     * sparing the thread a wake-up). */
    pthread_mutex_t conn_mu;
    conn_slot *slots;
    uint32_t slot_count, slot_cap, free_head;
    uint32_t *dirty;
    size_t dirty_count, dirty_cap;
    h2_sink staging;
    deadline *heap;
    size_t heap_count, heap_cap, heap_check_at;
    response_queue io_responses;
    int reading_paused;
    int shutting_down;
    pykv_h2_stats io_stats;

    /* shared, under mu */
    pthread_mutex_t mu;
    h2_sink queued;
    h2_sink taken;
    int python_signaled;
    response_queue responses;
    int io_signaled;
    int shutdown_requested;
    int stop_requested;
    int resume_requested;
    int paused;           /* reading is paused: a poll should wake the thread */
    pykv_h2_stats stats;
    uint64_t polls;
};

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
}

static void drain_fd(int fd) {
    uint64_t value;
    ssize_t n;
    do {
        n = read(fd, &value, sizeof(value));
    } while (n < 0 && errno == EINTR);
}

/* --- deadlines: a binary min-heap ---------------------------------------------- */

static void heap_push(pykv_h2_server *s, deadline d) {
    if (s->heap_count == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        deadline *heap = realloc(s->heap, cap * sizeof(*heap));
        PYKV_ASSERT(heap != NULL);
        s->heap = heap;
        s->heap_cap = cap;
    }
    size_t i = s->heap_count++;
    while (i > 0 && s->heap[(i - 1) / 2].at_us > d.at_us) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = d;
}

static deadline heap_pop(pykv_h2_server *s) {
    deadline top = s->heap[0];
    deadline last = s->heap[--s->heap_count];
    size_t i = 0, n = s->heap_count;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && s->heap[child + 1].at_us < s->heap[child].at_us) child++;
        if (s->heap[child].at_us >= last.at_us) break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

static conn_slot *slot_of(pykv_h2_server *s, uint64_t id);

static int deadline_live(const conn_slot *slot, deadline d) {
    if (d.stream == LINGER_STREAM) return slot->lingering;
    if (d.stream == KEEPALIVE_STREAM) return h2_conn_keepalive_at(slot->conn) == d.at_us;
    return h2_conn_deadline_live(slot->conn, d.stream, d.at_us);
}

/* Entries stay until their time comes, even when the call ended long
 * before (the common case); so that hour-long timeouts at a high call rate
 * do not pile up, the heap is rebuilt without the dead entries whenever it
 * has doubled. */
static void heap_compact(pykv_h2_server *s) {
    size_t kept = 0;
    for (size_t i = 0; i < s->heap_count; i++) {
        deadline d = s->heap[i];
        conn_slot *slot = slot_of(s, d.conn);
        if (slot != NULL && deadline_live(slot, d)) s->heap[kept++] = d;
    }
    size_t n = kept;
    s->heap_count = 0;
    for (size_t i = 0; i < n; i++) heap_push(s, s->heap[i]);
    s->heap_check_at = s->heap_count * 2 > HEAP_CHECK_MIN ? s->heap_count * 2 : HEAP_CHECK_MIN;
}

static void on_deadline(void *owner, pykv_h2_conn *conn, uint32_t stream, int64_t at_us) {
    pykv_h2_server *s = owner;
    if (s->heap_count >= s->heap_check_at) heap_compact(s);
    heap_push(s, (deadline){at_us, h2_conn_id(conn), stream});
}

/* --- connections ---------------------------------------------------------------- */

static conn_slot *slot_of(pykv_h2_server *s, uint64_t id) {
    uint32_t index = (uint32_t)(id & SLOT_MASK);
    if (index >= s->slot_count) return NULL;
    conn_slot *slot = &s->slots[index];
    if (slot->conn == NULL || slot->gen != (uint32_t)(id >> SLOT_BITS)) return NULL;
    return slot;
}

static void mark_dirty(pykv_h2_server *s, uint32_t index) {
    conn_slot *slot = &s->slots[index];
    if (slot->dirty) return;
    slot->dirty = 1;
    if (s->dirty_count == s->dirty_cap) {
        size_t cap = s->dirty_cap ? s->dirty_cap * 2 : 64;
        uint32_t *dirty = realloc(s->dirty, cap * sizeof(*dirty));
        PYKV_ASSERT(dirty != NULL);
        s->dirty = dirty;
        s->dirty_cap = cap;
    }
    s->dirty[s->dirty_count++] = index;
}

static void set_epoll_mask(pykv_h2_server *s, uint32_t index, uint32_t mask) {
    conn_slot *slot = &s->slots[index];
    if (slot->epoll_mask == mask) return;
    struct epoll_event ev = {.events = mask, .data.u64 = tag(TAG_CONN, index)};
    epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, slot->fd, &ev);
    slot->epoll_mask = mask;
}

/* Forget a connection; its socket is closed unless it was handed over. */
static void release_conn(pykv_h2_server *s, uint32_t index, int close_fd) {
    conn_slot *slot = &s->slots[index];
    epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, slot->fd, NULL);
    if (close_fd) close(slot->fd);
    h2_conn_abort(slot->conn);  /* CANCELs into staging */
    pykv_h2_conn_free(slot->conn);
    slot->conn = NULL;
    slot->fd = -1;
    slot->gen = (slot->gen + 1) & ((1u << (32 - SLOT_BITS)) - 1);
    slot->next_free = s->free_head;
    s->free_head = index;
    s->io_stats.connections_open--;
}

static void close_conn(pykv_h2_server *s, uint32_t index) { release_conn(s, index, 1); }

/* The peer spoke HTTP/1: its socket and the bytes read so far go to Python
 * as an HTTP1 event (pykv_h2.h). */
static void hand_over(pykv_h2_server *s, uint32_t index) {
    conn_slot *slot = &s->slots[index];
    const uint8_t *data;
    size_t len;
    pykv_h2_conn_http1_input(slot->conn, &data, &len);
    pykv_h2_event ev = {h2_conn_id(slot->conn), 0, PYKV_H2_EV_HTTP1, 0, 0, 0, slot->fd};
    int rc = h2_sink_push(&s->staging, &ev, data, len, NULL, 0);
    PYKV_ASSERT(rc == PYKV_OK);  /* out of memory: nothing sane is left to do */
    s->io_stats.http1_handoffs++;
    release_conn(s, index, 0);
}

/* Run a connection's keepalive tick and queue the next one. */
static void keepalive_tick(pykv_h2_server *s, conn_slot *slot, int64_t now) {
    int64_t next;
    pykv_h2_conn_set_time(slot->conn, now);
    if (pykv_h2_conn_tick(slot->conn, &next) != PYKV_OK) {
        slot->eof = EOF_BROKEN;  /* the ping went unanswered: close */
        s->io_stats.keepalive_closes++;
        return;
    }
    if (next > 0) heap_push(s, (deadline){next, h2_conn_id(slot->conn), KEEPALIVE_STREAM});
}

static void accept_one(pykv_h2_server *s, int fd) {
    if (s->io_stats.connections_open >= s->proto.config.max_connections) {
        close(fd);
        s->io_stats.connections_refused++;
        return;
    }
    uint32_t index;
    if (s->free_head != UINT32_MAX) {
        index = s->free_head;
        s->free_head = s->slots[index].next_free;
    } else {
        if (s->slot_count == s->slot_cap) {
            uint32_t cap = s->slot_cap ? s->slot_cap * 2 : 64;
            conn_slot *slots = realloc(s->slots, cap * sizeof(*slots));
            PYKV_ASSERT(slots != NULL);
            s->slots = slots;
            s->slot_cap = cap;
        }
        index = s->slot_count++;
        memset(&s->slots[index], 0, sizeof(conn_slot));
    }
    conn_slot *slot = &s->slots[index];
    uint64_t id = ((uint64_t)slot->gen << SLOT_BITS) | index;
    if (h2_conn_create(&s->proto, &s->staging, id, &slot->conn) != PYKV_OK) {
        close(fd);
        slot->next_free = s->free_head;
        s->free_head = index;
        return;
    }
    h2_conn_set_deadline_hook(slot->conn, on_deadline, s);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    slot->fd = fd;
    slot->eof = 0;
    slot->lingering = 0;
    slot->handoff = 0;
    slot->dirty = 0;
    slot->epoll_mask = s->reading_paused ? 0 : EPOLLIN;
    struct epoll_event ev = {.events = slot->epoll_mask, .data.u64 = tag(TAG_CONN, index)};
    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    s->io_stats.connections_accepted++;
    s->io_stats.connections_open++;
    if (s->shutting_down) pykv_h2_conn_shutdown(slot->conn);
    keepalive_tick(s, slot, now_us());
    mark_dirty(s, index);
}

static void accept_ready(pykv_h2_server *s, int listener) {
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(s, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && s->reserve_fd >= 0) {
            /* Out of descriptors: take the connection with the spare one
             * and close it, or the listener stays readable forever. */
            close(s->reserve_fd);
            fd = accept(listener, NULL, NULL);
            if (fd >= 0) close(fd);
            s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            s->io_stats.connections_refused++;
            continue;
        }
        return;  /* EAGAIN, or an error the next turn will see again */
    }
}

static void read_ready(pykv_h2_server *s, uint32_t index, int64_t now) {
    conn_slot *slot = &s->slots[index];
    if (slot->lingering) {
        uint8_t sink[16384];
        for (int i = 0; i < READS_PER_TURN && !slot->eof; i++) {
            ssize_t n = recv(slot->fd, sink, sizeof(sink), 0);
            if (n > 0) {
                slot->linger_bytes += (uint64_t)n;
                if (slot->linger_bytes > LINGER_BYTES_MAX) slot->eof = EOF_BROKEN;
                continue;
            }
            if (n < 0 && (errno == EINTR)) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            slot->eof = EOF_BROKEN;  /* the peer closed too (or failed): close now */
        }
        mark_dirty(s, index);
        return;
    }
    pykv_h2_conn_set_time(slot->conn, now);  /* grpc-timeouts count from here */
    for (int i = 0; i < READS_PER_TURN && !slot->eof; i++) {
        size_t space;
        uint8_t *at = h2_conn_read_space(slot->conn, 16384, &space);
        if (at == NULL) {
            slot->eof = EOF_BROKEN;
            break;
        }
        if (space > READ_CHUNK_BYTES) space = READ_CHUNK_BYTES;
        ssize_t n = recv(slot->fd, at, space, 0);
        if (n > 0) {
            s->io_stats.bytes_in += (uint64_t)n;
            if (h2_conn_read_commit(slot->conn, (size_t)n) != PYKV_OK) {
                if (h2_conn_is_http1(slot->conn)) {
                    slot->handoff = 1;
                } else {
                    s->io_stats.protocol_errors++;
                }
                break;  /* a GOAWAY waits in the output; the conn closes once it is written */
            }
            if ((size_t)n < space) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        slot->eof = n == 0 ? EOF_CLEAN : EOF_BROKEN;
    }
    mark_dirty(s, index);
}

enum { CONN_KEEP = 0, CONN_CLOSE = 1, CONN_LINGER = 2, CONN_HANDOFF = 3 };

/* Write what the connection has and keep EPOLLOUT in step. Returns what
 * the I/O thread must do next: CONN_CLOSE (the socket is gone or the peer
 * closed), CONN_LINGER (our last frame is written), or CONN_KEEP. */
static int write_out(pykv_h2_server *s, uint32_t index) {
    conn_slot *slot = &s->slots[index];
    if (slot->conn == NULL) return CONN_KEEP;
    if (slot->handoff) return CONN_HANDOFF;  /* the I/O thread hands it over */
    if (slot->eof == EOF_BROKEN) return CONN_CLOSE;
    if (slot->lingering) return CONN_KEEP;
    h2_conn_flush(slot->conn);
    const uint8_t *data;
    size_t pending;
    for (;;) {
        pykv_h2_conn_output(slot->conn, &data, &pending);
        if (pending == 0) break;
        ssize_t n = send(slot->fd, data, pending, MSG_NOSIGNAL);
        if (n > 0) {
            s->io_stats.bytes_out += (uint64_t)n;
            pykv_h2_conn_consume(slot->conn, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        slot->eof = EOF_BROKEN;  /* EPIPE, ECONNRESET: the client is gone */
        return CONN_CLOSE;
    }
    /* After a clean EOF the client sent all it will: what could be written
     * was (an answer to its last frames, a GOAWAY); open calls are cancelled. */
    if (slot->eof == EOF_CLEAN) return CONN_CLOSE;
    if (pending == 0 && (h2_conn_finished(slot->conn) || h2_conn_idle(slot->conn))) {
        return CONN_LINGER;
    }
    uint32_t mask = (s->reading_paused ? 0 : EPOLLIN) | (pending ? EPOLLOUT : 0);
    set_epoll_mask(s, index, mask);
    return CONN_KEEP;
}

static void start_linger(pykv_h2_server *s, uint32_t index) {
    conn_slot *slot = &s->slots[index];
    slot->lingering = 1;
    slot->linger_bytes = 0;
    h2_conn_abort(slot->conn);  /* nothing more will be answered */
    shutdown(slot->fd, SHUT_WR);
    set_epoll_mask(s, index, EPOLLIN);
    heap_push(s, (deadline){now_us() + LINGER_US, h2_conn_id(slot->conn), LINGER_STREAM});
}

/* The I/O thread's end of turn for one connection: write, close or linger. */
static void service(pykv_h2_server *s, uint32_t index) {
    s->slots[index].dirty = 0;
    if (s->slots[index].conn == NULL) return;
    if (s->slots[index].handoff) {
        hand_over(s, index);
        return;
    }
    int next = write_out(s, index);
    if (next == CONN_CLOSE) {
        close_conn(s, index);
    } else if (next == CONN_LINGER) {
        start_linger(s, index);
    }
}

static void set_reading(pykv_h2_server *s, int paused) {
    if (s->reading_paused == paused) return;
    s->reading_paused = paused;
    pthread_mutex_lock(&s->mu);
    s->paused = paused;
    pthread_mutex_unlock(&s->mu);
    if (paused) s->io_stats.read_pauses++;
    for (uint32_t i = 0; i < s->slot_count; i++) {
        if (s->slots[i].conn) mark_dirty(s, i);  /* service() sets the new mask */
    }
}

/* --- the crossing ---------------------------------------------------------------- */

static int sink_append(h2_sink *to, const h2_sink *from) {
    if (from->count == 0) return PYKV_OK;
    if (to->cap - to->count < from->count) {
        size_t cap = to->cap ? to->cap : 64;
        while (cap - to->count < from->count) cap *= 2;
        pykv_h2_event *events = realloc(to->events, cap * sizeof(*events));
        if (events == NULL) return PYKV_ENOMEM;
        to->events = events;
        to->cap = cap;
    }
    int rc = h2_buf_append(&to->payload, from->payload.data, from->payload.len);
    if (rc) return rc;
    memcpy(to->events + to->count, from->events, from->count * sizeof(pykv_h2_event));
    to->count += from->count;
    return PYKV_OK;
}

/* Hand the staged events to Python (under conn_mu). With flags (the I/O
 * thread's end of turn), also take the requests Python left for it. */
typedef struct turn_flags {
    int stop, shutdown, resume;
} turn_flags;

static void publish(pykv_h2_server *s, turn_flags *flags) {
    int signal_python = 0;
    s->io_stats.events += s->staging.count;
    for (size_t i = 0; i < s->staging.count; i++) {
        if (s->staging.events[i].kind == PYKV_H2_EV_CALL) s->io_stats.calls++;
    }
    pthread_mutex_lock(&s->mu);
    if (s->staging.count > 0) {
        if (s->queued.count == 0) {
            h2_sink tmp = s->queued;  /* Python kept up: swap, no copy */
            s->queued = s->staging;
            s->staging = tmp;
        } else {
            int rc = sink_append(&s->queued, &s->staging);
            PYKV_ASSERT(rc == PYKV_OK);
        }
        if (!s->python_signaled) {
            s->python_signaled = 1;
            signal_python = 1;
        }
    }
    int over = s->queued.payload.len > s->proto.config.max_queued_bytes;
    /* The pause is announced under mu with the queue that caused it: a poll
     * that empties the queue after this sees it and asks for a resume.
     * Announced later (set_reading, after the unlock), a poll in between took
     * the queue, saw no pause and never asked, and reading stayed paused
     * with nothing left to wake anyone. */
    if (over) s->paused = 1;
    s->io_stats.polls = s->polls;
    s->stats = s->io_stats;
    if (flags != NULL) {
        flags->stop = s->stop_requested;
        flags->shutdown = s->shutdown_requested;
        flags->resume = s->resume_requested;
        s->resume_requested = 0;
    }
    pthread_mutex_unlock(&s->mu);
    h2_sink_reset(&s->staging);
    if (signal_python) signal_fd(s->event_fd);
    if (over) set_reading(s, 1);
}

/* Apply the responses Python queued (under conn_mu), in the order given. */
static void take_responses(pykv_h2_server *s) {
    pthread_mutex_lock(&s->mu);
    response_queue tmp = s->io_responses;
    s->io_responses = s->responses;
    s->responses = tmp;
    s->io_signaled = 0;
    pthread_mutex_unlock(&s->mu);
    response_queue *q = &s->io_responses;
    size_t count = q->records.len / sizeof(pykv_h2_response);
    const uint8_t *data = q->data.data;
    for (size_t i = 0; i < count; i++) {
        pykv_h2_response r;
        memcpy(&r, q->records.data + i * sizeof(r), sizeof(r));
        conn_slot *slot = slot_of(s, r.conn);
        if (slot != NULL && !slot->eof) {
            h2_conn_respond_one(slot->conn, &r, data, data + r.message_bytes);
            mark_dirty(s, (uint32_t)(slot - s->slots));
        }
        data += (size_t)r.message_bytes + r.detail_bytes;
    }
    s->io_stats.responses += count;
    h2_buf_reset(&q->records);
    h2_buf_reset(&q->data);
    h2_buf_trim(&q->data, 1 << 20);
}

static void begin_shutdown(pykv_h2_server *s) {
    s->shutting_down = 1;
    for (int i = 0; i < s->listener_count; i++) {
        epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->listeners[i], NULL);
        close(s->listeners[i]);
        s->listeners[i] = -1;
    }
    s->listener_count = 0;
    for (uint32_t i = 0; i < s->slot_count; i++) {
        if (s->slots[i].conn) {
            pykv_h2_conn_shutdown(s->slots[i].conn);
            mark_dirty(s, i);
        }
    }
}

static int next_timeout_ms(pykv_h2_server *s, int64_t now) {
    if (s->dirty_count > 0) return 0;
    if (s->heap_count == 0) return -1;
    int64_t wait_us = s->heap[0].at_us - now;
    if (wait_us <= 0) return 0;
    int64_t ms = (wait_us + 999) / 1000;
    return ms > 60000 ? 60000 : (int)ms;
}

static void *io_thread(void *arg) {
    pykv_h2_server *s = arg;
    struct epoll_event events[EPOLL_BATCH];
    turn_flags flags = {0, 0, 0};
    pthread_mutex_lock(&s->conn_mu);
    for (;;) {
        int timeout_ms = next_timeout_ms(s, now_us());
        pthread_mutex_unlock(&s->conn_mu);
        int n = epoll_wait(s->epoll_fd, events, EPOLL_BATCH, timeout_ms);
        pthread_mutex_lock(&s->conn_mu);
        int64_t woke = now_us();
        s->io_stats.wakeups++;
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            uint32_t kind = (uint32_t)(events[i].data.u64 >> 32);
            uint32_t index = (uint32_t)events[i].data.u64;
            if (kind == TAG_LISTENER) {
                if (!s->shutting_down) accept_ready(s, s->listeners[index]);
            } else if (kind == TAG_WAKE) {
                drain_fd(s->wake_fd);
                take_responses(s);
            } else if (s->slots[index].conn != NULL) {
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    if (!s->reading_paused || (events[i].events & (EPOLLHUP | EPOLLERR))) {
                        read_ready(s, index, woke);
                    }
                }
                if (events[i].events & EPOLLOUT) mark_dirty(s, index);
            }
        }
        int64_t now = now_us();
        while (s->heap_count > 0 && s->heap[0].at_us <= now) {
            deadline d = heap_pop(s);
            conn_slot *slot = slot_of(s, d.conn);
            if (slot == NULL) continue;
            if (d.stream == LINGER_STREAM) {
                if (slot->lingering) slot->eof = EOF_BROKEN;  /* waited long enough */
            } else if (d.stream == KEEPALIVE_STREAM) {
                if (slot->lingering || !deadline_live(slot, d)) continue;
                keepalive_tick(s, slot, now);
            } else {
                h2_conn_expire_stream(slot->conn, d.stream, now);
            }
            mark_dirty(s, (uint32_t)(slot - s->slots));
        }
        /* close_conn may add CANCELs to staging; service first, then publish */
        for (size_t i = 0; i < s->dirty_count; i++) service(s, s->dirty[i]);
        s->dirty_count = 0;
        publish(s, &flags);
        if (flags.stop) break;
        if (flags.shutdown && !s->shutting_down) begin_shutdown(s);
        if (flags.resume && s->reading_paused) {
            pthread_mutex_lock(&s->mu);
            int still_over = s->queued.payload.len > s->proto.config.max_queued_bytes / 2;
            pthread_mutex_unlock(&s->mu);
            if (!still_over) set_reading(s, 0);
        }
    }
    /* Answers Python gave before stopping still go out, as far as the
     * sockets take them without waiting. */
    take_responses(s);
    for (size_t i = 0; i < s->dirty_count; i++) write_out(s, s->dirty[i]);
    s->dirty_count = 0;
    for (uint32_t i = 0; i < s->slot_count; i++) {
        if (s->slots[i].conn) close_conn(s, i);
    }
    pthread_mutex_unlock(&s->conn_mu);
    return NULL;
}

/* --- the public face --------------------------------------------------------------- */

int pykv_h2_server_new(const pykv_h2_config *config, const char *paths, size_t paths_bytes,
                       const uint8_t *kinds, size_t count, pykv_h2_server **out, char *err,
                       size_t err_bytes) {
    *out = NULL;
    pykv_h2_server *s = calloc(1, sizeof(*s));
    if (s == NULL) return PYKV_ENOMEM;
    int rc = h2_proto_init(&s->proto, config, paths, paths_bytes, kinds, count, err, err_bytes);
    if (rc) {
        free(s);
        return rc;
    }
    s->free_head = UINT32_MAX;
    s->heap_check_at = HEAP_CHECK_MIN;
    s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    if (s->epoll_fd < 0 || s->wake_fd < 0 || s->event_fd < 0) {
        snprintf(err, err_bytes, "creating the h2 server's epoll and eventfds: %s",
                 strerror(errno));
        pykv_h2_server_free(s);
        return PYKV_EIO;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag(TAG_WAKE, 0)};
    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->wake_fd, &ev);
    *out = s;
    return PYKV_OK;
}

static int listen_on(const struct addrinfo *ai, uint16_t port, int *out_fd, uint16_t *bound,
                     char *err, size_t err_bytes) {
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    if (addr.ss_family == AF_INET) {
        ((struct sockaddr_in *)&addr)->sin_port = htons(port);
    } else {
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons(port);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_bytes, "socket: %s", strerror(errno));
        return PYKV_EIO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    char host[INET6_ADDRSTRLEN] = "?";
    if (addr.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof(host));
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof(host));
    }
    if (bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, err_bytes, "cannot listen on %s port %u: %s", host, port, strerror(errno));
        close(fd);
        return PYKV_EIO;
    }
    struct sockaddr_storage got;
    socklen_t got_len = sizeof(got);
    getsockname(fd, (struct sockaddr *)&got, &got_len);
    *bound = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                            : ((struct sockaddr_in6 *)&got)->sin6_port);
    *out_fd = fd;
    return PYKV_OK;
}

int pykv_h2_server_listen(pykv_h2_server *s, const char *host, uint16_t *port, char *err,
                          size_t err_bytes) {
    if (s->started) {
        snprintf(err, err_bytes, "listen after start");
        return PYKV_EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_ADDRCONFIG};
    struct addrinfo *found = NULL;
    int gai = getaddrinfo(host && host[0] ? host : NULL, "0", &hints, &found);
    if (gai != 0) {
        snprintf(err, err_bytes, "cannot resolve %s: %s", host, gai_strerror(gai));
        return PYKV_EINVAL;
    }
    int bound_any = 0, rc = PYKV_OK;
    uint16_t want = *port;
    char first_err[PYKV_H2_ERROR_BYTES] = "";
    for (struct addrinfo *ai = found; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        if (s->listener_count == MAX_LISTENERS) break;
        int fd;
        uint16_t bound;
        rc = listen_on(ai, want, &fd, &bound, err, err_bytes);
        if (rc) {
            if (!first_err[0]) snprintf(first_err, sizeof(first_err), "%s", err);
            continue;
        }
        want = bound;  /* port 0: every address on the port the first one got */
        struct epoll_event ev = {.events = EPOLLIN,
                                 .data.u64 = tag(TAG_LISTENER, (uint32_t)s->listener_count)};
        epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
        s->listeners[s->listener_count++] = fd;
        bound_any = 1;
    }
    freeaddrinfo(found);
    if (!bound_any) {
        snprintf(err, err_bytes, "%s", first_err[0] ? first_err : "no address to listen on");
        return PYKV_EIO;
    }
    *port = want;
    return PYKV_OK;
}

int pykv_h2_server_start(pykv_h2_server *s, char *err, size_t err_bytes) {
    if (s->started) return PYKV_OK;
    /* The thread takes no signals: SIGINT and SIGTERM belong to Python. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, io_thread, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, err_bytes, "starting the h2 I/O thread: %s", strerror(rc));
        return PYKV_EIO;
    }
    s->started = 1;
    return PYKV_OK;
}

int pykv_h2_server_event_fd(const pykv_h2_server *s) { return s->event_fd; }

int pykv_h2_server_poll(pykv_h2_server *s, pykv_h2_events *batch) {
    int resume = 0;
    drain_fd(s->event_fd);
    pthread_mutex_lock(&s->mu);
    h2_sink tmp = s->taken;
    s->taken = s->queued;
    s->queued = tmp;
    h2_sink_reset(&s->queued);
    h2_buf_trim(&s->queued.payload, 8u << 20);
    s->python_signaled = 0;
    s->polls++;
    if (s->paused && !s->resume_requested) {
        /* reading is paused: let the thread look again */
        s->resume_requested = 1;
        resume = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (resume) signal_fd(s->wake_fd);
    batch->count = s->taken.count;
    batch->events = s->taken.events;
    batch->payload = s->taken.payload.data;
    batch->payload_bytes = s->taken.payload.len;
    return PYKV_OK;
}

int pykv_h2_server_respond(pykv_h2_server *s, const pykv_h2_response *responses, size_t count,
                           const uint8_t *data, size_t data_bytes) {
    size_t need = 0;
    for (size_t i = 0; i < count; i++) {
        need += (size_t)responses[i].message_bytes + responses[i].detail_bytes;
    }
    if (need != data_bytes) return PYKV_EINVAL;
    if (count == 0) return PYKV_OK;
    int wake = 0, rc = PYKV_OK;
    if (s->started && !s->stopped && pthread_mutex_trylock(&s->conn_mu) == 0) {
        /* The I/O thread sleeps: write the answers from here. Anything
         * queued before goes first, to keep each stream's order. */
        take_responses(s);
        const uint8_t *at = data;
        for (size_t i = 0; i < count; i++) {
            const pykv_h2_response *r = &responses[i];
            conn_slot *slot = slot_of(s, r->conn);
            if (slot != NULL && !slot->eof) {
                h2_conn_respond_one(slot->conn, r, at, at + r->message_bytes);
                mark_dirty(s, (uint32_t)(slot - s->slots));
            }
            at += (size_t)r->message_bytes + r->detail_bytes;
        }
        s->io_stats.responses += count;
        /* Connections to close stay dirty for the thread, which closes them. */
        size_t keep = 0;
        for (size_t i = 0; i < s->dirty_count; i++) {
            uint32_t index = s->dirty[i];
            if (write_out(s, index) != CONN_KEEP) {
                s->dirty[keep++] = index;
            } else {
                s->slots[index].dirty = 0;
            }
        }
        s->dirty_count = keep;
        publish(s, NULL);
        wake = s->dirty_count > 0;  /* closes, or a pause of reading to apply */
        pthread_mutex_unlock(&s->conn_mu);
    } else {
        pthread_mutex_lock(&s->mu);
        rc = h2_buf_append(&s->responses.records, responses, count * sizeof(*responses));
        if (rc == PYKV_OK) rc = h2_buf_append(&s->responses.data, data, data_bytes);
        if (rc == PYKV_OK && !s->io_signaled) {
            s->io_signaled = 1;
            wake = 1;
        }
        pthread_mutex_unlock(&s->mu);
    }
    if (wake) signal_fd(s->wake_fd);
    return rc;
}

int pykv_h2_server_shutdown(pykv_h2_server *s) {
    pthread_mutex_lock(&s->mu);
    s->shutdown_requested = 1;
    pthread_mutex_unlock(&s->mu);
    signal_fd(s->wake_fd);
    return PYKV_OK;
}

int pykv_h2_server_stop(pykv_h2_server *s) {
    if (s->stopped) return PYKV_OK;
    s->stopped = 1;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop_requested = 1;
        pthread_mutex_unlock(&s->mu);
        signal_fd(s->wake_fd);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < s->listener_count; i++) {
        if (s->listeners[i] >= 0) close(s->listeners[i]);
    }
    s->listener_count = 0;
    return PYKV_OK;
}

/* Sockets handed over in events Python never polled are still ours. */
static void close_unpolled_handoffs(h2_sink *sink) {
    for (size_t i = 0; i < sink->count; i++) {
        if (sink->events[i].kind == PYKV_H2_EV_HTTP1) close((int)sink->events[i].timeout_us);
    }
    sink->count = 0;
}

void pykv_h2_server_free(pykv_h2_server *s) {
    if (s == NULL) return;
    pykv_h2_server_stop(s);
    close_unpolled_handoffs(&s->staging);
    close_unpolled_handoffs(&s->queued);
    for (uint32_t i = 0; i < s->slot_count; i++) {
        if (s->slots[i].conn) {
            close(s->slots[i].fd);
            pykv_h2_conn_free(s->slots[i].conn);
        }
    }
    free(s->slots);
    free(s->dirty);
    free(s->heap);
    h2_sink_free(&s->staging);
    h2_sink_free(&s->queued);
    h2_sink_free(&s->taken);
    h2_buf_free(&s->responses.records);
    h2_buf_free(&s->responses.data);
    h2_buf_free(&s->io_responses.records);
    h2_buf_free(&s->io_responses.data);
    if (s->epoll_fd >= 0) close(s->epoll_fd);
    if (s->wake_fd >= 0) close(s->wake_fd);
    if (s->event_fd >= 0) close(s->event_fd);
    if (s->reserve_fd >= 0) close(s->reserve_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->conn_mu);
    h2_proto_free(&s->proto);
    free(s);
}

void pykv_h2_server_get_stats(pykv_h2_server *s, pykv_h2_stats *stats) {
    pthread_mutex_lock(&s->mu);
    *stats = s->stats;
    stats->polls = s->polls;
    pthread_mutex_unlock(&s->mu);
}

int pykv_h2_server_supported(void) { return 1; }

#else /* not Linux */

#include <stdio.h>

int pykv_h2_server_supported(void) { return 0; }

int pykv_h2_server_new(const pykv_h2_config *config, const char *paths, size_t paths_bytes,
                       const uint8_t *kinds, size_t count, pykv_h2_server **out, char *err,
                       size_t err_bytes) {
    *out = NULL;
    snprintf(err, err_bytes, "the native gRPC server needs Linux (epoll, eventfd)");
    return PYKV_EINVAL;
}

int pykv_h2_server_listen(pykv_h2_server *server, const char *host, uint16_t *port, char *err,
                          size_t err_bytes) {
    return PYKV_EINVAL;
}

int pykv_h2_server_start(pykv_h2_server *server, char *err, size_t err_bytes) {
    return PYKV_EINVAL;
}

int pykv_h2_server_event_fd(const pykv_h2_server *server) { return -1; }
int pykv_h2_server_poll(pykv_h2_server *server, pykv_h2_events *batch) { return PYKV_EINVAL; }

int pykv_h2_server_respond(pykv_h2_server *server, const pykv_h2_response *responses,
                           size_t count, const uint8_t *data, size_t data_bytes) {
    return PYKV_EINVAL;
}

int pykv_h2_server_shutdown(pykv_h2_server *server) { return PYKV_EINVAL; }
int pykv_h2_server_stop(pykv_h2_server *server) { return PYKV_OK; }
void pykv_h2_server_free(pykv_h2_server *server) {}

void pykv_h2_server_get_stats(pykv_h2_server *server, pykv_h2_stats *stats) {
    memset(stats, 0, sizeof(*stats));
}

#endif
