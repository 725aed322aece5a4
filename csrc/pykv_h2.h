/* pykv_h2.h — a plaintext HTTP/2 gRPC server for the client port.
 *
 * Three layers, each usable on its own (the lower two exist for tests):
 *
 *   HPACK (RFC 7541): a header-block decoder with Huffman and the dynamic
 *   table. The server's encoder needs only static-table indexes and literals.
 *
 *   A connection (pykv_h2_conn, sans I/O): bytes in, bytes out, gRPC calls
 *   as events. It speaks HTTP/2 (RFC 9113) as gRPC clients use it: preface,
 *   SETTINGS, PING, WINDOW_UPDATE and flow control both ways, HEADERS +
 *   CONTINUATION, DATA (with padding), RST_STREAM, GOAWAY; and gRPC
 *   (grpc/grpc doc/PROTOCOL-HTTP2.md): 5-byte length-prefixed messages,
 *   grpc-timeout, metadata, trailers.
 *
 *   The server (pykv_h2_server): listeners and connections on one I/O
 *   thread (epoll), and a batch crossing to Python. The thread queues
 *   events; an eventfd (pykv_h2_server_event_fd) becomes readable when there
 *   are some; pykv_h2_server_poll hands ALL of them over in one call, and
 *   pykv_h2_server_respond takes a batch of responses in one call.
 *
 * Events (pykv_h2_event.kind):
 *   CALL        a new call. For unary and server-streaming methods it comes
 *               once the client has sent its one request message and closed
 *               its side; the message is the payload. For bidirectional
 *               methods it comes with the headers and has no payload.
 *               metadata_bytes of custom metadata follow the payload, as
 *               "name\0value\0" pairs (names lower case, "-bin" values still
 *               base64 as on the wire). timeout_us is grpc-timeout, or
 *               PYKV_H2_NO_TIMEOUT.
 *   MESSAGE     a request message on a bidirectional call (the payload).
 *   HALF_CLOSE  the client closed its side of a bidirectional call.
 *   CANCEL      the call is gone (client RST_STREAM, connection closed or
 *               broken, deadline passed, bad request message): stop work on
 *               it; responses for it are dropped.
 *   DRAINED     the call asked for it (PYKV_H2_NOTIFY_DRAIN) and every
 *               message queued for it has left the call's send queue.
 *   CONN_ERROR  a connection was closed for a protocol error (or a keepalive
 *               ping went unanswered); the payload says why (for the log).
 *               stream is 0.
 *   HTTP1       a client spoke HTTP/1 instead of HTTP/2 (its first bytes are
 *               a request line, e.g. "GET /health HTTP/1.1"): the server
 *               hands the socket over and forgets it. timeout_us holds the
 *               socket's file descriptor, which the caller now owns (serve
 *               it or close it); the payload is what was read from it so
 *               far. stream is 0. Descriptors of HTTP1 events never polled
 *               are closed by pykv_h2_server_free.
 * A call is identified by (conn, stream); Python must answer every CALL
 * with a response carrying PYKV_H2_SEND_END unless a CANCEL came for it.
 *
 * Responses (pykv_h2_response.flags): SEND_MESSAGE sends message_bytes of
 * data as one gRPC message; SEND_END then finishes the call with status (a
 * gRPC status code) and detail_bytes of grpc-message text (raw; the server
 * percent-encodes it). A record's message bytes and then its detail bytes
 * are taken in order from the batch's data. Messages wait for the peer's
 * flow-control window; they are never dropped while the call lives.
 *
 * Thread safety: poll may be called from any one thread while the I/O
 * thread runs (the batch it returned stays valid until the next poll);
 * respond, shutdown and stats from any threads, at the same time too (they
 * take the server's mutexes; pykv's Raft thread and event loop both
 * respond). A pykv_h2_conn belongs to one thread.
 */
#ifndef PYKV_H2_H
#define PYKV_H2_H

#include <stddef.h>
#include <stdint.h>

#define PYKV_H2_EV_CALL 1
#define PYKV_H2_EV_MESSAGE 2
#define PYKV_H2_EV_HALF_CLOSE 3
#define PYKV_H2_EV_CANCEL 4
#define PYKV_H2_EV_DRAINED 5
#define PYKV_H2_EV_CONN_ERROR 6
#define PYKV_H2_EV_HTTP1 7

