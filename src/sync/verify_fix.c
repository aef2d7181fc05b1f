/*
 * verify_fix.c - the keys a verify pass found different (docs/verify.md). Each is
 * checked again once the job has applied past the moment it was read, so that a change
 * on its way is no false alarm; only a difference that survives three such rounds is
 * one. Repairs go through the job's own path: a real-time job's keys are queued in
 * the source's changelog for its applier (which reads their current rows, in order with
 * every other change); a snapshot or poll job's are applied from their current source
 * rows in fenced batches under the job lock, its position kept (DESIGN decision 5).
 */
#include "verify_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "verify"
#include "core/log.h"
#include "core/units.h"

/* Column of a pending row (after the job's columns) that holds its kind. */
#define KIND(vs) ((vs)->ctx->ncols)
#define ROUNDS 3

const char lk_verify_kind_letter[3] = {'m', 'x', 'c'};

/* rows [from, from+n) of wide (key at the job's places) as key-order rows into keys */
static void key_rows(const struct lk_job_ctx *ctx, const struct lk_rows *wide, int from, int n,
		     struct lk_rows *keys)
{
	lk_rows_reset(keys);
	for (int r = 0; r < n; r++) {
		const struct lk_value *w = LK_ROW(wide, from + r);

		lk_rows_add(keys);
		for (int k = 0; k < ctx->nkey; k++) {
			const struct lk_value *v = &w[ctx->key[k]];

			if (!v->null)
				lk_rows_set(keys, r, k, v->p, v->len);
		}
	}
}

/* Appends row's key (the job's columns) and kind to out. */
static void keep(struct verify_state *vs, struct lk_rows *out, const struct lk_value *row,
		 enum lk_diff_kind kind)
{
	struct lk_job_ctx *ctx = vs->ctx;
	int r = out->nrows;

	lk_rows_add(out);
	for (int k = 0; k < ctx->nkey; k++) {
		const struct lk_value *v = &row[ctx->key[k]];

		if (!v->null)
			lk_rows_set(out, r, ctx->key[k], v->p, v->len);
	}
	lk_rows_set(out, r, KIND(vs), &lk_verify_kind_letter[kind], 1);
}

/* The canonical key of row, into vs->tmp. */
static const char *canon_key(struct verify_state *vs, const struct lk_value *row)
{
	lk_buf_reset(&vs->tmp);
	lk_key_canon(&vs->tmp, row, vs->ctx->types, vs->ctx->key, vs->ctx->nkey);
	return vs->tmp.buf;
}

/* One chunk of keys, both sides read now: the keys that differ go to still. */
static int recheck_chunk(struct verify_state *vs, const struct lk_rows *keys, struct lk_rows *still,
			 struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_scan_spec sspec = lk_job_source_spec(ctx);
	struct lk_scan_spec tspec = sspec;
	struct lk_rows srows, trows;
	bool extras = ctx->job->target.deletes != LK_DELETES_IGNORE;
	int rc;

	tspec.table = &ctx->job->target.table;
	tspec.filter = vs->live;
	lk_rows_init(&srows, ctx->ncols);
	lk_rows_init(&trows, ctx->ncols);
	rc = ctx->src.ops->fetch(ctx->src.conn, &sspec, keys, &srows, err);
	if (rc == 0)
		rc = ctx->dst.ops->fetch(ctx->dst.conn, &tspec, keys, &trows, err);
	lk_keyset_reset(&vs->ks);
	lk_keyset_reset(&vs->ks2);
	for (int r = 0; rc == 0 && r < trows.nrows; r++) {
		uint64_t h = lk_verify_row_hash(vs, LK_ROW(&trows, r));
		const char *k = canon_key(vs, LK_ROW(&trows, r));

		lk_keyset_add(&vs->ks2, k, strlen(k), h);
	}
	for (int r = 0; rc == 0 && r < srows.nrows; r++) {
		const struct lk_value *row = LK_ROW(&srows, r);
		uint64_t h = lk_verify_row_hash(vs, row);
		const char *k = canon_key(vs, row);
		struct lk_keyset_item *it = lk_keyset_find(&vs->ks2, k);

		lk_keyset_add(&vs->ks, k, strlen(k), 0);
		if (it)
			it->seen = true;
		if (!it || it->payload != h)
			keep(vs, still, row, it ? LK_DIFF_CHANGED : LK_DIFF_MISSING);
	}
	for (int r = 0; rc == 0 && extras && r < trows.nrows; r++) {
		const char *k = canon_key(vs, LK_ROW(&trows, r));

		if (!lk_keyset_find(&vs->ks, k))
			keep(vs, still, LK_ROW(&trows, r), LK_DIFF_EXTRA);
	}
	lk_rows_release(&srows);
	lk_rows_release(&trows);
	return rc;
}

