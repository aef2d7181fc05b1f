/*
 * poll.c - incremental polling by a cursor column (SPEC §4, DESIGN decision 7):
 * position (cursor, key) compared as a row, a look-back window for time cursors, a
 * limit below the oldest open transaction when every transaction can be seen (held at
 * the stored position while a prepared transaction exists), and rows that stopped
 * matching `where` handled as deletes.
 */
#include "budget.h"
#include "sync_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "poll"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"

struct poll_bounds {
	int *order; /* cursor, then the key */
	int norder;
	struct lk_value *after;	   /* resume after (cursor, key) */
	struct lk_value min_first; /* cursor >= position - lookback */
	bool has_min;
	char min_buf[64];
	char resume[64]; /* the stored position's cursor value, "" without one */
	/* The record a run keeps in its positions (see start_bound): the cap its run saw, and
	 * each transaction prepared then with a bound on its start. */
	char seen[64];	      /* the stored record's cap, "" without one */
	json_t *held;	      /* the stored record's prepared transactions, or NULL */
	bool has_record;      /* this run's record, kept in each position it writes: */
	char rec_seen[64];    /* the cap it saw ("" when not a time) */
	json_t *rec_prepared; /* the transactions prepared then, with their bounds */
	/* has_limit: the position may not pass limit (a transaction that may still commit
	 * rows with cursor values from limit on is open); limit_min: limit is -infinity. */
	bool has_limit, limit_min;
	int64_t limit_us; /* limit as microseconds since the epoch */
	char limit_buf[64];
};

/* Sets min_first to `from` minus the look-back (time cursors), or to `from` itself. */
static void set_min(struct lk_job_ctx *ctx, struct poll_bounds *b, const char *from)
{
	int64_t back = lk_type_is_time(ctx->types[ctx->cursor]) ? ctx->job->lookback_ms * 1000 : 0;

	if (lk_ts_shift(from, -back, b->min_buf, sizeof(b->min_buf)) < 0)
		(void)snprintf(b->min_buf, sizeof(b->min_buf), "%s", from);
	b->min_first = (struct lk_value){b->min_buf, strlen(b->min_buf), false};
	b->has_min = true;
}

/* Keeps the record of the run that wrote the stored position (see start_bound). */
static void read_record(struct poll_bounds *b, const struct lk_position *p)
{
	memcpy(b->seen, p->seen, sizeof(b->seen));
	if (p->prepared)
		b->held = json_incref(p->prepared);
}

/*
 * Reads the stored position and turns it into scan bounds: {"after": [cursor, key...]}
 * resumes after that row; {"from": cursor} (a capped position) re-reads from that value.
 * With a look-back on a time cursor, either becomes "cursor >= value - lookback".
 */
static void resume_bounds(struct lk_job_ctx *ctx, struct poll_bounds *b, struct lk_arena *arena,
			  bool restart)
{
	struct lk_position p;
	const struct lk_value *cur;

	if (!ctx->pos || restart || (ctx->opts && ctx->opts->full))
		return;
	lk_position_decode(ctx->pos, &p);
	if (p.mode != LK_POS_POLL) {
		lk_position_release(&p);
		return;
	}
	read_record(b, &p);
	if (p.from[0]) {
		memcpy(b->resume, p.from, sizeof(b->resume));
		set_min(ctx, b, p.from);
	} else if (p.vals_json) {
		b->after = lk_arena_alloc(arena, sizeof(*b->after) * (size_t)b->norder);
		if (lk_position_values(&p, b->after, ctx->types, b->order, b->norder, arena) < 0)
			b->after = NULL;
	}
	lk_position_release(&p);
	if (!b->after)
		return;
	cur = &b->after[0];
	if (!cur->null && cur->len < sizeof(b->resume))
		(void)snprintf(b->resume, sizeof(b->resume), "%.*s", (int)cur->len, cur->p);
	if (ctx->job->lookback_ms > 0 && lk_type_is_time(ctx->types[ctx->cursor]) && !cur->null) {
		/* Re-read the look-back window from its start; upserts make repeats harmless. */
		char start[64];

		(void)snprintf(start, sizeof(start), "%.*s", (int)cur->len, cur->p);
		set_min(ctx, b, start);
		b->after = NULL;
	}
}

/*
 * What poll mode says once per job and state in this process: a daemon polls every few
 * seconds, and the same news each time would drown the log. Returns true when `state`
 * (for `key`: the cap's state, or the oldest prepared transaction's gid) is new for job.
 */
static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return (h ^ 0xffu) * 1099511628211u; /* "ab"+"c" is not "a"+"bc" */
}