#define PYKV_H2_SEND_MESSAGE 1
#define PYKV_H2_SEND_END 2
#define PYKV_H2_NOTIFY_DRAIN 4

/* Method kinds, as pykv.server.v3rpc.Method.kind. */
#define PYKV_H2_UNARY 0
#define PYKV_H2_UNARY_STREAM 1
#define PYKV_H2_STREAM_STREAM 2

#define PYKV_H2_NO_TIMEOUT -1
#define PYKV_H2_ERROR_BYTES 256

/* HTTP/2 error codes (RFC 9113 section 7). */
#define PYKV_H2_NO_ERROR 0
#define PYKV_H2_PROTOCOL_ERROR 1
#define PYKV_H2_INTERNAL_ERROR 2
#define PYKV_H2_FLOW_CONTROL_ERROR 3
#define PYKV_H2_SETTINGS_TIMEOUT 4
#define PYKV_H2_STREAM_CLOSED 5
#define PYKV_H2_FRAME_SIZE_ERROR 6
#define PYKV_H2_REFUSED_STREAM 7
#define PYKV_H2_CANCEL 8
#define PYKV_H2_COMPRESSION_ERROR 9
#define PYKV_H2_ENHANCE_YOUR_CALM 11

/* --- HPACK ----------------------------------------------------------------- */

typedef struct pykv_hpack_decoder pykv_hpack_decoder;

/* A decoder whose dynamic table may grow to max_table_bytes (the
 * SETTINGS_HEADER_TABLE_SIZE we advertise; 4096 is HTTP/2's default). */
int pykv_hpack_decoder_new(uint32_t max_table_bytes, pykv_hpack_decoder **out);
void pykv_hpack_decoder_free(pykv_hpack_decoder *decoder);

/* Decode one complete header block. The fields are written to out as
 * [u32 name length][u32 value length][name][value] (native byte order), at
 * most out_bytes; *out_len is what was written. PYKV_ECORRUPT for a
 * malformed block (a COMPRESSION_ERROR: the connection cannot go on);
 * PYKV_ETOOLARGE when the fields do not fit in out_bytes (the table is
 * still updated, so the decoder stays in step). */
int pykv_hpack_decode(pykv_hpack_decoder *decoder, const uint8_t *block, size_t block_bytes,
                      uint8_t *out, size_t out_bytes, size_t *out_len);

/* Size of the dynamic table (RFC 7541 section 4.1) and its entry count. */
uint32_t pykv_hpack_table_bytes(const pykv_hpack_decoder *decoder);
uint32_t pykv_hpack_table_entries(const pykv_hpack_decoder *decoder);

/* Decode a Huffman-coded string; PYKV_ECORRUPT for a bad code or padding. */
int pykv_hpack_huffman_decode(const uint8_t *in, size_t in_bytes, uint8_t *out,
                              size_t out_bytes, size_t *out_len);

/* --- the crossing's records ---------------------------------------------- */

typedef struct pykv_h2_event {
    uint64_t conn;
    uint32_t stream;
    uint16_t kind;            /* PYKV_H2_EV_* */
    uint16_t method;          /* index into the method table (CALL) */
    uint32_t payload_bytes;   /* message (or error text), in the batch payload */
    uint32_t metadata_bytes;  /* "name\0value\0" pairs right after the payload */
    int64_t timeout_us;       /* CALL: grpc-timeout in microseconds, or NO_TIMEOUT */
} pykv_h2_event;

typedef struct pykv_h2_events {
    size_t count;
    const pykv_h2_event *events;
    const uint8_t *payload;   /* every event's payload then metadata, in order */
    size_t payload_bytes;
} pykv_h2_events;

typedef struct pykv_h2_response {
    uint64_t conn;
    uint32_t stream;
    uint16_t flags;           /* PYKV_H2_SEND_MESSAGE | PYKV_H2_SEND_END | PYKV_H2_NOTIFY_DRAIN */
    uint16_t status;          /* gRPC status code, with SEND_END */
    uint32_t message_bytes;
    uint32_t detail_bytes;    /* grpc-message text, with SEND_END */
} pykv_h2_response;