/* Every key of vs->pend read again on both sides; vs->pend becomes those that differ. */
static int recheck(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	int chunk = lk_sync_batch(ctx->job), rc = 0;
	struct lk_rows keys, still;

	lk_rows_init(&keys, ctx->nkey);
	lk_rows_init(&still, ctx->ncols + 1);
	for (int from = 0; rc == 0 && from < vs->pend.nrows; from += chunk) {
		int n = vs->pend.nrows - from < chunk ? vs->pend.nrows - from : chunk;

		key_rows(ctx, &vs->pend, from, n, &keys);
		rc = recheck_chunk(vs, &keys, &still, err);
	}
	if (rc == 0) {
		struct lk_rows t = vs->pend;

		vs->pend = still;
		still = t;
	}
	lk_rows_release(&keys);
	lk_rows_release(&still);
	return rc;
}

/* ---- has the job applied past now? ---- */

static int one_int(struct lk_db *db, const char *sql, int n, const char *const *p, int64_t *out,
		   struct lk_err *err)
{
	struct lk_rows r;
	int rc;

	lk_rows_init(&r, 1);
	rc = db->ops->exec(db->conn, sql, n, p, &r, NULL, err);
	if (rc == 0 &&
	    (r.nrows != 1 || LK_ROW(&r, 0)[0].null || lk_int64_parse(LK_ROW(&r, 0)[0].p, out) < 0))
		rc = lk_err_set(err, LK_ERR_INTERNAL, "unexpected answer to: %s", sql);
	lk_rows_release(&r);
	return rc;
}

/* The table's id in the source's change capture (installed already: a look-up). */
static int relid_of(struct verify_state *vs, int64_t *relid, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	const struct lk_cdc_ops *cdc = lk_cdc_for(ctx->src.ops);
	struct lk_cdc_table t = lk_job_cdc_table(ctx);

	if (!cdc)
		return lk_err_set(err, LK_ERR_SCHEMA,
				  "mode realtime is not available on this source");
	if (vs->relid == 0 && cdc->install(ctx->src.conn, &t, &vs->relid, err) < 0)
		return -1;
	*relid = vs->relid;
	return 0;
}

/* Real-time: the changelog's head now (PostgreSQL: the xid every writer so far is below;
 * SQLite: the last seq of the table). */
static int rt_head(struct verify_state *vs, int64_t *head, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	char rel[24];
	const char *p[1] = {rel};
	int64_t relid;

	if (ctx->src.conf->kind == LK_DB_POSTGRES)
		return lk_cdc_for(ctx->src.ops)->catch_up_target(ctx->src.conn, head, err);
	if (relid_of(vs, &relid, err) < 0)
		return -1;
	(void)snprintf(rel, sizeof(rel), "%" PRId64, relid);
	return one_int(
		&ctx->src,
		"SELECT coalesce(max(seq), 0) FROM main.lockstep_cdc_changelog WHERE relid = $1", 1,
		p, head, err);
}

/* Real-time: *done when the target's position has applied every entry of the table below
 * head (the entries it still lacks there: none). */
static int rt_passed(struct verify_state *vs, int64_t head, bool *done, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_position pos;
	char *json = NULL, v[5][24];
	const char *p[5] = {v[0], v[1], v[2], v[3], v[4]};
	int64_t epoch, relid, n = 1;
	int rc;

	*done = false;
	if (ctx->dst.ops->position_get(ctx->dst.conn, vs->ident, &epoch, &json, err) < 0 ||
	    relid_of(vs, &relid, err) < 0) {
		free(json);
		return -1;
	}
	lk_position_decode(json, &pos);
	free(json);
	rc = 0;
	if (pos.mode == LK_POS_REALTIME && pos.phase == LK_PHASE_STREAM) {
		(void)snprintf(v[0], sizeof(v[0]), "%" PRId64, relid);
		(void)snprintf(v[1], sizeof(v[1]), "%" PRId64, pos.cdc.horizon);
		(void)snprintf(v[2], sizeof(v[2]), "%" PRId64, pos.cdc.xid);
		(void)snprintf(v[3], sizeof(v[3]), "%" PRId64, pos.cdc.seq);
		(void)snprintf(v[4], sizeof(v[4]), "%" PRId64, head);
		if (ctx->src.conf->kind == LK_DB_POSTGRES)
			rc = pos.cdc.horizon >= head
				     ? (n = 0, 0)
				     : one_int(&ctx->src,
					       "SELECT count(*) FROM lockstep_cdc.changelog WHERE "
					       "relid = $1::oid AND xid >= $2::text::xid8 AND "
					       "(xid, "
					       "seq) > ($3::text::xid8, $4::bigint) AND xid < "
					       "$5::text::xid8",
					       5, p, &n, err);
		else
			rc = one_int(
				&ctx->src,
				"SELECT count(*) FROM main.lockstep_cdc_changelog WHERE relid = "
				"$1 AND seq > $4 AND seq <= $5",
				5, p, &n, err);
		*done = rc == 0 && n == 0;
	}
	lk_position_release(&pos);
	return rc;
}

