/*
 * store.h - lockstep's own durable state (SPEC §8): runs, the restart counter,
 * position copies, job locks and epochs, migrations.
 *
 * One implementation over the connector's generic exec(): the SQL is the same
 * for both engines except for table names (schema `lockstep.` on PostgreSQL,
 * prefix `lockstep_` on SQLite) and the migrations, which are per dialect.
 * Times are stored as milliseconds since the Unix epoch, so no dialect's
 * timestamp type leaks into the API. A store handle belongs to one thread.
 */
#ifndef LK_STORE_H
#define LK_STORE_H

#include "config/config.h"
#include "connector/connector.h"

#include <stdint.h>

struct lk_store;

/* Opens the state store named by cfg->state_url (with retries). Does not migrate. */
struct lk_store *lk_store_open(const struct lk_config *cfg, struct lk_err *err);
void lk_store_close(struct lk_store *s);

/*
 * Applies pending migrations, each in one transaction, serialised between processes
 * (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory transaction lock). An applied
 * migration whose checksum differs from the embedded one -> LK_ERR_CONFLICT.
 * *applied (may be NULL) gets the number applied now.
 */
int lk_store_migrate(struct lk_store *s, int *applied, struct lk_err *err);

/* One row per known migration: version, name, checksum, applied_ms (NULL when pending). */
int lk_store_migration_status(struct lk_store *s, struct lk_rows *out, struct lk_err *err);

/* Records a start of instance `name` and returns its restart count (starts so far - 1). */
int lk_store_instance_start(struct lk_store *s, const char *name, int64_t *restarts,
			    struct lk_err *err);

struct lk_run {
	char id[37];
	const char *job;
	const char *type;   /* "full" | "incremental" */
	const char *status; /* queued | running | succeeded | failed | cancelled | interrupted |
			       skipped */
	const char *stage;  /* e.g. "snapshot", "poll", "verify" */
	double progress;    /* 0..100, or -1 when unknown */
	int64_t rows_read, rows_written, rows_failed, total_estimate;
	int64_t started_ms, finished_ms; /* finished_ms 0 while running */
	int64_t epoch;
	bool unfenced;	   /* update whatever the job's epoch (verify and repair runs) */
	const char *error; /* NULL when none */
	/* real-time: the replication lag (for observers only; not stored) */
	bool has_lag;
	double lag_s;
	int64_t lag_rows;
};

/* Records a queued run; nothing when a run with its id exists already (it started). */
int lk_store_run_queue(struct lk_store *s, const struct lk_run *r, struct lk_err *err);
/* The run with this id (the columns of lk_store_runs), into out: one row or none. */
int lk_store_run_find(struct lk_store *s, const char *id, struct lk_rows *out, struct lk_err *err);
/* Inserts a run; a run with the same id (recorded `queued`) is overwritten. */
int lk_store_run_insert(struct lk_store *s, const struct lk_run *r, struct lk_err *err);
/* Updates status, stage, progress, counters, error, finished_ms. */
int lk_store_run_update(struct lk_store *s, const struct lk_run *r, struct lk_err *err);

/*
 * Recent runs, newest first (job NULL = all). Columns: id, job, type, status, stage,
 * progress, rows_read, rows_written, rows_failed, total_estimate, started_ms, updated_ms,
 * finished_ms, error, epoch.
 */
int lk_store_runs(struct lk_store *s, const char *job, int limit, struct lk_rows *out,
		  struct lk_err *err);
/* Which runs lk_store_runs_of lists: all, the job's own (not verify passes), or the
 * verify and repair passes (docs/verify.md) alone. */
enum lk_runs_which { LK_RUNS_ALL, LK_RUNS_OWN, LK_RUNS_VERIFY };
int lk_store_runs_of(struct lk_store *s, const char *job, enum lk_runs_which which, int limit,
		     struct lk_rows *out, struct lk_err *err);
enum {
	LK_RUNCOL_ID,
	LK_RUNCOL_JOB,
	LK_RUNCOL_TYPE,
	LK_RUNCOL_STATUS,
	LK_RUNCOL_STAGE,
	LK_RUNCOL_PROGRESS,
	LK_RUNCOL_READ,
	LK_RUNCOL_WRITTEN,
	LK_RUNCOL_FAILED,
	LK_RUNCOL_TOTAL,
	LK_RUNCOL_STARTED,
	LK_RUNCOL_UPDATED,
	LK_RUNCOL_FINISHED,
	LK_RUNCOL_ERROR,
	LK_RUNCOL_EPOCH,
};

/*
 * Runs left `running` or `queued` by a crashed process become `interrupted` (for job, or
 * all if NULL), except the run `except_id` (NULL: none) that the caller is starting.
 */
