/*
 * fuzz_http.c - feeds the input as an HTTP request to the socket-free half of the API
 * (src/http/http_req.c, the code http.c runs for every request): the request line goes
 * to lk_http_route_match, an "Authorization:" header to lk_http_token_ok and lk_http_who,
 * the "Host:", "Origin:", "Content-Type:" and "Cookie:" headers with those to the access
 * decision (lk_http_host_ok, lk_http_origin_ok, lk_http_json_type, lk_http_session_find,
 * lk_http_admit) under a fixed policy (token t0k3n, read token r34d, listen host
 * 127.0.0.1, allowed hosts dash.example.com and ops.example.com:8443, a writer's and a
 * reader's session), a "Content-Length:" header and the body (after the blank line,
 * handed over in pieces as libmicrohttpd does) to lk_http_body_init/_add/_check, and the
 * body to the strict JSON parsers of POST /api/sync, POST /api/session and of the
 * field-less POSTs.
 *
 *   POST /api/sync HTTP/1.1
 *   Host: 127.0.0.1:8433
 *   Origin: http://127.0.0.1:8433
 *   Content-Type: application/json
 *   Cookie: lockstep_session=0101...01
 *
 *   {"job":"orders","type":"full"}
 *
 * Two headers are the harness's own, so that a small input reaches the 64 KiB body cap
 * whatever libFuzzer's -max_len: "X-Fuzz-Repeat: N" makes the body N bytes (at most four
 * times the cap) by repeating the bytes after the blank line (a space when there are
 * none), and "X-Fuzz-Chunk: N" hands it over in pieces of N bytes (default: a third).
 *
 * Checks, with abort() on a violation: a route names a method to allow and an id of the
 * documented shape; only the probes, the dashboard's files and POST /api/session are
 * open; the token check agrees with a plain comparison; the access decision is a 421,
 * 403, 415 or 401 in the documented order, admits only a Host that is an IP literal or
 * a listed name, a POST only from its own or a listed origin with a JSON Content-Type,
 * and a closed endpoint only with the token (a POST never with the read token); a
 * session cookie counts only when it names a live session's id exactly; a Content-Length of plain
 * digits is refused exactly when over the cap; a body is refused exactly when it or its
 * Content-Length is over the cap, a kept one is kept byte for byte and a refused one is never
 * handed on; a refusal is a 400 or 413 with an error and a detail.
 */
#include "http/http.h"
#include "http/http_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "t0k3n"
#define READ_TOKEN "r34d"
#define NOW_MS 1000000

static char allowed0[] = "dash.example.com", allowed1[] = "ops.example.com:8443";
static char *const allowed_hosts[] = {allowed0, allowed1};
static const struct lk_http_policy policy = {TOKEN, READ_TOKEN, "127.0.0.1", allowed_hosts, 2};

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
	if (r.post != (strcmp(method, "POST") == 0) || !memchr(r.id, '\0', sizeof(r.id)))
		abort();
	if (r.open != (r.ep == LK_HTTP_EP_SESSION || r.ep == LK_HTTP_EP_LIVEZ ||
		       r.ep == LK_HTTP_EP_READYZ || r.ep == LK_HTTP_EP_DASHBOARD ||
		       r.ep == LK_HTTP_EP_DASHBOARD_JS))
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
	char *auth;			      /* Authorization: value, or NULL */
	char *host, *origin, *ctype, *cookie; /* Host:, Origin:, Content-Type:, Cookie: */
	char *cl;			      /* Content-Length: value, or NULL */
	size_t repeat; /* X-Fuzz-Repeat: the body's length, or 0 for the bytes as given */
	size_t chunk;  /* X-Fuzz-Chunk: the pieces' size, or 0 for a third of the body */
	const char *body;
	size_t body_len;
};

/* ---- the access decision ---- */

