/*
 * prepare.c - before any row moves: open both databases, describe both tables,
 * resolve the synced columns and key, and refuse with one clear error anything
 * that would otherwise become a stream of failed queries.
 */
#include "sync_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "sync"
#include "connector/pg_types.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"

#include <xxhash.h>

static int schema_err(struct lk_err *err, const char *side, const struct lk_dbconf *db,
		      const struct lk_tref *t, const char *what)
{
	char name[256];

	lk_tref_format(t, name, sizeof(name));
	return lk_err_set(err, LK_ERR_SCHEMA, "%s table %s in database '%s' %s", side, name,
			  db->name, what);
}

/*
 * `deletes: soft:COL` can never work when COL is a key column, or a synced column of a type
 * that cannot hold the time of a delete: true with why in `what`.
 */
static bool soft_unfit(const struct lk_job_ctx *ctx, char *what, size_t size)
{
	const char *soft = ctx->job->target.soft_column;

	for (int i = 0; soft && i < ctx->ncols; i++) {
		bool key = false;

		if (strcmp(ctx->cols[i], soft) != 0)
			continue;
		for (int k = 0; k < ctx->nkey; k++)
			key = key || ctx->key[k] == i;
		if (key || !lk_type_is_time(ctx->types[i])) {
			(void)snprintf(
				what, size,
				"has %s column '%s' of type %s, which deletes: soft:%s would "
				"overwrite with the time of each delete: name a column the "
				"source does not sync, or leave it out of source.columns",
				key ? "key" : "a synced", soft, lk_type_name(ctx->types[i]), soft);
			return true;
		}
	}
	return false;
}

/* Fills ctx->cols/types/key/cursor from the config and the source description. */
static int resolve_columns(struct lk_job_ctx *ctx, struct lk_err *err)
{
	const struct lk_job *job = ctx->job;
	const struct lk_dbconf *sdb = &ctx->cfg->dbs[job->source.db];
	int n = job->source.ncolumns ? job->source.ncolumns : ctx->sdesc.ncols;
	char what[300];

	ctx->cols = lk_xcalloc((size_t)n, sizeof(char *));
	ctx->types = lk_xcalloc((size_t)n, sizeof(enum lk_type));
	ctx->ncols = n;
	for (int i = 0; i < n; i++) {
		const char *name =
			job->source.ncolumns ? job->source.columns[i] : ctx->sdesc.cols[i].name;
		int c = lk_table_col(&ctx->sdesc, name);

		if (c < 0) {
			(void)snprintf(what, sizeof(what), "has no column '%s'", name);
			return schema_err(err, "source", sdb, &job->source.table, what);
		}
		ctx->cols[i] = ctx->sdesc.cols[c].name;
		ctx->types[i] = ctx->sdesc.cols[c].type;
	}
	ctx->nkey = job->source.nkey ? job->source.nkey : ctx->sdesc.npk;
	if (ctx->nkey == 0)
		return schema_err(err, "source", sdb, &job->source.table,
				  "has no primary key: name the key columns with source.key");
	ctx->key = lk_xcalloc((size_t)ctx->nkey, sizeof(int));
	for (int k = 0; k < ctx->nkey; k++) {
		const char *name = job->source.nkey ? job->source.key[k]
						    : ctx->sdesc.cols[ctx->sdesc.pk[k]].name;

		ctx->key[k] = -1;
		for (int i = 0; i < n; i++) {
			if (strcmp(ctx->cols[i], name) == 0)
				ctx->key[k] = i;
		}
		if (ctx->key[k] < 0) {
			(void)snprintf(
				what, sizeof(what),
				"has key column '%s', which is missing from source.columns or "
				"from the table",
				name);
			return schema_err(err, "source", sdb, &job->source.table, what);
		}
	}
	if (job->target.deletes == LK_DELETES_SOFT && soft_unfit(ctx, what, sizeof(what)))
		return schema_err(err, "source", sdb, &job->source.table, what);
	ctx->cursor = -1;
	if (job->mode == LK_MODE_POLL) {
		for (int i = 0; i < n; i++) {
			if (strcmp(ctx->cols[i], job->cursor) == 0)
				ctx->cursor = i;
		}
		if (ctx->cursor < 0) {
			(void)snprintf(what, sizeof(what),
				       "has no cursor column '%s' among the synced columns",
				       job->cursor);
			return schema_err(err, "source", sdb, &job->source.table, what);
		}
	}
	return 0;
}

