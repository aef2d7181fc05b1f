/*
 * daemon_api.c - the daemon's side of the HTTP API: the live view of runs (fed by the
 * store observer of every thread that records runs), triggers and cancels, jobs, health,
 * readiness, runs, dead letters and the metrics (api.h).
 *
 * Locks: d->mu (slots, queue) may be held when taking d->live_mu, never the reverse;
 * d->api_mu guards the API's own store handle and is taken with neither held.
 */
#include "api.h"
#include "connector/breaker.h"
#include "daemon_int.h"
#include "store/deadletters.h"
#include "sync/budget.h"
#include "sync/guard.h"
#include "sync/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LK_LOG_COMPONENT "http"
#include "core/buf.h"
#include "core/json.h"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"

/* Run duration histogram buckets, in seconds. */
static const double buckets[LK_HIST_BUCKETS] = {0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200};

static const char *const statuses[LK_NSTATUS] = {"succeeded", "failed", "cancelled", "interrupted",
						 "skipped"};

bool lk_api_run_final(const struct lk_api_run *r)
{
	return strcmp(r->status, "queued") != 0 && strcmp(r->status, "running") != 0;
}

static void iso(int64_t ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	(void)snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		       (int)(ms % 1000));
}

static json_t *time_or_null(int64_t ms)
{
	char buf[40];

	if (ms <= 0)
		return json_null();
	iso(ms, buf, sizeof(buf));
	return json_string(buf);
}

/*
 * A JSON string of text that came from a database or was cut to a fixed buffer: either
 * may hold bytes that are not UTF-8, and jansson refuses those (the whole answer would
 * lose the object), so they become U+FFFD.
 */
static json_t *text_json(const char *s)
{
	return lk_json_text(s, strlen(s));
}

static json_t *count_or_null(int64_t n)
{
	return n < 0 ? json_null() : json_integer(n);
}

json_t *lk_api_run_json(const struct lk_api_run *r)
{
	json_t *o = json_pack(
		"{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:o}, s:I, s:o}",
		"syncId", r->id, "job", r->job, "type", r->type, "status", r->status, "progress",
		r->progress < 0 ? json_null() : json_real(r->progress), "stage",
		r->stage[0] ? text_json(r->stage) : json_null(), "startTime",
		time_or_null(r->started_ms), "lastUpdate", time_or_null(r->updated_ms),
		"finishTime", time_or_null(r->finished_ms), "stats", "rowsRead",
		(json_int_t)r->rows_read, "rowsWritten", (json_int_t)r->rows_written, "rowsFailed",
		(json_int_t)r->rows_failed, "totalEstimate", count_or_null(r->total_estimate),
		"epoch", (json_int_t)r->epoch, "error",
		r->error[0] ? text_json(r->error) : json_null());

	if (o && r->has_lag && !lk_api_run_final(r))
		(void)json_object_set_new(o, "lag",
					  json_pack("{s:f, s:I}", "seconds", r->lag_s, "rows",
						    (json_int_t)r->lag_rows));
	return o;
}

/* ---- the live view ---- */

static struct lk_live *live_find(struct lk_daemon *d, const char *id)
{
	for (int i = 0; i < LK_LIVE_MAX; i++) {
		if (d->live[i].used && strcmp(d->live[i].r.id, id) == 0)
			return &d->live[i];
	}
	return NULL;
}

/* A free entry, else the final one updated longest ago; NULL when all are going. */
static struct lk_live *live_take(struct lk_daemon *d)
{
	struct lk_live *best = NULL;

	for (int i = 0; i < LK_LIVE_MAX; i++) {
		struct lk_live *l = &d->live[i];

		if (!l->used)
			return l;
		if (lk_api_run_final(&l->r) && (!best || l->r.updated_ms < best->r.updated_ms))
			best = l;
	}
	return best;
}

static struct lk_jobstat *jobstat(struct lk_daemon *d, const char *job)
{
	for (int i = 0; i < d->njobstats; i++) {
		if (strcmp(d->jobstats[i].job, job) == 0)
			return &d->jobstats[i];
	}
	if (d->njobstats == d->ajobstats) {
		d->ajobstats = d->ajobstats ? 2 * d->ajobstats : 16;
		d->jobstats =
			lk_xrealloc(d->jobstats, (size_t)d->ajobstats * sizeof(struct lk_jobstat));
	}
	memset(&d->jobstats[d->njobstats], 0, sizeof(struct lk_jobstat));
	(void)snprintf(d->jobstats[d->njobstats].job, sizeof(d->jobstats[0].job), "%s", job);
	return &d->jobstats[d->njobstats++];
}

void lk_daemon_verify_note(struct lk_daemon *d, const char *job, const struct lk_verify_result *res,
			   const char *error, bool repair)
{
	struct lk_jobstat *js;

	pthread_mutex_lock(&d->live_mu);
	js = jobstat(d, job);
	js->v_has = true;
	js->v_repair = repair;
	js->v_failed = error != NULL;
	js->v_at_ms = lk_wall_ms();
	if (!error) { /* a failed pass leaves what the last one found */
		js->v_rows = res->source_rows;
		js->v_diffs = res->differences;
		js->v_left = repair ? res->remaining : res->differences;
		js->v_secs = (double)res->elapsed_ms / 1000.0;
	}
	js->v_repaired_total += res->repaired;
	(void)snprintf(js->v_run, sizeof(js->v_run), "%s", res->run_id);
	pthread_mutex_unlock(&d->live_mu);
}

/* Counts what a run did since its last report (live_mu held). */
static void account(struct lk_daemon *d, const struct lk_api_run *was, const struct lk_api_run *r)
{
	struct lk_jobstat *js;
	bool was_final = was && lk_api_run_final(was);

	/* verify passes have metrics of their own (lk_daemon_verify_note) */
	if (strcmp(r->type, "verify") == 0 || strcmp(r->type, "repair") == 0)
		return;
	js = jobstat(d, r->job);

	js->has_lag = r->has_lag && !lk_api_run_final(r);
	js->lag_s = r->lag_s;
	js->lag_rows = r->lag_rows;

	if (r->rows_read > (was ? was->rows_read : 0))
		js->rows_read += r->rows_read - (was ? was->rows_read : 0);
	if (r->rows_written > (was ? was->rows_written : 0))
		js->rows_written += r->rows_written - (was ? was->rows_written : 0);
	if (r->rows_failed > (was ? was->rows_failed : 0))
		js->rows_failed += r->rows_failed - (was ? was->rows_failed : 0);
	if (!lk_api_run_final(r) || was_final)
		return;
	for (int i = 0; i < LK_NSTATUS; i++) {
		if (strcmp(r->status, statuses[i]) == 0)
			js->runs[i]++;
	}
	if (strcmp(r->status, "skipped") == 0 || r->started_ms <= 0)
		return;
	double secs =
		(double)((r->finished_ms > 0 ? r->finished_ms : lk_wall_ms()) - r->started_ms) /
		1000.0;

	for (int i = 0; i < LK_HIST_BUCKETS; i++) {
		if (secs <= buckets[i])
			js->hist[i]++;
	}
	js->hist_count++;
	js->hist_sum += secs;
	if (strcmp(r->status, "succeeded") == 0)
		js->last_success_ms = r->finished_ms > 0 ? r->finished_ms : lk_wall_ms();
}

/* Stores r in the live view (live_mu held): keeps updated_ms strictly increasing. */
static void live_put(struct lk_daemon *d, struct lk_api_run *r)
{
	struct lk_live *l = live_find(d, r->id);
	int64_t now = lk_wall_ms();

	if (l) {
		r->updated_ms = now > l->r.updated_ms ? now : l->r.updated_ms + 1;
		account(d, &l->r, r);
	} else {
		l = live_take(d);
		r->updated_ms = now;
		account(d, NULL, r);
		if (!l)
			return;
		l->used = true;
	}
	l->r = *r;
	pthread_cond_broadcast(&d->live_cond);
}

static void copy_str(char *dst, size_t size, const char *src)
{
	(void)snprintf(dst, size, "%s", src ? src : "");
}

