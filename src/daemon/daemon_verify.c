/*
 * daemon_verify.c - scheduled verify passes (docs/verify.md): one thread that starts the
 * pass of every job whose `verify` is due (or asked for over HTTP), each on a thread of
 * its own (4 at most at once), on the instance that holds the job, beside its own runs. Each pass
 * is a run of type `verify`; what it found feeds /metrics, /api/jobs and /api/health.
 */
#include "daemon_int.h"
#include "sync/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "verify"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"

/* A real-time job's stream gets this long to apply past the rows a pass read. */
#define RT_SETTLE_MS 60000
/* How often the thread looks for a due pass. */
#define TICK_MS 200
/* Passes going at once (each with its own connections to both databases). */
#define MAX_PASSES 4

/* The wall-clock time of the slot's next pass after now (mu held). */
static int64_t next_after(struct lk_slot *s, int64_t now)
{
	const struct lk_verify_conf *v = &s->job->verify;
	struct lk_err err = LK_ERR_INIT;
	struct lk_cron cron;
	int64_t next;

	if (!v->schedule)
		return now + v->every_ms;
	if (s->job->timezone && !s->vtz && !(s->vtz = lk_tz_load(s->job->timezone, &err)))
		lk_log_warn_err(&err, "job %s: verify.schedule read in UTC", s->job->name);
	if (lk_cron_parse(v->schedule, &cron, &err) < 0) /* checked at load: not expected */
		return now + 3600000;
	next = lk_cron_next(&cron, s->vtz, now);
	return next > 0 ? next : now + 3600000;
}

/* The slot whose pass is due now (mu held), marked busy with its pass; NULL when none. */
static struct lk_slot *due(struct lk_daemon *d, bool *repair, char id[37])
{
	int64_t now = lk_wall_ms();

	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (s->gone || s->held || s->vbusy || d->closing ||
		    (!s->job->verify.line && !s->verify_now) || !lk_daemon_may_run(d, s->job->name))
			continue;
		if (s->job->verify.line && s->verify_next_ms == 0)
			s->verify_next_ms = next_after(s, now);
		if (!s->verify_now && (s->verify_next_ms == 0 || now < s->verify_next_ms))
			continue;
		*repair = s->verify_now ? s->verify_now_repair : s->job->verify.repair;
		memcpy(id, s->verify_id, 37);
		s->verify_now = false;
		s->verify_id[0] = '\0';
		s->vbusy = true;
		return s;
	}
	return NULL;
}

struct hold_arg {
	struct lk_daemon *d;
	struct lk_slot *s;
};

/*
 * A poll or snapshot job's repair writes under the job's fence: no run of the job may go
 * meanwhile (both act for this instance's lease, and the newer epoch would fence the
 * other). Waits until the slot is idle and holds it (on), or lets it go (off).
 */
static int hold(void *arg, bool on)
{
	struct hold_arg *h = arg;
	int64_t deadline = lk_mono_ms() + RT_SETTLE_MS;
	int rc = 0;

	pthread_mutex_lock(&h->d->mu);
	if (!on) {
		h->s->vhold = false;
		pthread_cond_broadcast(&h->d->cond);
		pthread_mutex_unlock(&h->d->mu);
		return 0;
	}
	while (h->s->busy && !lk_flag(&h->d->verify_stop) && lk_mono_ms() < deadline) {
		pthread_mutex_unlock(&h->d->mu);
		lk_sleep_ms(100, &h->d->verify_stop);
		pthread_mutex_lock(&h->d->mu);
	}
	if (h->s->busy || lk_flag(&h->d->verify_stop))
		rc = -1;
	else
		h->s->vhold = true;
	pthread_mutex_unlock(&h->d->mu);
	return rc;
}

/* Whether the job's own run is going (poll and snapshot: the pass yields to it). */
static bool job_busy(void *arg)
{
	struct hold_arg *h = arg;
	bool busy;

	pthread_mutex_lock(&h->d->mu);
	busy = h->s->busy && !h->s->realtime && !h->s->vhold;
	pthread_mutex_unlock(&h->d->mu);
	return busy;
}

