/*
 * deadletter.c - the engine's side of the dead-letter queue: which store handle a
 * thread writes through, the dead letters of a batch (key, change, row image), and
 * the auto-resolve of open ones whose keys a later batch applied cleanly.
 */
#include "sync_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LK_LOG_COMPONENT "deadletter"
#include "core/failpoint.h"
#include "core/log.h"
#include "store/deadletters.h"

/* The open keys loaded at a run's start; beyond this many only replay/resolve clear them. */
#define DL_OPEN_MAX 100000

/* True when both paths name the same existing file. */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0)
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int lk_dl_setup(struct lk_job_ctx *ctx, struct lk_store *store, struct lk_err *err)
{
	const struct lk_dbconf *t = &ctx->cfg->dbs[ctx->job->target.db];
	struct lk_rows keys;
	int rc;

	ctx->store = store;
	ctx->dl_same_file = ctx->cfg->state_kind == LK_DB_SQLITE && t->kind == LK_DB_SQLITE &&
			    same_file(ctx->cfg->state_path, t->path);
	lk_dl_sink_init(&ctx->dl_sink, ctx, false);
	lk_keyset_init(&ctx->dl_open);
	lk_rows_init(&keys, 1);
	rc = lk_store_dl_open_keys(store, ctx->job->name, DL_OPEN_MAX, &keys, &ctx->dl_nopen, err);
	for (int r = 0; rc == 0 && r < keys.nrows; r++)
		lk_keyset_add(&ctx->dl_open, LK_ROW(&keys, r)[0].p, LK_ROW(&keys, r)[0].len, 0);
	if (rc == 0 && ctx->dl_nopen > 0) {
		lk_log_info("job %s: %lld open dead letters (`lockstep errors list`); they resolve "
			    "themselves when their keys apply cleanly",
			    ctx->job->name, (long long)ctx->dl_nopen);
		if (ctx->dl_nopen > keys.nrows)
			lk_log_warn("job %s: only %d keys of open dead letters are watched for "
				    "auto-resolve; replay or resolve the others",
				    ctx->job->name, keys.nrows);
		ctx->dl_nopen = keys.nrows;
	}
	lk_rows_release(&keys);
	return rc;
}

void lk_dl_release(struct lk_job_ctx *ctx)
{
	lk_dl_sink_release(&ctx->dl_sink);
	lk_keyset_release(&ctx->dl_open);
}

void lk_dl_sink_init(struct lk_dl_sink *s, struct lk_job_ctx *ctx, bool own_thread)
{
	memset(s, 0, sizeof(*s));
	s->ctx = ctx;
	s->own_thread = own_thread;
}

void lk_dl_sink_release(struct lk_dl_sink *s)
{
	if (s->owned && s->borrowed)
		lk_store_dl_unborrow(s->store);
	else if (s->owned)
		lk_store_close(s->store);
	s->store = NULL;
	s->owned = false;
}

/* The store handle this thread writes dead letters through. */
static struct lk_store *sink_store(struct lk_dl_sink *s, struct lk_err *err)
{
	struct lk_job_ctx *ctx = s->ctx;

	if (s->store)
		return s->store;
	if (ctx->dl_same_file) {
		s->store = lk_store_dl_borrow(&ctx->dst);
		s->owned = s->borrowed = true;
	} else if (s->own_thread) {
		s->store = lk_store_open(ctx->cfg, err);
		s->owned = s->store != NULL;
	} else {
		s->store = ctx->store;
	}
	return s->store;
}

void lk_dl_key_json(struct lk_buf *b, const struct lk_job_ctx *ctx, const struct lk_value *row)
{
	lk_pos_add_values(b, row, ctx->types, ctx->key, ctx->nkey);
}

/* One value as JSON: a string of its text (bytes as hex), or null. */
static void value_json(struct lk_buf *b, enum lk_type t, const struct lk_value *v)
{
	if (v->null) {
		lk_buf_adds(b, "null");
	} else if (t == LK_T_BYTES) {
		lk_buf_addch(b, '"');
		lk_buf_add_hex(b, v->p, v->len);
		lk_buf_addch(b, '"');
	} else {
		lk_buf_add_json_str(b, v->p, v->len);
	}
}

/* The row image: {"col": "text", ...}, bytes as hex, NULL as null; deletes: the key only. */
static void row_json(struct lk_buf *b, const struct lk_job_ctx *ctx, const struct lk_value *row,
		     bool key_only)
{
	int n = key_only ? ctx->nkey : ctx->ncols;

	lk_buf_addch(b, '{');
	for (int i = 0; i < n; i++) {
		int c = key_only ? ctx->key[i] : i;

		lk_buf_adds(b, i ? "," : "");
		lk_buf_add_json_str(b, ctx->cols[c], strlen(ctx->cols[c]));
		lk_buf_addch(b, ':');
		value_json(b, ctx->types[c], &row[c]);
	}
	lk_buf_addch(b, '}');
}

/* The change id: the batch's, or (poll) "poll:" and the row's cursor value. */
static void change_id(struct lk_buf *b, const struct lk_apply *a, const struct lk_value *row)
{
	const struct lk_job_ctx *ctx = a->ctx;
	const struct lk_value *v;

	if (a->b->change) {
		lk_buf_adds(b, a->b->change);
		return;
	}
	lk_buf_adds(b, "poll:");
	if (ctx->cursor < 0)
		return;
	v = &row[ctx->cursor];
	if (v->null)
		lk_buf_adds(b, "null");
	else if (ctx->types[ctx->cursor] == LK_T_BYTES)
		lk_buf_add_hex(b, v->p, v->len);
	else
		lk_buf_add(b, v->p, v->len);
}

