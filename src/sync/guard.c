/*
 * guard.c - the timeline guard (guard.h): whether a real-time position still belongs to
 * its source (same cluster, same timeline, a transaction counter not behind it) and to
 * its target (not behind the consumer registry); and the count of re-snapshots.
 */
#include "guard.h"

#include "core/units.h"
#include "sync_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char *const reason_names[LK_RESNAP_NREASONS] = {
	"source_changed", "source_timeline", "source_went_back", "target_behind",
	"registry_lost",  "capture_gap",     "truncate",	 "schema_change",
};

const char *lk_resnap_reason_name(enum lk_resnap_reason r)
{
	return r >= 0 && r < LK_RESNAP_NREASONS ? reason_names[r] : "unknown";
}

enum lk_resnap_reason lk_resnap_reason_of(const char *name, size_t len)
{
	for (int r = 0; r < LK_RESNAP_NREASONS; r++)
		if (strlen(reason_names[r]) == len && strncmp(reason_names[r], name, len) == 0)
			return (enum lk_resnap_reason)r;
	return LK_RESNAP_CAPTURE_GAP;
}

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lk_resnap_stat stats[LK_RESNAP_STATS_MAX];
static int nstats;

void lk_rt_resnapshot_count(const struct lk_job_ctx *ctx, enum lk_resnap_reason reason,
			    const char *why)
{
	const char *job = ctx->job->name;
	struct lk_resnap_stat *s = NULL;

	pthread_mutex_lock(&stats_mu);
	for (int i = 0; i < nstats && !s; i++)
		if (stats[i].reason == reason && strcmp(stats[i].job, job) == 0)
			s = &stats[i];
	if (!s && nstats < LK_RESNAP_STATS_MAX) {
		s = &stats[nstats++];
		(void)snprintf(s->job, sizeof(s->job), "%s", job);
		s->reason = reason;
	}
	if (s) {
		s->count++;
		s->last_wall_ms = lk_wall_ms();
		(void)snprintf(s->why, sizeof(s->why), "%s", why ? why : "");
	}
	pthread_mutex_unlock(&stats_mu);
}

int lk_sync_resnapshots(struct lk_resnap_stat *out, int max)
{
	int n;

	pthread_mutex_lock(&stats_mu);
	n = nstats < max ? nstats : max;
	memcpy(out, stats, (size_t)(n > 0 ? n : 0) * sizeof(*out));
	pthread_mutex_unlock(&stats_mu);
	return n;
}

static struct lk_trust_stat trust[LK_RESNAP_STATS_MAX];
static int ntrust;

/* The entry of job, made when missing (NULL when the table is full); stats_mu held. */
static struct lk_trust_stat *trust_of(const char *job)
{
	for (int i = 0; i < ntrust; i++)
		if (strcmp(trust[i].job, job) == 0)
			return &trust[i];
	if (ntrust == LK_RESNAP_STATS_MAX)
		return NULL;
	(void)snprintf(trust[ntrust].job, sizeof(trust[ntrust].job), "%s", job);
	return &trust[ntrust++];
}

#define RESNAP_QUIET_MS 3600000 /* a re-snapshot this long after the last is a first one */
#define RESNAP_FIRST_GAP_MS 60000
#define RESNAP_MAX_GAP_MS 900000

int64_t lk_sync_resnap_throttle(const char *job, int *nth)
{
	int64_t now = lk_mono_ms(), wait = 0, gap = RESNAP_FIRST_GAP_MS;
	struct lk_trust_stat *t;

	pthread_mutex_lock(&stats_mu);
	t = trust_of(job);
	if (t && t->recent > 0 && now - t->resnap_mono_ms < RESNAP_QUIET_MS) {
		for (int i = 1; i < t->recent && gap < RESNAP_MAX_GAP_MS; i++)
			gap *= 2;
		if (gap > RESNAP_MAX_GAP_MS)
			gap = RESNAP_MAX_GAP_MS;
		wait = t->resnap_mono_ms + gap - now;
		wait = wait > 0 ? wait : 0;
		t->recent++;
	} else if (t) {
		t->recent = 1;
	}
	if (t)
		t->resnap_mono_ms = now + wait;
	*nth = t ? t->recent : 1;
	pthread_mutex_unlock(&stats_mu);
	return wait;
}

