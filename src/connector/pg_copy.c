/*
 * pg_copy.c - PostgreSQL's binary COPY tuples: the parser and the key decoder of the
 * snapshot's fast path (pg_read.c reads the stream, pg_write.c writes it), and the batch
 * that carries them. Pure functions: no connection, fuzzed by fuzz_decode.
 */
#include "connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lk_copy_batch_init(struct lk_copy_batch *b, int ncols)
{
	memset(b, 0, sizeof(*b));
	lk_rows_init(&b->last, ncols);
}

void lk_copy_batch_reset(struct lk_copy_batch *b)
{
	b->len = 0;
	b->nrows = 0;
	lk_rows_reset(&b->last);
}

void lk_copy_batch_release(struct lk_copy_batch *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->nrows = 0;
	lk_rows_release(&b->last);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int lk_pg_copy_tuple(const unsigned char *p, size_t n, int ncols, size_t *used, size_t *off,
		     int32_t *flen)
{
	size_t pos = 2;
	int nf;

	if (n < 2)
		return -1;
	nf = (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
	if (nf == -1) {
		*used = 2;
		return 0;
	}
	if (nf != ncols)
		return -1;
	for (int i = 0; i < nf; i++) {
		int32_t len;

		if (n - pos < 4)
			return -1;
		len = (int32_t)be32(p + pos);
		pos += 4;
		if (len < -1 || (len > 0 && (size_t)len > n - pos))
			return -1;
		off[i] = pos;
		flen[i] = len;
		if (len > 0)
			pos += (size_t)len;
	}
	*used = pos;
	return 1;
}

int lk_pg_copy_key_text(enum lk_type t, const unsigned char *p, int32_t len, struct lk_rows *out,
			int row, int col)
{
	char s[40];
	int n;

	switch (t) {
	case LK_T_INT: {
		long long v;

		if (len == 2)
			v = (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
		else if (len == 4)
			v = (int32_t)be32(p);
		else if (len == 8)
			v = (long long)(int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
		else
			return -1;
		n = snprintf(s, sizeof(s), "%lld", v);
		break;
	}
	case LK_T_TEXT:
		if (len < 0)
			return -1;
		lk_rows_set(out, row, col, (const char *)p, (size_t)len);
		return 0;
	case LK_T_UUID: {
		static const char hex[] = "0123456789abcdef";

		if (len != 16)
			return -1;
		n = 0;
		for (int i = 0; i < 16; i++) {
			if (i == 4 || i == 6 || i == 8 || i == 10)
				s[n++] = '-';
			s[n++] = hex[p[i] >> 4];
			s[n++] = hex[p[i] & 15];
		}
		s[n] = '\0';
		break;
	}
	default:
		return -1;
	}
	lk_rows_set(out, row, col, s, (size_t)n);
	return 0;
}
