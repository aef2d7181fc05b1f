/*
 * verify.c - compare source and target without trusting the sync path: source
 * pages in key order, the target fetched by the same explicit keys, every value
 * hashed in its canonical encoding; then the target's keys checked against the
 * source to find extras.
 */
#include "sync_int.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define LK_LOG_COMPONENT "verify"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"
#include "keyset.h"

struct verify_state {
	struct lk_job_ctx *ctx;
	struct lk_verify_result *res;
	int *all;      /* 0..ncols-1 */
	bool raw_json; /* both sides on one engine: JSON compared as stored text */
	struct lk_buf tmp;
	struct lk_keyset ks;
	const char *live; /* deletes: soft:COL -> "COL IS NULL": soft-deleted rows are absent */
};

static uint64_t row_hash(struct verify_state *vs, const struct lk_value *row)
{
	lk_buf_reset(&vs->tmp);
	lk_row_canon(&vs->tmp, row, vs->ctx->types, vs->all, vs->ctx->ncols, vs->raw_json);
	return XXH3_64bits(vs->tmp.buf, vs->tmp.len);
}

static void add_diff(struct verify_state *vs, enum lk_diff_kind kind, const struct lk_value *row,
		     const int *key)
{
	struct lk_verify_result *res = vs->res;
	struct lk_buf b = LK_BUF_INIT;

	res->differences++;
	res->equal = false;
	if (kind == LK_DIFF_MISSING)
		res->missing++;
	if (res->ndiffs == LK_VERIFY_MAX_DIFFS)
		return;
	lk_pos_add_values(&b, row, vs->ctx->types, key, vs->ctx->nkey);
	res->diffs[res->ndiffs].kind = kind;
	res->diffs[res->ndiffs].key_json = lk_buf_detach(&b, NULL);
	res->ndiffs++;
}

/* Compares one source page with the target rows of the same keys. */
static int compare_page(struct verify_state *vs, const struct lk_rows *page, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_scan_spec tspec = {.table = &ctx->job->target.table,
				     .cols = ctx->cols,
				     .types = ctx->types,
				     .ncols = ctx->ncols,
				     .order = ctx->key,
				     .norder = ctx->nkey,
				     .filter = vs->live};
	struct lk_rows keys, trows;
	uint64_t hs = 0, ht = 0;
	int rc;

	lk_rows_init(&keys, ctx->nkey);
	lk_rows_init(&trows, ctx->ncols);
	for (int r = 0; r < page->nrows; r++) {
		const struct lk_value *row = LK_ROW(page, r);

		lk_rows_add(&keys);
		for (int k = 0; k < ctx->nkey; k++) {
			if (!row[ctx->key[k]].null)
				lk_rows_set(&keys, r, k, row[ctx->key[k]].p, row[ctx->key[k]].len);
		}
	}
	rc = ctx->dst.ops->fetch(ctx->dst.conn, &tspec, &keys, &trows, err);
	lk_keyset_reset(&vs->ks);
	for (int r = 0; rc == 0 && r < trows.nrows; r++) {
		uint64_t h = row_hash(vs, LK_ROW(&trows, r));

		ht ^= h;
		lk_buf_reset(&vs->tmp);
		lk_key_canon(&vs->tmp, LK_ROW(&trows, r), ctx->types, ctx->key, ctx->nkey);
		lk_keyset_add(&vs->ks, vs->tmp.buf, vs->tmp.len, h);
	}
	for (int r = 0; rc == 0 && r < page->nrows; r++)
		hs ^= row_hash(vs, LK_ROW(page, r));
	vs->res->chunks++;
	if (rc == 0 && (hs != ht || trows.nrows != page->nrows)) {
		vs->res->chunks_differing++;
		for (int r = 0; r < page->nrows; r++) {
			const struct lk_value *row = LK_ROW(page, r);
			uint64_t h = row_hash(vs, row);
			struct lk_keyset_item *it;

			lk_buf_reset(&vs->tmp);
			lk_key_canon(&vs->tmp, row, ctx->types, ctx->key, ctx->nkey);
			it = lk_keyset_find(&vs->ks, vs->tmp.buf);
			if (!it)
				add_diff(vs, LK_DIFF_MISSING, row, ctx->key);
			else if (it->payload != h)
				add_diff(vs, LK_DIFF_CHANGED, row, ctx->key);
		}
	}
	lk_rows_release(&keys);
	lk_rows_release(&trows);
	return rc;
}

