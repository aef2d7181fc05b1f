/*
 * daemon_jobs.c - where runs happen: the worker pool that takes scheduled runs by
 * priority (low priority waits while memory is short), with retries of transient errors,
 * and the thread each real-time job owns.
 */
#include "connector/connector.h"
#include "daemon_int.h"
#include "sched/jobs.h"
#include "store/store.h"
#include "sync/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "daemon"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"

/* Takes the best startable slot off the queue (mu held), or NULL. */
static struct lk_slot *pick(struct lk_daemon *d)
{
	struct lk_slot **best = NULL;

	for (struct lk_slot **p = &d->queue; *p; p = &(*p)->next_queued) {
		const struct lk_slot *s = *p;

		if (d->degraded && s->e.priority == LK_PRIO_LOW)
			continue; /* paused while memory is short */
		if (!best || s->e.priority < (*best)->e.priority ||
		    (s->e.priority == (*best)->e.priority && s->queued_seq < (*best)->queued_seq))
			best = p;
	}
	if (best) {
		struct lk_slot *s = *best;

		*best = s->next_queued;
		s->next_queued = NULL;
		s->queued = false;
		return s;
	}
	return NULL;
}

void lk_daemon_enqueue(struct lk_daemon *d, struct lk_slot *s)
{
	s->queued = true;
	s->queued_seq = ++d->seq;
	s->next_queued = d->queue;
	d->queue = s;
	pthread_cond_broadcast(&d->cond);
}

/* One attempt of the slot's job; fills err. */
static int attempt(struct lk_daemon *d, struct lk_slot *s, struct lk_store *store,
		   const struct lk_retry_conf *once, struct lk_err *err)
{
	const struct lk_job *job = s->job;
	struct lk_jobrun jr = {.cfg = s->gen->cfg,
			       .job = job,
			       .store = store,
			       .stop = &s->stop,
			       .retry = once,
			       .want_id = s->run_id,
			       .cancel = &s->cancel,
			       .deadline_boot_ms = d->cluster ? &s->lease_kill_boot_ms : NULL};
	struct lk_sync_opts so = {.stop = &s->stop,
				  .retry = once,
				  .run_id = s->run_id,
				  .cancel = &s->cancel,
				  .full = s->run_full};
	struct lk_sync_result res;

	switch (job->kind) {
	case LK_JOB_SQL:
		return lk_sqljob_run(&jr, err);
	case LK_JOB_EXEC:
		return lk_execjob_run(&jr, err);
	default:
		if (lk_sync_run(s->gen->cfg, job, store, &so, &res, err) < 0)
			return -1;
		lk_log_info(
			"run %s of job %s succeeded: %lld rows read, %lld written, %lld deleted%s",
			res.run_id, job->name, (long long)res.rows_read,
			(long long)res.rows_written, (long long)res.rows_deleted,
			res.rows_failed ? " (some dead-lettered)" : "");
		return 0;
	}
}

/*
 * A run that failed for good. The first failure of a streak is an error line; after it,
 * the streak is repeated at 2, 4, 8 ... runs in a row or once every 10 minutes, and a
 * new message is shown at most every 30 s, so a job that fails every second cannot
 * flood the log. The state store records every run either way.
 */
static void report_failure(struct lk_slot *s, const struct lk_err *err, int attempts)
{
	int64_t now = lk_mono_ms(), since = now - s->fail_logged_ms;
	int n = __atomic_add_fetch(&s->fail_streak, 1, __ATOMIC_RELAXED); /* health reads it */
	bool same = strcmp(s->fail_msg, err->msg) == 0;
	char tries[48] = "";

	if (attempts > 1)
		(void)snprintf(tries, sizeof(tries), " (after %d attempts)", attempts);
	if (n > 1 && same && err->code == LK_ERR_SCHEMA) { /* said once (docs/schema-changes.md) */
		lk_log_debug("job %s: run failed again: %s", s->job->name, err->msg);
		return;
	}
	if (n == 1) {
		lk_log_error("job %s: run failed%s: %s", s->job->name, tries, err->msg);
	} else if ((!same && since >= 30000) || (n & (n - 1)) == 0 || since >= 600000) {
		lk_log_error("job %s: still failing, %d runs in a row%s: %s", s->job->name, n,
			     tries, err->msg);
	} else {
		lk_log_debug("job %s: run failed again: %s", s->job->name, err->msg);
		return;
	}
	s->fail_logged_ms = now;
	(void)snprintf(s->fail_msg, sizeof(s->fail_msg), "%s", err->msg);
}

