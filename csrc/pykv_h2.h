/* pykv_h2.h — a plaintext HTTP/2 gRPC server for the client port.
 *
 * HPACK (RFC 7541): a header-block decoder with Huffman and the dynamic
 * table. The server's encoder needs only static-table indexes and literals.
 */
#ifndef PYKV_H2_H
#define PYKV_H2_H

#include <stddef.h>
#include <stdint.h>

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

#endif
