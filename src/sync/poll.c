/*
 * poll.c - incremental polling by a cursor column (SPEC §4, DESIGN decision 7):
 * position (cursor, key) compared as a row, a look-back window for time
 * cursors, a cap below the oldest open transaction when pg_stat_activity is
 * readable, and rows that stopped matching `where` handled as deletes.
 */
#include "budget.h"
#include "sync_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "poll"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"

struct poll_bounds {
	int *order; /* cursor, then the key */
	int norder;
	struct lk_value *after;	   /* resume after (cursor, key) */
	struct lk_value min_first; /* cursor >= position - lookback */
	bool has_min;
	bool has_cap;	/* the position may not pass cap (an open transaction started there) */
	int64_t cap_us; /* cap as microseconds since the epoch */
	char min_buf[64], cap_buf[64], margin_buf[64]; /* margin_buf: cap - 1 s */
};

/* Sets min_first to `from` minus the look-back (time cursors), or to `from` itself. */
static void set_min(struct lk_job_ctx *ctx, struct poll_bounds *b, const char *from)
{
	int64_t back = lk_type_is_time(ctx->types[ctx->cursor]) ? ctx->job->lookback_ms * 1000 : 0;

	if (lk_ts_shift(from, -back, b->min_buf, sizeof(b->min_buf)) < 0)
		(void)snprintf(b->min_buf, sizeof(b->min_buf), "%s", from);
	b->min_first = (struct lk_value){b->min_buf, strlen(b->min_buf), false};
	b->has_min = true;
}

/*
 * Reads the stored position and turns it into scan bounds: {"after": [cursor, key...]}
 * resumes after that row; {"from": cursor} (a capped position) re-reads from that value.
 * With a look-back on a time cursor, either becomes "cursor >= value - lookback".
 */
static void resume_bounds(struct lk_job_ctx *ctx, struct poll_bounds *b, struct lk_arena *arena)
{
	json_t *root, *mode, *vals, *from;
	const struct lk_value *cur;

	if (!ctx->pos || (ctx->opts && ctx->opts->full))
		return;
	root = json_loads(ctx->pos, 0, NULL);
	mode = json_object_get(root, "mode");
	vals = json_object_get(root, "after");
	from = json_object_get(root, "from");
	if (!json_is_string(mode) || strcmp(json_string_value(mode), "poll") != 0) {
		json_decref(root);
		return;
	}
	if (json_is_string(from)) {
		set_min(ctx, b, json_string_value(from));
	} else if (json_is_array(vals)) {
		b->after = lk_arena_alloc(arena, sizeof(*b->after) * (size_t)b->norder);
		if (lk_pos_parse_values(vals, b->after, ctx->types, b->order, b->norder, arena) < 0)
			b->after = NULL;
	}
	json_decref(root);
	if (!b->after)
		return;
	cur = &b->after[0];
	if (ctx->job->lookback_ms > 0 && lk_type_is_time(ctx->types[ctx->cursor]) && !cur->null) {
		/* Re-read the look-back window from its start; upserts make repeats harmless. */
		char start[64];

		(void)snprintf(start, sizeof(start), "%.*s", (int)cur->len, cur->p);
		set_min(ctx, b, start);
		b->after = NULL;
	}
}

/* Caps the cursor below the oldest open transaction (time cursors on PostgreSQL). */
static int cap_bound(struct lk_job_ctx *ctx, struct poll_bounds *b, struct lk_err *err)
{
	enum lk_type t = ctx->types[ctx->cursor];
	bool readable = false;

	/* Only timestamptz: a timestamp column's values depend on each writer's TimeZone,
	 * which lockstep cannot see, so such cursors rely on lookback (check-config says so). */
	if (!ctx->src.ops->poll_cap || t != LK_T_TIMESTAMPTZ)
		return 0;
	if (ctx->src.ops->poll_cap(ctx->src.conn, &readable, b->cap_buf, sizeof(b->cap_buf), err) <
	    0)
		return -1;
	if (readable && lk_ts_parse(b->cap_buf, &b->cap_us) == 0 &&
	    lk_ts_shift(b->cap_buf, -1000000, b->margin_buf, sizeof(b->margin_buf)) == 0) {
		b->has_cap = true;
	} else {
		lk_log_debug("job %s: pg_stat_activity is not readable; relying on lookback",
			     ctx->job->name);
	}
	return 0;
}

/*
 * The position after `row`. Rows at or past the cap are applied (they are committed and
 * visible), but the position stops at the cap: the open transaction that began there may
 * still commit rows with smaller cursor values than `row`.
 */
