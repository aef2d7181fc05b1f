/*
 * daemon_lease.c - job leases across instances sharing a PostgreSQL state store (SPEC §5,
 * DESIGN decision 6; the protocol is drawn in docs/ARCHITECTURE.md).
 *
 * One thread with its own store connection (a busy pool cannot cost a lease). Every
 * cluster.renew, and at once when another instance releases a lease (NOTIFY
 * lockstep_leases), it marks this member alive, reads the live members and every lease,
 * assigns jobs to members (sched/assign.c: every instance computes the same answer), and
 * then renews the leases it holds, acquires the free or expired ones assigned to it, and
 * hands over the ones assigned elsewhere (their runs stop at a checkpoint first). Between
 * cycles it watches its own deadline: a lease not renewed by renew_start + lease - margin
 * on CLOCK_BOOTTIME is dropped and its job stopped before any other instance may take it;
 * an exec job's process group gets SIGTERM then and SIGKILL at renew_start + lease -
 * margin/2 at the latest (set_kill_deadline), whatever its command does with SIGTERM.
 * Safety never rests on this clock: every run bumps the epoch under the lease and the
 * target fences older epochs (DESIGN decision 5).
 */
#include "daemon_int.h"
#include "sched/assign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#define LK_LOG_COMPONENT "lease"
#include "connector/cdc.h"
#include "core/log.h"
#include "core/units.h"

/* Stops trusting a lease this long before it would expire (at least 500 ms). */
static int64_t margin_ms(const struct lk_daemon *d)
{
	return d->lease_ms / 10 > 500 ? d->lease_ms / 10 : 500;
}

struct lk_lease *lk_daemon_lease(struct lk_daemon *d, const char *job)
{
	for (int i = 0; i < d->nleases; i++) {
		if (strcmp(d->leases[i].job, job) == 0)
			return &d->leases[i];
	}
	return NULL;
}

static struct lk_lease *lease_get(struct lk_daemon *d, const char *job)
{
	struct lk_lease *l = lk_daemon_lease(d, job);

	if (l)
		return l;
	if (d->nleases == d->aleases) {
		d->aleases = d->aleases ? 2 * d->aleases : 16;
		d->leases = lk_xrealloc(d->leases, (size_t)d->aleases * sizeof(*d->leases));
	}
	l = &d->leases[d->nleases++];
	memset(l, 0, sizeof(*l));
	(void)snprintf(l->job, sizeof(l->job), "%s", job);
	return l;
}

/* The newest configured version of the job (mu held), or NULL. */
static const struct lk_job *job_named(const struct lk_daemon *d, const char *job)
{
	const struct lk_job *found = NULL;

	for (int i = 0; i < d->nslots; i++) {
		if (!d->slots[i]->gone && strcmp(d->slots[i]->job->name, job) == 0)
			found = d->slots[i]->job;
	}
	return found;
}

/* Whether a comma-separated label list holds every label of run_on. */
static bool labels_have(const char *labels, char *const *run_on, int nrun_on)
{
	for (int i = 0; i < nrun_on; i++) {
		size_t n = strlen(run_on[i]);
		const char *p = labels;
		bool found = false;

		while (!found && p && *p) {
			const char *end = strchr(p, ',');
			size_t len = end ? (size_t)(end - p) : strlen(p);

			found = len == n && memcmp(p, run_on[i], n) == 0;
			p = end ? end + 1 : NULL;
		}
		if (!found)
			return false;
	}
	return true;
}

bool lk_daemon_labels_fit(const struct lk_daemon *d, const struct lk_job *j)
{
	return labels_have(d->labels, j->run_on, j->nrun_on);
}

bool lk_daemon_may_run(struct lk_daemon *d, const char *job)
{
	const struct lk_lease *l;

	if (!d->cluster) {
		const struct lk_job *j = job_named(d, job);

		return !j || lk_daemon_labels_fit(d, j);
	}
	l = lk_daemon_lease(d, job);
	return l && l->held && !l->releasing;
}

/*
 * Tells the job's slots (mu held) the time, on CLOCK_BOOTTIME, by which an exec run's
 * process group must be dead: the exec runner sends SIGKILL then at the latest, whatever
 * its SIGTERM grace (sched/exec.h). For a lease that is ours it is half the margin before
 * the lease ends, counted from the start of the last successful renewal, so the kill is
 * done before the database's expiry (now() of that renewal + lease); the watch's stop
 * (SIGTERM) comes half a margin before it.
 */
