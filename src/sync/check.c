/* check.c - the read-only checks behind `lockstep check-config` for one sync job. */
#include "sync_int.h"

#include <string.h>

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
	out->source_estimate = ctx.prog.total_estimate;
	if (job->mode == LK_MODE_POLL && ctx.src.ops->poll_cap &&
	    ctx.types[ctx.cursor] == LK_T_TIMESTAMPTZ) {
		char cap[64];

		out->poll_cap_applies = true;
		if (ctx.src.ops->poll_cap(ctx.src.conn, &out->poll_capped, cap, sizeof(cap), err) <
		    0)
			goto out;
	}
	if (job->mode == LK_MODE_REALTIME && lk_job_check_capture(&ctx, err) < 0)
		goto out;
	rc = 0;
out:
	lk_job_release(&ctx);
	return rc;
}