static int pass_source(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_scan_spec spec = {.table = &ctx->job->source.table,
				    .cols = ctx->cols,
				    .types = ctx->types,
				    .ncols = ctx->ncols,
				    .order = ctx->key,
				    .norder = ctx->nkey,
				    .filter = ctx->job->source.where};
	struct lk_scan *scan = ctx->src.ops->scan_open(ctx->src.conn, &spec, err);
	struct lk_rows page;
	int n, rc = 0;

	if (!scan)
		return -1;
	lk_rows_init(&page, ctx->ncols);
	while (rc == 0) {
		lk_rows_reset(&page);
		n = ctx->src.ops->scan_next(scan, &page, 1000, err);
		if (n <= 0) {
			rc = n;
			break;
		}
		vs->res->source_rows += n;
		ctx->prog.rows_read += n;
		rc = compare_page(vs, &page, err);
		lk_job_report(ctx, false);
	}
	ctx->src.ops->scan_close(scan);
	lk_rows_release(&page);
	return rc;
}

/* Target keys the source lacks (or that no longer match `where`) are extras. */
static int pass_target(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	int nk = ctx->nkey, n, rc = 0;
	const char **kcols = lk_xcalloc((size_t)nk, sizeof(char *));
	enum lk_type *kt = lk_xcalloc((size_t)nk, sizeof(enum lk_type));
	int *ko = lk_xcalloc((size_t)nk, sizeof(int));
	struct lk_scan_spec tspec, sspec;
	struct lk_rows page, found;
	struct lk_scan *scan;

	for (int k = 0; k < nk; k++) {
		kcols[k] = ctx->cols[ctx->key[k]];
		kt[k] = ctx->types[ctx->key[k]];
		ko[k] = k;
	}
	tspec = (struct lk_scan_spec){.table = &ctx->job->target.table,
				      .cols = kcols,
				      .types = kt,
				      .ncols = nk,
				      .order = ko,
				      .norder = nk,
				      .filter = vs->live};
	sspec = tspec;
	sspec.table = &ctx->job->source.table;
	sspec.filter = ctx->job->source.where;
	lk_rows_init(&page, nk);
	lk_rows_init(&found, nk);
	scan = ctx->dst.ops->scan_open(ctx->dst.conn, &tspec, err);
	while (scan && rc == 0) {
		lk_rows_reset(&page);
		lk_rows_reset(&found);
		n = ctx->dst.ops->scan_next(scan, &page, 1000, err);
		if (n <= 0) {
			rc = n;
			break;
		}
		vs->res->target_rows += n;
		rc = ctx->src.ops->fetch(ctx->src.conn, &sspec, &page, &found, err);
		lk_keyset_reset(&vs->ks);
		for (int r = 0; rc == 0 && r < found.nrows; r++) {
			lk_buf_reset(&vs->tmp);
			lk_key_canon(&vs->tmp, LK_ROW(&found, r), kt, ko, nk);
			lk_keyset_add(&vs->ks, vs->tmp.buf, vs->tmp.len, 0);
		}
		for (int r = 0; rc == 0 && r < page.nrows; r++) {
			lk_buf_reset(&vs->tmp);
			lk_key_canon(&vs->tmp, LK_ROW(&page, r), kt, ko, nk);
			if (!lk_keyset_find(&vs->ks, vs->tmp.buf))
				add_diff(vs, LK_DIFF_EXTRA, LK_ROW(&page, r), ko);
		}
	}
	if (!scan)
		rc = -1;
	ctx->dst.ops->scan_close(scan);
	lk_rows_release(&page);
	lk_rows_release(&found);
	free(kcols);
	free(kt);
	free(ko);
	return rc;
}