static bool is_news(const char *job, const char *key, const char *state)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static struct {
		uint64_t who, what;
	} said[512]; /* two per poll job; when full, everything is news */
	uint64_t who = fnv1a(fnv1a(14695981039346656037u, job), key);
	uint64_t what = fnv1a(14695981039346656037u, state);
	bool news = true;
	int i;

	pthread_mutex_lock(&mu);
	for (i = 0; i < 512 && said[i].who && said[i].who != who; i++)
		;
	if (i < 512) {
		news = said[i].what != what;
		said[i].who = who;
		said[i].what = what;
	}
	pthread_mutex_unlock(&mu);
	return news;
}

/* Why the open transactions cannot all be seen, for messages (lk_poll_cap_why). */
const char *lk_poll_cap_why(enum lk_poll_cap_state state)
{
	switch (state) {
	case LK_POLL_CAP_STANDBY:
		return "the source is a hot standby (pg_is_in_recovery()): the primary's open "
		       "transactions are not visible there";
	case LK_POLL_CAP_NO_PRIVILEGE:
		return "the role cannot see other sessions' transactions (grant it "
		       "pg_read_all_stats)";
	case LK_POLL_CAP_UNTRACKED:
		return "a session of the source database runs with track_activities off: its "
		       "transaction's start is not visible";
	case LK_POLL_CAP_ON:
		break;
	}
	return "";
}

/* Logs (once per state) that the cap does not apply here and why, and what protects. */
static void say_cap_state(const struct lk_job *job, enum lk_poll_cap_state state)
{
	static const char *const names[] = {"on", "no_privilege", "standby", "untracked"};

	if (!is_news(job->name, "cap", names[state]))
		return;
	if (state == LK_POLL_CAP_ON)
		lk_log_debug("job %s: every open transaction of the source is visible: the "
			     "position stays below the oldest",
			     job->name);
	else if (job->lookback_ms > 0)
		lk_log_warn("job %s: %s, so the position is not held below them; lookback "
			    "(%lld ms) is what protects a row committed after a poll with an older "
			    "cursor value",
			    job->name, lk_poll_cap_why(state), (long long)job->lookback_ms);
	else
		lk_log_warn("job %s: %s, so the position is not held below them, and lookback is "
			    "0: a row committed after a poll with an older cursor value is missed",
			    job->name, lk_poll_cap_why(state));
}

/* Lowers the limit to `text` (us: its value); min: -infinity, the position stays put. */
static void lower_limit(struct poll_bounds *b, const char *text, int64_t us, bool min)
{
	if (b->has_limit && !min && (b->limit_min || b->limit_us <= us))
		return;
	(void)snprintf(b->limit_buf, sizeof(b->limit_buf), "%s", min ? "-infinity" : text);
	b->limit_us = us;
	b->limit_min = min;
	b->has_limit = true;
}

/* Lowers the limit to one second below `start` (-infinity when start is not a time). One
 * second of margin: a column of lower precision rounds a transaction's now() (e.g.
 * 12:00:06.04 stored as 12:00:06) below its start. */
static void limit_below(struct poll_bounds *b, const char *start)
{
	char margin[64];
	int64_t us;
	bool known = lk_ts_shift(start, -1000000, margin, sizeof(margin)) == 0 &&
		     lk_ts_parse(margin, &us) == 0;

	lower_limit(b, margin, known ? us : 0, !known);
}

/*
 * A bound below the start of prepared transaction `xid`. PostgreSQL does not record when
 * a prepared transaction began, and it has left pg_stat_activity, yet its rows carry
 * cursor values from its start (now()), which can be long before its PREPARE. What is
 * known: each run's positions keep a record of the cap that run saw (the oldest start
 * among the transactions open then, or its clock) and of the transactions prepared then,
 * each with such a bound. A transaction prepared now but not then was open then (it
 * started at or after the cap) or began later: the cap is a bound. One prepared then keeps
 * its bound. A position without a record (written before records existed) was kept below
 * every transaction open or prepared at its run, and any begun later starts after it: one
 * second above it is a bound. Without a position (a first run, --full) nothing is known:
 * -infinity, and the position stays at the start of the table until the transaction ends.
 */
static const char *start_bound(const struct poll_bounds *b, const char *xid, char *buf, size_t size)
{
	json_t *v = b->held ? json_object_get(b->held, xid) : NULL;

	if (json_is_string(v))
		return json_string_value(v);
	if (b->seen[0])
		return b->seen;
	if (b->resume[0] && lk_ts_shift(b->resume, 1000000, buf, (unsigned)size) == 0)
		return buf;
	return "-infinity";
}

