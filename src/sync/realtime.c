/*
 * realtime.c - mode realtime (SPEC §4, DESIGN decisions 2-4): install change
 * capture, snapshot behind a horizon taken first, then apply the changelog by
 * transaction horizon. Each page reads the current source rows for its keys in
 * the same snapshot and commits them with the position in the target, so a
 * crash, a replay or a reordering converges on the source's state.
 *
 * Positions (position.h, mode realtime): a phase, snapshot (plus the last key
 * copied), sweep or stream, and a changelog position (struct lk_cdc_pos): in phases
 * snapshot and sweep the one taken before the snapshot began, in phase stream how far
 * the changelog is applied.
 */
#include "budget.h"
#include "sync_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "realtime"
#include "core/failpoint.h"
#include "core/log.h"
#include "core/units.h"
#include "keyset.h"

#define RT_WAIT_MS 1000		/* the fallback poll when no NOTIFY wakes us */
#define RT_WAIT_SLICE_MS 200	/* how often a wait checks the stop flag */
#define RT_ADVANCE_MS 1000	/* consumer horizon updates on the source, at most this often */
#define RT_PRUNE_MS 10000	/* pruning pass interval */
#define RT_PRUNE_BATCH 1000	/* entries deleted per prune statement */
#define RT_PRUNE_ROUNDS 20	/* statements per pass, so a pass stays short */
#define RT_STALL_CHECK_MS 60000 /* how often other consumers are checked */
#define RT_STALL_S 300.0	/* a consumer idle this long with entries waiting is stalled */
#define RT_LAG_MS 5000		/* how often the replication lag is measured (metrics, status) */
#define RT_HEALTH_MS 10000	/* how often capture health and the source's lineage are checked */

struct rt {
	int limit; /* the entries the current page asked for (the batch size then) */
	struct lk_job_ctx *ctx;
	const struct lk_cdc_ops *cdc;
	struct lk_db lis; /* a direct listener (listen_url), else unused */
	struct lk_dbconf lis_conf;
	struct lk_conn *wake; /* the connection that LISTENs: lis.conn or the source's */
	int64_t relid;
	struct lk_cdc_pos pos;	     /* applied up to here (a window without entries of ours
				      * moves it with no target write) */
	struct lk_cdc_pos committed; /* the target's position: all the registry may hear */
	struct lk_cdc_pos advanced;  /* what the consumer registry last heard */
	/* periodic duties, each due at its first check (see lk_every) */
	struct lk_every advance_timer, prune_timer, stall_timer, lag_timer, health_timer;
	char why[320];	  /* why the stream must re-snapshot (a gap), for the log */
	char gap_key[64]; /* the gap entry met (its xid and seq), counted once per job */
	/* which kind of reason why is (guard.h), for the count */
	enum lk_resnap_reason reason;
	struct lk_scan_spec fetch;
	/* a page: its entries, their keys, what the source returned for them (got: see the
	 * ordinal fetch), and the rows to upsert and the keys to delete planned from it */
	struct lk_rows ent, keys, got, rows, dels;
	struct lk_keyset seen;
	struct lk_buf kb, pb;
	struct lk_arena scratch;
};

static bool stopped(const struct lk_job_ctx *ctx)
{
	return ctx->opts && lk_flag(ctx->opts->stop);
}

/* Commits a position with no rows (a phase change) and keeps it as ctx->pos. */
static int commit_pos(struct rt *rt, enum lk_pos_phase phase, const struct lk_cdc_pos *p,
		      struct lk_err *err)
{
	struct lk_position pos = lk_rt_position(rt->ctx, phase, p);
	struct lk_buf b = LK_BUF_INIT;
	int rc;

	lk_position_encode(&b, &pos);
	rc = lk_apply_batch(rt->ctx, &(struct lk_batch){.pos = b.buf}, err);
	if (rc == 0) {
		rt->committed = *p;
		free(rt->ctx->pos);
		rt->ctx->pos = lk_buf_detach(&b, NULL);
	}
	lk_buf_release(&b);
	return rc;
}

static int install(struct rt *rt, struct lk_err *err)
{
	struct lk_cdc_table t = lk_job_cdc_table(rt->ctx);

	return rt->cdc->install(rt->ctx->src.conn, &t, &rt->relid, err);
}

/* Opens the direct listener when the database names one (url may go through pgbouncer). */
static int open_listener(struct rt *rt, struct lk_err *err)
{
	const struct lk_dbconf *src = rt->ctx->src.conf;

	rt->wake = rt->ctx->src.conn;
	if (!src->listen_url)
		return rt->cdc->listen(rt->wake, rt->relid, err);
	rt->lis_conf = *src;
	rt->lis_conf.url = src->listen_url;
	if (lk_db_open(&rt->lis, &rt->lis_conf,
		       rt->ctx->opts->retry ? rt->ctx->opts->retry : &rt->ctx->job->retry,
		       rt->ctx->opts->stop, err) < 0)
		return lk_err_prefix(err, "listener for database '%s'", src->name);
	rt->wake = rt->lis.conn;
	return rt->cdc->listen(rt->wake, rt->relid, err);
}