/* The host part of a Host or an origin's host[:port]: "[...]" or up to the first ':'. */
static void host_part(const char *s, char *out, size_t out_size)
{
	size_t n =
		s[0] == '[' && strchr(s, ']') ? (size_t)(strchr(s, ']') - s) + 1 : strcspn(s, ":");

	if (n >= out_size)
		n = out_size - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

static bool literal(const char *h)
{
	unsigned char a[16];
	char v6[256];
	size_t n = strlen(h);

	if (inet_pton(AF_INET, h, a) == 1)
		return true;
	if (n < 3 || n - 2 >= sizeof(v6) || h[0] != '[' || h[n - 1] != ']')
		return false;
	memcpy(v6, h + 1, n - 2);
	v6[n - 2] = '\0';
	return inet_pton(AF_INET6, v6, a) == 1;
}

static bool listed_name(const char *h)
{
	return strcasecmp(h, "localhost") == 0 || strcasecmp(h, "127.0.0.1") == 0 ||
	       strcasecmp(h, "dash.example.com") == 0 || strcasecmp(h, "ops.example.com") == 0;
}

/* An admitted Host is an IP literal or a name the policy lists; none is admitted too. */
static void check_host(const char *host)
{
	char h[256];
	bool ok = lk_http_host_ok(&policy, host);

	if (!host || !*host) {
		if (!ok)
			abort();
		return;
	}
	host_part(host, h, sizeof(h));
	if (ok && !literal(h) && !listed_name(h))
		abort();
	if (ok &&
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:[]-") !=
		    strlen(host))
		abort();
	/* what the API's own clients send: an IPv4 literal with the port, and localhost */
	if (strcmp(host, "127.0.0.1:8433") == 0 || strcmp(host, "localhost") == 0)
		if (!ok)
			abort();
}

/* An admitted Origin is the Host's own (http) or an allowed host's (http or https). */
static void check_origin(const char *host, const char *origin)
{
	bool ok = lk_http_origin_ok(&policy, host, origin);
	const char *rest;
	char o[256], hh[256];

	if (!origin) {
		if (!ok)
			abort();
		return;
	}
	if (!ok)
		return;
	if (strncasecmp(origin, "http://", 7) == 0)
		rest = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		rest = origin + 8;
	else
		abort(); /* "null", or no web origin: never admitted */
	if (strchr(rest, '/'))
		abort();
	host_part(rest, o, sizeof(o));
	if (host)
		host_part(host, hh, sizeof(hh));
	if (!(host && strcasecmp(o, hh) == 0) && strcasecmp(o, "dash.example.com") != 0 &&
	    strcasecmp(o, "ops.example.com") != 0)
		abort();
}

static void check_ctype(const char *ct)
{
	const char *p = ct;

	if (!lk_http_json_type(ct))
		return;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "application/json", 16) != 0)
		abort();
}

/* Two sessions (a writer's id of 0x01 bytes, a reader's of 0x02), and what the Cookie
 * header's exact form must find. */
static enum lk_http_who check_session(const char *cookie)
{
	static struct lk_http_sessions ss;
	unsigned char rw[32], rr[32];
	char idw[65], idr[65], want[96];
	enum lk_http_who who;

	lk_http_sessions_clear(&ss);
	memset(rw, 1, sizeof(rw));
	memset(rr, 2, sizeof(rr));
	lk_http_session_add(&ss, rw, true, NOW_MS, idw);
	lk_http_session_add(&ss, rr, false, NOW_MS, idr);
	who = lk_http_session_find(&ss, cookie, NOW_MS + 1);
	if (who == LK_HTTP_WRITER && !strstr(cookie, idw))
		abort();
	if (who == LK_HTTP_READER && !strstr(cookie, idr))
		abort();
	(void)snprintf(want, sizeof(want), LK_HTTP_SESSION_COOKIE "=%s", idw);
	if (cookie && strcmp(cookie, want) == 0 && who != LK_HTTP_WRITER)
		abort();
	/* expired, or forgotten: nothing */
	if (lk_http_session_find(&ss, cookie, NOW_MS + LK_HTTP_SESSION_TTL_MS) != LK_HTTP_ANON)
		abort();
	lk_http_sessions_clear(&ss);
	if (lk_http_session_find(&ss, cookie, NOW_MS + 1) != LK_HTTP_ANON)
		abort();
	return who;
}

