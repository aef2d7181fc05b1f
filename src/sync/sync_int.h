/* sync_int.h - the per-run context shared by the engine's files. */
#ifndef LK_SYNC_INT_H
#define LK_SYNC_INT_H

#include "connector/cdc.h"
#include "connector/connector.h"
#include "core/buf.h"
#include "guard.h"
#include "keyset.h"
#include "position.h"
#include "sync.h"

struct lk_job_ctx;

/*
 * Where one thread's batches record dead letters (deadletter.c). The run's thread uses the
 * run's store handle; the pipeline's writer opens a handle of its own on first need (a
 * store handle belongs to one thread). With an SQLite store in the target's own file,
 * both write through the target connection instead, inside the batch's transaction.
 */
struct lk_dl_sink {
	struct lk_job_ctx *ctx;
	struct lk_store *store; /* the handle in use; NULL until the first need */
	bool own_thread;	/* not the run's thread: opens a handle of its own */
	bool owned;		/* store was opened (or borrowed) here: freed by _release */
	bool borrowed;		/* store wraps the target connection */
};

struct lk_job_ctx {
	const struct lk_config *cfg;
	const struct lk_job *job;
	const struct lk_sync_opts *opts;
	struct lk_db src, dst;
	struct lk_table sdesc, tdesc;
	bool target_created; /* create: true made the table in this run */
	bool target_missing; /* read-only prepare: the target does not exist yet (create: true) */
	bool dl_same_file;   /* an SQLite state store in the target's file (see lk_dl_sink) */
	/* The synced columns (source names; the target has the same names). */
	const char **cols;
	enum lk_type *types;
	int *key;		 /* indexes into cols */
	const char **key_cols;	 /* the key's names and types in key order: the shape in */
	enum lk_type *key_types; /* which change capture logs a key */
	int ncols;
	int nkey;
	int cursor; /* poll: index into cols of the cursor column, else -1 */
	bool rt;    /* realtime: the snapshot phase writes realtime positions (rt_start) */
	struct lk_write_spec w;
	char fp[17]; /* fingerprint: what a position means (tables, key, cursor, where) */
	/* The job's identity, "JOB@DEPLOYMENT" (lk_store_ident): its consumer name in the
	 * source's change-capture registry. pos_key: its position row's key in the target
	 * (ident, or the job name when that table keeps the older shape). Both are the bare job
	 * name until lk_job_lock_and_seal sets them. */
	char ident[LK_IDENT_MAX];
	char pos_key[LK_IDENT_MAX];
	int64_t epoch;	      /* this run's fencing token */
	int64_t target_epoch; /* read from the target before the seal */
	char *pos;	      /* the position JSON read from the target, or NULL */
	/* realtime: the changelog position taken before the snapshot began (DESIGN
	 * decision 4), carried by the snapshot phase's positions; and where the source's
	 * history comes from, carried by every real-time position (lk_rt_position). */
	struct lk_cdc_pos rt_start;
	struct lk_pos_origin rt_origin;
	struct lk_sync_progress prog;
	int64_t start_mono_ms, last_report_ms;
	/*
	 * The dead-letter queue (deadletter.c, docs/dead-letters.md), set up by
	 * lk_dl_setup. store NULL: none, and a rejected row fails its batch as before.
	 * dl_open holds the keys (JSON) of the job's open dead letters, loaded once at the
	 * start (an item's `seen` = resolved since); dl_nopen counts those still open, and
	 * 0 skips the auto-resolve check. dl_open belongs to whichever thread applies
	 * batches: the run's, or the pipeline's writer while a pipeline runs.
	 */
	struct lk_store *store;
	struct lk_dl_sink dl_sink; /* the run's thread's */
	/* Schema changes (schema.c): the source table's columns when prepared (a hash, "" when
	 * unknown); whether a column was added that rows already in the target lack (the run
	 * then reads every row again, schema_why says why), and the record to store once that
	 * is sure to happen. */
	char src_sig[24];
	bool schema_backfill;
	char schema_why[320];
	char *schema_next;
	bool schema_again; /* the run failed on the same schema mismatch as the last one */
	struct lk_keyset dl_open;
	int64_t dl_nopen;
};

