/* h2_conn.c — one server-side HTTP/2 connection carrying gRPC, without I/O.
 *
 * Bytes come in through pykv_h2_conn_feed (or the server's read_space /
 * read_commit), frames are parsed in place, and what must go back (SETTINGS
 * and PING acks, WINDOW_UPDATEs, responses, GOAWAY) is appended to the
 * output buffer for the caller to write. gRPC calls become events in a sink
 * (pykv_h2.h describes them); responses come back through respond_one.
 *
 * Sections cited are RFC 9113's unless said otherwise; gRPC's rules are
 * grpc/grpc doc/PROTOCOL-HTTP2.md, and the error texts are grpc-go's, so
 * clients see what an etcd server would say.
 *
 * Flow control (5.2, 6.9). Receiving: a DATA frame's whole length (padding
 * included) is charged to the stream and the connection; request bytes are
 * consumed as they arrive (handed to the sink), so the windows are topped up
 * once half is spent. Memory is bounded elsewhere: the server stops reading
 * sockets while Python has not taken max_queued_bytes of events. Sending:
 * each stream keeps the DATA it may not send yet in its own queue; streams
 * with data and window wait in a round-robin list, and flush() moves at most
 * one frame per stream per turn into the output while the output is under
 * OUT_HIGH_BYTES, so that a 40 MB answer is copied into the output only as
 * the peer opens its window and the socket drains.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "h2_internal.h"

enum {
    FRAME_DATA = 0, FRAME_HEADERS = 1, FRAME_PRIORITY = 2, FRAME_RST_STREAM = 3,
    FRAME_SETTINGS = 4, FRAME_PUSH_PROMISE = 5, FRAME_PING = 6, FRAME_GOAWAY = 7,
    FRAME_WINDOW_UPDATE = 8, FRAME_CONTINUATION = 9,
};
enum {
    FLAG_END_STREAM = 0x1, FLAG_ACK = 0x1, FLAG_END_HEADERS = 0x4, FLAG_PADDED = 0x8,
    FLAG_PRIORITY = 0x20,
};
enum {
    SETTINGS_HEADER_TABLE_SIZE = 1, SETTINGS_ENABLE_PUSH = 2, SETTINGS_MAX_CONCURRENT_STREAMS = 3,
    SETTINGS_INITIAL_WINDOW_SIZE = 4, SETTINGS_MAX_FRAME_SIZE = 5,
    SETTINGS_MAX_HEADER_LIST_SIZE = 6,
};

/* gRPC status codes used here. */
enum {
    GRPC_OK = 0, GRPC_DEADLINE_EXCEEDED = 4, GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12, GRPC_INTERNAL = 13,
};

#define FRAME_HEADER_BYTES 9
#define RECV_MAX_FRAME_BYTES 16384      /* we advertise the default (6.5.2) */
#define DEFAULT_WINDOW_BYTES 65535
#define WINDOW_MAX 0x7fffffffLL
#define OUT_HIGH_BYTES (256 * 1024)     /* stop moving queued DATA into the output here */
#define DETAIL_MAX_BYTES 8000           /* percent-encoded grpc-message, fits one frame */
#define GRPC_PREFIX_BYTES 5
#define BUFFER_KEEP_BYTES (64 * 1024)   /* what an idle stream or connection keeps */
#define SPARE_STREAMS_MAX 64
#define SPARE_BUFFER_KEEP_BYTES 4096

