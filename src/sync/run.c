/*
 * run.c - one recorded run of a sync job: prepare, lock and seal, stream,
 * record. The run's progress reaches the state store at most once a second
 * and at every stage change.
 */
#include "store/fence.h"
#include "sync_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "sync"
#include "core/failpoint.h"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"
#include "store/store.h"

#include <jansson.h>

/* Usage counts reach the state store at most this often while a run goes, and at its end. */
#define LK_USAGE_FLUSH_MS 60000

struct run_state {
	struct lk_store *store;
	struct lk_run run;
	const struct lk_sync_opts *user;
	const char *last_stage;
	int64_t last_write_ms;
	/* Usage (SPEC /api/usage): what has been added to usage_daily so far. */
	struct lk_job_ctx *ctx; /* set once the run's connections may be open */
	int64_t usage_ms;	/* monotonic time of the last flush */
	int64_t u_src_q, u_dst_q, u_read, u_written;
	bool u_counted; /* the run itself has been counted */
};

/*
 * Adds what the run did since the last flush to today's usage: per database (statements,
 * and rows read from the source or written to the target) and for the job as a whole.
 * Runs on the run's thread (it tallies the connections that thread opened).
 */
static void usage_flush(struct run_state *st, bool recorded)
{
	struct lk_job_ctx *ctx = st->ctx;
	const struct lk_sync_progress *p = &ctx->prog;
	struct lk_err err = LK_ERR_INIT;
	struct lk_usage u[3];
	int64_t runs = recorded && !st->u_counted ? 1 : 0;
	int64_t dq, sq, read, written;
	int n = 0;

	lk_db_tally(&ctx->src);
	lk_db_tally(&ctx->dst);
	sq = ctx->src.queries - st->u_src_q;
	dq = ctx->dst.queries - st->u_dst_q;
	read = p->rows_read - st->u_read;
	written = p->rows_written + p->rows_deleted - st->u_written;
	if (runs == 0 && sq == 0 && dq == 0 && read == 0 && written == 0)
		return;
	u[n++] = (struct lk_usage){NULL, runs, written, sq + dq};
	if (ctx->src.conf)
		u[n++] = (struct lk_usage){ctx->src.conf->name, runs, read, sq};
	if (ctx->dst.conf && n == 2 && strcmp(ctx->dst.conf->name, u[1].db) == 0) {
		u[1].rows += written; /* one database in both roles: one entry, one run */
		u[1].queries += dq;
	} else if (ctx->dst.conf) {
		u[n++] = (struct lk_usage){ctx->dst.conf->name, runs, written, dq};
	}
	st->usage_ms = lk_mono_ms();
	if (lk_store_usage_add(st->store, st->run.job, u, n, &err) < 0) {
		lk_log_warn_err(&err, "cannot add to the usage counts of job %s", st->run.job);
		return; /* tried again at the next flush, with the counts still owed */
	}
	st->u_counted = st->u_counted || runs;
	st->u_src_q = ctx->src.queries;
	st->u_dst_q = ctx->dst.queries;
	st->u_read = p->rows_read;
	st->u_written = p->rows_written + p->rows_deleted;
}

static void record(struct run_state *st, const struct lk_sync_progress *p, bool force)
{
	struct lk_err err = LK_ERR_INIT;
	int64_t now = lk_mono_ms();

	st->run.rows_read = p->rows_read;
	st->run.rows_written = p->rows_written + p->rows_deleted;
	st->run.rows_failed = p->rows_failed;
	st->run.total_estimate = p->total_estimate;
	st->run.stage = p->stage;
	st->run.has_lag = p->has_lag;
	st->run.lag_s = p->lag_s;
	st->run.lag_rows = p->lag_rows;
	if (st->ctx) { /* the per-database statement counts of the metrics */
		lk_db_tally(&st->ctx->src);
		lk_db_tally(&st->ctx->dst);
	}
	st->run.progress = p->total_estimate > 0
				   ? 100.0 * (double)p->rows_read / (double)p->total_estimate
				   : -1;
	if (st->run.progress > 100)
		st->run.progress = 100;
	lk_store_run_observe(st->store, &st->run); /* live, even when not written */
	if (st->ctx && st->u_counted && lk_mono_ms() - st->usage_ms >= LK_USAGE_FLUSH_MS)
		usage_flush(st, true);
	if (!force && st->last_stage == p->stage && now - st->last_write_ms < 1000)
		return;
	st->last_stage = p->stage;
	st->last_write_ms = now;
	if (lk_store_run_update(st->store, &st->run, &err) < 0)
		lk_log_warn_err(&err, "cannot record the progress of run %s", st->run.id);
}

static void on_progress(void *arg, const struct lk_sync_progress *p)
{
	struct run_state *st = arg;

	record(st, p, false);
	if (st->user && st->user->progress)
		st->user->progress(st->user->progress_arg, p);
}