/* Counts the target's rows; -1 on error. */
static int64_t count_target(struct lk_job_ctx *ctx, const char *live, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows out;
	int64_t n = -1;

	lk_buf_adds(&sql, "SELECT count(*) FROM ");
	lk_quote_tref_for(&sql, &ctx->job->target.table, ctx->cfg->dbs[ctx->job->target.db].kind);
	if (live)
		lk_buf_addf(&sql, " WHERE %s", live);
	lk_rows_init(&out, 1);
	if (ctx->dst.ops->exec(ctx->dst.conn, sql.buf, 0, NULL, &out, NULL, err) == 0 &&
	    out.nrows == 1 && lk_int64_parse(LK_ROW(&out, 0)[0].p, &n) < 0)
		n = -1;
	lk_rows_release(&out);
	lk_buf_release(&sql);
	return n;
}

int lk_verify_run(const struct lk_config *cfg, const struct lk_job *job,
		  const struct lk_sync_opts *opts, struct lk_verify_result *res, struct lk_err *err)
{
	struct lk_job_ctx ctx;
	struct verify_state vs;
	struct lk_buf live = LK_BUF_INIT;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	memset(&vs, 0, sizeof(vs));
	res->equal = true;
	if (lk_job_prepare(&ctx, cfg, job, opts, false, err) < 0)
		goto out;
	if (ctx.target_missing) {
		char name[256];

		lk_tref_format(&job->target.table, name, sizeof(name));
		lk_err_set(err, LK_ERR_SCHEMA,
			   "target table %s does not exist yet: run 'lockstep sync %s' first", name,
			   job->name);
		goto out;
	}
	vs.ctx = &ctx;
	vs.raw_json = ctx.src.ops == ctx.dst.ops;
	vs.res = res;
	vs.all = lk_xcalloc((size_t)ctx.ncols, sizeof(int));
	for (int i = 0; i < ctx.ncols; i++)
		vs.all[i] = i;
	lk_buf_init(&vs.tmp);
	lk_keyset_init(&vs.ks);
	if (ctx.w.soft_column) {
		lk_quote_ident(&live, ctx.w.soft_column);
		lk_buf_adds(&live, " IS NULL");
		vs.live = live.buf;
	}
	ctx.prog.stage = "verify";
	if (pass_source(&vs, err) < 0)
		goto out;
	/*
	 * Every source key was found in the target (no "missing"): if the target holds
	 * exactly as many rows, it can hold no other key, and the extras pass is skipped.
	 */
	if (res->missing == 0) {
		int64_t n = count_target(&ctx, vs.live, err);

		if (n < 0)
			goto out;
		if (n == res->source_rows && res->chunks_differing == 0) {
			res->target_rows = n;
			res->elapsed_ms = lk_mono_ms() - ctx.start_mono_ms;
			rc = 0;
			goto out;
		}
	}
	if (pass_target(&vs, err) < 0)
		goto out;
	if (res->chunks_differing > 0 || res->source_rows != res->target_rows)
		res->equal = false; /* e.g. a duplicated source key: counts differ, no key does */
	res->elapsed_ms = lk_mono_ms() - ctx.start_mono_ms;
	rc = 0;
out:
	lk_buf_release(&live);
	free(vs.all);
	lk_buf_release(&vs.tmp);
	lk_keyset_release(&vs.ks);
	lk_job_release(&ctx);
	return rc;
}

void lk_verify_result_release(struct lk_verify_result *res)
{
	for (int i = 0; i < res->ndiffs; i++)
		free(res->diffs[i].key_json);
	res->ndiffs = 0;
}
