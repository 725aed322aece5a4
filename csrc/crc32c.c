/* crc32c.c — CRC-32C with an SSE4.2 path and a portable slicing-by-8 path.
 *
 * The hardware path runs three independent CRC streams over three adjacent
 * blocks (the crc32 instruction has a latency of 3 cycles and a throughput
 * of 1, so one stream would use a third of the unit), then merges them:
 * crc(A||B) = shift(crc(A), |B|) ^ crc(B), where shift() appends |B| zero
 * bytes to the register. shift() is linear over GF(2), so for the two fixed
 * block sizes it is precomputed as four 256-entry tables.
 */
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "pykv_native.h"

#define CRC32C_POLY 0x82f63b78u
#define BLOCK_LONG 8192u
#define BLOCK_SHORT 256u

static uint32_t table_slice[8][256];
static uint32_t table_shift_long[4][256];
static uint32_t table_shift_short[4][256];
static int tables_ready;
static int use_hardware = -1; /* -1: not probed yet */
static int force_portable;

/* --- GF(2) operator for "append n zero bytes" ---------------------------- */

/* Multiply the 32x32 bit matrix mat by the vector vec. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1u) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

/* Build the operator that appends len zero bytes (len a power of two here,
 * but any length works) to a raw CRC register. */
static void zeros_operator(uint32_t *op, size_t len) {
    uint32_t odd[32], even[32];
    /* Operator for one zero bit. */
    odd[0] = CRC32C_POLY;
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_square(even, odd); /* 2 bits */
    gf2_square(odd, even); /* 4 bits */
    /* odd is now the 4-bit operator; square up to one byte first. */
    gf2_square(even, odd); /* 8 bits = 1 byte */
    uint32_t *cur = even, *other = odd;
    /* identity */
    for (int n = 0; n < 32; n++) op[n] = 1u << n;
    while (len) {
        if (len & 1) {
            uint32_t tmp[32];
            for (int n = 0; n < 32; n++) tmp[n] = gf2_times(cur, op[n]);
            memcpy(op, tmp, sizeof(tmp));
        }
        len >>= 1;
        if (len) {
            gf2_square(other, cur);
            uint32_t *swap = cur;
            cur = other;
            other = swap;
        }
    }
}

static void shift_tables(uint32_t table[4][256], size_t len) {
    uint32_t op[32];
    zeros_operator(op, len);
    for (int n = 0; n < 256; n++) {
        for (int k = 0; k < 4; k++) table[k][n] = gf2_times(op, (uint32_t)n << (8 * k));
    }
}

static inline uint32_t shift_apply(uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^
           table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}

static void init_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ CRC32C_POLY : crc >> 1;
        table_slice[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = table_slice[0][n];
        for (int k = 1; k < 8; k++) {
            crc = table_slice[0][crc & 0xff] ^ (crc >> 8);
            table_slice[k][n] = crc;
        }
    }
    shift_tables(table_shift_long, BLOCK_LONG);
    shift_tables(table_shift_short, BLOCK_SHORT);
    tables_ready = 1;
}

/* Tables are built once, from the constructor, before any thread can call
 * in: the library is loaded by the import of pykv._native. */
__attribute__((constructor)) static void crc32c_init(void) {
    init_tables();
#if defined(__x86_64__)
    __builtin_cpu_init();
    use_hardware = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    use_hardware = 0;
#endif
}

/* --- portable path -------------------------------------------------------- */

static uint32_t crc32c_portable(uint32_t crc, const uint8_t *p, size_t len) {
    while (len && ((uintptr_t)p & 7)) {
        crc = table_slice[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc; /* little-endian: the register meets the first 4 bytes */
        crc = table_slice[7][word & 0xff] ^ table_slice[6][(word >> 8) & 0xff] ^
              table_slice[5][(word >> 16) & 0xff] ^ table_slice[4][(word >> 24) & 0xff] ^
              table_slice[3][(word >> 32) & 0xff] ^ table_slice[2][(word >> 40) & 0xff] ^
              table_slice[1][(word >> 48) & 0xff] ^ table_slice[0][word >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) crc = table_slice[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

/* --- hardware path -------------------------------------------------------- */

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw_blocks(uint32_t crc, const uint8_t **pp,
                                                                  size_t *plen, size_t block,
                                                                  uint32_t table[4][256]) {
    const uint8_t *p = *pp;
    size_t len = *plen;
    while (len >= 3 * block) {
        uint64_t c0 = crc, c1 = 0, c2 = 0;
        const uint8_t *end = p + block;
        while (p < end) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p, 8);
            memcpy(&w1, p + block, 8);
            memcpy(&w2, p + 2 * block, 8);
            c0 = _mm_crc32_u64(c0, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
            p += 8;
        }
        crc = shift_apply(table, (uint32_t)c0) ^ (uint32_t)c1;
        crc = shift_apply(table, crc) ^ (uint32_t)c2;
        p += 2 * block;
        len -= 3 * block;
    }
    *pp = p;
    *plen = len;
    return crc;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hardware(uint32_t crc, const uint8_t *p,
                                                                 size_t len) {
    while (len && ((uintptr_t)p & 7)) {
        crc = _mm_crc32_u8(crc, *p++);
        len--;
    }
    crc = crc32c_hw_blocks(crc, &p, &len, BLOCK_LONG, table_shift_long);
    crc = crc32c_hw_blocks(crc, &p, &len, BLOCK_SHORT, table_shift_short);
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    crc = (uint32_t)c;
    while (len--) crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

/* --- public --------------------------------------------------------------- */

uint32_t pykv_crc32c(uint32_t crc, const uint8_t *buf, size_t len) {
    PYKV_ASSERT(tables_ready);
    crc = ~crc;
#if defined(__x86_64__)
    if (use_hardware == 1 && !force_portable) return ~crc32c_hardware(crc, buf, len);
#endif
    return ~crc32c_portable(crc, buf, len);
}

int pykv_crc32c_hardware(void) { return use_hardware == 1 && !force_portable; }

void pykv_crc32c_force_portable(int force) { force_portable = force ? 1 : 0; }