/* How often a scheduled job runs (the gap between two fires); 0 when only asked for. */
static int64_t job_interval(const struct lk_slot *s)
{
	int64_t a, b;

	if (s->job->every_ms > 0)
		return s->job->every_ms;
	if (!s->has_cron)
		return 0;
	if (lk_cron_every_ms(&s->cron) > 0)
		return lk_cron_every_ms(&s->cron);
	a = lk_cron_next(&s->cron, s->tz, lk_wall_ms());
	b = a > 0 ? lk_cron_next(&s->cron, s->tz, a) : 0;
	return b > a ? b - a : 0;
}

/*
 * Logs a pass. Differences are a warning when their count changed since the last one
 * logged, or every 10 minutes while they stay (a job left different by design, repair:
 * false, is said once, not every pass); the rest at debug level. Verify thread only.
 */
static void log_pass(struct lk_slot *s, const struct lk_verify_result *res, int rc,
		     const struct lk_err *err, bool repair)
{
	const struct lk_job *job = s->job;
	int64_t now = lk_mono_ms(), left = repair ? res->remaining : res->differences;
	bool news = rc == 0 && (res->differences != s->v_logged || now - s->v_logged_ms >= 600000);

	if (rc < 0 && err->code == LK_ERR_BUSY) { /* recorded as skipped; the next pass tries */
		lk_log_debug("job %s: verify pass skipped: %s", job->name, err->msg);
		return;
	}
	if (rc < 0) {
		lk_log_warn("job %s: verify pass failed: %s", job->name, err->msg);
		return;
	}
	if (res->differences == 0 && s->v_logged > 0)
		lk_log_info("job %s: verify pass: no difference any more (%lld rows)", job->name,
			    (long long)res->source_rows);
	else if (res->differences == 0 || !news)
		lk_log_debug("job %s: verify pass: %lld rows, %lld differences, %lld repaired "
			     "(%.1f s)",
			     job->name, (long long)res->source_rows, (long long)res->differences,
			     (long long)res->repaired, (double)res->elapsed_ms / 1000.0);
	else if (repair)
		lk_log_warn("job %s: verify pass found %lld differences and repaired %lld; %lld "
			    "left (run %s)",
			    job->name, (long long)res->differences, (long long)res->repaired,
			    (long long)left, res->run_id);
	else
		lk_log_warn("job %s: verify pass found %lld differences (run %s; `lockstep "
			    "verify %s --repair` repairs them, or verify.repair: true)",
			    job->name, (long long)res->differences, res->run_id, job->name);
	if (news || res->differences == 0) {
		s->v_logged = res->differences;
		s->v_logged_ms = now;
	}
}

static void pass(struct lk_daemon *d, struct lk_slot *s, bool repair, const char *id)
{
	const struct lk_job *job = s->job;
	struct lk_err err = LK_ERR_INIT;
	struct lk_store *store = lk_store_open(d->store_cfg, &err);
	struct hold_arg ha = {d, s};
	struct lk_sync_opts so = {.stop = &d->verify_stop};
	struct lk_verify_opts vo = {.repair = repair,
				    .record = "verify",
				    .hold = hold,
				    .busy = job_busy,
				    .rate = job->verify.rate};
	struct lk_verify_result res;
	int64_t interval = job_interval(s);
	int rc = -1;

	memset(&res, 0, sizeof(res));
	lk_log_context(job->name, NULL);
	if (store) {
		lk_store_set_observer(store, lk_daemon_observe, d);
		if (d->cluster)
			lk_store_set_member(store, d->member);
		vo.store = store;
		vo.run_id = id[0] ? id : NULL;
		vo.hold_arg = &ha;
		/* poll and snapshot: their next run, which comes within one of their intervals
		 * (5 s..10 min); a job run only when asked for is read as it is */
		if (job->mode == LK_MODE_REALTIME)
			vo.settle_ms = RT_SETTLE_MS;
		else if (interval > 0)
			vo.settle_ms = interval < 5000	   ? 5000
				       : interval > 600000 ? 600000
							   : interval;
		vo.lock_wait_ms = vo.settle_ms > 0 ? vo.settle_ms : RT_SETTLE_MS;
		rc = lk_verify_run(s->gen->cfg, job, &so, &vo, &res, &err);
	}
	if (rc == 0 || !lk_flag(&d->verify_stop)) { /* a pass cut by the stop is not news */
		log_pass(s, &res, rc, &err, repair);
		if (rc == 0 || err.code != LK_ERR_BUSY) /* skipped: what the last one found holds */
			lk_daemon_verify_note(d, job->name, &res, rc < 0 ? err.msg : NULL, repair);
	}
	lk_verify_result_release(&res);
	lk_store_close(store);
	lk_log_context(NULL, NULL);
}

