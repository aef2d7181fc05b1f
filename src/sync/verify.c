/*
 * verify.c - compare source and target without trusting the sync path: source
 * pages in key order, the target fetched by the same explicit keys, every value
 * hashed in its canonical encoding; then the target's keys checked against the
 * source to find extras. The keys that differ go to verify_fix.c, which checks them
 * again once the job has applied past them and repairs them when asked.
 */
#include "verify_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define LK_LOG_COMPONENT "verify"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"

uint64_t lk_verify_row_hash(struct verify_state *vs, const struct lk_value *row)
{
	lk_buf_reset(&vs->tmp);
	lk_row_canon(&vs->tmp, row, vs->ctx->types, vs->all, vs->ctx->ncols, vs->raw_json);
	return XXH3_64bits(vs->tmp.buf, vs->tmp.len);
}

/*
 * The pass's load on the source, before each page: rows read so far at most vo->rate a
 * second since the pass began, and a wait (10 s at most) while the job's own run goes.
 */
static void pace(struct verify_state *vs)
{
	const struct lk_verify_opts *vo = vs->vo;
	volatile const bool *stop = vs->ctx->opts ? vs->ctx->opts->stop : NULL;
	int64_t rows = vs->res->source_rows + vs->res->target_rows, due, now;

	if (!vo)
		return;
	if (vo->busy) {
		int64_t until = lk_mono_ms() + 10000;

		while (vo->busy(vo->hold_arg) && lk_mono_ms() < until && !lk_flag(stop))
			lk_sleep_ms(50, stop);
	}
	if (vo->rate <= 0)
		return;
	due = vs->paced_ms + rows * 1000 / vo->rate; /* when these rows may have been read */
	now = lk_mono_ms();
	if (due > now)
		lk_sleep_ms(due - now, stop);
}

/* Holds the key of row (whose key columns are at `key`) for the settle; settles a full set. */
static int pend_key(struct verify_state *vs, const struct lk_value *row, const int *key,
		    enum lk_diff_kind kind, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	int r = vs->pend.nrows;

	lk_rows_add(&vs->pend);
	for (int k = 0; k < ctx->nkey; k++) {
		if (!row[key[k]].null)
			lk_rows_set(&vs->pend, r, ctx->key[k], row[key[k]].p, row[key[k]].len);
	}
	lk_rows_set(&vs->pend, r, ctx->ncols, &lk_verify_kind_letter[kind], 1);
	(void)err;
	return 0;
}

/* Whether the pending keys are many enough to settle before reading on. */
static bool pend_full(const struct verify_state *vs)
{
	return vs->pend.nrows >= LK_VERIFY_PEND_MAX;
}

/*
 * Settles the pending keys in the middle of a pass. The settle reads and writes on the
 * pass's connections, which run nothing else while a scan is open: the scan is closed
 * first and opened again after row's key (its key columns at idx), where it stopped.
 */
