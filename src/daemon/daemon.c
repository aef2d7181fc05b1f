/*
 * daemon.c - the scheduler loop: places jobs on the schedule (next fire times from the
 * state store, misfire policies, interrupted runs resumed), fires them into the pool,
 * records skips, watches memory, writes the heartbeat, prunes old runs, reloads on
 * SIGHUP and stops gracefully.
 */
#include "daemon.h"

#include "daemon/sdnotify.h"
#include "daemon_int.h"
#include "http/http.h"
#include "sched/exec.h"
#include "sched/jobs.h"
#include "store/store.h"
#include "sync/budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LK_LOG_COMPONENT "daemon"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"

#define TICK_MS 100
#define HEARTBEAT_MS 2000
#define PRUNE_MS 3600000
#define MAX_WORKERS 4

static int64_t every_next(void *arg, int64_t after)
{
	const struct lk_slot *s = arg;
	int64_t n = s->job->every_ms;

	return after - after % n + n;
}

static int64_t cron_next(void *arg, int64_t after)
{
	const struct lk_slot *s = arg;

	return lk_cron_next(&s->cron, s->tz, after);
}

/* Sets up a scheduled slot's timing; false when the job has no schedule. */
static bool slot_timing(struct lk_slot *s, struct lk_err *err)
{
	const struct lk_job *j = s->job;

	if (j->every_ms > 0) {
		(void)snprintf(s->spec, sizeof(s->spec), "every:%lld", (long long)j->every_ms);
		s->e.next = every_next;
	} else if (j->schedule) {
		if (lk_cron_parse(j->schedule, &s->cron, err) < 0)
			return false;
		if (j->timezone && !(s->tz = lk_tz_load(j->timezone, err)))
			return false;
		s->has_cron = true;
		(void)snprintf(s->spec, sizeof(s->spec), "%s|%s", j->schedule,
			       j->timezone ? j->timezone : "UTC");
		s->e.next = cron_next;
	} else {
		return false;
	}
	s->e.next_arg = s;
	return true;
}

/* Whether the job's last run ended interrupted (a stop or a crash cut it). */
static bool was_interrupted(struct lk_store *store, const char *job)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;
	bool yes = false;

	lk_rows_init(&rows, 1);
	/* Skipped fires are recorded too: the newest run that really ran decides. */
	if (lk_store_runs_of(store, job, LK_RUNS_OWN, 50, &rows, &err) == 0) {
		for (int i = 0; i < rows.nrows; i++) {
			const char *st = LK_ROW(&rows, i)[LK_RUNCOL_STATUS].p;

			if (st && strcmp(st, "skipped") == 0)
				continue;
			yes = st && strcmp(st, "interrupted") == 0;
			break;
		}
	}
	lk_rows_release(&rows);
	return yes;
}

/* Puts a new scheduled slot on the schedule (mu not held; the slot is not shared yet). */
static void place(struct lk_daemon *d, struct lk_slot *s, struct lk_store *store)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_sched_act act;
	int64_t stored = 0, now = lk_wall_ms();

	s->e.name = s->job->name;
	s->e.overlap = s->job->overlap;
	s->e.misfire = s->job->misfire;
	s->e.priority = s->job->priority;
	if (!slot_timing(s, &err) && err.code != LK_OK)
		lk_log_error("job %s: %s; it runs only when triggered", s->job->name, err.msg);
	if (s->e.next && lk_store_schedule_get(store, s->job->name, s->spec, &stored, &err) < 0)
		lk_log_warn_err(&err, "job %s: cannot read its next fire time", s->job->name);
	if (lk_sched_place(&s->e, 0, stored, now, &act) == 1)
		lk_log_warn("job %s: %lld missed runs beyond the catch-up cap of %d are skipped",
			    s->job->name, (long long)act.fire_ms, LK_CATCHUP_MAX);
	if (s->e.pending)
		lk_log_info("job %s: %d missed run%s to make up (misfire: %s)", s->job->name,
			    s->e.pending, s->e.pending == 1 ? "" : "s",
			    s->job->misfire == LK_MISFIRE_ONCE ? "once" : "catchup");
	if (d->cluster)
		return; /* re-placed when this instance takes the job's lease (replace()) */
	(void)lk_store_runs_interrupt_stale(store, s->job->name, NULL, &err);
	if (s->e.pending == 0 && was_interrupted(store, s->job->name)) {
		lk_log_info("job %s: its last run was interrupted; resuming it now", s->job->name);
		s->e.pending = 1;
	}
}

