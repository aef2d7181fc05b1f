/*
 * pipeline.c - overlap reading the source with committing to the target.
 *
 * One writer thread and a one-slot hand-off: the reader fills batch A, waits until the
 * writer is idle, hands A over and fills batch B while A commits. Two batches in memory
 * at most; each batch is still one target transaction with its fenced position.
 */
#include "core/buf.h"
#include "core/failpoint.h"
#define LK_LOG_COMPONENT "sync"
#include "core/log.h"
#include "sync_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct lk_pipeline {
	struct lk_job_ctx *ctx;
	struct lk_dl_sink sink; /* the writer's: its own store handle, opened on need */
	const char *change;	/* the dead letters' change id */
	bool plain;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Guarded by mu: */
	const struct lk_rows *pending;		  /* handed over, not yet taken by the writer */
	const struct lk_copy_batch *pending_copy; /* or this binary batch */
	bool writing;				  /* the writer is committing a batch */
	bool closing;				  /* no more batches will come */
	bool failed;				  /* a batch failed: err holds why */
	struct lk_err err;
	struct lk_buf pos;		   /* the pending batch's position */
	int64_t written;		   /* rows committed so far */
	int64_t dead;			   /* rows dead-lettered so far */
	int64_t base_written, base_failed; /* ctx->prog's counts when the pipeline started */
};

static void *writer_main(void *arg)
{
	struct lk_pipeline *p = arg;
	struct lk_buf pos = LK_BUF_INIT;
	bool committed = false;

	lk_log_context(p->ctx->job->name, p->ctx->opts ? p->ctx->opts->run_id : NULL);

	for (;;) {
		const struct lk_rows *rows;
		const struct lk_copy_batch *copy;
		struct lk_apply_counts n;
		struct lk_err err = LK_ERR_INIT;
		int rc;

		pthread_mutex_lock(&p->mu);
		while (!p->pending && !p->pending_copy && !p->closing)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->pending && !p->pending_copy) { /* closing and drained */
			pthread_mutex_unlock(&p->mu);
			break;
		}
		/* Crash point: batch N is committed, batch N+1 not yet written. */
		if (committed)
			lk_failpoint("between_pages");
		rows = p->pending;
		copy = p->pending_copy;
		p->pending = NULL;
		p->pending_copy = NULL;
		p->writing = true;
		lk_buf_reset(&pos);
		lk_buf_add(&pos, p->pos.buf, p->pos.len);
		pthread_mutex_unlock(&p->mu);

		rc = lk_apply_commit(p->ctx, &p->sink,
				     &(struct lk_batch){.upserts = rows,
							.copy = copy,
							.pos = pos.buf,
							.change = p->change,
							.plain = p->plain},
				     &n, &err);

		pthread_mutex_lock(&p->mu);
		p->writing = false;
		if (rc < 0) {
			p->failed = true;
			p->err = err;
		} else {
			p->written += n.written;
			p->dead += n.dead;
			committed = true;
		}
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (rc < 0)
			break;
	}
	lk_buf_release(&pos);
	lk_dl_sink_release(&p->sink); /* the store handle is this thread's */
	return NULL;
}

struct lk_pipeline *lk_pipeline_start(struct lk_job_ctx *ctx, bool plain, const char *change,
				      struct lk_err *err)
{
	struct lk_pipeline *p = lk_xcalloc(1, sizeof(*p));

	p->ctx = ctx;
	p->plain = plain;
	p->change = change;
	p->base_written = ctx->prog.rows_written;
	p->base_failed = ctx->prog.rows_failed;
	lk_dl_sink_init(&p->sink, ctx, true);
	lk_buf_init(&p->pos);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->thread, NULL, writer_main, p) != 0) {
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
		free(p);
		lk_err_set(err, LK_ERR_INTERNAL, "cannot start the writer thread");
		return NULL;
	}
	return p;
}

/* Waits (mu held) until the writer holds no batch; returns -1 and copies its error. */
static int wait_idle(struct lk_pipeline *p, struct lk_err *err)
{
	while ((p->pending || p->pending_copy || p->writing) && !p->failed)
		pthread_cond_wait(&p->cv, &p->mu);
	p->ctx->prog.rows_written = p->base_written + p->written;
	p->ctx->prog.rows_failed = p->base_failed + p->dead;
	if (p->failed) {
		if (err)
			*err = p->err;
		return -1;
	}
	return 0;
}

static int submit(struct lk_pipeline *p, const struct lk_rows *rows,
		  const struct lk_copy_batch *copy, const char *pos, struct lk_err *err)
{
	int rc;

	pthread_mutex_lock(&p->mu);
	rc = wait_idle(p, err);
	if (rc == 0) {
		p->pending = rows;
		p->pending_copy = copy;
		lk_buf_reset(&p->pos);
		lk_buf_adds(&p->pos, pos);
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int lk_pipeline_submit(struct lk_pipeline *p, const struct lk_rows *rows, const char *pos,
		       struct lk_err *err)
{
	return submit(p, rows, NULL, pos, err);
}

int lk_pipeline_submit_copy(struct lk_pipeline *p, const struct lk_copy_batch *b, const char *pos,
			    struct lk_err *err)
{
	return submit(p, NULL, b, pos, err);
}

int lk_pipeline_finish(struct lk_pipeline *p, struct lk_err *err)
{
	int rc;

	pthread_mutex_lock(&p->mu);
	rc = wait_idle(p, err);
	p->closing = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	lk_buf_release(&p->pos);
	free(p);
	return rc;
}