void lk_daemon_observe(void *arg, const struct lk_run *run)
{
	struct lk_daemon *d = arg;
	struct lk_api_run r;

	memset(&r, 0, sizeof(r));
	copy_str(r.id, sizeof(r.id), run->id);
	copy_str(r.job, sizeof(r.job), run->job);
	copy_str(r.type, sizeof(r.type), run->type);
	copy_str(r.status, sizeof(r.status), run->status);
	copy_str(r.stage, sizeof(r.stage), run->stage);
	copy_str(r.error, sizeof(r.error), run->error);
	r.progress = run->progress;
	r.rows_read = run->rows_read;
	r.rows_written = run->rows_written;
	r.rows_failed = run->rows_failed;
	r.total_estimate = run->total_estimate;
	r.started_ms = run->started_ms;
	r.finished_ms = run->finished_ms;
	r.epoch = run->epoch;
	r.has_lag = run->has_lag;
	r.lag_s = run->lag_s;
	r.lag_rows = run->lag_rows;
	pthread_mutex_lock(&d->live_mu);
	live_put(d, &r);
	pthread_mutex_unlock(&d->live_mu);
}

void lk_daemon_live_queued(struct lk_daemon *d, const char *id, const char *job, bool full)
{
	struct lk_api_run r;

	memset(&r, 0, sizeof(r));
	copy_str(r.id, sizeof(r.id), id);
	copy_str(r.job, sizeof(r.job), job);
	copy_str(r.type, sizeof(r.type), full ? "full" : "incremental");
	copy_str(r.status, sizeof(r.status), "queued");
	r.progress = -1;
	r.total_estimate = -1;
	pthread_mutex_lock(&d->live_mu);
	if (!live_find(d, id))
		live_put(d, &r);
	pthread_mutex_unlock(&d->live_mu);
}

/* The API's store handle (api_mu held): opened on first use, dropped after an error. */
static struct lk_store *api_store(struct lk_daemon *d, struct lk_err *err)
{
	if (!d->api_store) {
		d->api_store = lk_store_open(d->store_cfg, err);
		if (d->api_store && d->cluster) /* a replay writes under this instance's lease */
			lk_store_set_member(d->api_store, d->member);
	}
	return d->api_store;
}

static void api_store_failed(struct lk_daemon *d)
{
	lk_store_close(d->api_store);
	d->api_store = NULL;
}

/* Writes a run through the API's store handle: queued (kept if it started) or final. */
static void api_record(struct lk_daemon *d, const struct lk_run *run, bool queued)
{
	struct lk_err err = LK_ERR_INIT;

	pthread_mutex_lock(&d->api_mu);
	if (api_store(d, &err) && (queued ? lk_store_run_queue(d->api_store, run, &err)
					  : lk_store_run_insert(d->api_store, run, &err)) < 0)
		api_store_failed(d);
	pthread_mutex_unlock(&d->api_mu);
	if (err.code != LK_OK)
		lk_log_warn_err(&err, "cannot record run %s", run->id);
}

void lk_daemon_live_settle(struct lk_daemon *d, const char *id, const char *status, const char *why)
{
	struct lk_live *l;
	struct lk_api_run r;
	struct lk_run run;
	bool write = false;

	pthread_mutex_lock(&d->live_mu);
	l = live_find(d, id);
	if (l && !lk_api_run_final(&l->r)) {
		r = l->r;
		copy_str(r.status, sizeof(r.status), status);
		copy_str(r.error, sizeof(r.error), why);
		r.finished_ms = lk_wall_ms();
		live_put(d, &r);
		write = true;
	}
	pthread_mutex_unlock(&d->live_mu);
	if (!write)
		return;
	memset(&run, 0, sizeof(run));
	memcpy(run.id, r.id, sizeof(run.id));
	run.job = r.job;
	run.type = r.type;
	run.status = r.status;
	run.stage = NULL;
	run.progress = -1;
	run.total_estimate = -1;
	run.started_ms = r.started_ms > 0 ? r.started_ms : r.finished_ms;
	run.finished_ms = r.finished_ms;
	run.error = r.error[0] ? r.error : NULL;
	api_record(d, &run, false);
}

/* ---- runs ---- */

static void run_from_row(const struct lk_value *v, struct lk_api_run *r)
{
	memset(r, 0, sizeof(*r));
	copy_str(r->id, sizeof(r->id), v[LK_RUNCOL_ID].null ? "" : v[LK_RUNCOL_ID].p);
	copy_str(r->job, sizeof(r->job), v[LK_RUNCOL_JOB].null ? "" : v[LK_RUNCOL_JOB].p);
	copy_str(r->type, sizeof(r->type), v[LK_RUNCOL_TYPE].null ? "" : v[LK_RUNCOL_TYPE].p);
	copy_str(r->status, sizeof(r->status),
		 v[LK_RUNCOL_STATUS].null ? "" : v[LK_RUNCOL_STATUS].p);
	copy_str(r->stage, sizeof(r->stage), v[LK_RUNCOL_STAGE].null ? "" : v[LK_RUNCOL_STAGE].p);
	copy_str(r->error, sizeof(r->error), v[LK_RUNCOL_ERROR].null ? "" : v[LK_RUNCOL_ERROR].p);
	r->progress = v[LK_RUNCOL_PROGRESS].null ? -1 : strtod(v[LK_RUNCOL_PROGRESS].p, NULL);
	r->rows_read = v[LK_RUNCOL_READ].null ? 0 : strtoll(v[LK_RUNCOL_READ].p, NULL, 10);
	r->rows_written = v[LK_RUNCOL_WRITTEN].null ? 0 : strtoll(v[LK_RUNCOL_WRITTEN].p, NULL, 10);
	r->rows_failed = v[LK_RUNCOL_FAILED].null ? 0 : strtoll(v[LK_RUNCOL_FAILED].p, NULL, 10);
	r->total_estimate = v[LK_RUNCOL_TOTAL].null ? -1 : strtoll(v[LK_RUNCOL_TOTAL].p, NULL, 10);
	r->started_ms = v[LK_RUNCOL_STARTED].null ? 0 : strtoll(v[LK_RUNCOL_STARTED].p, NULL, 10);
	r->updated_ms = v[LK_RUNCOL_UPDATED].null ? 0 : strtoll(v[LK_RUNCOL_UPDATED].p, NULL, 10);
	r->finished_ms =
		v[LK_RUNCOL_FINISHED].null ? 0 : strtoll(v[LK_RUNCOL_FINISHED].p, NULL, 10);
	r->epoch = v[LK_RUNCOL_EPOCH].null ? 0 : strtoll(v[LK_RUNCOL_EPOCH].p, NULL, 10);
}

int lk_api_run_get(struct lk_daemon *d, const char *id, struct lk_api_run *out, struct lk_err *err)
{
	struct lk_live *l;
	struct lk_rows rows;
	int rc;

	pthread_mutex_lock(&d->live_mu);
	l = live_find(d, id);
	if (l)
		*out = l->r;
	pthread_mutex_unlock(&d->live_mu);
	if (l)
		return 1;
	lk_rows_init(&rows, 15);
	pthread_mutex_lock(&d->api_mu);
	rc = api_store(d, err) ? lk_store_run_find(d->api_store, id, &rows, err) : -1;
	if (rc < 0)
		api_store_failed(d);
	pthread_mutex_unlock(&d->api_mu);
	if (rc == 0 && rows.nrows > 0) {
		run_from_row(LK_ROW(&rows, 0), out);
		rc = 1;
	}
	lk_rows_release(&rows);
	return rc;
}

int lk_api_run_wait(struct lk_daemon *d, const char *id, int64_t after_ms, int timeout_ms,
		    struct lk_api_run *out)
{
	struct timespec until;
	struct lk_live *l;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->live_mu);
	for (;;) {
		l = live_find(d, id);
		if (!l) {
			rc = -1;
			break;
		}
		*out = l->r;
		if (l->r.updated_ms > after_ms) {
			rc = 1;
			break;
		}
		if (pthread_cond_timedwait(&d->live_cond, &d->live_mu, &until) != 0) {
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&d->live_mu);
	return rc;
}

