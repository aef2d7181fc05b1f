/*
 * http.c - the HTTP API (http.h) on libmicrohttpd: the listener, each endpoint's answer,
 * JSON errors, sessions and Server-Sent Events for a run's progress. The route table, the
 * access checks (Host, Origin, Content-Type, tokens, session cookies) and the request
 * bodies are pure functions in http_req.c (http_int.h).
 */
#include "http.h"

#include "assets.h"
#include "daemon/api.h"
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#define LK_LOG_COMPONENT "http"
#include "core/buf.h"
#include "core/json.h"
#include "core/log.h"
#include "core/units.h"

/* An event stream sends a progress event at least this often while its run goes. */
#define SSE_TICK_MS 1000

/* /api/health is built at most this often; meanwhile the last answer is sent again. */
#define LK_HEALTH_TTL_MS 100

struct lk_http {
	struct MHD_Daemon *mhd;
	struct lk_daemon *d;
	/* guards the access settings and the sessions: a reload replaces the settings while
	 * requests check them */
	pthread_mutex_t access_mu;
	char *token;	  /* NULL: none; our own copy, wiped when replaced */
	char *read_token; /* http.read_token; NULL: none; wiped when replaced */
	char **allowed;	  /* http.allowed_hosts, our own copies */
	int nallowed;
	struct lk_http_sessions sessions;
	char listen_host[128]; /* http.listen's host without brackets (a start-only key) */
	bool loopback;	       /* the listener's address: a non-loopback one needs a token */
	volatile bool stopping;
	pthread_mutex_t health_mu; /* guards the four below */
	struct lk_buf health;	   /* the last /api/health answer */
	unsigned health_code;
	int64_t health_ms; /* lk_mono_ms() when it was built; 0: never */
};

/* ---- listen address ---- */

struct addr {
	struct sockaddr_storage ss;
	bool v6, loopback;
};

static int parse_listen(const char *listen, struct addr *a, struct lk_err *err)
{
	char host[128];
	const char *colon = listen ? strrchr(listen, ':') : NULL;
	long port;
	char *end;
	size_t n;

	memset(a, 0, sizeof(*a));
	if (!colon || colon == listen)
		return lk_err_set(
			err, LK_ERR_CONFIG,
			"http.listen: expected HOST:PORT (like 127.0.0.1:8433), found '%s'",
			listen ? listen : "");
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
		return lk_err_set(err, LK_ERR_CONFIG, "http.listen: bad port in '%s'", listen);
	n = (size_t)(colon - listen);
	if (n >= sizeof(host))
		return lk_err_set(err, LK_ERR_CONFIG, "http.listen: host too long in '%s'", listen);
	memcpy(host, listen, n);
	host[n] = '\0';
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	if (strcasecmp(host, "localhost") == 0)
		(void)snprintf(host, sizeof(host), "127.0.0.1");
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&a->ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return lk_err_set(err, LK_ERR_CONFIG,
					  "http.listen: '%s' is not an IPv6 address", host);
		a->v6 = true;
		a->loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&a->ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return lk_err_set(err, LK_ERR_CONFIG,
					  "http.listen: '%s' is not an IPv4 address (names other "
					  "than localhost are not resolved)",
					  host);
		a->loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	return 0;
}

int lk_http_check_listen(const char *listen, const char *token, struct lk_err *err)
{
	struct addr a;

	if (parse_listen(listen, &a, err) < 0)
		return -1;
	if (!a.loopback && (!token || !*token))
		return lk_err_set(err, LK_ERR_CONFIG,
				  "http.listen: %s is not a loopback address and http.token is not "
				  "set; set a token (http.token: ${LOCKSTEP_TOKEN}) or listen on "
				  "127.0.0.1",
				  listen);
	return 0;
}

/* ---- answers ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *type,
				 const char *text, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)(uintptr_t)text,
								 MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	(void)MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (code == MHD_HTTP_UNAUTHORIZED)
		(void)MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					      "Bearer realm=\"lockstep\"");
	rc = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return rc;
}

/*
 * Sends an embedded dashboard file. The page loads no inline script and nothing from
 * elsewhere: the policy lets scripts come from this origin only and the page talk only
 * to this origin's API, and no other site may frame it.
 */
