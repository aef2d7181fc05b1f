/*
 * schema.c - schema changes on the source while a job lives (docs/schema-changes.md).
 *
 * The state store keeps, per job, the source columns the job last followed ("schema:JOB@DEP":
 * attribute number, name, type) and whether lockstep created the target. Each run, once it
 * holds the job (after the seal), compares them with the source and the target as they
 * are now and either follows the change on the target (schema_changes: follow: add,
 * rename, widen, make a dropped column nullable) or stops with one message naming it
 * (stop, or a change that cannot be followed). A column added to the source needs its
 * values on the rows already in the target: the run then reads every row again (a
 * re-snapshot for a real-time job), and the record names the column only once that is
 * sure to happen (poll, snapshot: at the run's end; real-time: once the re-snapshot is
 * recorded in the target's position), so a crash in between does it again.
 */
#include "sync_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define LK_LOG_COMPONENT "sync"
#include "connector/pg_types.h"
#include "core/log.h"
#include "core/units.h"
#include "store/store.h"

#define DDL_TRIES 8

/* One column of the stored record. */
struct pcol {
	int attnum;
	const char *name, *native;
	enum lk_type type;
	bool key; /* one of the job's key columns */
};

struct prev {
	json_t *root; /* owns the strings */
	bool found, created;
	struct pcol *cols;
	int n;
};

static bool is_pg(const struct lk_db *db)
{
	return strcmp(db->ops->name, "postgres") == 0;
}

/* Parses a record (text may be NULL: none, p->found false). */
static void prev_parse(const char *text, struct prev *p)
{
	json_t *cols;

	memset(p, 0, sizeof(*p));
	if (!text || !(p->root = json_loads(text, 0, NULL)))
		return;
	p->found = true;
	p->created = json_is_true(json_object_get(p->root, "created"));
	cols = json_object_get(p->root, "cols");
	p->cols = lk_xcalloc(json_array_size(cols) + 1, sizeof(*p->cols));
	for (size_t i = 0; i < json_array_size(cols); i++) {
		json_t *c = json_array_get(cols, i);

		p->cols[p->n++] = (struct pcol){
			.attnum = (int)json_integer_value(json_array_get(c, 0)),
			.name = json_string_value(json_array_get(c, 1)),
			.native = json_string_value(json_array_get(c, 2)),
			.type = (enum lk_type)json_integer_value(json_array_get(c, 3)),
			.key = json_is_true(json_array_get(c, 4))};
		if (!p->cols[p->n - 1].name || !p->cols[p->n - 1].native)
			p->n--;
	}
}

/* The job's record from the store: a store that cannot be read fails the run (read as "no
 * record", a column added meanwhile would never be filled). */
static int prev_load(struct lk_store *store, const char *ident, struct prev *p, struct lk_err *err)
{
	struct lk_buf key = LK_BUF_INIT;
	char *text = NULL;
	int rc;

	lk_buf_addf(&key, "schema:%s", ident);
	rc = lk_store_meta_get(store, key.buf, &text, err);
	lk_buf_release(&key);
	prev_parse(rc == 0 ? text : NULL, p);
	free(text);
	return rc < 0 ? lk_err_prefix(err, "read the job's schema record") : 0;
}

static void prev_release(struct prev *p)
{
	json_decref(p->root);
	free(p->cols);
	memset(p, 0, sizeof(*p));
}

static bool is_key_name(const struct lk_job_ctx *ctx, const char *name)
{
	for (int k = 0; k < ctx->nkey; k++)
		if (strcmp(ctx->key_cols[k], name) == 0)
			return true;
	return false;
}

/*
 * The record of the source as described now (the caller frees it); `baseline`: only the
 * columns the target has already (a job's first record: one the target lacks is still to
 * be added and filled). NULL when a name cannot be kept (not UTF-8).
 */
static char *record(const struct lk_job_ctx *ctx, bool created, bool baseline)
{
	json_t *cols = json_array(), *root;
	char *text = NULL;
	bool ok = true;

	for (int i = 0; i < ctx->sdesc.ncols && ok; i++) {
		const struct lk_column *c = &ctx->sdesc.cols[i];

		if (baseline && lk_table_col(&ctx->tdesc, c->name) < 0)
			continue;
		ok = json_array_append_new(cols, json_pack("[i, s, s, i, b]", c->attnum, c->name,
							   c->native, (int)c->type,
							   is_key_name(ctx, c->name))) == 0;
	}
	root = json_pack("{s:i, s:b, s:o}", "v", 1, "created", created, "cols", cols);
	if (ok && root)
		text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}

