/*
 * snapshot.c - copy every source row in key order, keyset-resumable: each batch
 * commits the last key it wrote, and a restarted run continues after it.
 */
#include "budget.h"
#include "sync_int.h"

#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "snapshot"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"
#include "keyset.h"

/* Reads a resumable "last key" from the position, or NULL to start from the beginning. */
static struct lk_value *resume_key(struct lk_job_ctx *ctx, struct lk_arena *arena)
{
	struct lk_position p;
	struct lk_value *after = NULL;
	bool resumable;

	if (!ctx->pos || (ctx->opts && ctx->opts->full))
		return NULL;
	lk_position_decode(ctx->pos, &p);
	/* A real-time job's snapshot phase resumes the same way (DESIGN decision 4). */
	resumable = ctx->rt ? p.mode == LK_POS_REALTIME && p.phase == LK_PHASE_SNAPSHOT
			    : p.mode == LK_POS_SNAPSHOT && !p.done;
	if (resumable && p.vals_json) {
		after = lk_arena_alloc(arena, sizeof(*after) * (size_t)ctx->nkey);
		if (lk_position_values(&p, after, ctx->types, ctx->key, ctx->nkey, arena) < 0)
			after = NULL;
	}
	lk_position_release(&p);
	return after;
}

/* The position after `row` (the last key copied), or at the end of the copy (row NULL). */
static void snapshot_pos(struct lk_buf *pos, struct lk_job_ctx *ctx, const struct lk_value *row)
{
	struct lk_position p = {.mode = LK_POS_SNAPSHOT, .done = !row};

	lk_buf_reset(pos);
	/* A real-time job keeps the horizon taken before its snapshot began. */
	if (ctx->rt)
		p = lk_rt_position(ctx, row ? LK_PHASE_SNAPSHOT : LK_PHASE_SWEEP, &ctx->rt_start);
	else
		memcpy(p.fp, ctx->fp, sizeof(p.fp));
	if (row)
		p.vals = (struct lk_pos_values){row, ctx->types, ctx->key, ctx->nkey};
	lk_position_encode(pos, &p);
}

static bool stopped(struct lk_job_ctx *ctx)
{
	return ctx->opts && lk_flag(ctx->opts->stop);
}

/* Streams the source into the target; `plain` when the target was empty at the start. */
static int copy_text(struct lk_job_ctx *ctx, const struct lk_value *after, bool plain,
		     struct lk_err *err)
{
	struct lk_scan_spec spec = lk_job_source_spec(ctx);
	struct lk_buf pos = LK_BUF_INIT;
	struct lk_rows rows[2]; /* one being read while the other commits */
	struct lk_pipeline *pipe;
	struct lk_scan *scan;
	int rc = -1, n, cur = 0;

	spec.after = after;
	scan = ctx->src.ops->scan_open(ctx->src.conn, &spec, err);
	if (!scan)
		return -1;
	pipe = lk_pipeline_start(ctx, plain, "snapshot", err);
	if (!pipe) {
		ctx->src.ops->scan_close(scan);
		return -1;
	}
	lk_rows_init(&rows[0], ctx->ncols);
	lk_rows_init(&rows[1], ctx->ncols);
	for (;; cur ^= 1) {
		if (stopped(ctx)) {
			lk_err_set(err, LK_ERR_CANCELLED, "stopped at a batch boundary");
			goto out;
		}
		/* rows[cur] is free: the writer finished it before the last submit returned. */
		lk_rows_reset(&rows[cur]);
		n = ctx->src.ops->scan_next(scan, &rows[cur], lk_sync_batch(ctx->job), err);
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		ctx->prog.rows_read += n;
		snapshot_pos(&pos, ctx, LK_ROW(&rows[cur], rows[cur].nrows - 1));
		if (lk_pipeline_submit(pipe, &rows[cur], pos.buf, err) < 0)
			goto out;
		lk_job_report(ctx, false);
	}
	rc = 0;
out:
	/* On our own error keep err; otherwise report the writer's. */
	if (lk_pipeline_finish(pipe, rc == 0 ? err : NULL) < 0)
		rc = -1;
	ctx->src.ops->scan_close(scan);
	lk_rows_release(&rows[0]);
	lk_rows_release(&rows[1]);
	lk_buf_release(&pos);
	return rc;
}