/*
 * A scheduled job this instance just took the lease of: reads the next fire time the last
 * holder kept, marks its unfinished runs interrupted (it is gone, or fenced from now on)
 * and resumes an interrupted run. Scheduler thread; the store first, then the entry
 * under mu.
 */
static void replace(struct lk_daemon *d, struct lk_slot *s, struct lk_store *store)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_sched_act act;
	int64_t stored = 0;
	bool interrupted;

	if (s->e.next && lk_store_schedule_get(store, s->job->name, s->spec, &stored, &err) < 0)
		lk_log_warn_err(&err, "job %s: cannot read its next fire time", s->job->name);
	(void)lk_store_runs_interrupt_stale(store, s->job->name, NULL, &err);
	interrupted = was_interrupted(store, s->job->name);
	pthread_mutex_lock(&d->mu);
	(void)lk_sched_place(&s->e, 0, stored, lk_wall_ms(), &act);
	if (s->e.pending == 0 && interrupted) {
		lk_log_info("job %s: its last run was interrupted; resuming it now", s->job->name);
		s->e.pending = 1;
	}
	pthread_mutex_unlock(&d->mu);
}

static struct lk_slot *slot_new(struct lk_gen *g, const struct lk_job *job)
{
	struct lk_slot *s = lk_xcalloc(1, sizeof(*s));
	struct lk_buf fp = LK_BUF_INIT;

	s->job = job;
	s->gen = g;
	(void)__atomic_add_fetch(&g->users, 1, __ATOMIC_ACQ_REL);
	lk_config_job_fingerprint(g->cfg, job, &fp);
	s->fp = lk_buf_detach(&fp, NULL);
	s->realtime = job->kind == LK_JOB_SYNC && job->mode == LK_MODE_REALTIME;
	return s;
}

static void slot_free(struct lk_slot *s)
{
	(void)__atomic_sub_fetch(&s->gen->users, 1, __ATOMIC_ACQ_REL);
	lk_tz_free(s->tz);
	lk_tz_free(s->vtz);
	free(s->fp);
	free(s);
}

/* A replaced slot of the same job still running (mu held). */
static bool predecessor_busy(struct lk_daemon *d, const struct lk_slot *s)
{
	for (int i = 0; i < d->nslots; i++) {
		const struct lk_slot *o = d->slots[i];

		if (o != s && o->gone && o->busy && strcmp(o->job->name, s->job->name) == 0)
			return true;
	}
	return false;
}

/*
 * Adds a slot to the list and starts it (mu not held). A job changed by a reload gets a
 * new slot while the old one may still be finishing its run: the new one is held (no
 * fire, no real-time thread) until the old one is idle, so it never finds its own job
 * lock taken and drops a fire (collect() releases it).
 */
static void slot_add(struct lk_daemon *d, struct lk_slot *s, struct lk_store *store)
{
	if (!s->realtime)
		place(d, s, store);
	pthread_mutex_lock(&d->mu);
	if (d->nslots == d->aslots) {
		d->aslots = d->aslots ? 2 * d->aslots : 8;
		d->slots = lk_xrealloc(d->slots, (size_t)d->aslots * sizeof(struct lk_slot *));
	}
	d->slots[d->nslots++] = s;
	s->held = predecessor_busy(d, s);
	if (!d->cluster && !lk_daemon_labels_fit(d, s->job))
		lk_log_warn("job %s: this instance lacks labels its run_on asks for (instance"
			    " labels: [%s]); it does not run here",
			    s->job->name, d->labels);
	if (s->held)
		lk_log_info("job %s: the new version starts once the old one has stopped",
			    s->job->name);
	else if (s->realtime && lk_daemon_may_run(d, s->job->name))
		(void)lk_daemon_realtime_start(d, s);
	pthread_mutex_unlock(&d->mu);
}