void lk_sync_gap_count(const char *job, const char *key)
{
	struct lk_trust_stat *t;

	pthread_mutex_lock(&stats_mu);
	if ((t = trust_of(job)) != NULL && strncmp(t->gap_key, key, sizeof(t->gap_key) - 1) != 0) {
		(void)snprintf(t->gap_key, sizeof(t->gap_key), "%s", key);
		t->gaps++;
		t->gap_last_wall_ms = lk_wall_ms();
	}
	pthread_mutex_unlock(&stats_mu);
}

void lk_sync_hold(const char *job, enum lk_resnap_reason reason, const char *why)
{
	struct lk_trust_stat *t;

	pthread_mutex_lock(&stats_mu);
	if ((t = trust_of(job)) != NULL) {
		if (!t->held)
			t->held_wall_ms = lk_wall_ms();
		t->held = true;
		t->reason = reason;
		(void)snprintf(t->why, sizeof(t->why), "%s", why ? why : "");
	}
	pthread_mutex_unlock(&stats_mu);
}

void lk_sync_unhold(const char *job)
{
	pthread_mutex_lock(&stats_mu);
	for (int i = 0; i < ntrust; i++)
		if (strcmp(trust[i].job, job) == 0)
			trust[i].held = false;
	pthread_mutex_unlock(&stats_mu);
}

bool lk_sync_block(const char *job, const char *why)
{
	struct lk_trust_stat *t;
	bool first = false;

	pthread_mutex_lock(&stats_mu);
	if ((t = trust_of(job)) != NULL) {
		first = !t->blocked ||
			strncmp(t->blocked_why, why, sizeof(t->blocked_why) - 1) != 0;
		if (!t->blocked)
			t->blocked_wall_ms = lk_wall_ms();
		t->blocked = true;
		(void)snprintf(t->blocked_why, sizeof(t->blocked_why), "%s", why);
	}
	pthread_mutex_unlock(&stats_mu);
	return first;
}

bool lk_sync_unblock(const char *job)
{
	bool was = false;

	pthread_mutex_lock(&stats_mu);
	for (int i = 0; i < ntrust; i++)
		if (strcmp(trust[i].job, job) == 0) {
			was = trust[i].blocked;
			trust[i].blocked = false;
		}
	pthread_mutex_unlock(&stats_mu);
	return was;
}

int lk_sync_trust(struct lk_trust_stat *out, int max)
{
	int n;

	pthread_mutex_lock(&stats_mu);
	n = ntrust < max ? ntrust : max;
	memcpy(out, trust, (size_t)(n > 0 ? n : 0) * sizeof(*out));
	pthread_mutex_unlock(&stats_mu);
	return n;
}

static int verdict(struct lk_rt_guard *g, enum lk_resnap_reason reason)
{
	g->resnap = true;
	g->reason = reason;
	return 1;
}

/*
 * Judges the source's lineage `now` against a position `at` taken on `was`: 1 (g says
 * why) when the source is another cluster, on another timeline, or handing out
 * transaction ids the position has already seen (it went back); else 0. Unknown values
 * (an older position, a role that may not read them) are not judged.
 */
static int judge_source(const struct lk_pos_origin *was, const struct lk_cdc_pos *at,
			const struct lk_lineage *now, struct lk_rt_guard *g)
{
	if (was->known && was->sysid[0] && now->sysid[0] && strcmp(was->sysid, now->sysid) != 0) {
		(void)snprintf(g->why, sizeof(g->why),
			       "the source is another PostgreSQL cluster (system identifier %s) "
			       "than the one its position was taken on (%s): a restore into a new "
			       "cluster, pg_upgrade, or another server behind the same address",
			       now->sysid, was->sysid);
		return verdict(g, LK_RESNAP_SOURCE_CHANGED);
	}
	if (was->known && was->tli > 0 && now->tli > 0 && was->tli != now->tli) {
		(void)snprintf(g->why, sizeof(g->why),
			       "the source is on timeline %" PRId64 ", its position was taken on "
			       "timeline %" PRId64 ": after a failover or a point-in-time restore, "
			       "changes the old timeline had may be gone",
			       now->tli, was->tli);
		return verdict(g, LK_RESNAP_SOURCE_TIMELINE);
	}
	if (now->next_xid > 0 &&
	    (now->next_xid < at->horizon || (at->xid > 0 && now->next_xid <= at->xid))) {
		(void)snprintf(
			g->why, sizeof(g->why),
			"the source's transaction counter (next xid %" PRId64
			") is behind its position (horizon %" PRId64 ", xid %" PRId64
			"): the source went back in time (a restored backup, or a crash that "
			"lost the end of its WAL)",
			now->next_xid, at->horizon, at->xid);
		return verdict(g, LK_RESNAP_SOURCE_WENT_BACK);
	}
	return 0;
}