static const uint8_t PREFACE[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Stream flags. */
enum {
    S_RECV_CLOSED = 1 << 0,   /* the client sent END_STREAM */
    S_REPORTED = 1 << 1,      /* Python has the CALL: it answers or gets a CANCEL */
    S_HEADERS_SENT = 1 << 2,  /* response HEADERS went out */
    S_END_QUEUED = 1 << 3,    /* trailers wait behind the queued DATA */
    S_DISCARD = 1 << 4,       /* C answered already: drop further request data */
    S_DRAIN_WANTED = 1 << 5,
    S_IN_SENDQ = 1 << 6,
    S_MESSAGE_DONE = 1 << 7,  /* unary: its one message is complete in msg */
};

typedef struct h2_stream {
    uint32_t id;
    uint32_t flags;
    uint16_t method;
    uint8_t kind;
    int64_t send_window;
    int64_t recv_window;
    int64_t timeout_us;       /* NO_TIMEOUT or grpc-timeout */
    int64_t deadline_us;      /* 0: none */
    uint32_t message_bytes;   /* body length of the message being assembled */
    h2_buf msg;               /* request message: 5-byte prefix + body */
    h2_buf meta;              /* unary: metadata kept until the CALL event */
    h2_buf out;               /* DATA payload waiting for window */
    h2_buf trailers;          /* HPACK block of trailers waiting behind out */
    struct h2_stream *bucket_next;
    struct h2_stream *sendq_next;
} h2_stream;

enum { CONN_PREFACE, CONN_OPEN, CONN_CLOSED };

struct pykv_h2_conn {
    const h2_proto *proto;
    h2_proto own_proto;         /* a test connection owns its method table */
    h2_sink *sink;
    h2_sink own_sinks[2];       /* a test connection's events: filling, taken */
    int own_sink_index;
    uint64_t id;
    int state;
    int http1;                  /* the peer spoke HTTP/1: in holds all it sent */
    int settings_seen;          /* the client's first frame was SETTINGS */
    h2_buf in;
    h2_buf out;
    pykv_hpack_decoder *hpack;
    h2_field_list fields;
    /* a header block spanning CONTINUATION frames */
    h2_buf hblock;
    uint32_t hblock_stream;
    uint8_t hblock_end_stream;
    int in_headers;
    /* the peer's settings */
    uint32_t peer_max_frame;
    uint32_t peer_initial_window;
    /* windows */
    int64_t send_window;
    int64_t recv_window;
    /* streams */
    h2_stream **buckets;
    size_t bucket_mask;
    uint32_t streams_open;
    uint32_t last_stream_id;
    h2_stream *sendq_head, *sendq_tail;
    h2_stream *spare;           /* retired streams, linked by bucket_next */
    uint64_t buffered_bytes;    /* request bytes held in streams' msg buffers */
    uint32_t spare_count;
    uint64_t queued_bytes;
    /* shutdown */
    int goaway_sent;
    uint32_t goaway_code;
    uint32_t goaway_last_id;
    /* deadlines */
    int64_t now_us;
    /* keepalive, by grpc-go's server rules (see pykv_h2_conn_tick) */
    int64_t last_read_us;       /* when bytes last came from the peer */
    uint64_t reads;             /* reads with bytes, ever */
    uint64_t keepalive_reads;   /* reads at the previous tick */
    int64_t keepalive_at_us;    /* when the next tick is due; 0: not started */
    int64_t ping_deadline_us;   /* our ping's answer is due by then */
    int ping_outstanding;
    /* the client's pings (grpc-go's enforcement policy) */
    int ping_seen;
    int64_t last_ping_at_us;
    uint32_t ping_strikes;
    int reset_ping_strikes;     /* we sent HEADERS or DATA since the last ping */
    h2_deadline_fn deadline_fn;
    void *deadline_owner;
    h2_buf scratch;
    char error[PYKV_H2_ERROR_BYTES];
};

void pykv_h2_config_default(pykv_h2_config *c) {
    c->max_receive_bytes = 4u << 20;           /* grpc's default */
    c->max_concurrent_streams = 65536;
    c->stream_window_bytes = 4u << 20;
    c->connection_window_bytes = 16u << 20;
    c->max_header_list_bytes = 64u << 10;
    c->max_connections = 65536;
    c->max_queued_bytes = 64u << 20;
    c->max_buffered_request_bytes = 64u << 20;
    c->keepalive_interval_us = 2ull * 3600 * 1000000;  /* etcd: --grpc-keepalive-interval 2h */
    c->keepalive_timeout_us = 20ull * 1000000;         /* etcd: --grpc-keepalive-timeout 20s */
    c->keepalive_min_time_us = 5ull * 1000000;         /* etcd: --grpc-keepalive-min-time 5s */
}

/* --- output helpers ----------------------------------------------------------------- */

static int put_frame_header(h2_buf *out, uint32_t len, uint8_t type, uint8_t flags,
                            uint32_t stream) {
    uint8_t h[FRAME_HEADER_BYTES] = {
        (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
        (uint8_t)((stream >> 24) & 0x7f), (uint8_t)(stream >> 16), (uint8_t)(stream >> 8),
        (uint8_t)stream,
    };
    return h2_buf_append(out, h, sizeof(h));
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void send_rst(pykv_h2_conn *c, uint32_t stream, uint32_t code) {
    uint8_t p[4];
    put_u32(p, code);
    put_frame_header(&c->out, 4, FRAME_RST_STREAM, 0, stream);
    h2_buf_append(&c->out, p, 4);
}

static void send_window_update(pykv_h2_conn *c, uint32_t stream, uint32_t increment) {
    uint8_t p[4];
    put_u32(p, increment & 0x7fffffffu);
    put_frame_header(&c->out, 4, FRAME_WINDOW_UPDATE, 0, stream);
    h2_buf_append(&c->out, p, 4);
}

static void send_goaway(pykv_h2_conn *c, uint32_t code, const char *debug) {
    size_t debug_len = debug ? strlen(debug) : 0;
    uint8_t p[8];
    put_u32(p, c->last_stream_id);
    put_u32(p + 4, code);
    put_frame_header(&c->out, (uint32_t)(8 + debug_len), FRAME_GOAWAY, 0, 0);
    h2_buf_append(&c->out, p, 8);
    h2_buf_append(&c->out, debug, debug_len);
    c->goaway_sent = 1;
    c->goaway_code = code;
    c->goaway_last_id = c->last_stream_id;
}

/* HPACK integer (RFC 7541 5.1) with the first byte's high bits in first. */
static void hpack_put_int(h2_buf *b, uint8_t first, int prefix_bits, uint32_t value) {
    uint32_t max = (1u << prefix_bits) - 1;
    uint8_t tmp[8];
    size_t n = 0;
    if (value < max) {
        tmp[n++] = (uint8_t)(first | value);
    } else {
        tmp[n++] = (uint8_t)(first | max);
        value -= max;
        while (value >= 128) {
            tmp[n++] = (uint8_t)((value & 0x7f) | 0x80);
            value >>= 7;
        }
        tmp[n++] = (uint8_t)value;
    }
    h2_buf_append(b, tmp, n);
}

/* A literal without indexing (RFC 7541 6.2.2), no Huffman: name by static
 * index, or a literal name when name_index is 0. */
static void hpack_put_literal(h2_buf *b, uint32_t name_index, const char *name,
                              const void *value, size_t value_len) {
    hpack_put_int(b, 0x00, 4, name_index);
    if (name_index == 0) {
        size_t name_len = strlen(name);
        hpack_put_int(b, 0x00, 7, (uint32_t)name_len);
        h2_buf_append(b, name, name_len);
    }
    hpack_put_int(b, 0x00, 7, (uint32_t)value_len);
    h2_buf_append(b, value, value_len);
}

/* ":status 200" (static index 8) and "content-type: application/grpc". */
static const uint8_t RESPONSE_HEADERS[] = {
    0x88, 0x0f, 0x10, 0x10, 'a', 'p', 'p', 'l', 'i', 'c', 'a', 't', 'i', 'o', 'n', '/',
    'g', 'r', 'p', 'c',
};

/* grpc-status and grpc-message (percent-encoded, PROTOCOL-HTTP2.md). */
static void encode_status(h2_buf *b, uint16_t status, const uint8_t *detail, size_t detail_len) {
    char digits[5];
    size_t n = 0;
    unsigned value = status;
    do {  /* status codes are small: no snprintf on the answer path */
        digits[sizeof(digits) - 1 - n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 && n < sizeof(digits));
    hpack_put_literal(b, 0, "grpc-status", digits + sizeof(digits) - n, n);
    if (detail_len == 0) return;
    char encoded[DETAIL_MAX_BYTES];
    size_t at = 0;
    static const char HEX[] = "0123456789ABCDEF";
    for (size_t i = 0; i < detail_len; i++) {
        uint8_t ch = detail[i];
        if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
            if (at + 1 > sizeof(encoded)) break;
            encoded[at++] = (char)ch;
        } else {
            if (at + 3 > sizeof(encoded)) break;
            encoded[at++] = '%';
            encoded[at++] = HEX[ch >> 4];
            encoded[at++] = HEX[ch & 15];
        }
    }
    hpack_put_literal(b, 0, "grpc-message", encoded, at);
}

/* --- events ---------------------------------------------------------------- */

static void emit(pykv_h2_conn *c, uint16_t kind, uint32_t stream, uint16_t method,
                 const void *payload, size_t payload_bytes, const void *meta,
                 size_t meta_bytes, int64_t timeout_us) {
    pykv_h2_event ev = {c->id, stream, kind, method, 0, 0, timeout_us};
    int rc = h2_sink_push(c->sink, &ev, payload, payload_bytes, meta, meta_bytes);
    PYKV_ASSERT(rc == PYKV_OK);  /* out of memory: nothing sane is left to do */
}

/* --- the stream table --------------------------------------------------------- */

static size_t bucket_of(const pykv_h2_conn *c, uint32_t id) {
    return (size_t)((id * 2654435761u) >> 7) & c->bucket_mask;
}

static h2_stream *find_stream(const pykv_h2_conn *c, uint32_t id) {
    for (h2_stream *s = c->buckets[bucket_of(c, id)]; s; s = s->bucket_next) {
        if (s->id == id) return s;
    }
    return NULL;
}

static int grow_buckets(pykv_h2_conn *c) {
    size_t n = (c->bucket_mask + 1) * 2;
    h2_stream **buckets = calloc(n, sizeof(*buckets));
    if (buckets == NULL) return PYKV_ENOMEM;
    h2_stream **old = c->buckets;
    size_t old_n = c->bucket_mask + 1;
    c->buckets = buckets;
    c->bucket_mask = n - 1;
    for (size_t i = 0; i < old_n; i++) {
        h2_stream *s = old[i];
        while (s) {
            h2_stream *next = s->bucket_next;
            size_t b = bucket_of(c, s->id);
            s->bucket_next = buckets[b];
            buckets[b] = s;
            s = next;
        }
    }
    free(old);
    return PYKV_OK;
}

static h2_stream *new_stream(pykv_h2_conn *c, uint32_t id) {
    if (c->streams_open + 1 > c->bucket_mask + 1 && grow_buckets(c) != PYKV_OK) return NULL;
    h2_stream *s = c->spare;
    if (s != NULL) {
        /* a retired stream: its buffers' memory is kept, emptied */
        c->spare = s->bucket_next;
        c->spare_count--;
        h2_buf msg = s->msg, meta = s->meta, out = s->out, trailers = s->trailers;
        memset(s, 0, sizeof(*s));
        s->msg = msg;
        s->meta = meta;
        s->out = out;
        s->trailers = trailers;
    } else {
        s = calloc(1, sizeof(*s));
        if (s == NULL) return NULL;
    }
    s->id = id;
    s->send_window = c->peer_initial_window;
    s->recv_window = c->proto->config.stream_window_bytes;
    s->timeout_us = PYKV_H2_NO_TIMEOUT;
    size_t b = bucket_of(c, id);
    s->bucket_next = c->buckets[b];
    c->buckets[b] = s;
    c->streams_open++;
    return s;
}

static void sendq_push(pykv_h2_conn *c, h2_stream *s) {
    if (s->flags & S_IN_SENDQ) return;
    s->flags |= S_IN_SENDQ;
    s->sendq_next = NULL;
    if (c->sendq_tail) {
        c->sendq_tail->sendq_next = s;
    } else {
        c->sendq_head = s;
    }
    c->sendq_tail = s;
}

static h2_stream *sendq_pop(pykv_h2_conn *c) {
    h2_stream *s = c->sendq_head;
    if (s == NULL) return NULL;
    c->sendq_head = s->sendq_next;
    if (c->sendq_head == NULL) c->sendq_tail = NULL;
    s->sendq_next = NULL;
    s->flags &= ~(uint32_t)S_IN_SENDQ;
    return s;
}

static void sendq_remove(pykv_h2_conn *c, h2_stream *s) {
    if (!(s->flags & S_IN_SENDQ)) return;
    h2_stream *prev = NULL;
    for (h2_stream *p = c->sendq_head; p; prev = p, p = p->sendq_next) {
        if (p != s) continue;
        if (prev) {
            prev->sendq_next = p->sendq_next;
        } else {
            c->sendq_head = p->sendq_next;
        }
        if (c->sendq_tail == p) c->sendq_tail = prev;
        break;
    }
    s->sendq_next = NULL;
    s->flags &= ~(uint32_t)S_IN_SENDQ;
}

static void free_stream(h2_stream *s) {
    h2_buf_free(&s->msg);
    h2_buf_free(&s->meta);
    h2_buf_free(&s->out);
    h2_buf_free(&s->trailers);
    free(s);
}

/* Empty a buffer whose contents were handed over, keeping small memory. */
static void drop_contents(h2_buf *b) {
    h2_buf_reset(b);
    h2_buf_trim(b, SPARE_BUFFER_KEEP_BYTES);
}

/* Request bytes held for a stream count against the connection's
 * max_buffered_request_bytes: flow control cannot bound them (the windows
 * are topped up as bytes arrive, or interleaved uploads would deadlock), so
 * this does, whatever the number of streams. */
static void msg_append(pykv_h2_conn *c, h2_stream *s, const uint8_t *p, size_t n) {
    h2_buf_append(&s->msg, p, n);
    c->buffered_bytes += n;
}

static void msg_clear(pykv_h2_conn *c, h2_stream *s) {
    c->buffered_bytes -= s->msg.len;
    drop_contents(&s->msg);
}

static void meta_clear(pykv_h2_conn *c, h2_stream *s) {
    c->buffered_bytes -= s->meta.len;
    drop_contents(&s->meta);
}

/* Keep a few retired streams (and their small buffers) for the next calls:
 * a connection carrying many short calls then allocates nothing per call. */
static void retire_stream(pykv_h2_conn *c, h2_stream *s) {
    if (c->spare_count >= SPARE_STREAMS_MAX) {
        free_stream(s);
        return;
    }
    drop_contents(&s->msg);
    drop_contents(&s->meta);
    drop_contents(&s->out);
    drop_contents(&s->trailers);
    s->bucket_next = c->spare;
    c->spare = s;
    c->spare_count++;
}

/* Forget a stream. cancel: it ends without Python's SEND_END, so Python
 * (if it knows the call) gets a CANCEL. */
static void remove_stream(pykv_h2_conn *c, h2_stream *s, int cancel) {
    if (cancel && (s->flags & S_REPORTED)) {
        emit(c, PYKV_H2_EV_CANCEL, s->id, s->method, NULL, 0, NULL, 0, PYKV_H2_NO_TIMEOUT);
    }
    sendq_remove(c, s);
    c->queued_bytes -= h2_buf_pending(&s->out);
    c->buffered_bytes -= s->msg.len + s->meta.len;
    h2_buf_reset(&s->msg);
    h2_buf_reset(&s->meta);
    h2_stream **link = &c->buckets[bucket_of(c, s->id)];
    while (*link != s) link = &(*link)->bucket_next;
    *link = s->bucket_next;
    c->streams_open--;
    retire_stream(c, s);
    if (c->streams_open == 0) {
        /* the byte counts are sums over streams: with none left, both are 0 */
        PYKV_ASSERT(c->buffered_bytes == 0);
        PYKV_ASSERT(c->queued_bytes == 0);
    }
}

/* --- connection errors ----------------------------------------------------------- */

static void cancel_all(pykv_h2_conn *c) {
    for (size_t i = 0; i <= c->bucket_mask; i++) {
        while (c->buckets[i]) remove_stream(c, c->buckets[i], 1);
    }
}

/* A connection error (5.4.1): GOAWAY with the code, then only the output is
 * left to write. Returns PYKV_ECLOSED for the caller to pass up. */
static int conn_error(pykv_h2_conn *c, uint32_t code, const char *fmt, ...) {
    if (c->state == CONN_CLOSED) return PYKV_ECLOSED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof(c->error), fmt, ap);
    va_end(ap);
    send_goaway(c, code, c->error);
    c->state = CONN_CLOSED;
    cancel_all(c);
    emit(c, PYKV_H2_EV_CONN_ERROR, 0, 0, c->error, strlen(c->error), NULL, 0,
         PYKV_H2_NO_TIMEOUT);
    return PYKV_ECLOSED;
}

/* A stream error (5.4.2): RST_STREAM and forget the stream. */
static void stream_error(pykv_h2_conn *c, h2_stream *s, uint32_t code) {
    send_rst(c, s->id, code);
    remove_stream(c, s, 1);
}

/* --- sending responses -------------------------------------------------------- */

static void write_headers(pykv_h2_conn *c, uint32_t stream, const uint8_t *block, size_t len,
                          int end_stream) {
    /* Our blocks stay under the smallest MAX_FRAME_SIZE (16384): no CONTINUATION. */
    PYKV_ASSERT(len <= 16384);
    c->reset_ping_strikes = 1;
    put_frame_header(&c->out, (uint32_t)len, FRAME_HEADERS,
                     (uint8_t)(FLAG_END_HEADERS | (end_stream ? FLAG_END_STREAM : 0)), stream);
    h2_buf_append(&c->out, block, len);
}

/* The stream's send side is done (trailers written). The client may still
 * be sending: ask it to stop, without error (8.1). */
static void finish_stream(pykv_h2_conn *c, h2_stream *s, int cancel) {
    if (!(s->flags & S_RECV_CLOSED)) send_rst(c, s->id, PYKV_H2_NO_ERROR);
    remove_stream(c, s, cancel);
}

/* Answer a call with a status and no (more) messages: Trailers-Only when
 * nothing was sent yet. Queued DATA is dropped: used for errors. */
static void answer_status(pykv_h2_conn *c, h2_stream *s, const char *http_status,
                          uint16_t status, const char *detail, int cancel) {
    h2_buf *b = &c->scratch;
    h2_buf_reset(b);
    if (!(s->flags & S_HEADERS_SENT)) {
        if (http_status == NULL) {
            h2_buf_append(b, RESPONSE_HEADERS, sizeof(RESPONSE_HEADERS));
        } else {
            hpack_put_literal(b, 8, NULL, http_status, strlen(http_status));
            h2_buf_append(b, RESPONSE_HEADERS + 1, sizeof(RESPONSE_HEADERS) - 1);
        }
    }
    encode_status(b, status, (const uint8_t *)detail, detail ? strlen(detail) : 0);
    c->queued_bytes -= h2_buf_pending(&s->out);
    h2_buf_reset(&s->out);
    write_headers(c, s->id, b->data, b->len, 1);
    finish_stream(c, s, cancel);
}

static void write_data(pykv_h2_conn *c, h2_stream *s, const uint8_t *data, size_t n,
                       int end_stream) {
    c->reset_ping_strikes = 1;
    put_frame_header(&c->out, (uint32_t)n, FRAME_DATA, end_stream ? FLAG_END_STREAM : 0, s->id);
    h2_buf_append(&c->out, data, n);
    s->send_window -= (int64_t)n;
    c->send_window -= (int64_t)n;
}

static void notify_drained(pykv_h2_conn *c, h2_stream *s) {
    if ((s->flags & S_DRAIN_WANTED) && h2_buf_pending(&s->out) == 0) {
        s->flags &= ~(uint32_t)S_DRAIN_WANTED;
        emit(c, PYKV_H2_EV_DRAINED, s->id, s->method, NULL, 0, NULL, 0, PYKV_H2_NO_TIMEOUT);
    }
}

/* The queue is empty: trailers that waited go now. Returns 1 when the
 * stream is gone. */
static int after_queue_empty(pykv_h2_conn *c, h2_stream *s) {
    h2_buf_trim(&s->out, BUFFER_KEEP_BYTES);
    notify_drained(c, s);
    if (s->flags & S_END_QUEUED) {
        write_headers(c, s->id, s->trailers.data, s->trailers.len, 1);
        finish_stream(c, s, 0);
        return 1;
    }
    return 0;
}

void h2_conn_flush(pykv_h2_conn *c) {
    if (c->state == CONN_CLOSED) return;
    while (c->sendq_head && c->send_window > 0 && h2_buf_pending(&c->out) < OUT_HIGH_BYTES) {
        h2_stream *s = sendq_pop(c);
        size_t pending = h2_buf_pending(&s->out);
        int64_t n = (int64_t)pending;
        if (n > s->send_window) n = s->send_window;
        if (n > c->send_window) n = c->send_window;
        if (n > (int64_t)c->peer_max_frame) n = c->peer_max_frame;
        if (n > 0) {
            write_data(c, s, h2_buf_head(&s->out), (size_t)n, 0);
            h2_buf_consume(&s->out, (size_t)n);
            c->queued_bytes -= (uint64_t)n;
        }
        if (h2_buf_pending(&s->out) == 0) {
            after_queue_empty(c, s);
        } else if (s->send_window > 0) {
            sendq_push(c, s);
        }
        /* else: blocked on its own window until a WINDOW_UPDATE */
    }
}

/* One gRPC message: sent at once when nothing waits before it and the
 * windows allow, else queued. */
static void send_message(pykv_h2_conn *c, h2_stream *s, const uint8_t *msg, uint32_t len) {
    uint8_t prefix[GRPC_PREFIX_BYTES] = {0};
    put_u32(prefix + 1, len);
    int64_t total = GRPC_PREFIX_BYTES + (int64_t)len;
    if (h2_buf_pending(&s->out) == 0 && total <= s->send_window && total <= c->send_window &&
        total <= (int64_t)c->peer_max_frame && h2_buf_pending(&c->out) < OUT_HIGH_BYTES) {
        c->reset_ping_strikes = 1;
        put_frame_header(&c->out, (uint32_t)total, FRAME_DATA, 0, s->id);
        h2_buf_append(&c->out, prefix, sizeof(prefix));
        h2_buf_append(&c->out, msg, len);
        s->send_window -= total;
        c->send_window -= total;
        return;
    }
    h2_buf_append(&s->out, prefix, sizeof(prefix));
    h2_buf_append(&s->out, msg, len);
    c->queued_bytes += (uint64_t)total;
    if (s->send_window > 0) sendq_push(c, s);
}

int h2_conn_respond_one(pykv_h2_conn *c, const pykv_h2_response *r, const uint8_t *message,
                        const uint8_t *detail) {
    if (c->state == CONN_CLOSED) return PYKV_OK;
    h2_stream *s = find_stream(c, r->stream);
    if (s == NULL || !(s->flags & S_REPORTED) || (s->flags & S_END_QUEUED)) {
        return PYKV_OK;  /* cancelled or finished: Python gets (or got) a CANCEL */
    }
    if (r->flags & PYKV_H2_SEND_MESSAGE) {
        if (!(s->flags & S_HEADERS_SENT)) {
            write_headers(c, s->id, RESPONSE_HEADERS, sizeof(RESPONSE_HEADERS), 0);
            s->flags |= S_HEADERS_SENT;
        }
        send_message(c, s, message, r->message_bytes);
    }
    if (r->flags & PYKV_H2_NOTIFY_DRAIN) s->flags |= S_DRAIN_WANTED;
    if (r->flags & PYKV_H2_SEND_END) {
        h2_buf *b = &s->trailers;
        h2_buf_reset(b);
        if (!(s->flags & S_HEADERS_SENT)) {
            /* Trailers-Only: one HEADERS frame (PROTOCOL-HTTP2.md). */
            h2_buf_append(b, RESPONSE_HEADERS, sizeof(RESPONSE_HEADERS));
            s->flags |= S_HEADERS_SENT;
        }
        encode_status(b, r->status, detail, r->detail_bytes);
        s->flags |= S_END_QUEUED;
        s->flags &= ~(uint32_t)S_DRAIN_WANTED;
        if (h2_buf_pending(&s->out) == 0) after_queue_empty(c, s);
        return PYKV_OK;
    }
    notify_drained(c, s);
    return PYKV_OK;
}

int pykv_h2_conn_respond(pykv_h2_conn *c, const pykv_h2_response *responses, size_t count,
                         const uint8_t *data, size_t data_bytes) {
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        const pykv_h2_response *r = &responses[i];
        size_t need = (size_t)r->message_bytes + r->detail_bytes;
        if (need > data_bytes - at) return PYKV_EINVAL;
        h2_conn_respond_one(c, r, data + at, data + at + r->message_bytes);
        at += need;
    }
    h2_conn_flush(c);
    return at == data_bytes ? PYKV_OK : PYKV_EINVAL;
}

/* --- receiving: gRPC messages ---------------------------------------------------- */

static void refuse_message(pykv_h2_conn *c, h2_stream *s, uint16_t status, const char *detail) {
    answer_status(c, s, NULL, status, detail, 1);
}

/* A complete request message. Returns 1 when the stream is gone. */
static int message_complete(pykv_h2_conn *c, h2_stream *s, const uint8_t *body, uint32_t len) {
    if (s->kind == PYKV_H2_STREAM_STREAM) {
        emit(c, PYKV_H2_EV_MESSAGE, s->id, s->method, body, len, NULL, 0, PYKV_H2_NO_TIMEOUT);
        return 0;
    }
    if (s->flags & S_MESSAGE_DONE) {
        refuse_message(c, s, GRPC_INTERNAL,
                       "grpc: more than one request message for a unary request");
        return 1;
    }
    s->flags |= S_MESSAGE_DONE;
    return 0;
}

/* Request bytes of a DATA frame: cut into gRPC messages (5-byte prefix:
 * compressed flag, big-endian length). Returns 1 when the stream is gone. */
static int take_request_bytes(pykv_h2_conn *c, h2_stream *s, const uint8_t *p, size_t n) {
    const uint32_t max = c->proto->config.max_receive_bytes;
    while (n > 0) {
        if (s->flags & S_MESSAGE_DONE) {
            return message_complete(c, s, NULL, 0);  /* a second message */
        }
        size_t have = s->msg.len;
        if (have < GRPC_PREFIX_BYTES) {
            /* A whole message in this frame: straight to the sink, no copy. */
            if (have == 0 && n >= GRPC_PREFIX_BYTES && s->kind == PYKV_H2_STREAM_STREAM &&
                p[0] == 0) {
                uint32_t len = get_u32(p + 1);
                if (len <= max && (size_t)len + GRPC_PREFIX_BYTES <= n) {
                    message_complete(c, s, p + GRPC_PREFIX_BYTES, len);
                    p += GRPC_PREFIX_BYTES + len;
                    n -= GRPC_PREFIX_BYTES + len;
                    continue;
                }
            }
            size_t take = GRPC_PREFIX_BYTES - have;
            if (take > n) take = n;
            msg_append(c, s, p, take);
            p += take;
            n -= take;
            if (s->msg.len < GRPC_PREFIX_BYTES) return 0;
            const uint8_t *prefix = s->msg.data;
            uint32_t len = get_u32(prefix + 1);
            if (prefix[0] != 0) {
                refuse_message(c, s, GRPC_UNIMPLEMENTED,
                               "grpc: compressed messages are not supported by this server");
                return 1;
            }
            if (len > max) {
                char detail[96];
                snprintf(detail, sizeof(detail), "grpc: received message larger than max (%u vs. %u)",
                         len, max);
                refuse_message(c, s, GRPC_RESOURCE_EXHAUSTED, detail);
                return 1;
            }
            /* No memory is set aside for the length announced: it grows
             * with what arrives. */
            s->message_bytes = len;
        }
        size_t want = GRPC_PREFIX_BYTES + (size_t)s->message_bytes - s->msg.len;
        size_t take = want < n ? want : n;
        msg_append(c, s, p, take);
        p += take;
        n -= take;
        if (c->buffered_bytes > c->proto->config.max_buffered_request_bytes) {
            refuse_message(c, s, GRPC_RESOURCE_EXHAUSTED,
                           "grpc: the connection's unfinished requests are over the server's "
                           "limit");
            return 1;
        }
        if (s->msg.len == GRPC_PREFIX_BYTES + (size_t)s->message_bytes) {
            if (message_complete(c, s, s->msg.data + GRPC_PREFIX_BYTES, s->message_bytes)) {
                return 1;
            }
            if (s->kind == PYKV_H2_STREAM_STREAM) msg_clear(c, s);
        }
    }
    return 0;
}

/* The client closed its side. Returns 1 when the stream is gone. */
static int request_ended(pykv_h2_conn *c, h2_stream *s) {
    s->flags |= S_RECV_CLOSED;
    if (s->flags & S_DISCARD) return 0;
    int partial = s->msg.len > 0 && !(s->flags & S_MESSAGE_DONE);
    if (partial) {
        refuse_message(c, s, GRPC_INTERNAL, "grpc: the request ended inside a message");
        return 1;
    }
    if (s->kind == PYKV_H2_STREAM_STREAM) {
        emit(c, PYKV_H2_EV_HALF_CLOSE, s->id, s->method, NULL, 0, NULL, 0, PYKV_H2_NO_TIMEOUT);
        return 0;
    }
    if (!(s->flags & S_MESSAGE_DONE)) {
        refuse_message(c, s, GRPC_INTERNAL, "grpc: the request has no message");
        return 1;
    }
    s->flags |= S_REPORTED;
    emit(c, PYKV_H2_EV_CALL, s->id, s->method, s->msg.data + GRPC_PREFIX_BYTES,
         s->message_bytes, s->meta.data, s->meta.len, s->timeout_us);
    msg_clear(c, s);
    meta_clear(c, s);
    return 0;
}

/* --- receiving: headers ---------------------------------------------------------- */

static int field_is(const h2_field_list *l, const h2_field *f, const char *name, size_t len) {
    return f->name_len == len && memcmp(l->bytes.data + f->name_off, name, len) == 0;
}

/* grpc-timeout: at most 8 digits and a unit (PROTOCOL-HTTP2.md). */
static int parse_timeout(const uint8_t *v, size_t len, int64_t *out_us) {
    if (len < 2 || len > 9) return -1;
    int64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        n = n * 10 + (v[i] - '0');
    }
    switch (v[len - 1]) {
    case 'H': *out_us = n * 3600 * 1000000LL; break;
    case 'M': *out_us = n * 60 * 1000000LL; break;
    case 'S': *out_us = n * 1000000LL; break;
    case 'm': *out_us = n * 1000LL; break;
    case 'u': *out_us = n; break;
    case 'n': *out_us = (n + 999) / 1000; break;
    default: return -1;
    }
    return 0;
}

