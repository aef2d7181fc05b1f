/* jobs.c - recorded runs of `sql` and `exec` jobs, and skipped fires. */
#include "jobs.h"

#include "connector/connector.h"
#include "cron.h"
#include "exec.h"
#include "sqlscan.h"
#include "store/fence.h"
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "sched"
#include "core/buf.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"

static void run_begin(struct lk_jobrun *jr, struct lk_run *run, const char *stage)
{
	memset(run, 0, sizeof(*run));
	if (jr->want_id)
		(void)snprintf(run->id, sizeof(run->id), "%s", jr->want_id);
	else
		lk_uuid7(run->id);
	memcpy(jr->run_id, run->id, sizeof(jr->run_id));
	lk_log_context(jr->job->name, run->id);
	run->job = jr->job->name;
	run->type = "full";
	run->status = "running";
	run->stage = stage;
	run->progress = -1;
	run->total_estimate = -1;
	run->started_ms = lk_wall_ms();
}

/* Writes the run's end; `inserted` says whether its row exists yet. */
static void run_end(struct lk_jobrun *jr, struct lk_run *run, bool inserted, int rc,
		    const struct lk_err *err)
{
	struct lk_err e2 = LK_ERR_INIT;

	run->status = rc == 0			      ? "succeeded"
		      : err->code != LK_ERR_CANCELLED ? "failed"
		      : lk_flag(jr->cancel)	      ? "cancelled"
						      : "interrupted";
	run->error = rc == 0 || err->code == LK_ERR_CANCELLED ? NULL : err->msg;
	run->finished_ms = lk_wall_ms();
	run->stage = "done";
	jr->status = run->status;
	if (rc == 0 && run->progress >= 0)
		run->progress = 100;
	if ((inserted ? lk_store_run_update(jr->store, run, &e2)
		      : lk_store_run_insert(jr->store, run, &e2)) < 0)
		lk_log_warn_err(&e2, "cannot record run %s of job %s", run->id, jr->job->name);
	if (rc == 0)
		lk_log_info("run %s of job %s succeeded", run->id, jr->job->name);
	else if (err->code == LK_ERR_CANCELLED)
		lk_log_info("run %s of job %s interrupted", run->id, jr->job->name);
	else
		lk_log_debug("run %s of job %s failed: %s", run->id, jr->job->name, err->msg);
	/* the daemon reports failures, with repeats held back (daemon_jobs.c) */
}

/* Adds a finished run to today's usage: the job's, and its database's when it has one. */
static void usage_add(struct lk_jobrun *jr, const struct lk_db *db, int64_t rows)
{
	struct lk_usage u[2] = {{NULL, 1, rows, db ? db->queries : 0}, {NULL, 0, 0, 0}};
	struct lk_err err = LK_ERR_INIT;

	if (db && db->conf)
		u[1] = (struct lk_usage){db->conf->name, 1, rows, db->queries};
	if (lk_store_usage_add(jr->store, jr->job->name, u, db && db->conf ? 2 : 1, &err) < 0)
		lk_log_warn_err(&err, "cannot add to the usage counts of job %s", jr->job->name);
}

/* The fence (store/fence.h): the job's lock with a newer epoch, sealed in the database. */
static struct lk_job_lock *lock_and_seal(struct lk_jobrun *jr, struct lk_db *db, int64_t *epoch,
					 char key[LK_IDENT_MAX], struct lk_err *err)
{
	struct lk_fence f;
	struct lk_job_lock *lock;

	if (lk_fence_take(&f, jr->store, db, jr->job->name, err) < 0)
		return NULL;
	if (lk_fence_seal(&f, db, jr->job->name, "{\"kind\":\"sql\"}", err) < 0) {
		lk_fence_release(&f);
		return NULL;
	}
	*epoch = f.epoch;
	memcpy(key, f.key, LK_IDENT_MAX); /* the job's position row in db (fence.h) */
	lock = f.lock;
	f.lock = NULL; /* the caller's now */
	lk_fence_release(&f);
	return lock;
}

/* The script in one transaction, the fenced position update first. */
static int run_script(struct lk_jobrun *jr, struct lk_db *db, int64_t epoch, const char *key,
		      struct lk_err *err)
{
	const struct lk_connector_ops *ops = db->ops;
	char pos[96];
	int64_t changed = 0;

