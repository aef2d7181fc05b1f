/*
 * guard.h - the timeline guard of real-time jobs (docs/realtime.md, "Restores and
 * failovers"; DESIGN decision 13): a position resumes only while it still belongs to its
 * source and its target. What the guard (and change capture) forced is counted here by
 * job and reason, for /metrics (lockstep_resnapshots_total) and /api/health.
 */
#ifndef LK_SYNC_GUARD_H
#define LK_SYNC_GUARD_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
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
	LK_RESNAP_SCHEMA,	 /* a column was added: its values on rows already there */
	LK_RESNAP_NREASONS,
};

/* The metric's label for a reason: "source_changed", "source_timeline", ... */
const char *lk_resnap_reason_name(enum lk_resnap_reason r);
/* The reason of a label (LK_RESNAP_CAPTURE_GAP for one this build does not know). */
enum lk_resnap_reason lk_resnap_reason_of(const char *name, size_t len);

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

/*
 * What one job's run found about the trust in its target, in this process: the capture
 * gaps it met (lockstep_capture_gaps_total), and whether it is held: a re-snapshot is
 * needed but the job says `resnapshot: manual`, so it waits for `lockstep sync JOB --full`
 * (or POST /api/sync with type full) and runs nothing until then.
 */
struct lk_trust_stat {
	char job[128];
	int64_t gaps;			  /* capture gaps met since the process started */
	int64_t gap_last_wall_ms;	  /* when the last one was met; 0 when none */
	bool held;			  /* waiting for a re-snapshot the operator starts */
	enum lk_resnap_reason reason;	  /* held: why the re-snapshot is needed */
	int64_t held_wall_ms;		  /* held: since when */
	char why[320];			  /* held: the reason as logged */
	int64_t resnap_mono_ms;		  /* when the last forced re-snapshot began (throttle) */
	int recent;			  /* forced re-snapshots, each within an hour of the last */
	char gap_key[320];		  /* the last gap counted (lk_sync_gap_count) */
	bool blocked;			  /* stopped on its schemas (docs/schema-changes.md) */
	int64_t blocked_wall_ms;	  /* blocked: since when */
	char blocked_why[LK_ERR_MSG_MAX]; /* blocked: the message, with what to do */
};

/*
 * The throttle of forced re-snapshots of a streaming job (docs/realtime.md, "Re-snapshots"):
 * how long the one job is about to take must wait, in ms from now. The first is not held
 * back; the nth within an hour of the one before waits until 1, 2, 4 ... at most 15 minutes
 * after that one began. Records the re-snapshot as begun at now + the wait. Any thread.
 */
int64_t lk_sync_resnap_throttle(const char *job, int *nth);

/* Counts a capture gap met by job, once per key (a gap entry's place, or the reason a
 * check gave): a held job's retries meet the same one again. Any thread. */
void lk_sync_gap_count(const char *job, const char *key);
/* Marks job held (see lk_trust_stat) for reason and why; held stays true until
 * lk_sync_unhold. Any thread. */
void lk_sync_hold(const char *job, enum lk_resnap_reason reason, const char *why);
/* Clears job's hold: it re-snapshots, or resumed with nothing in the way. Any thread. */
void lk_sync_unhold(const char *job);
/* Marks job blocked on its schemas with the message why (lk_trust_stat); the first call of an
 * episode returns true (say it once), later ones false. Any thread. */
bool lk_sync_block(const char *job, const char *why);
/* Ends job's block: its schemas fit again. Returns true when it was blocked. Any thread. */
bool lk_sync_unblock(const char *job);
/* Copies up to max entries (one per job that met a gap or was held) into out. */
int lk_sync_trust(struct lk_trust_stat *out, int max);

#endif