/*
 * The binary fast path (docs/ARCHITECTURE.md, data flow step 4): both ends PostgreSQL, every synced
 * column of the same type on both (format_type), none of a type lockstep passes through as text
 * (arrays, enums and composites carry type ids or layouts in binary), a key the binary
 * decoder reads (integers but oid, text, uuid), and no open dead letters (a clean write
 * resolves them by key, which needs the rows as text).
 */
static bool binary_ok(const struct lk_job_ctx *ctx)
{
	if (!ctx->src.ops->copy_out_open || !ctx->dst.ops->upsert_copy || ctx->dl_nopen > 0)
		return false;
	for (int i = 0; i < ctx->ncols; i++) {
		int sc = lk_table_col(&ctx->sdesc, ctx->cols[i]);
		int tc = lk_table_col(&ctx->tdesc, ctx->cols[i]);

		if (sc < 0 || tc < 0 || ctx->sdesc.cols[sc].type == LK_T_OTHER ||
		    strcmp(ctx->sdesc.cols[sc].native, ctx->tdesc.cols[tc].native) != 0)
			return false;
	}
	for (int k = 0; k < ctx->nkey; k++) {
		int sc = lk_table_col(&ctx->sdesc, ctx->cols[ctx->key[k]]);
		enum lk_type t = ctx->types[ctx->key[k]];

		if ((t != LK_T_INT && t != LK_T_TEXT && t != LK_T_UUID) ||
		    strcmp(ctx->sdesc.cols[sc].native, "oid") == 0)
			return false;
	}
	return true;
}

/*
 * copy_all's fast path: binary COPY batches, each still one fenced target transaction.
 * Returns 0 when done, -1 on an error, 1 when the target rejected a row and the job has
 * a dead-letter queue: *resumed then says whether `resume` (one row, key columns set)
 * holds the last key committed, and the caller goes on after it by the text path, which
 * isolates the row.
 */
static int copy_binary(struct lk_job_ctx *ctx, const struct lk_value *after, bool plain,
		       struct lk_rows *resume, bool *resumed, struct lk_err *err)
{
	struct lk_scan_spec spec = lk_job_source_spec(ctx);
	struct lk_buf pos = LK_BUF_INIT;
	struct lk_copy_batch b[2]; /* one being read while the other commits */
	struct lk_pipeline *pipe;
	struct lk_copy_out *scan;
	bool submitted = false, writer_failed = false;
	int64_t read0 = ctx->prog.rows_read, committed = 0;
	int rc = -1, n, cur = 0;

	spec.after = after;
	scan = ctx->src.ops->copy_out_open(ctx->src.conn, &spec, err);
	if (!scan)
		return -1;
	pipe = lk_pipeline_start(ctx, plain, "snapshot", err);
	if (!pipe) {
		ctx->src.ops->copy_out_close(scan);
		return -1;
	}
	lk_log_info("job %s: copying in PostgreSQL's binary format (the same column types on "
		    "both sides)",
		    ctx->job->name);
	lk_copy_batch_init(&b[0], ctx->ncols);
	lk_copy_batch_init(&b[1], ctx->ncols);
	for (;; cur ^= 1) {
		if (stopped(ctx)) {
			lk_err_set(err, LK_ERR_CANCELLED, "stopped at a batch boundary");
			goto out;
		}
		/* b[cur] is free: the writer finished it before the last submit returned. */
		lk_copy_batch_reset(&b[cur]);
		n = ctx->src.ops->copy_out_next(scan, &b[cur], lk_sync_batch(ctx->job), err);
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		ctx->prog.rows_read += n;
		snapshot_pos(&pos, ctx, LK_ROW(&b[cur].last, 0));
		if (lk_pipeline_submit_copy(pipe, &b[cur], pos.buf, err) < 0) {
			writer_failed = true;
			goto out;
		}
		if (submitted) { /* the submit waited for the previous batch: it is committed */
			lk_rows_reset(resume);
			lk_rows_copy_row(resume, &b[cur ^ 1].last, 0);
			*resumed = true;
			committed += b[cur ^ 1].nrows;
		}
		submitted = true;
		lk_job_report(ctx, false);
	}
	rc = 0;
out:
	/* On our own error keep err; otherwise report the writer's. */
	if (lk_pipeline_finish(pipe, rc == 0 ? err : NULL) < 0 && rc == 0) {
		writer_failed = true;
		rc = -1;
	}
	ctx->src.ops->copy_out_close(scan);
	lk_copy_batch_release(&b[0]);
	lk_copy_batch_release(&b[1]);
	lk_buf_release(&pos);
	if (rc < 0 && writer_failed && ctx->store && lk_err_is_row_level(err)) {
		ctx->prog.rows_read = read0 + committed; /* the rest is read again */
		return 1;
	}
	return rc;
}

