/*
 * verify_int.h - what verify.c (the pass: chunks compared in key order) and verify_fix.c
 * (the keys that differ: checked again once the job applied past them, then repaired)
 * share. One pass belongs to the thread that runs it.
 */
#ifndef LK_VERIFY_INT_H
#define LK_VERIFY_INT_H

#include "budget.h"
#include "core/buf.h"
#include "keyset.h"
#include "sync_int.h"

/* Differing keys held before they are settled: at most this many at once. */
#define LK_VERIFY_PEND_MAX 20000

struct verify_state {
	struct lk_job_ctx *ctx;
	const struct lk_verify_opts *vo;
	struct lk_verify_result *res;
	int *all;      /* 0..ncols-1 */
	bool raw_json; /* both sides on one engine: JSON compared as stored text */
	bool rt;       /* a real-time job: repairs go through its changelog */
	struct lk_buf tmp;
	struct lk_keyset ks, ks2, ks3;
	const char *live; /* deletes: soft:COL -> "COL IS NULL": soft-deleted rows are absent */
	/* keys (rows as wide as the job's columns, the key at its places, then a column with
	 * the kind: 'm' missing, 'x' extra, 'c' changed) that differed when read and wait to be
	 * checked again */
	struct lk_rows pend;
	struct lk_rows resume; /* the key a pass resumes after, once it settled midway */
	int64_t pass_missing;  /* source keys the pass did not find in the target */
	bool page_differs;     /* the merge: the current source page has a difference */
	bool told_unsettled;
	bool no_wait;	    /* the settle reads back at once (after a repair under the job lock) */
	int64_t started_ms; /* wall clock */
	int64_t paced_ms;   /* monotonic: when the pass began reading (pace) */
	struct lk_job_lock *lock; /* poll/snapshot repair: held while it writes */
	bool held;		  /* vo->hold was granted */
	int64_t relid; /* real-time: the table's id in change capture (0: not looked up) */
	char ident[LK_IDENT_MAX]; /* the job's position key in the target */
};

/* The kind letters of pending rows, by enum lk_diff_kind. */
extern const char lk_verify_kind_letter[3];

/* The canonical hash of a row over every synced column. */
uint64_t lk_verify_row_hash(struct verify_state *vs, const struct lk_value *row);

/*
 * The pending keys: checked again once the job applied past them (vo->settle_ms), the
 * ones that still differ counted (and listed) in vs->res, and repaired when asked.
 * Empties vs->pend.
 */
int lk_verify_settle(struct verify_state *vs, struct lk_err *err);
/* Real-time: LK_ERR_BUSY unless the job's target position streams (a snapshot or its
 * sweep going: the target is not whole yet, every row would look different). */
int lk_verify_rt_ready(struct verify_state *vs, struct lk_err *err);
/* Counts the rows of one side (the source matching `where`, the target's live rows);
 * -1 with err on failure. */
int64_t lk_verify_count(struct verify_state *vs, bool target, struct lk_err *err);
/*
 * The counts differed while no key did: counted again, target then source, each time
 * after the job applied past now (up to three times; once without a settle time).
 * *agree is false when they differ every time by the same number (writes in flight make
 * it move).
 */
int lk_verify_recount(struct verify_state *vs, bool *agree, struct lk_err *err);
/* Lets the job lock (and the daemon's hold on the job) go. */
void lk_verify_unlock(struct verify_state *vs);

#endif