static void report_success(struct lk_slot *s)
{
	if (s->fail_streak > 0)
		lk_log_info("job %s: succeeded again after %d failed run%s", s->job->name,
			    s->fail_streak, s->fail_streak == 1 ? "" : "s");
	__atomic_store_n(&s->fail_streak, 0, __ATOMIC_RELAXED);
}

/* A run with its retries: only transient errors are retried, with full-jitter back-off. */
static void run_slot(struct lk_daemon *d, struct lk_slot *s)
{
	const struct lk_retry_conf *r = &s->job->retry;
	const struct lk_retry_conf once = {1, r->initial_ms, r->max_ms, r->multiplier};

	lk_log_context(s->job->name, s->run_id[0] ? s->run_id : NULL);
	for (int i = 0; i < r->attempts && !lk_flag(&s->stop); i++) {
		struct lk_err err = LK_ERR_INIT;
		struct lk_store *store = lk_store_open(d->store_cfg, &err);
		int rc;
		int64_t wait;

		if (store) {
			lk_store_set_observer(store, lk_daemon_observe, d);
			if (d->cluster)
				lk_store_set_member(store, d->member);
		}
		rc = store ? attempt(d, s, store, &once, &err) : -1;
		lk_store_close(store);
		if (rc < 0 && err.code == LK_ERR_FENCED)
			(void)__atomic_add_fetch(&d->fenced, 1, __ATOMIC_RELAXED);
		if (rc == 0) {
			report_success(s);
			return;
		}
		if (lk_flag(&s->stop) || err.code == LK_ERR_CANCELLED)
			return;
		if (err.code == LK_ERR_BUSY) {
			lk_log_info("job %s: %s; this run is skipped", s->job->name, err.msg);
			lk_daemon_live_settle(d, s->run_id, "skipped", err.msg);
			return;
		}
		if (!err.transient || i + 1 == r->attempts) {
			report_failure(s, &err, i + 1);
			lk_daemon_live_settle(d, s->run_id, "failed", err.msg);
			return;
		}
		wait = lk_backoff_ms(&once, i);
		lk_log_warn("job %s: %s; retry %d of %d in %lld ms", s->job->name, err.msg, i + 1,
			    r->attempts - 1, (long long)wait);
		lk_sleep_ms(wait, &s->stop);
	}
}

static void *worker_main(void *arg)
{
	struct lk_daemon *d = arg;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		struct lk_slot *s = NULL;

		while (!d->closing && !(s = pick(d)))
			pthread_cond_wait(&d->cond, &d->mu);
		if (!s)
			break;
		d->running++;
		s->e.run_started_ms = lk_wall_ms(); /* the 80% warning counts from here */
		pthread_mutex_unlock(&d->mu);
		run_slot(d, s);
		lk_log_context(NULL, NULL);
		/* a run stopped before it recorded anything still ends, for the API */
		lk_daemon_live_settle(d, s->run_id,
				      lk_flag(&s->cancel) ? "cancelled" : "interrupted",
				      lk_flag(&s->cancel) ? "cancelled before it started"
							  : "stopped before it started");
		pthread_mutex_lock(&d->mu);
		d->running--;
		s->busy = false;
		lk_sched_finished(&s->e, lk_wall_ms());
		pthread_cond_broadcast(&d->cond);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

int lk_daemon_pool_start(struct lk_daemon *d, int nworkers, struct lk_err *err)
{
	d->workers = lk_xcalloc((size_t)nworkers, sizeof(*d->workers));
	for (int i = 0; i < nworkers; i++) {
		if (pthread_create(&d->workers[i], NULL, worker_main, d) != 0) {
			pthread_mutex_lock(&d->mu);
			d->closing = true;
			pthread_cond_broadcast(&d->cond);
			pthread_mutex_unlock(&d->mu);
			for (int j = 0; j < i; j++)
				(void)pthread_join(d->workers[j], NULL);
			return lk_err_set(err, LK_ERR_INTERNAL, "cannot start worker threads");
		}
		d->nworkers++;
	}
	return 0;
}

void lk_daemon_pool_close(struct lk_daemon *d)
{
	pthread_mutex_lock(&d->mu);
	d->closing = true;
	/* Runs queued but not started are dropped: their slots become idle. */
	while (d->queue) {
		struct lk_slot *s = d->queue;

		d->queue = s->next_queued;
		s->next_queued = NULL;
		s->queued = false;
		s->busy = false;
	}
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->mu);
}

