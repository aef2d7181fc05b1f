/*
 * apply.c - one batch, one target transaction: the fenced position first
 * (its row lock orders a zombie behind the new holder), then the rows.
 */
#include "sync_int.h"

#define LK_LOG_COMPONENT "apply"
#include "core/failpoint.h"
#include "core/log.h"

int lk_apply_batch(struct lk_job_ctx *ctx, const struct lk_rows *upserts,
		   const struct lk_rows *deletes, bool plain, const char *pos, struct lk_err *err)
{
	if (lk_apply_commit(ctx, upserts, deletes, plain, pos, err) < 0)
		return -1;
	if (upserts)
		ctx->prog.rows_written += upserts->nrows;
	if (deletes)
		ctx->prog.rows_deleted += deletes->nrows;
	return 0;
}

int lk_apply_commit(struct lk_job_ctx *ctx, const struct lk_rows *upserts,
		    const struct lk_rows *deletes, bool plain, const char *pos, struct lk_err *err)
{
	const struct lk_connector_ops *ops = ctx->dst.ops;
	struct lk_conn *c = ctx->dst.conn;

	if (ops->begin(c, err) < 0)
		return -1;
	if (ops->position_put(c, ctx->job->name, ctx->epoch, pos, err) < 0)
		goto fail;
	if (upserts && upserts->nrows && ops->upsert(c, &ctx->w, upserts, plain, err) < 0)
		goto fail;
	if (deletes && deletes->nrows && ops->delete_keys(c, &ctx->w, deletes, err) < 0)
		goto fail;
	if (ops->commit(c, err) < 0)
		goto fail;
	lk_failpoint("after_target_commit");
	return 0;
fail:
	ops->rollback(c);
	return -1;
}
