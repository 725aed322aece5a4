/* pykv_crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * pykv_crc32c(0, "123456789", 9) == 0xE3069283 (RFC 3720 B.4 check value).
 * Chaining: pykv_crc32c(pykv_crc32c(0, a, n), b, m) == CRC of a||b.
 * The SSE4.2 instruction is used when the CPU has it (checked once, at run
 * time); otherwise a portable slicing-by-8 table.
 */
#ifndef PYKV_CRC32C_H
#define PYKV_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t pykv_crc32c(uint32_t crc, const uint8_t *buf, size_t len);

/* 1 when the hardware path is in use, 0 for the portable path. */
int pykv_crc32c_hardware(void);

/* Tests only: force (1) or release (0) the portable path, so that both paths
 * can be checked against the same vectors on one machine. */
void pykv_crc32c_force_portable(int force);

#endif
