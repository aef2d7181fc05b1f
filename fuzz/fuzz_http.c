/*
 * fuzz_http.c - feeds the input as an HTTP request to the socket-free half of the API
 * (src/http/http_req.c, the code http.c runs for every request): the request line goes
 * to lk_http_route_match, an "Authorization:" header to lk_http_token_ok, a
 * "Content-Length:" header and the body (after the blank line, handed over in pieces as
 * libmicrohttpd does) to lk_http_body_init/_add/_check, and the body to the strict JSON
 * parsers of POST /api/sync and of the field-less POSTs.
 *
 *   POST /api/sync HTTP/1.1
 *   Authorization: Bearer t0k3n
 *
 *   {"job":"orders","type":"full"}
 *
 * Two headers are the harness's own, so that a small input reaches the 64 KiB body cap
 * whatever libFuzzer's -max_len: "X-Fuzz-Repeat: N" makes the body N bytes (at most four
 * times the cap) by repeating the bytes after the blank line (a space when there are
 * none), and "X-Fuzz-Chunk: N" hands it over in pieces of N bytes (default: a third).
 *
 * Checks, with abort() on a violation: a route names a method to allow and an id of the
 * documented shape; only POST needs the token; the token check agrees with a plain
 * comparison; a Content-Length of plain digits is refused exactly when over the cap; a
 * body is refused exactly when it or its Content-Length is over the cap, a kept one is
 * kept byte for byte and a refused one is never handed on; a refusal is a 400 or 413
 * with an error and a detail.
 */
#include "http/http.h"
#include "http/http_int.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "t0k3n"

/* A copy of s[0..n) with a NUL after it. */
static char *dup_n(const char *s, size_t n)
{
	char *p = lk_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void check_route(const char *method, const char *url)
{
	struct lk_http_route r;
	size_t n;

	lk_http_route_match(method, url, &r);
	if (r.needs_token != (strcmp(method, "POST") == 0) || !memchr(r.id, '\0', sizeof(r.id)))
		abort();
	n = strlen(r.id);
	switch (r.ep) {
	case LK_HTTP_EP_NONE:
		if (n)
			abort();
		return;
	case LK_HTTP_EP_STATUS:
	case LK_HTTP_EP_EVENTS:
	case LK_HTTP_EP_CANCEL:
		if (n < 1 || n > 36 || strspn(r.id, "0123456789abcdefABCDEF-") != n)
			abort();
		break;
	case LK_HTTP_EP_REPLAY:
	case LK_HTTP_EP_RESOLVE:
		if (n < 1 || n > 19 || strchr(r.id, '/'))
			abort();
		break;
	default:
		if (n)
			abort();
	}
	if (strcmp(r.allow, "GET") != 0 && strcmp(r.allow, "POST") != 0)
		abort();
	if (r.allowed != (strcmp(method, r.allow) == 0 ||
			  (strcmp(r.allow, "GET") == 0 && strcmp(method, "HEAD") == 0)))
		abort();
}

static void check_token(const char *auth)
{
	bool want = auth && strncasecmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, TOKEN) == 0;

	if (lk_http_token_ok(TOKEN, auth) != want || !lk_http_token_ok(NULL, auth))
		abort();
}

static void check_bad(int rc, const struct lk_http_bad *bad)
{
	if (rc == 0)
		return;
	if ((bad->status != 400 && bad->status != 413) || !bad->error || !*bad->error ||
	    !memchr(bad->detail, '\0', sizeof(bad->detail)))
		abort();
}

/* The harness's request: what the headers and the blank line gave. */
struct req {
	char *auth;    /* Authorization: value, or NULL */
	char *cl;      /* Content-Length: value, or NULL */
	size_t repeat; /* X-Fuzz-Repeat: the body's length, or 0 for the bytes as given */
	size_t chunk;  /* X-Fuzz-Chunk: the pieces' size, or 0 for a third of the body */
	const char *body;
	size_t body_len;
};

/* The value of a header of plain digits, at most max; 0 when it is anything else. */
static size_t header_size(const char *v, size_t n, size_t max)
{
	size_t x = 0;

	if (n == 0 || n > 9)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return 0;
		x = x * 10 + (size_t)(v[i] - '0');
	}
	return x <= max ? x : 0;
}

/*
 * Whether Content-Length cl must be refused at once, judged without lk_int64_parse: 1 for
 * plain digits (the form a client sends) over the cap, 0 for none or plain digits within
 * it, -1 (no claim) for any other text.
 */