/* Bounds the limit by each prepared transaction (comma-separated xids) and records them. */
static void limit_prepared(struct poll_bounds *b, const char *xids, json_t *rec)
{
	char xid[24], buf[64];
	const char *p = xids, *start;
	size_t n;

	while (*p) {
		n = strcspn(p, ",");
		(void)snprintf(xid, sizeof(xid), "%.*s", (int)n, p);
		start = start_bound(b, xid, buf, sizeof(buf));
		limit_below(b, start);
		(void)json_object_set_new(rec, xid, json_string(start));
		p += n + (p[n] == ',');
	}
}

/* Sets the limit below the oldest open or prepared transaction (timestamptz cursors on
 * PostgreSQL) and this run's record. */
static int cap_bound(struct lk_job_ctx *ctx, struct poll_bounds *b, struct lk_err *err)
{
	struct lk_poll_cap pc;

	/* Only timestamptz: a timestamp column's values depend on each writer's TimeZone,
	 * which lockstep cannot see, so such cursors rely on lookback (check-config says so). */
	if (!ctx->src.ops->poll_cap || ctx->types[ctx->cursor] != LK_T_TIMESTAMPTZ)
		return 0;
	if (ctx->src.ops->poll_cap(ctx->src.conn, &pc, err) < 0)
		return -1;
	say_cap_state(ctx->job, pc.state);
	if (pc.state != LK_POLL_CAP_ON)
		return 0;
	limit_below(b, pc.cap);
	b->has_record = true;
	if (!b->limit_min) /* the cap is not a time: later runs must not rely on it */
		(void)snprintf(b->rec_seen, sizeof(b->rec_seen), "%s", pc.cap);
	b->rec_prepared = json_object();
	limit_prepared(b, pc.xids, b->rec_prepared);
	if (pc.nprepared > 0 && is_news(ctx->job->name, "prepared", pc.gid))
		lk_log_info("job %s: prepared transaction '%s' (prepared at %s; %lld in all) "
			    "keeps the position at or below %s until it commits or rolls back: "
			    "its rows may carry cursor values from before its PREPARE",
			    ctx->job->name, pc.gid, pc.prepared_at, (long long)pc.nprepared,
			    b->limit_buf);
	else if (pc.nprepared == 0)
		(void)is_news(ctx->job->name, "prepared", ""); /* the next one is news again */
	free(pc.xids);
	return 0;
}

/* Whether a cursor value is at or past the limit ("infinity" is past every limit). */
static bool past_limit(const struct poll_bounds *b, const struct lk_value *cur)
{
	int64_t us;

	if (!b->has_limit)
		return false;
	if (b->limit_min || strcmp(cur->p, "infinity") == 0)
		return true;
	return lk_ts_parse(cur->p, &us) == 0 && us >= b->limit_us;
}

/*
 * The position after `row`. Rows past the limit are applied (they are committed and
 * visible), but the position stops at the limit: a transaction still open or prepared
 * may commit rows with smaller cursor values than `row`.
 */
static void poll_pos(struct lk_buf *pos, struct lk_job_ctx *ctx, const struct poll_bounds *b,
		     const struct lk_value *row)
{
	struct lk_position p = {
		.mode = LK_POS_POLL, .has_record = b->has_record, .prepared = b->rec_prepared};

	memcpy(p.fp, ctx->fp, sizeof(p.fp));
	p.origin = ctx->rt_origin;
	memcpy(p.seen, b->rec_seen, sizeof(p.seen));
	if (!row[ctx->cursor].null && past_limit(b, &row[ctx->cursor]))
		memcpy(p.from, b->limit_buf, sizeof(p.from));
	else
		p.vals = (struct lk_pos_values){row, ctx->types, b->order, b->norder};
	lk_buf_reset(pos);
	lk_position_encode(pos, &p);
}

/* Splits a page by the match column; rows that no longer match go to dels (unless ignored). */
static void split_page(struct lk_job_ctx *ctx, const struct lk_rows *page, struct lk_rows *ups,
		       struct lk_rows *dels)
{
	int m = ctx->ncols; /* the lk_match column */

	for (int r = 0; r < page->nrows; r++) {
		bool match = LK_ROW(page, r)[m].p[0] == 't';

		if (match)
			lk_rows_copy_row(ups, page, r);
		else if (ctx->job->target.deletes != LK_DELETES_IGNORE)
			lk_rows_copy_row(dels, page, r);
	}
}

static int poll_loop(struct lk_job_ctx *ctx, struct lk_scan *scan, const struct poll_bounds *b,
		     struct lk_err *err)
{
	bool where = ctx->job->source.where != NULL;
	struct lk_rows page, ups, dels;
	struct lk_buf pos = LK_BUF_INIT;
	int rc = -1, n;