	(void)snprintf(pos, sizeof(pos), "{\"kind\":\"sql\",\"run\":\"%s\"}", jr->run_id);
	if (ops->begin(db->conn, err) < 0)
		return -1;
	if (ops->position_put(db->conn, key, epoch, pos, err) < 0)
		goto fail;
	if (jr->job->timeout_ms > 0 && ops->set_timeout(db->conn, jr->job->timeout_ms, err) < 0)
		goto fail;
	if (ops->exec(db->conn, jr->job->sql, 0, NULL, NULL, &changed, err) < 0)
		goto fail;
	if (jr->job->timeout_ms > 0 && ops->set_timeout(db->conn, 0, err) < 0)
		goto fail;
	if (ops->commit(db->conn, err) < 0)
		goto fail;
	jr->rows = changed;
	return 0;
fail:
	ops->rollback(db->conn);
	if (jr->job->timeout_ms > 0 && db->conf->kind == LK_DB_SQLITE) {
		struct lk_err e2 = LK_ERR_INIT;

		(void)ops->set_timeout(db->conn, 0, &e2); /* PostgreSQL's ended with the rollback */
	}
	if (strcmp(err->sqlstate, "57014") == 0)
		(void)lk_err_set(err, LK_ERR_PG, "cancelled by its timeout of %lld ms",
				 (long long)jr->job->timeout_ms);
	return -1;
}

int lk_sqljob_run(struct lk_jobrun *jr, struct lk_err *err)
{
	const struct lk_dbconf *conf = &jr->cfg->dbs[jr->job->db];
	const struct lk_retry_conf *retry = jr->retry ? jr->retry : &jr->job->retry;
	struct lk_job_lock *lock = NULL;
	struct lk_db db = {0};
	struct lk_run run;
	char key[LK_IDENT_MAX];
	int64_t epoch = 0;
	bool inserted = false;
	int rc = -1;

	run_begin(jr, &run, "sql");
	if (lk_db_open(&db, conf, retry, jr->stop, err) < 0)
		goto out;
	lk_db_tag(&db, jr->job->name);
	lock = lock_and_seal(jr, &db, &epoch, key, err);
	if (!lock)
		goto out;
	run.epoch = epoch;
	if (lk_store_run_insert(jr->store, &run, err) < 0)
		goto out;
	inserted = true;
	rc = run_script(jr, &db, epoch, key, err);
	run.rows_written = jr->rows;
out:
	if (rc < 0 && err->code == LK_ERR_BUSY) {
		jr->status = "failed";
		lk_log_info("job %s: %s", jr->job->name, err->msg);
		lk_store_job_unlock(lock);
		lk_db_close(&db);
		return rc;
	}
	run_end(jr, &run, inserted, rc, err);
	lk_store_job_unlock(lock);
	lk_db_close(&db); /* tallies its statements */
	usage_add(jr, &db, rc == 0 ? jr->rows : 0);
	return rc;
}

struct exec_state {
	struct lk_jobrun *jr;
	struct lk_run *run;
	char stage[64];
	int64_t last_write_ms;
};

static void on_exec_progress(void *arg, const struct lk_exec_progress *p)
{
	struct exec_state *st = arg;
	struct lk_err err = LK_ERR_INIT;
	bool new_stage = p->stage[0] && strcmp(p->stage, st->stage) != 0;
	int64_t now = lk_mono_ms();

	if (p->progress >= 0)
		st->run->progress = p->progress;
	if (p->stage[0])
		memcpy(st->stage, p->stage, sizeof(st->stage));
	if (p->processed >= 0)
		st->run->rows_read = st->run->rows_written = st->jr->rows = p->processed;
	if (p->total >= 0)
		st->run->total_estimate = p->total;
	st->run->stage = st->stage[0] ? st->stage : "exec";
	lk_store_run_observe(st->jr->store, st->run); /* live, even when not written */
	if (!new_stage && now - st->last_write_ms < 1000)
		return;
	st->last_write_ms = now;
	if (lk_store_run_update(st->jr->store, st->run, &err) < 0)
		lk_log_warn_err(&err, "cannot record the progress of run %s", st->run->id);
}

static void on_exec_stderr(void *arg, const char *line)
{
	const struct exec_state *st = arg;

	lk_log_info("job %s: stderr: %s", st->jr->job->name, line);
}

static void on_exec_stdout(void *arg, const char *line)
{
	const struct exec_state *st = arg;

	lk_log_info("job %s: stdout: %s", st->jr->job->name, line);
}

