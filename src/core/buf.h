/*
 * buf.h - a growable, always NUL-terminated byte string (git's strbuf).
 *
 * Invariants: `buf[len] == '\0'` at all times; `buf` is never NULL once
 * initialised (LK_BUF_INIT points at a shared empty string until the first
 * append); `alloc` is 0 exactly when `buf` is that shared string. Growth
 * failures abort the process: running out of memory while building SQL or
 * JSON is not a recoverable condition for a daemon with a fixed budget.
 */
#ifndef LK_BUF_H
#define LK_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

extern char lk_buf_empty[];

struct lk_buf {
	char *buf;
	size_t len;
	size_t alloc;
};

#define LK_BUF_INIT                                                                                \
	{                                                                                          \
		lk_buf_empty, 0, 0                                                                 \
	}

void lk_buf_init(struct lk_buf *b);
/* Frees the storage and re-initialises b. */
void lk_buf_release(struct lk_buf *b);
/* Empties b but keeps its storage for reuse. */
void lk_buf_reset(struct lk_buf *b);
/* Ensures room for `extra` more bytes plus the NUL. */
void lk_buf_grow(struct lk_buf *b, size_t extra);
void lk_buf_add(struct lk_buf *b, const void *data, size_t len);
void lk_buf_adds(struct lk_buf *b, const char *s);
void lk_buf_addch(struct lk_buf *b, char c);
void lk_buf_addf(struct lk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lk_buf_vaddf(struct lk_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Truncates to `len` bytes (len <= b->len). */
void lk_buf_setlen(struct lk_buf *b, size_t len);
/* Returns the heap string and re-initialises b; the caller frees it. */
char *lk_buf_detach(struct lk_buf *b, size_t *len);

/* Appends a JSON string literal (quotes and escapes) for `len` bytes of UTF-8. Bytes at
 * or above 0x80 are copied as they are: keys and positions must round-trip. */
void lk_buf_add_json_str(struct lk_buf *b, const char *s, size_t len);
/* The same for text that is only shown (logs, answers): each byte that does not start a
 * well-formed UTF-8 sequence becomes U+FFFD, so the literal is always valid JSON. */
void lk_buf_add_json_text(struct lk_buf *b, const char *s, size_t len);

/* Appends v in decimal, as "%lld" would (without printf: verify hashes millions of them). */
void lk_buf_add_i64(struct lk_buf *b, int64_t v);

/* Appends 2*len lower-case hex digits for len bytes. */
void lk_buf_add_hex(struct lk_buf *b, const void *data, size_t len);

/*
 * The length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0 when it is malformed or cut short; n > 0.
 */
size_t lk_utf8_seq(const unsigned char *s, size_t n);
/* Appends s[0..len) with each byte that does not start a well-formed sequence replaced by
 * U+FFFD (for text from databases, which may hold anything, going into JSON). */
void lk_buf_add_utf8(struct lk_buf *b, const char *s, size_t len);
/* Writes the len/2 bytes that len hex digits encode (either case) into out; returns the
 * number of bytes, or -1 when a character is not a hex digit. */
long lk_hex_decode(char *out, const char *hex, size_t len);

/* Allocation helpers that abort on failure. */
void *lk_xmalloc(size_t n);
void *lk_xcalloc(size_t n, size_t size);
void *lk_xrealloc(void *p, size_t n);
char *lk_xstrdup(const char *s);
char *lk_xstrndup(const char *s, size_t n);

#endif
