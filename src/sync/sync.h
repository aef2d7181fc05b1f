/*
 * sync.h - the sync engine: one run of a sync job (snapshot or poll), and verify.
 *
 * A run opens its own connections, checks both schemas, takes the job's lock and
 * a new epoch, seals it in the target, then streams batches; each batch is one
 * target transaction whose first statement moves the fenced position (DESIGN
 * decision 5). Runs on the calling thread; `stop` is polled between batches.
 */
#ifndef LK_SYNC_H
#define LK_SYNC_H

#include "config/config.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

struct lk_sync_progress {
	const char *job;
	const char *stage; /* "connect", "snapshot", "poll", "sweep", "stream", "done" */
	int64_t rows_read, rows_written, rows_deleted, rows_failed;
	int64_t total_estimate; /* -1 when unknown */
	int64_t elapsed_ms;
	/* real-time, following: the replication lag as last measured (has_lag false: unknown) */
	bool has_lag;
	double lag_s;	  /* age of the oldest change not yet applied; 0 when none */
	int64_t lag_rows; /* changes committed on the source and not yet applied */
};

typedef void (*lk_sync_progress_cb)(void *arg, const struct lk_sync_progress *p);

struct lk_sync_opts {
	bool full;		   /* restart from the beginning instead of the position */
	volatile const bool *stop; /* set by a signal handler: stop at the next batch boundary */
	bool follow; /* realtime: keep streaming until stop (lockstep run); else stop when
			caught up with the changelog (lockstep sync) */
	const struct lk_retry_conf *retry; /* connection retries; NULL: the job's retry */
	lk_sync_progress_cb progress;
	void *progress_arg;
	const char *run_id;	     /* the run's id chosen by the caller (HTTP); NULL: new */
	volatile const bool *cancel; /* set with stop when a user cancelled: status cancelled */
};

struct lk_sync_result {
	char run_id[37];
	const char *status; /* succeeded | failed | interrupted */
	/* rows_failed: rows sent to the dead-letter queue (the run still succeeds). */
	int64_t rows_read, rows_written, rows_deleted, rows_failed;
	int64_t elapsed_ms;
};

/*
 * Runs `job` once and records the run in the store. Returns 0 on success, -1 with err
 * (and res->status "failed" or "interrupted") otherwise. err codes: LK_ERR_BUSY when
 * another process holds the job, LK_ERR_UNAVAILABLE when a database stayed unreachable,
 * LK_ERR_SCHEMA for a missing table, column or unique key, LK_ERR_FENCED when a newer
 * epoch took over, LK_ERR_CANCELLED when stopped.
 */
int lk_sync_run(const struct lk_config *cfg, const struct lk_job *job, struct lk_store *store,
		const struct lk_sync_opts *opts, struct lk_sync_result *res, struct lk_err *err);

/* What `lockstep errors replay ID` did. */
enum lk_replay_action {
	LK_REPLAY_UPSERTED, /* the key's current source row was applied */
	LK_REPLAY_DELETED,  /* the source row is gone (or left `where`): the delete was applied */
	LK_REPLAY_NOTHING,  /* the source row is gone and the job's deletes are `ignore` */
	LK_REPLAY_QUEUED,   /* real-time job: the key was queued for its applier */
};

struct lk_replay_result {
	enum lk_replay_action action;
	char job[128];
	char key[256]; /* the key's JSON, cut to fit */
};

/*
 * Replays dead letter `id` through its job's fenced path (docs/dead-letters.md), never
 * by writing the stored row image. Snapshot and poll jobs: takes the job lock
 * (LK_ERR_BUSY when another process holds it), seals a new epoch, reads the key's
 * current source row and applies it (or the delete, per `deletes`) in one fenced batch
 * that re-puts the target's position unchanged; on success the key's open dead letters
 * are resolved. When the target rejects it again, the dead letter's attempts, SQLSTATE
 * and message are updated and the error returned. Real-time jobs: a changelog entry
 * for the key marks it dirty, and its applier resolves the dead letter when the key
 * applies cleanly. LK_ERR_NOTFOUND: no such dead letter, or its job is gone.
 */
int lk_sync_replay(const struct lk_config *cfg, struct lk_store *store, int64_t id,
		   const struct lk_sync_opts *opts, struct lk_replay_result *res,
		   struct lk_err *err);

