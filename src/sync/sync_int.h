/* sync_int.h - the per-run context shared by the engine's files. */
#ifndef LK_SYNC_INT_H
#define LK_SYNC_INT_H

#include "connector/cdc.h"
#include "connector/connector.h"
#include "core/buf.h"
#include "sync.h"

struct lk_job_ctx {
	const struct lk_config *cfg;
	const struct lk_job *job;
	const struct lk_sync_opts *opts;
	struct lk_db src, dst;
	struct lk_table sdesc, tdesc;
	bool target_created; /* create: true made the table in this run */
	bool target_missing; /* read-only prepare: the target does not exist yet (create: true) */
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
	char fp[17];	      /* fingerprint: what a position means (tables, key, cursor, where) */
	int64_t epoch;	      /* this run's fencing token */
	int64_t target_epoch; /* read from the target before the seal */
	char *pos;	      /* the position JSON read from the target, or NULL */
	/* realtime: the changelog position taken before the snapshot began (DESIGN
	 * decision 4), carried by the snapshot phase's positions. */
	struct lk_cdc_pos rt_start;
	struct lk_sync_progress prog;
	int64_t start_mono_ms, last_report_ms;
};

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

/* Read-only: the source allows installing the job's change capture (realtime). */
int lk_job_check_capture(struct lk_job_ctx *ctx, struct lk_err *err);

/*
 * Commits one batch: the fenced position first, then upserts (`plain`: COPY into an
 * empty target) and deletes, in one target transaction. Either may be NULL.
 */
int lk_apply_batch(struct lk_job_ctx *ctx, const struct lk_rows *upserts,
		   const struct lk_rows *deletes, bool plain, const char *pos, struct lk_err *err);

/*
 * The same without touching ctx->prog: it reads ctx (job, epoch, write spec) and uses only
 * the target connection, so the pipeline's writer thread may call it.
 */
int lk_apply_commit(struct lk_job_ctx *ctx, const struct lk_rows *upserts,
		    const struct lk_rows *deletes, bool plain, const char *pos, struct lk_err *err);

/*
 * A writer thread for one stream of batches: the caller reads page N+1 from the source
 * while the writer commits page N to the target. At most one batch is in flight, so
 * memory stays at two batches. While the pipeline runs, only the writer uses the target
 * connection; everything else (source, store, progress) stays on the caller's thread.
 */
struct lk_pipeline;
struct lk_pipeline *lk_pipeline_start(struct lk_job_ctx *ctx, bool plain, struct lk_err *err);
/*
 * Hands `rows` with its position to the writer after the previous batch is committed.
 * The caller must not touch `rows` until its next submit or finish returns. Returns -1
 * with the writer's error when a batch failed. Updates ctx->prog.rows_written.
 */
int lk_pipeline_submit(struct lk_pipeline *p, const struct lk_rows *rows, const char *pos,
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
/* Writes a real-time position {"v","fp","mode":"realtime","phase","h","xid","seq"}. */
void lk_rt_pos_json(struct lk_buf *b, const struct lk_job_ctx *ctx, const char *phase,
		    const struct lk_cdc_pos *p);
int lk_poll_run(struct lk_job_ctx *ctx, struct lk_err *err);

/* Position JSON: arrays of text values (bytes as hex) <-> struct lk_value. */
struct lk_buf;
void lk_pos_add_values(struct lk_buf *b, const struct lk_value *v, const enum lk_type *types,
		       const int *idx, int n);
/* Parses a JSON array of n values into out (strings stay valid while `arena` lives). */
int lk_pos_parse_values(const void *json_array, struct lk_value *out, const enum lk_type *types,
			const int *idx, int n, struct lk_arena *arena);

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
