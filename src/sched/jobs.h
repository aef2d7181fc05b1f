/*
 * jobs.h - one recorded run of an `sql` or `exec` job (SPEC §3), and the record of a
 * skipped fire. Sync jobs run through lk_sync_run() (src/sync/sync.h).
 */
#ifndef LK_SCHED_JOBS_H
#define LK_SCHED_JOBS_H

#include "config/config.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

struct lk_jobrun {
	const struct lk_config *cfg;
	const struct lk_job *job;
	struct lk_store *store;		   /* the calling thread's handle */
	volatile const bool *stop;	   /* cancels at the next check (exec: kills the group) */
	const struct lk_retry_conf *retry; /* connection retries; NULL: the job's */
	const char *want_id;		   /* the run's id chosen by the caller; NULL: new */
	volatile const bool *cancel;	   /* set with stop by a user's cancel: cancelled */
	char run_id[37];		   /* out: the run's id */
	const char *status;		   /* out: succeeded | failed | interrupted */
	int64_t rows;			   /* out: sql: rows changed; exec: stats.processed */
	/* exec: the lease deadline (lk_exec_opts.deadline_boot_ms), moved by the lease thread;
	 * NULL: none (an SQLite state store, a command) */
	volatile const int64_t *deadline_boot_ms;
};

/*
 * An `sql` job: connects to job->db, takes the job's lock and a new epoch, seals it in the
 * database's lockstep position table, then runs job->sql in one transaction whose first
 * statement is the fenced position update (DESIGN decision 5: a stale holder's run
 * changes nothing), with job->timeout as statement_timeout on PostgreSQL. Records the run.
 * Returns 0 or -1 with err (LK_ERR_BUSY when another process holds the job).
 */
int lk_sqljob_run(struct lk_jobrun *jr, struct lk_err *err);

/*
 * An `exec` job: takes the job's lock and epoch, runs job->command (no shell) in the
 * config's folder with LOCKSTEP_RUN_ID and LOCKSTEP_FENCING_TOKEN, job->timeout,
 * job->memory_max and jr->deadline_boot_ms (the lease: its process group is dead by
 * then); its JSON progress lines become the run's progress (written to the store at most
 * once a second and at each stage change). Records the run.
 */
int lk_execjob_run(struct lk_jobrun *jr, struct lk_err *err);

/* Records a fire at fire_ms that was not run because the job was still running. */
int lk_sched_record_skip(struct lk_store *store, const char *job, int64_t fire_ms,
			 struct lk_err *err);

/*
 * Checks every job's `schedule` (cron syntax) and `timezone` (a zone file), which the
 * config loader keeps as written. On failure err->code is LK_ERR_CONFIG and err->msg
 * "FILE:LINE:COL: job 'j': <what is wrong>" (the position of schedule/every).
 */
int lk_sched_check_config(const struct lk_config *cfg, struct lk_err *err);

#endif