/* Snapshot (resumable), then the sweep, keeping the horizon taken before it began. */
static int snapshot_phase(struct rt *rt, bool sweep_only, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	bool deletes = ctx->job->target.deletes != LK_DELETES_IGNORE;
	int rc;

	if (sweep_only)
		rc = deletes ? lk_snapshot_sweep(ctx, err) : 0;
	else
		rc = lk_snapshot_copy(ctx, deletes, err);
	if (rc < 0)
		return -1;
	rt->pos = ctx->rt_start;
	return commit_pos(rt, LK_PHASE_STREAM, &rt->pos, err);
}

/* Starts over: registers at the current horizon, records it, then snapshots. */
static int start_over(struct rt *rt, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;

	lk_sync_unhold(ctx->job->name);
	lk_failpoint("before_register");
	if (rt->cdc->register_consumer(ctx->src.conn, ctx->ident, rt->relid, &ctx->rt_start, err) <
	    0)
		return -1;
	rt->advanced = ctx->rt_start;
	if (commit_pos(rt, LK_PHASE_SNAPSHOT, &ctx->rt_start, err) < 0)
		return -1;
	lk_job_schema_done(ctx); /* the snapshot recorded in the target fills added columns */
	lk_log_info("job %s: snapshot first, then the changes from before it began",
		    ctx->job->name);
	return snapshot_phase(rt, false, err);
}

/*
 * Asks the source whether capture since p is whole and p's history still there (cdc.h
 * check_capture, which also repairs missing triggers): 1 with rt->why when the job must
 * re-snapshot, 0 when it may go on, -1 on error.
 */
static int capture_gap(struct rt *rt, const struct lk_cdc_pos *p, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	struct lk_cdc_table t = lk_job_cdc_table(ctx);

	rt->why[0] = '\0';
	if (!rt->cdc->check_capture)
		return 0;
	if (rt->cdc->check_capture(ctx->src.conn, &t, rt->relid, ctx->ident, p, rt->why,
				   sizeof(rt->why), err) < 0)
		return -1;
	return rt->why[0] != '\0';
}

/* Whether a re-snapshot lockstep would start by itself waits for the operator instead:
 * `resnapshot: manual`, unless this run is the full one they asked for. */
static bool held(const struct rt *rt)
{
	return rt->ctx->job->resnapshot == LK_RESNAP_MANUAL &&
	       !(rt->ctx->opts && rt->ctx->opts->full);
}

/* Fails the run of a held job (the position stays where it was, so every later run finds
 * the same reason until the operator's full run), and marks it held for status. */
static int hold(struct rt *rt, enum lk_resnap_reason reason, const char *why, struct lk_err *err)
{
	const char *job = rt->ctx->job->name;

	lk_sync_hold(job, reason, why);
	return lk_err_set(err, LK_ERR_CONFLICT,
			  "job %s needs a fresh snapshot: %s (reason %s); it has resnapshot: "
			  "manual, so it waits until `lockstep sync %s --full`, or POST /api/sync "
			  "{\"job\": \"%s\", \"type\": \"full\"} while the daemon runs",
			  job, why, lk_resnap_reason_name(reason), job, job);
}

/*
 * Before a forced re-snapshot: says once why and how big, counts it, and while the job
 * streams for good (lockstep run) waits out the throttle (guard.h). `resuming`: at the
 * run's start (its words differ). -1 when stopped meanwhile.
 */
static int announce(struct rt *rt, enum lk_resnap_reason reason, const char *why, bool resuming,
		    struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	struct lk_err ignored = LK_ERR_INIT;
	int64_t rows = -1, wait = 0;
	int nth = 1;
	char size[48] = "size unknown", delay[128] = "";

	if (ctx->src.ops->estimate(ctx->src.conn, &ctx->job->source.table, &rows, &ignored) == 0 &&
	    rows >= 0)
		(void)snprintf(size, sizeof(size), "about %lld rows", (long long)rows);
	/* not the user's own: a TRUNCATE, a column added */
	if (ctx->opts && ctx->opts->follow && reason != LK_RESNAP_TRUNCATE &&
	    reason != LK_RESNAP_SCHEMA)
		wait = lk_sync_resnap_throttle(ctx->job->name, &nth);
	if (wait > 0)
		(void)snprintf(delay, sizeof(delay),
			       "; re-snapshot %d within the hour: throttled, it starts in %.0f s",
			       nth, (double)wait / 1000.0);
	if (reason == LK_RESNAP_TRUNCATE)
		lk_log_info("job %s: the source table was truncated; re-snapshotting (%s)%s",
			    ctx->job->name, size, delay);
	else
		lk_log_warn("job %s: %s; %s, with the sweep (%s)%s", ctx->job->name, why,
			    resuming ? "taking a fresh snapshot" : "re-snapshotting", size, delay);
	lk_rt_resnapshot_count(ctx, reason, why);
	if (ctx->store && lk_store_resnap_note(ctx->store, ctx->job->name,
					       lk_resnap_reason_name(reason), why, &ignored) < 0)
		lk_log_debug_err(&ignored, "job %s: cannot record the re-snapshot for status",
				 ctx->job->name);
	lk_sleep_ms(wait, ctx->opts ? ctx->opts->stop : NULL);
	if (stopped(ctx))
		return lk_err_set(err, LK_ERR_CANCELLED, "stopped before a re-snapshot");
	return 0;
}

