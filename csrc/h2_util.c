/* h2_util.c — the event sink and the method table of the h2 server. */
#include <stdio.h>
#include <stdlib.h>

#include "h2_internal.h"

/* --- h2_sink ----------------------------------------------------------------- */

int h2_sink_push(h2_sink *sink, const pykv_h2_event *event, const void *payload,
                 size_t payload_bytes, const void *metadata, size_t metadata_bytes) {
    if (sink->count == sink->cap) {
        size_t cap = sink->cap ? sink->cap * 2 : 64;
        pykv_h2_event *events = realloc(sink->events, cap * sizeof(*events));
        if (events == NULL) return PYKV_ENOMEM;
        sink->events = events;
        sink->cap = cap;
    }
    int rc = h2_buf_reserve(&sink->payload, payload_bytes + metadata_bytes);
    if (rc) return rc;
    h2_buf_append(&sink->payload, payload, payload_bytes);
    h2_buf_append(&sink->payload, metadata, metadata_bytes);
    pykv_h2_event *slot = &sink->events[sink->count++];
    *slot = *event;
    slot->payload_bytes = (uint32_t)payload_bytes;
    slot->metadata_bytes = (uint32_t)metadata_bytes;
    return PYKV_OK;
}

void h2_sink_reset(h2_sink *sink) {
    sink->count = 0;
    h2_buf_reset(&sink->payload);
}

void h2_sink_free(h2_sink *sink) {
    free(sink->events);
    h2_buf_free(&sink->payload);
    memset(sink, 0, sizeof(*sink));
}

/* --- the method table ------------------------------------------------------ */

static uint32_t path_hash(const uint8_t *path, size_t len) {
    uint32_t h = 2166136261u;  /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= path[i];
        h *= 16777619u;
    }
    return h;
}

int h2_proto_init(h2_proto *proto, const pykv_h2_config *config, const char *paths,
                  size_t paths_bytes, const uint8_t *kinds, size_t count, char *err,
                  size_t err_bytes) {
    memset(proto, 0, sizeof(*proto));
    if (config == NULL) {
        pykv_h2_config_default(&proto->config);
    } else {
        proto->config = *config;
    }
    const pykv_h2_config *c = &proto->config;
    if (c->max_receive_bytes == 0 || c->max_receive_bytes > 0x7fffffffu ||
        c->stream_window_bytes < 65535 || c->stream_window_bytes > 0x7fffffffu ||
        c->connection_window_bytes < 65535 || c->connection_window_bytes > 0x7fffffffu ||
        c->max_concurrent_streams == 0 || c->max_header_list_bytes < 1024 ||
        c->max_connections == 0 || c->max_connections > (1u << 20) ||
        c->max_buffered_request_bytes < (uint64_t)c->max_receive_bytes + 5) {
        snprintf(err, err_bytes, "h2 config out of range");
        return PYKV_EINVAL;
    }
    if (count > 65535) {
        snprintf(err, err_bytes, "too many methods: %zu (at most 65535)", count);
        return PYKV_EINVAL;
    }
    proto->paths = malloc(paths_bytes + 1);
    proto->methods = calloc(count ? count : 1, sizeof(h2_method));
    size_t slots = 16;
    while (slots < count * 2) slots *= 2;
    proto->slots = calloc(slots, sizeof(uint32_t));
    if (proto->paths == NULL || proto->methods == NULL || proto->slots == NULL) {
        h2_proto_free(proto);
        return PYKV_ENOMEM;
    }
    proto->slot_mask = slots - 1;
    memcpy(proto->paths, paths, paths_bytes);
    proto->paths[paths_bytes] = '\0';
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (at >= paths_bytes) {
            snprintf(err, err_bytes, "method table: %zu paths for %zu kinds", i, count);
            h2_proto_free(proto);
            return PYKV_EINVAL;
        }
        const char *path = proto->paths + at;
        size_t len = strlen(path);
        if (kinds[i] > PYKV_H2_STREAM_STREAM || len == 0 || path[0] != '/') {
            snprintf(err, err_bytes, "method table: bad entry %zu (%s)", i, path);
            h2_proto_free(proto);
            return PYKV_EINVAL;
        }
        proto->methods[i] = (h2_method){path, (uint32_t)len, kinds[i]};
        if (h2_proto_find(proto, (const uint8_t *)path, len) >= 0) {
            snprintf(err, err_bytes, "method table: %s given twice", path);
            h2_proto_free(proto);
            return PYKV_EINVAL;
        }
        size_t slot = path_hash((const uint8_t *)path, len) & proto->slot_mask;
        while (proto->slots[slot]) slot = (slot + 1) & proto->slot_mask;
        proto->slots[slot] = (uint32_t)i + 1;
        proto->method_count = i + 1;
        at += len + 1;
    }
    return PYKV_OK;
}

void h2_proto_free(h2_proto *proto) {
    free(proto->paths);
    free(proto->methods);
    free(proto->slots);
    memset(proto, 0, sizeof(*proto));
}

int h2_proto_find(const h2_proto *proto, const uint8_t *path, size_t len) {
    size_t slot = path_hash(path, len) & proto->slot_mask;
    for (;;) {
        uint32_t entry = proto->slots[slot];
        if (entry == 0) return -1;
        const h2_method *m = &proto->methods[entry - 1];
        if (m->path_len == len && memcmp(m->path, path, len) == 0) return (int)(entry - 1);
        slot = (slot + 1) & proto->slot_mask;
    }
}