struct pass_arg {
	struct lk_daemon *d;
	struct lk_slot *s;
	bool repair;
	char id[37];
};

/* One pass on a thread of its own (detached: verify_main waits for them at the stop). */
static void *pass_main(void *arg)
{
	struct pass_arg a = *(struct pass_arg *)arg;

	free(arg);
	pass(a.d, a.s, a.repair, a.id);
	pthread_mutex_lock(&a.d->mu);
	a.s->vbusy = false;
	if (a.s->job->verify.line)
		a.s->verify_next_ms = next_after(a.s, lk_wall_ms());
	a.d->vpasses--;
	pthread_cond_broadcast(&a.d->cond);
	pthread_mutex_unlock(&a.d->mu);
	return NULL;
}

/* Starts the passes due now, MAX_PASSES at most at once (mu held). */
static void start_due(struct lk_daemon *d)
{
	struct pass_arg *a;
	struct lk_slot *s;
	pthread_t t;
	pthread_attr_t attr;

	(void)pthread_attr_init(&attr);
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	while (d->vpasses < MAX_PASSES) {
		a = lk_xcalloc(1, sizeof(*a));
		s = due(d, &a->repair, a->id);
		if (!s) {
			free(a);
			break;
		}
		a->d = d;
		a->s = s;
		d->vpasses++;
		if (pthread_create(&t, &attr, pass_main, a) != 0) {
			lk_log_error("job %s: cannot start a thread for its verify pass",
				     s->job->name);
			free(a);
			d->vpasses--;
			s->vbusy = false;
			s->verify_next_ms = next_after(s, lk_wall_ms());
			break;
		}
	}
	(void)pthread_attr_destroy(&attr);
}

/* The dispatcher: starts each due pass on its own thread, so a pass that waits (a stream
 * that is down, a poll job's next run) holds up no other job's. */
static void *verify_main(void *arg)
{
	struct lk_daemon *d = arg;

	while (!lk_flag(&d->verify_stop)) {
		pthread_mutex_lock(&d->mu);
		start_due(d);
		pthread_mutex_unlock(&d->mu);
		lk_sleep_ms(TICK_MS, &d->verify_stop);
	}
	pthread_mutex_lock(&d->mu);
	while (d->vpasses > 0) /* each stops at its next page or wait */
		pthread_cond_wait(&d->cond, &d->mu);
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

int lk_daemon_verify_start(struct lk_daemon *d)
{
	lk_flag_set(&d->verify_stop, false);
	if (pthread_create(&d->verify_thread, NULL, verify_main, d) != 0) {
		lk_log_error("cannot start the verify thread: scheduled verify passes do not run");
		return -1;
	}
	d->verify_started = true;
	return 0;
}

void lk_daemon_verify_stop(struct lk_daemon *d, bool join)
{
	lk_flag_set(&d->verify_stop, true);
	if (!d->verify_started)
		return;
	if (join)
		(void)pthread_join(d->verify_thread, NULL);
	else
		(void)pthread_detach(d->verify_thread);
	d->verify_started = false;
}

enum lk_api_trigger lk_api_verify(struct lk_daemon *d, const char *job, bool repair, char id[37],
				  const char **why)
{
	enum lk_api_trigger t = LK_API_UNKNOWN_JOB;

	*why = NULL;
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (s->gone || strcmp(s->job->name, job) != 0)
			continue;
		if (s->job->kind != LK_JOB_SYNC) {
			t = LK_API_NOT_SUPPORTED;
			*why = "only a sync job has a target to verify";
		} else if (d->closing || !d->verify_started) {
			t = LK_API_CLOSING;
		} else if (!lk_daemon_may_run(d, job)) {
			t = LK_API_NOT_HERE;
			*why = "another instance holds the job: ask that one";
		} else if (s->verify_now) {
			memcpy(id, s->verify_id, 37);
			s->verify_now_repair = s->verify_now_repair || repair;
			t = LK_API_COALESCED;
		} else {
			lk_uuid7(s->verify_id);
			memcpy(id, s->verify_id, 37);
			s->verify_now = true;
			s->verify_now_repair = repair;
			t = LK_API_QUEUED;
		}
		break;
	}
	pthread_mutex_unlock(&d->mu);
	return t;
}