static enum MHD_Result send_asset(struct MHD_Connection *c, const char *type,
				  const unsigned char *data, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)(uintptr_t)data,
								 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	(void)MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	(void)MHD_add_response_header(r, "X-Frame-Options", "DENY");
	(void)MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	(void)MHD_add_response_header(
		r, "Content-Security-Policy",
		"default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src "
		"'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
		"frame-ancestors "
		"'none'");
	rc = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

/* Sends j (stolen) as JSON with code. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	enum MHD_Result rc;

	json_decref(j);
	if (!s)
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json",
				 "{\"error\":\"internal error\",\"detail\":null}", 41);
	rc = send_text(c, code, "application/json", s, strlen(s));
	free(s);
	return rc;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *error,
				  const char *detail)
{
	return send_json(c, code,
			 json_pack("{s:s, s:o}", "error", error, "detail",
				   detail ? lk_json_text(detail, strlen(detail)) : json_null()));
}

static enum MHD_Result method_not_allowed(struct MHD_Connection *c, const char *allow)
{
	char detail[64];
	struct MHD_Response *r;
	enum MHD_Result rc;
	const char *body = "{\"error\":\"method not allowed\",\"detail\":null}";

	(void)snprintf(detail, sizeof(detail), "%s", allow);
	r = MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body,
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, detail);
	rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
	MHD_destroy_response(r);
	return rc;
}

/* Sends the 400 or 413 of a refused request. */
static enum MHD_Result send_bad(struct MHD_Connection *c, const struct lk_http_bad *bad)
{
	return send_error(c, bad->status, bad->error, bad->detail);
}

/* ---- handlers ---- */

static enum MHD_Result post_sync(struct lk_http *h, struct MHD_Connection *c,
				 const struct lk_http_body *rq)
{
	struct lk_http_sync_req sr;
	struct lk_http_bad bad;
	const char *why = NULL;
	char id[37], detail[256];
	enum lk_api_trigger t;

	if (lk_http_sync_req_parse(rq->buf.buf, rq->buf.len, &sr, &bad) < 0)
		return send_bad(c, &bad);
	t = lk_api_trigger(h->d, sr.job, sr.full, id, &why);
	(void)snprintf(detail, sizeof(detail), "%.200s", sr.job);
	free(sr.job);
	switch (t) {
	case LK_API_QUEUED:
	case LK_API_COALESCED:
		return send_json(c, MHD_HTTP_ACCEPTED,
				 json_pack("{s:s, s:s, s:b}", "syncId", id, "status", "queued",
					   "coalesced", t == LK_API_COALESCED));
	case LK_API_RUNNING:
		return send_json(c, MHD_HTTP_CONFLICT,
				 json_pack("{s:s, s:s, s:s}", "error", "already running", "detail",
					   "a run of this job is going (overlap: skip)", "syncId",
					   id));
	case LK_API_UNKNOWN_JOB:
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown job", detail);
	case LK_API_NOT_SUPPORTED:
		return send_error(c, MHD_HTTP_CONFLICT, "not possible", why);
	case LK_API_NOT_HERE:
		return send_error(c, MHD_HTTP_CONFLICT, "held elsewhere", why);
	default:
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down",
				  "lockstep is stopping");
	}
}

/* POST /api/verify: a verify pass now (docs/verify.md); its run is GET /api/sync/status/ID. */
static enum MHD_Result post_verify(struct lk_http *h, struct MHD_Connection *c,
				   const struct lk_http_body *rq)
{
	struct lk_http_sync_req vr;
	struct lk_http_bad bad;
	const char *why = NULL;
	char id[37], detail[256];
	enum lk_api_trigger t;

	if (lk_http_verify_req_parse(rq->buf.buf, rq->buf.len, &vr, &bad) < 0)
		return send_bad(c, &bad);
	t = lk_api_verify(h->d, vr.job, vr.full, id, &why);
	(void)snprintf(detail, sizeof(detail), "%.200s", vr.job);
	free(vr.job);
	switch (t) {
	case LK_API_QUEUED:
	case LK_API_COALESCED:
		return send_json(c, MHD_HTTP_ACCEPTED,
				 json_pack("{s:s, s:s, s:b}", "id", id, "status", "queued",
					   "coalesced", t == LK_API_COALESCED));
	case LK_API_UNKNOWN_JOB:
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown job", detail);
	case LK_API_NOT_SUPPORTED:
		return send_error(c, MHD_HTTP_CONFLICT, "not possible", why);
	case LK_API_NOT_HERE:
		return send_error(c, MHD_HTTP_CONFLICT, "held elsewhere", why);
	default:
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down",
				  "lockstep is stopping");
	}
}

