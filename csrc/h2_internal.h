/* h2_internal.h — what the h2*.c files share; never fed to cffi. */
#ifndef PYKV_H2_INTERNAL_H
#define PYKV_H2_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "pykv_common.h"
#include "pykv_h2.h"

/* --- growable byte buffer ---------------------------------------------------- */

typedef struct h2_buf {
    uint8_t *data;
    size_t len;  /* bytes held */
    size_t off;  /* bytes already consumed from the front */
    size_t cap;
} h2_buf;

int h2_buf_reserve(h2_buf *buf, size_t extra);  /* room for extra more bytes */
int h2_buf_append(h2_buf *buf, const void *data, size_t n);
void h2_buf_consume(h2_buf *buf, size_t n);     /* drop n bytes from the front */
void h2_buf_reset(h2_buf *buf);                 /* empty, keeping the memory */
void h2_buf_free(h2_buf *buf);
/* Give back memory past keep_bytes of capacity once the buffer is empty, so
 * one 40 MB answer does not pin 40 MB per connection forever. */
void h2_buf_trim(h2_buf *buf, size_t keep_bytes);

static inline size_t h2_buf_pending(const h2_buf *buf) { return buf->len - buf->off; }
static inline const uint8_t *h2_buf_head(const h2_buf *buf) { return buf->data + buf->off; }

/* --- HPACK ---------------------------------------------------------------------- */

extern const uint32_t h2_huffman_first_code[32];
extern const uint16_t h2_huffman_count[32];
extern const uint16_t h2_huffman_offset[32];
extern const uint16_t h2_huffman_symbols[257];

/* One decoded field, as offsets into the field list's bytes (a later
 * insertion may evict a table entry while the block is being decoded, so
 * every field is copied out). */
typedef struct h2_field {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
} h2_field;

typedef struct h2_field_list {
    h2_field *fields;
    size_t count, cap;
    h2_buf bytes;
    uint64_t list_bytes;  /* RFC 9113 6.5.2: sum of name + value + 32 */
    uint64_t max_list_bytes;
    int too_large;        /* fields past max_list_bytes were dropped */
} h2_field_list;

void h2_field_list_reset(h2_field_list *list);
void h2_field_list_free(h2_field_list *list);

/* Decode a block into list (reset first). PYKV_ECORRUPT: a COMPRESSION_ERROR;
 * PYKV_ENOMEM. Fields over the list's limit set too_large but the block is
 * decoded to its end so that the dynamic table stays in step. */
int h2_hpack_decode(pykv_hpack_decoder *decoder, const uint8_t *block, size_t len,
                    h2_field_list *list);

/* --- connections ------------------------------------------------------------- */

/* What the connections of one server (or a lone test connection) share. */
typedef struct h2_method {
    const char *path;
    uint32_t path_len;
    uint8_t kind;
} h2_method;

typedef struct h2_proto {
    pykv_h2_config config;
    h2_method *methods;
    size_t method_count;
    uint32_t *slots;      /* open-addressing table of method index + 1 by path hash */
    size_t slot_mask;
    char *paths;          /* the owned copy of the NUL-separated paths */
} h2_proto;

int h2_proto_init(h2_proto *proto, const pykv_h2_config *config, const char *paths,
                  size_t paths_bytes, const uint8_t *kinds, size_t count, char *err,
                  size_t err_bytes);
void h2_proto_free(h2_proto *proto);
/* Index of the method at path, or -1. */
int h2_proto_find(const h2_proto *proto, const uint8_t *path, size_t len);

/* Where connections queue their events. */
typedef struct h2_sink {
    pykv_h2_event *events;
    size_t count, cap;
    h2_buf payload;
} h2_sink;

int h2_sink_push(h2_sink *sink, const pykv_h2_event *event, const void *payload,
                 size_t payload_bytes, const void *metadata, size_t metadata_bytes);
void h2_sink_reset(h2_sink *sink);
void h2_sink_free(h2_sink *sink);

/* The server's hook for deadlines: called when a call with a grpc-timeout
 * starts (deadline on the connection's clock, in microseconds). */
typedef void (*h2_deadline_fn)(void *owner, pykv_h2_conn *conn, uint32_t stream_id,
                               int64_t deadline_us);

/* Internal side of a connection, for the server. */
int h2_conn_create(const h2_proto *proto, h2_sink *sink, uint64_t id, pykv_h2_conn **out);
void h2_conn_set_deadline_hook(pykv_h2_conn *conn, h2_deadline_fn fn, void *owner);
/* Finish one stream whose deadline passed (no-op when it is gone or its
 * deadline moved). */
void h2_conn_expire_stream(pykv_h2_conn *conn, uint32_t stream_id, int64_t now_us);
/* Whether stream still lives with this deadline (a heap entry is current). */
int h2_conn_deadline_live(const pykv_h2_conn *conn, uint32_t stream_id, int64_t at_us);
int h2_conn_respond_one(pykv_h2_conn *conn, const pykv_h2_response *response,
                        const uint8_t *message, const uint8_t *detail);
/* Move queued DATA into the output as windows allow (bounded per call). */
void h2_conn_flush(pykv_h2_conn *conn);
/* The connection is going away (EOF, error): CANCEL every call Python knows. */
void h2_conn_abort(pykv_h2_conn *conn);
int h2_conn_finished(const pykv_h2_conn *conn);  /* nothing more to do but close */
int h2_conn_idle(const pykv_h2_conn *conn);      /* after GOAWAY: no streams, no output */
int h2_conn_is_http1(const pykv_h2_conn *conn);  /* the peer spoke HTTP/1: hand it over */
int64_t h2_conn_keepalive_at(const pykv_h2_conn *conn);  /* the tick due; 0: none */
uint64_t h2_conn_id(const pykv_h2_conn *conn);
/* Space to read into (at least min_bytes); commit what was read. */
uint8_t *h2_conn_read_space(pykv_h2_conn *conn, size_t min_bytes, size_t *space);
int h2_conn_read_commit(pykv_h2_conn *conn, size_t n);

#endif