#define LK_VERIFY_MAX_DIFFS 20

enum lk_diff_kind { LK_DIFF_MISSING, LK_DIFF_EXTRA, LK_DIFF_CHANGED };

struct lk_verify_diff {
	enum lk_diff_kind kind;
	char *key_json; /* the key as a JSON array of text values */
};

struct lk_verify_result {
	bool equal; /* no difference left (after the repair, when asked for) */
	int64_t source_rows, target_rows;
	int64_t chunks, chunks_differing;
	int64_t differences; /* found (each still there after the job applied past its read);
			      * at most LK_VERIFY_MAX_DIFFS are listed */
	int64_t missing;     /* of which: source keys absent from the target */
	int64_t repaired;    /* keys written, deleted or queued for the job's applier */
	int64_t remaining;   /* differences still there after the repair */
	bool unsettled;	     /* the job did not apply past a read in time (see settle_ms) */
	bool count_differs;  /* the row counts differ while no key does (one difference) */
	struct lk_verify_diff diffs[LK_VERIFY_MAX_DIFFS];
	int ndiffs;
	int64_t elapsed_ms;
	char run_id[37]; /* the recorded run, "" when none */
};

/* How one verify pass runs (docs/verify.md). */
struct lk_verify_opts {
	bool repair; /* apply every difference through the job's fenced path */
	/*
	 * A key that differs is checked again once the job has applied past the moment it was
	 * read (real-time: the target's position passed the source's changelog head; poll and
	 * snapshot: a run of the job began after it), waiting at most this long; 0: checked
	 * again at once. Up to three rounds: only a difference that survives them is one.
	 */
	int64_t settle_ms;
	/* the state store: needed to repair (the job lock), to settle poll and snapshot jobs
	 * (their runs) and to record the pass; NULL: none of these */
	struct lk_store *store;
	const char *record; /* record the pass as a run of this type ("verify", "repair") */
	const char *run_id; /* its id (NULL: a new one) */
	bool catch_up;	    /* real-time repair: when no one holds the job, run its catch-up */
	/* poll/snapshot repair: while the job's lock is held elsewhere, wait up to this long
	 * for it instead of failing with LK_ERR_BUSY (0: fail at once) */
	int64_t lock_wait_ms;
	/* poll/snapshot repair, in a daemon: called with on before the job lock is taken (a
	 * failure is LK_ERR_BUSY) and with !on once it is let go; NULL: none */
	int (*hold)(void *arg, bool on);
	void *hold_arg;
	/* the load on the source: at most this many rows a second (0: no limit), and, between
	 * two pages, a wait while busy(hold_arg) says the job's own run is going (NULL: none;
	 * 10 s at most per page) */
	int64_t rate;
	bool (*busy)(void *arg);
};

/*
 * Compares source (rows matching `where`) and target over the job's columns: counts,
 * chunk checksums over the canonical encoding (docs/types.md), then the differing keys,
 * settled (vo->settle_ms) and repaired when asked. Chunk boundaries come from the source;
 * the target is read by explicit key lists. Rows `deletes: ignore` keeps are no
 * difference. Repair: real-time jobs get the keys queued in the source's changelog for
 * their applier; snapshot and poll jobs take the job lock (LK_ERR_BUSY when another
 * process holds it) and apply the keys' current source rows in fenced batches that keep
 * the target's position. vo may be NULL (compare only, nothing recorded).
 */
int lk_verify_run(const struct lk_config *cfg, const struct lk_job *job,
		  const struct lk_sync_opts *opts, const struct lk_verify_opts *vo,
		  struct lk_verify_result *res, struct lk_err *err);
void lk_verify_result_release(struct lk_verify_result *res);

/* What check-config learns about one sync job without writing anything. */
struct lk_check_result {
	int ncols;
	bool target_missing;   /* create: true and the target is not there yet */
	bool poll_capped;      /* poll: every open transaction is visible, the cursor is capped */
	bool poll_cap_applies; /* poll on a PostgreSQL source with a timestamptz cursor */
	char poll_note[640];   /* poll: what protects a late commit here, "" otherwise */
	int64_t source_estimate;
};

/* Connects, describes and checks both tables of a sync job (read-only). */
int lk_sync_check(const struct lk_config *cfg, const struct lk_job *job,
		  struct lk_check_result *out, struct lk_err *err);

#endif