static enum MHD_Result get_status(struct lk_http *h, struct MHD_Connection *c, const char *id)
{
	struct lk_api_run r;
	struct lk_err err = LK_ERR_INIT;
	int got = lk_api_run_get(h->d, id, &r, &err);

	if (got < 0)
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state store unavailable",
				  err.msg);
	if (got == 0)
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown run", id);
	return send_json(c, MHD_HTTP_OK, lk_api_run_json(&r));
}

static enum MHD_Result post_cancel(struct lk_http *h, struct MHD_Connection *c,
				   const struct lk_http_body *rq, const char *id)
{
	struct lk_http_bad bad;
	struct lk_api_run r;
	struct lk_err err = LK_ERR_INIT;
	enum lk_api_cancel rc;

	if (lk_http_empty_req_parse(rq->buf.buf, rq->buf.len, &bad) < 0)
		return send_bad(c, &bad);
	memset(&r, 0, sizeof(r));
	rc = lk_api_cancel(h->d, id, &r, &err);
	switch (rc) {
	case LK_API_CANCELLING:
		return send_json(c, MHD_HTTP_ACCEPTED,
				 json_pack("{s:s, s:s}", "syncId", id, "status",
					   lk_api_run_final(&r) ? r.status : "cancelling"));
	case LK_API_FINISHED:
		return send_json(c, MHD_HTTP_CONFLICT,
				 json_pack("{s:s, s:s, s:s}", "error", "already finished", "detail",
					   r.status, "syncId", id));
	case LK_API_CANNOT:
		return send_error(c, MHD_HTTP_CONFLICT, "not possible",
				  "a real-time job's stream is not cancelled; remove the job from "
				  "the config and reload to stop it");
	default:
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown run", id);
	}
}

static enum MHD_Result get_runs(struct lk_http *h, struct MHD_Connection *c)
{
	const char *job = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "job");
	const char *lim = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	struct lk_err err = LK_ERR_INIT;
	int64_t limit = 20;
	json_t *runs;

	if (lim && (lk_int64_parse(lim, &limit) < 0 || limit < 1 || limit > 1000))
		return send_error(c, MHD_HTTP_BAD_REQUEST, "bad request",
				  "limit must be an integer from 1 to 1000");
	if (job && !*job)
		job = NULL;
	if (job && !lk_api_job_exists(h->d, job))
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown job", job);
	runs = lk_api_runs(h->d, job, (int)limit, &err);
	if (!runs)
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state store unavailable",
				  err.msg);
	return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "runs", runs));
}

static enum MHD_Result get_usage(struct lk_http *h, struct MHD_Connection *c)
{
	const char *ds = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "days");
	struct lk_err err = LK_ERR_INIT;
	int64_t days = 7;
	json_t *usage;

	if (ds && (lk_int64_parse(ds, &days) < 0 || days < 1 || days > 366))
		return send_error(c, MHD_HTTP_BAD_REQUEST, "bad request",
				  "days must be an integer from 1 to 366");
	usage = lk_api_usage(h->d, (int)days, &err);
	if (!usage)
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state store unavailable",
				  err.msg);
	return send_json(c, MHD_HTTP_OK, usage);
}