/* The stored column that is source column c: by attribute number on PostgreSQL (kept by a
 * rename), by name on SQLite (which renumbers on DROP COLUMN). */
static const struct pcol *prev_of(const struct prev *p, const struct lk_column *c, bool pg)
{
	for (int i = 0; i < p->n; i++) {
		if (pg ? p->cols[i].attnum == c->attnum : strcmp(p->cols[i].name, c->name) == 0)
			return &p->cols[i];
	}
	return NULL;
}

static bool synced(const struct lk_job_ctx *ctx, const char *name)
{
	for (int i = 0; i < ctx->ncols; i++)
		if (strcmp(ctx->cols[i], name) == 0)
			return true;
	return false;
}

/* ---- widening type changes (PostgreSQL -> PostgreSQL) ---- */

static int int_rank(const char *t)
{
	return strcmp(t, "smallint") == 0	    ? 1
	       : strcmp(t, "integer") == 0	    ? 2
	       : strcmp(t, "bigint") == 0	    ? 3
	       : strcmp(t, "real") == 0		    ? 11
	       : strcmp(t, "double precision") == 0 ? 12
						    : 0;
}

/* "character varying(N)": N; "character varying" or "text": a huge N; else -1. */
static long varchar_len(const char *t)
{
	if (strcmp(t, "text") == 0 || strcmp(t, "character varying") == 0)
		return 1L << 30;
	if (strncmp(t, "character varying(", 18) == 0)
		return strtol(t + 18, NULL, 10);
	return -1;
}

/* "numeric(P,S)": P and S; "numeric": unbounded (P -1). 0 when not numeric. */
static int numeric_ps(const char *t, long *p, long *s)
{
	char *end;

	*p = -1;
	*s = 0;
	if (strcmp(t, "numeric") == 0)
		return 1;
	if (strncmp(t, "numeric(", 8) != 0)
		return 0;
	*p = strtol(t + 8, &end, 10);
	*s = *end == ',' ? strtol(end + 1, NULL, 10) : 0;
	return 1;
}

/* Whether every value of type `from` is a value of type `to` unchanged. */
static bool widens(const char *from, const char *to)
{
	int a = int_rank(from), b = int_rank(to);
	long la = varchar_len(from), lb = varchar_len(to), pa, sa, pb, sb;

	if (a && b)
		return (a < 10) == (b < 10) && b > a;
	if (la >= 0 && lb >= 0)
		return lb > la;
	if (numeric_ps(from, &pa, &sa) && numeric_ps(to, &pb, &sb))
		return pb < 0 ||
		       (pa >= 0 && sb >= sa && pb - sb >= pa - sa && (pb > pa || sb > sa));
	return false;
}

/* ---- the plan ---- */

enum act_kind { ACT_ADD, ACT_RENAME, ACT_RETYPE, ACT_NULLABLE };

struct act {
	enum act_kind kind;
	const struct lk_column *src; /* ADD, RENAME, RETYPE: the source column now */
	const char *old;	     /* RENAME: the target's name; NULLABLE: the column */
	char what[300];		     /* the change, for messages */
};

struct plan {
	struct act *acts; /* n of them; freed by plan_release */
	int n;
	bool backfill;	 /* rows already there need an added column's values */
	char block[400]; /* a change that cannot be followed, with what to do; "" none */
	char added[200]; /* names of columns added (for the re-snapshot's reason) */
};

static void add_act(struct plan *pl, struct act a)
{
	pl->acts = lk_xrealloc(pl->acts, (size_t)(pl->n + 1) * sizeof(*pl->acts));
	pl->acts[pl->n++] = a;
}

static void plan_release(struct plan *pl)
{
	free(pl->acts);
	pl->acts = NULL;
	pl->n = 0;
}

/* RENAME: the target column a renamed source column had (PostgreSQL: same attnum). */
static const char *renamed_from(const struct lk_job_ctx *ctx, const struct prev *p,
				const struct lk_column *c)
{
	/* SQLite keeps no column identity, but cannot drop a primary key column either: a key
	 * column gone with another in its place was renamed */
	const struct pcol *was = prev_of(p, c, true);

	if (was && !is_pg(&ctx->src) && !(was->key && is_key_name(ctx, c->name)))
		was = NULL;

	if (!was || strcmp(was->name, c->name) == 0)
		return NULL;
	if (lk_table_col(&ctx->sdesc, was->name) >= 0 || lk_table_col(&ctx->tdesc, was->name) < 0)
		return NULL;
	return was->name;
}