int lk_store_runs_interrupt_stale(struct lk_store *s, const char *job, const char *except_id,
				  struct lk_err *err);

/*
 * A hook that sees every run the handle inserts or updates, and every progress step
 * reported with lk_store_run_observe() (also those not written, at most one write a
 * second): the daemon keeps its live view of runs with it. Called on the writing thread.
 */
typedef void (*lk_run_observer)(void *arg, const struct lk_run *r);
void lk_store_set_observer(struct lk_store *s, lk_run_observer cb, void *arg);
void lk_store_run_observe(struct lk_store *s, const struct lk_run *r);

/* Keeps the display copy of a job's position (the target's copy is the one resumed from). */
int lk_store_position_copy(struct lk_store *s, const char *job, int64_t epoch, const char *pos,
			   struct lk_err *err);

/*
 * Takes the right to write a job's target. SQLite store: an flock on
 * "<state>.job.<name>.lock"; PostgreSQL store: the job's lease, which this handle's member
 * (lk_store_set_member) must hold unexpired (lk_store_lease_bump). Held by another ->
 * LK_ERR_BUSY naming it. Sets the job's epoch to max(store epoch, target_epoch) + 1 and
 * returns it in *epoch (DESIGN decision 5).
 */
struct lk_job_lock;
struct lk_job_lock *lk_store_job_lock(struct lk_store *s, const char *job, int64_t target_epoch,
				      int64_t *epoch, struct lk_err *err);
void lk_store_job_unlock(struct lk_job_lock *l);
/*
 * `lockstep run`'s right to the store. SQLite store: an flock on "<state>.lock", held by
 * another process -> LK_ERR_BUSY. PostgreSQL store: always granted (instances share it).
 * Released with lk_store_job_unlock().
 */
struct lk_job_lock *lk_store_daemon_lock(struct lk_store *s, struct lk_err *err);

/*
 * A scheduled job's next fire time (SPEC §5: kept so a restart never starves a job with a
 * long interval). `spec` is the schedule as configured: a stored time made for another
 * spec is not returned (*next_ms = 0), so a changed schedule takes effect at once.
 */
int lk_store_schedule_get(struct lk_store *s, const char *job, const char *spec, int64_t *next_ms,
			  struct lk_err *err);
int lk_store_schedule_put(struct lk_store *s, const char *job, const char *spec, int64_t next_ms,
			  struct lk_err *err);

/*
 * The daemon's heartbeat: the instance's health ("HEALTHY" | "DEGRADED" | "STOPPED") and a
 * JSON object of details (memory, breakers, scheduled jobs), read by `lockstep status`.
 */
int lk_store_instance_report(struct lk_store *s, const char *name, const char *health,
			     const char *detail_json, struct lk_err *err);

/*
 * Cluster membership and job leases (lease.c; a PostgreSQL state store only). A member is
 * one `lockstep run` process ("NAME#RANDOM"); times are the database's clock.
 */
/* Sets the lease holder this handle's job locks act for (NULL: none); copied. */
void lk_store_set_member(struct lk_store *s, const char *member);
const char *lk_store_member(const struct lk_store *s);
/*
 * Marks the member alive now (stopping: it is shutting down and takes no jobs); labels is
 * its instance.labels joined by commas ("" or NULL: none).
 */
int lk_store_member_beat(struct lk_store *s, const char *member, const char *name,
			 const char *labels, bool stopping, struct lk_err *err);
/*
 * Live members (seen within ttl, not stopping) by id: id, age in ms since it started,
 * labels (comma-separated).
 */
int lk_store_members_live(struct lk_store *s, int64_t ttl_ms, struct lk_rows *out,
			  struct lk_err *err);
/* Every lease row: job, holder (NULL when free), epoch, live "t"/"f". */
int lk_store_leases(struct lk_store *s, struct lk_rows *out, struct lk_err *err);
/* Takes the job's lease for ttl_ms when it is free, expired or already ours (*got). */
int lk_store_lease_acquire(struct lk_store *s, const char *job, const char *member, int64_t ttl_ms,
			   bool *got, int64_t *epoch, struct lk_err *err);
/* Extends our lease by ttl_ms from now; *held false when it is no longer ours. */
int lk_store_lease_renew(struct lk_store *s, const char *job, const char *member, int64_t ttl_ms,
			 bool *held, struct lk_err *err);
/* LISTENs on this handle for lockstep_leases (wait with the connector's cdc wait op). */
int lk_store_listen_leases(struct lk_store *s, struct lk_err *err);
/* Frees our lease (holder NULL, expiry now; the row stays) and NOTIFYs lockstep_leases. */
int lk_store_lease_release(struct lk_store *s, const char *job, const char *member,
			   struct lk_err *err);