static void poll_pos(struct lk_buf *pos, struct lk_job_ctx *ctx, const struct poll_bounds *b,
		     const struct lk_value *row)
{
	const struct lk_value *cur = &row[ctx->cursor];
	int64_t us;

	lk_buf_reset(pos);
	/* One second of margin: a column of lower precision rounds the open transaction's
	 * now() (e.g. 12:00:06.04 stored as 12:00:06) below the cap itself. */
	if (b->has_cap && lk_ts_parse(cur->p, &us) == 0 && us >= b->cap_us - 1000000) {
		lk_buf_addf(pos, "{\"v\":1,\"fp\":\"%s\",\"mode\":\"poll\",\"from\":", ctx->fp);
		lk_buf_add_json_str(pos, b->margin_buf, strlen(b->margin_buf));
		lk_buf_addch(pos, '}');
		return;
	}
	lk_buf_addf(pos, "{\"v\":1,\"fp\":\"%s\",\"mode\":\"poll\",\"after\":", ctx->fp);
	lk_pos_add_values(pos, row, ctx->types, b->order, b->norder);
	lk_buf_addch(pos, '}');
}

/* Splits a page by the match column; rows that no longer match go to dels (unless ignored). */
static void split_page(struct lk_job_ctx *ctx, const struct lk_rows *page, struct lk_rows *ups,
		       struct lk_rows *dels)
{
	int m = ctx->ncols; /* the lk_match column */

	for (int r = 0; r < page->nrows; r++) {
		bool match = LK_ROW(page, r)[m].p[0] == 't';

		if (match)
			lk_rows_copy_row(ups, page, r);
		else if (ctx->job->target.deletes != LK_DELETES_IGNORE)
			lk_rows_copy_row(dels, page, r);
	}
}

static int poll_loop(struct lk_job_ctx *ctx, struct lk_scan *scan, const struct poll_bounds *b,
		     struct lk_err *err)
{
	bool where = ctx->job->source.where != NULL;
	struct lk_rows page, ups, dels;
	struct lk_buf pos = LK_BUF_INIT;
	int rc = -1, n;

	lk_rows_init(&page, ctx->ncols + (where ? 1 : 0));
	lk_rows_init(&ups, ctx->ncols);
	lk_rows_init(&dels, ctx->ncols);
	for (;;) {
		if (ctx->opts && lk_flag(ctx->opts->stop)) {
			lk_err_set(err, LK_ERR_CANCELLED, "stopped at a batch boundary");
			goto out;
		}
		lk_rows_reset(&page);
		lk_rows_reset(&ups);
		lk_rows_reset(&dels);
		n = ctx->src.ops->scan_next(scan, &page, lk_sync_batch(ctx->job), err);
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		ctx->prog.rows_read += n;
		poll_pos(&pos, ctx, b, LK_ROW(&page, page.nrows - 1));
		if (where)
			split_page(ctx, &page, &ups, &dels);
		/* change NULL: a dead letter's change is its row's cursor value. */
		if (lk_apply_batch(ctx,
				   &(struct lk_batch){.upserts = where ? &ups : &page,
						      .deletes = where ? &dels : NULL,
						      .pos = pos.buf},
				   err) < 0)
			goto out;
		free(ctx->pos);
		ctx->pos = lk_xstrdup(pos.buf);
		lk_job_report(ctx, false);
	}
	rc = 0;
out:
	lk_rows_release(&page);
	lk_rows_release(&ups);
	lk_rows_release(&dels);
	lk_buf_release(&pos);
	return rc;
}

int lk_poll_run(struct lk_job_ctx *ctx, struct lk_err *err)
{
	struct poll_bounds b;
	struct lk_arena arena;
	struct lk_scan_spec spec;
	struct lk_scan *scan;
	struct lk_buf notnull = LK_BUF_INIT;
	int rc = -1;

	memset(&b, 0, sizeof(b));
	lk_arena_init(&arena, 4096);
	b.norder = 1 + ctx->nkey;
	b.order = lk_xcalloc((size_t)b.norder, sizeof(int));
	b.order[0] = ctx->cursor;
	memcpy(&b.order[1], ctx->key, (size_t)ctx->nkey * sizeof(int));
	resume_bounds(ctx, &b, &arena);
	if (cap_bound(ctx, &b, err) < 0)
		goto out;
	/* A NULL cursor sorts outside every position: such rows are never polled (docs). */
	lk_quote_ident(&notnull, ctx->cols[ctx->cursor]);
	lk_buf_adds(&notnull, " IS NOT NULL");
	spec = (struct lk_scan_spec){
		.table = &ctx->job->source.table,
		.cols = ctx->cols,
		.types = ctx->types,
		.ncols = ctx->ncols,
		.order = b.order,
		.norder = b.norder,
		.after = b.after,
		.min_first = b.has_min ? &b.min_first : NULL,
		.filter = notnull.buf,
		.match = ctx->job->source.where,
	};
	ctx->prog.stage = "poll";
	scan = ctx->src.ops->scan_open(ctx->src.conn, &spec, err);
	if (!scan)
		goto out;
	rc = poll_loop(ctx, scan, &b, err);
	ctx->src.ops->scan_close(scan);
out:
	free(b.order);
	lk_buf_release(&notnull);
	lk_arena_release(&arena);
	return rc;
}