/*
 * Records in the target that a re-snapshot is due: the position keeps its place and gains
 * `need` (position.h), so that every later run honours it, also when what made it due can
 * no longer be seen (a restored source's counter has passed the old horizon again), until
 * one begins. Done before the job holds (resnapshot: manual) or waits out the throttle.
 */
static int mark_need(struct rt *rt, enum lk_resnap_reason reason, const char *why,
		     struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	struct lk_position cur, pos;
	struct lk_buf b = LK_BUF_INIT;
	int rc;

	lk_position_decode(ctx->pos, &cur);
	lk_position_release(&cur); /* its strings are copies */
	if (cur.mode != LK_POS_REALTIME || cur.phase == LK_PHASE_NONE)
		return 0; /* no place to resume from: the next run starts over anyway */
	pos = lk_rt_position(ctx, cur.phase, &cur.cdc);
	(void)snprintf(pos.need, sizeof(pos.need), "%s|%s", lk_resnap_reason_name(reason), why);
	if (strcmp(pos.need, cur.need) == 0)
		return 0;
	lk_position_encode(&b, &pos);
	rc = lk_apply_batch(ctx, &(struct lk_batch){.pos = b.buf}, err);
	if (rc == 0) {
		free(ctx->pos);
		ctx->pos = lk_buf_detach(&b, NULL);
	}
	lk_buf_release(&b);
	return rc;
}

/* Says once why the job re-snapshots instead of resuming, counts it, and starts over;
 * or holds the job (resnapshot: manual). */
static int resnapshot(struct rt *rt, enum lk_resnap_reason reason, const char *why,
		      struct lk_err *err)
{
	if (reason == LK_RESNAP_CAPTURE_GAP)
		lk_sync_gap_count(rt->ctx->job->name, why);
	if (mark_need(rt, reason, why, err) < 0)
		return -1;
	if (held(rt))
		return hold(rt, reason, why, err);
	if (announce(rt, reason, why, true, err) < 0)
		return -1;
	return start_over(rt, err);
}

/* Where to start: the target's position, unless the timeline guard or capture says it no
 * longer belongs to its source and target (guard.c), the registry forgot us, or --full. */
static int resume(struct rt *rt, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	struct lk_position pos;
	struct lk_rt_guard g;
	bool found = false;
	int rc;

	/* install() has just repaired capture; the stream checks it again in RT_HEALTH_MS. */
	(void)lk_every_due(&rt->health_timer, lk_mono_ms(), RT_HEALTH_MS);
	lk_position_decode(ctx->pos, &pos);
	lk_position_release(&pos);
	ctx->rt_start = pos.mode == LK_POS_REALTIME ? pos.cdc : (struct lk_cdc_pos){0, 0, 0};
	if (lk_rt_guard_resume(ctx, &pos, rt->relid, &g, err) < 0)
		return -1;
	if (pos.mode != LK_POS_REALTIME || pos.phase == LK_PHASE_NONE ||
	    (ctx->opts && ctx->opts->full))
		return start_over(rt, err);
	if (rt->cdc->consumer_get(ctx->src.conn, ctx->ident, rt->relid, &found, err) < 0)
		return -1;
	if (ctx->schema_backfill) /* a column added: rows already there lack its values */
		return resnapshot(rt, LK_RESNAP_SCHEMA, ctx->schema_why, err);
	if (pos.need[0]) { /* decided by an earlier run, held or stopped since */
		const char *bar = strchr(pos.need, '|');

		return resnapshot(rt,
				  lk_resnap_reason_of(pos.need, bar ? (size_t)(bar - pos.need)
								    : strlen(pos.need)),
				  bar ? bar + 1 : pos.need, err);
	}
	if (g.resnap)
		return resnapshot(rt, g.reason, g.why, err);
	if (!found) /* entries it still needed may be gone (uninstall, a dropped changelog) */
		return resnapshot(rt, LK_RESNAP_REGISTRY_LOST,
				  "its change capture was removed since its last run", err);
	rc = capture_gap(rt, &ctx->rt_start, err);
	if (rc != 0)
		return rc < 0 ? -1 : resnapshot(rt, LK_RESNAP_CAPTURE_GAP, rt->why, err);
	rt->advanced = g.has_reg ? g.reg : ctx->rt_start;
	rt->committed = ctx->rt_start;
	if (pos.phase == LK_PHASE_SNAPSHOT)
		return snapshot_phase(rt, false, err);
	if (pos.phase == LK_PHASE_SWEEP)
		return snapshot_phase(rt, true, err);
	rt->pos = ctx->rt_start;
	return 0;
}

