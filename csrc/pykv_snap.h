/* pykv_snap.h — the MVCC store's codecs: snapshot stream framing, snapshot
 * records, and the protobuf encoding of stored key-values for Range answers.
 *
 * Snapshot stream (pykv/mvcc/snapshot.py drives it): a sequence of frames.
 * A frame is a fixed 32-byte header followed by `stored_len` payload bytes:
 *
 *   0  magic "PKSF"          4 bytes
 *   4  type                  1 byte (PYKV_SNAP_FRAME_*)
 *   5  zero                  3 bytes
 *   8  raw_len               u32 LE (payload length before compression)
 *  12  stored_len            u32 LE (payload length in the stream)
 *  16  digest                u64 LE (xxh64 of the stored payload; by Python)
 *  24  zero                  4 bytes
 *  28  crc32c of bytes 0-27  u32 LE
 *
 * Both lengths are bounded by PYKV_SNAP_CHUNK_MAX, so a corrupt header can
 * never make a reader allocate or read without limit.
 *
 * A CHUNK payload (after decompression) is a run of records:
 *   table u8 | key_len u32 LE | value_len u32 LE | key | value
 * with key_len <= PYKV_SNAP_KEY_MAX (an LMDB key).
 *
 * Range encoding: a stored record is a 40-byte little-endian header
 * (create_revision i64, mod_revision i64, version i64, lease i64, sub u32,
 * key_extra u32), key_extra bytes of full key, then the value (see
 * pykv/mvcc/schema.py). pykv_kv_encode turns n (key, record) pairs into n
 * RangeResponse.kvs fields (tag 0x12, length, mvccpb.KeyValue).
 */
#ifndef PYKV_SNAP_H
#define PYKV_SNAP_H

#include <stddef.h>
#include <stdint.h>

#define PYKV_SNAP_FRAME_BYTES 32
#define PYKV_SNAP_CHUNK_MAX 67108864
#define PYKV_SNAP_KEY_MAX 511
#define PYKV_SNAP_RECORD_OVERHEAD 9
#define PYKV_SNAP_FRAME_HEADER 1
#define PYKV_SNAP_FRAME_CHUNK 2
#define PYKV_SNAP_FRAME_TRAILER 3
#define PYKV_KV_RECORD_HEADER 40

/* Write a frame header into out[0..31]. PYKV_EINVAL for an unknown type or
 * a length over PYKV_SNAP_CHUNK_MAX. */
int pykv_snap_frame_pack(uint8_t *out, uint32_t type, uint32_t raw_len, uint32_t stored_len,
                         uint64_t digest);

/* Check and read a frame header (len must be PYKV_SNAP_FRAME_BYTES).
 * PYKV_ECORRUPT for a bad magic, CRC, type or length. */
int pykv_snap_frame_unpack(const uint8_t *in, size_t len, uint32_t *type, uint32_t *raw_len,
                           uint32_t *stored_len, uint64_t *digest);

/* Append n records of one table to out. keys/values are the concatenated
 * keys and values, key_lens/value_lens their lengths. *written receives the
 * bytes written; PYKV_ETOOLARGE when out_cap is too small (nothing usable
 * written), PYKV_EINVAL for a key over PYKV_SNAP_KEY_MAX. */
int pykv_snap_records_pack(uint8_t table, const char *keys, const uint32_t *key_lens,
                           const char *values, const uint32_t *value_lens, size_t n,
                           uint8_t *out, size_t out_cap, size_t *written);

/* Index the records in buf[0..len): for record i, its table and the offsets
 * and lengths of its key and value within buf. cap is the room in each
 * output array (len / PYKV_SNAP_RECORD_OVERHEAD always suffices).
 * PYKV_ECORRUPT (with *n = records read so far) for a record that overruns
 * buf or has an oversized key. */
int pykv_snap_records_index(const uint8_t *buf, size_t len, uint8_t *tables,
                            uint32_t *key_offs, uint32_t *key_lens, uint32_t *value_offs,
                            uint32_t *value_lens, size_t cap, size_t *n);

/* Upper bound of the bytes pykv_kv_encode writes for n pairs whose keys
 * and records add up to keys_total and records_total bytes. */
size_t pykv_kv_encode_bound(size_t n, size_t keys_total, size_t records_total);

/* Encode n (key, stored record) pairs as RangeResponse.kvs fields; with
 * keys_only the values are left out (as etcd does). PYKV_ECORRUPT for a
 * record shorter than its header says, PYKV_ETOOLARGE if out_cap is short. */
int pykv_kv_encode(const char *keys, const uint32_t *key_lens, const char *records,
                   const uint32_t *record_lens, size_t n, int keys_only, uint8_t *out,
                   size_t out_cap, size_t *out_len);

#endif