/* A real-time job whose source refuses change capture should not leave a new target. */
int lk_job_check_capture(struct lk_job_ctx *ctx, struct lk_err *err)
{
	const struct lk_cdc_ops *cdc = lk_cdc_for(ctx->src.ops);
	struct lk_cdc_table t = lk_job_cdc_table(ctx);

	return cdc ? cdc->check(ctx->src.conn, &t, err) : 0;
}

/* PostgreSQL -> PostgreSQL: both ends speak PostgreSQL's types (pg_types.h). */
static bool pg_to_pg(const struct lk_job_ctx *ctx)
{
	return ctx->src.ops == ctx->dst.ops && strcmp(ctx->src.ops->name, "postgres") == 0;
}

/*
 * The columns of a target made from the source (docs/types.md): the synced columns with the
 * source's types (PostgreSQL -> PostgreSQL: as pg_types.h makes them; the same engine: the
 * declared type; across engines: the mapped meaning), then the soft-delete column of
 * `deletes: soft:COL` when the source does not sync one of that name. *n gets the count;
 * natives (ncols + 1 entries) owns the type texts.
 */
static struct lk_column *target_columns(struct lk_job_ctx *ctx, char **natives, int *n,
					struct lk_err *err)
{
	const char *soft =
		ctx->job->target.deletes == LK_DELETES_SOFT ? ctx->job->target.soft_column : NULL;
	struct lk_column *cols = lk_xcalloc((size_t)ctx->ncols + 1, sizeof(*cols));
	bool same = ctx->src.ops == ctx->dst.ops;

	*n = ctx->ncols;
	for (int i = 0; i < ctx->ncols; i++) {
		cols[i] = ctx->sdesc.cols[lk_table_col(&ctx->sdesc, ctx->cols[i])];
		cols[i].native = same ? cols[i].native : NULL;
		cols[i].generated = 0; /* a plain column holding the source's values */
		cols[i].identity = 0;
		if (soft && strcmp(cols[i].name, soft) == 0)
			soft = NULL;
	}
	if (pg_to_pg(ctx) &&
	    lk_pg_target_types(ctx->src.conn, ctx->dst.conn, &ctx->job->source.table, cols,
			       ctx->ncols, ctx->cfg->dbs[ctx->job->target.db].name, natives,
			       err) < 0) {
		free(cols);
		return NULL;
	}
	for (int i = 0; natives[0] && i < ctx->ncols; i++)
		cols[i].native = natives[i];
	if (soft)
		cols[(*n)++] = (struct lk_column){.name = (char *)soft, .type = LK_T_TIMESTAMPTZ};
	return cols;
}

static int create_target(struct lk_job_ctx *ctx, struct lk_err *err)
{
	char **natives;
	struct lk_column *cols;
	int rc = -1, n = 0;

	if (ctx->job->mode == LK_MODE_REALTIME && lk_job_check_capture(ctx, err) < 0)
		return -1;
	natives = lk_xcalloc((size_t)ctx->ncols + 1, sizeof(char *));
	cols = target_columns(ctx, natives, &n, err);
	if (cols)
		rc = ctx->dst.ops->create_table(ctx->dst.conn, &ctx->job->target.table, cols, n,
						ctx->key, ctx->nkey, err);
	for (int i = 0; i < ctx->ncols; i++)
		free(natives[i]);
	free(natives);
	free(cols);
	if (rc == 0) {
		char name[256];

		lk_tref_format(&ctx->job->target.table, name, sizeof(name));
		lk_log_info("created target table %s in database '%s'", name,
			    ctx->cfg->dbs[ctx->job->target.db].name);
		ctx->target_created = true;
	}
	return rc;
}

static bool is_key(const struct lk_job_ctx *ctx, int i)
{
	for (int k = 0; k < ctx->nkey; k++)
		if (ctx->key[k] == i)
			return true;
	return false;
}

