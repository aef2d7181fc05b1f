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

/* The canonical key of row, into vs->tmp. */
static const char *canon_key(struct verify_state *vs, const struct lk_value *row)
{
	lk_buf_reset(&vs->tmp);
	lk_key_canon(&vs->tmp, row, vs->ctx->types, vs->ctx->key, vs->ctx->nkey);
	return vs->tmp.buf;
}

/* Reads the rows of keys on one side (the source with `where`, the target without its
 * soft-deleted rows) into ks: canonical key -> hash of the row. */
static int read_side(struct verify_state *vs, bool target, const struct lk_rows *keys,
		     struct lk_keyset *ks, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	struct lk_scan_spec spec = lk_job_source_spec(ctx);
	struct lk_db *db = target ? &ctx->dst : &ctx->src;
	struct lk_rows rows;
	int rc;

	if (target) {
		spec.table = &ctx->job->target.table;
		spec.filter = vs->live;
	}
	lk_rows_init(&rows, ctx->ncols);
	rc = db->ops->fetch(db->conn, &spec, keys, &rows, err);
	for (int r = 0; rc == 0 && r < rows.nrows; r++) {
		uint64_t h = lk_verify_row_hash(vs, LK_ROW(&rows, r));
		const char *k = canon_key(vs, LK_ROW(&rows, r));

		lk_keyset_add(ks, k, strlen(k), h);
	}
	lk_rows_release(&rows);
	return rc;
}

/* Whether two reads of a key agree: both without a row, or both with the same row. */
static bool agree(const struct lk_keyset_item *a, const struct lk_keyset_item *b)
{
	return a ? b && a->payload == b->payload : !b;
}

/*
 * One chunk's verdicts, with s1 (the source before the wait) read for every key: the
 * target t and the source again s2 now, in that order. A key whose target agrees with
 * the source now is equal; whose source moved since s1 is in flight (kept for the next
 * round); else the target differs from a source that stood still while the job applied
 * past it: a difference (confirmed, with its kind).
 */
static int judge_chunk(struct verify_state *vs, int from, int n, struct lk_rows *keys,
		       struct lk_rows *kept, struct lk_rows *confirmed, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	bool extras = ctx->job->target.deletes != LK_DELETES_IGNORE;
	int rc;

	key_rows(ctx, &vs->pend, from, n, keys);
	lk_keyset_reset(&vs->ks2);
	lk_keyset_reset(&vs->ks3);
	rc = read_side(vs, true, keys, &vs->ks2, err);
	if (rc == 0)
		rc = read_side(vs, false, keys, &vs->ks3, err);
	for (int r = from; rc == 0 && r < from + n; r++) {
		const struct lk_value *w = LK_ROW(&vs->pend, r);
		const char *k = canon_key(vs, w);
		struct lk_keyset_item *t = lk_keyset_find(&vs->ks2, k);
		struct lk_keyset_item *s2 = lk_keyset_find(&vs->ks3, k);
		struct lk_keyset_item *s1 = lk_keyset_find(&vs->ks, k);

		if (agree(t, s2) || (!s2 && !extras))
			continue; /* equal (or an extra row deletes: ignore keeps) */
		if (!agree(s1, s2)) {
			lk_rows_copy_row(kept, &vs->pend, r);
			continue;
		}
		lk_rows_copy_row(confirmed, &vs->pend, r);
		lk_rows_set(confirmed, confirmed->nrows - 1, KIND(vs),
			    &lk_verify_kind_letter[!t	 ? LK_DIFF_MISSING
						   : !s2 ? LK_DIFF_EXTRA
							 : LK_DIFF_CHANGED],
			    1);
	}
	return rc;
}

/*
 * One round over vs->pend: the source read, the wait for the job (wait_applied), then
 * each key judged (judge_chunk). Confirmed differences go to confirmed; vs->pend keeps
 * the keys in flight.
 */
static int wait_applied(struct verify_state *vs, struct lk_err *err);

