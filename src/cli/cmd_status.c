/* cmd_status.c - `lockstep status [--json]`: jobs, their last runs, the restart count. */
#include "cli_int.h"
#include "connector/cdc.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/units.h"
#include "orphans.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"snapshot", "poll", "realtime", "logical"};

static json_t *num_or_null(const struct lk_value *v)
{
	long long n;

	if (v->null || sscanf(v->p, "%lld", &n) != 1)
		return json_null();
	return json_integer(n);
}

static json_t *time_or_null(const struct lk_value *v)
{
	long long n;
	char buf[40];

	if (v->null || sscanf(v->p, "%lld", &n) != 1 || n <= 0)
		return json_null();
	lk_cli_time(n, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *run_json(const struct lk_value *v)
{
	json_t *o = json_object();

	(void)json_object_set_new(o, "runId", json_string(v[LK_RUNCOL_ID].p));
	(void)json_object_set_new(o, "type", json_string(v[LK_RUNCOL_TYPE].p));
	(void)json_object_set_new(o, "status", json_string(v[LK_RUNCOL_STATUS].p));
	(void)json_object_set_new(o, "stage",
				  v[LK_RUNCOL_STAGE].null ? json_null()
							  : lk_json_text(v[LK_RUNCOL_STAGE].p,
									 v[LK_RUNCOL_STAGE].len));
	(void)json_object_set_new(o, "rowsRead", num_or_null(&v[LK_RUNCOL_READ]));
	(void)json_object_set_new(o, "rowsWritten", num_or_null(&v[LK_RUNCOL_WRITTEN]));
	(void)json_object_set_new(o, "rowsFailed", num_or_null(&v[LK_RUNCOL_FAILED]));
	(void)json_object_set_new(o, "startTime", time_or_null(&v[LK_RUNCOL_STARTED]));
	(void)json_object_set_new(o, "finishTime", time_or_null(&v[LK_RUNCOL_FINISHED]));
	(void)json_object_set_new(o, "epoch", num_or_null(&v[LK_RUNCOL_EPOCH]));
	(void)json_object_set_new(o, "error",
				  v[LK_RUNCOL_ERROR].null ? json_null()
							  : lk_json_text(v[LK_RUNCOL_ERROR].p,
									 v[LK_RUNCOL_ERROR].len));
	return o;
}

/* A real-time job's lag, read from its source (one connection attempt). */
static int job_lag(const struct lk_cli *cli, struct lk_store *store, const struct lk_job *job,
		   struct lk_cdc_lag *lag, struct lk_err *err)
{
	const struct lk_retry_conf once = {1, 0, 0, 1.0};
	struct lk_db src = {0};
	char ident[LK_IDENT_MAX];
	int rc;

	if (lk_store_ident(store, job->name, ident, err) < 0 ||
	    lk_db_open(&src, &cli->cfg->dbs[job->source.db], &once, NULL, err) < 0)
		return -1;
	rc = lk_cdc_for(src.ops)->lag(src.conn, ident, &job->source.table, lag, err);
	lk_db_close(&src);
	return rc;
}

static json_t *secs_or_null(double s)
{
	return s < 0 ? json_null() : json_real(s);
}

static json_t *lag_json(const struct lk_cdc_lag *l)
{
	json_t *o = json_object();

	(void)json_object_set_new(o, "installed", json_boolean(l->installed));
	(void)json_object_set_new(o, "registered", json_boolean(l->registered));
	(void)json_object_set_new(o, "pending", json_integer(l->pending));
	(void)json_object_set_new(o, "oldestPendingSeconds", secs_or_null(l->oldest_age_s));
	(void)json_object_set_new(o, "horizonAgeSeconds", json_real(l->horizon_age_s));
	(void)json_object_set_new(o, "horizonHeldByPid",
				  l->holder_pid ? json_integer(l->holder_pid) : json_null());
	(void)json_object_set_new(o, "consumerIdleSeconds", secs_or_null(l->idle_s));
	(void)json_object_set_new(o, "entries", json_integer(l->entries));
	return o;
}

static void print_text_lag(const struct lk_cdc_lag *l, const struct lk_err *err)
{
	if (err->code != LK_OK) {
		(void)printf("%22slag: unknown (%s)\n", "", err->msg);
		return;
	}
	if (!l->registered) {
		(void)printf("%22slag: not registered on its source yet\n", "");
		return;
	}
	(void)printf("%22slag: %lld changes pending", "", (long long)l->pending);
	if (l->oldest_age_s >= 0)
		(void)printf(", oldest %.1f s", l->oldest_age_s);
	if (l->holder_pid)
		(void)printf("; horizon held %.1f s by the open transaction of pid %d",
			     l->horizon_age_s, l->holder_pid);
	(void)printf("; consumer advanced %.1f s ago\n", l->idle_s);
}

static const char *const kind_names[] = {"sync", "sql", "exec"};

/* A real-time job's forced re-snapshots (docs/realtime.md, "Re-snapshots"), as the state
 * store keeps them: a line of text, or a JSON member of j. */
static void print_resnap(struct lk_store *store, const struct lk_job *job, json_t *j)
{
	struct lk_store_resnap r;
	struct lk_err err = LK_ERR_INIT;
	char when[40];

	if (lk_store_resnap_get(store, job->name, &r, &err) < 0 || !r.found) {
		if (j)
			(void)json_object_set_new(j, "resnapshots", json_null());
		return;
	}
	lk_cli_time(r.at_ms, when, sizeof(when));
	if (j)
		(void)json_object_set_new(j, "resnapshots",
					  json_pack("{s:I, s:s, s:s, s:s}", "count",
						    (json_int_t)r.count, "last", when, "reason",
						    r.reason, "why", r.why));
	else
		(void)printf("%22sre-snapshots: %lld, the last at %s (%s: %s)\n", "",
			     (long long)r.count, when, r.reason, r.why);
}

/* A sync job stopped on its schemas (docs/schema-changes.md), as the state store keeps it:
 * a line of text, or a JSON member of j ("blocked": null when it is not). */
static void print_blocked(struct lk_store *store, const struct lk_job *job, json_t *j)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_buf key = LK_BUF_INIT;
	char *text = NULL, when[40];
	json_t *v = NULL;

	lk_buf_addf(&key, "blocked:%s", job->name);
	if (job->kind == LK_JOB_SYNC && lk_store_meta_get(store, key.buf, &text, &err) == 0 && text)
		v = json_loads(text, 0, NULL);
	lk_buf_release(&key);
	free(text);
	if (j)
		(void)json_object_set_new(j, "blocked", v ? json_incref(v) : json_null());
	if (v && !j) {
		lk_cli_time(json_integer_value(json_object_get(v, "at")), when, sizeof(when));
		(void)printf("%22sstopped since %s: %s\n", "", when,
			     json_string_value(json_object_get(v, "why"))
				     ? json_string_value(json_object_get(v, "why"))
				     : "");
	}
	json_decref(v);
}

/* The job's last verify or repair pass (docs/verify.md): rows_failed holds what it found
 * (verify) or left (repair), rows_written what it repaired. */
static void print_verify(struct lk_store *store, const struct lk_job *job, json_t *j)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows runs;
	char when[40] = "";

	if (job->kind != LK_JOB_SYNC)
		return;
	lk_rows_init(&runs, 15);
	if (lk_store_runs_of(store, job->name, LK_RUNS_VERIFY, 1, &runs, &err) < 0 ||
	    runs.nrows == 0) {
		if (j)
			(void)json_object_set_new(j, "lastVerify", json_null());
		lk_rows_release(&runs);
		return;
	}
	if (j) {
		(void)json_object_set_new(j, "lastVerify", run_json(LK_ROW(&runs, 0)));
	} else {
		const struct lk_value *v = LK_ROW(&runs, 0);
		int64_t ms = 0;

		(void)lk_int64_parse(v[LK_RUNCOL_STARTED].p, &ms);
		lk_cli_time(ms, when, sizeof(when));
		if (!v[LK_RUNCOL_ERROR].null)
			(void)printf("%22slast %s %s %s: %s\n", "", v[LK_RUNCOL_TYPE].p, when,
				     v[LK_RUNCOL_STATUS].p, v[LK_RUNCOL_ERROR].p);
		else
			(void)printf("%22slast %s %s %s: %s rows, %s %s, %s repaired\n", "",
				     v[LK_RUNCOL_TYPE].p, when, v[LK_RUNCOL_STATUS].p,
				     v[LK_RUNCOL_READ].p, v[LK_RUNCOL_FAILED].p,
				     strcmp(v[LK_RUNCOL_TYPE].p, "repair") == 0 ? "differences left"
										: "differences",
				     v[LK_RUNCOL_WRITTEN].p);
	}
	lk_rows_release(&runs);
}