int lk_execjob_run(struct lk_jobrun *jr, struct lk_err *err)
{
	const struct lk_job *job = jr->job;
	struct exec_state st = {jr, NULL, "", 0};
	struct lk_exec_result res;
	struct lk_exec_opts o;
	struct lk_job_lock *lock;
	struct lk_run run;
	char **argv = lk_xcalloc((size_t)job->ncommand + 1, sizeof(*argv));
	char token[24];
	int64_t epoch = 0;
	int rc = -1;

	run_begin(jr, &run, "exec");
	st.run = &run;
	for (int i = 0; i < job->ncommand; i++)
		argv[i] = job->command[i];
	lock = lk_store_job_lock(jr->store, job->name, 0, &epoch, err);
	if (!lock) {
		jr->status = "failed";
		free(argv);
		return -1;
	}
	(void)snprintf(token, sizeof(token), "%lld", (long long)epoch);
	run.epoch = epoch;
	memset(&o, 0, sizeof(o));
	o.argv = argv;
	o.cwd = jr->cfg->dir;
	o.run_id = run.id;
	o.fencing_token = token;
	o.env_extra = job->env;
	o.timeout_ms = job->timeout_ms;
	o.memory_max = job->memory_max;
	o.stop = jr->stop;
	o.deadline_boot_ms = jr->deadline_boot_ms;
	o.on_progress = on_exec_progress;
	o.on_stderr = on_exec_stderr;
	o.on_stdout_text = on_exec_stdout;
	o.arg = &st;
	if (lk_store_run_insert(jr->store, &run, err) == 0)
		rc = lk_exec_run(&o, &res, err);
	run_end(jr, &run, true, rc, err);
	usage_add(jr, NULL, jr->rows);
	lk_store_job_unlock(lock);
	free(argv);
	return rc;
}

int lk_sched_record_skip(struct lk_store *store, const char *job, int64_t fire_ms,
			 struct lk_err *err)
{
	struct lk_run run;
	char why[96];

	memset(&run, 0, sizeof(run));
	lk_uuid7(run.id);
	run.job = job;
	run.type = "full";
	run.status = "skipped";
	run.stage = "skipped";
	run.progress = -1;
	run.total_estimate = -1;
	run.started_ms = fire_ms;
	run.finished_ms = fire_ms > 0 ? fire_ms : lk_wall_ms();
	(void)snprintf(why, sizeof(why), "the previous run was still going");
	run.error = why;
	return lk_store_run_insert(store, &run, err);
}

int lk_sched_check_config(const struct lk_config *cfg, struct lk_err *err)
{
	for (int i = 0; i < cfg->njobs; i++) {
		const struct lk_job *j = &cfg->jobs[i];
		struct lk_err e = LK_ERR_INIT;
		struct lk_cron cron;
		struct lk_tz *tz = NULL;
		char word[16];

		if (j->schedule && lk_cron_parse(j->schedule, &cron, &e) < 0)
			return lk_err_set(err, LK_ERR_CONFIG, "%s:%d:%d: job '%s': schedule: %s",
					  cfg->path, j->schedule_line, j->schedule_col, j->name,
					  e.msg);
		if (j->verify.schedule && lk_cron_parse(j->verify.schedule, &cron, &e) < 0)
			return lk_err_set(err, LK_ERR_CONFIG,
					  "%s:%d:%d: job '%s': verify.schedule: %s", cfg->path,
					  j->verify.line, j->verify.col, j->name, e.msg);
		if (j->timezone && !(tz = lk_tz_load(j->timezone, &e)))
			return lk_err_set(err, LK_ERR_CONFIG, "%s:%d:%d: job '%s': timezone: %s",
					  cfg->path, j->line, j->col, j->name, e.msg);
		lk_tz_free(tz);
		if (j->kind == LK_JOB_SQL && lk_sql_txn_control(j->sql, word, sizeof(word)))
			return lk_err_set(
				err, LK_ERR_CONFIG,
				"%s:%d:%d: job '%s': sql: a statement starts with %s; lockstep "
				"runs "
				"the script in its own transaction, fenced against a stale run, "
				"and "
				"a script that ends or starts a transaction would run its next "
				"statements outside that fence (hint: remove the transaction "
				"control; SAVEPOINT and ROLLBACK TO are fine)",
				cfg->path, j->line, j->col, j->name, word);
	}
	return 0;
}