/*
 * schema.c (docs/schema-changes.md). lk_job_schema: after the seal, compares the source with
 * the job's record in the store and the target, and follows a change on the target or fails
 * with LK_ERR_SCHEMA saying what to do (schema_changes). lk_job_schema_done stores the record
 * a backfill waited for. lk_schema_sig: a hash of the source table's columns (and enum
 * labels) into out. lk_schema_check: inside a read of the source, fails (LK_ERR_SCHEMA,
 * transient) when that hash moved since the prepare, before anything read is written.
 */
int lk_job_schema(struct lk_job_ctx *ctx, struct lk_store *store, struct lk_err *err);
void lk_job_schema_done(struct lk_job_ctx *ctx);
int lk_schema_sig(struct lk_job_ctx *ctx, char *out, size_t size, struct lk_err *err);
int lk_schema_check(struct lk_job_ctx *ctx, struct lk_err *err);
/* prepare.c: the target has every synced column (unless defer: a column it lacks is left to
 * lk_job_schema) and a unique index on the key. */
int lk_job_check_target(struct lk_job_ctx *ctx, bool defer, struct lk_err *err);

/*
 * deployment.c. A real-time job about to resume from its position takes over the consumer
 * row an older lockstep registered under the job's name alone, when its own (ctx->ident)
 * does not exist yet (cdc op adopt_consumer). Call after lk_job_lock_and_seal.
 */
int lk_job_adopt_consumer(struct lk_job_ctx *ctx, struct lk_err *err);
/*
 * Before a prune: removes the consumers of the job's source table that belong to no
 * real-time job of this config in this deployment and have held changelog entries back
 * longer than orphan_after, with one warning each. Failures are logged, never fatal.
 */
void lk_rt_expire_orphans(struct lk_job_ctx *ctx);

/* Sets up ctx's dead-letter queue on the run's store and loads the open keys. */
int lk_dl_setup(struct lk_job_ctx *ctx, struct lk_store *store, struct lk_err *err);
void lk_dl_release(struct lk_job_ctx *ctx);
/* own_thread: the caller is not the run's thread (it opens its own store handle). */
void lk_dl_sink_init(struct lk_dl_sink *s, struct lk_job_ctx *ctx, bool own_thread);
void lk_dl_sink_release(struct lk_dl_sink *s);
/* Appends a row's key as the JSON array dead letters and change capture use. */
void lk_dl_key_json(struct lk_buf *b, const struct lk_job_ctx *ctx, const struct lk_value *row);

/* One batch: one target transaction. */
struct lk_batch {
	const struct lk_rows *upserts; /* rows to upsert (the job's columns), or NULL */
	const struct lk_rows *deletes; /* rows whose keys to delete (same width), or NULL */
	/* instead of upserts: binary COPY tuples (the snapshot's fast path). A rejected row
	 * fails the batch (no bisection): the caller goes on by the text path. */
	const struct lk_copy_batch *copy;
	const char *pos; /* the position committed with them */
	/* The dead letters' change id (their idempotency with job and key): "snapshot",
	 * "sweep", "rt:<h>:<xid>:<seq>" (the page's start); NULL: each row's cursor value,
	 * "poll:<value>". */
	const char *change;
	bool plain; /* COPY straight in: the target holds none of these keys */
};

struct lk_apply_counts {
	int64_t written, deleted, dead; /* rows upserted, deleted, dead-lettered */
};

/* A row isolated as failing: which list (0 upserts, 1 deletes), which row, why. */
struct lk_dl_row {
	int kind, row;
	struct lk_err why;
};

/* One batch being applied (apply.c); deadletter.c records and resolves from it. */
struct lk_apply {
	struct lk_job_ctx *ctx;
	const struct lk_batch *b;
	const struct lk_rows *rows[2]; /* upserts, deletes (NULL when none) */
	unsigned char *dead[2];	       /* per row: isolated as failing (allocated on need) */
	struct lk_dl_row *dl;
	int ndl, cap;
	int kind, base; /* the list and first row of the range being written */
};

/*
 * Stores a's dead letters (their own store transaction, committed before the target's),
 * then passes the failpoint after_dead_letter_insert. -1 when the store write failed:
 * the caller rolls the batch back.
 */
int lk_dl_record(struct lk_dl_sink *s, const struct lk_apply *a, struct lk_err *err);
/* After the target commit: resolves the open dead letters whose keys a applied cleanly. */
void lk_dl_resolve_applied(struct lk_dl_sink *s, const struct lk_apply *a);

/* Opens both databases (with retries), describes and checks both tables, resolves the
 * columns and creates the target when asked. */