static struct lk_gen *gen_new(struct lk_daemon *d, struct lk_config *cfg)
{
	struct lk_gen *g = lk_xcalloc(1, sizeof(*g));

	g->cfg = cfg;
	pthread_mutex_lock(&d->mu); /* an HTTP replay reads the newest generation */
	g->next = d->gens;
	d->gens = g;
	pthread_mutex_unlock(&d->mu);
	d->limit = cfg->memory_limit;
	lk_log_setup(cfg->log.level, cfg->log.format);
	return g;
}

/* Frees slots that are gone and idle, and configs nobody uses (except the newest and the
 * store's). Scheduler thread only. */
static void collect(struct lk_daemon *d)
{
	int k = 0;

	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (s->gone && !s->busy && !s->vbusy) {
			if (s->thread_started)
				(void)pthread_join(s->thread, NULL);
			slot_free(s);
			continue;
		}
		d->slots[k++] = s;
	}
	d->nslots = k;
	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (!s->held || s->gone || predecessor_busy(d, s))
			continue;
		s->held = false;
		lk_log_info("job %s: the old version stopped; the new one starts", s->job->name);
		if (s->realtime && lk_daemon_may_run(d, s->job->name))
			(void)lk_daemon_realtime_start(d, s);
	}
	/* A stream that ended while its job may still run here starts again: the watch stops
	 * it at a late renewal, and when the lease thread gets the lease back before the
	 * thread has ended, it finds the slot busy and cannot start it (found by the soak). */
	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];

		if (!s->realtime || s->busy || s->held || s->gone || d->closing ||
		    lk_flag(d->opts->stop) || !lk_daemon_may_run(d, s->job->name))
			continue;
		lk_log_info("job %s: its stream had stopped while the job is still held here; "
			    "starting it again",
			    s->job->name);
		(void)lk_daemon_realtime_start(d, s);
	}
	for (struct lk_gen **p = &d->gens->next; *p;) {
		struct lk_gen *g = *p;

		if (__atomic_load_n(&g->users, __ATOMIC_ACQUIRE) == 0 && g->cfg != d->store_cfg) {
			*p = g->next;
			lk_config_free(g->cfg);
			free(g);
			continue;
		}
		p = &g->next;
	}
	pthread_mutex_unlock(&d->mu); /* the generations too: an HTTP replay walks them */
}

static struct lk_slot *find_live(struct lk_daemon *d, const char *name)
{
	for (int i = 0; i < d->nslots; i++) {
		if (!d->slots[i]->gone && strcmp(d->slots[i]->job->name, name) == 0)
			return d->slots[i];
	}
	return NULL;
}

static bool same_text(const char *a, const char *b, const char *dflt)
{
	a = a ? a : dflt;
	b = b ? b : dflt;
	return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Names, in one warning, the keys that differ from the start's config and that only a
 * start applies (they are read once: the listener, the store, the member, the lease). */
static void log_start_only(const struct lk_daemon *d, const struct lk_config *cfg)
{
	const struct lk_config *was = d->store_cfg;
	bool labels = was->nlabels != cfg->nlabels;
	struct lk_buf list = LK_BUF_INIT;
	int n = 0;

	for (int i = 0; !labels && i < cfg->nlabels; i++)
		labels = strcmp(was->labels[i], cfg->labels[i]) != 0;
	const struct {
		bool changed;
		const char *key;
	} keys[] = {
		{!same_text(was->state_url, cfg->state_url, NULL), "state"},
		{!same_text(was->http.listen, cfg->http.listen, "127.0.0.1:8433"), "http.listen"},
		{!same_text(was->instance_name, cfg->instance_name, NULL), "instance.name"},
		{labels, "instance.labels"},
		{d->cluster && was->lease_ms != cfg->lease_ms, "cluster.lease"},
		{d->cluster && was->renew_ms != cfg->renew_ms, "cluster.renew"},
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].changed)
			lk_buf_addf(&list, "%s%s", n++ ? ", " : "", keys[i].key);
	}
	if (n)
		lk_log_warn("reload: %s changed; %s at the next start (restart lockstep to "
			    "apply %s)",
			    list.buf, n == 1 ? "it applies" : "they apply", n == 1 ? "it" : "them");
	lk_buf_release(&list);
}