typedef struct pykv_h2_config {
    uint32_t max_receive_bytes;      /* largest request message; larger: RESOURCE_EXHAUSTED */
    uint32_t max_concurrent_streams; /* per connection, advertised; more: REFUSED_STREAM */
    uint32_t stream_window_bytes;    /* receive window per stream, advertised */
    uint32_t connection_window_bytes;/* receive window of a connection */
    uint32_t max_header_list_bytes;  /* decoded request headers (RFC 9113 6.5.2 size) */
    uint32_t max_connections;        /* open client connections; more are closed at accept */
    uint64_t max_queued_bytes;       /* event payload not yet polled: reading pauses past it */
    uint64_t max_buffered_request_bytes; /* per connection, in unfinished request
                                          * messages; past it: RESOURCE_EXHAUSTED */
    /* Keepalive as etcd configures grpc-go: a connection silent for
     * keepalive_interval_us gets a PING, and is closed when nothing comes
     * back within keepalive_timeout_us (0 interval: never). A client that
     * pings more often than keepalive_min_time_us (two hours while it has no
     * call open) more than twice in a row, without our HEADERS or DATA in
     * between, gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings" (0: any rate). */
    uint64_t keepalive_interval_us;
    uint64_t keepalive_timeout_us;
    uint64_t keepalive_min_time_us;
} pykv_h2_config;

/* The defaults: 4 MiB messages (grpc's default), 65536 streams per
 * connection, 4 MiB stream and 16 MiB connection windows, 64 KiB of request
 * headers, 65536 connections, 64 MiB of events waiting for Python, 64 MiB
 * of unfinished requests per connection; keepalive as etcd's defaults: a
 * ping after 2 h of silence, 20 s to answer it, client pings at most every
 * 5 s. */
void pykv_h2_config_default(pykv_h2_config *config);

/* --- one connection, sans I/O (the server's building block; tests) -------- */

typedef struct pykv_h2_conn pykv_h2_conn;

/* A server-side connection. The method table is count paths
 * ("/service/Method"), NUL-separated in paths (paths_bytes in all), and their
 * kinds. The server's preface (SETTINGS, the connection window) is queued as
 * output at once. */
int pykv_h2_conn_new(const pykv_h2_config *config, const char *paths, size_t paths_bytes,
                     const uint8_t *kinds, size_t count, pykv_h2_conn **out,
                     char *err, size_t err_bytes);
void pykv_h2_conn_free(pykv_h2_conn *conn);

/* Take bytes from the peer. PYKV_OK, or PYKV_ECLOSED once the connection is
 * finished (a GOAWAY for a protocol error, or the peer's preface was not
 * HTTP/2's): write the remaining output, then close the socket. When the
 * peer spoke HTTP/1 instead (info.http1), there is no output: its bytes are
 * in pykv_h2_conn_http1_input, for an HTTP/1 server to go on with. */
int pykv_h2_conn_feed(pykv_h2_conn *conn, const uint8_t *data, size_t data_bytes);
void pykv_h2_conn_http1_input(const pykv_h2_conn *conn, const uint8_t **data,
                              size_t *data_bytes);

/* The output waiting to be written: (*data, *data_bytes) stay valid until
 * the next call on the connection; consume what was written. Nothing is
 * offered before the client's preface has come (an HTTP/1 client must not
 * get HTTP/2 frames). */
void pykv_h2_conn_output(pykv_h2_conn *conn, const uint8_t **data, size_t *data_bytes);
void pykv_h2_conn_consume(pykv_h2_conn *conn, size_t written);

/* Take the events queued so far (valid until the next call on the conn). */
void pykv_h2_conn_events(pykv_h2_conn *conn, pykv_h2_events *batch);

/* Apply responses (records and data as in pykv_h2_server_respond; the
 * records' conn field is not looked at). */
int pykv_h2_conn_respond(pykv_h2_conn *conn, const pykv_h2_response *responses, size_t count,
                         const uint8_t *data, size_t data_bytes);

/* Graceful shutdown: GOAWAY(NO_ERROR) naming the last stream taken; later
 * streams are refused, the ones in flight go on. */
void pykv_h2_conn_shutdown(pykv_h2_conn *conn);

/* Deadlines: set_time sets the connection's clock (microseconds, any
 * epoch), which a call's grpc-timeout counts from; expire ends every call
 * whose time has run out with DEADLINE_EXCEEDED (and a CANCEL for Python).
 * The server does both itself. */
