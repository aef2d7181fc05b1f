/*
 * http_req.c - the socket-free half of the HTTP API (http_int.h): the route table, who may
 * call what (Host, Origin, Content-Type, tokens, sessions), the body under its cap and the
 * strict JSON bodies; http.c answers.
 */
#include "core/units.h"
#include "http.h"
#include "http_int.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- routes ---- */

static bool is(const char *method, const char *m)
{
	return strcmp(method, m) == 0;
}

/* A path segment that can be a run id (uuid text). */
static bool id_ok(const char *s, size_t n)
{
	if (n == 0 || n > 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
		      (ch >= 'A' && ch <= 'F') || ch == '-'))
			return false;
	}
	return true;
}

/* The fixed paths, each with its one method. */
static const struct {
	const char *path;
	enum lk_http_ep ep;
	bool post;
} fixed[] = {
	{"/livez", LK_HTTP_EP_LIVEZ, false},
	{"/healthz", LK_HTTP_EP_LIVEZ, false},
	{"/readyz", LK_HTTP_EP_READYZ, false},
	{"/api/health", LK_HTTP_EP_HEALTH, false},
	{"/metrics", LK_HTTP_EP_METRICS, false},
	{"/api/jobs", LK_HTTP_EP_JOBS, false},
	{"/api/sync", LK_HTTP_EP_SYNC, true},
	{"/api/verify", LK_HTTP_EP_VERIFY, true},
	{"/api/runs", LK_HTTP_EP_RUNS, false},
	{"/api/errors", LK_HTTP_EP_ERRORS, false},
	{"/api/usage", LK_HTTP_EP_USAGE, false},
	{"/", LK_HTTP_EP_DASHBOARD, false},
	{"/dashboard.js", LK_HTTP_EP_DASHBOARD_JS, false},
	{"/api/session", LK_HTTP_EP_SESSION, true},
};

static void found(struct lk_http_route *out, const char *method, enum lk_http_ep ep, bool post,
		  const char *id, size_t n)
{
	out->ep = ep;
	out->allow = post ? "POST" : "GET";
	out->allowed = post ? is(method, "POST") : is(method, "GET") || is(method, "HEAD");
	memcpy(out->id, id, n);
	out->id[n] = '\0';
	/* what answers without credentials: probes, the page (no data in it), and the call
	 * that checks a token to make a session (another method gets its 405, no data) */
	out->open = ep == LK_HTTP_EP_SESSION || ep == LK_HTTP_EP_LIVEZ || ep == LK_HTTP_EP_READYZ ||
		    ep == LK_HTTP_EP_DASHBOARD || ep == LK_HTTP_EP_DASHBOARD_JS;
}

void lk_http_route_match(const char *method, const char *url, struct lk_http_route *out)
{
	const char *rest;
	size_t n;

	memset(out, 0, sizeof(*out));
	out->ep = LK_HTTP_EP_NONE;
	out->allow = "";
	out->post = is(method, "POST");
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if (strcmp(url, fixed[i].path) == 0) {
			found(out, method, fixed[i].ep, fixed[i].post, "", 0);
			return;
		}
	}
	if (strncmp(url, "/api/sync/status/", 17) == 0 && id_ok(url + 17, strlen(url + 17)))
		found(out, method, LK_HTTP_EP_STATUS, false, url + 17, strlen(url + 17));
	else if (strncmp(url, "/api/sync/events/", 17) == 0 && id_ok(url + 17, strlen(url + 17)))
		found(out, method, LK_HTTP_EP_EVENTS, false, url + 17, strlen(url + 17));
	else if (strncmp(url, "/api/sync/", 10) == 0 && (rest = strchr(url + 10, '/')) &&
		 strcmp(rest, "/cancel") == 0 && id_ok(url + 10, (size_t)(rest - url - 10)))
		found(out, method, LK_HTTP_EP_CANCEL, true, url + 10, (size_t)(rest - url - 10));
	else if (strncmp(url, "/api/errors/", 12) == 0 && (rest = strchr(url + 12, '/')) &&
		 (strcmp(rest, "/replay") == 0 || strcmp(rest, "/resolve") == 0) &&
		 (n = (size_t)(rest - url - 12)) > 0 && n < 20)
		found(out, method,
		      strcmp(rest, "/replay") == 0 ? LK_HTTP_EP_REPLAY : LK_HTTP_EP_RESOLVE, true,
		      url + 12, n);
}