static void check_access(const char *method, const char *url, const struct req *q)
{
	struct lk_http_route r;
	struct lk_http_hdrs h = {q->host, q->origin, q->ctype, q->auth, q->cookie};
	struct lk_http_bad bad;
	enum lk_http_who s = q->cookie ? check_session(q->cookie) : LK_HTTP_ANON;
	enum lk_http_who who = lk_http_who(&policy, q->auth, s);
	bool host, origin, json, full, read;
	unsigned want = 0;
	int rc;

	lk_http_route_match(method, url, &r);
	check_host(q->host);
	check_origin(q->host, q->origin);
	check_ctype(q->ctype);
	full = q->auth && strncasecmp(q->auth, "Bearer ", 7) == 0 &&
	       strcmp(q->auth + 7, TOKEN) == 0;
	read = q->auth && strncasecmp(q->auth, "Bearer ", 7) == 0 &&
	       strcmp(q->auth + 7, READ_TOKEN) == 0;
	if (who != (full || s == LK_HTTP_WRITER	  ? LK_HTTP_WRITER
		    : read || s == LK_HTTP_READER ? LK_HTTP_READER
						  : LK_HTTP_ANON))
		abort();
	host = lk_http_host_ok(&policy, q->host);
	origin = lk_http_origin_ok(&policy, q->host, q->origin);
	json = lk_http_json_type(q->ctype);
	if (!host)
		want = 421;
	else if (r.post && !origin)
		want = 403;
	else if (r.post && !json)
		want = 415;
	else if (!r.open && who == LK_HTTP_ANON)
		want = 401;
	else if (!r.open && r.post && who != LK_HTTP_WRITER)
		want = 403;
	memset(&bad, 0, sizeof(bad));
	rc = lk_http_admit(&policy, &r, &h, who, &bad);
	if ((rc == 0) != (want == 0) ||
	    (rc < 0 && (bad.status != want || !bad.error || !*bad.error)))
		abort();
	/* without a token configured, nothing but the Host, Origin and Content-Type rules */
	{
		struct lk_http_policy open = {NULL, NULL, "127.0.0.1", NULL, 0};

		if (lk_http_who(&open, q->auth, LK_HTTP_ANON) != LK_HTTP_WRITER)
			abort();
		rc = lk_http_admit(&open, &r, &h, LK_HTTP_WRITER, &bad);
		if (rc < 0 && bad.status == 401)
			abort();
	}
}

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
	sr.job = NULL;
	rc = lk_http_session_req_parse(b.buf.buf, b.buf.len, &sr.job, &bad);
	check_bad(rc, &bad);
	if (rc == 0 && (!sr.job || !*sr.job))
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
		} else if (n >= 6 && strncasecmp(p, "Host: ", 6) == 0) {
			free(r->host);
			r->host = dup_n(p + 6, n - 6);
		} else if (n >= 8 && strncasecmp(p, "Origin: ", 8) == 0) {
			free(r->origin);
			r->origin = dup_n(p + 8, n - 8);
		} else if (n >= 14 && strncasecmp(p, "Content-Type: ", 14) == 0) {
			free(r->ctype);
			r->ctype = dup_n(p + 14, n - 14);
		} else if (n >= 8 && strncasecmp(p, "Cookie: ", 8) == 0) {
			free(r->cookie);
			r->cookie = dup_n(p + 8, n - 8);
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
	struct req r = {NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, 0};
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
	check_access(method, url, &r);
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
	free(r.host);
	free(r.origin);
	free(r.ctype);
	free(r.cookie);
	free(r.cl);
	return 0;
}