/* A synced column the target lacks: renamed, or added. Returns which. */
static enum act_kind plan_missing(const struct lk_job_ctx *ctx, const struct prev *p,
				  const struct lk_column *c, struct plan *pl)
{
	const char *old = renamed_from(ctx, p, c);
	struct act a = {.kind = old ? ACT_RENAME : ACT_ADD, .src = c, .old = old};

	if (old)
		(void)snprintf(a.what, sizeof(a.what), "column \"%s\" was renamed to \"%s\"", old,
			       c->name);
	else if (p->found && prev_of(p, c, is_pg(&ctx->src)))
		(void)snprintf(a.what, sizeof(a.what),
			       "column \"%s\" (%s) is missing from the target table", c->name,
			       c->native);
	else
		(void)snprintf(a.what, sizeof(a.what), "column \"%s\" (%s) was added%s", c->name,
			       c->native, p->found ? "" : " (or the target table never had it)");
	add_act(pl, a);
	return a.kind;
}

/* A synced column on both sides whose source type changed since the record. */
static void plan_type(const struct lk_job_ctx *ctx, const struct pcol *was,
		      const struct lk_column *c, const struct lk_column *t, struct plan *pl)
{
	struct act a = {.kind = ACT_RETYPE, .src = c};
	bool pg2pg = is_pg(&ctx->src) && is_pg(&ctx->dst);

	if (strcmp(was->native, c->native) == 0)
		return;
	if (pg2pg ? strcmp(t->native, c->native) == 0 : was->type == c->type)
		return; /* the target already holds the new type, or the same meaning */
	(void)snprintf(a.what, sizeof(a.what), "column \"%s\" changed type from %s to %s", c->name,
		       was->native, c->native);
	if (!pg2pg || strcmp(t->native, was->native) != 0 || !widens(was->native, c->native)) {
		(void)snprintf(pl->block, sizeof(pl->block),
			       "%s, which lockstep does not change on the target by itself (only "
			       "a widening one, between PostgreSQL tables): alter the target "
			       "column to the new type (the job resumes by itself once they fit), "
			       "or run `lockstep sync JOB --full` after altering it",
			       a.what);
		return;
	}
	add_act(pl, a);
}

/* Columns the record has and the source no longer has: dropped (or renamed away). */
static void plan_dropped(const struct lk_job_ctx *ctx, const struct prev *p, struct plan *pl)
{
	bool pg = is_pg(&ctx->src);

	for (int i = 0; i < p->n; i++) {
		const struct pcol *was = &p->cols[i];
		bool gone = true;
		int t;

		for (int j = 0; j < ctx->sdesc.ncols && gone; j++)
			gone = pg ? ctx->sdesc.cols[j].attnum != was->attnum
				  : strcmp(ctx->sdesc.cols[j].name, was->name) != 0;
		for (int k = 0; k < pl->n && gone; k++)
			gone = !(pl->acts[k].kind == ACT_RENAME &&
				 strcmp(pl->acts[k].old, was->name) == 0);
		if (!gone || (ctx->job->source.ncolumns && !synced(ctx, was->name)))
			continue;
		if ((t = lk_table_col(&ctx->tdesc, was->name)) < 0 ||
		    !ctx->tdesc.cols[t].not_null || ctx->tdesc.cols[t].has_default)
			continue; /* nothing written is missing it */
		struct act a = {.kind = ACT_NULLABLE, .old = ctx->tdesc.cols[t].name};

		(void)snprintf(a.what, sizeof(a.what),
			       "column \"%s\" was dropped (the target's column is NOT NULL "
			       "without a default)",
			       was->name);
		add_act(pl, a);
	}
}