bool lk_http_token_ok(const char *token, const char *auth)
{
	size_t n, m;
	unsigned diff;

	if (!token)
		return true;
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	auth += 7;
	n = strlen(auth);
	m = strlen(token);
	/* constant time over the token's length: no early exit on the first difference */
	diff = (unsigned)(n != m);
	for (size_t i = 0; i < m; i++)
		diff |= (unsigned)((unsigned char)token[i] ^ (unsigned char)(i < n ? auth[i] : 0));
	return diff == 0;
}

/* ---- bodies ---- */

bool lk_http_body_init(struct lk_http_body *b, const char *content_length)
{
	int64_t len = 0;

	lk_buf_init(&b->buf);
	b->too_large = content_length && lk_int64_parse(content_length, &len) == 0 &&
		       len > LK_HTTP_BODY_MAX;
	return b->too_large;
}

void lk_http_body_add(struct lk_http_body *b, const char *data, size_t n)
{
	if (!b->too_large && b->buf.len + n <= LK_HTTP_BODY_MAX)
		lk_buf_add(&b->buf, data, n);
	else
		b->too_large = true;
}

void lk_http_body_release(struct lk_http_body *b)
{
	lk_buf_release(&b->buf);
	b->too_large = false;
}

static int refuse(struct lk_http_bad *bad, unsigned status, const char *error, const char *detail)
{
	bad->status = status;
	bad->error = error;
	(void)snprintf(bad->detail, sizeof(bad->detail), "%s", detail);
	return -1;
}

static int too_large(struct lk_http_bad *bad)
{
	return refuse(bad, MHD_HTTP_CONTENT_TOO_LARGE, "body too large",
		      "request bodies are limited to 64 KiB");
}

int lk_http_body_check(const struct lk_http_body *b, struct lk_http_bad *bad)
{
	return b->too_large ? too_large(bad) : 0;
}

/* ---- who may call what (docs/security.md) ---- */

/* A host[:port] split: the host (with its brackets for IPv6) and the port, 0 when none. */
struct hostport {
	char host[256];
	long port; /* 0: none written; -1: not a port */
};

static long port_of(const char *s)
{
	long v = 0;

	if (!*s || strlen(s) > 5)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v >= 1 && v <= 65535 ? v : -1;
}

/* Splits "HOST", "HOST:PORT", "[V6]" or "[V6]:PORT" of n bytes; false when it is none. */
static bool split_hostport(const char *s, size_t n, struct hostport *hp)
{
	const char *colon = NULL;
	size_t hn;

	hp->port = 0;
	if (n == 0 || n >= sizeof(hp->host) || memchr(s, '\0', n))
		return false;
	if (s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		if (!rb)
			return false;
		hn = (size_t)(rb - s) + 1;
		if (hn < n && s[hn] != ':')
			return false;
		colon = hn < n ? s + hn : NULL;
	} else {
		for (size_t i = 0; i < n; i++) {
			if (s[i] == ':' && colon)
				return false; /* an unbracketed IPv6 address is no Host */
			if (s[i] == ':')
				colon = s + i;
		}
		hn = colon ? (size_t)(colon - s) : n;
	}
	if (hn == 0)
		return false;
	memcpy(hp->host, s, hn);
	hp->host[hn] = '\0';
	if (colon) {
		char port[8];
		size_t pn = n - (size_t)(colon + 1 - s);

		if (pn == 0 || pn >= sizeof(port))
			return false;
		memcpy(port, colon + 1, pn);
		port[pn] = '\0';
		hp->port = port_of(port);
		if (hp->port < 0)
			return false;
	}
	return true;
}

/* An IPv4 literal, or an IPv6 literal in brackets. */
static bool ip_literal(const char *host)
{
	unsigned char a[sizeof(struct in6_addr)];
	char v6[256];
	size_t n = strlen(host);

	if (inet_pton(AF_INET, host, a) == 1)
		return true;
	if (n < 3 || host[0] != '[' || host[n - 1] != ']')
		return false;
	memcpy(v6, host + 1, n - 2);
	v6[n - 2] = '\0';
	return inet_pton(AF_INET6, v6, a) == 1;
}