static int copy_all(struct lk_job_ctx *ctx, const struct lk_value *after, bool plain,
		    struct lk_err *err)
{
	struct lk_rows resume;
	struct lk_value *from;
	bool resumed = false;
	int rc;

	if (!binary_ok(ctx))
		return copy_text(ctx, after, plain, err);
	lk_rows_init(&resume, ctx->ncols);
	rc = copy_binary(ctx, after, plain, &resume, &resumed, err);
	if (rc == 1) {
		lk_log_info("job %s: the target rejected a row (%s); going on row by row from the "
			    "last committed batch, to set the failing rows aside",
			    ctx->job->name, err->sqlstate);
		*err = (struct lk_err)LK_ERR_INIT;
		from = (struct lk_value *)after;
		if (resumed) {
			from = lk_arena_alloc(&resume.arena, sizeof(*from) * (size_t)ctx->nkey);
			for (int k = 0; k < ctx->nkey; k++)
				from[k] = LK_ROW(&resume, 0)[ctx->key[k]];
		}
		rc = copy_text(ctx, from, plain, err);
	}
	lk_rows_release(&resume);
	return rc;
}

/* Collects into `dels` the target keys of `page` that the source (with where) lacks. */
static int missing_in_source(struct lk_job_ctx *ctx, const struct lk_scan_spec *keyspec,
			     const struct lk_rows *page, struct lk_rows *dels, struct lk_err *err)
{
	struct lk_rows found;
	struct lk_keyset have;
	struct lk_buf k = LK_BUF_INIT;
	int rc;

	lk_rows_init(&found, ctx->nkey);
	lk_keyset_init(&have);
	rc = ctx->src.ops->fetch(ctx->src.conn, keyspec, page, &found, err);
	for (int r = 0; rc == 0 && r < found.nrows; r++) {
		lk_buf_reset(&k);
		lk_key_canon(&k, LK_ROW(&found, r), keyspec->types, keyspec->order, ctx->nkey);
		lk_keyset_add(&have, k.buf, k.len, 0);
	}
	for (int r = 0; rc == 0 && r < page->nrows; r++) {
		const struct lk_value *row = LK_ROW(page, r);

		lk_buf_reset(&k);
		lk_key_canon(&k, row, keyspec->types, keyspec->order, ctx->nkey);
		if (lk_keyset_find(&have, k.buf))
			continue;
		lk_rows_add(dels);
		for (int i = 0; i < ctx->nkey; i++) {
			if (!row[i].null)
				lk_rows_set(dels, dels->nrows - 1, ctx->key[i], row[i].p,
					    row[i].len);
		}
	}
	lk_rows_release(&found);
	lk_keyset_release(&have);
	lk_buf_release(&k);
	return rc;
}