/* Parses an entry's key (a JSON array of text values) into a new row of rt->keys. */
static int add_key(struct rt *rt, const struct lk_value *k)
{
	struct lk_job_ctx *ctx = rt->ctx;
	json_t *a = json_loadb(k->p, k->len, 0, NULL);
	struct lk_value *v = lk_arena_alloc(&rt->scratch, sizeof(*v) * (size_t)ctx->nkey);
	int rc = -1;

	if (a && lk_pos_parse_values(a, v, ctx->types, ctx->key, ctx->nkey, &rt->scratch) == 0) {
		lk_rows_add(&rt->keys);
		for (int i = 0; i < ctx->nkey; i++) {
			if (!v[i].null)
				lk_rows_set(&rt->keys, rt->keys.nrows - 1, i, v[i].p, v[i].len);
		}
		rc = 0;
	}
	json_decref(a);
	return rc;
}

/*
 * rt->keys = the page's keys, each logged spelling once. Entries spelled alike are one key;
 * entries spelled differently are all asked for: only the source says whether two
 * spellings are one key. Returns -1 (err set) for an entry whose key cannot be read.
 */
static int page_keys(struct rt *rt, struct lk_err *err)
{
	size_t n;

	lk_keyset_reset(&rt->seen);
	for (int r = 0; r < rt->ent.nrows; r++) {
		const struct lk_value *e = LK_ROW(&rt->ent, r);

		if (e[LK_CDC_KEY].null)
			return lk_err_set(err, LK_ERR_INTERNAL, "changelog entry seq %s has no key",
					  e[LK_CDC_SEQ].p);
		lk_keyset_add(&rt->seen, e[LK_CDC_KEY].p, e[LK_CDC_KEY].len, (uint64_t)r);
	}
	n = lk_keyset_unique(&rt->seen);
	for (size_t i = 0; i < n; i++) {
		const struct lk_value *e = LK_ROW(&rt->ent, (int)rt->seen.items[i].payload);

		if (add_key(rt, &e[LK_CDC_KEY]) < 0)
			return lk_err_set(err, LK_ERR_INTERNAL,
					  "changelog entry seq %s has a malformed key",
					  e[LK_CDC_SEQ].p);
	}
	lk_keyset_reset(&rt->seen);
	return 0;
}

/* rt->kb = the exact bytes of a fetched row's key (hex per value): one row, one string. */
static void exact_key(struct rt *rt, const struct lk_value *row)
{
	const struct lk_job_ctx *ctx = rt->ctx;

	lk_buf_reset(&rt->kb);
	for (int i = 0; i < ctx->nkey; i++) {
		const struct lk_value *v = &row[ctx->key[i]];

		lk_buf_addch(&rt->kb, v->null ? 'N' : 'V');
		if (!v->null)
			lk_buf_add_hex(&rt->kb, v->p, v->len);
		lk_buf_addch(&rt->kb, ';');
	}
}

/*
 * Plans the page from the ordinal fetch (rt->got, see the fetch op): a row the source
 * matched to a logged key is upserted (once, however many keys matched it); a logged key
 * the source matched to no row was deleted or left `where`, and is deleted in the form the
 * source printed it. No logged spelling is compared with a fetched one.
 */
static void plan_page(struct rt *rt)
{
	struct lk_job_ctx *ctx = rt->ctx;
	bool deletes = ctx->job->target.deletes != LK_DELETES_IGNORE;
	size_t n;

	lk_keyset_reset(&rt->seen);
	for (int r = 0; r < rt->got.nrows; r++) {
		const struct lk_value *g = LK_ROW(&rt->got, r);

		if (g[ctx->ncols].p[0] != '-') {
			exact_key(rt, g);
			lk_keyset_add(&rt->seen, rt->kb.buf, rt->kb.len, (uint64_t)r);
			continue;
		}
		if (!deletes)
			continue;
		lk_rows_add(&rt->dels);
		for (int i = 0; i < ctx->nkey; i++) {
			const struct lk_value *k = &g[ctx->key[i]];

			if (!k->null)
				lk_rows_set(&rt->dels, rt->dels.nrows - 1, ctx->key[i], k->p,
					    k->len);
		}
	}
	n = lk_keyset_unique(&rt->seen);
	for (size_t i = 0; i < n; i++) {
		const struct lk_value *g = LK_ROW(&rt->got, (int)rt->seen.items[i].payload);

		lk_rows_add(&rt->rows);
		for (int c = 0; c < ctx->ncols; c++) {
			if (!g[c].null)
				lk_rows_set(&rt->rows, rt->rows.nrows - 1, c, g[c].p, g[c].len);
		}
	}
}

