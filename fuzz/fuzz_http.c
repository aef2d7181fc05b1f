/*
 * fuzz_http.c - feeds the input as an HTTP request to the socket-free half of the API
 * (src/http/http_req.c, the code http.c runs for every request): the request line goes
 * to lk_http_route_match, an "Authorization:" header to lk_http_token_ok, a
 * "Content-Length:" header and the body (after the blank line, handed over in a few
 * chunks as libmicrohttpd does) to lk_http_body_init/_add/_check, and the body to the
 * strict JSON parsers of POST /api/sync and of the field-less POSTs.
 *
 *   POST /api/sync HTTP/1.1
 *   Authorization: Bearer t0k3n
 *
 *   {"job":"orders","type":"full"}
 *
 * Checks, with abort() on a violation: a route names a method to allow and an id of the
 * documented shape; only POST needs the token; the token check agrees with a plain
 * comparison; a body under the cap is kept byte for byte and one over it never is; a
 * refusal is a 400 or 413 with an error and a detail.
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

/* Gathers the body as libmicrohttpd hands it over, then parses it both ways. */
static void check_body(const char *cl, const char *body, size_t len)
{
	struct lk_http_body b;
	struct lk_http_bad bad;
	struct lk_http_sync_req sr = {NULL, false};
	size_t step = len / 3 + 1;
	int rc;

	(void)lk_http_body_init(&b, cl);
	for (size_t off = 0; off < len; off += step)
		lk_http_body_add(&b, body + off, len - off < step ? len - off : step);
	if (b.buf.len > LK_HTTP_BODY_MAX || b.buf.buf[b.buf.len] != '\0')
		abort();
	if (!b.too_large && (b.buf.len != len || memcmp(b.buf.buf, body, len) != 0))
		abort();
	if (lk_http_body_check(&b, &bad) < 0) {
		if (bad.status != 413)
			abort();
		lk_http_body_release(&b);
		return;
	}
	rc = lk_http_sync_req_parse(b.buf.buf, b.buf.len, &sr, &bad);
	check_bad(rc, &bad);
	if (rc == 0 && !sr.job)
		abort();
	free(sr.job);
	check_bad(lk_http_empty_req_parse(b.buf.buf, b.buf.len, &bad), &bad);
	lk_http_body_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *eol, *sp;
	char *method, *url, *auth = NULL, *cl = NULL;

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
	p = eol < end ? eol + 1 : end;
	/* headers until an empty line */
	while (p < end && *p != '\n') {
		size_t n;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		n = (size_t)(eol - p);
		if (n > 15 && strncasecmp(p, "Authorization: ", 15) == 0) {
			free(auth);
			auth = dup_n(p + 15, n - 15);
		} else if (n > 16 && strncasecmp(p, "Content-Length: ", 16) == 0) {
			free(cl);
			cl = dup_n(p + 16, n - 16);
		}
		p = eol < end ? eol + 1 : end;
	}
	if (p < end)
		p++; /* the empty line */
	check_route(method, url);
	check_token(auth);
	check_body(cl, p, (size_t)(end - p));
	free(method);
	free(url);
	free(auth);
	free(cl);
	return 0;
}