/* Headers we read ourselves or that gRPC reserves; the rest is metadata. */
static int reserved_header(const uint8_t *name, size_t len) {
    static const char *const NAMES[] = {
        "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
        "content-length", NULL,
    };
    for (const char *const *n = NAMES; *n; n++) {
        if (strlen(*n) == len && memcmp(*n, name, len) == 0) return 1;
    }
    return 0;
}

static int connection_specific(const uint8_t *name, size_t len) {
    static const char *const NAMES[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", NULL,
    };
    for (const char *const *n = NAMES; *n; n++) {
        if (strlen(*n) == len && memcmp(*n, name, len) == 0) return 1;
    }
    return 0;
}

/* grpc-go's words for an unknown service or method. */
static void unknown_method_text(const pykv_h2_conn *c, const uint8_t *path, size_t len,
                                char *out, size_t out_bytes) {
    const uint8_t *slash = len > 1 ? memchr(path + 1, '/', len - 1) : NULL;
    if (len == 0 || path[0] != '/' || slash == NULL) {
        snprintf(out, out_bytes, "malformed method name: \"%.*s\"", (int)(len > 200 ? 200 : len),
                 (const char *)path);
        return;
    }
    size_t service_len = (size_t)(slash - path) + 1;  /* "/service/" */
    int known = 0;
    for (size_t i = 0; i < c->proto->method_count && !known; i++) {
        const h2_method *m = &c->proto->methods[i];
        known = m->path_len > service_len && memcmp(m->path, path, service_len) == 0;
    }
    int slen = (int)(service_len - 2 > 200 ? 200 : service_len - 2);
    int mlen = (int)(len - service_len > 200 ? 200 : len - service_len);
    if (known) {
        snprintf(out, out_bytes, "unknown method %.*s for service %.*s", mlen,
                 (const char *)slash + 1, slen, (const char *)path + 1);
    } else {
        snprintf(out, out_bytes, "unknown service %.*s", slen, (const char *)path + 1);
    }
}