static void orphan_json(void *arg, const struct lk_orphan *o)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "consumer", o->name, "database", o->db,
			      "table", o->table, "job", o->job);

	(void)json_object_set_new(j, "deployment",
				  o->deployment[0] ? json_string(o->deployment) : json_null());
	(void)json_object_set_new(j, "heldBackSeconds", secs_or_null(o->held_s));
	(void)json_object_set_new(j, "idleSeconds", json_real(o->idle_s));
	(void)json_array_append_new(arg, j);
}

static void orphan_text(void *arg, const struct lk_orphan *o)
{
	char what[512];

	(void)arg;
	lk_orphan_describe(o, what, sizeof(what));
	(void)printf("orphan %s\n", what);
}

/*
 * This deployment, and the consumers of its real-time jobs' source tables that belong to
 * no job of it (json: into root; text: printed). What cannot be read is said, not fatal.
 */
static void deployment_status(struct lk_cli *cli, struct lk_store *store, json_t *root)
{
	struct lk_err err = LK_ERR_INIT;
	json_t *arr = json_array();
	const char *dep = NULL;

	if (lk_store_deployment(store, &dep, &err) < 0)
		dep = NULL;
	if (root) {
		(void)json_object_set_new(root, "deployment", dep ? json_string(dep) : json_null());
	} else {
		(void)printf("deployment %s\n", dep ? dep : "unknown");
	}
	lk_err_clear(&err);
	if (dep &&
	    lk_cli_orphans(cli, store, false, root ? orphan_json : orphan_text, arr, &err) < 0) {
		if (root)
			(void)json_object_set_new(root, "orphansError", json_string(err.msg));
		else
			(void)printf("orphans: unknown (%s)\n", err.msg);
	}
	if (root)
		(void)json_object_set_new(root, "orphans", arr);
	else
		json_decref(arr);
}