static void reset_page(struct rt *rt)
{
	lk_rows_reset(&rt->ent);
	lk_rows_reset(&rt->keys);
	lk_rows_reset(&rt->got);
	lk_rows_reset(&rt->rows);
	lk_rows_reset(&rt->dels);
	lk_keyset_reset(&rt->seen);
	lk_arena_reset(&rt->scratch);
}

/* The position after a page of n entries read below horizon h. */
static struct lk_cdc_pos next_pos(const struct rt *rt, int n, int64_t h)
{
	struct lk_cdc_pos next;

	if (n == rt->limit) {
		const struct lk_value *last = LK_ROW(&rt->ent, n - 1);

		next = (struct lk_cdc_pos){rt->pos.horizon, strtoll(last[LK_CDC_XID].p, NULL, 10),
					   strtoll(last[LK_CDC_SEQ].p, NULL, 10)};
	} else if (h > 0) {
		next = (struct lk_cdc_pos){h, 0, 0}; /* the window is drained */
	} else {
		next = rt->pos; /* SQLite: seq alone is exact; xid is entry seq's stamp */
		if (n) {
			next.xid = strtoll(LK_ROW(&rt->ent, n - 1)[LK_CDC_XID].p, NULL, 10);
			next.seq = strtoll(LK_ROW(&rt->ent, n - 1)[LK_CDC_SEQ].p, NULL, 10);
		}
	}
	return next;
}

/* Commits the page's rows and deletes with position `next` in one target transaction. */
static int apply_page(struct rt *rt, const struct lk_cdc_pos *next, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	struct lk_position pos;
	char change[80];

	plan_page(rt);
	lk_rows_reset(&rt->got); /* copied into rows and dels */
	pos = lk_rt_position(ctx, LK_PHASE_STREAM, next);
	lk_buf_reset(&rt->pb);
	lk_position_encode(&rt->pb, &pos);
	/* A dead letter's change is the page's start: the same page again after a crash. */
	(void)snprintf(change, sizeof(change), "rt:%" PRId64 ":%" PRId64 ":%" PRId64,
		       rt->pos.horizon, rt->pos.xid, rt->pos.seq);
	if (lk_apply_batch(ctx,
			   &(struct lk_batch){.upserts = &rt->rows,
					      .deletes = &rt->dels,
					      .pos = rt->pb.buf,
					      .change = change},
			   err) < 0)
		return -1;
	rt->pos = *next;
	rt->committed = *next;
	free(ctx->pos);
	ctx->pos = lk_xstrdup(rt->pb.buf);
	return 0;
}

/*
 * A TRUNCATE or a capture gap at entry e: a snapshot from now on, streamed from
 * ctx->rt_start, covers everything after it. PostgreSQL: every transaction below h has
 * finished, the entry's included; SQLite (h 0): writers are serialised, so the entry itself
 * is the start. rt->why says which, for the log.
 */
static void restart_at(struct rt *rt, const struct lk_value *e, int64_t h)
{
	if (h > 0)
		rt->ctx->rt_start = (struct lk_cdc_pos){h, 0, 0};
	else
		rt->ctx->rt_start = (struct lk_cdc_pos){0, strtoll(e[LK_CDC_XID].p, NULL, 10),
							strtoll(e[LK_CDC_SEQ].p, NULL, 10)};
	rt->why[0] = '\0';
	(void)snprintf(rt->gap_key, sizeof(rt->gap_key), "entry %s %s", e[LK_CDC_XID].p,
		       e[LK_CDC_SEQ].p);
	if (e[LK_CDC_OP].p[0] == LK_CDC_OP_GAP)
		(void)snprintf(rt->why, sizeof(rt->why),
			       "change capture of the source table was off: %s",
			       e[LK_CDC_KEY].null ? "no reason logged" : e[LK_CDC_KEY].p);
}

/*
 * One page: entries after rt->pos from finished transactions, the current rows for their
 * keys in the same snapshot, then one target transaction with the new position.
 * Returns the number of entries, -1 on error, or -2 when the job's consumer row is gone
 * (rt->why, rt->reason say so): the read may then have missed pruned entries, since only
 * the row keeps pruning behind the job; read in the same snapshot, a row that is there
 * proves the page whole. *truncated: a TRUNCATE was met (nothing applied).
 */
