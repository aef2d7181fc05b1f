/*
 * deadletters.h - the dead-letter queue in the state store (table `errors`, SPEC §4
 * and §8, docs/dead-letters.md).
 *
 * A dead letter is one row the target rejected (a constraint, a type, a trigger) or
 * could not hold exactly (lockstep's own value refusals), kept with its job, key,
 * operation, SQLSTATE, message and row image, idempotently on (job, key, change): the
 * same change failing again bumps `attempts` instead of adding a row. A dead letter is
 * open until it is resolved (resolved_ms set): by a later clean apply of its key, by
 * `errors replay`, or by `errors resolve`.
 *
 * Keys are JSON arrays of the key's values as text in key order (bytes as hex), the
 * shape change capture logs; row images are JSON objects, column -> text or null.
 * Like every store call, these run on the calling thread's store handle.
 */
#ifndef LK_STORE_DEADLETTERS_H
#define LK_STORE_DEADLETTERS_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

struct lk_dead_letter {
	const char *key;      /* JSON array of the key's values */
	const char *change;   /* which change of the key failed: "snapshot", "poll:<cursor>"... */
	const char *op;	      /* "upsert" | "delete" */
	const char *sqlstate; /* the SQLSTATE (SQLite failures mapped to PostgreSQL's) */
	const char *message;  /* the target's message, or lockstep's refusal */
	const char *row;      /* JSON object: the row written (deletes: the key columns) */
};

/*
 * Records n dead letters of `job`: new ones with attempts 1, known (job, key, change)
 * ones get attempts + 1, the latest sqlstate, message and row, and are open again.
 * own_txn: wrap the inserts in one store transaction (commit before returning); false
 * when the caller's transaction on the same connection holds them (a borrowed store).
 */
int lk_store_dl_put(struct lk_store *s,		    /* the store */
		    const char *job,		    /* the job */
		    const struct lk_dead_letter *d, /* the dead letters */
		    int n,			    /* how many */
		    bool own_txn,		    /* begin and commit here */
		    struct lk_err *err);

/*
 * The keys of job's open dead letters: appends up to max distinct keys to keys (ncols
 * set to 1) and sets *total to the number of open dead letters of the job.
 */
int lk_store_dl_open_keys(struct lk_store *s, const char *job, int max, struct lk_rows *keys,
			  int64_t *total, struct lk_err *err);

/*
 * Marks resolved (now) the open dead letters of job whose key is one of keys[0..n-1],
 * in one transaction. *resolved (may be NULL) gets how many were.
 */
int lk_store_dl_resolve_keys(struct lk_store *s, const char *job, const char *const *keys, int n,
			     int64_t *resolved, struct lk_err *err);

/* Columns of the rows lk_store_dl_list and lk_store_dl_get return. */
enum {
	LK_DLCOL_ID,
	LK_DLCOL_JOB,
	LK_DLCOL_KEY,
	LK_DLCOL_CHANGE,
	LK_DLCOL_OP,
	LK_DLCOL_SQLSTATE,
	LK_DLCOL_MESSAGE,
	LK_DLCOL_ROW, /* NULL in lists (row images may be large): read one with _get */
	LK_DLCOL_ATTEMPTS,
	LK_DLCOL_CREATED,
	LK_DLCOL_RESOLVED, /* NULL while open */
	LK_DLCOL_N
};

/*
 * Dead letters in id order (job NULL = every job; all = resolved ones too), at most
 * limit of them, into out (emptied first). *more (may be NULL) tells whether more exist.
 */
int lk_store_dl_list(struct lk_store *s, const char *job, bool all, int limit, struct lk_rows *out,
		     bool *more, struct lk_err *err);

/* The dead letter `id` with its row image; out gets one row, or none when there is none. */
int lk_store_dl_get(struct lk_store *s, int64_t id, struct lk_rows *out, struct lk_err *err);

/* Marks dead letter id resolved now; *was_open tells whether it was open (and exists). */
int lk_store_dl_resolve(struct lk_store *s, int64_t id, bool *was_open, struct lk_err *err);

/* A replay of id failed again: attempts + 1, the new sqlstate and message, still open. */
int lk_store_dl_failed_again(struct lk_store *s, int64_t id, const char *sqlstate,
			     const char *message, struct lk_err *err);

/* The number of open dead letters (job NULL = of every job). */
int lk_store_dl_count_open(struct lk_store *s, const char *job, int64_t *n, struct lk_err *err);

/*
 * A store handle that uses someone else's open connection `db` (which must hold the
 * store's schema): for an SQLite state store kept in the target's own file, where a
 * second connection could not write while the target transaction holds the file's
 * write lock. Free it with lk_store_dl_unborrow, never lk_store_close; `db` must outlive
 * it and stays its owner's.
 */
struct lk_store *lk_store_dl_borrow(const struct lk_db *db);
void lk_store_dl_unborrow(struct lk_store *s);

#endif