/* The next fire time the scheduler keeps for job (0 when none). */
static int64_t next_fire(struct lk_store *store, const char *job)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	const char *p[1] = {job};
	int64_t ms = 0;

	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql, "SELECT next_ms FROM %sschedules WHERE job = $1", lk_store_prefix(store));
	if (lk_store_db(store)->ops->exec(lk_store_db(store)->conn, sql.buf, 1, p, &rows, NULL,
					  &err) == 0 &&
	    rows.nrows == 1 && LK_ROW(&rows, 0)[0].p &&
	    lk_int64_parse(LK_ROW(&rows, 0)[0].p, &ms) < 0)
		ms = 0;
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return ms;
}

/* Instances from their heartbeat rows: name, restarts, seen_ms, health, detail. */
static json_t *instances_json(struct lk_store *store)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	json_t *arr = json_array();

	lk_rows_init(&rows, 5);
	lk_buf_addf(&sql,
		    "SELECT name, restarts, seen_ms, health, detail FROM %sinstances ORDER BY name",
		    lk_store_prefix(store));
	if (lk_store_db(store)->ops->exec(lk_store_db(store)->conn, sql.buf, 0, NULL, &rows, NULL,
					  &err) == 0) {
		for (int i = 0; i < rows.nrows; i++) {
			const struct lk_value *v = LK_ROW(&rows, i);
			json_t *o = json_object();
			json_t *detail = v[4].null ? NULL : json_loads(v[4].p, 0, NULL);
			int64_t seen = 0;

			(void)lk_int64_parse(v[2].p, &seen);
			(void)json_object_set_new(o, "name", json_string(v[0].p));
			(void)json_object_set_new(o, "restarts", num_or_null(&v[1]));
			(void)json_object_set_new(o, "seenTime", time_or_null(&v[2]));
			/* A heartbeat comes every 2 s: older than 10 s, the daemon is gone. */
			(void)json_object_set_new(o, "health",
						  json_string(v[3].null ? "UNKNOWN"
							      : (strcmp(v[3].p, "STOPPED") != 0 &&
								 lk_wall_ms() - seen > 10000)
								      ? "GONE"
								      : v[3].p));
			(void)json_object_set_new(o, "detail", detail ? detail : json_null());
			(void)json_array_append_new(arr, o);
		}
	}
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return arr;
}

