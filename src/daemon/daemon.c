/*
 * daemon.c - one thread per real-time job. Each loops: open the state store, run
 * the job in follow mode (lk_sync_run: connect, lock, seal, resume from the
 * target's position, stream), and after a failure wait a full-jitter back-off
 * and start again from the position. An outage is logged once when it starts
 * and once when the job is streaming again.
 */
#include "daemon.h"

#include "store/store.h"
#include "sync/sync.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "daemon"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"

struct worker {
	const struct lk_config *cfg;
	const struct lk_job *job;
	volatile const bool *stop;
	pthread_t thread;
	bool started;
	bool outage; /* failing since outage_ms; cleared when streaming again */
	int64_t outage_ms;
	int attempt;
	char last_msg[LK_ERR_MSG_MAX];
};

static void on_progress(void *arg, const struct lk_sync_progress *p)
{
	struct worker *w = arg;

	if (!w->outage || strcmp(p->stage, "stream") != 0)
		return;
	lk_log_info("job %s: streaming again after %.1f s", w->job->name,
		    (double)(lk_mono_ms() - w->outage_ms) / 1000.0);
	w->outage = false;
	w->attempt = 0;
	w->last_msg[0] = '\0';
}

/* Logs a failure once per outage. */
static void note_failure(struct worker *w, const struct lk_err *err)
{
	if (!w->outage) {
		w->outage = true;
		w->outage_ms = lk_mono_ms();
	}
	if (w->last_msg[0]) { /* one line per outage; the rest at debug level */
		lk_log_debug("job %s: still failing: %s", w->job->name, err->msg);
		return;
	}
	(void)snprintf(w->last_msg, sizeof(w->last_msg), "%s", err->msg);
	if (err->code == LK_ERR_BUSY)
		lk_log_info("job %s: %s; waiting to take over", w->job->name, err->msg);
	else if (err->transient || err->code == LK_ERR_UNAVAILABLE)
		lk_log_warn("job %s: %s; reconnecting with back-off", w->job->name, err->msg);
	else
		lk_log_error("job %s: %s; retrying with back-off until it is fixed", w->job->name,
			     err->msg);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	/* One connection attempt per round: this loop owns the back-off. */
	const struct lk_retry_conf once = {1, w->job->retry.initial_ms, w->job->retry.max_ms,
					   w->job->retry.multiplier};
	struct lk_sync_opts opts = {.stop = w->stop,
				    .follow = true,
				    .retry = &once,
				    .progress = on_progress,
				    .progress_arg = w};

	while (!*w->stop) {
		struct lk_err err = LK_ERR_INIT;
		struct lk_sync_result res;
		struct lk_store *store = lk_store_open(w->cfg, &err);
		int64_t wait;

		if (store)
			(void)lk_sync_run(w->cfg, w->job, store, &opts, &res, &err);
		lk_store_close(store);
		if (*w->stop)
			break;
		note_failure(w, &err);
		wait = lk_backoff_ms(&w->job->retry, w->attempt);
		if (w->attempt < 30)
			w->attempt++;
		lk_sleep_ms(wait < 100 ? 100 : wait, w->stop);
	}
	lk_log_info("job %s: stopped", w->job->name);
	return NULL;
}

int lk_daemon_run(const struct lk_config *cfg, volatile const bool *stop, struct lk_err *err)
{
	struct worker *w = lk_xcalloc((size_t)(cfg->njobs ? cfg->njobs : 1), sizeof(*w));
	int started = 0;

	for (int i = 0; i < cfg->njobs; i++) {
		const struct lk_job *job = &cfg->jobs[i];

		if (job->kind != LK_JOB_SYNC || job->mode != LK_MODE_REALTIME) {
			lk_log_info("job %s: not real-time; `lockstep sync %s` runs it (scheduling "
				    "comes with the daemon's scheduler)",
				    job->name, job->name);
			continue;
		}
		w[i] = (struct worker){.cfg = cfg, .job = job, .stop = stop};
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
			lk_log_error("job %s: cannot start its thread", job->name);
			continue;
		}
		w[i].started = true;
		started++;
	}
	if (started == 0 && cfg->njobs > 0)
		lk_log_warn("no real-time job to run; waiting for a stop signal");
	lk_log_info("lockstep running %d real-time job%s", started, started == 1 ? "" : "s");
	while (!*stop)
		lk_sleep_ms(200, stop);
	lk_log_info("stopping: each job finishes its page and commits its position");
	for (int i = 0; i < cfg->njobs; i++) {
		if (w[i].started)
			(void)pthread_join(w[i].thread, NULL);
	}
	free(w);
	(void)err;
	return 0;
}