static int page(struct rt *rt, bool *truncated, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	const struct lk_connector_ops *ops = ctx->src.ops;
	struct lk_cdc_pos next;
	int64_t h = 0;
	bool registered = false;
	int n;

	reset_page(rt);
	*truncated = false;
	rt->limit = lk_sync_batch(ctx->job); /* halved while memory is short */
	if (rt->cdc->read(ctx->src.conn, rt->relid, &rt->pos, rt->limit, &rt->ent, &h, err) < 0)
		goto fail;
	if (rt->cdc->consumer_get(ctx->src.conn, ctx->ident, rt->relid, &registered, err) < 0)
		goto fail;
	if (!registered) {
		ops->rollback(ctx->src.conn);
		rt->reason = LK_RESNAP_REGISTRY_LOST;
		(void)snprintf(rt->why, sizeof(rt->why),
			       "its consumer row on the source was removed while it ran (`lockstep "
			       "uninstall`, or another deployment removed it as an orphan), so "
			       "entries it had not applied may have been pruned");
		return -2;
	}
	n = rt->ent.nrows;
	lk_log_debug("job %s: %d entries after (%" PRId64 ", %" PRId64 ", %" PRId64 "), h %" PRId64,
		     ctx->job->name, n, rt->pos.horizon, rt->pos.xid, rt->pos.seq, h);
	for (int r = 0; r < n; r++) {
		const struct lk_value *e = LK_ROW(&rt->ent, r);

		if (e[LK_CDC_OP].p[0] == LK_CDC_OP_TRUNCATE || e[LK_CDC_OP].p[0] == LK_CDC_OP_GAP) {
			ops->rollback(ctx->src.conn);
			restart_at(rt, e, h);
			*truncated = true;
			return 0;
		}
	}
	if (page_keys(rt, err) < 0)
		goto fail;
	if (rt->keys.nrows && ops->fetch(ctx->src.conn, &rt->fetch, &rt->keys, &rt->got, err) < 0) {
		if (strcmp(err->sqlstate, "42703") == 0) { /* a column gone: describe again */
			(void)lk_err_prefix(err, "the source table's columns changed while the job "
						 "ran; the job starts again to describe it");
			err->transient = true;
		}
		goto fail;
	}
	/* in the same snapshot: rows read with other columns than the job's are not applied */
	if (rt->keys.nrows && lk_schema_check(ctx, err) < 0)
		goto fail;
	if (ops->commit(ctx->src.conn, err) < 0)
		goto fail;
	next = next_pos(rt, n, h);
	if (n == 0) {
		rt->pos = next; /* nothing of ours below h: no target write needed */
		return 0;
	}
	ctx->prog.rows_read += n;
	return apply_page(rt, &next, err) < 0 ? -1 : n;
fail:
	ops->rollback(ctx->src.conn);
	return -1;
}

/*
 * Tells the registry how far the target has committed, at most once a second. Never
 * further: the timeline guard reads a registry ahead of the target's position as a target
 * that lost commits (a window without entries of ours therefore waits for the next commit).
 */
static int advance(struct rt *rt, bool force, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	int64_t now = lk_mono_ms();

	if (memcmp(&rt->committed, &rt->advanced, sizeof(rt->committed)) == 0)
		return 0;
	if (!lk_every_due(&rt->advance_timer, now, RT_ADVANCE_MS) && !force)
		return 0;
	if (rt->cdc->consumer_advance(ctx->src.conn, ctx->ident, &rt->committed, err) < 0) {
		lk_every_reset(&rt->advance_timer);
		return -1;
	}
	rt->advanced = rt->committed;
	return 0;
}

/* Deletes, in small statements, the entries every consumer of the table has applied. */
static int prune(struct rt *rt, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	int64_t n = 0, total = 0;

	lk_rt_expire_orphans(ctx); /* a consumer gone for good must not hold pruning back */
	for (int i = 0; i < RT_PRUNE_ROUNDS && !stopped(ctx); i++) {
		if (rt->cdc->prune(ctx->src.conn, rt->relid, RT_PRUNE_BATCH, &n, err) < 0)
			return -1;
		total += n;
		if (n > 0)
			lk_failpoint("mid_prune");
		if (n < RT_PRUNE_BATCH)
			break;
	}
	if (total)
		lk_log_debug("job %s: pruned %" PRId64 " changelog entries", ctx->job->name, total);
	return 0;
}