int lk_job_check_target(struct lk_job_ctx *ctx, bool defer, struct lk_err *err)
{
	const struct lk_dbconf *tdb = &ctx->cfg->dbs[ctx->job->target.db];
	const struct lk_tref *tt = &ctx->job->target.table;
	const char **keys = lk_xcalloc((size_t)ctx->nkey, sizeof(char *));
	char what[300];
	const char *soft =
		ctx->job->target.deletes == LK_DELETES_SOFT ? ctx->job->target.soft_column : NULL;
	bool unique = false, missing = false;
	int rc = 0, t;

	for (int i = 0; i < ctx->ncols && rc == 0; i++) {
		int c = lk_table_col(&ctx->tdesc, ctx->cols[i]);

		if (c >= 0 && ctx->tdesc.cols[c].identity == 'a' && !is_key(ctx, i)) {
			(void)snprintf(
				what, sizeof(what),
				"has column '%s' GENERATED ALWAYS AS IDENTITY, which takes no "
				"value but its own on UPDATE: make it GENERATED BY DEFAULT "
				"(ALTER TABLE ... ALTER COLUMN ... SET GENERATED BY DEFAULT)",
				ctx->cols[i]);
			rc = schema_err(err, "target", tdb, tt, what);
			continue;
		}
		if (c < 0) {
			if (defer) {
				missing = true;
				continue;
			}
			(void)snprintf(what, sizeof(what),
				       "has no column '%s' (synced from the source)", ctx->cols[i]);
			rc = schema_err(err, "target", tdb, tt, what);
		}
	}
	if (rc == 0 && soft && (t = lk_table_col(&ctx->tdesc, soft)) < 0) {
		(void)snprintf(what, sizeof(what), "has no column '%s' for deletes: soft", soft);
		rc = schema_err(err, "target", tdb, tt, what);
	} else if (rc == 0 && soft && !lk_type_is_time(ctx->tdesc.cols[t].type)) {
		(void)snprintf(what, sizeof(what),
			       "has column '%s' of type %s for deletes: soft, which holds the time "
			       "of each delete: make it a timestamptz (or timestamp, date) column",
			       soft, ctx->tdesc.cols[t].native);
		rc = schema_err(err, "target", tdb, tt, what);
	}
	for (int k = 0; k < ctx->nkey; k++)
		keys[k] = ctx->cols[ctx->key[k]];
	if (missing) { /* a renamed key column is checked once lk_job_schema followed it */
		free(keys);
		return rc;
	}
	if (rc == 0)
		rc = ctx->dst.ops->has_unique(ctx->dst.conn, tt, keys, ctx->nkey, &unique, err);
	if (rc == 0 && !unique) {
		struct lk_buf b = LK_BUF_INIT;

		for (int k = 0; k < ctx->nkey; k++)
			lk_buf_addf(&b, "%s%s", k ? ", " : "", keys[k]);
		(void)snprintf(what, sizeof(what),
			       "has no primary key or unique index on the key (%s): add one so "
			       "upserts can match rows",
			       b.buf);
		lk_buf_release(&b);
		rc = schema_err(err, "target", tdb, tt, what);
	}
	free(keys);
	return rc;
}

/*
 * A target column the target computes itself (GENERATED ... STORED, or SQLite's generated
 * columns) is never written: it leaves the synced columns, and is neither read from the
 * source nor compared. A key or cursor column cannot be left out: LK_ERR_SCHEMA.
 */
static int skip_generated(struct lk_job_ctx *ctx, struct lk_err *err)
{
	int *to = lk_xcalloc((size_t)ctx->ncols, sizeof(int)), kept = 0, rc = 0;
	char what[300];

	for (int i = 0; i < ctx->ncols; i++) {
		int t = lk_table_col(&ctx->tdesc, ctx->cols[i]);

		to[i] = -1;
		if (t >= 0 && ctx->tdesc.cols[t].generated) {
			lk_log_debug("job %s: target column %s is generated there: not written",
				     ctx->job->name, ctx->cols[i]);
			continue;
		}
		to[i] = kept;
		ctx->cols[kept] = ctx->cols[i];
		ctx->types[kept++] = ctx->types[i];
	}
	for (int k = 0; k < ctx->nkey && rc == 0; k++) {
		if (to[ctx->key[k]] < 0) {
			(void)snprintf(
				what, sizeof(what),
				"has a generated column '%s', which is part of the job's key: "
				"make it a plain column",
				ctx->key_cols[k]);
			rc = schema_err(err, "target", &ctx->cfg->dbs[ctx->job->target.db],
					&ctx->job->target.table, what);
		}
		ctx->key[k] = to[ctx->key[k]];
	}
	if (rc == 0 && ctx->cursor >= 0 && (ctx->cursor = to[ctx->cursor]) < 0) {
		(void)snprintf(what, sizeof(what),
			       "has a generated column '%s', the job's cursor: make it a plain "
			       "column",
			       ctx->job->cursor);
		rc = schema_err(err, "target", &ctx->cfg->dbs[ctx->job->target.db],
				&ctx->job->target.table, what);
	}
	ctx->ncols = kept;
	free(to);
	return rc;
}