json_t *lk_api_runs(struct lk_daemon *d, const char *job, int limit, struct lk_err *err)
{
	struct lk_rows rows;
	json_t *arr = NULL;
	int rc;

	lk_rows_init(&rows, 15);
	pthread_mutex_lock(&d->api_mu);
	rc = api_store(d, err) ? lk_store_runs(d->api_store, job, limit, &rows, err) : -1;
	if (rc < 0)
		api_store_failed(d);
	pthread_mutex_unlock(&d->api_mu);
	if (rc == 0) {
		arr = json_array();
		for (int i = 0; i < rows.nrows; i++) {
			struct lk_api_run r;
			struct lk_live *l;

			run_from_row(LK_ROW(&rows, i), &r);
			pthread_mutex_lock(&d->live_mu); /* fresher than the store */
			l = live_find(d, r.id);
			if (l)
				r = l->r;
			pthread_mutex_unlock(&d->live_mu);
			(void)json_array_append_new(arr, lk_api_run_json(&r));
		}
	}
	lk_rows_release(&rows);
	return arr;
}

/* ---- triggers and cancels ---- */

/* Waits (mu held) until the daemon has placed its jobs: the server starts before them. */
static void wait_ready(struct lk_daemon *d)
{
	while (!d->ready)
		pthread_cond_wait(&d->cond, &d->mu);
}

static struct lk_slot *slot_named(struct lk_daemon *d, const char *job)
{
	wait_ready(d);
	for (int i = 0; i < d->nslots; i++) {
		if (!d->slots[i]->gone && strcmp(d->slots[i]->job->name, job) == 0)
			return d->slots[i];
	}
	return NULL;
}

bool lk_api_job_exists(struct lk_daemon *d, const char *job)
{
	bool yes;

	pthread_mutex_lock(&d->mu);
	yes = slot_named(d, job) != NULL;
	pthread_mutex_unlock(&d->mu);
	return yes;
}

enum lk_api_trigger lk_api_trigger(struct lk_daemon *d, const char *job, bool full, char id[37],
				   const char **why)
{
	enum lk_api_trigger rc;
	struct lk_slot *s;
	bool record = false;

	*why = NULL;
	id[0] = '\0';
	pthread_mutex_lock(&d->mu);
	s = slot_named(d, job);
	if (!s) {
		rc = LK_API_UNKNOWN_JOB;
	} else if (d->closing || lk_flag(d->opts->stop)) {
		rc = LK_API_CLOSING;
	} else if (!lk_daemon_labels_fit(d, s->job)) {
		*why = "this job's run_on asks for instance labels this instance lacks: trigger it "
		       "on an instance that has them (GET /api/jobs shows the holder)";
		rc = LK_API_NOT_HERE;
	} else if (!lk_daemon_may_run(d, job)) {
		*why = "another instance holds this job's lease: trigger it there (GET /api/jobs "
		       "shows the holder)";
		rc = LK_API_NOT_HERE;
	} else if (s->realtime && !full) {
		*why = "a real-time job streams all the time; ask for type full to re-snapshot it";
		rc = LK_API_NOT_SUPPORTED;
	} else if (s->realtime && !s->resnap) {
		lk_uuid7(s->next_id);
		memcpy(id, s->next_id, 37);
		s->resnap = true;
		lk_flag_set(&s->stop,
			    true); /* the stream stops at its next page; the thread re-snapshots */
		record = true;
		rc = LK_API_QUEUED;
	} else if (s->queued && s->run_id[0]) {
		memcpy(id, s->run_id, 37);
		rc = LK_API_COALESCED;
	} else if ((s->realtime || s->e.pending > 0) && s->next_id[0]) {
		memcpy(id, s->next_id, 37); /* a re-snapshot or waiting run asked for already */
		rc = LK_API_COALESCED;
	} else if (s->e.pending > 0) {
		lk_uuid7(s->next_id); /* a queued fire (overlap: queue, catch-up) gets a name */
		memcpy(id, s->next_id, 37);
		s->next_full = full;
		record = true;
		rc = LK_API_COALESCED;
	} else if (s->busy && s->e.overlap != LK_OVERLAP_QUEUE) {
		memcpy(id, s->run_id, 37);
		rc = LK_API_RUNNING;
	} else {
		(void)lk_sched_trigger(&s->e);
		lk_uuid7(s->next_id);
		memcpy(id, s->next_id, 37);
		s->next_full = full;
		record = true;
		rc = LK_API_QUEUED;
	}
	if (record)
		lk_daemon_live_queued(d, id, job, full);
	pthread_mutex_unlock(&d->mu);
	if (record) {
		/* queued in the store too, so any instance answers; a run that has started
		 * already (its row exists) is left alone */
		struct lk_run run;

		memset(&run, 0, sizeof(run));
		memcpy(run.id, id, sizeof(run.id));
		run.job = job;
		run.type = full ? "full" : "incremental";
		run.status = "queued";
		run.progress = -1;
		run.total_estimate = -1;
		run.started_ms = lk_wall_ms();
		api_record(d, &run, true);
		lk_log_info("job %s: run %s queued over HTTP (%s)", job, id,
			    full ? "full" : "incremental");
	}
	return rc;
}

enum lk_api_cancel lk_api_cancel(struct lk_daemon *d, const char *id, struct lk_api_run *out,
				 struct lk_err *err)
{
	enum lk_api_cancel rc = LK_API_NO_RUN;
	bool settle = false, found = false;
	int got;

	pthread_mutex_lock(&d->mu);
	wait_ready(d);
	for (int i = 0; i < d->nslots && !found; i++) {
		struct lk_slot *s = d->slots[i];

		if (s->next_id[0] && strcmp(s->next_id, id) == 0) {
			found = true;
			if (s->realtime) {
				rc = LK_API_CANNOT;
				continue;
			}
			if (s->e.pending > 0)
				s->e.pending--;
			s->next_id[0] = '\0';
			settle = true;
			rc = LK_API_CANCELLING;
		} else if (s->busy && s->run_id[0] && strcmp(s->run_id, id) == 0) {
			found = true;
			if (s->realtime) {
				rc = LK_API_CANNOT;
				continue;
			}
			lk_flag_set(&s->cancel, true);
			lk_flag_set(&s->stop, true);
			rc = LK_API_CANCELLING;
		}
	}
	pthread_mutex_unlock(&d->mu);
	if (settle)
		lk_daemon_live_settle(d, id, "cancelled", "cancelled over HTTP before it started");
	if (found) {
		if (rc == LK_API_CANCELLING)
			lk_log_info("run %s: cancel requested over HTTP", id);
		(void)lk_api_run_get(d, id, out, err);
		return rc;
	}
	got = lk_api_run_get(d, id, out, err);
	if (got < 0)
		return LK_API_NO_RUN;
	if (got == 0)
		return LK_API_NO_RUN;
	return lk_api_run_final(out) ? LK_API_FINISHED : LK_API_NO_RUN;
}

/* ---- jobs, health, readiness ---- */

static const char *kind_name(const struct lk_job *j)
{
	static const char *const modes[] = {"snapshot", "poll", "realtime", "logical"};

	if (j->kind == LK_JOB_SQL)
		return "sql";
	if (j->kind == LK_JOB_EXEC)
		return "exec";
	return modes[j->mode];
}

/*
 * Who holds the job (mu held): with leases, the holder as last read from the store (any
 * instance, NULL when free); without, this instance while a run goes.
 */
static json_t *holder_json(struct lk_daemon *d, const struct lk_slot *s, bool running)
{
	const struct lk_lease *l;

	if (!d->cluster)
		return running ? json_string(d->opts->instance) : json_null();
	l = lk_daemon_lease(d, s->job->name);
	return l && l->holder[0] ? json_string(l->holder) : json_null();
}

/* A job's verify settings and next pass, for /api/jobs (mu held). */
static json_t *verify_conf_json(const struct lk_slot *s)
{
	const struct lk_verify_conf *v = &s->job->verify;
	json_t *o = json_pack("{s:b, s:o}", "repair", v->repair, "nextPass",
			      time_or_null(s->verify_next_ms));

	if (v->schedule)
		(void)json_object_set_new(o, "schedule", json_string(v->schedule));
	else
		(void)json_object_set_new(o, "everySeconds",
					  json_real((double)v->every_ms / 1000.0));
	return o;
}