/* Reports other consumers of the table that stopped advancing (like an abandoned slot). */
static int check_stalled(struct rt *rt, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	int64_t now = lk_mono_ms();
	struct lk_rows out;
	int rc;

	if (!lk_every_due(&rt->stall_timer, now, RT_STALL_CHECK_MS))
		return 0;
	lk_rows_init(&out, 3);
	rc = rt->cdc->stalled(ctx->src.conn, rt->relid, ctx->ident, RT_STALL_S, &out, err);
	for (int r = 0; rc == 0 && r < out.nrows; r++) {
		const struct lk_value *v = LK_ROW(&out, r);
		const char *at = strrchr(v[0].p, '@'), *mine = strrchr(ctx->ident, '@');

		if (at && mine && strcmp(at, mine) == 0) /* a job of this deployment */
			lk_log_warn("consumer '%s' of %s's source table has not advanced for %s s "
				    "and holds %s changelog entries: pruning waits for it (run job "
				    "%.*s, or `lockstep uninstall %.*s`)",
				    v[0].p, ctx->job->name, v[1].p, v[2].p, (int)(at - v[0].p),
				    v[0].p, (int)(at - v[0].p), v[0].p);
		else
			lk_log_warn(
				"consumer '%s' of %s's source table has not advanced for %s s "
				"and holds %s changelog entries: pruning waits for it (it belongs "
				"to another deployment, or to a job no longer configured: run it "
				"there, or remove it with `lockstep uninstall --orphans`, see "
				"docs/operations.md, \"Several deployments\")",
				v[0].p, ctx->job->name, v[1].p, v[2].p);
	}
	lk_rows_release(&out);
	return rc;
}

/*
 * Measures the replication lag every RT_LAG_MS: the changes committed on the source and
 * not yet applied, and the age of the oldest. The registry hears our position first, so
 * the count is not inflated by what was applied in the last second. A failure here only
 * leaves the lag unknown: the stream's own statements report a broken connection.
 */
static void measure_lag(struct rt *rt)
{
	struct lk_job_ctx *ctx = rt->ctx;
	struct lk_err err = LK_ERR_INIT;
	struct lk_cdc_lag lag;
	int64_t now = lk_mono_ms();

	if (!lk_every_due(&rt->lag_timer, now, RT_LAG_MS))
		return;
	if (advance(rt, true, &err) < 0 ||
	    rt->cdc->lag(ctx->src.conn, ctx->ident, &ctx->job->source.table, &lag, &err) < 0) {
		lk_log_debug_err(&err, "job %s: cannot measure the replication lag",
				 ctx->job->name);
		ctx->prog.has_lag = false;
		return;
	}
	ctx->prog.has_lag = lag.registered;
	ctx->prog.lag_rows = lag.pending;
	ctx->prog.lag_s = lag.oldest_age_s > 0 ? lag.oldest_age_s : 0;
}

/*
 * Checks the source's lineage (the timeline guard), capture health and the source table's
 * columns (a change ends the run, docs/schema-changes.md: an added column is filled without
 * waiting for a write) every RT_HEALTH_MS, and whenever `now` (before a prune): 1 with
 * rt->why and rt->reason when the job must re-snapshot.
 */
static int check_health(struct rt *rt, bool now, struct lk_err *err)
{
	struct lk_rt_guard g;

	if (!lk_every_due(&rt->health_timer, lk_mono_ms(), RT_HEALTH_MS) && !now)
		return 0;
	if (lk_schema_check(rt->ctx, err) < 0 || lk_rt_guard_check(rt->ctx, &rt->pos, &g, err) < 0)
		return -1;
	if (g.resnap) {
		rt->reason = g.reason;
		(void)snprintf(rt->why, sizeof(rt->why), "%s", g.why);
		return 1;
	}
	rt->reason = LK_RESNAP_CAPTURE_GAP;
	return capture_gap(rt, &rt->pos, err);
}

