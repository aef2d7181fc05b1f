/*
 * http_int.h - the parts of the HTTP API that need no socket, shared by http.c and the
 * fuzzer (fuzz/fuzz_http.c): which endpoint a method and path name, who may call it (the
 * Host, Origin and Content-Type rules, the bearer tokens and the session cookie: see
 * docs/security.md), the request body gathered under its 64 KiB cap, and the strict JSON
 * bodies of the POST endpoints. Pure: no libmicrohttpd connection, no daemon, no globals,
 * no locks (the caller guards a session table it shares); any thread.
 */
#ifndef LK_HTTP_INT_H
#define LK_HTTP_INT_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
	LK_HTTP_EP_SESSION,	 /* POST /api/session */
};

/* What lk_http_route_match found for one request. */
struct lk_http_route {
	enum lk_http_ep ep;
	bool post;	   /* the method is POST: the CSRF rules apply, whatever the endpoint */
	bool open;	   /* answered without credentials: the probes and the dashboard's
			    * two files (another method: a 405), and /api/session */
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

/* What a request's credentials allow. */
enum lk_http_who {
	LK_HTTP_ANON = 0, /* none, or none that is valid */
	LK_HTTP_READER,	  /* http.read_token, or a session made with it: GETs only */
	LK_HTTP_WRITER,	  /* http.token, or a session made with it: everything */
};

/* The access settings in force (docs/security.md). Borrowed pointers. */
struct lk_http_policy {
	const char *token;	 /* http.token; NULL: none, every request is a writer's */
	const char *read_token;	 /* http.read_token; NULL: none */
	const char *listen_host; /* http.listen's host without brackets; NULL: none */
	char *const *allowed;	 /* http.allowed_hosts: "HOST" or "HOST:PORT" */
	int nallowed;
};

/* The request headers the checks read, NULL when absent. */
struct lk_http_hdrs {
	const char *host, *origin, *content_type, *authorization, *cookie;
};

/*
 * True when the Host header may reach this server: absent or empty (HTTP/1.0), an IPv4
 * literal or a bracketed IPv6 literal (with an optional port), or a name equal (in any
 * case) to "localhost", p->listen_host or an entry of p->allowed (whose port, when the
 * entry has one, must be the Host's; a Host without a port means 80). DNS rebinding
 * protection: a page served under another name cannot read the API through a browser.
 */
bool lk_http_host_ok(const struct lk_http_policy *p, const char *host);

/*
 * True when a POST's Origin header (NULL: absent, always true) names the request's own
 * origin ("http://" + Host, equal in any case, the ports compared with 80 as the default)
 * or a host of p->allowed (scheme http or https, the entry's port if it has one; 80 or
 * 443 by the scheme otherwise). "null" and anything else is false.
 */
bool lk_http_origin_ok(const struct lk_http_policy *p, const char *host, const char *origin);

/* True when a Content-Type value is application/json (any case, parameters allowed). */
bool lk_http_json_type(const char *content_type);

/*
 * The credentials of a request: a bearer token (p->token: WRITER, p->read_token: READER)
 * or `session` (what its session cookie allows, from lk_http_session_find), the higher of
 * the two; WRITER for anyone when p->token is NULL. Constant time over each token.
 */
enum lk_http_who lk_http_who(const struct lk_http_policy *p, const char *authorization,
			     enum lk_http_who session);

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
	unsigned status;   /* 400, 413 for a body over LK_HTTP_BODY_MAX; lk_http_admit's
			    * 401, 403, 415 and 421 */
	const char *error; /* "bad request", "malformed JSON", "unknown field", ... (static) */
	char detail[256];  /* e.g. "unknown field 'typo'" */
};

/*
 * Whether the request r (method, headers h, credentials `who` from lk_http_who) may go
 * on to its endpoint, checked in this order: 421 for a Host that lk_http_host_ok refuses;
 * for a POST, 403 for an Origin that lk_http_origin_ok refuses and 415 for a Content-Type
 * other than application/json; then, unless r->open, 401 for ANON and 403 for a READER's
 * POST. Returns 0, or -1 with *bad set (detail: what to do).
 */
int lk_http_admit(const struct lk_http_policy *p, const struct lk_http_route *r,
		  const struct lk_http_hdrs *h, enum lk_http_who who, struct lk_http_bad *bad);

/* ---- sessions: POST /api/session gives a cookie that stands for the token ---- */

#define LK_HTTP_SESSION_COOKIE "lockstep_session"
#define LK_HTTP_SESSIONS_MAX 64			    /* the oldest is dropped past it */
#define LK_HTTP_SESSION_TTL_MS (12LL * 3600 * 1000) /* a session's life, from its making */

struct lk_http_session {
	char id[65];	    /* 64 hex digits (32 random bytes); "" for a free slot */
	int64_t expires_ms; /* in the caller's clock (lk_mono_ms) */
	bool write;	    /* made with http.token (else with http.read_token) */
};

struct lk_http_sessions {
	struct lk_http_session s[LK_HTTP_SESSIONS_MAX];
};

/*
 * Adds a session whose id is the hex of rnd (32 random bytes from the caller) into a
 * free or expired slot, else the one that expires first; copies the id to id_out.
 */
void lk_http_session_add(struct lk_http_sessions *ss, const unsigned char rnd[32], bool write,
			 int64_t now_ms, char id_out[65]);

/*
 * What the session that the Cookie header names (LK_HTTP_SESSION_COOKIE=ID among its
 * pairs) allows: WRITER, READER, or ANON when there is none, or it is unknown or expired.
 * Compares the id with every slot in constant time.
 */
enum lk_http_who lk_http_session_find(const struct lk_http_sessions *ss, const char *cookie,
				      int64_t now_ms);

/* Forgets every session (the tokens changed). */
void lk_http_sessions_clear(struct lk_http_sessions *ss);

/*
 * Parses the body of POST /api/session: {"token": STRING}, nothing else. Returns 0 with
 * *token set (heap, the caller wipes and frees it), or -1 with *bad set.
 */
int lk_http_session_req_parse(const char *body, size_t len, char **token, struct lk_http_bad *bad);

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