static void print_text_instances(json_t *arr)
{
	size_t i;
	json_t *o;

	json_array_foreach(arr, i, o)
	{
		json_t *d = json_object_get(o, "detail");
		json_t *br = json_object_get(d, "breakers");
		size_t k;
		json_t *b;

		(void)printf("instance %s: %s, restarts %lld",
			     json_string_value(json_object_get(o, "name")),
			     json_string_value(json_object_get(o, "health")),
			     (long long)json_integer_value(json_object_get(o, "restarts")));
		if (json_integer_value(json_object_get(d, "rssBytes")) > 0)
			(void)printf(", RSS %.1f MiB",
				     (double)json_integer_value(json_object_get(d, "rssBytes")) /
					     1048576.0);
		if (json_integer_value(json_object_get(d, "memoryLimitBytes")) > 0)
			(void)printf(
				" of memory.limit %.1f MiB",
				(double)json_integer_value(json_object_get(d, "memoryLimitBytes")) /
					1048576.0);
		(void)printf("\n");
		json_array_foreach(br, k, b)
		{
			(void)printf("  breaker %s: %s, %lld consecutive failures\n",
				     json_string_value(json_object_get(b, "db")),
				     json_string_value(json_object_get(b, "state")),
				     (long long)json_integer_value(json_object_get(b, "failures")));
		}
	}
}

/* The job's row of lk_store_leases (PostgreSQL store), or NULL. */
static const struct lk_value *lease_of(const struct lk_rows *leases, const char *job)
{
	for (int i = 0; i < leases->nrows; i++) {
		if (strcmp(LK_ROW(leases, i)[0].p, job) == 0)
			return LK_ROW(leases, i);
	}
	return NULL;
}

/* holder: the live holder (or null); epoch: the lease's fencing token. */
static void lease_json(json_t *j, const struct lk_value *l)
{
	bool live = l && !l[1].null && l[3].p[0] == 't';

	(void)json_object_set_new(j, "holder", live ? json_string(l[1].p) : json_null());
	(void)json_object_set_new(j, "epoch", l ? num_or_null(&l[2]) : json_null());
}

static void print_text_lease(const struct lk_value *lease)
{
	if (lease && !lease[1].null && lease[3].p[0] == 't')
		(void)printf("%22sheld by %s (epoch %s)\n", "", lease[1].p, lease[2].p);
}

static void print_text_job(const struct lk_job *job, const struct lk_rows *runs, int64_t next)
{
	char when[40] = "";

	(void)printf("%-20s %-9s", job->name,
		     job->kind == LK_JOB_SYNC ? mode_names[job->mode] : kind_names[job->kind]);
	if (next > 0) {
		lk_cli_time(next, when, sizeof(when));
		(void)printf(" next %s", when);
	}
	if (runs->nrows == 0) {
		(void)printf(" never run\n");
		return;
	}
	{
		const struct lk_value *v = LK_ROW(runs, 0);
		long long ms = 0;

		if (sscanf(v[LK_RUNCOL_STARTED].p, "%lld", &ms) == 1)
			lk_cli_time(ms, when, sizeof(when));
		(void)printf(" last run %s %-11s read %s written %s", when, v[LK_RUNCOL_STATUS].p,
			     v[LK_RUNCOL_READ].p, v[LK_RUNCOL_WRITTEN].p);
		if (!v[LK_RUNCOL_ERROR].null)
			(void)printf("\n%22serror: %s", "", v[LK_RUNCOL_ERROR].p);
		(void)printf("\n");
	}
}