static enum MHD_Result get_errors(struct lk_http *h, struct MHD_Connection *c)
{
	const char *job = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "job");
	const char *res = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "resolved");
	struct lk_err err = LK_ERR_INIT;
	int resolved = 0;
	json_t *list;

	if (res && strcmp(res, "true") == 0)
		resolved = 1;
	else if (res && strcmp(res, "any") == 0)
		resolved = -1;
	else if (res && strcmp(res, "false") != 0)
		return send_error(c, MHD_HTTP_BAD_REQUEST, "bad request",
				  "resolved must be true, false or any");
	if (job && !*job)
		job = NULL;
	list = lk_api_errors(h->d, job, resolved, &err);
	if (!list)
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state store unavailable",
				  err.msg);
	return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "errors", list));
}

static enum MHD_Result post_error_action(struct lk_http *h, struct MHD_Connection *c,
					 const struct lk_http_body *rq, const char *ids,
					 bool replay)
{
	struct lk_http_bad bad;
	struct lk_err err = LK_ERR_INIT;
	json_t *result = NULL;
	int64_t id;
	int rc;

	if (lk_http_empty_req_parse(rq->buf.buf, rq->buf.len, &bad) < 0)
		return send_bad(c, &bad);
	if (lk_int64_parse(ids, &id) < 0 || id < 1)
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown dead letter", ids);
	rc = replay ? lk_api_error_replay(h->d, id, &result, &err)
		    : lk_api_error_resolve(h->d, id, &err);
	if (rc == 0)
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown dead letter",
				  replay ? "no such dead letter, or its job is gone"
					 : "no open dead letter with this id");
	if (rc < 0 && err.code == LK_ERR_BUSY)
		return send_error(c, MHD_HTTP_CONFLICT, "job busy", err.msg);
	if (rc < 0 && (err.code == LK_ERR_PG || err.code == LK_ERR_SQLITE) && err.sqlstate[0])
		return send_error(c, MHD_HTTP_CONFLICT, "rejected again", err.msg);
	if (rc < 0)
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", err.msg);
	if (!replay)
		result = json_pack("{s:I, s:s}", "id", (json_int_t)id, "status", "resolved");
	return send_json(c, MHD_HTTP_OK, result);
}

/* ---- Server-Sent Events ---- */

struct sse {
	struct lk_http *h;
	char id[37];
	int64_t last_ms; /* the updated_ms of the last event sent */
	int64_t last_sent_mono;
	struct lk_buf out; /* an event not yet handed to MHD */
	size_t off;
	bool ended; /* the terminal event is in `out` */
};

static void sse_event(struct sse *s, const struct lk_api_run *r, bool terminal)
{
	json_t *j = lk_api_run_json(r);
	char *data = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	lk_buf_addf(&s->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)r->updated_ms,
		    terminal ? "done" : "progress", data ? data : "{}");
	free(data);
	s->last_ms = r->updated_ms;
	s->last_sent_mono = lk_mono_ms();
	s->ended = terminal;
}

/*
 * A keep-alive: a comment line, which EventSource ignores, sent after a second without an
 * event so that proxies and clients see the stream is alive. It carries no id: the ids of
 * events are their run's lastUpdate and strictly increase.
 */
static void sse_keepalive(struct sse *s)
{
	lk_buf_adds(&s->out, ": keep-alive\n\n");
	s->last_sent_mono = lk_mono_ms();
}