	lk_rows_init(&page, ctx->ncols + (where ? 1 : 0));
	lk_rows_init(&ups, ctx->ncols);
	lk_rows_init(&dels, ctx->ncols);
	for (;;) {
		if (ctx->opts && lk_flag(ctx->opts->stop)) {
			lk_err_set(err, LK_ERR_CANCELLED, "stopped at a batch boundary");
			goto out;
		}
		lk_rows_reset(&page);
		lk_rows_reset(&ups);
		lk_rows_reset(&dels);
		n = ctx->src.ops->scan_next(scan, &page, lk_sync_batch(ctx->job), err);
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		ctx->prog.rows_read += n;
		poll_pos(&pos, ctx, b, LK_ROW(&page, page.nrows - 1));
		if (where)
			split_page(ctx, &page, &ups, &dels);
		/* change NULL: a dead letter's change is its row's cursor value. */
		if (lk_apply_batch(ctx,
				   &(struct lk_batch){.upserts = where ? &ups : &page,
						      .deletes = where ? &dels : NULL,
						      .pos = pos.buf},
				   err) < 0)
			goto out;
		free(ctx->pos);
		ctx->pos = lk_xstrdup(pos.buf);
		lk_job_report(ctx, false);
	}
	rc = 0;
out:
	lk_rows_release(&page);
	lk_rows_release(&ups);
	lk_rows_release(&dels);
	lk_buf_release(&pos);
	return rc;
}

/*
 * The timeline guard for poll mode (guard.c): a source that went back (a restore, a
 * failover) took back rows the position has passed, and may hold older versions of rows
 * the target has newer ones of. Nothing in the cursor can tell which: *restart is set, and
 * the run reads every row again, saying so once and counting it like a re-snapshot.
 */
static int poll_guard(struct lk_job_ctx *ctx, bool *restart, struct lk_err *err)
{
	struct lk_position p;
	struct lk_rt_guard g;
	struct lk_err ignored = LK_ERR_INIT;
	int rc;

	*restart = false;
	lk_position_decode(ctx->pos, &p);
	rc = lk_poll_guard(ctx, &p, &g, err);
	lk_position_release(&p);
	if (rc < 0 || !g.resnap || (ctx->opts && ctx->opts->full))
		return rc;
	lk_log_warn("job %s: %s; reading every row again from the beginning (a poll job cannot "
		    "tell which rows went back; rows the source no longer has stay on the "
		    "target, as poll mode does not see deletes: `lockstep verify` lists them)",
		    ctx->job->name, g.why);
	lk_rt_resnapshot_count(ctx, g.reason, g.why);
	if (ctx->store &&
	    lk_store_resnap_note(ctx->store, ctx->job->name, lk_resnap_reason_name(g.reason), g.why,
				 &ignored) < 0)
		lk_log_debug_err(&ignored, "job %s: cannot record the re-read for status",
				 ctx->job->name);
	*restart = true;
	return 0;
}

int lk_poll_run(struct lk_job_ctx *ctx, struct lk_err *err)
{
	struct poll_bounds b;
	struct lk_arena arena;
	struct lk_scan_spec spec;
	struct lk_scan *scan;
	struct lk_buf notnull = LK_BUF_INIT;
	bool restart = false;
	int rc = -1;

	memset(&b, 0, sizeof(b));
	lk_arena_init(&arena, 4096);
	b.norder = 1 + ctx->nkey;
	b.order = lk_xcalloc((size_t)b.norder, sizeof(int));
	b.order[0] = ctx->cursor;
	memcpy(&b.order[1], ctx->key, (size_t)ctx->nkey * sizeof(int));
	if (poll_guard(ctx, &restart, err) < 0)
		goto out;
	resume_bounds(ctx, &b, &arena, restart);
	if (cap_bound(ctx, &b, err) < 0)
		goto out;
	/* A NULL cursor sorts outside every position: such rows are never polled (docs). */
	lk_quote_ident(&notnull, ctx->cols[ctx->cursor]);
	lk_buf_adds(&notnull, " IS NOT NULL");
	spec = (struct lk_scan_spec){
		.table = &ctx->job->source.table,
		.cols = ctx->cols,
		.types = ctx->types,
		.ncols = ctx->ncols,
		.order = b.order,
		.norder = b.norder,
		.after = b.after,
		.min_first = b.has_min ? &b.min_first : NULL,
		.filter = notnull.buf,
		.match = ctx->job->source.where,
	};
	ctx->prog.stage = "poll";
	scan = ctx->src.ops->scan_open(ctx->src.conn, &spec, err);
	if (!scan)
		goto out;
	rc = poll_loop(ctx, scan, &b, err);
	ctx->src.ops->scan_close(scan);
out:
	free(b.order);
	json_decref(b.held);
	json_decref(b.rec_prepared);
	lk_buf_release(&notnull);
	lk_arena_release(&arena);
	return rc;
}