json_t *lk_api_jobs(struct lk_daemon *d)
{
	json_t *arr = json_array();
	struct lk_rows rows;
	struct lk_err err = LK_ERR_INIT;
	size_t i;
	json_t *j;

	pthread_mutex_lock(&d->mu);
	wait_ready(d);
	for (int k = 0; k < d->nslots; k++) {
		const struct lk_slot *s = d->slots[k];
		const struct lk_job *job = s->job;
		bool running = s->busy && !s->queued;

		if (s->gone)
			continue;
		(void)json_array_append_new(
			arr,
			json_pack("{s:s, s:s, s:o, s:o, s:o, s:b, s:o, s:s, s:b, s:o, s:o}", "name",
				  job->name, "kind",
				  job->kind == LK_JOB_SYNC  ? "sync"
				  : job->kind == LK_JOB_SQL ? "sql"
							    : "exec",
				  "mode",
				  job->kind == LK_JOB_SYNC ? json_string(kind_name(job))
							   : json_null(),
				  "schedule", s->spec[0] ? json_string(s->spec) : json_null(),
				  "nextRun", s->realtime ? json_null() : time_or_null(s->e.next_ms),
				  "running", running, "currentRun",
				  running && s->run_id[0] ? json_string(s->run_id) : json_null(),
				  "priority",
				  job->priority == LK_PRIO_HIGH	 ? "high"
				  : job->priority == LK_PRIO_LOW ? "low"
								 : "normal",
				  "paused", d->degraded && job->priority == LK_PRIO_LOW, "holder",
				  holder_json(d, s, running), "lastRun", json_null()));
		if (job->nrun_on) {
			json_t *on = json_array();

			for (int r = 0; r < job->nrun_on; r++)
				(void)json_array_append_new(on, json_string(job->run_on[r]));
			(void)json_object_set_new(json_array_get(arr, json_array_size(arr) - 1),
						  "runOn", on);
		}
		if (job->verify.line)
			(void)json_object_set_new(json_array_get(arr, json_array_size(arr) - 1),
						  "verify", verify_conf_json(s));
		if (d->cluster) {
			const struct lk_lease *l = lk_daemon_lease(d, job->name);

			(void)json_object_set_new(
				json_array_get(arr, json_array_size(arr) - 1), "epoch",
				l && l->holder[0] ? json_integer(l->epoch) : json_null());
		}
	}
	pthread_mutex_unlock(&d->mu);
	/* the last run of each job, from the store (any instance's) */
	lk_rows_init(&rows, 15);
	pthread_mutex_lock(&d->api_mu);
	json_array_foreach(arr, i, j)
	{
		const char *name = json_string_value(json_object_get(j, "name"));
		struct lk_api_run r;

		if (!api_store(d, &err) ||
		    lk_store_runs_of(d->api_store, name, LK_RUNS_VERIFY, 1, &rows, &err) < 0) {
			api_store_failed(d);
			break;
		}
		if (rows.nrows > 0) { /* the last verify pass (docs/verify.md) */
			json_t *v = json_object_get(j, "verify");

			run_from_row(LK_ROW(&rows, 0), &r);
			if (!json_is_object(v))
				(void)json_object_set_new(j, "verify", v = json_object());
			(void)json_object_set_new(v, "lastPass", lk_api_run_json(&r));
		}
		lk_rows_reset(&rows);
		if (lk_store_runs_of(d->api_store, name, LK_RUNS_OWN, 1, &rows, &err) < 0) {
			api_store_failed(d);
			break;
		}
		if (rows.nrows == 0)
			continue;
		run_from_row(LK_ROW(&rows, 0), &r);
		(void)json_object_set_new(j, "lastRun", lk_api_run_json(&r));
		if (!json_object_get(j, "epoch") && json_is_true(json_object_get(j, "running")))
			(void)json_object_set_new(j, "epoch", json_integer(r.epoch));
		lk_rows_reset(&rows);
	}
	pthread_mutex_unlock(&d->api_mu);
	lk_rows_release(&rows);
	return arr;
}

static void check(json_t *checks, const char *name, const char *status, const char *detail,
		  const char *fix)
{
	(void)json_array_append_new(
		checks, json_pack("{s:s, s:s, s:s, s:o}", "name", name, "status", status, "detail",
				  detail, "recommendation", fix ? json_string(fix) : json_null()));
}

/* Jobs held for a manual re-snapshot (sync/guard.h): a warning naming the first, with why;
 * true when there is one. */
static bool held_check(json_t *checks)
{
	struct lk_trust_stat *st = lk_xcalloc(LK_RESNAP_STATS_MAX, sizeof(*st));
	int n = lk_sync_trust(st, LK_RESNAP_STATS_MAX), nheld = 0, first = -1;
	char when[40], detail[700], fix[400];

	for (int i = 0; i < n; i++)
		if (st[i].held && nheld++ == 0)
			first = i;
	if (first >= 0) {
		iso(st[first].held_wall_ms, when, sizeof(when));
		(void)snprintf(detail, sizeof(detail),
			       "%d job%s wait%s for a re-snapshot (resnapshot: manual); job %s "
			       "since %s (%s: %s)",
			       nheld, nheld == 1 ? "" : "s", nheld == 1 ? "s" : "", st[first].job,
			       when, lk_resnap_reason_name(st[first].reason), st[first].why);
		(void)snprintf(fix, sizeof(fix),
			       "its target may differ from its source until a full run: "
			       "`lockstep sync %s --full`, or POST /api/sync {\"job\": \"%s\", "
			       "\"type\": \"full\"} "
			       "(docs/realtime.md, \"What can make a target differ\")",
			       st[first].job, st[first].job);
		check(checks, "resnapshots", "warn", detail, fix);
	}
	free(st);
	return first >= 0;
}

/* Re-snapshots forced since the process started (sync/guard.h): warn for an hour after the
 * last one, naming it; they do not change the status (the job is recovering, not stuck). */
static void resnap_check(json_t *checks)
{
	struct lk_resnap_stat *st = lk_xcalloc(LK_RESNAP_STATS_MAX, sizeof(*st));
	int n = lk_sync_resnapshots(st, LK_RESNAP_STATS_MAX), last = -1;
	int64_t total = 0;
	char when[40], detail[640];

	if (held_check(checks)) {
		free(st);
		return;
	}
	for (int i = 0; i < n; i++) {
		total += st[i].count;
		if (last < 0 || st[i].last_wall_ms > st[last].last_wall_ms)
			last = i;
	}
	if (last < 0) {
		check(checks, "resnapshots", "ok", "no re-snapshot was forced since the start",
		      NULL);
	} else {
		iso(st[last].last_wall_ms, when, sizeof(when));
		(void)snprintf(
			detail, sizeof(detail),
			"%lld re-snapshot%s forced since the start; the last: job %s at %s (%s: "
			"%s)",
			(long long)total, total == 1 ? "" : "s", st[last].job, when,
			lk_resnap_reason_name(st[last].reason), st[last].why);
		check(checks, "resnapshots",
		      lk_wall_ms() - st[last].last_wall_ms < 3600000 ? "warn" : "ok", detail,
		      "a database went back in time, changed, or lost change capture: see "
		      "docs/realtime.md, \"Restores and failovers\"; lockstep_resnapshots_total "
		      "counts them by job and reason");
	}
	free(st);
}

/* Whether job is one of the daemon's current jobs (mu not held). */
static bool current_job(struct lk_daemon *d, const char *job)
{
	bool yes = false;

	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->nslots && !yes; i++)
		yes = !d->slots[i]->gone && strcmp(d->slots[i]->job->name, job) == 0;
	pthread_mutex_unlock(&d->mu);
	return yes;
}

/* Jobs stopped on their schemas (docs/schema-changes.md): a warning naming the first, with
 * the message; returns how many. */
