/* check.c - the read-only checks behind `lockstep check-config` for one sync job. */
#include "connector/pg_types.h"
#include "core/buf.h"
#include "sync_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "90s", "1500ms": a look-back for messages. */
static void fmt_ms(char *out, size_t size, int64_t ms)
{
	if (ms % 1000 == 0)
		(void)snprintf(out, size, "%llds", (long long)(ms / 1000));
	else
		(void)snprintf(out, size, "%lldms", (long long)ms);
}

/*
 * What protects a row that commits after a poll with an older cursor value (a late
 * commit): the cap (poll.c) when every open transaction is visible, else only lookback.
 */
static void poll_note(const struct lk_job *job, const struct lk_poll_cap *pc, char *out,
		      size_t size)
{
	char lb[32];

	fmt_ms(lb, sizeof(lb), job->lookback_ms);
	if (pc->state == LK_POLL_CAP_ON)
		(void)snprintf(out, size,
			       "every open transaction is visible: the position never passes the "
			       "start of an open or prepared transaction (%lld prepared now), for "
			       "cursor values the writing transaction takes from the database "
			       "clock (now(), DEFAULT now(), a trigger); values from another "
			       "clock rely on lookback (%s)",
			       (long long)pc->nprepared, lb);
	else if (job->lookback_ms > 0)
		(void)snprintf(out, size,
			       "%s, so the cap does not apply: lookback (%s) is what protects a "
			       "row committed later than that after its cursor value; run verify "
			       "to find any it missed",
			       lk_poll_cap_why(pc->state), lb);
	else
		(void)snprintf(out, size,
			       "%s, so the cap does not apply, and lookback is 0: a row committed "
			       "after a poll with an older cursor value is missed (set lookback "
			       "above the longest writing transaction)",
			       lk_poll_cap_why(pc->state));
}

/*
 * A target that create: true will make from a PostgreSQL source: the types it needs can be
 * made there (an extension's type needs the extension on the target). Changes nothing.
 */
static int target_types(struct lk_job_ctx *ctx, struct lk_err *err)
{
	struct lk_column *cols;
	int rc;

	if (ctx->src.ops != ctx->dst.ops || strcmp(ctx->src.ops->name, "postgres") != 0)
		return 0;
	cols = lk_xcalloc((size_t)ctx->ncols + 1, sizeof(*cols));
	for (int i = 0; i < ctx->ncols; i++)
		cols[i] = ctx->sdesc.cols[lk_table_col(&ctx->sdesc, ctx->cols[i])];
	rc = lk_pg_target_types(ctx->src.conn, ctx->dst.conn, &ctx->job->source.table, cols,
				ctx->ncols, ctx->cfg->dbs[ctx->job->target.db].name, NULL, err);
	free(cols);
	return rc;
}

int lk_sync_check(const struct lk_config *cfg, const struct lk_job *job,
		  struct lk_check_result *out, struct lk_err *err)
{
	struct lk_job_ctx ctx;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (lk_job_prepare(&ctx, cfg, job, NULL, false, err) < 0)
		goto out;
	out->ncols = ctx.ncols;
	out->target_missing = ctx.target_missing;
	if (ctx.target_missing && target_types(&ctx, err) < 0)
		goto out;
	out->source_estimate = ctx.prog.total_estimate;
	if (job->mode == LK_MODE_POLL && ctx.src.ops->poll_cap &&
	    ctx.types[ctx.cursor] == LK_T_TIMESTAMPTZ) {
		struct lk_poll_cap pc;

		out->poll_cap_applies = true;
		if (ctx.src.ops->poll_cap(ctx.src.conn, &pc, err) < 0)
			goto out;
		out->poll_capped = pc.state == LK_POLL_CAP_ON;
		poll_note(job, &pc, out->poll_note, sizeof(out->poll_note));
		free(pc.xids);
	} else if (job->mode == LK_MODE_POLL) {
		(void)snprintf(out->poll_note, sizeof(out->poll_note),
			       "no hard deletes are seen; rows committed out of cursor order rely "
			       "on lookback (time cursors only)");
	}
	if (job->mode == LK_MODE_REALTIME && lk_job_check_capture(&ctx, err) < 0)
		goto out;
	rc = 0;
out:
	lk_job_release(&ctx);
	return rc;
}