/* True when an http.allowed_hosts entry names host (and port: 0 means the default). */
static bool allowed_match(const char *entry, const char *host, long port, long def_port)
{
	struct hostport e;

	if (!entry || !split_hostport(entry, strlen(entry), &e) || strcasecmp(e.host, host) != 0)
		return false;
	return e.port == 0 || e.port == (port ? port : def_port);
}

static bool in_allowed(const struct lk_http_policy *p, const char *host, long port, long def)
{
	for (int i = 0; i < p->nallowed; i++) {
		if (allowed_match(p->allowed[i], host, port, def))
			return true;
	}
	return false;
}

/* Whether `host` is the listen address's host, written bare or in brackets. */
static bool is_listen_host(const struct lk_http_policy *p, const char *host)
{
	size_t n = p->listen_host ? strlen(p->listen_host) : 0;
	size_t hn = strlen(host);

	if (!n)
		return false;
	if (strcasecmp(host, p->listen_host) == 0)
		return true;
	return hn == n + 2 && host[0] == '[' && strncasecmp(host + 1, p->listen_host, n) == 0;
}

bool lk_http_host_ok(const struct lk_http_policy *p, const char *host)
{
	struct hostport hp;

	if (!host || !*host)
		return true; /* HTTP/1.0: no Host, no name a page could have chosen */
	if (!split_hostport(host, strlen(host), &hp))
		return false;
	if (ip_literal(hp.host) || strcasecmp(hp.host, "localhost") == 0 ||
	    is_listen_host(p, hp.host))
		return true;
	return in_allowed(p, hp.host, hp.port, 80);
}

bool lk_http_origin_ok(const struct lk_http_policy *p, const char *host, const char *origin)
{
	struct hostport o, h;
	const char *rest;
	long def;

	if (!origin)
		return true;
	if (strncasecmp(origin, "http://", 7) == 0) {
		rest = origin + 7;
		def = 80;
	} else if (strncasecmp(origin, "https://", 8) == 0) {
		rest = origin + 8;
		def = 443;
	} else {
		return false; /* "null" (a sandboxed frame, a file), or no web origin */
	}
	if (!split_hostport(rest, strlen(rest), &o))
		return false;
	/* the same origin as the request: plain http (the API has no TLS) to the Host */
	if (def == 80 && host && *host && split_hostport(host, strlen(host), &h) &&
	    strcasecmp(o.host, h.host) == 0 && (o.port ? o.port : 80) == (h.port ? h.port : 80))
		return true;
	return in_allowed(p, o.host, o.port, def);
}

bool lk_http_json_type(const char *ct)
{
	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, "application/json", 16) != 0)
		return false;
	ct += 16;
	return *ct == '\0' || *ct == ';' || *ct == ' ' || *ct == '\t';
}

enum lk_http_who lk_http_who(const struct lk_http_policy *p, const char *authorization,
			     enum lk_http_who session)
{
	bool w, r;

	if (!p->token)
		return LK_HTTP_WRITER;
	/* both compared, whatever the first gave: the time does not tell which matched */
	w = lk_http_token_ok(p->token, authorization);
	r = p->read_token && lk_http_token_ok(p->read_token, authorization);
	if (w || session == LK_HTTP_WRITER)
		return LK_HTTP_WRITER;
	return r || session == LK_HTTP_READER ? LK_HTTP_READER : LK_HTTP_ANON;
}

int lk_http_admit(const struct lk_http_policy *p, const struct lk_http_route *r,
		  const struct lk_http_hdrs *h, enum lk_http_who who, struct lk_http_bad *bad)
{
	if (!lk_http_host_ok(p, h->host))
		return refuse(bad, MHD_HTTP_MISDIRECTED_REQUEST, "misdirected request",
			      "the Host header names no address of this server; list the name "
			      "under http.allowed_hosts to reach the API by it");
	if (r->post && !lk_http_origin_ok(p, h->host, h->origin))
		return refuse(bad, MHD_HTTP_FORBIDDEN, "forbidden",
			      "a POST from another origin is refused; list its host under "
			      "http.allowed_hosts (a reverse proxy's name, for example)");
	if (r->post && !lk_http_json_type(h->content_type))
		return refuse(bad, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported media type",
			      "a POST needs the header Content-Type: application/json");
	if (r->open)
		return 0;
	if (who == LK_HTTP_ANON)
		return refuse(bad, MHD_HTTP_UNAUTHORIZED, "unauthorized",
			      "this call needs the header Authorization: Bearer TOKEN "
			      "(http.token, or http.read_token for a GET) or a session "
			      "(POST /api/session)");
	if (r->post && who != LK_HTTP_WRITER)
		return refuse(bad, MHD_HTTP_FORBIDDEN, "forbidden",
			      "http.read_token (and a session made with it) allows GETs only");
	return 0;
}