static int announced_too_large(const char *cl)
{
	size_t n = cl ? strlen(cl) : 0;

	if (!cl)
		return 0;
	if (n == 0 || n > 18 || strspn(cl, "0123456789") != n)
		return -1;
	return strtoll(cl, NULL, 10) > LK_HTTP_BODY_MAX;
}

/* Gathers the body as libmicrohttpd hands it over, then parses it both ways. */
static void check_body(const char *cl, const char *body, size_t len, size_t step)
{
	struct lk_http_body b;
	struct lk_http_bad bad;
	struct lk_http_sync_req sr = {NULL, false};
	bool announced = lk_http_body_init(&b, cl);
	int want = announced_too_large(cl);
	int rc;

	if (want >= 0 && announced != (want == 1))
		abort();
	if (step == 0)
		step = len / 3 + 1;
	for (size_t off = 0; off < len; off += step)
		lk_http_body_add(&b, body + off, len - off < step ? len - off : step);
	if (b.buf.len > LK_HTTP_BODY_MAX || b.buf.buf[b.buf.len] != '\0')
		abort();
	/* refused exactly when the announced length or the body itself is over the cap */
	if (b.too_large != (announced || len > LK_HTTP_BODY_MAX))
		abort();
	if (!b.too_large && (b.buf.len != len || memcmp(b.buf.buf, body, len) != 0))
		abort();
	if (lk_http_body_check(&b, &bad) < 0) {
		if (!b.too_large || bad.status != 413)
			abort();
		lk_http_body_release(&b);
		return;
	}
	if (b.too_large)
		abort();
	rc = lk_http_sync_req_parse(b.buf.buf, b.buf.len, &sr, &bad);
	check_bad(rc, &bad);
	if (rc == 0 && !sr.job)
		abort();
	free(sr.job);
	check_bad(lk_http_empty_req_parse(b.buf.buf, b.buf.len, &bad), &bad);
	lk_http_body_release(&b);
}

/* Reads the headers from p up to the blank line, and the body after it, into r. */
static void read_headers(const char *p, const char *end, struct req *r)
{
	while (p < end && *p != '\n') {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n;

		if (!eol)
			eol = end;
		n = (size_t)(eol - p);
		if (n > 15 && strncasecmp(p, "Authorization: ", 15) == 0) {
			free(r->auth);
			r->auth = dup_n(p + 15, n - 15);
		} else if (n > 16 && strncasecmp(p, "Content-Length: ", 16) == 0) {
			free(r->cl);
			r->cl = dup_n(p + 16, n - 16);
		} else if (n > 15 && strncasecmp(p, "X-Fuzz-Repeat: ", 15) == 0) {
			r->repeat = header_size(p + 15, n - 15, 4 * (size_t)LK_HTTP_BODY_MAX);
		} else if (n > 14 && strncasecmp(p, "X-Fuzz-Chunk: ", 14) == 0) {
			r->chunk = header_size(p + 14, n - 14, 4 * (size_t)LK_HTTP_BODY_MAX);
		}
		p = eol < end ? eol + 1 : end;
	}
	if (p < end)
		p++; /* the empty line */
	r->body = p;
	r->body_len = (size_t)(end - p);
}

/* The body r->repeat bytes long, made of r->body over and over (a space when empty). */
static char *repeat_body(const struct req *r)
{
	char *out = lk_xmalloc(r->repeat + 1);
	const char *pat = r->body_len ? r->body : " ";
	size_t n = r->body_len ? r->body_len : 1;

	for (size_t off = 0; off < r->repeat; off += n)
		memcpy(out + off, pat, r->repeat - off < n ? r->repeat - off : n);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *eol, *sp;
	struct req r = {NULL, NULL, 0, 0, NULL, 0};
	char *method, *url, *big = NULL;

	/* request line: METHOD SP URL [SP VERSION] */
	eol = memchr(p, '\n', size);
	if (!eol)
		eol = end;
	sp = memchr(p, ' ', (size_t)(eol - p));
	method = dup_n(p, sp ? (size_t)(sp - p) : (size_t)(eol - p));
	if (sp) {
		const char *u = sp + 1, *v = memchr(u, ' ', (size_t)(eol - u));

		url = dup_n(u, (size_t)((v ? v : eol) - u));
	} else {
		url = dup_n("", 0);
	}
	read_headers(eol < end ? eol + 1 : end, end, &r);
	check_route(method, url);
	check_token(r.auth);
	if (r.repeat) {
		big = repeat_body(&r);
		check_body(r.cl, big, r.repeat, r.chunk);
	} else {
		check_body(r.cl, r.body, r.body_len, r.chunk);
	}
	free(big);
	free(method);
	free(url);
	free(r.auth);
	free(r.cl);
	return 0;
}