/* Forgets a position made for other tables/key/cursor/where, or for a table just created. */
static void check_fingerprint(struct lk_job_ctx *ctx)
{
	struct lk_position p;

	if (!ctx->pos)
		return;
	lk_position_decode(ctx->pos, &p);
	lk_position_release(&p);
	if (!p.blank && (ctx->target_created || strcmp(p.fp, ctx->fp) != 0)) {
		lk_log_warn("job %s: the stored position was made for a different source, target, "
			    "key, cursor or where (or the target was just created): starting from "
			    "the beginning",
			    ctx->job->name);
		free(ctx->pos);
		ctx->pos = NULL;
	}
}

struct lk_job_lock *lk_job_lock_and_seal(struct lk_job_ctx *ctx, struct lk_store *store,
					 bool check_fp, struct lk_err *err)
{
	struct lk_fence f;

	if (lk_fence_take(&f, store, &ctx->dst, ctx->job->name, err) < 0)
		return NULL;
	free(ctx->pos);
	ctx->pos = f.pos; /* the position read under the lock, now ctx's */
	f.pos = NULL;
	ctx->epoch = f.epoch;
	ctx->target_epoch = f.target_epoch;
	memcpy(ctx->ident, f.ident, sizeof(ctx->ident));
	memcpy(ctx->pos_key, f.key, sizeof(ctx->pos_key));
	if (check_fp)
		check_fingerprint(ctx);
	/* The seal: the new epoch reaches the target before any batch (DESIGN decision 5). */
	if (lk_fence_seal(&f, &ctx->dst, ctx->job->name, ctx->pos ? ctx->pos : "{}", err) < 0) {
		lk_fence_release(&f);
		return NULL;
	}
	lk_failpoint("after_seal");
	return f.lock;
}

static void finish(struct run_state *st, struct lk_job_ctx *ctx, int rc, const struct lk_err *err,
		   struct lk_sync_result *res)
{
	struct lk_err e2 = LK_ERR_INIT;

	ctx->prog.stage = "done";
	record(st, &ctx->prog, true);
	st->run.status = rc == 0				 ? "succeeded"
			 : (err->code != LK_ERR_CANCELLED)	 ? "failed"
			 : st->user && lk_flag(st->user->cancel) ? "cancelled"
								 : "interrupted";
	/* A stop on request is not an error (a real-time run ends only that way). */
	st->run.error = rc == 0 || err->code == LK_ERR_CANCELLED ? NULL : err->msg;
	st->run.finished_ms = lk_wall_ms();
	if (lk_store_run_update(st->store, &st->run, &e2) < 0)
		lk_log_warn_err(&e2, "cannot record the end of run %s", st->run.id);
	usage_flush(st, true);
	if (ctx->pos && rc == 0 &&
	    lk_store_position_copy(st->store, ctx->job->name, ctx->epoch, ctx->pos, &e2) < 0)
		lk_log_warn_err(&e2, "cannot copy the position of job %s", ctx->job->name);
	res->status = st->run.status;
	res->rows_read = ctx->prog.rows_read;
	res->rows_written = ctx->prog.rows_written;
	res->rows_deleted = ctx->prog.rows_deleted;
	res->rows_failed = ctx->prog.rows_failed;
	res->elapsed_ms = lk_mono_ms() - ctx->start_mono_ms;
}

/*
 * A job stopped on its schemas (LK_ERR_SCHEMA that a retry cannot fix) says so once, and is
 * shown by `status` (the store's "blocked:JOB"), /api/health and /metrics (guard.h) until a
 * run finds its schemas fit again. Returns true for the same block again: that run is not
 * recorded (a real-time job looks every few seconds).
 */
static bool note_schema(struct lk_store *store, const struct lk_job *job, const struct lk_err *err)
{
	struct lk_err e2 = LK_ERR_INIT;
	struct lk_buf key = LK_BUF_INIT;
	bool again = false;

	lk_buf_addf(&key, "blocked:%s", job->name);
	if (err && err->transient) { /* a blip: the block (if any) stands */
		lk_buf_release(&key);
		return false;
	}
	if (!err || err->code != LK_ERR_SCHEMA) { /* not (or no longer) that */
		if (lk_sync_unblock(job->name) && !err)
			lk_log_info("job %s: its source and target tables fit again; it resumes",
				    job->name);
		if (lk_store_meta_put(store, key.buf, NULL, &e2) < 0)
			lk_log_debug_err(&e2, "job %s: cannot clear its blocked state", job->name);
	} else {
		again = !lk_sync_block(job->name, err->msg);
	}
	if (err && err->code == LK_ERR_SCHEMA && !err->transient && !again) {
		json_t *v =
			json_pack("{s:I, s:s}", "at", (json_int_t)lk_wall_ms(), "why", err->msg);
		char *text = json_dumps(v, JSON_COMPACT);

		if (lk_store_meta_put(store, key.buf, text ? text : "{}", &e2) < 0)
			lk_log_debug_err(&e2, "job %s: cannot record its blocked state", job->name);
		free(text);
		json_decref(v);
	}
	lk_buf_release(&key);
	return again;
}