/* ---- sessions ---- */

void lk_http_session_add(struct lk_http_sessions *ss, const unsigned char rnd[32], bool write,
			 int64_t now_ms, char id_out[65])
{
	static const char hex[] = "0123456789abcdef";
	struct lk_http_session *slot = &ss->s[0];

	for (int i = 0; i < LK_HTTP_SESSIONS_MAX; i++) {
		struct lk_http_session *x = &ss->s[i];

		if (!x->id[0] || x->expires_ms <= now_ms) {
			slot = x;
			break;
		}
		if (x->expires_ms < slot->expires_ms)
			slot = x;
	}
	for (int i = 0; i < 32; i++) {
		slot->id[(size_t)i * 2] = hex[rnd[i] >> 4];
		slot->id[(size_t)i * 2 + 1] = hex[rnd[i] & 15];
	}
	slot->id[64] = '\0';
	slot->expires_ms = now_ms + LK_HTTP_SESSION_TTL_MS;
	slot->write = write;
	memcpy(id_out, slot->id, 65);
}

/* The value of cookie `name` in a Cookie header ("a=1; b=2"), copied to out; false if none
 * or longer than out. */
static bool cookie_value(const char *cookie, const char *name, char *out, size_t out_size)
{
	size_t nn = strlen(name);

	while (cookie && *cookie) {
		const char *end = strchr(cookie, ';');
		size_t len;

		while (*cookie == ' ' || *cookie == '\t')
			cookie++;
		len = end ? (size_t)(end - cookie) : strlen(cookie);
		if (len > nn && strncmp(cookie, name, nn) == 0 && cookie[nn] == '=') {
			size_t vn = len - nn - 1;

			while (vn && (cookie[nn + vn] == ' ' || cookie[nn + vn] == '\t'))
				vn--;
			if (vn >= out_size)
				return false;
			memcpy(out, cookie + nn + 1, vn);
			out[vn] = '\0';
			return true;
		}
		cookie = end ? end + 1 : NULL;
	}
	return false;
}

enum lk_http_who lk_http_session_find(const struct lk_http_sessions *ss, const char *cookie,
				      int64_t now_ms)
{
	char id[65];
	enum lk_http_who who = LK_HTTP_ANON;

	if (!cookie_value(cookie, LK_HTTP_SESSION_COOKIE, id, sizeof(id)) || strlen(id) != 64)
		return LK_HTTP_ANON;
	for (int i = 0; i < LK_HTTP_SESSIONS_MAX; i++) {
		const struct lk_http_session *x = &ss->s[i];
		unsigned diff = 0;

		/* every slot, every byte: no early exit on the first difference */
		for (int k = 0; k < 64; k++)
			diff |= (unsigned)((unsigned char)x->id[k] ^ (unsigned char)id[k]);
		if (diff == 0 && x->id[0] && x->expires_ms > now_ms)
			who = x->write ? LK_HTTP_WRITER : LK_HTTP_READER;
	}
	return who;
}

void lk_http_sessions_clear(struct lk_http_sessions *ss)
{
	volatile char *p = (volatile char *)ss;

	for (size_t i = 0; i < sizeof(*ss); i++)
		p[i] = 0;
}

/*
 * Parses the body as a JSON object whose keys are all in `allowed` (NULL-terminated);
 * an empty body counts as {} when empty_ok. Returns the object, or NULL with *bad set.
 */
static json_t *body_object(const char *body, size_t len, bool empty_ok, const char *const *allowed,
			   struct lk_http_bad *bad)
{
	json_error_t je;
	json_t *j;
	const char *key;
	json_t *v;