/* SIGHUP: added jobs start, removed ones stop, changed ones restart, the rest run on; the
 * HTTP token is replaced; keys only a start applies are named in the log. */
static void reload(struct lk_daemon *d, struct lk_store *store)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_config *cfg;
	struct lk_gen *g;
	int added = 0, removed = 0, changed = 0, kept = 0;
	bool token_changed = false;

	(void)lk_sd_notify_reloading("reloading the config");
	cfg = lk_config_load(d->opts->config_path, &err);
	if (cfg && (lk_sched_check_config(cfg, &err) < 0 ||
		    lk_http_check_listen(cfg->http.listen ? cfg->http.listen : "127.0.0.1:8433",
					 cfg->http.token, &err) < 0 ||
		    lk_http_set_access(d->http, &cfg->http, &token_changed, &err) < 0)) {
		lk_config_free(cfg);
		cfg = NULL;
	}
	if (!cfg) {
		lk_log_error("reload refused, the running config stays in force: %s", err.msg);
		(void)lk_sd_notify("READY=1\nSTATUS=reload refused: invalid config");
		return;
	}
	if (token_changed)
		lk_log_info(
			"reload: http.token changed; every call but /livez and /readyz needs the "
			"new token from now on");
	log_start_only(d, cfg);
	g = gen_new(d, cfg);
	for (int i = 0; i < d->nslots; i++) {
		struct lk_slot *s = d->slots[i];
		const struct lk_job *nj = s->gone ? NULL : lk_config_job(cfg, s->job->name);
		struct lk_buf fp = LK_BUF_INIT;

		if (s->gone)
			continue;
		if (nj)
			lk_config_job_fingerprint(cfg, nj, &fp);
		if (nj && strcmp(fp.buf, s->fp) == 0) {
			kept++;
			lk_flag_set(&s->poke, true); /* see docs/schema-changes.md */
		} else {
			pthread_mutex_lock(&d->mu);
			s->gone = true;
			lk_flag_set(&s->stop, true);
			s->e.removed = true;
			pthread_mutex_unlock(&d->mu);
			if (nj)
				changed++;
			else
				removed++;
			lk_log_info("reload: job %s %s", s->job->name,
				    nj ? "changed: restarting it" : "removed: stopping it");
		}
		lk_buf_release(&fp);
	}
	for (int i = 0; i < cfg->njobs; i++) {
		if (find_live(d, cfg->jobs[i].name))
			continue;
		if (!lk_config_job(d->gens->next->cfg, cfg->jobs[i].name)) {
			added++;
			lk_log_info("reload: job %s added", cfg->jobs[i].name);
		}
		slot_add(d, slot_new(g, &cfg->jobs[i]), store);
	}
	lk_log_info("config reloaded: %d job%s added, %d changed, %d removed, %d unchanged", added,
		    added == 1 ? "" : "s", changed, removed, kept);
	(void)lk_sd_notifyf("READY=1\nSTATUS=config reloaded; %d jobs", cfg->njobs);
}