static int round_once(struct verify_state *vs, struct lk_rows *confirmed, struct lk_err *err)
{
	struct lk_job_ctx *ctx = vs->ctx;
	int chunk = lk_sync_batch(ctx->job), rc = 0;
	struct lk_rows keys, kept;

	lk_rows_init(&keys, ctx->nkey);
	lk_rows_init(&kept, ctx->ncols + 1);
	lk_keyset_reset(&vs->ks);
	for (int from = 0; rc == 0 && from < vs->pend.nrows; from += chunk) {
		key_rows(ctx, &vs->pend, from,
			 vs->pend.nrows - from < chunk ? vs->pend.nrows - from : chunk, &keys);
		rc = read_side(vs, false, &keys, &vs->ks, err);
	}
	if (rc == 0)
		rc = wait_applied(vs, err);
	for (int from = 0; rc == 0 && from < vs->pend.nrows; from += chunk)
		rc = judge_chunk(vs, from,
				 vs->pend.nrows - from < chunk ? vs->pend.nrows - from : chunk,
				 &keys, &kept, confirmed, err);
	if (rc == 0) {
		struct lk_rows t = vs->pend;

		vs->pend = kept;
		kept = t;
	}
	lk_rows_release(&keys);
	lk_rows_release(&kept);
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
	int64_t relid = 0;

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
	int64_t epoch = 0, relid = 0, n = 1;
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

	if (!vo || vo->settle_ms <= 0 || vs->no_wait || (!vs->rt && !vo->store))
		return 0;
	deadline = lk_mono_ms() + vo->settle_ms;
	if (vs->rt && rt_head(vs, &head, err) < 0)
		return -1;
	for (;;) {
		if ((vs->rt ? rt_passed(vs, head, &done, err)
			    : runs_passed(vs, since, &done, err)) < 0)
			return -1;
		if (stop && lk_flag(stop))
			return lk_err_set(err, LK_ERR_CANCELLED, "verify stopped");
		if (done)
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

/*
 * Up to ROUNDS rounds (one without a settle time, or without wait: what the repair wrote
 * itself under the job lock is read back at once): vs->pend ends holding the confirmed
 * differences. Keys still in flight after the last round (written faster than the job
 * applies them) are no difference: the result says it was unsettled.
 */
static int settle_rounds(struct verify_state *vs, bool wait, struct lk_err *err)
{
	int rounds = wait && vs->vo && vs->vo->settle_ms > 0 ? ROUNDS : 1, rc = 0;
	struct lk_rows confirmed;

	vs->no_wait = !wait;
	lk_rows_init(&confirmed, vs->ctx->ncols + 1);
	for (int i = 0; rc == 0 && i < rounds && vs->pend.nrows > 0; i++)
		rc = round_once(vs, &confirmed, err);
	if (rc == 0) {
		struct lk_rows t = vs->pend;

		if (t.nrows > 0)
			vs->res->unsettled = true;
		vs->pend = confirmed;
		confirmed = t;
	}
	lk_rows_release(&confirmed);
	return rc;
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
	int64_t relid = 0;

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

int lk_verify_recount(struct verify_state *vs, bool *agree, struct lk_err *err)
{
	int rounds = vs->vo && vs->vo->settle_ms > 0 ? ROUNDS : 1;
	int64_t first = 0;

	*agree = false;
	vs->no_wait = false;
	for (int i = 0; i < rounds; i++) {
		int64_t t, s;

		if (wait_applied(vs, err) < 0 || (t = lk_verify_count(vs, true, err)) < 0 ||
		    (s = lk_verify_count(vs, false, err)) < 0)
			return -1;
		if (t == s || (i > 0 && t - s != first)) {
			*agree = true; /* equal, or moving: writes in flight */
			return 0;
		}
		first = t - s;
	}
	return 0;
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
	if (vs->held && vs->vo && vs->vo->hold) {
		(void)vs->vo->hold(vs->vo->hold_arg, false);
		vs->held = false;
	}
}

int lk_verify_settle(struct verify_state *vs, struct lk_err *err)
{
	int rc = 0;

	if (vs->pend.nrows == 0)
		return 0;
	if (settle_rounds(vs, true, err) < 0)
		return -1;
	count(vs);
	if (vs->vo && vs->vo->repair && vs->pend.nrows > 0) {
		rc = repair(vs, err);
		/* what it wrote itself, under the job lock, is read back at once; a real-time
		 * job's stream applies the queued keys, and is waited for */
		if (rc == 0 && vs->rt)
			rc = settle_rounds(vs, true, err);
		else if (rc == 0)
			rc = settle_rounds(vs, false, err);
		if (rc == 0)
			vs->res->remaining += vs->pend.nrows;
	}
	lk_verify_unlock(vs);
	lk_rows_reset(&vs->pend);
	return rc;
}
