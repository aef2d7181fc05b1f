/*
 * api.h - what the HTTP API asks of the running daemon (SPEC §6). Every function is
 * thread-safe and answers from the daemon's memory (its live view of runs, its slots,
 * breakers, memory), except where it says it reads the state store: those use one
 * store handle of their own, shared under a lock, never a worker's.
 */
#ifndef LK_DAEMON_API_H
#define LK_DAEMON_API_H

#include "core/buf.h"
#include "core/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct lk_daemon;

/* A run as the API shows it. */
struct lk_api_run {
	char id[37];
	char job[128];
	char type[16];	 /* full | incremental */
	char status[16]; /* queued | running | succeeded | failed | cancelled | interrupted |
			    skipped */
	char stage[32];
	double progress; /* -1 when unknown */
	int64_t rows_read, rows_written, rows_failed, total_estimate;
	int64_t started_ms, updated_ms, finished_ms; /* finished 0 while not finished */
	int64_t epoch;
	char error[512];
	bool has_lag; /* a real-time run's replication lag, as last measured */
	double lag_s;
	int64_t lag_rows;
};

/* True once the status can no longer change. */
bool lk_api_run_final(const struct lk_api_run *r);
/* The run as JSON: {syncId, job, type, status, progress, stage, startTime, ...}. */
json_t *lk_api_run_json(const struct lk_api_run *r);

/*
 * The run with this id: from the live view, else from the state store. 1 found, 0 not
 * found, -1 the store could not be read (err).
 */
int lk_api_run_get(struct lk_daemon *d, const char *id, struct lk_api_run *out, struct lk_err *err);

/*
 * Waits up to timeout_ms for the live run `id` to change after `after_ms` (its
 * updated_ms). 1 changed (out filled), 0 timed out (out holds the current state), -1 not in
 * the live view (finished long ago, or another instance's: read the store).
 */
int lk_api_run_wait(struct lk_daemon *d, const char *id, int64_t after_ms, int timeout_ms,
		    struct lk_api_run *out);

enum lk_api_trigger {
	LK_API_QUEUED,	      /* 202: a new run is queued; id set */
	LK_API_COALESCED,     /* 202: a run was already queued; its id */
	LK_API_RUNNING,	      /* 409: one is running (overlap: skip); its id */
	LK_API_UNKNOWN_JOB,   /* 404 */
	LK_API_NOT_SUPPORTED, /* 409: e.g. an incremental run of a real-time job */
	LK_API_CLOSING,	      /* 503: shutting down */
	LK_API_NOT_HERE	      /* 409: another instance holds the job's lease (why names it) */
};

/* POST /api/sync. id receives the run's id for QUEUED, COALESCED and RUNNING. */
enum lk_api_trigger lk_api_trigger(struct lk_daemon *d, const char *job, bool full, char id[37],
				   const char **why);

/*
 * POST /api/verify: a verify pass of job now, repairing when repair (docs/verify.md), on
 * the verify thread beside the job's own runs. QUEUED with its run id; COALESCED when one
 * is asked for already (repair then joins it); NOT_HERE when another instance holds it.
 */
enum lk_api_trigger lk_api_verify(struct lk_daemon *d, const char *job, bool repair, char id[37],
				  const char **why);

enum lk_api_cancel {
	LK_API_CANCELLING, /* 202: it stops at its next checkpoint (or never starts) */
	LK_API_FINISHED,   /* 409: it has already finished */
	LK_API_NO_RUN,	   /* 404 */
	LK_API_CANNOT	   /* 409: a real-time job's stream is not cancelled (remove the job) */
};
enum lk_api_cancel lk_api_cancel(struct lk_daemon *d, const char *id, struct lk_api_run *out,
				 struct lk_err *err);

/* GET /api/jobs: every job with kind, mode, schedule, next and last run, holder. */
json_t *lk_api_jobs(struct lk_daemon *d);
/* Whether a job of this name is configured. */
bool lk_api_job_exists(struct lk_daemon *d, const char *job);
/* GET /api/health; *code gets 200, or 503 when UNHEALTHY. */
json_t *lk_api_health(struct lk_daemon *d, int *code);
/* GET /readyz: reads the state store (its migrations). */
json_t *lk_api_ready(struct lk_daemon *d, int *code);
/* GET /api/runs (reads the store); limit 1..1000. */
json_t *lk_api_runs(struct lk_daemon *d, const char *job, int limit, struct lk_err *err);
/* GET /api/errors (reads the store); resolved: -1 any, 0 open, 1 resolved. */
json_t *lk_api_errors(struct lk_daemon *d, const char *job, int resolved, struct lk_err *err);
/* POST /api/errors/{id}/resolve and /replay: 1 done, 0 no such dead letter, -1 err. */
int lk_api_error_resolve(struct lk_daemon *d, int64_t id, struct lk_err *err);
int lk_api_error_replay(struct lk_daemon *d, int64_t id, json_t **result, struct lk_err *err);
/* GET /api/usage (reads the store): the last `days` days (1..366), per job and database. */
json_t *lk_api_usage(struct lk_daemon *d, int days, struct lk_err *err);
/* GET /metrics: the Prometheus text exposition. */
void lk_api_metrics(struct lk_daemon *d, struct lk_buf *out);

#endif