/* A new stream's request headers (8.3.1 pseudo-headers, 8.2 field rules). */
static void open_stream(pykv_h2_conn *c, h2_stream *s, int end_stream) {
    const h2_field_list *l = &c->fields;
    const uint8_t *path = NULL, *method = NULL, *content_type = NULL, *timeout = NULL;
    size_t path_len = 0, method_len = 0, content_type_len = 0, timeout_len = 0;
    int scheme = 0, regular_seen = 0, malformed = 0;
    h2_buf_reset(&s->meta);
    for (size_t i = 0; i < l->count && !malformed; i++) {
        const h2_field *f = &l->fields[i];
        const uint8_t *name = l->bytes.data + f->name_off;
        const uint8_t *value = l->bytes.data + f->value_off;
        if (f->name_len == 0) {
            malformed = 1;
            break;
        }
        for (uint32_t k = 0; k < f->name_len; k++) {
            if (isupper(name[k])) malformed = 1;
        }
        if (memchr(value, '\0', f->value_len) || memchr(value, '\r', f->value_len) ||
            memchr(value, '\n', f->value_len)) {
            malformed = 1;
        }
        if (name[0] == ':') {
            if (regular_seen) malformed = 1;
            if (field_is(l, f, ":path", 5)) {
                malformed |= path != NULL;
                path = value;
                path_len = f->value_len;
            } else if (field_is(l, f, ":method", 7)) {
                malformed |= method != NULL;
                method = value;
                method_len = f->value_len;
            } else if (field_is(l, f, ":scheme", 7)) {
                malformed |= scheme;
                scheme = 1;
            } else if (!field_is(l, f, ":authority", 10)) {
                malformed = 1;  /* :status or an unknown pseudo-header in a request */
            }
            continue;
        }
        regular_seen = 1;
        if (connection_specific(name, f->name_len)) {
            malformed = 1;
        } else if (field_is(l, f, "te", 2)) {
            malformed |= !(f->value_len == 8 && memcmp(value, "trailers", 8) == 0);
        } else if (field_is(l, f, "content-type", 12)) {
            content_type = value;
            content_type_len = f->value_len;
        } else if (field_is(l, f, "grpc-timeout", 12)) {
            timeout = value;
            timeout_len = f->value_len;
        } else if (!reserved_header(name, f->name_len)) {
            h2_buf_append(&s->meta, name, f->name_len);
            h2_buf_append(&s->meta, "", 1);
            h2_buf_append(&s->meta, value, f->value_len);
            h2_buf_append(&s->meta, "", 1);
        }
    }
    c->buffered_bytes += s->meta.len;  /* held until the CALL event, like request bytes */
    if (malformed || path == NULL || method == NULL || !scheme) {
        stream_error(c, s, PYKV_H2_PROTOCOL_ERROR);  /* 8.1.1 malformed */
        return;
    }
    /* From here on the stream answers with gRPC statuses; request data is
     * ignored if the call cannot go on. */
    s->flags |= end_stream ? S_RECV_CLOSED : 0;
    if (l->too_large) {
        s->flags |= S_DISCARD;
        answer_status(c, s, "431", GRPC_RESOURCE_EXHAUSTED,
                      "grpc: the request's header list is larger than the server's limit", 0);
        return;
    }
    if (c->buffered_bytes > c->proto->config.max_buffered_request_bytes) {
        s->flags |= S_DISCARD;
        answer_status(c, s, NULL, GRPC_RESOURCE_EXHAUSTED,
                      "grpc: the connection's unfinished requests are over the server's limit", 0);
        return;
    }
    if (!(method_len == 4 && memcmp(method, "POST", 4) == 0)) {
        s->flags |= S_DISCARD;
        answer_status(c, s, "405", GRPC_INTERNAL, "grpc: only POST is supported", 0);
        return;
    }
    /* "application/grpc" alone or followed by "+proto", ";..." */
    if (content_type == NULL || content_type_len < 16 ||
        memcmp(content_type, "application/grpc", 16) != 0 ||
        (content_type_len > 16 && content_type[16] != '+' && content_type[16] != ';')) {
        s->flags |= S_DISCARD;
        answer_status(c, s, "415", GRPC_INTERNAL,
                      content_type ? "grpc: unsupported content-type"
                                   : "grpc: missing content-type", 0);
        return;
    }
    int index = h2_proto_find(c->proto, path, path_len);
    if (index < 0) {
        char text[512];
        unknown_method_text(c, path, path_len, text, sizeof(text));
        s->flags |= S_DISCARD;
        answer_status(c, s, NULL, GRPC_UNIMPLEMENTED, text, 0);
        return;
    }
    s->method = (uint16_t)index;
    s->kind = c->proto->methods[index].kind;
    if (timeout) {
        if (parse_timeout(timeout, timeout_len, &s->timeout_us) != 0) {
            char text[64];
            snprintf(text, sizeof(text), "malformed grpc-timeout: %.*s",
                     (int)(timeout_len > 16 ? 16 : timeout_len), (const char *)timeout);
            s->flags |= S_DISCARD;
            answer_status(c, s, NULL, GRPC_INTERNAL, text, 0);
            return;
        }
        s->deadline_us = c->now_us + s->timeout_us;
        if (s->deadline_us == 0) s->deadline_us = 1;
        if (c->deadline_fn) c->deadline_fn(c->deadline_owner, c, s->id, s->deadline_us);
    }
    if (s->kind == PYKV_H2_STREAM_STREAM) {
        s->flags |= S_REPORTED;
        emit(c, PYKV_H2_EV_CALL, s->id, s->method, NULL, 0, s->meta.data, s->meta.len,
             s->timeout_us);
        meta_clear(c, s);
    }
    if (end_stream) {
        s->flags &= ~(uint32_t)S_RECV_CLOSED;
        request_ended(c, s);
    }
}