	if (len > LK_HTTP_BODY_MAX) {
		(void)too_large(bad);
		return NULL;
	}
	if (len == 0 && empty_ok)
		return json_object();
	if (len == 0) {
		(void)refuse(bad, MHD_HTTP_BAD_REQUEST, "bad request",
			     "expected a JSON object in the body");
		return NULL;
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		bad->status = MHD_HTTP_BAD_REQUEST;
		bad->error = "malformed JSON";
		(void)snprintf(bad->detail, sizeof(bad->detail),
			       "malformed JSON at line %d column %d: %s", je.line, je.column,
			       je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		(void)refuse(bad, MHD_HTTP_BAD_REQUEST, "bad request", "expected a JSON object");
		return NULL;
	}
	json_object_foreach(j, key, v)
	{
		bool known = false;

		for (int i = 0; allowed[i]; i++)
			known = known || strcmp(key, allowed[i]) == 0;
		if (!known) {
			bad->status = MHD_HTTP_BAD_REQUEST;
			bad->error = "unknown field";
			(void)snprintf(bad->detail, sizeof(bad->detail), "unknown field '%.100s'",
				       key);
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

int lk_http_sync_req_parse(const char *body, size_t len, struct lk_http_sync_req *out,
			   struct lk_http_bad *bad)
{
	static const char *const allowed[] = {"job", "type", NULL};
	json_t *j = body_object(body, len, false, allowed, bad);
	json_t *job, *type;
	int rc = -1;

	if (!j)
		return -1;
	job = json_object_get(j, "job");
	type = json_object_get(j, "type");
	if (!json_is_string(job) || json_string_length(job) == 0) {
		(void)refuse(bad, MHD_HTTP_BAD_REQUEST, "bad request",
			     "field 'job' must be a non-empty string");
	} else if (type && (!json_is_string(type) ||
			    (strcmp(json_string_value(type), "full") != 0 &&
			     strcmp(json_string_value(type), "incremental") != 0))) {
		(void)refuse(bad, MHD_HTTP_BAD_REQUEST, "bad request",
			     "field 'type' must be \"full\" or \"incremental\"");
	} else {
		out->job = lk_xstrdup(json_string_value(job));
		out->full = type && strcmp(json_string_value(type), "full") == 0;
		rc = 0;
	}
	json_decref(j);
	return rc;
}

int lk_http_verify_req_parse(const char *body, size_t len, struct lk_http_sync_req *out,
			     struct lk_http_bad *bad)
{
	static const char *const allowed[] = {"job", "repair", NULL};
	json_t *j = body_object(body, len, false, allowed, bad);
	json_t *job, *repair;
	int rc = -1;

	if (!j)
		return -1;
	job = json_object_get(j, "job");
	repair = json_object_get(j, "repair");
	if (!json_is_string(job) || json_string_length(job) == 0) {
		(void)refuse(bad, MHD_HTTP_BAD_REQUEST, "bad request",
			     "field 'job' must be a non-empty string");
	} else if (repair && !json_is_boolean(repair)) {
		(void)refuse(bad, MHD_HTTP_BAD_REQUEST, "bad request",
			     "field 'repair' must be true or false");
	} else {
		out->job = lk_xstrdup(json_string_value(job));
		out->full = json_is_true(repair);
		rc = 0;
	}
	json_decref(j);
	return rc;
}

int lk_http_empty_req_parse(const char *body, size_t len, struct lk_http_bad *bad)
{
	static const char *const allowed[] = {NULL};
	json_t *j = body_object(body, len, true, allowed, bad);

	if (!j)
		return -1;
	json_decref(j);
	return 0;
}

int lk_http_session_req_parse(const char *body, size_t len, char **token, struct lk_http_bad *bad)
{
	static const char *const allowed[] = {"token", NULL};
	json_t *j = body_object(body, len, false, allowed, bad);
	json_t *tok;
	int rc = -1;

	if (!j)
		return -1;
	tok = json_object_get(j, "token");
	if (!json_is_string(tok) || json_string_length(tok) == 0 ||
	    strlen(json_string_value(tok)) != json_string_length(tok)) {
		(void)refuse(bad, MHD_HTTP_BAD_REQUEST, "bad request",
			     "field 'token' must be a non-empty string");
	} else {
		*token = lk_xstrdup(json_string_value(tok));
		rc = 0;
	}
	json_decref(j);
	return rc;
}
