/*
 * err.h - the error struct every fallible function fills.
 *
 * A fallible function returns -1 (or NULL) and takes `struct lk_err *err`
 * last. The message lives in a fixed buffer, so failing never allocates.
 * Retry decisions look at `transient`, never at the message text.
 */
#ifndef LK_ERR_H
#define LK_ERR_H

#include <stdbool.h>

enum lk_errcode {
	LK_OK = 0,
	LK_ERR_CONFIG,	    /* invalid configuration: exit 78 */
	LK_ERR_USAGE,	    /* bad command line: exit 2 */
	LK_ERR_IO,	    /* file or system call failure */
	LK_ERR_PG,	    /* PostgreSQL reported an error */
	LK_ERR_SQLITE,	    /* SQLite reported an error */
	LK_ERR_UNAVAILABLE, /* a database stayed unreachable: exit 69 */
	LK_ERR_BUSY,	    /* another instance holds the job or the store: exit 75 */
	LK_ERR_FENCED,	    /* a write carried an older fencing epoch */
	LK_ERR_SCHEMA,	    /* a table, column or key is missing or unfit */
	LK_ERR_VALUE,	    /* a value the target cannot hold exactly */
	LK_ERR_CONFLICT,    /* a state conflict, e.g. a changed migration checksum */
	LK_ERR_NOTFOUND,    /* a named object does not exist */
	LK_ERR_CANCELLED,   /* stopped on request (signal) */
	LK_ERR_PERMISSION,  /* the role lacks a privilege; the message names it */
	LK_ERR_NOMEM,
	LK_ERR_INTERNAL,
};

#define LK_ERR_MSG_MAX 512

struct lk_err {
	enum lk_errcode code;
	bool transient; /* a retry may succeed: lost connection, 40001, 40P01, 57P01, SQLITE_BUSY */
	char sqlstate[6];	  /* PostgreSQL SQLSTATE, "" when not from PostgreSQL */
	char msg[LK_ERR_MSG_MAX]; /* lower-case, no final period */
};

#define LK_ERR_INIT                                                                                \
	{                                                                                          \
		LK_OK, false, "", ""                                                               \
	}

/* Fills err (if not NULL) and returns -1, so callers can `return lk_err_set(...)`. */
int lk_err_set(struct lk_err *err, enum lk_errcode code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepends "context: " to err->msg; returns -1. */
int lk_err_prefix(struct lk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resets err to LK_OK with an empty message. */
void lk_err_clear(struct lk_err *err);

/* True when the SQLSTATE's class says a retry may succeed (08, 40001, 40P01, 57P0x, 53). */
bool lk_err_sqlstate_is_transient(const char *sqlstate);

/*
 * True when the error concerns the rows being written, not the connection, the schema or
 * the session: lockstep's own refusal of a value (LK_ERR_VALUE), or a database error of
 * SQLSTATE class 22 (data exception) or 23 (integrity constraint), or P0001 (RAISE in a
 * trigger). The SQLite connector maps its constraint, mismatch and too-big result codes
 * to those SQLSTATEs. Such a batch is split until the failing rows are isolated, and
 * those go to the dead-letter queue (docs/dead-letters.md). Never true when transient.
 */
bool lk_err_is_row_level(const struct lk_err *err);

/* A short stable name for a code ("config", "pg", ...), for logs and JSON. */
const char *lk_err_code_name(enum lk_errcode code);

/* The process exit code for an error (SPEC §2): 78 config, 69 unavailable, 75 busy, 2 usage,
 * 1 otherwise. */
int lk_err_exit_code(const struct lk_err *err);

#endif