/* A complete header block for stream id. */
static int on_header_block(pykv_h2_conn *c, uint32_t id, const uint8_t *block, size_t len,
                           int end_stream) {
    c->fields.max_list_bytes = c->proto->config.max_header_list_bytes;
    int rc = h2_hpack_decode(c->hpack, block, len, &c->fields);
    if (rc == PYKV_ECORRUPT) {
        return conn_error(c, PYKV_H2_COMPRESSION_ERROR, "bad HPACK block on stream %u", id);
    }
    if (rc) return conn_error(c, PYKV_H2_INTERNAL_ERROR, "out of memory decoding headers");
    h2_stream *s = find_stream(c, id);
    if (s) {
        /* Trailers from the client: they must end the stream (8.1). */
        if (!end_stream || (s->flags & S_RECV_CLOSED)) {
            stream_error(c, s, PYKV_H2_PROTOCOL_ERROR);
            return PYKV_OK;
        }
        if (s->flags & S_DISCARD) {
            s->flags |= S_RECV_CLOSED;
            return PYKV_OK;
        }
        request_ended(c, s);
        return PYKV_OK;
    }
    if (id <= c->last_stream_id) {
        /* Request headers must open a stream above every earlier one
         * (5.1.1); trailers (no pseudo-headers) may come for a stream we
         * reset while they were on the way, and are ignored. */
        const h2_field_list *l = &c->fields;
        for (size_t i = 0; i < l->count; i++) {
            if (l->fields[i].name_len > 0 && l->bytes.data[l->fields[i].name_off] == ':') {
                return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "stream %u opened after stream %u",
                                  id, c->last_stream_id);
            }
        }
        return PYKV_OK;
    }
    c->last_stream_id = id;
    if (c->goaway_sent || c->streams_open >= c->proto->config.max_concurrent_streams) {
        send_rst(c, id, PYKV_H2_REFUSED_STREAM);  /* 8.7: safe for the client to retry */
        return PYKV_OK;
    }
    s = new_stream(c, id);
    if (s == NULL) {
        send_rst(c, id, PYKV_H2_REFUSED_STREAM);
        return PYKV_OK;
    }
    open_stream(c, s, end_stream);
    return PYKV_OK;
}

/* --- receiving: frames ------------------------------------------------------------ */

/* Strip padding (6.1, 6.2); PROTOCOL_ERROR when it is longer than the payload. */
static int strip_padding(uint8_t flags, const uint8_t **p, size_t *len) {
    if (!(flags & FLAG_PADDED)) return 0;
    if (*len < 1) return -1;
    size_t pad = (*p)[0];
    if (pad >= *len) return -1;
    *p += 1;
    *len -= 1 + pad;
    return 0;
}

