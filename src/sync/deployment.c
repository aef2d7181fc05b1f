/*
 * deployment.c - a real-time job's consumer row among several deployments (docs/
 * operations.md, "Several deployments"): taking over the row an older lockstep named after
 * the job alone, and removing other consumers that held entries back past orphan_after.
 */
#include "sync_int.h"

#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "sync"
#include "core/log.h"

int lk_job_adopt_consumer(struct lk_job_ctx *ctx, struct lk_err *err)
{
	const struct lk_cdc_ops *cdc = lk_cdc_for(ctx->src.ops);
	bool adopted = false;

	/* Starting over registers a row of its own; only a resumed position needs the old one. */
	if (!ctx->pos || (ctx->opts && ctx->opts->full) || !cdc || !cdc->adopt_consumer ||
	    strcmp(ctx->ident, ctx->job->name) == 0)
		return 0;
	if (cdc->adopt_consumer(ctx->src.conn, ctx->job->name, ctx->ident, &ctx->job->source.table,
				&adopted, err) < 0)
		return -1;
	if (adopted)
		lk_log_info("job %s: its change-capture consumer, registered by an older lockstep, "
			    "is now '%s'",
			    ctx->job->name, ctx->ident);
	return 0;
}

/* Says once that consumer row o is gone, and why. */
static void warn_removed(const struct lk_job_ctx *ctx, const struct lk_value *o)
{
	const char *name = o[LK_ORPHAN_NAME].p, *at = strrchr(name, '@');

	lk_log_warn("job %s: removed consumer '%s' (%s%s%s) of its source table: it held "
		    "changelog entries back for %s s, longer than orphan_after (%lld s); if %s "
		    "runs again it takes a fresh snapshot",
		    ctx->job->name, name, at ? "deployment '" : "an older lockstep",
		    at ? at + 1 : "", at ? "'" : "",
		    o[LK_ORPHAN_HELD_S].null ? "?" : o[LK_ORPHAN_HELD_S].p,
		    (long long)(ctx->cfg->orphan_after_ms / 1000), at ? "that deployment" : "it");
}

void lk_rt_expire_orphans(struct lk_job_ctx *ctx)
{
	const struct lk_cdc_ops *cdc = lk_cdc_for(ctx->src.ops);
	const char *at = strrchr(ctx->ident, '@');
	struct lk_err err = LK_ERR_INIT;
	struct lk_cdc_orphans_req q = {0};
	struct lk_rows out;
	char **keep;
	int nkeep;

	if (ctx->cfg->orphan_after_ms <= 0 || !at || !cdc || !cdc->orphans)
		return;
	keep = lk_store_idents(ctx->cfg, at + 1, &nkeep);
	q = (struct lk_cdc_orphans_req){&ctx->job->source.table, (const char *const *)keep, nkeep,
					true, (double)ctx->cfg->orphan_after_ms / 1000.0};
	lk_rows_init(&out, LK_ORPHAN_NCOLS);
	if (cdc->orphans(ctx->src.conn, &q, &out, &err) < 0)
		lk_log_warn_err(&err,
				"job %s: cannot look for orphaned consumers of its source "
				"table",
				ctx->job->name);
	for (int r = 0; r < out.nrows; r++)
		warn_removed(ctx, LK_ROW(&out, r));
	lk_rows_release(&out);
	lk_store_idents_free(keep, nkeep);
}