static void make_plan(const struct lk_job_ctx *ctx, const struct prev *p, struct plan *pl)
{
	memset(pl, 0, sizeof(*pl));
	for (int i = 0; i < ctx->ncols; i++) {
		const struct lk_column *c =
			&ctx->sdesc.cols[lk_table_col(&ctx->sdesc, ctx->cols[i])];
		int t = lk_table_col(&ctx->tdesc, c->name);
		const struct pcol *was = p->found ? prev_of(p, c, is_pg(&ctx->src)) : NULL;

		if (t < 0) {
			if (plan_missing(ctx, p, c, pl) == ACT_RENAME)
				continue;
		} else if (was && strcmp(was->name, c->name) == 0) {
			plan_type(ctx, was, c, &ctx->tdesc.cols[t], pl);
			continue;
		}
		/* added (now, or on the target by hand since the record), or a column whose name
		 * the target already had (names swapped, a rename followed by hand): the rows
		 * already there may lack its values */
		if (!ctx->target_created && (t < 0 || p->found)) {
			pl->backfill = true;
			(void)snprintf(pl->added + strlen(pl->added),
				       sizeof(pl->added) - strlen(pl->added), "%s\"%s\"",
				       pl->added[0] ? ", " : "", c->name);
		}
	}
	if (p->found)
		plan_dropped(ctx, p, pl);
}

/* ---- carrying it out ---- */

/* The type an added column gets on the target. NULL on error. */
static char *added_type(struct lk_job_ctx *ctx, const struct lk_column *c, struct lk_err *err)
{
	char *native = NULL;

	if (is_pg(&ctx->src) && is_pg(&ctx->dst)) {
		if (lk_pg_target_types(ctx->src.conn, ctx->dst.conn, &ctx->job->source.table, c, 1,
				       ctx->dst.conf->name, &native, err) < 0)
			return NULL;
		return native;
	}
	if (ctx->src.ops == ctx->dst.ops)
		return lk_xstrdup(c->native);
	return lk_xstrdup(is_pg(&ctx->dst) ? lk_type_pg_decl(c->type)
					   : lk_type_sqlite_decl(c->type));
}

static int act_sql(struct lk_job_ctx *ctx, const struct act *a, struct lk_buf *sql,
		   struct lk_err *err)
{
	enum lk_db_kind kind = is_pg(&ctx->dst) ? LK_DB_POSTGRES : LK_DB_SQLITE;
	char *type = NULL;

	lk_buf_adds(sql, "ALTER TABLE ");
	lk_quote_tref_for(sql, &ctx->job->target.table, kind);
	switch (a->kind) {
	case ACT_ADD:
		if (!(type = added_type(ctx, a->src, err)))
			return -1;
		lk_buf_adds(sql,
			    kind == LK_DB_POSTGRES ? " ADD COLUMN IF NOT EXISTS " : " ADD COLUMN ");
		lk_quote_ident(sql, a->src->name);
		lk_buf_addf(sql, " %s", type);
		free(type);
		break;
	case ACT_RENAME:
		lk_buf_adds(sql, " RENAME COLUMN ");
		lk_quote_ident(sql, a->old);
		lk_buf_adds(sql, " TO ");
		lk_quote_ident(sql, a->src->name);
		break;
	case ACT_RETYPE:
		lk_buf_adds(sql, " ALTER COLUMN ");
		lk_quote_ident(sql, a->src->name);
		lk_buf_addf(sql, " TYPE %s", a->src->native);
		break;
	case ACT_NULLABLE:
		if (kind != LK_DB_POSTGRES)
			return lk_err_set(err, LK_ERR_SCHEMA,
					  "%s; SQLite cannot drop NOT NULL in place: rebuild the "
					  "target table without it, or give it a default",
					  a->what);
		lk_buf_adds(sql, " ALTER COLUMN ");
		lk_quote_ident(sql, a->old);
		lk_buf_adds(sql, " DROP NOT NULL");
		break;
	}
	return 0;
}

/* Runs one statement on the target with a short lock wait, tried again while it waits on a
 * lock (an application's long transaction on the table). */
static int run_ddl(struct lk_job_ctx *ctx, const char *stmt, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	bool pg = is_pg(&ctx->dst);
	int rc = -1;

	if (pg)
		lk_buf_addf(&sql, "BEGIN; SET LOCAL lock_timeout = '2s'; %s; COMMIT", stmt);
	else
		lk_buf_adds(&sql, stmt);
	for (int i = 0; i < DDL_TRIES && rc < 0; i++) {
		lk_err_clear(err);
		rc = ctx->dst.ops->exec(ctx->dst.conn, sql.buf, 0, NULL, NULL, NULL, err);
		if (rc < 0 && pg)
			(void)ctx->dst.ops->exec(ctx->dst.conn, "ROLLBACK", 0, NULL, NULL, NULL,
						 NULL);
		if (rc < 0 && !(err->transient || strcmp(err->sqlstate, "55P03") == 0))
			break;
		if (rc < 0)
			lk_sleep_ms((int64_t)250 * (i + 1), ctx->opts ? ctx->opts->stop : NULL);
	}
	lk_buf_release(&sql);
	return rc;
}