static int settle_midway(struct verify_state *vs, struct lk_db *db, struct lk_scan **scan,
			 struct lk_scan_spec *spec, const struct lk_value *row, const int *idx,
			 struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;

	lk_rows_reset(&vs->resume);
	lk_rows_add(&vs->resume);
	for (int k = 0; k < ctx->nkey; k++) {
		if (!row[idx[k]].null)
			lk_rows_set(&vs->resume, 0, k, row[idx[k]].p, row[idx[k]].len);
	}
	db->ops->scan_close(*scan);
	*scan = NULL;
	if (lk_verify_settle(vs, err) < 0)
		return -1;
	spec->after = LK_ROW(&vs->resume, 0);
	*scan = db->ops->scan_open(db->conn, spec, err);
	return *scan ? 0 : -1;
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
		uint64_t h = lk_verify_row_hash(vs, LK_ROW(&trows, r));

		ht ^= h;
		lk_buf_reset(&vs->tmp);
		lk_key_canon(&vs->tmp, LK_ROW(&trows, r), ctx->types, ctx->key, ctx->nkey);
		lk_keyset_add(&vs->ks, vs->tmp.buf, vs->tmp.len, h);
	}
	for (int r = 0; rc == 0 && r < page->nrows; r++)
		hs ^= lk_verify_row_hash(vs, LK_ROW(page, r));
	vs->res->chunks++;
	if (rc == 0 && (hs != ht || trows.nrows != page->nrows)) {
		vs->res->chunks_differing++;
		for (int r = 0; rc == 0 && r < page->nrows; r++) {
			const struct lk_value *row = LK_ROW(page, r);
			uint64_t h = lk_verify_row_hash(vs, row);
			struct lk_keyset_item *it;

			lk_buf_reset(&vs->tmp);
			lk_key_canon(&vs->tmp, row, ctx->types, ctx->key, ctx->nkey);
			it = lk_keyset_find(&vs->ks, vs->tmp.buf);
			if (!it)
				vs->pass_missing++;
			if (!it || it->payload != h)
				rc = pend_key(vs, row, ctx->key,
					      it ? LK_DIFF_CHANGED : LK_DIFF_MISSING, err);
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
		pace(vs);
		if (ctx->opts && lk_flag(ctx->opts->stop)) {
			rc = lk_err_set(err, LK_ERR_CANCELLED, "verify stopped");
			break;
		}
		lk_rows_reset(&page);
		n = ctx->src.ops->scan_next(scan, &page, lk_sync_batch(ctx->job), err);
		if (n <= 0) {
			rc = n;
			break;
		}
		vs->res->source_rows += n;
		ctx->prog.rows_read += n;
		rc = compare_page(vs, &page, err);
		if (rc == 0 && pend_full(vs))
			rc = settle_midway(vs, &ctx->src, &scan, &spec, LK_ROW(&page, n - 1),
					   ctx->key, err);
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
		pace(vs);
		if (ctx->opts && lk_flag(ctx->opts->stop)) {
			rc = lk_err_set(err, LK_ERR_CANCELLED, "verify stopped");
			break;
		}
		lk_rows_reset(&page);
		lk_rows_reset(&found);
		n = ctx->dst.ops->scan_next(scan, &page, lk_sync_batch(ctx->job), err);
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
				rc = pend_key(vs, LK_ROW(&page, r), ko, LK_DIFF_EXTRA, err);
		}
		if (rc == 0 && pend_full(vs))
			rc = settle_midway(vs, &ctx->dst, &scan, &tspec, LK_ROW(&page, n - 1), ko,
					   err);
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
int64_t lk_verify_count(struct verify_state *vs, bool target, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	const struct lk_tref *t = target ? &ctx->job->target.table : &ctx->job->source.table;
	const char *filter = target ? vs->live : ctx->job->source.where;
	struct lk_db *db = target ? &ctx->dst : &ctx->src;
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows out;
	int64_t n = -1;

	lk_buf_adds(&sql, "SELECT count(*) FROM ");
	lk_quote_tref_for(&sql, t, db->conf->kind);
	if (filter)
		lk_buf_addf(&sql, " WHERE (%s)", filter);
	lk_rows_init(&out, 1);
	if (db->ops->exec(db->conn, sql.buf, 0, NULL, &out, NULL, err) == 0 &&
	    (out.nrows != 1 || lk_int64_parse(LK_ROW(&out, 0)[0].p, &n) < 0))
		n = lk_err_set(err, LK_ERR_INTERNAL, "unexpected answer to: %s", sql.buf);
	lk_rows_release(&out);
	lk_buf_release(&sql);
	return n;
}

/* ---- the merge: both sides read in key order at once ---- */

/*
 * Keys of integers only: both engines order them alike, by value, and one value has one
 * spelling, so source and target can be read side by side in key order and merged,
 * without a fetch by keys (and a pass that settles midway resumes both after the same
 * key). Other keys are not: text sorts by each database's collation, and an SQLite
 * target can hold one uuid or time in two spellings (upper and lower case), which a scan
 * bound on the spelling could skip.
 */
static bool merge_ok(const struct lk_job_ctx *ctx)
{
	for (int k = 0; k < ctx->nkey; k++) {
		if (ctx->types[ctx->key[k]] != LK_T_INT)
			return false;
	}
	return true;
}

struct side {
	const struct lk_connector_ops *ops;
	struct lk_scan *scan;
	struct lk_rows page;
	int i;
	bool done;
	int64_t *count;
};

/* The side's current row (NULL at its end), reading its next page when needed. */
static int side_row(struct verify_state *vs, struct side *s, const struct lk_value **row,
		    struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	int n;

	*row = NULL;
	if (s->done)
		return 0;
	if (s->i == s->page.nrows) {
		pace(vs);
		if (ctx->opts && lk_flag(ctx->opts->stop))
			return lk_err_set(err, LK_ERR_CANCELLED, "verify stopped");
		lk_rows_reset(&s->page);
		n = s->ops->scan_next(s->scan, &s->page, lk_sync_batch(ctx->job), err);
		if (n < 0)
			return -1;
		s->i = 0;
		*s->count += n;
		if (s->count == &vs->res->source_rows) {
			ctx->prog.rows_read += n;
			vs->res->chunks += n > 0;
			vs->page_differs = false;
			lk_job_report(ctx, false);
		}
		if (n == 0) {
			s->done = true;
			return 0;
		}
	}
	*row = LK_ROW(&s->page, s->i);
	return 0;
}

/* Orders two rows by their integer keys (a value that is not an integer: as text). */
static int key_cmp(const struct lk_job_ctx *ctx, const struct lk_value *a, const struct lk_value *b)
{
	for (int k = 0; k < ctx->nkey; k++) {
		const struct lk_value *x = &a[ctx->key[k]], *y = &b[ctx->key[k]];
		int64_t m = 0, n = 0;

		if (x->null || y->null || ctx->types[ctx->key[k]] != LK_T_INT ||
		    lk_int64_parse(x->p, &m) < 0 || lk_int64_parse(y->p, &n) < 0) {
			int c = strcmp(x->null ? "" : x->p, y->null ? "" : y->p);

			if (c)
				return c < 0 ? -1 : 1;
			continue;
		}
		if (m != n)
			return m < n ? -1 : 1;
	}
	return 0;
}

/* Rows alike byte for byte are equal (their canonical encodings are): no hash needed. */
static bool same_bytes(const struct lk_job_ctx *ctx, const struct lk_value *a,
		       const struct lk_value *b)
{
	for (int c = 0; c < ctx->ncols; c++) {
		if (a[c].null != b[c].null || a[c].len != b[c].len ||
		    (!a[c].null && memcmp(a[c].p, b[c].p, a[c].len) != 0))
			return false;
	}
	return true;
}

/* A difference the merge met: held for the settle (its chunk counted once). */
static int merge_diff(struct verify_state *vs, const struct lk_value *row, enum lk_diff_kind kind,
		      struct lk_err *err)
{
	if (!vs->page_differs)
		vs->res->chunks_differing++;
	vs->page_differs = true;
	if (kind == LK_DIFF_MISSING)
		vs->pass_missing++;
	return pend_key(vs, row, vs->ctx->key, kind, err);
}

/* One step of the merge: *more false once both sides are read; *done the row consumed
 * last (the keys up to its own are compared on both sides). */
static int merge_step(struct verify_state *vs, struct side *s, struct side *t, bool extras,
		      bool *more, const struct lk_value **done, struct lk_err *err)
{
	const struct lk_value *a, *b;
	int c;

	if (side_row(vs, s, &a, err) < 0 || side_row(vs, t, &b, err) < 0)
		return -1;
	*more = a || b;
	if (!a && !b)
		return 0;
	c = !a ? 1 : !b ? -1 : key_cmp(vs->ctx, a, b);
	*done = c > 0 ? b : a;
	if (c < 0) {
		s->i++;
		return merge_diff(vs, a, LK_DIFF_MISSING, err);
	}
	if (c > 0) {
		t->i++;
		return extras ? merge_diff(vs, b, LK_DIFF_EXTRA, err) : 0;
	}
	s->i++;
	t->i++;
	if (!same_bytes(vs->ctx, a, b) && lk_verify_row_hash(vs, a) != lk_verify_row_hash(vs, b))
		return merge_diff(vs, a, LK_DIFF_CHANGED, err);
	return 0;
}

/* The merge's settle midway (settle_midway): both scans closed, and both opened again
 * after the key consumed last. spec is the target's. */
static int merge_midway(struct verify_state *vs, struct side *s, struct side *t,
			struct lk_scan_spec *spec, const struct lk_value *done, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_scan_spec sspec = lk_job_source_spec(ctx);

	ctx->src.ops->scan_close(s->scan);
	s->scan = NULL;
	if (settle_midway(vs, &ctx->dst, &t->scan, spec, done, ctx->key, err) < 0)
		return -1;
	sspec.after = spec->after;
	s->scan = ctx->src.ops->scan_open(ctx->src.conn, &sspec, err);
	lk_rows_reset(&s->page);
	lk_rows_reset(&t->page);
	s->i = t->i = 0;
	s->done = t->done = false;
	return s->scan ? 0 : -1;
}

static int pass_merge(struct verify_state *vs, bool extras, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_scan_spec spec = lk_job_source_spec(ctx);
	struct side s = {.ops = ctx->src.ops, .count = &vs->res->source_rows};
	struct side t = {.ops = ctx->dst.ops, .count = &vs->res->target_rows};
	bool more = true;
	int rc = 0;

	lk_rows_init(&s.page, ctx->ncols);
	lk_rows_init(&t.page, ctx->ncols);
	s.scan = ctx->src.ops->scan_open(ctx->src.conn, &spec, err);
	spec.table = &ctx->job->target.table;
	spec.filter = vs->live;
	t.scan = s.scan ? ctx->dst.ops->scan_open(ctx->dst.conn, &spec, err) : NULL;
	if (!s.scan || !t.scan)
		rc = -1;
	while (rc == 0 && more) {
		const struct lk_value *done = NULL;

		rc = merge_step(vs, &s, &t, extras, &more, &done, err);
		if (rc == 0 && done && pend_full(vs))
			rc = merge_midway(vs, &s, &t, &spec, done, err);
	}
	ctx->dst.ops->scan_close(t.scan);
	ctx->src.ops->scan_close(s.scan);
	lk_rows_release(&s.page);
	lk_rows_release(&t.page);
	return rc;
}

/* Records the pass as a run (vo->record) when it starts (fin false) and ends. */
static void record(struct verify_state *vs, bool fin, int rc, const struct lk_err *err)
{
	const struct lk_verify_opts *vo = vs->vo;
	struct lk_verify_result *res = vs->res;
	struct lk_err e2 = LK_ERR_INIT;
	struct lk_run run = {0};

	if (!vo || !vo->record || !vo->store)
		return;
	if (!fin)
		(void)snprintf(res->run_id, sizeof(res->run_id), "%s",
			       vo->run_id ? vo->run_id : "");
	if (!res->run_id[0])
		lk_uuid7(res->run_id);
	memcpy(run.id, res->run_id, sizeof(run.id));
	run.job = vs->ctx->job->name;
	run.type = vo->record;
	run.status = !fin			? "running"
		     : rc == 0			? "succeeded"
		     : err->code == LK_ERR_BUSY ? "skipped"
						: "failed";
	run.stage = vo->record;
	run.progress = fin ? 100 : -1;
	run.rows_read = res->source_rows;
	run.rows_written = res->repaired;
	run.rows_failed = vo->repair ? res->remaining : res->differences;
	run.total_estimate = -1;
	run.epoch = vs->ctx->epoch;
	run.unfenced = true;
	run.started_ms = vs->started_ms;
	run.finished_ms = fin ? lk_wall_ms() : 0;
	run.error = fin && rc < 0 ? err->msg : NULL;
	if ((fin ? lk_store_run_update(vo->store, &run, &e2)
		 : lk_store_run_insert(vo->store, &run, &e2)) < 0)
		lk_log_warn_err(&e2, "job %s: cannot record the %s run", run.job, run.type);
}

static int finish(struct verify_state *vs, bool extras, struct lk_err *err);

/* The pass: source pages, then (unless deletes: ignore) the target's extra keys. */
static int pass(struct verify_state *vs, struct lk_err *err)
{
	struct lk_verify_result *res = vs->res;
	bool extras = vs->ctx->job->target.deletes != LK_DELETES_IGNORE;

	if (merge_ok(vs->ctx)) {
		if (pass_merge(vs, extras, err) < 0)
			return -1;
		return finish(vs, extras, err);
	}
	if (pass_source(vs, err) < 0)
		return -1;
	/*
	 * Every source key was found in the target: if the target holds exactly as many rows,
	 * it can hold no other key, and the extras pass is skipped.
	 */
	if (extras && vs->pass_missing == 0) {
		int64_t n = lk_verify_count(vs, true, err);

		if (n < 0)
			return -1;
		if (n == res->source_rows && res->chunks_differing == 0) {
			res->target_rows = n;
			extras = false;
		}
	}
	if (extras && pass_target(vs, err) < 0)
		return -1;
	return finish(vs, extras, err);
}

/* After the pass: the settle (and repair), then whether the two sides are equal. */
static int finish(struct verify_state *vs, bool extras, struct lk_err *err)
{
	struct lk_verify_result *res = vs->res;

	bool agree = true;

	if (lk_verify_settle(vs, err) < 0)
		return -1;
	/* e.g. a key the target holds in two spellings, a source key held twice: the counts
	 * differ and no key does */
	if (extras && res->source_rows != res->target_rows && res->differences == 0 &&
	    lk_verify_recount(vs, &agree, err) < 0)
		return -1;
	if (!agree) {
		res->count_differs = true;
		res->differences++;
		res->remaining++;
	}
	res->equal = (vs->vo && vs->vo->repair ? res->remaining : res->differences) == 0;
	return 0;
}

static int verify_start(struct verify_state *vs, struct lk_buf *live, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;

	if (ctx->target_missing) {
		char name[256];

		lk_tref_format(&ctx->job->target.table, name, sizeof(name));
		return lk_err_set(
			err, LK_ERR_SCHEMA,
			"target table %s does not exist yet: run 'lockstep sync %s' first", name,
			ctx->job->name);
	}
	vs->raw_json = ctx->src.ops == ctx->dst.ops;
	vs->rt = ctx->job->mode == LK_MODE_REALTIME;
	vs->all = lk_xcalloc((size_t)ctx->ncols, sizeof(int));
	for (int i = 0; i < ctx->ncols; i++)
		vs->all[i] = i;
	lk_rows_set_ncols(&vs->pend, ctx->ncols + 1);
	lk_rows_set_ncols(&vs->resume, ctx->nkey);
	(void)snprintf(vs->ident, sizeof(vs->ident), "%s", ctx->job->name);
	if (vs->vo && vs->vo->store &&
	    lk_store_ident(vs->vo->store, ctx->job->name, vs->ident, err) < 0)
		return -1;
	if (ctx->w.soft_column) {
		lk_quote_ident(live, ctx->w.soft_column);
		lk_buf_adds(live, " IS NULL");
		vs->live = live->buf;
	}
	ctx->prog.stage = "verify";
	vs->paced_ms = lk_mono_ms();
	return 0;
}

int lk_verify_run(const struct lk_config *cfg, const struct lk_job *job,
		  const struct lk_sync_opts *opts, const struct lk_verify_opts *vo,
		  struct lk_verify_result *res, struct lk_err *err)
{
	struct lk_job_ctx ctx;
	struct verify_state vs;
	struct lk_buf live = LK_BUF_INIT;
	bool write = vo && vo->repair && job->mode != LK_MODE_REALTIME;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	memset(&vs, 0, sizeof(vs));
	vs.ctx = &ctx;
	vs.vo = vo;
	vs.res = res;
	vs.started_ms = lk_wall_ms();
	lk_buf_init(&vs.tmp);
	lk_keyset_init(&vs.ks);
	lk_keyset_init(&vs.ks2);
	lk_keyset_init(&vs.ks3);
	lk_rows_init(&vs.pend, 1);
	lk_rows_init(&vs.resume, 1);
	if (lk_job_prepare(&ctx, cfg, job, opts, write, err) < 0 ||
	    (write && !ctx.target_missing && lk_job_check_target(&ctx, false, err) < 0)) {
		ctx.job = job; /* for the record */
		record(&vs, false, 0, NULL);
		record(&vs, true, -1, err);
		goto out;
	}
	record(&vs, false, 0, NULL);
	if (verify_start(&vs, &live, err) == 0 &&
	    (!vs.rt || !vo || !vo->store || lk_verify_rt_ready(&vs, err) == 0) &&
	    pass(&vs, err) == 0)
		rc = 0;
	res->elapsed_ms = lk_mono_ms() - ctx.start_mono_ms;
	record(&vs, true, rc, err);
out:
	lk_verify_unlock(&vs);
	lk_buf_release(&live);
	free(vs.all);
	lk_buf_release(&vs.tmp);
	lk_keyset_release(&vs.ks);
	lk_keyset_release(&vs.ks2);
	lk_keyset_release(&vs.ks3);
	lk_rows_release(&vs.pend);
	lk_rows_release(&vs.resume);
	lk_job_release(&ctx);
	return rc;
}

void lk_verify_result_release(struct lk_verify_result *res)
{
	for (int i = 0; i < res->ndiffs; i++)
		free(res->diffs[i].key_json);
	res->ndiffs = 0;
}