static void top_up_connection_window(pykv_h2_conn *c) {
    int64_t full = c->proto->config.connection_window_bytes;
    if (c->recv_window < full / 2) {
        send_window_update(c, 0, (uint32_t)(full - c->recv_window));
        c->recv_window = full;
    }
}

static int on_data(pykv_h2_conn *c, uint8_t flags, uint32_t id, const uint8_t *p, size_t len) {
    if (id == 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "DATA on stream 0");
    size_t frame_len = len;
    if ((int64_t)frame_len > c->recv_window) {
        return conn_error(c, PYKV_H2_FLOW_CONTROL_ERROR,
                          "DATA of %zu bytes past the connection window", frame_len);
    }
    c->recv_window -= (int64_t)frame_len;
    if (strip_padding(flags, &p, &len)) {
        return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "DATA padding longer than the frame");
    }
    h2_stream *s = find_stream(c, id);
    if (s == NULL) {
        if (id > c->last_stream_id) {
            return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "DATA on idle stream %u", id);
        }
        /* closed: the bytes still count against the connection (6.9) */
    } else if (s->flags & S_RECV_CLOSED) {
        stream_error(c, s, PYKV_H2_STREAM_CLOSED);
    } else if ((int64_t)frame_len > s->recv_window) {
        stream_error(c, s, PYKV_H2_FLOW_CONTROL_ERROR);
    } else {
        s->recv_window -= (int64_t)frame_len;
        int gone = 0;
        if (!(s->flags & S_DISCARD)) gone = take_request_bytes(c, s, p, len);
        if (!gone && (flags & FLAG_END_STREAM)) {
            if (s->flags & S_DISCARD) {
                s->flags |= S_RECV_CLOSED;
            } else {
                gone = request_ended(c, s);
            }
        } else if (!gone) {
            int64_t full = c->proto->config.stream_window_bytes;
            if (s->recv_window < full / 2) {
                send_window_update(c, id, (uint32_t)(full - s->recv_window));
                s->recv_window = full;
            }
        }
    }
    top_up_connection_window(c);
    return PYKV_OK;
}

static int on_headers(pykv_h2_conn *c, uint8_t flags, uint32_t id, const uint8_t *p,
                      size_t len) {
    if (id == 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "HEADERS on stream 0");
    if (!(id & 1) && !find_stream(c, id)) {
        return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "HEADERS on even stream %u", id);
    }
    if (strip_padding(flags, &p, &len)) {
        return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "HEADERS padding longer than the frame");
    }
    if (flags & FLAG_PRIORITY) {
        if (len < 5) return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "HEADERS priority truncated");
        if ((get_u32(p) & 0x7fffffffu) == id) {
            return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "stream %u depends on itself", id);
        }
        p += 5;
        len -= 5;
    }
    if (flags & FLAG_END_HEADERS) return on_header_block(c, id, p, len, flags & FLAG_END_STREAM);
    h2_buf_reset(&c->hblock);
    h2_buf_append(&c->hblock, p, len);
    c->hblock_stream = id;
    c->hblock_end_stream = flags & FLAG_END_STREAM;
    c->in_headers = 1;
    return PYKV_OK;
}

static int on_continuation(pykv_h2_conn *c, uint8_t flags, uint32_t id, const uint8_t *p,
                           size_t len) {
    if (!c->in_headers || id != c->hblock_stream) {
        return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "CONTINUATION without HEADERS");
    }
    /* Compressed bytes are bounded too: a CONTINUATION flood is refused. */
    if (c->hblock.len + len > (size_t)c->proto->config.max_header_list_bytes * 2 + 16384) {
        return conn_error(c, PYKV_H2_ENHANCE_YOUR_CALM, "header block too large");
    }
    h2_buf_append(&c->hblock, p, len);
    if (!(flags & FLAG_END_HEADERS)) return PYKV_OK;
    c->in_headers = 0;
    int rc = on_header_block(c, id, c->hblock.data, c->hblock.len, c->hblock_end_stream);
    h2_buf_reset(&c->hblock);
    h2_buf_trim(&c->hblock, BUFFER_KEEP_BYTES);
    return rc;
}

static int on_rst_stream(pykv_h2_conn *c, uint32_t id, const uint8_t *p, size_t len) {
    if (len != 4) return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "RST_STREAM of %zu bytes", len);
    if (id == 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (id > c->last_stream_id) {
        return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "RST_STREAM on idle stream %u", id);
    }
    h2_stream *s = find_stream(c, id);
    if (s) remove_stream(c, s, 1);
    return PYKV_OK;
}

static int change_initial_window(pykv_h2_conn *c, uint32_t value) {
    int64_t delta = (int64_t)value - c->peer_initial_window;
    c->peer_initial_window = value;
    for (size_t i = 0; i <= c->bucket_mask; i++) {
        for (h2_stream *s = c->buckets[i]; s; s = s->bucket_next) {
            s->send_window += delta;  /* may go negative (6.9.2) */
            if (s->send_window > WINDOW_MAX) {
                return conn_error(c, PYKV_H2_FLOW_CONTROL_ERROR, "stream window overflow");
            }
            if (s->send_window > 0 && h2_buf_pending(&s->out) > 0) sendq_push(c, s);
        }
    }
    return PYKV_OK;
}

static int on_settings(pykv_h2_conn *c, uint8_t flags, uint32_t id, const uint8_t *p,
                       size_t len) {
    if (id != 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "SETTINGS on stream %u", id);
    if (flags & FLAG_ACK) {
        if (len != 0) return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "SETTINGS ack with a payload");
        return PYKV_OK;
    }
    if (len % 6) return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "SETTINGS of %zu bytes", len);
    for (size_t i = 0; i < len; i += 6) {
        uint16_t key = (uint16_t)((p[i] << 8) | p[i + 1]);
        uint32_t value = get_u32(p + i + 2);
        switch (key) {
        case SETTINGS_ENABLE_PUSH:
            if (value > 1) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "ENABLE_PUSH %u", value);
            break;
        case SETTINGS_INITIAL_WINDOW_SIZE:
            if (value > WINDOW_MAX) {
                return conn_error(c, PYKV_H2_FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE %u", value);
            }
            if (change_initial_window(c, value)) return PYKV_ECLOSED;
            break;
        case SETTINGS_MAX_FRAME_SIZE:
            if (value < 16384 || value > 16777215) {
                return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "MAX_FRAME_SIZE %u", value);
            }
            c->peer_max_frame = value;
            break;
        default:
            /* HEADER_TABLE_SIZE: our encoder never uses the dynamic table,
             * so any size holds. MAX_CONCURRENT_STREAMS limits streams we
             * would open: none. Unknown settings are ignored (6.5.2). */
            break;
        }
    }
    put_frame_header(&c->out, 0, FRAME_SETTINGS, FLAG_ACK, 0);
    return PYKV_OK;
}

/* A client's ping, judged as grpc-go's server does (http2_server.go
 * handlePing, keepalive.EnforcementPolicy with PermitWithoutStream false, as
 * etcd runs it): a ping sooner than min_time after the previous one (or,
 * with no call open, sooner than two hours) is a strike, unless we sent
 * HEADERS or DATA in between (clients ping to measure bandwidth after data
 * arrives); past MAX_PING_STRIKES the connection ends with GOAWAY
 * ENHANCE_YOUR_CALM "too_many_pings". */
#define MAX_PING_STRIKES 2
#define PING_WITHOUT_STREAM_US (2LL * 3600 * 1000000)

static int on_ping(pykv_h2_conn *c, uint8_t flags, uint32_t id, const uint8_t *p, size_t len) {
    if (len != 8) return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "PING of %zu bytes", len);
    if (id != 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "PING on stream %u", id);
    if (flags & FLAG_ACK) return PYKV_OK;  /* any read already counts as liveness */
    put_frame_header(&c->out, 8, FRAME_PING, FLAG_ACK, 0);
    h2_buf_append(&c->out, p, 8);
    const int64_t min_time = (int64_t)c->proto->config.keepalive_min_time_us;
    const int64_t now = c->now_us;
    const int64_t last = c->last_ping_at_us;
    const int seen = c->ping_seen;
    c->ping_seen = 1;
    c->last_ping_at_us = now;
    if (c->reset_ping_strikes) {
        c->reset_ping_strikes = 0;
        c->ping_strikes = 0;
        return PYKV_OK;
    }
    if (!seen || min_time == 0) return PYKV_OK;
    int64_t allowed = c->streams_open > 0 ? min_time : PING_WITHOUT_STREAM_US;
    if (now - last < allowed) c->ping_strikes++;
    if (c->ping_strikes > MAX_PING_STRIKES) {
        return conn_error(c, PYKV_H2_ENHANCE_YOUR_CALM, "too_many_pings");
    }
    return PYKV_OK;
}