static int apply_plan(struct lk_job_ctx *ctx, const struct plan *pl, struct lk_err *err)
{
	char name[256];

	lk_tref_format(&ctx->job->target.table, name, sizeof(name));
	for (int i = 0; i < pl->n; i++) {
		struct lk_buf sql = LK_BUF_INIT;
		int rc = act_sql(ctx, &pl->acts[i], &sql, err);

		if (rc == 0)
			rc = run_ddl(ctx, sql.buf, err);
		if (rc < 0 && strcmp(err->sqlstate, "42501") == 0) /* not the table's owner */
			rc = lk_err_set(
				err, LK_ERR_SCHEMA,
				"on the source, %s, and lockstep's role may not change "
				"target table %s to follow it (only its owner may): run `%s` "
				"as its owner; the job resumes by itself",
				pl->acts[i].what, name, sql.buf);
		else if (rc < 0)
			(void)lk_err_prefix(err,
					    "job %s: following a schema change on target %s (%s)",
					    ctx->job->name, name, pl->acts[i].what);
		lk_buf_release(&sql);
		if (rc < 0)
			return -1;
		lk_log_warn("job %s: the source table's %s: target %s follows (schema_changes: "
			    "follow)",
			    ctx->job->name, pl->acts[i].what, name);
	}
	return 0;
}

/* What the user does on the target to follow a change themselves. */
static const char *fix_of(const struct act *a)
{
	switch (a->kind) {
	case ACT_ADD:
		return "add the column to the target table, and lockstep fills it on the rows "
		       "already there";
	case ACT_RENAME:
		return "rename the target table's column the same way";
	case ACT_RETYPE:
		return "alter the target column to the new type";
	case ACT_NULLABLE:
		return "drop NOT NULL from the target column, or give it a default";
	}
	return "change the target table to match";
}

/* LK_ERR_SCHEMA for a change the job's policy stops on, saying what to do. */
static int stop_on(struct lk_job_ctx *ctx, const struct plan *pl, struct lk_err *err)
{
	char name[256];

	lk_tref_format(&ctx->job->source.table, name, sizeof(name));
	if (pl->block[0])
		return lk_err_set(err, LK_ERR_SCHEMA, "on source table %s, %s", name, pl->block);
	return lk_err_set(err, LK_ERR_SCHEMA,
			  "on source table %s, %s%s, and the job has schema_changes: stop%s: %s "
			  "(the job resumes by itself once the tables fit), or set schema_changes: "
			  "follow",
			  name, pl->acts[0].what, pl->n > 1 ? " (and more)" : "",
			  ctx->job->schema_changes == LK_SCHEMA_STOP
				  ? ""
				  : " (the default for a target table lockstep did not create)",
			  fix_of(&pl->acts[0]));
}

static void put_record(struct lk_job_ctx *ctx, struct lk_store *store, const char *text)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_buf key = LK_BUF_INIT;

	if (!text) {
		lk_log_warn(
			"job %s: its source columns cannot be recorded (a column name that is "
			"not UTF-8): a column added to the source later is not filled by itself; "
			"run `lockstep sync %s --full` after one",
			ctx->job->name, ctx->job->name);
		return;
	}
	lk_buf_addf(&key, "schema:%s", ctx->ident);
	if (store && lk_store_meta_put(store, key.buf, text, &err) < 0)
		lk_log_warn_err(&err, "job %s: cannot record its source columns", ctx->job->name);
	lk_buf_release(&key);
}