/* Before the first batch: a column added to the source makes the run read every row again
 * (a real-time job re-snapshots, realtime.c); the job's own record waits for that. */
static int follow_schema(struct lk_job_ctx *ctx, struct lk_store *store, struct lk_err *err)
{
	if (lk_job_schema(ctx, store, err) < 0) {
		ctx->schema_again = note_schema(store, ctx->job, err);
		return -1;
	}
	(void)note_schema(store, ctx->job, NULL);
	if (!ctx->schema_backfill || ctx->job->mode == LK_MODE_REALTIME)
		return 0;
	lk_log_warn("job %s: %s; reading every row again", ctx->job->name, ctx->schema_why);
	free(ctx->pos);
	ctx->pos = NULL;
	return 0;
}

int lk_sync_run(const struct lk_config *cfg, const struct lk_job *job, struct lk_store *store,
		const struct lk_sync_opts *opts, struct lk_sync_result *res, struct lk_err *err)
{
	struct run_state st;
	struct lk_sync_opts inner = {0};
	struct lk_job_ctx ctx;
	struct lk_job_lock *lock = NULL;
	int rc = -1;

	memset(&st, 0, sizeof(st));
	memset(res, 0, sizeof(*res));
	res->status = "failed";
	if (job->kind != LK_JOB_SYNC) /* refused before anything is recorded */
		return lk_job_prepare(&ctx, cfg, job, opts, true, err);
	st.store = store;
	st.user = opts;
	inner.full = opts && opts->full;
	inner.stop = opts ? opts->stop : NULL;
	inner.follow = opts && opts->follow;
	inner.retry = opts ? opts->retry : NULL;
	inner.progress = on_progress;
	inner.progress_arg = &st;
	if (opts && opts->run_id)
		(void)snprintf(st.run.id, sizeof(st.run.id), "%s", opts->run_id);
	else
		lk_uuid7(st.run.id);
	memcpy(res->run_id, st.run.id, sizeof(res->run_id));
	inner.run_id = st.run.id; /* the run's threads tag their log lines with it */
	lk_log_context(job->name, st.run.id);
	st.run.job = job->name;
	st.run.type = inner.full ? "full" : "incremental";
	st.run.status = "running";
	st.run.stage = "connect";
	st.run.progress = -1;
	st.run.total_estimate = -1;
	st.run.started_ms = lk_wall_ms();
	st.ctx = &ctx;
	if (lk_job_prepare(&ctx, cfg, job, &inner, true, err) < 0) {
		ctx.schema_again = note_schema(store, job, err);
		goto out_unrecorded;
	}
	lock = lk_job_lock_and_seal(&ctx, store, true, err);
	if (!lock)
		goto out_unrecorded;
	if (lk_dl_setup(&ctx, store, err) < 0 || follow_schema(&ctx, store, err) < 0)
		goto out_unrecorded;
	(void)lk_store_runs_interrupt_stale(store, job->name, st.run.id,
					    err); /* their holder is gone */
	st.run.epoch = ctx.epoch;
	if (lk_store_run_insert(store, &st.run, err) < 0)
		goto out;
	usage_flush(&st, true); /* counts the run now: a real-time run may last for weeks */
	lk_log_info("run %s of job %s started (epoch %lld)", st.run.id, job->name,
		    (long long)ctx.epoch);
	switch (job->mode) {
	case LK_MODE_POLL:
		rc = lk_poll_run(&ctx, err);
		break;
	case LK_MODE_REALTIME:
		rc = lk_job_adopt_consumer(&ctx, err) < 0 ? -1 : lk_realtime_run(&ctx, err);
		break;
	default:
		rc = lk_snapshot_run(&ctx, err);
		break;
	}
	if (rc == 0)
		lk_job_schema_done(&ctx);
	finish(&st, &ctx, rc, err, res);
	goto out;
out_unrecorded:
	if (err->code != LK_ERR_BUSY && !ctx.schema_again) {
		struct lk_err e2 = LK_ERR_INIT;

		/* A run that failed before it started is still a run the user should see. */
		st.run.status = "failed";
		st.run.error = err->msg;
		st.run.finished_ms = lk_wall_ms();
		if (lk_store_run_insert(store, &st.run, &e2) < 0)
			lk_log_warn_err(&e2, "cannot record run %s", st.run.id);
		else
			usage_flush(&st, true);
	}
out:
	lk_store_job_unlock(lock);
	lk_dl_release(&ctx);
	lk_job_release(&ctx);
	return rc; /* the log context stays: the caller's report of the run carries it too */
}