int lk_verify_rt_ready(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	static const char *const phases[] = {"has no position yet", "copies its snapshot",
					     "sweeps the rows its snapshot did not see", ""};
	struct lk_position pos;
	char *json = NULL;
	int64_t epoch;
	int rc = 0;

	if (ctx->dst.ops->position_get(ctx->dst.conn, vs->ident, &epoch, &json, err) < 0)
		return -1;
	lk_position_decode(json, &pos);
	free(json);
	if (pos.mode != LK_POS_REALTIME || pos.phase != LK_PHASE_STREAM)
		rc = lk_err_set(
			err, LK_ERR_BUSY,
			"job %s %s: its target is not whole yet, so this verify waits until "
			"the job streams",
			ctx->job->name,
			phases[pos.mode == LK_POS_REALTIME ? pos.phase : LK_PHASE_NONE]);
	lk_position_release(&pos);
	return rc;
}

/* Poll and snapshot: *done when a run of the job that began at or after since_ms
 * succeeded. */
static int runs_passed(struct verify_state *vs, int64_t since_ms, bool *done, struct lk_err *err)
{
	struct lk_rows runs;
	int rc;

	*done = false;
	lk_rows_init(&runs, 1);
	rc = lk_store_runs_of(vs->vo->store, vs->ctx->job->name, LK_RUNS_OWN, 10, &runs, err);
	for (int r = 0; rc == 0 && r < runs.nrows; r++) {
		const struct lk_value *v = LK_ROW(&runs, r);
		int64_t started = 0;

		(void)lk_int64_parse(v[LK_RUNCOL_STARTED].p, &started);
		if (started >= since_ms && strcmp(v[LK_RUNCOL_STATUS].p, "succeeded") == 0)
			*done = true;
	}
	lk_rows_release(&runs);
	return rc;
}

/*
 * Waits (vo->settle_ms at most) until the job has applied past this moment. A job that
 * does not in time is said once; its keys are then checked as they are.
 */
static int wait_applied(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	const struct lk_verify_opts *vo = vs->vo;
	int64_t deadline, head = 0, since = lk_wall_ms(), nap = 50;
	volatile const bool *stop = ctx->opts ? ctx->opts->stop : NULL;
	bool done = false;

	if (!vo || vo->settle_ms <= 0 || (!vs->rt && !vo->store))
		return 0;
	deadline = lk_mono_ms() + vo->settle_ms;
	if (vs->rt && rt_head(vs, &head, err) < 0)
		return -1;
	for (;;) {
		if ((vs->rt ? rt_passed(vs, head, &done, err)
			    : runs_passed(vs, since, &done, err)) < 0)
			return -1;
		if (done || (stop && lk_flag(stop)))
			return 0;
		if (lk_mono_ms() >= deadline)
			break;
		lk_sleep_ms(nap, stop);
		nap = nap * 2 > 1000 ? 1000 : nap * 2;
	}
	vs->res->unsettled = true;
	if (!vs->told_unsettled)
		lk_log_info("job %s: verify: the job has not applied past the rows read within "
			    "%.0f s; the keys are checked as they are",
			    ctx->job->name, (double)vo->settle_ms / 1000.0);
	vs->told_unsettled = true;
	return 0;
}

