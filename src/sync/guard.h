/*
 * guard.h - the timeline guard of real-time jobs (docs/realtime.md, "Restores and
 * failovers"; DESIGN decision 13): a position resumes only while it still belongs to its
 * source and its target. What the guard (and change capture) forced is counted here by
 * job and reason, for /metrics (lockstep_resnapshots_total) and /api/health.
 */
#ifndef LK_SYNC_GUARD_H
#define LK_SYNC_GUARD_H

#include <stdint.h>

/* Why a real-time job took a fresh snapshot (with the sweep) instead of resuming. */
enum lk_resnap_reason {
	LK_RESNAP_SOURCE_CHANGED = 0, /* another cluster: its system identifier differs */
	LK_RESNAP_SOURCE_TIMELINE,    /* a new timeline: a failover or a point-in-time restore */
	LK_RESNAP_SOURCE_WENT_BACK,   /* its transaction counter is behind the position */
	LK_RESNAP_TARGET_BEHIND,      /* the target's position is behind the consumer registry */
	LK_RESNAP_REGISTRY_LOST, /* the registry row is gone (uninstall, a dropped changelog) */
	LK_RESNAP_CAPTURE_GAP,	 /* change capture was off, or the changelog went back */
	LK_RESNAP_TRUNCATE,	 /* the source table was truncated */
	LK_RESNAP_NREASONS,
};

/* The metric's label for a reason: "source_changed", "source_timeline", ... */
const char *lk_resnap_reason_name(enum lk_resnap_reason r);

#define LK_RESNAP_STATS_MAX 256

/* The re-snapshots of one job for one reason in this process. */
struct lk_resnap_stat {
	char job[128];
	enum lk_resnap_reason reason;
	int64_t count;
	int64_t last_wall_ms; /* when the last one began */
	char why[320];	      /* the last one's reason, as logged */
};

/*
 * Copies up to max entries (one per job and reason, at most LK_RESNAP_STATS_MAX kept: a
 * process with more counts no new pairs) into out; returns how many. Any thread.
 */
int lk_sync_resnapshots(struct lk_resnap_stat *out, int max);

#endif