/* PostgreSQL -> PostgreSQL: enum labels the source gained reach the target's enum first. */
static int sync_labels(struct lk_job_ctx *ctx, struct lk_err *err)
{
	struct lk_column *sc = lk_xcalloc((size_t)ctx->ncols, sizeof(*sc));
	struct lk_column *tc = lk_xcalloc((size_t)ctx->ncols, sizeof(*tc));
	int n = 0, rc;

	for (int i = 0; i < ctx->ncols; i++) {
		int a = lk_table_col(&ctx->sdesc, ctx->cols[i]),
		    b = lk_table_col(&ctx->tdesc, ctx->cols[i]);

		if (a < 0 || b < 0)
			continue;
		sc[n] = ctx->sdesc.cols[a];
		tc[n++] = ctx->tdesc.cols[b];
	}
	rc = lk_pg_sync_enum_labels(ctx->src.conn, ctx->dst.conn, sc, tc, n,
				    ctx->cfg->dbs[ctx->job->target.db].name, err);
	free(sc);
	free(tc);
	return rc;
}

static int open_both(struct lk_job_ctx *ctx, struct lk_err *err)
{
	const struct lk_job *job = ctx->job;
	volatile const bool *stop = ctx->opts ? ctx->opts->stop : NULL;
	const struct lk_retry_conf *retry =
		ctx->opts && ctx->opts->retry ? ctx->opts->retry : &job->retry;

	if (lk_db_open(&ctx->src, &ctx->cfg->dbs[job->source.db], retry, stop, err) < 0)
		return -1;
	return lk_db_open(&ctx->dst, &ctx->cfg->dbs[job->target.db], retry, stop, err);
}

/*
 * A position is only meaningful for the tables, key, cursor, filter and mode it was made
 * with: its fingerprint is stored in it, and a run whose configuration differs starts over
 * instead of resuming at a cursor that belongs to another table.
 */
static void fingerprint(struct lk_job_ctx *ctx)
{
	const struct lk_job *job = ctx->job;
	struct lk_buf b = LK_BUF_INIT;

	lk_buf_addf(&b, "v1|%d|", (int)job->mode);
	lk_quote_tref_for(&b, &job->source.table, ctx->cfg->dbs[job->source.db].kind);
	lk_buf_addch(&b, '|');
	lk_quote_tref_for(&b, &job->target.table, ctx->cfg->dbs[job->target.db].kind);
	for (int k = 0; k < ctx->nkey; k++) {
		lk_buf_addch(&b, '|');
		lk_quote_ident(&b, ctx->cols[ctx->key[k]]);
	}
	lk_buf_addf(&b, "|%s|%s", job->cursor ? job->cursor : "",
		    job->source.where ? job->source.where : "");
	(void)snprintf(ctx->fp, sizeof(ctx->fp), "%016llx",
		       (unsigned long long)XXH64(b.buf, b.len, 0));
	lk_buf_release(&b);
}