/* Waits up to RT_WAIT_MS for a NOTIFY (or data_version change), checking stop. */
static int wait_change(struct rt *rt, struct lk_err *err)
{
	int64_t deadline = lk_mono_ms() + RT_WAIT_MS;
	bool woken = false;

	while (!woken && !stopped(rt->ctx)) {
		int64_t left = deadline - lk_mono_ms();

		if (left <= 0)
			break;
		if (rt->cdc->wait(rt->wake, left < RT_WAIT_SLICE_MS ? (int)left : RT_WAIT_SLICE_MS,
				  &woken, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * Streams until stop (follow) or until the changelog is drained. 1: a TRUNCATE or a
 * capture gap came (ctx->rt_start is the new start); 2: the source went back (rt->why).
 */
static int stream(struct rt *rt, struct lk_err *err)
{
	struct lk_job_ctx *ctx = rt->ctx;
	bool follow = ctx->opts && ctx->opts->follow;

	int64_t target = 0, wait_from = 0;

	/* A catch-up (lockstep sync) ends once every transaction that had begun writing when
	 * it started is applied, even if an open one holds the horizon for a while. */
	if (!follow && rt->cdc->catch_up_target(ctx->src.conn, &target, err) < 0)
		return -1;
	for (bool first = true;; first = false) {
		bool truncated, prune_due;
		int n, gap;

		if (stopped(ctx)) {
			(void)advance(rt, true, err);
			return lk_err_set(err, LK_ERR_CANCELLED, "stopped at a page boundary");
		}
		n = page(rt, &truncated, err);
		if (n == -2)
			return 2;
		if (n < 0)
			return -1;
		if (truncated)
			return 1;
		if (first) { /* streaming: said once a page went through (not before a gap) */
			lk_sync_unhold(ctx->job->name);
			ctx->prog.stage = "stream";
			lk_job_report(ctx, true);
		}
		lk_failpoint("between_pages");
		/* Health before a prune: entries are deleted only while capture is whole. */
		prune_due = lk_every_due(&rt->prune_timer, lk_mono_ms(), RT_PRUNE_MS);
		if (advance(rt, false, err) < 0)
			return -1;
		gap = check_health(rt, prune_due, err);
		if (gap != 0)
			return gap < 0 ? -1 : 2;
		if ((prune_due && prune(rt, err) < 0) || check_stalled(rt, err) < 0)
			return -1;
		if (follow)
			measure_lag(rt);
		lk_job_report(ctx, false);
		if (n == rt->limit)
			continue;
		if (!follow && rt->pos.horizon >= target)
			return 0;
		if (!follow && !wait_from) {
			wait_from = lk_mono_ms();
		} else if (!follow && wait_from > 0 && lk_mono_ms() - wait_from > 5000) {
			lk_log_info("job %s: waiting for transactions open on the source since the "
				    "start of this run to finish (`lockstep status` shows the pid)",
				    ctx->job->name);
			wait_from = -1;
		}
		if (wait_change(rt, err) < 0)
			return -1;
	}
}

static void rt_init(struct rt *rt, struct lk_job_ctx *ctx)
{
	memset(rt, 0, sizeof(*rt));
	rt->ctx = ctx;
	rt->cdc = lk_cdc_for(ctx->src.ops);
	rt->fetch = lk_job_source_spec(ctx);
	rt->fetch.ordinal = true;
	lk_rows_init(&rt->ent, LK_CDC_NCOLS);
	lk_rows_init(&rt->keys, ctx->nkey);
	lk_rows_init(&rt->got, ctx->ncols + 1);
	lk_rows_init(&rt->rows, ctx->ncols);
	lk_rows_init(&rt->dels, ctx->ncols);
	lk_keyset_init(&rt->seen);
	lk_arena_init(&rt->scratch, 16384);
}

static void rt_release(struct rt *rt)
{
	lk_rows_release(&rt->ent);
	lk_rows_release(&rt->keys);
	lk_rows_release(&rt->got);
	lk_rows_release(&rt->rows);
	lk_rows_release(&rt->dels);
	lk_keyset_release(&rt->seen);
	lk_buf_release(&rt->kb);
	lk_buf_release(&rt->pb);
	lk_arena_release(&rt->scratch);
	lk_db_close(&rt->lis);
}

int lk_realtime_run(struct lk_job_ctx *ctx, struct lk_err *err)
{
	struct rt rt;
	int rc = -1;

	ctx->rt = true;
	rt_init(&rt, ctx);
	if (!rt.cdc) {
		lk_err_set(err, LK_ERR_SCHEMA, "mode realtime is not available on this source");
		goto out;
	}
	ctx->prog.stage = "install";
	if (install(&rt, err) < 0 || open_listener(&rt, err) < 0 || resume(&rt, err) < 0)
		goto out;
	for (;;) {
		rc = stream(&rt, err);
		if (rc == 2) {
			if ((rc = resnapshot(&rt, rt.reason, rt.why, err)) < 0)
				break;
			continue;
		}
		if (rc != 1)
			break;
		/* A TRUNCATE or a gap: record the new start first, then tell the registry. */
		rc = -1;
		if (rt.why[0])
			lk_sync_gap_count(ctx->job->name, rt.gap_key);
		if (held(&rt)) {
			(void)hold(&rt, rt.why[0] ? LK_RESNAP_CAPTURE_GAP : LK_RESNAP_TRUNCATE,
				   rt.why[0] ? rt.why : "the source table was truncated", err);
			break;
		}
		if (announce(&rt, rt.why[0] ? LK_RESNAP_CAPTURE_GAP : LK_RESNAP_TRUNCATE,
			     rt.why[0] ? rt.why : "the source table was truncated", false, err) < 0)
			break;
		if (commit_pos(&rt, LK_PHASE_SNAPSHOT, &ctx->rt_start, err) < 0)
			break;
		rt.pos = ctx->rt_start;
		if (advance(&rt, true, err) < 0 || snapshot_phase(&rt, false, err) < 0)
			break;
	}
out:
	rt_release(&rt);
	return rc;
}