int lk_cmd_status(struct lk_cli *cli)
{
	struct lk_err err = LK_ERR_INIT;
	bool json = cli->argc > 1 && strcmp(cli->argv[1], "--json") == 0;
	json_t *root = json_object(), *jobs = json_array(), *instances = NULL;
	struct lk_store *store;
	struct lk_rows leases;
	int code = 0;

	if (cli->argc > 2 || (cli->argc == 2 && !json)) {
		(void)fputs("usage: lockstep status [--json]\n", stderr);
		json_decref(root);
		json_decref(jobs);
		return LK_EXIT_USAGE;
	}
	store = lk_cli_open_store(cli, &code);
	if (!store) {
		json_decref(root);
		json_decref(jobs);
		return code;
	}
	instances = instances_json(store);
	if (!json)
		print_text_instances(instances);
	deployment_status(cli, store, json ? root : NULL);
	lk_rows_init(&leases, 4);
	if (strcmp(lk_store_prefix(store), "lockstep.") == 0 &&
	    lk_store_leases(store, &leases, &err) < 0) /* several instances: who holds what */
		lk_err_clear(&err);
	for (int i = 0; i < cli->cfg->njobs && code == 0; i++) {
		const struct lk_job *job = &cli->cfg->jobs[i];
		struct lk_rows runs;

		lk_rows_init(&runs, 15);
		if (lk_store_runs_of(store, job->name, LK_RUNS_OWN, 1, &runs, &err) < 0) {
			code = lk_cli_fail(&err);
		} else if (json) {
			json_t *j = json_pack("{s:s, s:s}", "name", job->name, "kind",
					      kind_names[job->kind]);
			int64_t next = next_fire(store, job->name);
			char nbuf[24];
			struct lk_value nv = {.p = nbuf, .null = next <= 0};

			(void)snprintf(nbuf, sizeof(nbuf), "%lld", (long long)next);
			if (job->kind == LK_JOB_SYNC)
				(void)json_object_set_new(j, "mode",
							  json_string(mode_names[job->mode]));
			(void)json_object_set_new(j, "nextRun", time_or_null(&nv));
			if (strcmp(lk_store_prefix(store), "lockstep.") == 0)
				lease_json(j, lease_of(&leases, job->name));

			(void)json_object_set_new(j, "lastRun",
						  runs.nrows ? run_json(LK_ROW(&runs, 0))
							     : json_null());
			if (job->mode == LK_MODE_REALTIME) {
				struct lk_cdc_lag lag = {0};
				struct lk_err e2 = LK_ERR_INIT;

				if (job_lag(cli, store, job, &lag, &e2) == 0)
					(void)json_object_set_new(j, "lag", lag_json(&lag));
				else
					(void)json_object_set_new(j, "lagError",
								  json_string(e2.msg));
				print_resnap(store, job, j);
			}
			print_blocked(store, job, j);
			print_verify(store, job, j);
			(void)json_array_append_new(jobs, j);
		} else {
			print_text_job(job, &runs, next_fire(store, job->name));
			print_text_lease(lease_of(&leases, job->name));
			if (job->mode == LK_MODE_REALTIME) {
				struct lk_cdc_lag lag = {0};
				struct lk_err e2 = LK_ERR_INIT;

				(void)job_lag(cli, store, job, &lag, &e2);
				print_text_lag(&lag, &e2);
				print_resnap(store, job, NULL);
			}
			print_blocked(store, job, NULL);
			print_verify(store, job, NULL);
		}
		lk_rows_release(&runs);
	}
	if (json && code == 0) {
		char *s;

		(void)json_object_set_new(root, "instances", instances);
		instances = NULL;
		(void)json_object_set_new(root, "jobs", jobs);
		jobs = NULL;
		s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
		(void)printf("%s\n", s ? s : "{}");
		free(s);
	}
	json_decref(jobs);
	json_decref(instances);
	json_decref(root);
	lk_rows_release(&leases);
	lk_store_close(store);
	return code;
}