int lk_job_prepare(struct lk_job_ctx *ctx, const struct lk_config *cfg, const struct lk_job *job,
		   const struct lk_sync_opts *opts, bool for_write, struct lk_err *err);
void lk_job_release(struct lk_job_ctx *ctx);
/* The job's source table and key, as change capture installs it. */
static inline struct lk_cdc_table lk_job_cdc_table(const struct lk_job_ctx *ctx)
{
	return (struct lk_cdc_table){&ctx->job->source.table, ctx->key_cols, ctx->key_types,
				     ctx->nkey};
}

/*
 * Reads the target's position and epoch, takes the job lock (LK_ERR_BUSY when another
 * process holds it) with a new epoch, reads the position again under the lock and seals
 * the epoch in the target (DESIGN decision 5). check_fp: forget a position made for
 * other tables, key, cursor or where (a run starts over); a replay keeps it as it is.
 * Returns the lock (lk_store_job_unlock), or NULL.
 */
struct lk_job_lock *lk_job_lock_and_seal(struct lk_job_ctx *ctx, struct lk_store *store,
					 bool check_fp, struct lk_err *err);

/* The source table read in key order: the job's columns, key and `where` (no bounds). */
static inline struct lk_scan_spec lk_job_source_spec(const struct lk_job_ctx *ctx)
{
	return (struct lk_scan_spec){.table = &ctx->job->source.table,
				     .cols = ctx->cols,
				     .types = ctx->types,
				     .ncols = ctx->ncols,
				     .order = ctx->key,
				     .norder = ctx->nkey,
				     .filter = ctx->job->source.where};
}

/* Read-only: the source allows installing the job's change capture (realtime). */
int lk_job_check_capture(struct lk_job_ctx *ctx, struct lk_err *err);

/*
 * Commits one batch (see lk_apply_commit) on the run's thread and adds its counts to
 * ctx->prog (rows_failed: the rows dead-lettered).
 */
int lk_apply_batch(struct lk_job_ctx *ctx, const struct lk_batch *b, struct lk_err *err);

/*
 * Commits one batch: the fenced position first, then upserts (`plain`: COPY into an
 * empty target) and deletes, in one target transaction (DESIGN decision 5). When the
 * target rejects rows for a row-level reason (lk_err_is_row_level) and ctx has a
 * dead-letter queue, the transaction is begun again and the rows are written under
 * savepoints, each failing range split in halves until the failing rows are single;
 * those are recorded through `sink` before the target commit, the rest commits with the
 * position. Rows the target cannot hold exactly are refused before sending, without a
 * round trip. It does not touch ctx->prog, so the pipeline's writer thread may call it
 * with a sink of its own. *out gets the counts of a committed batch.
 */
int lk_apply_commit(struct lk_job_ctx *ctx, struct lk_dl_sink *sink, const struct lk_batch *b,
		    struct lk_apply_counts *out, struct lk_err *err);

/*
 * A writer thread for one stream of batches: the caller reads page N+1 from the source
 * while the writer commits page N to the target. At most one batch is in flight, so
 * memory stays at two batches. While the pipeline runs, only the writer uses the target
 * connection; everything else (source, store, progress) stays on the caller's thread.
 */
struct lk_pipeline;
/* `change`: the dead letters' change id of every batch (see struct lk_batch). */
struct lk_pipeline *lk_pipeline_start(struct lk_job_ctx *ctx, bool plain, const char *change,
				      struct lk_err *err);
/*
 * Hands `rows` with its position to the writer after the previous batch is committed.
 * The caller must not touch `rows` until its next submit or finish returns. Returns -1
 * with the writer's error when a batch failed. Updates ctx->prog.rows_written and
 * rows_failed (dead-lettered; the writer records dead letters through a store handle of
 * its own, and resolves them in ctx->dl_open, which it owns while the pipeline runs).
 */
int lk_pipeline_submit(struct lk_pipeline *p, const struct lk_rows *rows, const char *pos,
		       struct lk_err *err);
/* The same with a binary batch (lk_batch.copy). */
int lk_pipeline_submit_copy(struct lk_pipeline *p, const struct lk_copy_batch *b, const char *pos,
			    struct lk_err *err);
/* Waits for the last batch, stops the thread, frees p. Returns -1 with the writer's error
 * when a batch failed (err may be NULL after an earlier error of the caller's own). */
