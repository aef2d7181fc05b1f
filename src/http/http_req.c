/*
 * http_req.c - the socket-free half of the HTTP API (http_int.h): the route table, the
 * bearer token, the body under its cap and the strict JSON bodies; http.c answers.
 */
#include "core/units.h"
#include "http.h"
#include "http_int.h"

#include <jansson.h>
#include <microhttpd.h>
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
};

static void found(struct lk_http_route *out, const char *method, enum lk_http_ep ep, bool post,
		  const char *id, size_t n)
{
	out->ep = ep;
	out->allow = post ? "POST" : "GET";
	out->allowed = post ? is(method, "POST") : is(method, "GET") || is(method, "HEAD");
	memcpy(out->id, id, n);
	out->id[n] = '\0';
}

void lk_http_route_match(const char *method, const char *url, struct lk_http_route *out)
{
	const char *rest;
	size_t n;

	memset(out, 0, sizeof(*out));
	out->ep = LK_HTTP_EP_NONE;
	out->allow = "";
	out->needs_token = is(method, "POST");
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