/* snapshot_deletes: removes target rows whose keys the source (with where) lacks. */
static int sweep(struct lk_job_ctx *ctx, struct lk_err *err)
{
	const char **kcols = lk_xcalloc((size_t)ctx->nkey, sizeof(char *));
	enum lk_type *ktypes = lk_xcalloc((size_t)ctx->nkey, sizeof(enum lk_type));
	int *korder = lk_xcalloc((size_t)ctx->nkey, sizeof(int));
	struct lk_scan_spec tspec = {0}, sspec;
	struct lk_rows page, dels, last;
	struct lk_buf pos = LK_BUF_INIT;
	int rc = 0;

	for (int k = 0; k < ctx->nkey; k++) {
		kcols[k] = ctx->cols[ctx->key[k]];
		ktypes[k] = ctx->types[ctx->key[k]];
		korder[k] = k;
	}
	tspec = (struct lk_scan_spec){.table = &ctx->job->target.table,
				      .cols = kcols,
				      .types = ktypes,
				      .ncols = ctx->nkey,
				      .order = korder,
				      .norder = ctx->nkey};
	sspec = tspec;
	sspec.table = &ctx->job->source.table;
	sspec.filter = ctx->job->source.where;
	lk_rows_init(&page, ctx->nkey);
	lk_rows_init(&dels, ctx->ncols);
	lk_rows_init(&last, ctx->nkey);
	ctx->prog.stage = "sweep";
	snapshot_pos(&pos, ctx, NULL);
	while (rc == 0) {
		struct lk_scan *scan = ctx->dst.ops->scan_open(ctx->dst.conn, &tspec, err);
		int limit = lk_sync_batch(ctx->job);
		int n;

		lk_rows_reset(&page);
		n = scan ? ctx->dst.ops->scan_next(scan, &page, limit, err) : -1;
		ctx->dst.ops->scan_close(scan);
		if (n <= 0) {
			rc = n < 0 ? -1 : 0;
			break;
		}
		lk_rows_reset(&dels);
		rc = missing_in_source(ctx, &sspec, &page, &dels, err);
		if (rc == 0 && dels.nrows)
			rc = lk_apply_batch(ctx,
					    &(struct lk_batch){.deletes = &dels,
							       .pos = pos.buf,
							       .change = "sweep"},
					    err);
		lk_rows_reset(&last);
		lk_rows_copy_row(&last, &page, page.nrows - 1);
		tspec.after = LK_ROW(&last, 0);
		if (n < limit)
			break;
	}
	lk_rows_release(&page);
	lk_rows_release(&dels);
	lk_rows_release(&last);
	lk_buf_release(&pos);
	free(kcols);
	free(ktypes);
	free(korder);
	return rc;
}

int lk_snapshot_copy(struct lk_job_ctx *ctx, bool deletes, struct lk_err *err)
{
	struct lk_arena arena;
	struct lk_value *after;
	bool plain = false;
	int rc = -1;

	lk_arena_init(&arena, 4096);
	after = resume_key(ctx, &arena);
	if (after) {
		lk_log_info("job %s: resuming the snapshot after the last committed key",
			    ctx->job->name);
	} else if (ctx->dst.ops->is_empty(ctx->dst.conn, &ctx->job->target.table, &plain, err) <
		   0) {
		goto out;
	}
	ctx->prog.stage = "snapshot";
	if (copy_all(ctx, after, plain, err) < 0)
		goto out;
	if (deletes && !plain && sweep(ctx, err) < 0)
		goto out;
	rc = 0;
out:
	lk_arena_release(&arena);
	return rc;
}

int lk_snapshot_sweep(struct lk_job_ctx *ctx, struct lk_err *err)
{
	return sweep(ctx, err);
}

int lk_snapshot_run(struct lk_job_ctx *ctx, struct lk_err *err)
{
	struct lk_buf pos = LK_BUF_INIT;
	int rc = -1;

	if (lk_snapshot_copy(ctx, ctx->job->snapshot_deletes, err) < 0)
		goto out;
	snapshot_pos(&pos, ctx, NULL);
	rc = lk_apply_batch(ctx, &(struct lk_batch){.pos = pos.buf}, err);
	free(ctx->pos);
	ctx->pos = lk_buf_detach(&pos, NULL);
out:
	lk_buf_release(&pos);
	return rc;
}