static int schema_check(struct lk_daemon *d, json_t *checks)
{
	struct lk_trust_stat *st = lk_xcalloc(LK_RESNAP_STATS_MAX, sizeof(*st));
	int n = lk_sync_trust(st, LK_RESNAP_STATS_MAX), nblocked = 0, first = -1;
	char when[40], detail[900];

	for (int i = 0; i < n; i++)
		if (st[i].blocked && current_job(d, st[i].job) && nblocked++ == 0)
			first = i;
	if (first < 0) {
		check(checks, "schema", "ok", "no job is stopped on its schemas", NULL);
	} else {
		iso(st[first].blocked_wall_ms, when, sizeof(when));
		(void)snprintf(detail, sizeof(detail),
			       "%d job%s stopped on a schema mismatch; job %s since %s: %s",
			       nblocked, nblocked == 1 ? "" : "s", st[first].job, when,
			       st[first].blocked_why);
		check(checks, "schema", "warn", detail,
		      "do what the message says (docs/schema-changes.md); the job resumes by "
		      "itself once "
		      "its source and target tables fit");
	}
	free(st);
	return nblocked;
}

/* Jobs whose last verify pass left differences (docs/verify.md): a warning naming the
 * first; returns how many. */
static int verify_check(struct lk_daemon *d, json_t *checks)
{
	char first[128] = "", run[37] = "", detail[512];
	int64_t left = 0;
	int n = 0, passes = 0;
	bool failed = false;

	pthread_mutex_lock(&d->live_mu);
	for (int i = 0; i < d->njobstats; i++) {
		const struct lk_jobstat *js = &d->jobstats[i];

		passes += js->v_has;
		if (!js->v_has || (js->v_left == 0 && !js->v_failed))
			continue;
		if (n++ == 0) {
			(void)snprintf(first, sizeof(first), "%s", js->job);
			(void)snprintf(run, sizeof(run), "%s", js->v_run);
			left = js->v_left;
			failed = js->v_failed;
		}
	}
	pthread_mutex_unlock(&d->live_mu);
	if (n && !current_job(d, first))
		n = 0;	   /* a job removed since */
	if (n && failed) { /* a pass that keeps failing vouches for nothing */
		(void)snprintf(detail, sizeof(detail),
			       "%d job%s not verified or left different; job %s: its last verify "
			       "pass failed (run %s)",
			       n, n == 1 ? "" : "s", first, run);
		check(checks, "verify", "warn", detail,
		      "the run's error says why (`lockstep status`, GET /api/sync/status/ID); "
		      "docs/verify.md");
		return n;
	}
	if (n == 0) {
		(void)snprintf(detail, sizeof(detail),
			       passes ? "no job's last verify pass left a difference"
				      : "no verify pass has run since the start");
		check(checks, "verify", "ok", detail, NULL);
		return 0;
	}
	(void)snprintf(detail, sizeof(detail),
		       "%d job%s left different by the last verify pass; job %s: %lld differences "
		       "(run %s)",
		       n, n == 1 ? "" : "s", first, (long long)left, run);
	check(checks, "verify", "warn", detail,
	      "the target differs from the source: `lockstep verify JOB --repair` (or "
	      "verify.repair: true) repairs it; docs/verify.md says what a difference means");
	return n;
}

json_t *lk_api_health(struct lk_daemon *d, int *code)
{
	json_t *checks = json_array(), *breakers = json_array(), *leases = json_array();
	struct lk_breaker_info info[32];
	int nb = lk_breaker_list(info, 32), open = 0, failing = 0, outages = 0, unplaced = 0;
	int blocked, drifted;
	const char *status = "HEALTHY";
	char detail[512];
	int64_t now = lk_mono_ms(), store_age;
	int64_t rss, limit;
	bool degraded;

	pthread_mutex_lock(&d->mu);
	degraded = d->degraded;
	rss = d->rss;
	limit = d->limit;
	store_age = d->store_ok_ms > 0 ? now - d->store_ok_ms : -1;
	for (int i = 0; i < d->nslots; i++) {
		const struct lk_slot *s = d->slots[i];

		if (s->gone)
			continue;
		failing += __atomic_load_n(&s->fail_streak, __ATOMIC_RELAXED) > 0;
		outages += lk_flag(&s->outage);
		unplaced += !d->cluster && !lk_daemon_labels_fit(d, s->job);
		if (!d->cluster && s->busy && !s->queued)
			(void)json_array_append_new(leases,
						    json_pack("{s:s, s:s}", "job", s->job->name,
							      "holder", d->opts->instance));
	}
	for (int i = 0; d->cluster && i < d->nleases; i++) {
		const struct lk_lease *l = &d->leases[i];

		unplaced += l->nowhere;
		if (l->held)
			(void)json_array_append_new(leases, json_pack("{s:s, s:s, s:I, s:b}", "job",
								      l->job, "holder", d->member,
								      "epoch", (json_int_t)l->epoch,
								      "releasing", l->releasing));
	}
	pthread_mutex_unlock(&d->mu);

	if (store_age < 0 || store_age > 10000) {
		(void)snprintf(detail, sizeof(detail),
			       store_age < 0 ? "the state store was never reached"
					     : "the state store has not answered for %lld s",
			       (long long)(store_age / 1000));
		check(checks, "state_store", "fail", detail,
		      "check that the state store's database is up and reachable; `lockstep "
		      "migrate --status` tests it");
		status = "UNHEALTHY";
	} else {
		check(checks, "state_store", "ok", "reachable", NULL);
	}
	if (limit > 0) {
		(void)snprintf(detail, sizeof(detail), "RSS %.1f MiB of a %.1f MiB limit",
			       (double)rss / 1048576.0, (double)limit / 1048576.0);
		check(checks, "memory", degraded ? "warn" : "ok", detail,
		      degraded ? "batches are halved and low-priority jobs wait; raise "
				 "memory.limit or lower the jobs' batch"
			       : NULL);
	} else {
		(void)snprintf(detail, sizeof(detail), "RSS %.1f MiB, no memory.limit",
			       (double)rss / 1048576.0);
		check(checks, "memory", "ok", detail, NULL);
	}
	for (int i = 0; i < nb; i++) {
		open += info[i].state != LK_BREAKER_CLOSED;
		(void)json_array_append_new(breakers,
					    json_pack("{s:s, s:s, s:i, s:I}", "db", info[i].db,
						      "state", lk_breaker_state_name(info[i].state),
						      "failures", info[i].failures, "probeInMs",
						      (json_int_t)info[i].probe_in_ms));
	}
	(void)snprintf(detail, sizeof(detail), "%d of %d circuit breakers open", open, nb);
	check(checks, "databases", open ? "warn" : "ok", detail,
	      open ? "a database keeps failing: see `breakers` and the log for its error" : NULL);
	(void)snprintf(
		detail, sizeof(detail),
		"%d scheduled job%s failing, %d real-time job%s reconnecting, %d job%s whose "
		"run_on no live instance has the labels for",
		failing, failing == 1 ? "" : "s", outages, outages == 1 ? "" : "s", unplaced,
		unplaced == 1 ? "" : "s");
	check(checks, "jobs", failing || outages || unplaced ? "warn" : "ok", detail,
	      failing || outages ? "see `lockstep status` and the log lines `job NAME: ...`"
	      : unplaced	 ? "start an instance with the instance.labels the job's run_on "
				   "lists, or change its run_on (the log names the job)"
				 : NULL);
	resnap_check(checks);
	blocked = schema_check(d, checks);
	drifted = verify_check(d, checks);
	if (strcmp(status, "HEALTHY") == 0 &&
	    (degraded || open || failing || outages || unplaced || blocked || drifted))
		status = "DEGRADED";
	*code = strcmp(status, "UNHEALTHY") == 0 ? 503 : 200;
	return json_pack(
		"{s:s, s:s, s:I, s:I, s:I, s:{s:I, s:o, s:i}, s:o, s:o, s:o}", "status", status,
		"instance", d->opts->instance, "pid", (json_int_t)getpid(), "uptimeSeconds",
		(json_int_t)((now - d->started_mono_ms) / 1000), "restarts",
		(json_int_t)d->opts->restarts, "memory", "rssBytes", (json_int_t)rss, "limitBytes",
		limit > 0 ? json_integer(limit) : json_null(), "batchDivisor",
		lk_sync_batch_divisor(), "checks", checks, "breakers", breakers, "leases", leases);
}