/*
 * The registry hears a position only after the target committed it (realtime.c, advance),
 * so a registry ahead of the target's position means the target lost commits. Positions
 * from before the guard are not judged: older versions let the registry run ahead over
 * windows without entries.
 */
static int judge_target(const struct lk_position *pos, bool seq_only, struct lk_rt_guard *g)
{
	const struct lk_cdc_pos *r = &g->reg, *p = &pos->cdc;

	if (!pos->origin.known || !g->has_reg || lk_cdc_pos_cmp(r, p, seq_only) <= 0)
		return 0;
	(void)snprintf(g->why, sizeof(g->why),
		       "the target's position (horizon %" PRId64 ", xid %" PRId64 ", seq %" PRId64
		       ") is behind what the source's consumer registry says it applied (horizon "
		       "%" PRId64 ", xid %" PRId64 ", seq %" PRId64
		       "): the target lost commits (restored from a backup, or a replica "
		       "promoted), and changes it still needs may have been pruned",
		       p->horizon, p->xid, p->seq, r->horizon, r->xid, r->seq);
	return verdict(g, LK_RESNAP_TARGET_BEHIND);
}

/* What every position the run writes from now on says about its source. */
static void set_origin(struct lk_job_ctx *ctx, const struct lk_lineage *now)
{
	ctx->rt_origin = (struct lk_pos_origin){.known = true, .tli = now->tli};
	memcpy(ctx->rt_origin.sysid, now->sysid, sizeof(now->sysid));
}

int lk_rt_guard_resume(struct lk_job_ctx *ctx, const struct lk_position *pos, int64_t relid,
		       struct lk_rt_guard *g, struct lk_err *err)
{
	const struct lk_connector_ops *ops = ctx->src.ops;
	struct lk_lineage now;

	memset(g, 0, sizeof(*g));
	if (!ops->lineage)
		return 0;
	if (ops->lineage(ctx->src.conn, ctx->ident, relid, &now, err) < 0)
		return -1;
	set_origin(ctx, &now);
	g->has_reg = now.registered;
	g->reg = (struct lk_cdc_pos){now.reg[0], now.reg[1], now.reg[2]};
	if (pos->mode != LK_POS_REALTIME || pos->phase == LK_PHASE_NONE)
		return 0; /* nothing to resume: nothing to judge */
	/* SQLite (no cluster identity): judge_source finds nothing to judge, and the cdc op
	 * check_capture judges the file's history; its changelog is ordered by seq alone. */
	if (judge_source(&pos->origin, &pos->cdc, &now, g) == 0)
		(void)judge_target(pos, ctx->src.conf->kind == LK_DB_SQLITE, g);
	return 0;
}

int lk_poll_guard(struct lk_job_ctx *ctx, const struct lk_position *pos, struct lk_rt_guard *g,
		  struct lk_err *err)
{
	const struct lk_connector_ops *ops = ctx->src.ops;
	struct lk_lineage now;

	memset(g, 0, sizeof(*g));
	if (!ops->lineage || ctx->src.conf->kind != LK_DB_POSTGRES)
		return 0; /* an SQLite file: no counter to judge by */
	if (ops->lineage(ctx->src.conn, NULL, 0, &now, err) < 0)
		return -1;
	set_origin(ctx, &now);
	ctx->rt_origin.nx = now.next_xid;
	if (pos->mode == LK_POS_POLL && pos->origin.known)
		(void)judge_source(&pos->origin, &(struct lk_cdc_pos){pos->origin.nx, 0, 0}, &now,
				   g);
	return 0;
}

int lk_rt_guard_check(struct lk_job_ctx *ctx, const struct lk_cdc_pos *at, struct lk_rt_guard *g,
		      struct lk_err *err)
{
	const struct lk_connector_ops *ops = ctx->src.ops;
	struct lk_lineage now;

	memset(g, 0, sizeof(*g));
	if (!ops->lineage || !ctx->rt_origin.known)
		return 0;
	if (ops->lineage(ctx->src.conn, NULL, 0, &now, err) < 0)
		return -1;
	/* A fresh snapshot follows: it is taken from the source as it is now. */
	if (judge_source(&ctx->rt_origin, at, &now, g) > 0)
		set_origin(ctx, &now);
	return 0;
}