static int on_window_update(pykv_h2_conn *c, uint32_t id, const uint8_t *p, size_t len) {
    if (len != 4) return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "WINDOW_UPDATE of %zu bytes", len);
    uint32_t increment = get_u32(p) & 0x7fffffffu;
    if (id == 0) {
        if (increment == 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
        if (c->send_window + increment > WINDOW_MAX) {
            return conn_error(c, PYKV_H2_FLOW_CONTROL_ERROR, "connection window overflow");
        }
        c->send_window += increment;
        return PYKV_OK;
    }
    h2_stream *s = find_stream(c, id);
    if (s == NULL) {
        if (id > c->last_stream_id) {
            return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "WINDOW_UPDATE on idle stream %u", id);
        }
        return PYKV_OK;
    }
    if (increment == 0) {
        stream_error(c, s, PYKV_H2_PROTOCOL_ERROR);
    } else if (s->send_window + increment > WINDOW_MAX) {
        stream_error(c, s, PYKV_H2_FLOW_CONTROL_ERROR);
    } else {
        s->send_window += increment;
        if (s->send_window > 0 && h2_buf_pending(&s->out) > 0) sendq_push(c, s);
    }
    return PYKV_OK;
}

static int on_frame(pykv_h2_conn *c, uint8_t type, uint8_t flags, uint32_t id,
                    const uint8_t *p, size_t len) {
    if (c->in_headers && type != FRAME_CONTINUATION) {
        return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "frame type %u inside a header block", type);
    }
    if (!c->settings_seen) {
        if (type != FRAME_SETTINGS || (flags & FLAG_ACK)) {
            return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "the preface must start with SETTINGS");
        }
        c->settings_seen = 1;
    }
    switch (type) {
    case FRAME_DATA: return on_data(c, flags, id, p, len);
    case FRAME_HEADERS: return on_headers(c, flags, id, p, len);
    case FRAME_PRIORITY:
        if (id == 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (len != 5) {
            h2_stream *s = find_stream(c, id);
            if (s) {
                stream_error(c, s, PYKV_H2_FRAME_SIZE_ERROR);
            } else {
                send_rst(c, id, PYKV_H2_FRAME_SIZE_ERROR);
            }
        }
        return PYKV_OK;  /* priorities are advice; every stream is served alike */
    case FRAME_RST_STREAM: return on_rst_stream(c, id, p, len);
    case FRAME_SETTINGS: return on_settings(c, flags, id, p, len);
    case FRAME_PUSH_PROMISE: return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "PUSH_PROMISE from a client");
    case FRAME_PING: return on_ping(c, flags, id, p, len);
    case FRAME_GOAWAY:
        if (id != 0) return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "GOAWAY on stream %u", id);
        if (len < 8) return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "GOAWAY of %zu bytes", len);
        return PYKV_OK;  /* the client opens no more streams; it closes when done */
    case FRAME_WINDOW_UPDATE: return on_window_update(c, id, p, len);
    case FRAME_CONTINUATION: return on_continuation(c, flags, id, p, len);
    default: return PYKV_OK;  /* unknown frame types are ignored (5.5) */
    }
}

/* Whether bytes that are not HTTP/2's preface start an HTTP/1 request line
 * (RFC 9112 3: a method token, then a space; methods are upper-case
 * letters in practice): 1 yes, 0 not yet known, -1 no. */
#define HTTP1_METHOD_MAX 16

static int http1_request_line(const uint8_t *p, size_t len) {
    size_t i = 0;
    while (i < len && i <= HTTP1_METHOD_MAX && p[i] >= 'A' && p[i] <= 'Z') i++;
    if (i == len) return i <= HTTP1_METHOD_MAX ? 0 : -1;
    return (i >= 1 && i <= HTTP1_METHOD_MAX && p[i] == ' ') ? 1 : -1;
}

static int process_input(pykv_h2_conn *c) {
    h2_buf *in = &c->in;
    if (c->state == CONN_PREFACE) {
        /* Nothing is consumed until the protocol is known: an HTTP/1
         * client's bytes are handed over whole. */
        size_t avail = h2_buf_pending(in);
        size_t n = avail < sizeof(PREFACE) ? avail : sizeof(PREFACE);
        if (memcmp(h2_buf_head(in), PREFACE, n) == 0) {
            if (n < sizeof(PREFACE)) return PYKV_OK;
            h2_buf_consume(in, sizeof(PREFACE));
            c->state = CONN_OPEN;
        } else {
            int http1 = http1_request_line(h2_buf_head(in), avail);
            if (http1 == 0) return PYKV_OK;  /* a method token so far: wait */
            if (http1 > 0) {
                c->http1 = 1;
                c->state = CONN_CLOSED;
                return PYKV_ECLOSED;
            }
            c->state = CONN_OPEN;  /* so that conn_error acts */
            h2_buf_reset(in);
            return conn_error(c, PYKV_H2_PROTOCOL_ERROR, "not an HTTP/2 client preface");
        }
    }
    while (c->state == CONN_OPEN) {
        size_t avail = h2_buf_pending(in);
        if (avail < FRAME_HEADER_BYTES) break;
        const uint8_t *h = h2_buf_head(in);
        uint32_t len = ((uint32_t)h[0] << 16) | ((uint32_t)h[1] << 8) | h[2];
        if (len > RECV_MAX_FRAME_BYTES) {
            h2_buf_reset(in);
            return conn_error(c, PYKV_H2_FRAME_SIZE_ERROR, "frame of %u bytes", len);
        }
        if (avail < FRAME_HEADER_BYTES + (size_t)len) break;
        uint8_t type = h[3], flags = h[4];
        uint32_t id = get_u32(h + 5) & 0x7fffffffu;
        int rc = on_frame(c, type, flags, id, h + FRAME_HEADER_BYTES, len);
        if (rc) {
            h2_buf_reset(in);
            return rc;
        }
        h2_buf_consume(in, FRAME_HEADER_BYTES + (size_t)len);
    }
    if (c->state == CONN_CLOSED) return PYKV_ECLOSED;
    h2_conn_flush(c);
    return PYKV_OK;
}

/* --- life cycle ----------------------------------------------------------------------- */

int h2_conn_create(const h2_proto *proto, h2_sink *sink, uint64_t id, pykv_h2_conn **out) {
    *out = NULL;
    pykv_h2_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) return PYKV_ENOMEM;
    c->proto = proto;
    c->sink = sink;
    c->id = id;
    c->peer_max_frame = 16384;
    c->peer_initial_window = DEFAULT_WINDOW_BYTES;
    c->send_window = DEFAULT_WINDOW_BYTES;
    c->recv_window = proto->config.connection_window_bytes;
    c->bucket_mask = 15;
    c->buckets = calloc(16, sizeof(h2_stream *));
    if (c->buckets == NULL || pykv_hpack_decoder_new(4096, &c->hpack) != PYKV_OK) {
        free(c->buckets);
        free(c);
        return PYKV_ENOMEM;
    }
    /* The server preface (3.4): our SETTINGS, then the connection window. */
    const pykv_h2_config *cfg = &proto->config;
    uint8_t settings[18];
    const uint16_t keys[3] = {SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE,
                              SETTINGS_MAX_HEADER_LIST_SIZE};
    const uint32_t values[3] = {cfg->max_concurrent_streams, cfg->stream_window_bytes,
                                cfg->max_header_list_bytes};
    for (int i = 0; i < 3; i++) {
        settings[i * 6] = (uint8_t)(keys[i] >> 8);
        settings[i * 6 + 1] = (uint8_t)keys[i];
        put_u32(settings + i * 6 + 2, values[i]);
    }
    put_frame_header(&c->out, sizeof(settings), FRAME_SETTINGS, 0, 0);
    h2_buf_append(&c->out, settings, sizeof(settings));
    if (cfg->connection_window_bytes > DEFAULT_WINDOW_BYTES) {
        send_window_update(c, 0, cfg->connection_window_bytes - DEFAULT_WINDOW_BYTES);
    }
    *out = c;
    return PYKV_OK;
}

int pykv_h2_conn_new(const pykv_h2_config *config, const char *paths, size_t paths_bytes,
                     const uint8_t *kinds, size_t count, pykv_h2_conn **out, char *err,
                     size_t err_bytes) {
    *out = NULL;
    h2_proto proto;
    int rc = h2_proto_init(&proto, config, paths, paths_bytes, kinds, count, err, err_bytes);
    if (rc) return rc;
    pykv_h2_conn *c;
    /* The proto is moved into the connection after creation; create uses it
     * only to read the config. */
    rc = h2_conn_create(&proto, NULL, 1, &c);
    if (rc) {
        h2_proto_free(&proto);
        return rc;
    }
    c->own_proto = proto;
    c->proto = &c->own_proto;
    c->sink = &c->own_sinks[0];
    *out = c;
    return PYKV_OK;
}