json_t *lk_api_ready(struct lk_daemon *d, int *code)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;
	int rc;

	lk_rows_init(&rows, 4);
	pthread_mutex_lock(&d->api_mu);
	rc = api_store(d, &err) ? lk_store_migration_status(d->api_store, &rows, &err) : -1;
	if (rc < 0)
		api_store_failed(d);
	pthread_mutex_unlock(&d->api_mu);
	lk_rows_release(&rows);
	if (rc < 0) {
		*code = 503;
		return json_pack("{s:s, s:{s:s, s:s}}", "error", "not ready", "detail",
				 "state_store", "fail", "message", err.msg);
	}
	*code = 200;
	return json_pack("{s:s, s:{s:s, s:s}}", "status", "ready", "checks", "config", "ok",
			 "state_store", "ok");
}

/* ---- dead letters ---- */

static json_t *value_json(const struct lk_value *v, bool number, bool parse)
{
	if (v->null)
		return json_null();
	if (number)
		return json_integer(strtoll(v->p, NULL, 10));
	return parse ? lk_json_parse_text(v->p, v->len) : lk_json_text(v->p, v->len);
}

json_t *lk_api_errors(struct lk_daemon *d, const char *job, int resolved, struct lk_err *err)
{
	struct lk_rows rows;
	json_t *arr = NULL;
	int rc;

	lk_rows_init(&rows, LK_DLCOL_N);
	pthread_mutex_lock(&d->api_mu);
	rc = api_store(d, err)
		     ? lk_store_dl_list(d->api_store, job, resolved != 0, 1000, &rows, NULL, err)
		     : -1;
	if (rc < 0)
		api_store_failed(d);
	pthread_mutex_unlock(&d->api_mu);
	if (rc == 0) {
		arr = json_array();
		for (int i = 0; i < rows.nrows; i++) {
			const struct lk_value *v = LK_ROW(&rows, i);
			bool is_resolved = !v[LK_DLCOL_RESOLVED].null;

			if (resolved == 1 && !is_resolved)
				continue;
			(void)json_array_append_new(
				arr,
				json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
					  "id", value_json(&v[LK_DLCOL_ID], true, false), "job",
					  value_json(&v[LK_DLCOL_JOB], false, false), "key",
					  value_json(&v[LK_DLCOL_KEY], false, true), "change",
					  value_json(&v[LK_DLCOL_CHANGE], false, false), "op",
					  value_json(&v[LK_DLCOL_OP], false, false), "sqlstate",
					  value_json(&v[LK_DLCOL_SQLSTATE], false, false),
					  "message", value_json(&v[LK_DLCOL_MESSAGE], false, false),
					  "attempts",
					  value_json(&v[LK_DLCOL_ATTEMPTS], true, false), "created",
					  time_or_null(v[LK_DLCOL_CREATED].null
							       ? 0
							       : strtoll(v[LK_DLCOL_CREATED].p,
									 NULL, 10)),
					  "resolved",
					  time_or_null(is_resolved ? strtoll(v[LK_DLCOL_RESOLVED].p,
									     NULL, 10)
								   : 0)));
		}
	}
	lk_rows_release(&rows);
	return arr;
}

int lk_api_error_resolve(struct lk_daemon *d, int64_t id, struct lk_err *err)
{
	bool was_open = false;
	int rc;

	pthread_mutex_lock(&d->api_mu);
	rc = api_store(d, err) ? lk_store_dl_resolve(d->api_store, id, &was_open, err) : -1;
	if (rc < 0)
		api_store_failed(d);
	pthread_mutex_unlock(&d->api_mu);
	if (rc < 0)
		return -1;
	return was_open ? 1 : 0;
}

static json_t *key_json(const char *key)
{
	return lk_json_parse_text(key, strlen(key));
}

int lk_api_error_replay(struct lk_daemon *d, int64_t id, json_t **result, struct lk_err *err)
{
	static const char *const actions[] = {"upserted", "deleted", "nothing", "queued"};
	struct lk_sync_opts so = {.stop = d->opts->stop};
	struct lk_replay_result res;
	const struct lk_config *cfg;
	struct lk_store *store;
	int rc;

	/* its own store handle: a replay takes the job's lock and writes the target */
	store = lk_store_open(d->store_cfg, err);
	if (!store)
		return -1;
	pthread_mutex_lock(&d->mu);
	cfg = d->gens->cfg; /* the newest config stays alive while it is the newest... */
	(void)__atomic_add_fetch(&d->gens->users, 1, __ATOMIC_ACQ_REL); /* ...while we use it */
	pthread_mutex_unlock(&d->mu);
	rc = lk_sync_replay(cfg, store, id, &so, &res, err);
	pthread_mutex_lock(&d->mu);
	for (struct lk_gen *g = d->gens; g; g = g->next) {
		if (g->cfg == cfg)
			(void)__atomic_sub_fetch(&g->users, 1, __ATOMIC_ACQ_REL);
	}
	pthread_mutex_unlock(&d->mu);
	lk_store_close(store);
	if (rc < 0)
		return err->code == LK_ERR_NOTFOUND ? 0 : -1;
	*result = json_pack("{s:I, s:s, s:s, s:o}", "id", (json_int_t)id, "job", res.job, "action",
			    actions[res.action], "key", key_json(res.key));
	return 1;
}

/* ---- usage ---- */

static json_int_t col_int(const struct lk_value *v)
{
	return v->null ? 0 : (json_int_t)strtoll(v->p, NULL, 10);
}

static json_t *counts_json(const struct lk_value *v)
{
	return json_pack("{s:I, s:I, s:I}", "runs", col_int(&v[0]), "rows", col_int(&v[1]),
			 "queries", col_int(&v[2]));
}

/*
 * {days, from, to, jobs: [{day, job, runs, rows, queries, databases: {db: counts}}],
 *  databases: [{day, db, runs, rows, queries}], totals: counts}. A job's rows are the
 * rows it wrote (sql: changed); a database's are the rows read from it plus written to it.
 */
json_t *lk_api_usage(struct lk_daemon *d, int days, struct lk_err *err)
{
	struct lk_rows rows;
	json_t *jobs = NULL, *dbs = NULL, *cur = NULL, *out = NULL;
	json_int_t total[3] = {0, 0, 0};
	char from[11], to[11];
	int rc;

	lk_rows_init(&rows, 7);
	pthread_mutex_lock(&d->api_mu);
	rc = api_store(d, err) ? lk_store_usage(d->api_store, days, &rows, err) : -1;
	if (rc < 0)
		api_store_failed(d);
	pthread_mutex_unlock(&d->api_mu);
	if (rc < 0)
		goto out;
	jobs = json_array();
	dbs = json_array();
	/*
	 * Part 0 comes by day, then job, with the job's own row (db "") before its databases;
	 * part 1 is the per-database sums.
	 */
	for (int i = 0; i < rows.nrows; i++) {
		const struct lk_value *v = LK_ROW(&rows, i);

		if (v[0].p[0] == '1') {
			json_t *e = counts_json(&v[4]);

			(void)json_object_set_new(e, "day", json_string(v[1].p));
			(void)json_object_set_new(e, "db", json_string(v[3].p));
			(void)json_array_append_new(dbs, e);
		} else if (v[3].len == 0) {
			cur = json_pack("{s:s, s:s, s:I, s:I, s:I, s:{}}", "day", v[1].p, "job",
					v[2].p, "runs", col_int(&v[4]), "rows", col_int(&v[5]),
					"queries", col_int(&v[6]), "databases");
			(void)json_array_append_new(jobs, cur);
			for (int k = 0; k < 3; k++)
				total[k] += col_int(&v[4 + k]);
		} else if (cur &&
			   strcmp(json_string_value(json_object_get(cur, "day")), v[1].p) == 0 &&
			   strcmp(json_string_value(json_object_get(cur, "job")), v[2].p) == 0) {
			(void)json_object_set_new(json_object_get(cur, "databases"), v[3].p,
						  counts_json(&v[4]));
		}
	}
	lk_usage_day(lk_wall_ms() - (int64_t)(days - 1) * 86400000, from);
	lk_usage_day(lk_wall_ms(), to);
	out = json_pack("{s:i, s:s, s:s, s:o, s:o, s:{s:I, s:I, s:I}}", "days", days, "from", from,
			"to", to, "jobs", jobs, "databases", dbs, "totals", "runs", total[0],
			"rows", total[1], "queries", total[2]);
out:
	lk_rows_release(&rows);
	return out;
}