void lk_daemon_pool_join(struct lk_daemon *d)
{
	lk_daemon_pool_close(d);
	for (int i = 0; i < d->nworkers; i++)
		(void)pthread_join(d->workers[i], NULL);
	free(d->workers);
	d->workers = NULL;
	d->nworkers = 0;
}

void lk_daemon_pool_abandon(struct lk_daemon *d)
{
	lk_daemon_pool_close(d);
	for (int i = 0; i < d->nworkers; i++)
		(void)pthread_detach(d->workers[i]);
	for (int i = 0; i < d->nslots; i++) {
		if (d->slots[i]->thread_started)
			(void)pthread_detach(d->slots[i]->thread);
	}
}

/* ---- real-time jobs: one thread each ---- */

static void on_progress(void *arg, const struct lk_sync_progress *p)
{
	struct lk_slot *s = arg;

	if (!lk_flag(&s->outage) || strcmp(p->stage, "stream") != 0)
		return;
	lk_log_info("job %s: streaming again after %.1f s", s->job->name,
		    (double)(lk_mono_ms() - s->outage_ms) / 1000.0);
	lk_flag_set(&s->outage, false);
	s->attempt = 0;
	s->last_msg[0] = '\0';
}

/* Logs a failure once per outage. */
static void note_failure(struct lk_slot *s, const struct lk_err *err)
{
	if (!lk_flag(&s->outage)) {
		lk_flag_set(&s->outage, true);
		s->outage_ms = lk_mono_ms();
	}
	/* one line per outage, and one per new reason no retry fixes; the rest at debug level */
	if (s->last_msg[0] && (err->transient || err->code == LK_ERR_UNAVAILABLE ||
			       err->code == LK_ERR_BUSY || strcmp(s->last_msg, err->msg) == 0)) {
		lk_log_debug("job %s: still failing: %s", s->job->name, err->msg);
		return;
	}
	memcpy(s->last_msg, err->msg, sizeof(s->last_msg));
	if (err->code == LK_ERR_BUSY)
		lk_log_info("job %s: %s; waiting to take over", s->job->name, err->msg);
	else if (err->transient || err->code == LK_ERR_UNAVAILABLE)
		lk_log_warn("job %s: %s; reconnecting with back-off", s->job->name, err->msg);
	else if (err->code == LK_ERR_SCHEMA)
		lk_log_error("job %s: %s; it looks again every %d s", s->job->name, err->msg,
			     LK_SCHEMA_RECHECK_MS / 1000);
	else
		lk_log_error("job %s: %s; retrying with back-off until it is fixed", s->job->name,
			     err->msg);
}

/* The wait of a job stopped on its schemas: LK_SCHEMA_RECHECK_MS, or until a SIGHUP. */
static void sleep_blocked(struct lk_slot *s)
{
	int64_t until = lk_mono_ms() + LK_SCHEMA_RECHECK_MS;

	lk_flag_set(&s->poke, false);
	while (!lk_flag(&s->stop) && !lk_flag(&s->poke) && lk_mono_ms() < until)
		lk_sleep_ms(100, &s->stop);
}

