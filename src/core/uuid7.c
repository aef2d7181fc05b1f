/* uuid7.c - UUIDv7: 48-bit Unix milliseconds, then random bits from libuuid. */
#include "uuid7.h"

#include "units.h"

#include <stdint.h>
#include <stdio.h>
#include <uuid/uuid.h>

void lk_uuid7(char out[37])
{
	unsigned char b[16];
	uint64_t ms = (uint64_t)lk_wall_ms();

	uuid_generate_random(b); /* random bits; we overwrite the time and version fields */
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(ms >> (40 - 8 * i));
	b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
	b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
	(void)snprintf(out, 37,
		       "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		       b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		       b[13], b[14], b[15]);
}