int lk_job_schema(struct lk_job_ctx *ctx, struct lk_store *store, struct lk_err *err)
{
	struct prev p;
	struct plan pl;
	bool follow;
	int rc = 0;

	if (prev_load(store, ctx->ident, &p, err) < 0)
		return -1;
	if (!p.found && !ctx->target_created) {
		/* The first record (a table made before lockstep kept one: create: true says
		 * whose) holds the columns the target has now, before anything is followed: one
		 * it lacks is then added (by lockstep or by you) and filled. */
		char *text = record(ctx, ctx->job->target.create, true);

		put_record(ctx, store, text);
		prev_parse(text, &p);
		free(text);
		if (!p.found)
			p.created = ctx->job->target.create;
	}
	follow = ctx->job->schema_changes == LK_SCHEMA_FOLLOW ||
		 (ctx->job->schema_changes == LK_SCHEMA_DEFAULT &&
		  (p.created || ctx->target_created));
	make_plan(ctx, &p, &pl);
	if (pl.block[0] || (pl.n > 0 && !follow))
		rc = stop_on(ctx, &pl, err);
	if (rc == 0 && pl.n > 0) {
		rc = apply_plan(ctx, &pl, err);
		lk_table_release(&ctx->tdesc);
		if (rc == 0)
			rc = ctx->dst.ops->describe(ctx->dst.conn, &ctx->job->target.table,
						    &ctx->tdesc, err);
		if (rc == 0)
			rc = lk_job_check_target(ctx, false, err);
	}
	if (rc == 0) {
		char *text = record(ctx, p.created || ctx->target_created, false);

		if (pl.backfill) {
			ctx->schema_next = text; /* stored once the backfill is sure (above) */
			ctx->schema_backfill = true;
			(void)snprintf(
				ctx->schema_why, sizeof(ctx->schema_why),
				"column%s %s added to the source: the rows already in the target "
				"need %s values",
				strchr(pl.added, ',') ? "s" : "", pl.added,
				strchr(pl.added, ',') ? "their" : "its");
		} else {
			put_record(ctx, store, text);
			free(text);
		}
	}
	plan_release(&pl);
	prev_release(&p);
	return rc;
}

void lk_job_schema_done(struct lk_job_ctx *ctx)
{
	if (!ctx->schema_next)
		return;
	put_record(ctx, ctx->store, ctx->schema_next);
	free(ctx->schema_next);
	ctx->schema_next = NULL;
}

/* ---- the source's columns while a job streams ---- */

static const char *const pg_sig_sql =
	"SELECT md5(coalesce(string_agg(a.attnum || ':' || a.attname || ':' || a.atttypid || ':' ||"
	" a.atttypmod || ':' || (SELECT count(*) FROM pg_catalog.pg_enum e WHERE e.enumtypid IN"
	" (a.atttypid, t.typelem, t.typbasetype)), ',' ORDER BY a.attnum), ''))"
	" FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
	" WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace "
	"n"
	" ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)"
	" AND a.attnum > 0 AND NOT a.attisdropped";

int lk_schema_sig(struct lk_job_ctx *ctx, char *out, size_t size, struct lk_err *err)
{
	const struct lk_tref *t = &ctx->job->source.table;
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	const char *schema = t->schema ? t->schema : is_pg(&ctx->src) ? "public" : "main";
	int rc;

	lk_rows_init(&rows, 1);
	if (is_pg(&ctx->src)) {
		rc = ctx->src.ops->exec(ctx->src.conn, pg_sig_sql, 2,
					(const char *const[]){schema, t->name}, &rows, NULL, err);
	} else { /* the columns, not the statement's text: a rebuild that keeps them is none */
		lk_buf_adds(&sql, "SELECT group_concat(cid || ':' || name || ':' || type || ':' || "
				  "\"notnull\" || ':' || pk || ':' || hidden, ',') FROM "
				  "pragma_table_xinfo($1, $2)");
		rc = ctx->src.ops->exec(ctx->src.conn, sql.buf, 2,
					(const char *const[]){t->name, schema}, &rows, NULL, err);
	}
	out[0] = '\0';
	if (rc == 0 && rows.nrows == 1 && !LK_ROW(&rows, 0)[0].null)
		(void)snprintf(out, size, "%016llx",
			       (unsigned long long)XXH64(LK_ROW(&rows, 0)[0].p,
							 LK_ROW(&rows, 0)[0].len, 0));
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

int lk_schema_check(struct lk_job_ctx *ctx, struct lk_err *err)
{
	char now[sizeof(ctx->src_sig)];

	if (!ctx->src_sig[0] || lk_schema_sig(ctx, now, sizeof(now), err) < 0)
		return ctx->src_sig[0] ? -1 : 0;
	if (strcmp(now, ctx->src_sig) == 0)
		return 0;
	lk_err_set(err, LK_ERR_SCHEMA,
		   "the source table's columns changed while the job ran (ALTER TABLE): the job "
		   "starts again to describe it");
	err->transient = true;
	return -1;
}