/* One pass of the schedule: starts due runs, records skips, keeps next fire times. */
static void tick(struct lk_daemon *d, struct lk_store *store)
{
	struct {
		char job[128];
		int64_t fire_ms, next_ms;
		char spec[160];
		int kind; /* 0 skip, 1 persist next */
	} todo[64];
	int ntodo = 0;
	struct lk_slot *fresh[64];
	int nfresh = 0;

	memset(todo, 0, sizeof(todo));
	/* jobs whose lease was just taken: their schedule as the last holder left it */
	pthread_mutex_lock(&d->mu);
	for (int i = 0; d->cluster && i < d->nslots && nfresh < 64; i++) {
		struct lk_slot *s = d->slots[i];
		struct lk_lease *l = lk_daemon_lease(d, s->job->name);

		if (l && l->fresh && l->held) {
			l->fresh = false;
			if (!s->realtime && !s->gone)
				fresh[nfresh++] = s; /* not freed: only this thread frees slots */
		}
	}
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < nfresh; i++)
		replace(d, fresh[i], store);

	int64_t now = lk_wall_ms();

	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->nslots && ntodo + 4 < 64; i++) {
		struct lk_slot *s = d->slots[i];
		struct lk_sched_act acts[4];
		int n;

		/* vhold: a repair of the job writes; a fire waits for it (seconds) */
		if (s->realtime || s->gone || s->held || s->vhold ||
		    !lk_daemon_may_run(d, s->job->name))
			continue;
		n = d->closing ? 0 : lk_sched_tick(&s->e, 1, now, acts, 4);
		for (int k = 0; k < n; k++) {
			if (acts[k].kind == LK_SCHED_RUN) {
				s->busy = true;
				lk_flag_set(&s->stop, false);
				lk_flag_set(&s->cancel, false);
				if (s->next_id[0]) { /* asked for over HTTP: keeps its id */
					memcpy(s->run_id, s->next_id, sizeof(s->run_id));
					s->run_full = s->next_full;
					s->next_id[0] = '\0';
				} else {
					lk_uuid7(s->run_id);
					s->run_full = false;
				}
				lk_daemon_live_queued(d, s->run_id, s->job->name, s->run_full);
				lk_daemon_enqueue(d, s);
			} else if (acts[k].kind == LK_SCHED_SKIP) {
				(void)snprintf(todo[ntodo].job, sizeof(todo[0].job), "%s",
					       s->job->name);
				todo[ntodo].fire_ms = acts[k].fire_ms;
				todo[ntodo++].kind = 0;
			} else if (acts[k].kind == LK_SCHED_SLOW && s->queued) {
				s->e.warned_slow = false; /* still waiting for a worker */
			} else if (acts[k].kind == LK_SCHED_SLOW) {
				lk_log_warn("job %s: this run has taken over 80%% of its interval "
					    "(%.1f s); the next fire may be skipped",
					    s->job->name, (double)s->e.run_interval_ms / 1000.0);
			}
		}
		if (s->e.dirty && s->e.next_ms > 0) {
			s->e.dirty = false;
			(void)snprintf(todo[ntodo].job, sizeof(todo[0].job), "%s", s->job->name);
			memcpy(todo[ntodo].spec, s->spec, sizeof(s->spec));
			todo[ntodo].next_ms = s->e.next_ms;
			todo[ntodo++].kind = 1;
		}
	}
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < ntodo; i++) {
		struct lk_err err = LK_ERR_INIT;

		if (todo[i].kind == 0) {
			lk_log_info("job %s: skipped a run, the previous one is still going",
				    todo[i].job);
			if (lk_sched_record_skip(store, todo[i].job, todo[i].fire_ms, &err) < 0)
				lk_log_warn_err(&err, "job %s: cannot record a skipped run",
						todo[i].job);
		} else if (lk_store_schedule_put(store, todo[i].job, todo[i].spec, todo[i].next_ms,
						 &err) < 0) {
			lk_log_warn_err(&err, "job %s: cannot keep its next fire time",
					todo[i].job);
		}
	}
}

static void prune(struct lk_daemon *d, struct lk_store *store)
{
	struct lk_err err = LK_ERR_INIT;
	int64_t runs = 0, errors = 0;
	int64_t retention = d->gens->cfg->retention_ms;

	if (lk_store_prune(store, lk_wall_ms() - retention, &runs, &errors, &err) < 0)
		lk_log_warn_err(&err, "cannot prune old runs");
	else if (runs || errors)
		lk_log_info("pruned %lld finished run%s and %lld resolved dead letter%s older than "
			    "the retention",
			    (long long)runs, runs == 1 ? "" : "s", (long long)errors,
			    errors == 1 ? "" : "s");
}

static int count_busy(struct lk_daemon *d)
{
	int n = 0;

	for (int i = 0; i < d->nslots; i++)
		n += d->slots[i]->busy;
	return n;
}