int lk_job_prepare(struct lk_job_ctx *ctx, const struct lk_config *cfg, const struct lk_job *job,
		   const struct lk_sync_opts *opts, bool for_write, struct lk_err *err)
{
	const struct lk_dbconf *sdb;
	int rc;

	memset(ctx, 0, sizeof(*ctx));
	if (job->kind != LK_JOB_SYNC)
		return lk_err_set(
			err, LK_ERR_USAGE,
			"job '%s' is an %s job, not a sync job: `lockstep run` runs it on "
			"its schedule",
			job->name, job->kind == LK_JOB_SQL ? "sql" : "exec");
	sdb = &cfg->dbs[job->source.db];
	ctx->cfg = cfg;
	ctx->job = job;
	ctx->opts = opts;
	ctx->cursor = -1;
	ctx->start_mono_ms = lk_mono_ms();
	ctx->prog.job = job->name;
	ctx->prog.total_estimate = -1;
	(void)snprintf(ctx->ident, sizeof(ctx->ident), "%s", job->name);
	(void)snprintf(ctx->pos_key, sizeof(ctx->pos_key), "%s", job->name);
	if (open_both(ctx, err) < 0)
		return -1;
	/* before the describe: a change between the two is seen by the first check */
	if (for_write && lk_schema_sig(ctx, ctx->src_sig, sizeof(ctx->src_sig), err) < 0)
		return -1;
	/* for_write: the fence tags the target's session (lk_fence_take), so that a later
	 * holder can end this session's open batch (lk_db_fence_others) */
	if (ctx->src.ops->describe(ctx->src.conn, &job->source.table, &ctx->sdesc, err) < 0) {
		if (err->code == LK_ERR_NOTFOUND)
			return schema_err(err, "source", sdb, &job->source.table, "does not exist");
		return -1;
	}
	if (resolve_columns(ctx, err) < 0)
		return -1;
	ctx->key_cols = lk_xcalloc((size_t)ctx->nkey, sizeof(char *));
	ctx->key_types = lk_xcalloc((size_t)ctx->nkey, sizeof(enum lk_type));
	for (int i = 0; i < ctx->nkey; i++) {
		ctx->key_cols[i] = ctx->cols[ctx->key[i]];
		ctx->key_types[i] = ctx->types[ctx->key[i]];
	}
	fingerprint(ctx);
	rc = ctx->dst.ops->describe(ctx->dst.conn, &job->target.table, &ctx->tdesc, err);
	if (rc < 0 && err->code == LK_ERR_NOTFOUND && job->target.create && for_write) {
		if (create_target(ctx, err) < 0)
			return -1;
		rc = ctx->dst.ops->describe(ctx->dst.conn, &job->target.table, &ctx->tdesc, err);
	}
	if (rc < 0 && err->code == LK_ERR_NOTFOUND && job->target.create && !for_write) {
		ctx->target_missing = true; /* a run will create it */
		lk_err_clear(err);
		return 0;
	}
	if (rc < 0) {
		if (err->code == LK_ERR_NOTFOUND)
			return schema_err(
				err, "target", &cfg->dbs[job->target.db], &job->target.table,
				job->target.create ? "does not exist"
						   : "does not exist (set target.create: "
						     "true to create it from the source)");
		return -1;
	}
	if (skip_generated(ctx, err) < 0 || lk_job_check_target(ctx, for_write, err) < 0)
		return -1;
	if (for_write && pg_to_pg(ctx) && sync_labels(ctx, err) < 0)
		return -1;
	ctx->w.table = &job->target.table;
	ctx->w.cols = ctx->cols;
	ctx->w.types = ctx->types;
	ctx->w.ncols = ctx->ncols;
	ctx->w.key = ctx->key;
	ctx->w.nkey = ctx->nkey;
	ctx->w.soft_column =
		job->target.deletes == LK_DELETES_SOFT ? job->target.soft_column : NULL;
	(void)ctx->src.ops->estimate(ctx->src.conn, &job->source.table, &ctx->prog.total_estimate,
				     err);
	lk_err_clear(err);
	return 0;
}

void lk_job_release(struct lk_job_ctx *ctx)
{
	lk_db_close(&ctx->src);
	lk_db_close(&ctx->dst);
	lk_table_release(&ctx->sdesc);
	lk_table_release(&ctx->tdesc);
	free(ctx->cols);
	free(ctx->types);
	free(ctx->key);
	free(ctx->key_cols);
	free(ctx->key_types);
	free(ctx->pos);
	free(ctx->schema_next);
	ctx->schema_next = NULL;
	ctx->key_cols = NULL;
	ctx->key_types = NULL;
	ctx->cols = NULL;
	ctx->types = NULL;
	ctx->key = NULL;
	ctx->pos = NULL;
}

void lk_job_report(struct lk_job_ctx *ctx, bool force)
{
	int64_t now = lk_mono_ms();

	if (!ctx->opts || !ctx->opts->progress)
		return;
	if (!force && now - ctx->last_report_ms < 200)
		return;
	ctx->last_report_ms = now;
	ctx->prog.elapsed_ms = now - ctx->start_mono_ms;
	ctx->opts->progress(ctx->opts->progress_arg, &ctx->prog);
}