/*
 * A run's new epoch under the lease of this handle's member: max(store, target) + 1, only
 * while the member holds an unexpired lease; else LK_ERR_BUSY naming the holder.
 */
int lk_store_lease_bump(struct lk_store *s, const char *job, int64_t target_epoch, int64_t *epoch,
			struct lk_err *err);

/*
 * Usage per day (SPEC §6): one job's counts to add under today's date (UTC) for a
 * database (its config name), or for the job as a whole (db NULL, stored as "").
 */
struct lk_usage {
	const char *db;
	int64_t runs, rows, queries;
};

/* The UTC day of a wall-clock time, "YYYY-MM-DD". */
void lk_usage_day(int64_t wall_ms, char out[11]);
/* Adds u[0..n) to today's counts of `job`, in one transaction; all-zero entries are skipped. */
int lk_store_usage_add(struct lk_store *s, const char *job, const struct lk_usage *u, int n,
		       struct lk_err *err);
/*
 * The last `days` days (today included) in one statement, so both views come from one
 * snapshot (a run adding its counts between two reads would make them disagree). Rows:
 * part, day, job, db, runs, rows, queries. Part 0, per job, newest day first, then job, then
 * db (db "" is the job as a whole); part 1, per database summed over jobs (job "").
 */
int lk_store_usage(struct lk_store *s, int days, struct lk_rows *out, struct lk_err *err);

/*
 * Retention: deletes finished runs that ended before `before_ms` and dead letters resolved
 * before it. *runs and *errors (may be NULL) get the numbers deleted.
 */
int lk_store_prune(struct lk_store *s, int64_t before_ms, int64_t *runs, int64_t *errors,
		   struct lk_err *err);

/*
 * This deployment's id (docs/operations.md, "Several deployments"): the config's
 * `deployment` when named (recorded in the store, with a warning when it replaces another),
 * else the one the store holds, made ("d-" and 12 hex digits) and kept at first use. Read
 * once per handle and cached (clones made later share it). *out stays valid while s lives.
 * Needs the store migrated.
 */
int lk_store_deployment(struct lk_store *s, const char **out, struct lk_err *err);

/* The longest identity lk_store_ident writes, NUL included. */
#define LK_IDENT_MAX (64 + 1 + LK_DEPLOYMENT_MAX + 1)

/*
 * A job's identity outside the store, "JOB@DEPLOYMENT": the name of its consumer row in a
 * source's change-capture registry, the key of its position in a target (the connector
 * splits it at the '@' into job and deployment) and its session tag there. Job names
 * never hold '@'. out has room for LK_IDENT_MAX bytes.
 */
int lk_store_ident(struct lk_store *s, const char *job, char out[LK_IDENT_MAX], struct lk_err *err);

/*
 * The identities ("JOB@DEPLOYMENT") of cfg's real-time jobs in deployment dep: the
 * consumers that are this config's own; any other consumer of their source tables is an
 * orphan to it (the cdc op `orphans`). Sets *n; free with lk_store_idents_free.
 */
char **lk_store_idents(const struct lk_config *cfg, const char *dep, int *n);
void lk_store_idents_free(char **v, int n);

/* A job's forced re-snapshots as the state store keeps them (resnap.c), for `status`. */
struct lk_store_resnap {
	bool found;	 /* one was ever recorded */
	int64_t count;	 /* how many */
	int64_t at_ms;	 /* when the last one began (wall clock) */
	char reason[32]; /* its reason, as the metric's label (sync/guard.h) */
	char why[320];	 /* and as logged */
};

/* Records that job takes a forced re-snapshot now, for reason (why as logged). */
int lk_store_resnap_note(struct lk_store *s, const char *job, const char *reason, const char *why,
			 struct lk_err *err);
/* Reads job's record into out (out->found false when none). */
int lk_store_resnap_get(struct lk_store *s, const char *job, struct lk_store_resnap *out,
			struct lk_err *err);

/* The value of a meta key (meta.c), malloc'd into *value, or NULL when there is none. */
int lk_store_meta_get(struct lk_store *s, const char *key, char **value, struct lk_err *err);
/* Sets a meta key to value; a NULL value removes the key. */
int lk_store_meta_put(struct lk_store *s, const char *key, const char *value, struct lk_err *err);

/* "lockstep_" or "lockstep." : the prefix of the store's tables, for callers' queries. */
const char *lk_store_prefix(const struct lk_store *s);
/* The underlying connection, for read-only queries by the CLI. */
struct lk_db *lk_store_db(struct lk_store *s);

#endif