static void set_kill_deadline(struct lk_daemon *d, const char *job, int64_t at_boot_ms)
{
	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (strcmp(s->job->name, job) == 0)
			__atomic_store_n(&s->lease_kill_boot_ms, at_boot_ms, __ATOMIC_RELEASE);
	}
}

static int64_t kill_deadline(const struct lk_daemon *d, const struct lk_lease *l)
{
	return l->ok_boot_ms + d->lease_ms - margin_ms(d) / 2;
}

/* Stops every slot of the job (mu held); true when one is still busy. */
static bool stop_job(struct lk_daemon *d, const char *job)
{
	bool busy = false;

	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (strcmp(s->job->name, job) != 0)
			continue;
		if (s->busy)
			lk_flag_set(&s->stop, true);
		busy = busy || s->busy;
	}
	return busy;
}

/* Starts the job's real-time slot when it is idle (mu held). */
static void start_realtime(struct lk_daemon *d, const char *job)
{
	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (s->realtime && !s->gone && !s->held && !s->busy && !d->closing &&
		    strcmp(s->job->name, job) == 0)
			(void)lk_daemon_realtime_start(d, s);
	}
}

/* Drops leases whose renewal is overdue (mu held). */
static void check_deadlines(struct lk_daemon *d)
{
	int64_t now = lk_boot_ms();

	for (int i = 0; i < d->nleases; i++) {
		struct lk_lease *l = &d->leases[i];

		if (!l->held || now < l->ok_boot_ms + d->lease_ms - margin_ms(d))
			continue;
		l->held = false;
		l->releasing = false;
		(void)__atomic_add_fetch(&d->losses, 1, __ATOMIC_RELAXED);
		lk_log_error(
			"job %s: its lease was not renewed for %.1f s; stopping the job before "
			"the lease can expire (another instance may take it over)",
			l->job, (double)(now - l->ok_boot_ms) / 1000.0);
		set_kill_deadline(d, l->job, kill_deadline(d, l)); /* slots that had none yet */
		(void)stop_job(d, l->job);
	}
}

enum act { ACT_NONE, ACT_RENEW, ACT_ACQUIRE, ACT_RELEASE };