/* ---- metrics ---- */

static void label(struct lk_buf *b, const char *v)
{
	lk_buf_addch(b, '"');
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			lk_buf_addf(b, "\\%c", *v);
		else if (*v == '\n')
			lk_buf_adds(b, "\\n");
		else
			lk_buf_addch(b, *v);
	}
	lk_buf_addch(b, '"');
}

static void help(struct lk_buf *b, const char *name, const char *type, const char *text)
{
	lk_buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void per_job(struct lk_buf *b, const char *name, const char *job, const char *fmt, double v)
{
	lk_buf_addf(b, "%s{job=", name);
	label(b, job);
	lk_buf_addf(b, "} ");
	lk_buf_addf(b, fmt, v);
	lk_buf_addch(b, '\n');
}

/* Statements and errors per database, and the state store's, from the connector's tallies. */
static void db_metrics(struct lk_buf *b)
{
	struct lk_db_stat st[LK_DB_STATS_MAX];
	int n = lk_db_stats(st, LK_DB_STATS_MAX);
	static const char *const names[2][2] = {
		{"lockstep_db_queries_total", "lockstep_db_errors_total"},
		{"lockstep_state_store_queries_total", "lockstep_state_store_errors_total"}};

	for (int store = 0; store < 2; store++) {
		for (int k = 0; k < 2; k++) {
			help(b, names[store][k], "counter",
			     k == 0 ? "Statements run (PostgreSQL: sent; SQLite: started)."
				    : "Failed statements and connection attempts.");
			for (int i = 0; i < n; i++) {
				if (st[i].state_store != (store == 1))
					continue;
				lk_buf_adds(b, names[store][k]);
				if (!store) {
					lk_buf_adds(b, "{db=");
					label(b, st[i].name);
					lk_buf_addch(b, '}');
				}
				lk_buf_addf(b, " %lld\n",
					    (long long)(k == 0 ? st[i].queries : st[i].errors));
			}
		}
	}
}

/* Capture gaps met, and jobs held for a manual re-snapshot (sync/guard.h). */
static void trust_metrics(struct lk_buf *b)
{
	struct lk_trust_stat *st = lk_xcalloc(LK_RESNAP_STATS_MAX, sizeof(*st));
	int n = lk_sync_trust(st, LK_RESNAP_STATS_MAX);

	help(b, "lockstep_capture_gaps_total", "counter",
	     "Capture gaps met by real-time jobs: changes of the source table may have gone "
	     "unlogged (capture off, a partition attached or detached, a rebuilt table).");
	for (int i = 0; i < n; i++) {
		lk_buf_adds(b, "lockstep_capture_gaps_total{job=");
		label(b, st[i].job);
		lk_buf_addf(b, "} %lld\n", (long long)st[i].gaps);
	}
	help(b, "lockstep_resnapshot_held", "gauge",
	     "1 while a real-time job with resnapshot: manual waits for a full run.");
	for (int i = 0; i < n; i++) {
		lk_buf_adds(b, "lockstep_resnapshot_held{job=");
		label(b, st[i].job);
		lk_buf_addf(b, "} %d\n", st[i].held ? 1 : 0);
	}
	help(b, "lockstep_schema_blocked", "gauge",
	     "1 while a sync job is stopped because its source and target tables do not fit "
	     "(a schema change it does not follow, a missing column or key).");
	for (int i = 0; i < n; i++) {
		lk_buf_adds(b, "lockstep_schema_blocked{job=");
		label(b, st[i].job);
		lk_buf_addf(b, "} %d\n", st[i].blocked ? 1 : 0);
	}
	free(st);
}

/* Re-snapshots forced since the process started, by job and reason (sync/guard.h). */
static void resnap_metrics(struct lk_buf *b)
{
	struct lk_resnap_stat *st = lk_xcalloc(LK_RESNAP_STATS_MAX, sizeof(*st));
	int n = lk_sync_resnapshots(st, LK_RESNAP_STATS_MAX);

	help(b, "lockstep_resnapshots_total", "counter",
	     "Fresh snapshots of real-time jobs forced by a restore, failover, lost registry row, "
	     "capture gap or TRUNCATE.");
	for (int i = 0; i < n; i++) {
		lk_buf_adds(b, "lockstep_resnapshots_total{job=");
		label(b, st[i].job);
		lk_buf_addf(b, ",reason=\"%s\"} %lld\n", lk_resnap_reason_name(st[i].reason),
			    (long long)st[i].count);
	}
	free(st);
	trust_metrics(b);
}

/* process_* from /proc/self. */
static void process_metrics(struct lk_buf *b, int64_t rss, int64_t start_wall_ms)
{
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long utime = 0, stime = 0, vsize = 0;
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	int fds = 0;
	char path[64];

	if (f) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		const char *p;

		buf[n] = '\0';
		p = strrchr(buf, ')');
		/* after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt
		 * cmajflt utime stime cutime cstime priority nice threads itreal starttime vsize */
		if (p)
			(void)sscanf(p + 2,
				     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d "
				     "%*d %*d %*d %*d %*u %lu",
				     &utime, &stime, &vsize);
		(void)fclose(f);
	}
	for (int fd = 0; fd < 4096; fd++) {
		(void)snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		fds += access(path, F_OK) == 0;
	}
	(void)page;
	help(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
	lk_buf_addf(b, "process_cpu_seconds_total %.2f\n",
		    ticks > 0 ? (double)(utime + stime) / (double)ticks : 0.0);
	help(b, "process_resident_memory_bytes", "gauge", "Resident memory size.");
	lk_buf_addf(b, "process_resident_memory_bytes %lld\n", (long long)rss);
	help(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
	lk_buf_addf(b, "process_virtual_memory_bytes %lu\n", vsize);
	help(b, "process_open_fds", "gauge", "Open file descriptors.");
	lk_buf_addf(b, "process_open_fds %d\n", fds);
	help(b, "process_start_time_seconds", "gauge", "Start time since the Unix epoch.");
	lk_buf_addf(b, "process_start_time_seconds %.3f\n", (double)start_wall_ms / 1000.0);
}

/* The last verify pass of each job (docs/verify.md); the label is job_name (Prometheus
 * keeps `job` for the scrape target). */
static void verify_metrics(struct lk_buf *b, const struct lk_jobstat *js, int n)
{
	help(b, "lockstep_verify_differences", "gauge",
	     "Differences between source and target that the job's last verify pass found.");
	for (int i = 0; i < n; i++) {
		if (!js[i].v_has)
			continue;
		lk_buf_adds(b, "lockstep_verify_differences{job_name=");
		label(b, js[i].job);
		lk_buf_addf(b, "} %lld\n", (long long)js[i].v_diffs);
	}
	help(b, "lockstep_verify_last_pass_timestamp_seconds", "gauge",
	     "When the job's last verify pass ended (Unix time).");
	for (int i = 0; i < n; i++) {
		if (!js[i].v_has)
			continue;
		lk_buf_adds(b, "lockstep_verify_last_pass_timestamp_seconds{job_name=");
		label(b, js[i].job);
		lk_buf_addf(b, "} %.3f\n", (double)js[i].v_at_ms / 1000.0);
	}
	help(b, "lockstep_repaired_rows_total", "counter",
	     "Rows verify passes repaired (written, deleted, or queued for a real-time job's "
	     "applier).");
	for (int i = 0; i < n; i++) {
		if (!js[i].v_has)
			continue;
		lk_buf_adds(b, "lockstep_repaired_rows_total{job_name=");
		label(b, js[i].job);
		lk_buf_addf(b, "} %lld\n", (long long)js[i].v_repaired_total);
	}
}

void lk_api_metrics(struct lk_daemon *d, struct lk_buf *b)
{
	struct lk_breaker_info info[32];
	int nb = lk_breaker_list(info, 32);
	struct lk_jobstat *js;
	int n, nslots = 0;
	struct {
		char job[128];
		int64_t next_ms;
		bool running, realtime, held;
	} * jobs;
	int64_t rss, restarts = d->opts->restarts;
	struct lk_err err = LK_ERR_INIT;

	pthread_mutex_lock(&d->mu);
	rss = d->rss;
	jobs = lk_xcalloc((size_t)d->nslots + 1, sizeof(*jobs));
	for (int i = 0; i < d->nslots; i++) {
		if (d->slots[i]->gone)
			continue;
		copy_str(jobs[nslots].job, sizeof(jobs[0].job), d->slots[i]->job->name);
		jobs[nslots].next_ms = d->slots[i]->e.next_ms;
		jobs[nslots].running = d->slots[i]->busy && !d->slots[i]->queued;
		jobs[nslots].realtime = d->slots[i]->realtime;
		jobs[nslots].held = d->cluster ? lk_daemon_may_run(d, d->slots[i]->job->name)
					       : jobs[nslots].running;
		nslots++;
	}
	pthread_mutex_unlock(&d->mu);

	pthread_mutex_lock(&d->live_mu);
	n = d->njobstats;
	js = lk_xcalloc((size_t)n + 1, sizeof(*js));
	if (n)
		memcpy(js, d->jobstats, (size_t)n * sizeof(*js));
	pthread_mutex_unlock(&d->live_mu);

	verify_metrics(b, js, n);
	help(b, "lockstep_rows_read_total", "counter", "Rows read from sources.");
	for (int i = 0; i < n; i++)
		per_job(b, "lockstep_rows_read_total", js[i].job, "%.0f", (double)js[i].rows_read);
	help(b, "lockstep_rows_written_total", "counter", "Rows written or deleted in targets.");
	for (int i = 0; i < n; i++)
		per_job(b, "lockstep_rows_written_total", js[i].job, "%.0f",
			(double)js[i].rows_written);
	help(b, "lockstep_rows_failed_total", "counter", "Rows sent to the dead-letter queue.");
	for (int i = 0; i < n; i++)
		per_job(b, "lockstep_rows_failed_total", js[i].job, "%.0f",
			(double)js[i].rows_failed);
	help(b, "lockstep_runs_total", "counter", "Finished runs by status.");
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < LK_NSTATUS; k++) {
			lk_buf_adds(b, "lockstep_runs_total{job=");
			label(b, js[i].job);
			lk_buf_addf(b, ",status=\"%s\"} %lld\n", statuses[k],
				    (long long)js[i].runs[k]);
		}
	}
	help(b, "lockstep_run_duration_seconds", "histogram", "Duration of finished runs.");
	for (int i = 0; i < n; i++) {
		for (int k = 0; k <= LK_HIST_BUCKETS; k++) {
			lk_buf_adds(b, "lockstep_run_duration_seconds_bucket{job=");
			label(b, js[i].job);
			if (k < LK_HIST_BUCKETS)
				lk_buf_addf(b, ",le=\"%g\"} %lld\n", buckets[k],
					    (long long)js[i].hist[k]);
			else
				lk_buf_addf(b, ",le=\"+Inf\"} %lld\n", (long long)js[i].hist_count);
		}
		per_job(b, "lockstep_run_duration_seconds_sum", js[i].job, "%.3f", js[i].hist_sum);
		per_job(b, "lockstep_run_duration_seconds_count", js[i].job, "%.0f",
			(double)js[i].hist_count);
	}
	help(b, "lockstep_last_success_timestamp_seconds", "gauge",
	     "When the job's last successful run finished.");
	for (int i = 0; i < n; i++) {
		if (js[i].last_success_ms > 0)
			per_job(b, "lockstep_last_success_timestamp_seconds", js[i].job, "%.3f",
				(double)js[i].last_success_ms / 1000.0);
	}
	help(b, "lockstep_next_run_timestamp_seconds", "gauge", "The job's next fire time.");
	for (int i = 0; i < nslots; i++) {
		if (jobs[i].next_ms > 0)
			per_job(b, "lockstep_next_run_timestamp_seconds", jobs[i].job, "%.3f",
				(double)jobs[i].next_ms / 1000.0);
	}
	help(b, "lockstep_job_running", "gauge", "1 while a run of the job is going.");
	for (int i = 0; i < nslots; i++)
		per_job(b, "lockstep_job_running", jobs[i].job, "%.0f", jobs[i].running ? 1 : 0);
	help(b, "lockstep_lease_held", "gauge",
	     "1 while this instance holds the job's lease (an SQLite store: while it runs).");
	for (int i = 0; i < nslots; i++)
		per_job(b, "lockstep_lease_held", jobs[i].job, "%.0f", jobs[i].held ? 1 : 0);
	help(b, "lockstep_lease_takeovers_total", "counter",
	     "Leases this instance took from an expired or departed holder.");
	lk_buf_addf(b, "lockstep_lease_takeovers_total %lld\n",
		    (long long)__atomic_load_n(&d->takeovers, __ATOMIC_RELAXED));
	help(b, "lockstep_lease_losses_total", "counter",
	     "Leases this instance lost (not renewed in time, or taken).");
	lk_buf_addf(b, "lockstep_lease_losses_total %lld\n",
		    (long long)__atomic_load_n(&d->losses, __ATOMIC_RELAXED));
	help(b, "lockstep_fenced_writes_total", "counter",
	     "Runs whose write the target or state store refused for an older epoch.");
	lk_buf_addf(b, "lockstep_fenced_writes_total %lld\n",
		    (long long)__atomic_load_n(&d->fenced, __ATOMIC_RELAXED));
	help(b, "lockstep_dead_letters", "gauge", "Open dead letters.");
	pthread_mutex_lock(&d->api_mu);
	for (int i = 0; i < nslots; i++) {
		int64_t open = 0;

		if (!api_store(d, &err) ||
		    lk_store_dl_count_open(d->api_store, jobs[i].job, &open, &err) < 0) {
			api_store_failed(d);
			break;
		}
		per_job(b, "lockstep_dead_letters", jobs[i].job, "%.0f", (double)open);
	}
	pthread_mutex_unlock(&d->api_mu);
	help(b, "lockstep_breaker_state", "gauge",
	     "A database's circuit breaker: 0 closed, 1 open, 2 half-open.");
	for (int i = 0; i < nb; i++) {
		lk_buf_adds(b, "lockstep_breaker_state{db=");
		label(b, info[i].db);
		lk_buf_addf(b, "} %d\n", (int)info[i].state);
	}
	db_metrics(b);
	help(b, "lockstep_replication_lag_seconds", "gauge",
	     "Real-time jobs: age of the oldest source change not yet applied.");
	for (int i = 0; i < n; i++) {
		if (js[i].has_lag)
			per_job(b, "lockstep_replication_lag_seconds", js[i].job, "%.3f",
				js[i].lag_s);
	}
	help(b, "lockstep_replication_lag_rows", "gauge",
	     "Real-time jobs: source changes committed and not yet applied.");
	for (int i = 0; i < n; i++) {
		if (js[i].has_lag)
			per_job(b, "lockstep_replication_lag_rows", js[i].job, "%.0f",
				(double)js[i].lag_rows);
	}
	resnap_metrics(b);
	help(b, "lockstep_restarts", "gauge", "Starts of this instance before this one.");
	lk_buf_addf(b, "lockstep_restarts %lld\n", (long long)restarts);
	help(b, "lockstep_memory_batch_divisor", "gauge",
	     "Batch sizes are divided by this under memory pressure.");
	lk_buf_addf(b, "lockstep_memory_batch_divisor %d\n", lk_sync_batch_divisor());
	process_metrics(b, rss > 0 ? rss : lk_daemon_rss_bytes(), d->started_wall_ms);
	free(js);
	free(jobs);
}
