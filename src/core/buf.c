/* buf.c - growable strings and aborting allocation helpers. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char lk_buf_empty[1];

static void oom(size_t n)
{
	(void)fprintf(stderr, "lockstep: out of memory allocating %zu bytes\n", n);
	abort();
}

void *lk_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		oom(n);
	return p;
}

void *lk_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom(n * size);
	return p;
}

void *lk_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		oom(n);
	return q;
}

char *lk_xstrdup(const char *s)
{
	return lk_xstrndup(s, strlen(s));
}

char *lk_xstrndup(const char *s, size_t n)
{
	char *p = lk_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void lk_buf_init(struct lk_buf *b)
{
	b->buf = lk_buf_empty;
	b->len = 0;
	b->alloc = 0;
}

void lk_buf_release(struct lk_buf *b)
{
	if (b->alloc)
		free(b->buf);
	lk_buf_init(b);
}

void lk_buf_reset(struct lk_buf *b)
{
	lk_buf_setlen(b, 0);
}

void lk_buf_grow(struct lk_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	size_t n;

	if (need <= b->alloc)
		return;
	n = b->alloc ? b->alloc : 64;
	while (n < need)
		n *= 2;
	if (b->alloc) {
		b->buf = lk_xrealloc(b->buf, n);
	} else {
		b->buf = lk_xmalloc(n);
		b->buf[0] = '\0';
	}
	b->alloc = n;
}

void lk_buf_add(struct lk_buf *b, const void *data, size_t len)
{
	if (!len)
		return;
	lk_buf_grow(b, len);
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	b->buf[b->len] = '\0';
}

void lk_buf_adds(struct lk_buf *b, const char *s)
{
	lk_buf_add(b, s, strlen(s));
}

void lk_buf_addch(struct lk_buf *b, char c)
{
	lk_buf_grow(b, 1);
	b->buf[b->len++] = c;
	b->buf[b->len] = '\0';
}

void lk_buf_add_i64(struct lk_buf *b, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		tmp[n++] = (char)('0' + (int)(u % 10));
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[n++] = '-';
	lk_buf_grow(b, (size_t)n);
	while (n > 0)
		b->buf[b->len++] = tmp[--n];
	b->buf[b->len] = '\0';
}

void lk_buf_vaddf(struct lk_buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	lk_buf_grow(b, 64);
	va_copy(cp, ap);
	n = vsnprintf(b->buf + b->len, b->alloc - b->len, fmt, cp);
	va_end(cp);
	if (n < 0)
		return;
	if ((size_t)n >= b->alloc - b->len) {
		lk_buf_grow(b, (size_t)n);
		va_copy(cp, ap);
		n = vsnprintf(b->buf + b->len, b->alloc - b->len, fmt, cp);
		va_end(cp);
		if (n < 0)
			return;
	}
	b->len += (size_t)n;
}

void lk_buf_addf(struct lk_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lk_buf_vaddf(b, fmt, ap);
	va_end(ap);
}

void lk_buf_setlen(struct lk_buf *b, size_t len)
{
	if (!b->alloc)
		return;
	b->len = len;
	b->buf[len] = '\0';
}

char *lk_buf_detach(struct lk_buf *b, size_t *len)
{
	char *p;

	if (len)
		*len = b->len;
	if (!b->alloc)
		return lk_xstrdup("");
	p = b->buf;
	lk_buf_init(b);
	return p;
}

void lk_buf_add_hex(struct lk_buf *b, const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = data;

	lk_buf_grow(b, 2 * len);
	for (size_t i = 0; i < len; i++) {
		b->buf[b->len++] = hex[p[i] >> 4];
		b->buf[b->len++] = hex[p[i] & 15];
	}
	b->buf[b->len] = '\0';
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

long lk_hex_decode(char *out, const char *hex, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2) {
		int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i / 2] = (char)(hi << 4 | lo);
	}
	return (long)(len / 2);
}

/* Appends byte c of a JSON string literal, escaped when it must be. */
static void add_json_byte(struct lk_buf *b, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";

	switch (c) {
	case '"':
		lk_buf_add(b, "\\\"", 2);
		break;
	case '\\':
		lk_buf_add(b, "\\\\", 2);
		break;
	case '\n':
		lk_buf_add(b, "\\n", 2);
		break;
	case '\r':
		lk_buf_add(b, "\\r", 2);
		break;
	case '\t':
		lk_buf_add(b, "\\t", 2);
		break;
	default:
		if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

			lk_buf_add(b, e, 6);
		} else {
			lk_buf_addch(b, (char)c);
		}
	}
}

void lk_buf_add_json_str(struct lk_buf *b, const char *s, size_t len)
{
	lk_buf_addch(b, '"');
	for (size_t i = 0; i < len; i++)
		add_json_byte(b, (unsigned char)s[i]);
	lk_buf_addch(b, '"');
}

void lk_buf_add_json_text(struct lk_buf *b, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	lk_buf_addch(b, '"');
	while (i < len) {
		size_t k = lk_utf8_seq(u + i, len - i);

		if (k == 0) {
			lk_buf_add(b, "\xEF\xBF\xBD", 3);
			k = 1;
		} else if (k == 1) {
			add_json_byte(b, u[i]);
		} else {
			lk_buf_add(b, u + i, k);
		}
		i += k;
	}
	lk_buf_addch(b, '"');
}

size_t lk_utf8_seq(const unsigned char *s, size_t n)
{
	size_t k;

	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xC2 || s[0] > 0xF4)
		return 0;
	k = s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	}
	if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
	    (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
		return 0;
	return k;
}

void lk_buf_add_utf8(struct lk_buf *b, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		size_t k = lk_utf8_seq(u + i, len - i);

		if (k == 0) {
			lk_buf_add(b, "\xEF\xBF\xBD", 3);
			i++;
		} else {
			lk_buf_add(b, u + i, k);
			i += k;
		}
	}
}