void pykv_h2_conn_free(pykv_h2_conn *c) {
    if (c == NULL) return;
    for (size_t i = 0; i <= c->bucket_mask; i++) {
        h2_stream *s = c->buckets[i];
        while (s) {
            h2_stream *next = s->bucket_next;
            free_stream(s);
            s = next;
        }
    }
    while (c->spare) {
        h2_stream *next = c->spare->bucket_next;
        free_stream(c->spare);
        c->spare = next;
    }
    free(c->buckets);
    pykv_hpack_decoder_free(c->hpack);
    h2_field_list_free(&c->fields);
    h2_buf_free(&c->in);
    h2_buf_free(&c->out);
    h2_buf_free(&c->hblock);
    h2_buf_free(&c->scratch);
    h2_sink_free(&c->own_sinks[0]);
    h2_sink_free(&c->own_sinks[1]);
    if (c->proto == &c->own_proto) h2_proto_free(&c->own_proto);
    free(c);
}

static void note_read(pykv_h2_conn *c) {
    c->reads++;
    c->last_read_us = c->now_us;
}

int pykv_h2_conn_feed(pykv_h2_conn *c, const uint8_t *data, size_t data_bytes) {
    if (c->state == CONN_CLOSED) return PYKV_ECLOSED;
    note_read(c);
    if (h2_buf_append(&c->in, data, data_bytes) != PYKV_OK) {
        return conn_error(c, PYKV_H2_INTERNAL_ERROR, "out of memory");
    }
    return process_input(c);
}

uint8_t *h2_conn_read_space(pykv_h2_conn *c, size_t min_bytes, size_t *space) {
    if (h2_buf_reserve(&c->in, min_bytes) != PYKV_OK) return NULL;
    *space = c->in.cap - c->in.len;
    return c->in.data + c->in.len;
}

int h2_conn_read_commit(pykv_h2_conn *c, size_t n) {
    if (c->state == CONN_CLOSED) return PYKV_ECLOSED;
    PYKV_ASSERT(n <= c->in.cap - c->in.len);
    c->in.len += n;
    note_read(c);
    int rc = process_input(c);
    if (h2_buf_pending(&c->in) == 0) h2_buf_trim(&c->in, BUFFER_KEEP_BYTES);
    return rc;
}

void pykv_h2_conn_output(pykv_h2_conn *c, const uint8_t **data, size_t *data_bytes) {
    *data = h2_buf_head(&c->out);
    /* Our preface waits for the client's: an HTTP/1 client must not get
     * HTTP/2 frames before its answer (cmux in etcd waits the same way). */
    *data_bytes = c->state == CONN_PREFACE || c->http1 ? 0 : h2_buf_pending(&c->out);
}

void pykv_h2_conn_http1_input(const pykv_h2_conn *c, const uint8_t **data, size_t *data_bytes) {
    *data = h2_buf_head(&c->in);
    *data_bytes = c->http1 ? h2_buf_pending(&c->in) : 0;
}

int pykv_h2_conn_tick(pykv_h2_conn *c, int64_t *next_us) {
    const pykv_h2_config *cfg = &c->proto->config;
    *next_us = 0;
    if (c->state == CONN_CLOSED) return PYKV_ECLOSED;
    if (cfg->keepalive_interval_us == 0) return PYKV_OK;
    const int64_t now = c->now_us;
    const int64_t interval = (int64_t)cfg->keepalive_interval_us;
    if (c->keepalive_at_us == 0) {  /* the first tick starts the clock */
        c->keepalive_reads = c->reads;
        c->keepalive_at_us = now + interval;
    }
    if (now < c->keepalive_at_us) {
        *next_us = c->keepalive_at_us;
        return PYKV_OK;
    }
    if (c->reads != c->keepalive_reads) {
        /* The peer spoke since the last tick: it is alive; wait a whole
         * interval from its last bytes. */
        c->keepalive_reads = c->reads;
        c->ping_outstanding = 0;
        int64_t at = c->last_read_us + interval;
        c->keepalive_at_us = at > now ? at : now;
        *next_us = c->keepalive_at_us;
        return PYKV_OK;
    }
    if (c->ping_outstanding) {
        if (now >= c->ping_deadline_us) {
            /* grpc-go closes the transport without a GOAWAY here */
            snprintf(c->error, sizeof(c->error), "keepalive ping not acked within timeout");
            c->state = CONN_CLOSED;
            cancel_all(c);
            emit(c, PYKV_H2_EV_CONN_ERROR, 0, 0, c->error, strlen(c->error), NULL, 0,
                 PYKV_H2_NO_TIMEOUT);
            return PYKV_ECLOSED;
        }
    } else {
        static const uint8_t KEEPALIVE_PING[8] = {'p', 'y', 'k', 'v', 'k', 'a', 'l', 'v'};
        put_frame_header(&c->out, 8, FRAME_PING, 0, 0);
        h2_buf_append(&c->out, KEEPALIVE_PING, sizeof(KEEPALIVE_PING));
        c->ping_outstanding = 1;
        c->ping_deadline_us = now + (int64_t)cfg->keepalive_timeout_us;
    }
    int64_t left = c->ping_deadline_us - now;
    c->keepalive_at_us = now + (left < interval ? left : interval);
    if (c->keepalive_at_us <= now) c->keepalive_at_us = now + 1;
    *next_us = c->keepalive_at_us;
    return PYKV_OK;
}

int64_t h2_conn_keepalive_at(const pykv_h2_conn *c) { return c->keepalive_at_us; }

int h2_conn_is_http1(const pykv_h2_conn *c) { return c->http1; }

void pykv_h2_conn_consume(pykv_h2_conn *c, size_t written) {
    h2_buf_consume(&c->out, written);
    if (h2_buf_pending(&c->out) == 0) h2_buf_trim(&c->out, BUFFER_KEEP_BYTES);
    h2_conn_flush(c);
}

void pykv_h2_conn_events(pykv_h2_conn *c, pykv_h2_events *batch) {
    PYKV_ASSERT(c->sink == &c->own_sinks[c->own_sink_index]);
    h2_sink *taken = c->sink;
    c->own_sink_index ^= 1;
    c->sink = &c->own_sinks[c->own_sink_index];
    h2_sink_reset(c->sink);
    batch->count = taken->count;
    batch->events = taken->events;
    batch->payload = taken->payload.data;
    batch->payload_bytes = taken->payload.len;
}

void pykv_h2_conn_shutdown(pykv_h2_conn *c) {
    if (c->state == CONN_CLOSED || c->goaway_sent) return;
    send_goaway(c, PYKV_H2_NO_ERROR, NULL);
}

void pykv_h2_conn_set_time(pykv_h2_conn *c, int64_t now_us) { c->now_us = now_us; }

void h2_conn_expire_stream(pykv_h2_conn *c, uint32_t id, int64_t now_us) {
    if (c->state == CONN_CLOSED) return;
    h2_stream *s = find_stream(c, id);
    if (s == NULL || s->deadline_us == 0 || s->deadline_us > now_us) return;
    /* Whatever was queued is dropped: the client has given up on it. */
    answer_status(c, s, NULL, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded", 1);
}

int h2_conn_deadline_live(const pykv_h2_conn *c, uint32_t id, int64_t at_us) {
    const h2_stream *s = find_stream(c, id);
    return s != NULL && s->deadline_us == at_us;
}

void pykv_h2_conn_expire(pykv_h2_conn *c) {
    for (size_t i = 0; i <= c->bucket_mask && c->state != CONN_CLOSED; i++) {
        h2_stream *s = c->buckets[i];
        while (s) {
            h2_stream *next = s->bucket_next;
            if (s->deadline_us != 0 && s->deadline_us <= c->now_us) {
                h2_conn_expire_stream(c, s->id, c->now_us);
            }
            s = next;
        }
    }
}

void h2_conn_set_deadline_hook(pykv_h2_conn *c, h2_deadline_fn fn, void *owner) {
    c->deadline_fn = fn;
    c->deadline_owner = owner;
}

void h2_conn_abort(pykv_h2_conn *c) {
    if (c->state != CONN_CLOSED) {
        c->state = CONN_CLOSED;
        cancel_all(c);
    }
}

int h2_conn_finished(const pykv_h2_conn *c) {
    return c->state == CONN_CLOSED && h2_buf_pending(&c->out) == 0;
}

int h2_conn_idle(const pykv_h2_conn *c) {
    return c->goaway_sent && c->streams_open == 0 && h2_buf_pending(&c->out) == 0;
}

uint64_t h2_conn_id(const pykv_h2_conn *c) { return c->id; }

void pykv_h2_conn_get_info(const pykv_h2_conn *c, pykv_h2_conn_info *info) {
    info->streams = c->streams_open;
    info->last_stream_id = c->last_stream_id;
    info->send_window = c->send_window;
    info->recv_window = c->recv_window;
    info->peer_max_frame_bytes = c->peer_max_frame;
    info->peer_initial_window_bytes = c->peer_initial_window;
    info->goaway_sent = (uint32_t)c->goaway_sent;
    info->goaway_code = c->goaway_code;
    info->closed = c->state == CONN_CLOSED;
    info->queued_bytes = c->queued_bytes;
    info->buffered_bytes = c->buffered_bytes;
    info->http1 = (uint32_t)c->http1;
    info->ping_strikes = c->ping_strikes;
    info->ping_outstanding = (uint32_t)c->ping_outstanding;
}