/* Copies b's text into the arena and resets b. */
static const char *take(struct lk_arena *ar, struct lk_buf *b)
{
	const char *s = lk_arena_memdup(ar, b->buf, b->len);

	lk_buf_reset(b);
	return s;
}

/* Fills d[i] for each isolated row of a; strings live in `ar`. */
static void build(const struct lk_apply *a, struct lk_dead_letter *d, struct lk_arena *ar)
{
	struct lk_buf b = LK_BUF_INIT;

	for (int i = 0; i < a->ndl; i++) {
		const struct lk_dl_row *x = &a->dl[i];
		const struct lk_value *row = LK_ROW(a->rows[x->kind], x->row);

		lk_dl_key_json(&b, a->ctx, row);
		d[i].key = take(ar, &b);
		change_id(&b, a, row);
		d[i].change = take(ar, &b);
		d[i].op = x->kind == 0 ? "upsert" : "delete";
		d[i].sqlstate = x->why.sqlstate[0] ? x->why.sqlstate : NULL;
		d[i].message = x->why.msg;
		row_json(&b, a->ctx, row, x->kind == 1);
		d[i].row = take(ar, &b);
	}
	lk_buf_release(&b);
}

/* Dead keys count as open from now on, so a later clean apply in this run resolves them. */
static void mark_open(struct lk_job_ctx *ctx, const struct lk_dead_letter *d, int n)
{
	for (int i = 0; i < n; i++) {
		struct lk_keyset_item *it = lk_keyset_find(&ctx->dl_open, d[i].key);

		if (it && !it->seen)
			continue;
		if (it)
			it->seen = false;
		else
			lk_keyset_add(&ctx->dl_open, d[i].key, strlen(d[i].key), 0);
		ctx->dl_nopen++;
	}
}

int lk_dl_record(struct lk_dl_sink *s, const struct lk_apply *a, struct lk_err *err)
{
	struct lk_job_ctx *ctx = a->ctx;
	struct lk_dead_letter *d = lk_xcalloc((size_t)a->ndl, sizeof(*d));
	struct lk_store *store = sink_store(s, err);
	struct lk_arena ar;
	int rc = -1;

	lk_arena_init(&ar, 4096);
	if (!store)
		goto out;
	build(a, d, &ar);
	if (lk_store_dl_put(store, ctx->job->name, d, a->ndl, !s->borrowed, err) < 0)
		goto out;
	lk_failpoint("after_dead_letter_insert");
	lk_log_warn("job %s: %d row%s dead-lettered (`lockstep errors list`); first: key %s: "
		    "%s%s%s",
		    ctx->job->name, a->ndl, a->ndl == 1 ? "" : "s", d[0].key,
		    d[0].sqlstate ? d[0].sqlstate : "", d[0].sqlstate ? " " : "", d[0].message);
	mark_open(ctx, d, a->ndl);
	rc = 0;
out:
	lk_arena_release(&ar);
	free(d);
	return rc;
}

/* Appends to keys (in ar) the open keys that list `kind` of a applied cleanly. */
static void collect_resolved(const struct lk_apply *a, int kind, struct lk_buf *b,
			     struct lk_arena *ar, const char ***keys, int *n, int *cap)
{
	struct lk_job_ctx *ctx = a->ctx;
	const struct lk_rows *rows = a->rows[kind];

	for (int r = 0; rows && r < rows->nrows && ctx->dl_nopen > 0; r++) {
		struct lk_keyset_item *it;

		if (a->dead[kind] && a->dead[kind][r])
			continue;
		lk_buf_reset(b);
		lk_dl_key_json(b, ctx, LK_ROW(rows, r));
		it = lk_keyset_find(&ctx->dl_open, b->buf);
		if (!it || it->seen)
			continue;
		it->seen = true;
		ctx->dl_nopen--;
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*keys = lk_xrealloc(*keys, (size_t)*cap * sizeof(**keys));
		}
		(*keys)[(*n)++] = lk_arena_memdup(ar, b->buf, b->len);
	}
}

void lk_dl_resolve_applied(struct lk_dl_sink *s, const struct lk_apply *a)
{
	struct lk_job_ctx *ctx = a->ctx;
	struct lk_err err = LK_ERR_INIT;
	struct lk_buf b = LK_BUF_INIT;
	struct lk_store *store;
	struct lk_arena ar;
	const char **keys = NULL;
	int n = 0, cap = 0;
	int64_t done = 0;

	if (ctx->dl_nopen <= 0 || !ctx->store)
		return;
	lk_arena_init(&ar, 1024);
	collect_resolved(a, 0, &b, &ar, &keys, &n, &cap);
	collect_resolved(a, 1, &b, &ar, &keys, &n, &cap);
	store = n ? sink_store(s, &err) : NULL;
	if (store && lk_store_dl_resolve_keys(store, ctx->job->name, keys, n, &done, &err) == 0)
		lk_log_info("job %s: %lld dead letter%s resolved: %d key%s applied cleanly",
			    ctx->job->name, (long long)done, done == 1 ? "" : "s", n,
			    n == 1 ? "" : "s");
	else if (n)
		lk_log_warn_err(&err, "job %s: cannot mark dead letters resolved", ctx->job->name);
	free(keys);
	lk_buf_release(&b);
	lk_arena_release(&ar);
}