/* Stops every job at its next checkpoint; false when some did not stop within the grace. */
static bool stop_all(struct lk_daemon *d, struct lk_store *store)
{
	int64_t grace = d->opts->grace_ms > 0 ? d->opts->grace_ms : LK_DAEMON_GRACE_MS;
	int64_t deadline = lk_mono_ms() + grace;
	int busy;

	(void)lk_sd_notify("STOPPING=1\nSTATUS=stopping: jobs finish their batch");
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->nslots; i++)
		lk_flag_set(&d->slots[i]->stop, true);
	pthread_mutex_unlock(&d->mu);
	lk_log_info("stopping: running jobs stop at their next checkpoint (grace %.0f s)",
		    (double)grace / 1000.0);
	lk_daemon_pool_close(d);
	pthread_mutex_lock(&d->mu);
	while ((busy = count_busy(d)) > 0 && lk_mono_ms() < deadline) {
		pthread_mutex_unlock(&d->mu);
		lk_sleep_ms(50, NULL);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	if (busy == 0)
		return true;
	lk_log_warn("%d job%s did not reach a checkpoint within %.0f s; exiting anyway (their "
		    "runs are recorded interrupted and resume from their last checkpoint)",
		    busy, busy == 1 ? "" : "s", (double)grace / 1000.0);
	for (int i = 0; i < d->nslots; i++) {
		struct lk_err err = LK_ERR_INIT;

		if (d->slots[i]->busy)
			(void)lk_store_runs_interrupt_stale(store, d->slots[i]->job->name, NULL,
							    &err);
	}
	return false;
}

/*
 * The scheduler loop's periodic duties, each on a timer that is due at the loop's first
 * tick (whatever the machine's uptime) and then every interval: the memory check, the
 * heartbeat, the retention prune, the systemd watchdog and, as PID 1, the orphan reaper.
 */
static void loop(struct lk_daemon *d, struct lk_store *store)
{
	int64_t wd = lk_sd_watchdog_ms() / 2;
	struct lk_every mem = {0}, hb = {0}, pr = {0}, dog = {0}, orphans = {0};
	bool pid1 = getpid() == 1;

	if (pid1)
		lk_log_info("running as PID 1: ended orphaned processes are reaped every second");
	while (!lk_flag(d->opts->stop)) {
		int64_t now = lk_mono_ms();

		if (*d->opts->reload) {
			*d->opts->reload = 0;
			reload(d, store);
		}
		tick(d, store);
		if (lk_every_due(&mem, now, 1000))
			lk_daemon_memory_check(d);
		if (lk_every_due(&hb, now, HEARTBEAT_MS))
			lk_daemon_heartbeat(d, store, NULL);
		if (lk_every_due(&pr, now, PRUNE_MS))
			prune(d, store);
		collect(d);
		if (pid1 && lk_every_due(&orphans, now, 1000)) /* PID 1: no zombies pile up */
			(void)lk_exec_reap_orphans();
		if (wd > 0 && lk_every_due(&dog, now, wd)) /* the loop really ticked */
			(void)lk_sd_notify("WATCHDOG=1");
		lk_sleep_ms(TICK_MS, d->opts->stop);
	}
}

static void set_ready(struct lk_daemon *d)
{
	pthread_mutex_lock(&d->mu);
	d->ready = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->mu);
}

static void api_free(struct lk_daemon *d)
{
	lk_store_close(d->api_store);
	d->api_store = NULL;
	free(d->live);
	free(d->jobstats);
	pthread_cond_destroy(&d->live_cond);
	pthread_mutex_destroy(&d->live_mu);
	pthread_mutex_destroy(&d->api_mu);
}

int lk_daemon_run(struct lk_config **cfgp, const struct lk_daemon_opts *opts,
		  enum lk_daemon_end *end, struct lk_err *err)
{
	struct lk_daemon d;
	struct lk_store *store;
	struct lk_gen *g;
	pthread_condattr_t ca;
	int nsched = 0, nrt = 0;
	bool clean;

