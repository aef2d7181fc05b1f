/*
 * replay.c - `lockstep errors replay ID`: a dead letter's key once more, through
 * its job's fenced path (DESIGN decision 5), from the key's current source row,
 * never from the stored row image (which may be older than the target's row).
 */
#include "sync_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "replay"
#include "core/log.h"
#include "store/deadletters.h"

struct replay {
	struct lk_job_ctx ctx;
	struct lk_store *store;
	int64_t id;
	char *key;	     /* the dead letter's key (JSON) */
	struct lk_rows keys; /* that key's values, in key order: one row */
	struct lk_arena arena;
};

/* Reads dead letter id: its job (which must still be a sync job) and key. */
static const struct lk_job *load(struct replay *r, const struct lk_config *cfg,
				 struct lk_replay_result *res, struct lk_err *err)
{
	struct lk_rows row;
	const struct lk_job *job = NULL;

	lk_rows_init(&row, LK_DLCOL_N);
	if (lk_store_dl_get(r->store, r->id, &row, err) < 0)
		goto out;
	if (row.nrows != 1) {
		lk_err_set(err, LK_ERR_NOTFOUND,
			   "no dead letter with id %lld (`lockstep errors list --all` lists them)",
			   (long long)r->id);
		goto out;
	}
	(void)snprintf(res->job, sizeof(res->job), "%s", LK_ROW(&row, 0)[LK_DLCOL_JOB].p);
	(void)snprintf(res->key, sizeof(res->key), "%s", LK_ROW(&row, 0)[LK_DLCOL_KEY].p);
	r->key = lk_xstrdup(LK_ROW(&row, 0)[LK_DLCOL_KEY].p);
	job = lk_config_job(cfg, res->job);
	if (!job || job->kind != LK_JOB_SYNC) {
		lk_err_set(err, LK_ERR_NOTFOUND,
			   "dead letter %lld belongs to job '%s', which the config no longer has "
			   "as a sync job (`lockstep errors resolve %lld` closes it)",
			   (long long)r->id, res->job, (long long)r->id);
		job = NULL;
	}
out:
	lk_rows_release(&row);
	return job;
}

/* The stored key, parsed with the job's key types, into r->keys. */
static int parse_key(struct replay *r, struct lk_err *err)
{
	struct lk_job_ctx *ctx = &r->ctx;
	struct lk_value *v = lk_arena_alloc(&r->arena, sizeof(*v) * (size_t)ctx->nkey);
	json_t *a = json_loads(r->key, 0, NULL);
	int rc = lk_pos_parse_values(a, v, ctx->types, ctx->key, ctx->nkey, &r->arena);

	json_decref(a);
	if (rc < 0)
		return lk_err_set(err, LK_ERR_CONFLICT,
				  "dead letter %lld: its key %s does not fit job '%s''s key "
				  "columns any more",
				  (long long)r->id, r->key, ctx->job->name);
	lk_rows_add(&r->keys);
	for (int i = 0; i < ctx->nkey; i++) {
		if (!v[i].null)
			lk_rows_set(&r->keys, 0, i, v[i].p, v[i].len);
	}
	return 0;
}

/* Real-time: a changelog entry marks the key dirty; its applier reads the current row. */
static int queue_key(struct replay *r, struct lk_err *err)
{
	struct lk_job_ctx *ctx = &r->ctx;
	const struct lk_cdc_ops *cdc = lk_cdc_for(ctx->src.ops);
	struct lk_cdc_table t = lk_job_cdc_table(ctx);
	bool pg = ctx->src.conf->kind == LK_DB_POSTGRES;
	char rel[24];
	const char *p[2] = {rel, r->key};
	int64_t relid;

	if (!cdc)
		return lk_err_set(err, LK_ERR_SCHEMA,
				  "mode realtime is not available on this source");
	/* Installed already (the job ran): this only looks the table's relid up. */
	if (cdc->install(ctx->src.conn, &t, &relid, err) < 0)
		return -1;
	(void)snprintf(rel, sizeof(rel), "%lld", (long long)relid);
	if (ctx->src.ops->exec(ctx->src.conn,
			       pg ? "INSERT INTO lockstep_cdc.changelog (relid, key, op)"
				    " VALUES ($1, $2::jsonb, 'U')"
				  : "INSERT INTO main.lockstep_cdc_changelog (relid, key, op)"
				    " VALUES ($1, $2, 'U')",
			       2, p, NULL, NULL, err) < 0)
		return lk_err_prefix(err, "queue the key in the changelog");
	/* The applier wakes on NOTIFY (else its 1 s fallback poll finds the entry). */
	if (pg)
		(void)ctx->src.ops->exec(ctx->src.conn,
					 "SELECT pg_notify('lockstep_cdc_' || $1, '')", 1, p, NULL,
					 NULL, NULL);
	return 0;
}

