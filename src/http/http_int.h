/*
 * http_int.h - the parts of the HTTP API that need no socket, shared by http.c and the
 * fuzzer (fuzz/fuzz_http.c): which endpoint a method and path name, the bearer token
 * check, the request body gathered under its 64 KiB cap, and the strict JSON bodies of
 * the POST endpoints. Pure: no libmicrohttpd connection, no daemon, no globals; any thread.
 */
#ifndef LK_HTTP_INT_H
#define LK_HTTP_INT_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* The endpoints of docs/http-api.md. */
enum lk_http_ep {
	LK_HTTP_EP_NONE = 0,	 /* no such endpoint: 404 */
	LK_HTTP_EP_LIVEZ,	 /* GET /livez and /healthz */
	LK_HTTP_EP_READYZ,	 /* GET /readyz */
	LK_HTTP_EP_HEALTH,	 /* GET /api/health */
	LK_HTTP_EP_METRICS,	 /* GET /metrics */
	LK_HTTP_EP_JOBS,	 /* GET /api/jobs */
	LK_HTTP_EP_SYNC,	 /* POST /api/sync */
	LK_HTTP_EP_VERIFY,	 /* POST /api/verify */
	LK_HTTP_EP_RUNS,	 /* GET /api/runs */
	LK_HTTP_EP_ERRORS,	 /* GET /api/errors */
	LK_HTTP_EP_USAGE,	 /* GET /api/usage */
	LK_HTTP_EP_STATUS,	 /* GET /api/sync/status/ID */
	LK_HTTP_EP_EVENTS,	 /* GET /api/sync/events/ID */
	LK_HTTP_EP_CANCEL,	 /* POST /api/sync/ID/cancel */
	LK_HTTP_EP_REPLAY,	 /* POST /api/errors/ID/replay */
	LK_HTTP_EP_RESOLVE,	 /* POST /api/errors/ID/resolve */
	LK_HTTP_EP_DASHBOARD,	 /* GET / */
	LK_HTTP_EP_DASHBOARD_JS, /* GET /dashboard.js */
};

/* What lk_http_route_match found for one request. */
struct lk_http_route {
	enum lk_http_ep ep;
	bool needs_token;  /* a POST: checked before the path, whatever the endpoint */
	bool allowed;	   /* the endpoint takes this method (HEAD counts as GET) */
	const char *allow; /* "GET" or "POST": the Allow header of a 405; "" for EP_NONE */
	/* The path's id, NUL-terminated, "" when the endpoint has none: a run id (hex digits
	 * and '-', 1-36 characters) for STATUS, EVENTS and CANCEL; 1-19 bytes of anything
	 * but '/' for REPLAY and RESOLVE (their handler answers 404 for a non-number). */
	char id[40];
};

/* Matches `method` and `url` (the path without the query, as libmicrohttpd passes it;
 * both NUL-terminated) against the route table and fills *out. */
void lk_http_route_match(const char *method, const char *url, struct lk_http_route *out);

/*
 * True when `authorization` (the header's value, NULL when absent) is "Bearer TOKEN"
 * ("Bearer " in any case) with exactly `token`; always true when token is NULL (none
 * configured). Compares in constant time over the token's length.
 */
bool lk_http_token_ok(const char *token, const char *authorization);

/* A request body, gathered up to LK_HTTP_BODY_MAX bytes. */
struct lk_http_body {
	struct lk_buf buf;
	bool too_large; /* more than LK_HTTP_BODY_MAX: answered 413, the rest is not kept */
};

/*
 * Starts an empty body. content_length is the Content-Length header's value or NULL; one
 * announcing more than LK_HTTP_BODY_MAX sets too_large at once, so the request is answered
 * before its body is read. Returns too_large.
 */
bool lk_http_body_init(struct lk_http_body *b, const char *content_length);
/* Appends n bytes of upload; past LK_HTTP_BODY_MAX in all it sets too_large instead. */
void lk_http_body_add(struct lk_http_body *b, const char *data, size_t n);
void lk_http_body_release(struct lk_http_body *b);

/* Why a request was refused: the HTTP status and the JSON error's two fields. */
struct lk_http_bad {
	unsigned status;   /* 400, or 413 for a body over LK_HTTP_BODY_MAX */
	const char *error; /* "bad request", "malformed JSON", "unknown field", ... (static) */
	char detail[256];  /* e.g. "unknown field 'typo'" */
};

/* Returns 0, or -1 with *bad set to the 413 when b->too_large. */
int lk_http_body_check(const struct lk_http_body *b, struct lk_http_bad *bad);

/* The body of POST /api/sync. */
struct lk_http_sync_req {
	char *job; /* heap, the caller frees it; the C string of the JSON value */
	bool full; /* "type": "full" (absent or "incremental": false) */
};

/*
 * Parses the body of POST /api/sync: a JSON object (duplicate keys refused) with only the
 * keys "job" (a non-empty string, required) and "type" ("full" or "incremental",
 * optional). body need not be NUL-terminated. Returns 0 with *out filled, or -1 with *bad
 * set (out untouched).
 */
int lk_http_sync_req_parse(const char *body, size_t len, struct lk_http_sync_req *out,
			   struct lk_http_bad *bad);

/*
 * The body of POST /api/verify: {"job": NAME, "repair": BOOL (default false)}, nothing
 * else. The job goes to out->job (heap), repair to out->full.
 */
int lk_http_verify_req_parse(const char *body, size_t len, struct lk_http_sync_req *out,
			     struct lk_http_bad *bad);

/*
 * The body of the POSTs that take no fields (cancel, replay, resolve): empty or a JSON
 * object without keys. Returns 0, or -1 with *bad set.
 */
int lk_http_empty_req_parse(const char *body, size_t len, struct lk_http_bad *bad);

#endif