int lk_pipeline_finish(struct lk_pipeline *p, struct lk_err *err);

/* Reports progress to the caller's callback, at most every 200 ms unless `force`. */
void lk_job_report(struct lk_job_ctx *ctx, bool force);

int lk_snapshot_run(struct lk_job_ctx *ctx, struct lk_err *err);
/*
 * The snapshot without its final position: copies every source row (resuming after the
 * position's last key), then, when `deletes` and the target was not empty, removes the
 * target rows the source lacks. Positions of a real-time job (ctx->rt) carry rt_start.
 */
int lk_snapshot_copy(struct lk_job_ctx *ctx, bool deletes, struct lk_err *err);
/* Only the delete sweep (a real-time job resuming in phase "sweep"). */
int lk_snapshot_sweep(struct lk_job_ctx *ctx, struct lk_err *err);
/* Real-time: snapshot (when needed), then stream the changelog (realtime.c). */
int lk_realtime_run(struct lk_job_ctx *ctx, struct lk_err *err);
/* A real-time position of ctx's job: phase, changelog position p, ctx->rt_origin. */
struct lk_position lk_rt_position(const struct lk_job_ctx *ctx, enum lk_pos_phase phase,
				  const struct lk_cdc_pos *p);

/* What the timeline guard found (guard.c, docs/realtime.md "Restores and failovers"). */
struct lk_rt_guard {
	bool resnap;		      /* the job must take a fresh snapshot, with the sweep: */
	enum lk_resnap_reason reason; /* why, as the metric's label */
	char why[320];		      /* and as one sentence for the log (no final period) */
	bool has_reg;		      /* the job's consumer registry row was read: */
	struct lk_cdc_pos reg;	      /* what it holds */
};
/*
 * At a real-time run's start (outside a source transaction, capture installed as relid):
 * reads where the source's history comes from into ctx->rt_origin (every position the run
 * writes carries it) and the job's consumer registry row, then judges pos, the target's
 * position (any mode; only a real-time one with a phase is judged): g->resnap when the
 * source is another cluster, on another timeline or went back behind it, or when the
 * registry is ahead of it (the target went back). A source whose connector cannot say
 * (SQLite: cdc check_capture judges its lineage) leaves g empty.
 */
int lk_rt_guard_resume(struct lk_job_ctx *ctx, const struct lk_position *pos, int64_t relid,
		       struct lk_rt_guard *g, struct lk_err *err);
/* While streaming at `at`: the same judgement of the source against ctx->rt_origin. */
int lk_rt_guard_check(struct lk_job_ctx *ctx, const struct lk_cdc_pos *at, struct lk_rt_guard *g,
		      struct lk_err *err);
/* Counts a re-snapshot of ctx's job (lk_sync_resnapshots); the caller logs it. Any thread. */
void lk_rt_resnapshot_count(const struct lk_job_ctx *ctx, enum lk_resnap_reason reason,
			    const char *why);
int lk_poll_run(struct lk_job_ctx *ctx, struct lk_err *err);
/*
 * At a poll run's start (outside a source transaction): reads where a PostgreSQL source's
 * history comes from into ctx->rt_origin, with nx, its next transaction id now (every
 * position the run writes carries it), and judges the stored position pos by it:
 * g->resnap when the source is another cluster, on another timeline, or its counter is
 * behind pos's nx (restored from a backup taken before the run that wrote pos began).
 */
int lk_poll_guard(struct lk_job_ctx *ctx, const struct lk_position *pos, struct lk_rt_guard *g,
		  struct lk_err *err);
/* Why poll mode cannot see every open transaction in `state` (a static string, "" for
 * LK_POLL_CAP_ON); check-config and the run's log say the same. */
const char *lk_poll_cap_why(enum lk_poll_cap_state state);

/* Appends an unambiguous canonical string of the values at idx (for matching keys). */
void lk_key_canon(struct lk_buf *b, const struct lk_value *row, const enum lk_type *types,
		  const int *idx, int n);
/*
 * The same, for verify's row hashes. raw_json: compare JSON as its text (same engine on
 * both sides: PostgreSQL's jsonb text is already normal and keeps every digit of a
 * number, which parsing into doubles would not).
 */
void lk_row_canon(struct lk_buf *b, const struct lk_value *row, const enum lk_type *types,
		  const int *idx, int n, bool raw_json);

#endif