struct plan {
	char job[128];
	enum act act;
	char prev[160]; /* ACQUIRE: the previous holder ("" when free) */
	bool ok;	/* the statement succeeded and the lease is (still) ours / freed */
	int64_t epoch;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The job names of the live slots, sorted and unique (mu held); *n gets the count. */
static const char **job_names(struct lk_daemon *d, int *n)
{
	const char **names = lk_xcalloc((size_t)d->nslots + 1, sizeof(*names));
	int k = 0;

	for (int i = 0; i < d->nslots; i++) {
		if (!d->slots[i]->gone)
			names[k++] = d->slots[i]->job->name;
	}
	qsort(names, (size_t)k, sizeof(*names), cmp_str);
	*n = 0;
	for (int i = 0; i < k; i++) {
		if (*n == 0 || strcmp(names[*n - 1], names[i]) != 0)
			names[(*n)++] = names[i];
	}
	return names;
}

/*
 * Decides this cycle's statements from the members and lease rows (mu held): renew what we
 * hold and is ours, acquire what is ours and free or expired, hand over the rest.
 */
static struct plan *make_plan(struct lk_daemon *d, const struct lk_rows *members,
			      const struct lk_rows *rows, int *nplan)
{
	const char **mem = lk_xcalloc((size_t)members->nrows + 1, sizeof(*mem));
	const char **labels = lk_xcalloc((size_t)members->nrows + 1, sizeof(*labels));
	int nj, nm = 0;
	int64_t oldest = 0, grace = 2 * d->renew_ms;
	const char **jobs = job_names(d, &nj);
	int *owner = lk_xcalloc((size_t)nj + 1, sizeof(*owner));
	bool *eligible;
	struct plan *plan = lk_xcalloc((size_t)(nj + d->nleases) + 1, sizeof(*plan));
	int np = 0;

	/* A member counts once it has been up for the grace, so an instance that restarts
	 * does not pull jobs back and forth. When none has (a cold start), the members that
	 * started within the grace of the oldest count together. */
	for (int i = 0; i < members->nrows; i++) {
		int64_t age = 0;

		(void)lk_int64_parse(LK_ROW(members, i)[1].p, &age);
		oldest = age > oldest ? age : oldest;
	}
	for (int i = 0; i < members->nrows; i++) {
		int64_t age = 0;

		(void)lk_int64_parse(LK_ROW(members, i)[1].p, &age);
		if (age >= grace || age >= oldest - grace) {
			labels[nm] = LK_ROW(members, i)[2].p;
			mem[nm++] = LK_ROW(members, i)[0].p;
		}
	}
	eligible = lk_xcalloc((size_t)nj * (size_t)nm + 1, sizeof(*eligible));
	for (int j = 0; j < nj; j++) {
		const struct lk_job *job = job_named(d, jobs[j]);
		struct lk_lease *l = lease_get(d, jobs[j]);
		bool anywhere = false;

		for (int m = 0; m < nm; m++) {
			bool ok = !job || labels_have(labels[m], job->run_on, job->nrun_on);

			eligible[(size_t)j * (size_t)nm + (size_t)m] = ok;
			anywhere = anywhere || ok;
		}
		/* said once per change: a pinned job no live instance may run */
		if (nm > 0 && !anywhere && !l->nowhere && job)
			lk_log_warn("job %s: no live instance has all the labels of its run_on;"
				    " it does not run until one does",
				    jobs[j]);
		else if (anywhere && l->nowhere)
			lk_log_info("job %s: an instance with the labels of its run_on is live",
				    jobs[j]);
		if (nm > 0)
			l->nowhere = !anywhere;
	}
	lk_assign(jobs, nj, mem, nm, eligible, owner);
	/* what the store says about each lease */
	for (int r = 0; r < rows->nrows; r++) {
		const struct lk_value *v = LK_ROW(rows, r);
		struct lk_lease *l = lk_daemon_lease(d, v[0].p);

		if (!l)
			continue;
		(void)snprintf(l->holder, sizeof(l->holder), "%s",
			       v[1].null || v[3].p[0] != 't' ? "" : v[1].p);
		(void)lk_int64_parse(v[2].p, &l->epoch);
	}
	for (int j = 0; j < nj; j++) {
		struct lk_lease *l = lease_get(d, jobs[j]);
		bool mine = owner[j] >= 0 && strcmp(mem[owner[j]], d->member) == 0;
		struct plan *p = &plan[np];

		(void)snprintf(p->job, sizeof(p->job), "%s", jobs[j]);
		if (mine && l->held) {
			p->act = ACT_RENEW;
			l->releasing = false;
		} else if (mine && !d->closing &&
			   (!l->holder[0] || strcmp(l->holder, d->member) == 0)) {
			p->act = ACT_ACQUIRE;
		} else if (!mine && l->held) {
			l->releasing = true;
			p->act = stop_job(d, l->job) ? ACT_RENEW : ACT_RELEASE;
		}
		if (p->act == ACT_ACQUIRE) {
			/* the previous holder, for the takeover count: an expired one's name */
			for (int r = 0; r < rows->nrows; r++) {
				const struct lk_value *v = LK_ROW(rows, r);

				if (strcmp(v[0].p, jobs[j]) == 0 && !v[1].null)
					(void)snprintf(p->prev, sizeof(p->prev), "%s", v[1].p);
			}
		}
		if (p->act != ACT_NONE)
			np++;
	}
	/* leases of jobs no longer configured: handed back once their runs stopped */
	for (int i = 0; i < d->nleases; i++) {
		struct lk_lease *l = &d->leases[i];
		bool listed = bsearch(&(const char *){l->job}, jobs, (size_t)nj, sizeof(*jobs),
				      cmp_str) != NULL;

		if (listed || !l->held)
			continue;
		l->releasing = true;
		(void)snprintf(plan[np].job, sizeof(plan[np].job), "%s", l->job);
		plan[np++].act = stop_job(d, l->job) ? ACT_RENEW : ACT_RELEASE;
	}
	free(owner);
	free(jobs);
	free(mem);
	free(labels);
	free(eligible);
	*nplan = np;
	return plan;
}

/* Applies the statements' results (mu held). */
static void apply_plan(struct lk_daemon *d, struct plan *plan, int np, int64_t started)
{
	for (int i = 0; i < np; i++) {
		struct plan *p = &plan[i];
		struct lk_lease *l = lease_get(d, p->job);

		if (p->act == ACT_RENEW && p->ok) {
			l->ok_boot_ms = started;
			set_kill_deadline(d, l->job, kill_deadline(d, l));
		} else if (p->act == ACT_RENEW && l->held) {
			l->held = false;
			l->releasing = false;
			(void)__atomic_add_fetch(&d->losses, 1, __ATOMIC_RELAXED);
			lk_log_error("job %s: its lease was taken by another instance; stopping it",
				     l->job);
			set_kill_deadline(d, l->job, lk_boot_ms()); /* another holds it: at once */
			(void)stop_job(d, l->job);
		} else if (p->act == ACT_ACQUIRE && p->ok) {
			bool takeover = p->prev[0] && strcmp(p->prev, d->member) != 0;

			l->held = true;
			l->releasing = false;
			l->fresh = true;
			l->ok_boot_ms = started;
			set_kill_deadline(d, l->job, kill_deadline(d, l));
			l->epoch = p->epoch;
			(void)snprintf(l->holder, sizeof(l->holder), "%s", d->member);
			if (takeover) {
				(void)__atomic_add_fetch(&d->takeovers, 1, __ATOMIC_RELAXED);
				lk_log_info(
					"job %s: took over its lease from %s (expired or released)",
					l->job, p->prev);
			} else {
				lk_log_info("job %s: holding its lease", l->job);
			}
			start_realtime(d, l->job);
		} else if (p->act == ACT_RELEASE && p->ok) {
			l->held = false;
			l->releasing = false;
			l->holder[0] = '\0';
			lk_log_info(
				"job %s: handed its lease over to the instance it is assigned to",
				l->job);
		}
	}
}

/* One cycle: beat, read, plan, run the statements, apply. */
static int cycle(struct lk_daemon *d, struct lk_store *s, struct lk_err *err)
{
	struct lk_rows members, rows;
	struct plan *plan = NULL;
	int64_t started = lk_boot_ms();
	int np = 0, rc;

	lk_rows_init(&members, 3);
	lk_rows_init(&rows, 4);
	rc = lk_store_member_beat(s, d->member, d->opts->instance, d->labels, false, err);
	if (rc == 0)
		rc = lk_store_members_live(s, d->lease_ms, &members, err);
	if (rc == 0)
		rc = lk_store_leases(s, &rows, err);
	if (rc == 0) {
		pthread_mutex_lock(&d->mu);
		plan = make_plan(d, &members, &rows, &np);
		pthread_mutex_unlock(&d->mu);
	}
	for (int i = 0; rc == 0 && i < np; i++) {
		struct plan *p = &plan[i];

		if (p->act == ACT_RENEW)
			rc = lk_store_lease_renew(s, p->job, d->member, d->lease_ms, &p->ok, err);
		else if (p->act == ACT_ACQUIRE)
			rc = lk_store_lease_acquire(s, p->job, d->member, d->lease_ms, &p->ok,
						    &p->epoch, err);
		else if (p->act == ACT_RELEASE)
			p->ok = (rc = lk_store_lease_release(s, p->job, d->member, err)) == 0;
		if (rc < 0)
			np = i; /* what ran before the failure still counts */
	}
	pthread_mutex_lock(&d->mu);
	apply_plan(d, plan, np, started);
	pthread_mutex_unlock(&d->mu);
	free(plan);
	lk_rows_release(&members);
	lk_rows_release(&rows);
	return rc;
}

/* At the end: this member stops taking jobs and frees every lease it holds. */
static void release_all(struct lk_daemon *d, struct lk_store *s)
{
	struct lk_err err = LK_ERR_INIT;
	int n = 0;

	if (lk_store_member_beat(s, d->member, d->opts->instance, d->labels, true, &err) < 0)
		lk_log_warn_err(&err, "cannot mark this instance as stopping");
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->nleases; i++) {
		struct lk_lease *l = &d->leases[i];
		char job[128];

		if (!l->held)
			continue;
		memcpy(job, l->job, sizeof(job));
		l->held = false;
		pthread_mutex_unlock(&d->mu);
		if (lk_store_lease_release(s, job, d->member, &err) < 0)
			lk_log_warn_err(&err,
					"job %s: cannot release its lease (it expires by itself)",
					job);
		else
			n++;
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	if (n)
		lk_log_info("released %d lease%s", n, n == 1 ? "" : "s");
}

static void *lease_main(void *arg)
{
	struct lk_daemon *d = arg;
	struct lk_store *s = NULL;
	int64_t last = 0, failing_since = 0;
	bool woken = true;

	lk_log_context(NULL, NULL);
	while (!lk_flag(&d->lease_stop)) {
		struct lk_err err = LK_ERR_INIT;
		int64_t now = lk_boot_ms();

		if (!s) {
			s = lk_store_open(d->store_cfg, &err);
			if (s && lk_store_listen_leases(s, &err) < 0) {
				lk_store_close(s);
				s = NULL;
			}
		}
		/* first the deadlines: a holder that was frozen notices its lapse before anything
		 */
		pthread_mutex_lock(&d->mu);
		check_deadlines(d);
		pthread_mutex_unlock(&d->mu);
		if (s && (woken || now - last >= d->renew_ms)) {
			last = now;
			if (cycle(d, s, &err) < 0) {
				lk_store_close(s);
				s = NULL;
			}
		}
		if (!s && !failing_since) {
			failing_since = now;
			lk_log_warn_err(&err, "cannot reach the state store to renew leases; "
					      "retrying every second");
		} else if (s && failing_since) {
			lk_log_info("the state store answers again after %.1f s",
				    (double)(now - failing_since) / 1000.0);
			failing_since = 0;
		}
		pthread_mutex_lock(&d->mu);
		check_deadlines(d);
		pthread_mutex_unlock(&d->mu);
		woken = false;
		if (s) {
			const struct lk_db *db = lk_store_db(s);

			if (lk_cdc_for(db->ops)->wait(db->conn, 200, &woken, &err) < 0) {
				lk_store_close(s);
				s = NULL;
			}
		} else {
			lk_sleep_ms(1000, &d->lease_stop);
		}
	}
	if (!s && d->lease_release)
		s = lk_store_open(d->store_cfg, NULL);
	if (s && d->lease_release)
		release_all(d, s);
	lk_store_close(s);
	return NULL;
}

/*
 * The deadline watch, apart from the lease thread: a statement to a partitioned state
 * store can block that thread for as long as TCP takes to notice, and the jobs must
 * still stop before their leases can expire. This thread touches no database.
 */
static void *watch_main(void *arg)
{
	struct lk_daemon *d = arg;

	while (!lk_flag(&d->lease_stop)) {
		pthread_mutex_lock(&d->mu);
		check_deadlines(d);
		pthread_mutex_unlock(&d->mu);
		lk_sleep_ms(100, &d->lease_stop);
	}
	return NULL;
}

int lk_daemon_lease_start(struct lk_daemon *d, struct lk_err *err)
{
	const struct lk_config *cfg = d->store_cfg;
	unsigned char rnd[16];

	if (cfg->state_kind != LK_DB_POSTGRES)
		return 0;
	d->cluster = true;
	d->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 30000;
	d->renew_ms = cfg->renew_ms > 0 ? cfg->renew_ms : 10000;
	uuid_generate_random(rnd);
	(void)snprintf(d->member, sizeof(d->member), "%s#%02x%02x%02x", d->opts->instance, rnd[0],
		       rnd[1], rnd[2]);
	if (pthread_create(&d->lease_thread, NULL, lease_main, d) != 0)
		return lk_err_set(err, LK_ERR_INTERNAL, "cannot start the lease thread");
	d->lease_started = true;
	if (pthread_create(&d->watch_thread, NULL, watch_main, d) != 0) {
		lk_daemon_lease_stop(d);
		return lk_err_set(err, LK_ERR_INTERNAL, "cannot start the lease watch thread");
	}
	d->watch_started = true;
	lk_log_info("leases: this instance is %s (lease %.0f s, renewed every %.1f s)", d->member,
		    (double)d->lease_ms / 1000.0, (double)d->renew_ms / 1000.0);
	return 0;
}

void lk_daemon_lease_stop(struct lk_daemon *d)
{
	if (!d->lease_started)
		return;
	lk_flag_set(&d->lease_stop, true);
	if (d->watch_started)
		(void)pthread_join(d->watch_thread, NULL);
	d->watch_started = false;
	(void)pthread_join(d->lease_thread, NULL);
	d->lease_started = false;
}