/* Fills s->out with the next event or keep-alive; false at the end of the stream. */
static bool sse_next(struct sse *s)
{
	struct lk_api_run r;
	struct lk_err err = LK_ERR_INIT;

	while (!lk_flag(&s->h->stopping)) {
		int w = lk_api_run_wait(s->h->d, s->id, s->last_ms, SSE_TICK_MS, &r);

		if (w < 0) { /* not live here: the store (another instance, or long done) */
			if (lk_api_run_get(s->h->d, s->id, &r, &err) <= 0)
				return false;
			if (r.updated_ms <= s->last_ms && !lk_api_run_final(&r)) {
				lk_sleep_ms(SSE_TICK_MS, &s->h->stopping);
				sse_keepalive(s); /* unchanged */
				return true;
			}
		}
		if (lk_api_run_final(&r)) {
			if (r.updated_ms <= s->last_ms && s->last_ms > 0 && w != 0)
				return false; /* the client saw the end already (Last-Event-ID) */
			sse_event(s, &r, true);
			return true;
		}
		if (w == 1 || w < 0) {
			sse_event(s, &r, false);
			return true;
		}
		if (lk_mono_ms() - s->last_sent_mono >= SSE_TICK_MS) {
			sse_keepalive(s);
			return true;
		}
	}
	return false;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *s = cls;
	size_t n;

	(void)pos;
	if (s->off == s->out.len) {
		lk_buf_reset(&s->out);
		s->off = 0;
		if (s->ended || !sse_next(s))
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	n = s->out.len - s->off;
	if (n > max)
		n = max;
	memcpy(buf, s->out.buf + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct sse *s = cls;

	lk_buf_release(&s->out);
	free(s);
}

static enum MHD_Result get_events(struct lk_http *h, struct MHD_Connection *c, const char *id)
{
	const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
	struct lk_api_run r;
	struct lk_err err = LK_ERR_INIT;
	struct MHD_Response *resp;
	struct sse *s;
	enum MHD_Result rc;
	int got = lk_api_run_get(h->d, id, &r, &err);
	int64_t after = 0;

	if (got < 0)
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state store unavailable",
				  err.msg);
	if (got == 0)
		return send_error(c, MHD_HTTP_NOT_FOUND, "unknown run", id);
	if (last && lk_int64_parse(last, &after) < 0)
		after = 0;
	s = lk_xcalloc(1, sizeof(*s));
	s->h = h;
	(void)snprintf(s->id, sizeof(s->id), "%s", id);
	s->last_ms = after;
	lk_buf_init(&s->out);
	/* the current state first (unless the client has it: Last-Event-ID) */
	if (r.updated_ms > after)
		sse_event(s, &r, lk_api_run_final(&r));
	else if (lk_api_run_final(&r))
		s->ended = true;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
	if (!resp) {
		sse_free(s);
		return MHD_NO;
	}
	(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	(void)MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* ---- routing ---- */

static enum MHD_Result get_ready(struct lk_http *h, struct MHD_Connection *c)
{
	int code = 200;
	json_t *j = lk_api_ready(h->d, &code);

	return send_json(c, (unsigned)code, j);
}

/*
 * Health is polled by load balancers, probes and dashboards, sometimes very often: the
 * answer is built from the daemon's state at most every LK_HEALTH_TTL_MS and sent again
 * meanwhile, so polling cannot cost the daemon more than a static file would.
 */
static enum MHD_Result get_health(struct lk_http *h, struct MHD_Connection *c)
{
	struct lk_buf copy = LK_BUF_INIT;
	unsigned code = 0;
	int64_t now = lk_mono_ms();
	enum MHD_Result rc;

	pthread_mutex_lock(&h->health_mu);
	if (h->health_ms == 0 || now - h->health_ms >= LK_HEALTH_TTL_MS) {
		int c2 = 200;
		json_t *j = lk_api_health(h->d, &c2);
		char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

		json_decref(j);
		if (s) {
			lk_buf_reset(&h->health);
			lk_buf_adds(&h->health, s);
			h->health_code = (unsigned)c2;
			h->health_ms = now;
			free(s);
		}
	}
	if (h->health_ms != 0) {
		lk_buf_add(&copy, h->health.buf, h->health.len);
		code = h->health_code;
	}
	pthread_mutex_unlock(&h->health_mu);
	if (code == 0)
		return send_json(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
	rc = send_text(c, code, "application/json", copy.buf, copy.len);
	lk_buf_release(&copy);
	return rc;
}

static enum MHD_Result get_metrics(struct lk_http *h, struct MHD_Connection *c)
{
	struct lk_buf b = LK_BUF_INIT;
	enum MHD_Result rc;

	lk_api_metrics(h->d, &b);
	rc = send_text(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
		       b.buf ? b.buf : "", b.len);
	lk_buf_release(&b);
	return rc;
}

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/*
 * Whether the request may reach its endpoint (lk_http_admit, under the settings in force
 * and the session its cookie names). Returns 0, or -1 with *bad set. Any thread.
 */
static int admit(struct lk_http *h, struct MHD_Connection *c, const struct lk_http_route *r,
		 struct lk_http_bad *bad)
{
	struct lk_http_hdrs hd = {
		.host = header(c, MHD_HTTP_HEADER_HOST),
		.origin = header(c, "Origin"),
		.content_type = header(c, MHD_HTTP_HEADER_CONTENT_TYPE),
		.authorization = header(c, MHD_HTTP_HEADER_AUTHORIZATION),
		.cookie = header(c, MHD_HTTP_HEADER_COOKIE),
	};
	struct lk_http_policy p;
	enum lk_http_who who;
	int rc;

	pthread_mutex_lock(&h->access_mu);
	p = (struct lk_http_policy){h->token, h->read_token, h->listen_host, h->allowed,
				    h->nallowed};
	who = lk_http_who(&p, hd.authorization,
			  lk_http_session_find(&h->sessions, hd.cookie, lk_mono_ms()));
	rc = lk_http_admit(&p, r, &hd, who, bad);
	pthread_mutex_unlock(&h->access_mu);
	return rc;
}

/*
 * POST /api/session {"token": T}: T is http.token (a session for everything) or
 * http.read_token (GETs only); the answer sets the session cookie. The dashboard's event
 * streams need it: EventSource sends cookies, not headers.
 */
static enum MHD_Result post_session(struct lk_http *h, struct MHD_Connection *c,
				    const struct lk_http_body *rq)
{
	struct lk_http_bad bad;
	char *tok = NULL, bearer[600], id[65], cookie[160];
	unsigned char rnd[32];
	enum lk_http_who who;
	struct lk_http_policy p;
	struct MHD_Response *r;
	const char *body;
	enum MHD_Result rc;

	if (lk_http_session_req_parse(rq->buf.buf, rq->buf.len, &tok, &bad) < 0)
		return send_bad(c, &bad);
	(void)snprintf(bearer, sizeof(bearer), "Bearer %.500s", tok);
	explicit_bzero(tok, strlen(tok));
	free(tok);
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		explicit_bzero(bearer, sizeof(bearer));
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
				  "no random bytes for a session id");
	}
	pthread_mutex_lock(&h->access_mu);
	p = (struct lk_http_policy){h->token, h->read_token, NULL, NULL, 0};
	who = h->token ? lk_http_who(&p, bearer, LK_HTTP_ANON) : LK_HTTP_ANON;
	if (who != LK_HTTP_ANON)
		lk_http_session_add(&h->sessions, rnd, who == LK_HTTP_WRITER, lk_mono_ms(), id);
	pthread_mutex_unlock(&h->access_mu);
	explicit_bzero(bearer, sizeof(bearer));
	explicit_bzero(rnd, sizeof(rnd));
	if (who == LK_HTTP_ANON && h->token)
		return send_error(c, MHD_HTTP_UNAUTHORIZED, "unauthorized", "wrong token");
	if (who == LK_HTTP_ANON)
		return send_json(c, MHD_HTTP_OK,
				 json_pack("{s:s, s:b}", "session", "none needed", "write", 1));
	body = who == LK_HTTP_WRITER ? "{\"session\":\"started\",\"write\":true}"
				     : "{\"session\":\"started\",\"write\":false}";
	r = MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body,
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	(void)snprintf(cookie, sizeof(cookie),
		       LK_HTTP_SESSION_COOKIE
		       "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld",
		       id, (long long)(LK_HTTP_SESSION_TTL_MS / 1000));
	explicit_bzero(id, sizeof(id));
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
	explicit_bzero(cookie, sizeof(cookie));
	rc = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

/* Answers one request whose body is complete (the route table is in http_req.c). */
static enum MHD_Result route(struct lk_http *h, struct MHD_Connection *c, const char *url,
			     const char *method, const struct lk_http_body *rq)
{
	struct lk_http_route r;
	struct lk_http_bad bad;

	lk_http_route_match(method, url, &r);
	if (admit(h, c, &r, &bad) < 0)
		return send_bad(c, &bad);
	if (r.ep == LK_HTTP_EP_NONE)
		return send_error(c, MHD_HTTP_NOT_FOUND, "not found", "no such endpoint");
	if (!r.allowed)
		return method_not_allowed(c, r.allow);
	switch (r.ep) {
	case LK_HTTP_EP_LIVEZ:
		return send_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
	case LK_HTTP_EP_READYZ:
		return get_ready(h, c);
	case LK_HTTP_EP_HEALTH:
		return get_health(h, c);
	case LK_HTTP_EP_METRICS:
		return get_metrics(h, c);
	case LK_HTTP_EP_JOBS:
		return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "jobs", lk_api_jobs(h->d)));
	case LK_HTTP_EP_SYNC:
		return post_sync(h, c, rq);
	case LK_HTTP_EP_VERIFY:
		return post_verify(h, c, rq);
	case LK_HTTP_EP_RUNS:
		return get_runs(h, c);
	case LK_HTTP_EP_ERRORS:
		return get_errors(h, c);
	case LK_HTTP_EP_USAGE:
		return get_usage(h, c);
	case LK_HTTP_EP_STATUS:
		return get_status(h, c, r.id);
	case LK_HTTP_EP_EVENTS:
		return get_events(h, c, r.id);
	case LK_HTTP_EP_CANCEL:
		return post_cancel(h, c, rq, r.id);
	case LK_HTTP_EP_REPLAY:
	case LK_HTTP_EP_RESOLVE:
		return post_error_action(h, c, rq, r.id, r.ep == LK_HTTP_EP_REPLAY);
	case LK_HTTP_EP_DASHBOARD:
		return send_asset(c, "text/html; charset=utf-8", lk_asset_dashboard_html,
				  lk_asset_dashboard_html_len);
	case LK_HTTP_EP_DASHBOARD_JS:
		return send_asset(c, "text/javascript; charset=utf-8", lk_asset_dashboard_js,
				  lk_asset_dashboard_js_len);
	case LK_HTTP_EP_SESSION:
		return post_session(h, c, rq);
	case LK_HTTP_EP_NONE:
		break;
	}
	return send_error(c, MHD_HTTP_NOT_FOUND, "not found", "no such endpoint");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_size, void **con_cls)
{
	struct lk_http *h = cls;
	struct lk_http_body *rq = *con_cls;
	struct lk_http_bad bad;

	(void)version;
	if (!rq) {
		rq = lk_xcalloc(1, sizeof(*rq));
		*con_cls = rq;
		/* too large by its Content-Length: answered at once, the body is not read */
		if (!lk_http_body_init(rq,
				       MHD_lookup_connection_value(c, MHD_HEADER_KIND,
								   MHD_HTTP_HEADER_CONTENT_LENGTH)))
			return MHD_YES;
	}
	if (*upload_size > 0) {
		lk_http_body_add(rq, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (lk_http_body_check(rq, &bad) < 0)
		return send_bad(c, &bad);
	lk_log_debug("%s %s", method, url);
	return route(h, c, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct lk_http_body *rq = *con_cls;

	(void)cls;
	(void)c;
	(void)why;
	if (!rq)
		return;
	lk_http_body_release(rq);
	free(rq);
	*con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	lk_log_debug("libmicrohttpd: %s", msg);
}

/* Overwrites a secret before its memory is freed. */
static void wipe_free(char *secret)
{
	if (secret)
		explicit_bzero(secret, strlen(secret));
	free(secret);
}

static char *dup_or_null(const char *s)
{
	return s && *s ? lk_xstrdup(s) : NULL;
}

/* Frees the access settings in force (access_mu held, or no request can come). */
static void access_release(struct lk_http *h)
{
	wipe_free(h->token);
	wipe_free(h->read_token);
	for (int i = 0; i < h->nallowed; i++)
		free(h->allowed[i]);
	free(h->allowed);
	h->token = h->read_token = NULL;
	h->allowed = NULL;
	h->nallowed = 0;
}

/* Copies the access settings of conf (access_mu held, or no request can come yet). */
static void access_copy(struct lk_http *h, const struct lk_http_conf *conf)
{
	h->token = dup_or_null(conf->token);
	h->read_token = h->token ? dup_or_null(conf->read_token) : NULL;
	h->nallowed = conf->nallowed_hosts;
	h->allowed = h->nallowed ? lk_xcalloc((size_t)h->nallowed, sizeof(char *)) : NULL;
	for (int i = 0; i < h->nallowed; i++)
		h->allowed[i] = lk_xstrdup(conf->allowed_hosts[i]);
}

static void log_listening(const struct lk_http *h, const char *listen)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
	char host[128];
	const char *colon = strrchr(listen, ':');
	size_t n = (size_t)(colon - listen);

	(void)snprintf(host, sizeof(host), "%.*s", (int)n, listen);
	/* port 0 asks for any free port: the log says which (tests read it) */
	lk_log_info("HTTP API on http://%s:%u/ (%s)", host, info ? (unsigned)info->port : 0u,
		    h->token ? "every call but /livez and /readyz needs the token"
			     : "no token: loopback only");
}

struct lk_http *lk_http_start(const struct lk_http_conf *conf, struct lk_daemon *d,
			      struct lk_err *err)
{
	const char *listen = conf->listen ? conf->listen : "127.0.0.1:8433";
	struct lk_http *h;
	struct addr a;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_ITC | MHD_USE_ERROR_LOG;

	if (lk_http_check_listen(listen, conf->token, err) < 0 || parse_listen(listen, &a, err) < 0)
		return NULL;
	if (a.v6)
		flags |= MHD_USE_IPv6;
	h = lk_xcalloc(1, sizeof(*h));
	h->d = d;
	access_copy(h, conf);
	(void)snprintf(h->listen_host, sizeof(h->listen_host), "%.*s",
		       (int)(strrchr(listen, ':') - listen), listen);
	if (h->listen_host[0] == '[') { /* "[::1]": the address without its brackets */
		memmove(h->listen_host, h->listen_host + 1, strlen(h->listen_host));
		h->listen_host[strcspn(h->listen_host, "]")] = '\0';
	}
	h->loopback = a.loopback;
	(void)pthread_mutex_init(&h->access_mu, NULL);
	(void)pthread_mutex_init(&h->health_mu, NULL);
	lk_buf_init(&h->health);
	h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
				  (struct sockaddr *)&a.ss, MHD_OPTION_CONNECTION_LIMIT,
				  (unsigned)LK_HTTP_CONN_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				  (unsigned)LK_HTTP_CONN_PER_CLIENT, MHD_OPTION_CONNECTION_TIMEOUT,
				  (unsigned)LK_HTTP_IDLE_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				  (size_t)(32 * 1024), MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
				  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_END);
	if (!h->mhd) {
		lk_err_set(err, LK_ERR_UNAVAILABLE,
			   "cannot listen on %s (in use, or not an address of this host)", listen);
		(void)pthread_mutex_destroy(&h->health_mu);
		(void)pthread_mutex_destroy(&h->access_mu);
		access_release(h);
		free(h);
		return NULL;
	}
	log_listening(h, listen);
	return h;
}

static bool same_secret(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int lk_http_set_access(struct lk_http *h, const struct lk_http_conf *conf, bool *changed,
		       struct lk_err *err)
{
	const char *token = conf->token && *conf->token ? conf->token : NULL;
	const char *rtoken =
		token && conf->read_token && *conf->read_token ? conf->read_token : NULL;

	*changed = false;
	if (!token && !h->loopback)
		return lk_err_set(err, LK_ERR_CONFIG,
				  "http.token: the API listens on an address that is not loopback; "
				  "it cannot be left without a token");
	pthread_mutex_lock(&h->access_mu);
	*changed = !same_secret(h->token, token) || !same_secret(h->read_token, rtoken);
	access_release(h);
	access_copy(h, conf);
	if (*changed) /* a session stands for a token: a changed token ends them all */
		lk_http_sessions_clear(&h->sessions);
	pthread_mutex_unlock(&h->access_mu);
	return 0;
}

void lk_http_stop(struct lk_http *h)
{
	if (!h)
		return;
	lk_flag_set(&h->stopping, true); /* event streams end at their next tick */
	MHD_stop_daemon(h->mhd);
	access_release(h);
	lk_http_sessions_clear(&h->sessions);
	lk_buf_release(&h->health);
	(void)pthread_mutex_destroy(&h->health_mu);
	(void)pthread_mutex_destroy(&h->access_mu);
	free(h);
}