/* A delete of the key: a row as wide as the job's columns, the key at its places. */
static void key_row(struct replay *r, struct lk_rows *dels)
{
	const struct lk_value *k = LK_ROW(&r->keys, 0);

	lk_rows_add(dels);
	for (int i = 0; i < r->ctx.nkey; i++) {
		if (!k[i].null)
			lk_rows_set(dels, 0, r->ctx.key[i], k[i].p, k[i].len);
	}
}

/* The batch for the key's current state: its source row, or its delete, or nothing. */
static int current(struct replay *r, struct lk_rows *rows, struct lk_rows *dels, struct lk_batch *b,
		   struct lk_replay_result *res, struct lk_err *err)
{
	struct lk_job_ctx *ctx = &r->ctx;
	struct lk_scan_spec spec = lk_job_source_spec(ctx);

	if (ctx->src.ops->fetch(ctx->src.conn, &spec, &r->keys, rows, err) < 0)
		return -1;
	b->pos = ctx->pos ? ctx->pos : "{}"; /* the target's position, unchanged */
	if (rows->nrows > 0) {
		b->upserts = rows;
		res->action = LK_REPLAY_UPSERTED;
	} else if (ctx->job->target.deletes != LK_DELETES_IGNORE) {
		key_row(r, dels);
		b->deletes = dels;
		res->action = LK_REPLAY_DELETED;
	} else {
		res->action = LK_REPLAY_NOTHING;
	}
	return 0;
}

/* Resolves the key's open dead letters (and id itself). */
static int resolve(struct replay *r, struct lk_err *err)
{
	const char *k[1] = {r->key};
	bool was_open;

	if (lk_store_dl_resolve_keys(r->store, r->ctx.job->name, k, 1, NULL, err) < 0)
		return -1;
	return lk_store_dl_resolve(r->store, r->id, &was_open, err);
}

/* Snapshot and poll jobs: lock, seal, the current row in one fenced batch. */
static int apply_current(struct replay *r, struct lk_replay_result *res, struct lk_err *err)
{
	struct lk_job_ctx *ctx = &r->ctx;
	struct lk_job_lock *lock;
	struct lk_rows rows, dels;
	struct lk_batch b = {0};
	int rc = -1;

	lock = lk_job_lock_and_seal(ctx, r->store, false, err);
	if (!lock)
		return -1;
	lk_rows_init(&rows, ctx->ncols);
	lk_rows_init(&dels, ctx->ncols);
	if (current(r, &rows, &dels, &b, res, err) < 0)
		goto out;
	/* ctx->store stays NULL: a rejection fails this batch instead of dead-lettering it. */
	if (res->action != LK_REPLAY_NOTHING && lk_apply_batch(ctx, &b, err) < 0) {
		struct lk_err e2 = LK_ERR_INIT;

		if (lk_err_is_row_level(err) &&
		    lk_store_dl_failed_again(r->store, r->id, err->sqlstate, err->msg, &e2) < 0)
			lk_log_warn_err(&e2, "cannot record the failed replay of dead letter %lld",
					(long long)r->id);
		goto out;
	}
	rc = resolve(r, err);
out:
	lk_rows_release(&rows);
	lk_rows_release(&dels);
	lk_store_job_unlock(lock);
	return rc;
}

int lk_sync_replay(const struct lk_config *cfg, struct lk_store *store, int64_t id,
		   const struct lk_sync_opts *opts, struct lk_replay_result *res,
		   struct lk_err *err)
{
	struct replay r = {.store = store, .id = id};
	const struct lk_job *job;
	bool rt;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	lk_rows_init(&r.keys, 1);
	lk_arena_init(&r.arena, 1024);
	job = load(&r, cfg, res, err);
	if (!job)
		goto out;
	rt = job->mode == LK_MODE_REALTIME;
	if (lk_job_prepare(&r.ctx, cfg, job, opts, !rt, err) < 0)
		goto out;
	/* a column the target lacks waits for the job's next run (schema.c), not a replay */
	if (!rt && !r.ctx.target_missing && lk_job_check_target(&r.ctx, false, err) < 0)
		goto out;
	lk_rows_set_ncols(&r.keys, r.ctx.nkey);
	if (parse_key(&r, err) < 0)
		goto out;
	if (rt) {
		res->action = LK_REPLAY_QUEUED;
		rc = queue_key(&r, err);
	} else {
		rc = apply_current(&r, res, err);
	}
out:
	lk_job_release(&r.ctx);
	lk_rows_release(&r.keys);
	lk_arena_release(&r.arena);
	free(r.key);
	return rc;
}