	memset(&d, 0, sizeof(d));
	*end = LK_DAEMON_CLEAN;
	d.opts = opts;
	d.store_cfg = *cfgp;
	for (int i = 0; i < d.store_cfg->nlabels; i++) {
		size_t at = strlen(d.labels);

		(void)snprintf(d.labels + at, sizeof(d.labels) - at, "%s%s", i ? "," : "",
			       d.store_cfg->labels[i]);
	}
	d.started_mono_ms = lk_mono_ms();
	d.started_wall_ms = lk_wall_ms();
	pthread_mutex_init(&d.mu, NULL);
	pthread_cond_init(&d.cond, NULL);
	pthread_mutex_init(&d.live_mu, NULL);
	pthread_mutex_init(&d.api_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d.live_cond, &ca);
	pthread_condattr_destroy(&ca);
	d.live = lk_xcalloc(LK_LIVE_MAX, sizeof(*d.live));
	store = lk_store_open(d.store_cfg, err);
	if (!store) {
		api_free(&d);
		return -1;
	}
	lk_store_set_observer(store, lk_daemon_observe, &d);
	g = gen_new(&d, *cfgp);
	/* serving first: a port in use stops the start before any job runs */
	d.http = lk_http_start(&g->cfg->http, &d, err);
	if (!d.http || lk_daemon_pool_start(&d, MAX_WORKERS, err) < 0) {
		set_ready(&d); /* requests waiting for the jobs end now */
		lk_http_stop(d.http);
		lk_store_close(store);
		api_free(&d);
		free(d.gens);
		return -1;
	}
	if (lk_daemon_lease_start(&d, err) < 0) {
		set_ready(&d);
		lk_daemon_pool_close(&d);
		lk_daemon_pool_join(&d);
		lk_http_stop(d.http);
		lk_store_close(store);
		api_free(&d);
		free(d.gens);
		return -1;
	}
	for (int i = 0; i < g->cfg->njobs; i++) {
		struct lk_slot *s = slot_new(g, &g->cfg->jobs[i]);

		s->realtime ? nrt++ : nsched++;
		slot_add(&d, s, store);
	}
	set_ready(&d);
	(void)lk_daemon_verify_start(&d);
	lk_log_info("lockstep running: %d real-time job%s, %d scheduled or triggered job%s, %d "
		    "workers (restart %lld)",
		    nrt, nrt == 1 ? "" : "s", nsched, nsched == 1 ? "" : "s", MAX_WORKERS,
		    (long long)opts->restarts);
	lk_daemon_memory_check(&d);
	lk_daemon_heartbeat(&d, store, NULL);
	(void)lk_sd_notifyf("READY=1\nSTATUS=running %d jobs", g->cfg->njobs);
	loop(&d, store);
	lk_flag_set(&d.verify_stop, true); /* a pass going stops at its next page */
	clean = stop_all(&d, store);
	lk_daemon_verify_stop(&d, clean);
	/* leases are freed for a quick handover only when every job really stopped */
	d.lease_release = clean;
	lk_daemon_lease_stop(&d);
	lk_http_stop(d.http); /* answered during the shutdown; no request is left now */
	d.http = NULL;
	lk_daemon_heartbeat(&d, store, "STOPPED");
	lk_store_close(store);
	if (!clean) {
		lk_daemon_pool_abandon(&d);
		*end = LK_DAEMON_ABANDONED;
		return 0;
	}
	lk_daemon_pool_join(&d);
	collect(&d);
	for (int i = 0; i < d.nslots; i++) {
		if (d.slots[i]->thread_started)
			(void)pthread_join(d.slots[i]->thread, NULL);
		slot_free(d.slots[i]);
	}
	free(d.slots);
	free(d.leases);
	/* The newest config is handed back; the others (the store's included) are freed. */
	*cfgp = d.gens->cfg;
	while (d.gens) {
		struct lk_gen *next = d.gens->next;

		if (d.gens->cfg != *cfgp)
			lk_config_free(d.gens->cfg);
		free(d.gens);
		d.gens = next;
	}
	lk_sync_set_batch_divisor(1);
	api_free(&d);
	pthread_cond_destroy(&d.cond);
	pthread_mutex_destroy(&d.mu);
	return 0;
}