/* Up to ROUNDS of: wait for the job, read the keys again. vs->pend keeps what differs. */
static int settle_rounds(struct verify_state *vs, struct lk_err *err)
{
	int rounds = vs->vo && vs->vo->settle_ms > 0 ? ROUNDS : 1;

	for (int i = 0; i < rounds && vs->pend.nrows > 0; i++) {
		if (wait_applied(vs, err) < 0 || recheck(vs, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- repair ---- */

/* Real-time: the keys go into the changelog as entries of their own ('U'); the applier
 * reads their current rows, in order with every other change. */
static int queue_keys(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	bool pg = ctx->src.conf->kind == LK_DB_POSTGRES;
	int chunk = lk_sync_batch(ctx->job), rc = 0;
	struct lk_buf arr = LK_BUF_INIT;
	char rel[24];
	const char *p[2] = {rel, NULL};
	int64_t relid;

	if (relid_of(vs, &relid, err) < 0)
		return -1;
	(void)snprintf(rel, sizeof(rel), "%" PRId64, relid);
	for (int from = 0; rc == 0 && from < vs->pend.nrows; from += chunk) {
		lk_buf_reset(&arr);
		lk_buf_addch(&arr, '[');
		for (int r = from; r < vs->pend.nrows && r < from + chunk; r++) {
			if (r > from)
				lk_buf_addch(&arr, ',');
			lk_pos_add_values(&arr, LK_ROW(&vs->pend, r), ctx->types, ctx->key,
					  ctx->nkey);
		}
		lk_buf_addch(&arr, ']');
		p[1] = arr.buf;
		rc = ctx->src.ops->exec(
			ctx->src.conn,
			pg ? "INSERT INTO lockstep_cdc.changelog (relid, key, op) SELECT $1::oid, "
			     "k,"
			     " 'U' FROM pg_catalog.jsonb_array_elements($2::jsonb) k"
			   : "INSERT INTO main.lockstep_cdc_changelog (relid, key, op) SELECT $1,"
			     " value, 'U' FROM json_each($2)",
			2, p, NULL, NULL, err);
	}
	lk_buf_release(&arr);
	if (rc < 0)
		return lk_err_prefix(err, "queue the keys to repair in the changelog");
	if (pg) /* the applier wakes on NOTIFY (else its 1 s fallback poll finds them) */
		(void)ctx->src.ops->exec(ctx->src.conn,
					 "SELECT pg_notify('lockstep_cdc_' || $1, '')", 1, p, NULL,
					 NULL, NULL);
	return 0;
}

/* Real-time, from the CLI: when no one holds the job, its catch-up applies the queue now. */
static int catch_up(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_sync_opts so = {.stop = ctx->opts ? ctx->opts->stop : NULL};
	struct lk_sync_result sres;
	struct lk_err e2 = LK_ERR_INIT;

	if (!vs->vo->catch_up || !vs->vo->store)
		return 0;
	if (lk_sync_run(ctx->cfg, ctx->job, vs->vo->store, &so, &sres, &e2) == 0)
		return 0;
	if (e2.code == LK_ERR_BUSY) { /* a daemon streams it: its applier takes the keys */
		lk_log_info("job %s: %s; its stream applies the repair", ctx->job->name, e2.msg);
		return 0;
	}
	*err = e2;
	return lk_err_prefix(err, "apply the repair (the job's catch-up)");
}

/* Poll and snapshot: the job lock and a new epoch, waiting up to lock_wait_ms for it. */
static int take_lock(struct verify_state *vs, struct lk_err *err)
{
	int64_t deadline = lk_mono_ms() + vs->vo->lock_wait_ms;
	volatile const bool *stop = vs->ctx->opts ? vs->ctx->opts->stop : NULL;

	if (vs->vo->hold && !vs->held) {
		if (vs->vo->hold(vs->vo->hold_arg, true) < 0)
			return lk_err_set(err, LK_ERR_BUSY,
					  "job %s kept running; its repair waits for the next pass",
					  vs->ctx->job->name);
		vs->held = true;
	}
	while (!vs->lock) {
		vs->lock = lk_job_lock_and_seal(vs->ctx, vs->vo->store, false, err);
		if (vs->lock)
			break;
		if (err->code != LK_ERR_BUSY || lk_mono_ms() >= deadline || (stop && lk_flag(stop)))
			return -1;
		lk_err_clear(err);
		lk_sleep_ms(500, stop);
	}
	return 0;
}

/* One chunk of keys: their current source rows upserted, the others deleted (per deletes). */
static int apply_chunk(struct verify_state *vs, int from, int n, struct lk_rows *keys,
		       struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_scan_spec spec = lk_job_source_spec(ctx);
	struct lk_rows rows, dels;
	int rc;

	lk_rows_init(&rows, ctx->ncols);
	lk_rows_init(&dels, ctx->ncols);
	key_rows(ctx, &vs->pend, from, n, keys);
	rc = ctx->src.ops->fetch(ctx->src.conn, &spec, keys, &rows, err);
	lk_keyset_reset(&vs->ks);
	for (int r = 0; rc == 0 && r < rows.nrows; r++) {
		const char *k = canon_key(vs, LK_ROW(&rows, r));

		lk_keyset_add(&vs->ks, k, strlen(k), 0);
	}
	for (int r = from; rc == 0 && r < from + n; r++) {
		const struct lk_value *w = LK_ROW(&vs->pend, r);

		if (ctx->job->target.deletes == LK_DELETES_IGNORE ||
		    lk_keyset_find(&vs->ks, canon_key(vs, w)))
			continue;
		lk_rows_add(&dels);
		for (int k = 0; k < ctx->nkey; k++) {
			const struct lk_value *v = &w[ctx->key[k]];

			if (!v->null)
				lk_rows_set(&dels, dels.nrows - 1, ctx->key[k], v->p, v->len);
		}
	}
	if (rc == 0 && rows.nrows + dels.nrows > 0)
		rc = lk_apply_batch(ctx,
				    &(struct lk_batch){.upserts = &rows,
						       .deletes = &dels,
						       .pos = ctx->pos ? ctx->pos : "{}",
						       .change = "repair"},
				    err);
	if (rc == 0)
		vs->res->repaired += rows.nrows + dels.nrows;
	lk_rows_release(&rows);
	lk_rows_release(&dels);
	return rc;
}

/* Poll and snapshot: every pending key from its current source row, under the job lock. */
static int apply_keys(struct verify_state *vs, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	int chunk = lk_sync_batch(ctx->job), rc = 0;
	struct lk_rows keys;

	if (!vs->vo->store)
		return lk_err_set(err, LK_ERR_INTERNAL, "repair without a state store");
	if (take_lock(vs, err) < 0)
		return -1;
	if (!ctx->store && lk_dl_setup(ctx, vs->vo->store, err) < 0)
		return -1;
	lk_rows_init(&keys, ctx->nkey);
	for (int from = 0; rc == 0 && from < vs->pend.nrows; from += chunk) {
		int n = vs->pend.nrows - from < chunk ? vs->pend.nrows - from : chunk;

		rc = apply_chunk(vs, from, n, &keys, err);
	}
	lk_rows_release(&keys);
	return rc;
}

static int repair(struct verify_state *vs, struct lk_err *err)
{
	int64_t n = vs->pend.nrows;

	if (!vs->rt)
		return apply_keys(vs, err);
	if (queue_keys(vs, err) < 0)
		return -1;
	vs->res->repaired += n;
	return catch_up(vs, err);
}

/* Counts (and lists, up to LK_VERIFY_MAX_DIFFS) the keys left in vs->pend. */
static void count(struct verify_state *vs)
{
	struct lk_verify_result *res = vs->res;
	struct lk_job_ctx *ctx = vs->ctx;

	for (int r = 0; r < vs->pend.nrows; r++) {
		const struct lk_value *w = LK_ROW(&vs->pend, r);
		char k = w[KIND(vs)].null ? 'c' : w[KIND(vs)].p[0];
		enum lk_diff_kind kind = k == 'm'   ? LK_DIFF_MISSING
					 : k == 'x' ? LK_DIFF_EXTRA
						    : LK_DIFF_CHANGED;
		struct lk_buf b = LK_BUF_INIT;

		res->differences++;
		if (kind == LK_DIFF_MISSING)
			res->missing++;
		if (res->ndiffs == LK_VERIFY_MAX_DIFFS)
			continue;
		lk_pos_add_values(&b, w, ctx->types, ctx->key, ctx->nkey);
		res->diffs[res->ndiffs].kind = kind;
		res->diffs[res->ndiffs].key_json = lk_buf_detach(&b, NULL);
		res->ndiffs++;
	}
}

void lk_verify_unlock(struct verify_state *vs)
{
	if (vs->ctx->store) {
		lk_dl_release(vs->ctx);
		vs->ctx->store = NULL;
	}
	if (vs->lock) { /* the job's own runs go on between two sets of keys */
		lk_store_job_unlock(vs->lock);
		vs->lock = NULL;
	}
	if (vs->held) {
		(void)vs->vo->hold(vs->vo->hold_arg, false);
		vs->held = false;
	}
}

int lk_verify_settle(struct verify_state *vs, struct lk_err *err)
{
	int rc = 0;

	if (vs->pend.nrows == 0)
		return 0;
	if (settle_rounds(vs, err) < 0)
		return -1;
	count(vs);
	if (vs->vo && vs->vo->repair && vs->pend.nrows > 0) {
		rc = repair(vs, err);
		/* what it wrote itself, under the job lock, is read back at once; a real-time
		 * job's stream applies the queued keys, and is waited for */
		if (rc == 0 && vs->rt)
			rc = settle_rounds(vs, err);
		else if (rc == 0)
			rc = recheck(vs, err);
		if (rc == 0)
			vs->res->remaining += vs->pend.nrows;
	}
	lk_verify_unlock(vs);
	lk_rows_reset(&vs->pend);
	return rc;
}
