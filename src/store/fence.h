/*
 * fence.h - the fence of DESIGN decision 5, for every job that writes a database: sync
 * runs (sync/run.c) and `sql` jobs (sched/jobs.c). It lives here because both may use
 * the store and the connector (docs/ARCHITECTURE.md: sched may not call sync).
 *
 * A run reads the job's epoch from the database it writes, takes the job's lock with a
 * newer epoch (lk_store_job_lock), reads the database again under the lock, ends an older
 * holder's open transaction there, then seals: commits its epoch with a position before
 * its first batch. Every batch after that starts with the guarded position update
 * (position_put), which a newer epoch turns into LK_ERR_FENCED.
 */
#ifndef LK_STORE_FENCE_H
#define LK_STORE_FENCE_H

#include "store.h"

#include <stdint.h>

struct lk_fence {
	struct lk_job_lock *lock; /* held from lk_fence_take to lk_fence_release */
	char ident[LK_IDENT_MAX]; /* the job's identity, "JOB@DEPLOYMENT" (lk_store_ident) */
	/* the key of its position row in db: ident, or the bare job name when db's position
	 * table keeps the older shape (one row per job; position_setup returned 1) */
	char key[LK_IDENT_MAX];
	int64_t epoch;	      /* this run's fencing token */
	int64_t target_epoch; /* the database's epoch for the job, read under the lock */
	char *pos;	      /* the database's position for the job (malloc'd), or NULL */
};

/*
 * Takes the job's lock with a new epoch and reads the job's epoch and position from db
 * (creating lockstep's position table there if missing, upgrading an older one) under it.
 * The row read is this deployment's (f->key), or one an older lockstep wrote for the job,
 * which this deployment takes over (connector position_get); db's session is tagged with
 * f->key (lk_db_tag), so a later holder of this job and deployment, and only it, can end
 * this session's open transaction. Fails with
 * LK_ERR_BUSY when another process holds the job, LK_ERR_FENCED when db already holds an
 * epoch at least as new as ours. On success f holds the lock and the position (release
 * with lk_fence_release, also after a failed seal); on failure f holds nothing. Call on
 * the thread that owns store and db.
 */
int lk_fence_take(struct lk_fence *f, struct lk_store *store, struct lk_db *db, const char *job,
		  struct lk_err *err);

/*
 * Ends the open transactions of an older holder's sessions tagged f->key on db (their
 * batch holds the position row), then commits f->epoch with `pos` (the caller's choice:
 * usually f->pos, "{}" when none) in db's row f->key. `job` names the job in messages.
 */
int lk_fence_seal(struct lk_fence *f, struct lk_db *db, const char *job, const char *pos,
		  struct lk_err *err);

/* Frees f's position and releases its lock (NULL lock: nothing). */
void lk_fence_release(struct lk_fence *f);

#endif
