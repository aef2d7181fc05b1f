/*
 * apply.c - one batch, one target transaction: the fenced position first
 * (its row lock orders a zombie behind the new holder), then the rows. Rows the
 * target rejects are isolated by bisection under savepoints and dead-lettered.
 */
#include "sync_int.h"

#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "apply"
#include "core/failpoint.h"
#include "core/log.h"

int lk_apply_batch(struct lk_job_ctx *ctx, const struct lk_batch *b, struct lk_err *err)
{
	struct lk_apply_counts n;

	if (lk_apply_commit(ctx, &ctx->dl_sink, b, &n, err) < 0)
		return -1;
	ctx->prog.rows_written += n.written;
	ctx->prog.rows_deleted += n.deleted;
	ctx->prog.rows_failed += n.dead;
	return 0;
}

/* Marks row `row` of list `kind` as failing with `why` (once). */
static void add_dead(struct lk_apply *a, int kind, int row, const struct lk_err *why)
{
	if (!a->dead[kind])
		a->dead[kind] = lk_xcalloc((size_t)a->rows[kind]->nrows, 1);
	if (a->dead[kind][row])
		return;
	a->dead[kind][row] = 1;
	if (a->ndl == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 8;
		a->dl = lk_xrealloc(a->dl, (size_t)a->cap * sizeof(*a->dl));
	}
	a->dl[a->ndl++] = (struct lk_dl_row){kind, row, *why};
}

/* The connector's refusal hook: a value the target cannot hold, found before sending. */
static void on_refused(void *arg, int row, const struct lk_err *why)
{
	struct lk_apply *a = arg;

	add_dead(a, a->kind, a->base + row, why);
}

/* Writes rows lo..hi-1 of list `kind` (a view into the batch: no copy); a binary batch
 * (b->copy) is written whole. */
static int write_range(struct lk_apply *a, int kind, int lo, int hi, struct lk_err *err)
{
	struct lk_job_ctx *ctx = a->ctx;
	const struct lk_rows *all = a->rows[kind];
	struct lk_rows view;

	a->kind = kind;
	a->base = lo;
	if (kind == 0 && a->b->copy)
		return ctx->dst.ops->upsert_copy(ctx->dst.conn, &ctx->w, a->b->copy, a->b->plain,
						 err);
	view = *all;
	view.v = LK_ROW(all, lo);
	view.nrows = hi - lo;
	if (kind == 0)
		return ctx->dst.ops->upsert(ctx->dst.conn, &ctx->w, &view, a->b->plain, err);
	return ctx->dst.ops->delete_keys(ctx->dst.conn, &ctx->w, &view, err);
}

/*
 * Writes rows lo..hi-1 under a savepoint. A row-level failure undoes the range; a single
 * row is then dead, a longer range is split in halves, each tried on its own. Depth is
 * log2(batch); k failing rows cost about 2k log2(batch / k) attempts.
 */
static int split(struct lk_apply *a, int kind, int lo, int hi, struct lk_err *err)
{
	const struct lk_connector_ops *ops = a->ctx->dst.ops;
	struct lk_conn *c = a->ctx->dst.conn;
	struct lk_err why;
	int mid;

	if (ops->savepoint(c, err) < 0)
		return -1;
	if (write_range(a, kind, lo, hi, err) == 0)
		return ops->savepoint_release(c, err);
	if (!lk_err_is_row_level(err))
		return -1;
	why = *err;
	lk_failpoint("mid_bisection");
	if (ops->savepoint_rollback(c, err) < 0)
		return -1;
	if (hi - lo == 1) {
		add_dead(a, kind, lo, &why);
		return 0;
	}
	mid = lo + (hi - lo) / 2;
	if (split(a, kind, lo, mid, err) < 0)
		return -1;
	return split(a, kind, mid, hi, err);
}

/* BEGIN, the fenced position, the rows: whole lists, or (bisect) split on failure. */
static int attempt(struct lk_apply *a, bool bisect, struct lk_err *err)
{
	struct lk_job_ctx *ctx = a->ctx;
	const struct lk_connector_ops *ops = ctx->dst.ops;

	if (ops->begin(ctx->dst.conn, err) < 0 ||
	    ops->position_put(ctx->dst.conn, ctx->pos_key, ctx->epoch, a->b->pos, err) < 0)
		return -1;
	if (a->b->copy && write_range(a, 0, 0, a->b->copy->nrows, err) < 0)
		return -1;
	for (int kind = 0; kind < 2; kind++) {
		const struct lk_rows *r = a->rows[kind];
		int rc;

		if (!r || r->nrows == 0)
			continue;
		rc = bisect ? split(a, kind, 0, r->nrows, err)
			    : write_range(a, kind, 0, r->nrows, err);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* Writes the batch; when a row fails and dead letters are on, again with bisection. */
static int write_batch(struct lk_apply *a, bool dlq, struct lk_err *err)
{
	struct lk_job_ctx *ctx = a->ctx;

	if (attempt(a, false, err) == 0)
		return 0;
	if (!dlq || !lk_err_is_row_level(err) || a->b->copy)
		return -1;
	lk_log_debug("job %s: the target rejected a row (%s); isolating the failing rows",
		     ctx->job->name, err->sqlstate);
	ctx->dst.ops->rollback(ctx->dst.conn);
	return attempt(a, true, err);
}

static void count(const struct lk_apply *a, struct lk_apply_counts *out)
{
	int dead[2] = {0, 0};

	for (int i = 0; i < a->ndl; i++)
		dead[a->dl[i].kind]++;
	out->written = a->rows[0] ? a->rows[0]->nrows - dead[0] : 0;
	if (a->b->copy)
		out->written = a->b->copy->nrows;
	out->deleted = a->rows[1] ? a->rows[1]->nrows - dead[1] : 0;
	out->dead = a->ndl;
}

int lk_apply_commit(struct lk_job_ctx *ctx, struct lk_dl_sink *sink, const struct lk_batch *b,
		    struct lk_apply_counts *out, struct lk_err *err)
{
	const struct lk_connector_ops *ops = ctx->dst.ops;
	struct lk_conn *c = ctx->dst.conn;
	struct lk_apply a = {.ctx = ctx, .b = b, .rows = {b->upserts, b->deletes}};
	bool dlq = ctx->store != NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	lk_failpoint("before_batch");
	if (dlq)
		ops->set_refused(c, on_refused, &a);
	rc = write_batch(&a, dlq, err);
	/* A batch COMMIT would refuse (a deferred constraint) fails here, before its dead
	 * letters are committed in the store: they would name rows of a batch rolled back. */
	if (rc == 0 && a.ndl > 0)
		rc = ops->check_deferred(c, err);
	if (rc == 0 && a.ndl > 0)
		rc = lk_dl_record(sink, &a, err);
	if (rc == 0)
		rc = ops->commit(c, err);
	ops->set_refused(c, NULL, NULL);
	if (rc < 0) {
		ops->rollback(c);
	} else {
		lk_failpoint("after_target_commit");
		count(&a, out);
		lk_dl_resolve_applied(sink, &a);
	}
	free(a.dead[0]);
	free(a.dead[1]);
	free(a.dl);
	return rc;
}