void pykv_h2_conn_set_time(pykv_h2_conn *conn, int64_t now_us);
void pykv_h2_conn_expire(pykv_h2_conn *conn);

/* Keepalive (pykv_h2_config's keepalive_*), at the connection's time: the
 * first call starts the clock; call again at *next_us (0: never). It may
 * queue a PING; PYKV_ECLOSED when our ping went unanswered for
 * keepalive_timeout_us: close the socket (grpc-go sends no GOAWAY then).
 * The server does this itself. */
int pykv_h2_conn_tick(pykv_h2_conn *conn, int64_t *next_us);

typedef struct pykv_h2_conn_info {
    uint32_t streams;            /* streams open */
    uint32_t last_stream_id;     /* highest client stream id seen */
    int64_t send_window;         /* connection-level window the peer gave us */
    int64_t recv_window;         /* connection-level window we gave the peer, unspent */
    uint32_t peer_max_frame_bytes;
    uint32_t peer_initial_window_bytes;
    uint32_t goaway_sent;
    uint32_t goaway_code;
    uint32_t closed;
    uint64_t queued_bytes;       /* DATA payload queued, waiting for window */
    uint64_t buffered_bytes;     /* request bytes held in unfinished messages */
    uint32_t http1;              /* the peer spoke HTTP/1 */
    uint32_t ping_strikes;       /* the client's too-early pings in a row */
    uint32_t ping_outstanding;   /* our keepalive ping waits for an answer */
} pykv_h2_conn_info;

void pykv_h2_conn_get_info(const pykv_h2_conn *conn, pykv_h2_conn_info *info);

/* --- the server -------------------------------------------------------------- */

typedef struct pykv_h2_server pykv_h2_server;

/* 1 where the server is built (Linux: it needs epoll and eventfd); elsewhere
 * 0, and pykv_h2_server_new fails with PYKV_EINVAL saying so. */
int pykv_h2_server_supported(void);

typedef struct pykv_h2_stats {
    uint64_t connections_accepted;
    uint64_t connections_open;
    uint64_t connections_refused;  /* over max_connections */
    uint64_t protocol_errors;      /* connections closed with a GOAWAY error */
    uint64_t calls;                /* CALL events */
    uint64_t events;
    uint64_t polls;
    uint64_t responses;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t read_pauses;          /* times reading paused for max_queued_bytes */
    uint64_t wakeups;              /* I/O thread loop iterations */
    uint64_t http1_handoffs;       /* connections handed over as HTTP/1 */
    uint64_t keepalive_closes;     /* connections closed for an unanswered ping */
} pykv_h2_stats;

int pykv_h2_server_new(const pykv_h2_config *config, const char *paths, size_t paths_bytes,
                       const uint8_t *kinds, size_t count, pykv_h2_server **out,
                       char *err, size_t err_bytes);

/* Listen on host:port (SO_REUSEPORT; port 0 picks one, written to *port);
 * every address the host resolves to. Before pykv_h2_server_start only. */
int pykv_h2_server_listen(pykv_h2_server *server, const char *host, uint16_t *port,
                          char *err, size_t err_bytes);

/* Start the I/O thread. */
int pykv_h2_server_start(pykv_h2_server *server, char *err, size_t err_bytes);

/* Readable while events wait; poll clears it. */
int pykv_h2_server_event_fd(const pykv_h2_server *server);

/* Take every queued event; the batch stays valid until the next poll. */
int pykv_h2_server_poll(pykv_h2_server *server, pykv_h2_events *batch);

/* Hand a batch of responses to the I/O thread (copied; returns at once). */
int pykv_h2_server_respond(pykv_h2_server *server, const pykv_h2_response *responses,
                           size_t count, const uint8_t *data, size_t data_bytes);

/* Graceful: close the listeners and send every connection a GOAWAY; calls in
 * flight go on. */
int pykv_h2_server_shutdown(pykv_h2_server *server);

/* Stop the I/O thread and close every socket (calls still open are cut:
 * their clients see the connection close). Idempotent. */
int pykv_h2_server_stop(pykv_h2_server *server);
void pykv_h2_server_free(pykv_h2_server *server);

void pykv_h2_server_get_stats(pykv_h2_server *server, pykv_h2_stats *stats);

#endif