struct rt_arg {
	struct lk_daemon *d;
	struct lk_slot *s;
};

static void *realtime_main(void *arg)
{
	struct rt_arg a = *(struct rt_arg *)arg;
	struct lk_slot *s = a.s;
	/* One connection attempt per round: this loop owns the back-off. */
	const struct lk_retry_conf once = {1, s->job->retry.initial_ms, s->job->retry.max_ms,
					   s->job->retry.multiplier};
	struct lk_sync_opts opts = {
		.stop = &s->stop, .follow = true, .retry = &once, .progress = on_progress};

	free(arg);
	opts.progress_arg = s;
	while (!lk_flag(&s->stop)) {
		struct lk_err err = LK_ERR_INIT;
		struct lk_sync_result res;
		struct lk_store *store = lk_store_open(a.d->store_cfg, &err);
		int64_t wait;
		char id[37] = "";
		bool again = false;

		if (store) {
			lk_store_set_observer(store, lk_daemon_observe, a.d);
			if (a.d->cluster)
				lk_store_set_member(store, a.d->member);
			pthread_mutex_lock(&a.d->mu);
			opts.full = s->next_id[0] != '\0'; /* a re-snapshot asked for over HTTP */
			if (opts.full)
				memcpy(s->run_id, s->next_id, sizeof(s->run_id));
			else
				lk_uuid7(s->run_id); /* named now: the API shows the going run */
			s->next_id[0] = '\0';
			memcpy(id, s->run_id, sizeof(id));
			pthread_mutex_unlock(&a.d->mu);
			opts.run_id = id;
			if (lk_sync_run(s->gen->cfg, s->job, store, &opts, &res, &err) < 0 &&
			    err.code == LK_ERR_FENCED)
				(void)__atomic_add_fetch(&a.d->fenced, 1, __ATOMIC_RELAXED);
			pthread_mutex_lock(&a.d->mu);
			memcpy(s->run_id, res.run_id, sizeof(s->run_id));
			pthread_mutex_unlock(&a.d->mu);
		}
		lk_store_close(store);
		pthread_mutex_lock(&a.d->mu);
		if (s->resnap && !s->gone && !a.d->closing && !lk_flag(a.d->opts->stop)) {
			s->resnap = false;
			lk_flag_set(&s->stop,
				    false); /* stopped for the re-snapshot, not for good */
			again = true;
		}
		pthread_mutex_unlock(&a.d->mu);
		if (again) {
			lk_log_info("job %s: re-snapshotting (run %s), as asked over HTTP",
				    s->job->name, s->next_id);
			continue;
		}
		if (lk_flag(&s->stop))
			break;
		note_failure(s, &err);
		wait = lk_backoff_ms(&s->job->retry, s->attempt);
		if (err.code == LK_ERR_SCHEMA && !err.transient) { /* no retry fixes it */
			sleep_blocked(s);
			continue;
		}
		if (s->attempt < 30)
			s->attempt++;
		lk_sleep_ms(wait < 100 ? 100 : wait, &s->stop);
	}
	lk_log_info("job %s: stopped", s->job->name);
	pthread_mutex_lock(&a.d->mu);
	s->busy = false;
	pthread_cond_broadcast(&a.d->cond);
	pthread_mutex_unlock(&a.d->mu);
	return NULL;
}

int lk_daemon_realtime_start(struct lk_daemon *d, struct lk_slot *s)
{
	struct rt_arg *a = lk_xcalloc(1, sizeof(*a));

	a->d = d;
	a->s = s;
	if (s->thread_started) { /* a stream that ended (its lease went) starts again */
		(void)pthread_join(s->thread, NULL);
		s->thread_started = false;
	}
	lk_flag_set(&s->stop, false);
	s->busy = true;
	if (pthread_create(&s->thread, NULL, realtime_main, a) != 0) {
		free(a);
		s->busy = false;
		lk_log_error("job %s: cannot start its thread", s->job->name);
		return -1;
	}
	s->thread_started = true;
	return 0;
}
