/*
 * connector.h - one ops table, two engines (PostgreSQL via libpq, SQLite).
 *
 * Values travel between engines in one interchange form (docs/types.md):
 * every value is text in the shape PostgreSQL prints it with lockstep's pinned
 * session settings (UTC, ISO dates, shortest-exact floats, "t"/"f" booleans),
 * except LK_T_BYTES, which is raw bytes. Each connector converts to and from its
 * engine at the edge, and refuses (LK_ERR_VALUE, naming key and column) a value
 * its engine cannot hold exactly.
 *
 * Threading: a struct lk_conn belongs to one thread at a time. Nothing here is
 * shared between connections.
 */
#ifndef LK_CONNECTOR_H
#define LK_CONNECTOR_H

#include "config/config.h"
#include "core/arena.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The logical type of a column: what the value means, whatever the engine. */
enum lk_type {
	LK_T_OTHER = 0, /* passed through as text */
	LK_T_INT,
	LK_T_FLOAT,
	LK_T_NUMERIC,
	LK_T_BOOL,
	LK_T_TEXT,
	LK_T_UUID,
	LK_T_JSON,
	LK_T_BYTES,
	LK_T_TIMESTAMPTZ,
	LK_T_TIMESTAMP,
	LK_T_DATE,
	LK_T_TIME,
};

const char *lk_type_name(enum lk_type t);
/* True for the types `lookback` and the poll cap understand as time. */
bool lk_type_is_time(enum lk_type t);

/* One value: `p` points at `len` bytes followed by a NUL (not counted). */
struct lk_value {
	const char *p;
	size_t len;
	bool null;
};

/*
 * A batch of rows: nrows x ncols values, row-major. Value bytes live in the
 * arena; lk_rows_reset() empties the batch and keeps its memory for the next.
 */
struct lk_rows {
	int ncols;
	int nrows;
	int cap; /* rows the value array can hold */
	struct lk_value *v;
	struct lk_arena arena;
};

void lk_rows_init(struct lk_rows *r, int ncols);
void lk_rows_reset(struct lk_rows *r);
/* Changes the column count of an empty batch. */
void lk_rows_set_ncols(struct lk_rows *r, int ncols);
void lk_rows_release(struct lk_rows *r);
/* Appends a row of ncols NULL values and returns it. */
struct lk_value *lk_rows_add(struct lk_rows *r);
/* Copies len bytes into the arena as the value of (row, col). */
void lk_rows_set(struct lk_rows *r, int row, int col, const char *p, size_t len);
void lk_rows_set_null(struct lk_rows *r, int row, int col);
/* Appends a copy of row `i` of `src` (same ncols) to dst. */
void lk_rows_copy_row(struct lk_rows *dst, const struct lk_rows *src, int i);
#define LK_ROW(r, i) (&(r)->v[(size_t)(i) * (size_t)(r)->ncols])

/*
 * A batch in PostgreSQL's binary COPY format, passed from a PostgreSQL source to a
 * PostgreSQL target whose columns have the same types (the snapshot's fast path: no value
 * is parsed or converted on the way). `data` holds nrows tuples without the stream's
 * header and trailer; `last` holds one row as wide as the scan whose key columns (the
 * scan's `order`) are the last tuple's key as interchange text, the others NULL.
 */
struct lk_copy_batch {
	char *data;
	size_t len, cap;
	int nrows;
	struct lk_rows last;
};
void lk_copy_batch_init(struct lk_copy_batch *b, int ncols);
void lk_copy_batch_reset(struct lk_copy_batch *b);
void lk_copy_batch_release(struct lk_copy_batch *b);

/*
 * One tuple of a binary COPY stream at p (n bytes): sets *used to its length and, for each
 * of its first `ncols` fields, off[i] (from p) and flen[i] (-1: NULL). Returns 1 for a
 * tuple of exactly ncols fields, 0 for the trailer, -1 when malformed or of another width.
 */
int lk_pg_copy_tuple(const unsigned char *p, size_t n, int ncols, size_t *used, size_t *off,
		     int32_t *flen);
/*
 * Sets value (row, col) of out to a key field of a binary tuple as interchange text:
 * LK_T_INT (2, 4 or 8 bytes, signed), LK_T_TEXT (the bytes), LK_T_UUID (16 bytes). Returns
 * 0, or -1 for another type or a length that does not fit it.
 */
int lk_pg_copy_key_text(enum lk_type t, const unsigned char *p, int32_t len, struct lk_rows *out,
			int row, int col);

/* A column as the engine describes it. */
struct lk_column {
	char *name;
	char *native; /* PostgreSQL: format_type(); SQLite: the declared type */
	enum lk_type type;
	bool not_null;
	int attnum;	  /* PostgreSQL: attnum (kept by RENAME COLUMN); SQLite: cid + 1 */
	bool has_default; /* a DEFAULT (or identity, or generated) fills it when not written */
	char generated;	  /* PostgreSQL attgenerated: 's' for GENERATED ALWAYS AS (...) STORED,
			   * SQLite: 's' stored or 'v' virtual generated column; else 0 */
	char identity;	  /* PostgreSQL attidentity: 'a' ALWAYS, 'd' BY DEFAULT; else 0 */
	char *collation;  /* PostgreSQL: the column's collation when not its type's default,
			   * quoted and schema-qualified ("pg_catalog"."C"); else NULL */
};

/* A table as the engine describes it. */
struct lk_table {
	char *schema; /* as resolved: "public" / "main" when the config gave none */
	char *name;
	struct lk_column *cols;
	int ncols;
	int *pk; /* indexes into cols, in key order; npk == 0 when there is none */
	int npk;
};

void lk_table_release(struct lk_table *t);
/* Index of the column named exactly `name`, or -1. */
int lk_table_col(const struct lk_table *t, const char *name);

/*
 * What to read. Used by scans (stream in ORDER BY order) and by fetches (rows
 * whose key equals one of a list of keys).
 */
struct lk_scan_spec {
	const struct lk_tref *table;
	const char *const *cols;   /* selected columns, by name */
	const enum lk_type *types; /* their logical types (from the source description) */
	int ncols;
	const int *order; /* scan: indexes into cols forming ORDER BY; fetch: the key columns */
	int norder;
	const struct lk_value
		*after; /* scan: exclusive lower bound on the ORDER BY tuple, or NULL */
	const struct lk_value
		*min_first; /* scan: inclusive lower bound on order[0] alone, or NULL */
	const struct lk_value
		*max_first; /* scan: exclusive upper bound on order[0] alone, or NULL */
	const char *filter; /* SQL boolean expression ANDed into WHERE, or NULL */
	const char *match;  /* SQL boolean expression selected as one more column, "t"/"f" */
	bool ordinal;	    /* fetch: say which key each row matched (see fetch) */
};

/* What to write. */
struct lk_write_spec {
	const struct lk_tref *table;
	const char *const *cols; /* written columns (a row of the batch holds these) */
	const enum lk_type *types;
	int ncols;
	const int *key; /* indexes into cols of the key, unique on the target */
	int nkey;
	const char *soft_column; /* deletes: soft:COL. upserts clear it, deletes set it to now */
};

struct lk_conn;
struct lk_scan;
struct lk_copy_out;

/*
 * A row holding a value the target engine cannot store exactly (NaN into SQLite, NUL in
 * text into PostgreSQL, a number a REAL column would round). `row` indexes the batch as
 * passed to upsert or delete_keys; `why` (LK_ERR_VALUE, naming key and column, with the
 * SQLSTATE of the nearest database error: 22021 for NUL, 22003 for numbers) is valid
 * during the call only. Called on the writing thread.
 */
typedef void (*lk_refused_cb)(void *arg, int row, const struct lk_err *why);

/* Whether poll mode can see every transaction that may still commit rows (poll_cap). */
enum lk_poll_cap_state {
	LK_POLL_CAP_ON = 0,	  /* every open transaction of this database is visible */
	LK_POLL_CAP_NO_PRIVILEGE, /* not superuser nor pg_read_all_stats: others' are hidden */
	LK_POLL_CAP_STANDBY,	  /* a hot standby: the primary's transactions are not here */
	LK_POLL_CAP_UNTRACKED,	  /* a session has track_activities off: its start is hidden */
};

/* What poll_cap learns; times are PostgreSQL's timestamptz output. */
struct lk_poll_cap {
	enum lk_poll_cap_state state;
	char cap[64];	   /* ON: the oldest other open transaction's start, else now() */
	int64_t nprepared; /* ON: prepared transactions in this database (any age) */
	char *xids;	   /* ON: their xids, comma-separated, "" for none; the caller frees it
			    * (free()); NULL in other states */
	char gid[201];	   /* the oldest of them (PostgreSQL's GIDSIZE is 200) and its PREPARE
			    * time, for messages; "" for none */
	char prepared_at[64];
};

/*
 * Where a source's history comes from (lineage; the timeline guard of docs/realtime.md,
 * "Restores and failovers"), and what its change-capture registry holds for one job.
 */
struct lk_lineage {
	char sysid[24];	  /* the cluster's system identifier; "" when it cannot be read */
	int64_t tli;	  /* the timeline it writes on (a standby: its last restartpoint's),
			   * 0 when it cannot be read */
	int64_t next_xid; /* pg_snapshot_xmax of a current snapshot: no xid at or above is used */
	bool registered;  /* the job has a consumer registry row for the table */
	int64_t reg[3];	  /* that row's horizon, xid, seq (0 for NULL) */
};

struct lk_connector_ops {
	const char *name; /* "postgres" | "sqlite" */

	/* Opens a connection (one try; the caller retries). PostgreSQL pins session settings. */
	struct lk_conn *(*open)(const struct lk_dbconf *db, struct lk_err *err);
	void (*close)(struct lk_conn *c); /* NULL is a no-op */

	int (*begin)(struct lk_conn *c, struct lk_err *err);
	int (*commit)(struct lk_conn *c, struct lk_err *err);
	int (*rollback)(struct lk_conn *c); /* best effort; never fails the caller */
	/*
	 * A savepoint inside the caller's transaction, for isolating failing rows (sync's
	 * dead-letter bisection). One level only: savepoint, then exactly one of
	 * savepoint_release (keep the work) or savepoint_rollback (undo it and drop the
	 * savepoint; the transaction stays usable), before the next savepoint.
	 */
	int (*savepoint)(struct lk_conn *c, struct lk_err *err);
	int (*savepoint_release)(struct lk_conn *c, struct lk_err *err);
	int (*savepoint_rollback)(struct lk_conn *c, struct lk_err *err);
	/*
	 * Inside a transaction: checks now what COMMIT would check at its end (deferred
	 * constraints), and fails when COMMIT would (a foreign key: SQLSTATE 23503); the
	 * caller then rolls back. Lets the caller know, before it commits something elsewhere (dead
	 * letters), that this transaction cannot commit. PostgreSQL: SET CONSTRAINTS ALL
	 * IMMEDIATE (the rest of the transaction checks them at once too); SQLite: the
	 * connection's unresolved deferred foreign-key violations.
	 */
	int (*check_deferred)(struct lk_conn *c, struct lk_err *err);
	/*
	 * Sets (cb NULL: clears) the connection's refusal hook. While set, upsert and
	 * delete_keys skip a row the engine cannot hold exactly and report it to cb, instead
	 * of failing the whole batch with LK_ERR_VALUE; lockstep then dead-letters it without
	 * a round trip. Unset (the default), such a row fails the batch.
	 */
	void (*set_refused)(struct lk_conn *c, lk_refused_cb cb, void *arg);

	/*
	 * Runs sql with text parameters written $1..$n (NULL pointer = SQL NULL). When out
	 * is not NULL (pass an empty batch), it receives the result rows as text, ncols set by
	 * the callee; with several statements, the rows of the last one that returns columns.
	 * *affected (if not NULL) gets the number of rows changed.
	 */
	int (*exec)(struct lk_conn *c, const char *sql, int nparams, const char *const *params,
		    struct lk_rows *out, int64_t *affected, struct lk_err *err);
	/*
	 * Inside a transaction: a statement still running `ms` after it started (PostgreSQL's
	 * statement_timeout) or after this call (SQLite: an interrupt from the progress
	 * handler) fails with SQLSTATE 57014. 0 turns it off. Ends with the transaction on
	 * PostgreSQL; on SQLite the caller turns it off.
	 */
	int (*set_timeout)(struct lk_conn *c, int64_t ms, struct lk_err *err);
	/*
	 * Statements this connection ran, and how many failed, since it opened. PostgreSQL:
	 * statements sent to the server (a COPY is one; a multi-statement script is one);
	 * SQLite: statements started (a statement stepped once per row counts once per row).
	 * Safe from any thread while the connection is open.
	 */
	void (*counters)(const struct lk_conn *c, int64_t *queries, int64_t *errors);

	/* Describes a table; LK_ERR_NOTFOUND (naming it) when it does not exist. */
	int (*describe)(struct lk_conn *c, const struct lk_tref *t, struct lk_table *out,
			struct lk_err *err);
	/* Sets *yes when a unique index (or the primary key) covers exactly `cols`. */
	int (*has_unique)(struct lk_conn *c, const struct lk_tref *t, const char *const *cols,
			  int ncols, bool *yes, struct lk_err *err);
	/*
	 * Creates table t with the given columns and key. A column's `native` type is used
	 * verbatim when not NULL (the caller sets it only when source and target are the same
	 * engine); otherwise the logical type is mapped (lk_type_pg_decl / lk_type_sqlite_decl).
	 */
	int (*create_table)(struct lk_conn *c, const struct lk_tref *t,
			    const struct lk_column *cols, int ncols, const int *key, int nkey,
			    struct lk_err *err);
	/* Rough row count for progress (may be -1 when unknown). */
	int (*estimate)(struct lk_conn *c, const struct lk_tref *t, int64_t *rows,
			struct lk_err *err);
	/* Sets *empty when the table has no rows. */
	int (*is_empty)(struct lk_conn *c, const struct lk_tref *t, bool *empty,
			struct lk_err *err);

	/*
	 * Streams rows in ORDER BY order inside one read-only snapshot on this connection.
	 * scan_next appends up to max rows to out (ncols = spec ncols, + 1 when spec->match)
	 * and returns how many it added (0 at the end) or -1.
	 * The spec's strings and bounds are copied; the caller may free them after scan_open.
	 */
	struct lk_scan *(*scan_open)(struct lk_conn *c, const struct lk_scan_spec *spec,
				     struct lk_err *err);
	int (*scan_next)(struct lk_scan *s, struct lk_rows *out, int max, struct lk_err *err);
	void (*scan_close)(struct lk_scan *s); /* ends the snapshot; NULL is a no-op */

	/*
	 * Appends to out the rows whose key (spec->order columns, matched positionally to the
	 * first spec->norder values of each row of `keys`) is in `keys` and that pass
	 * spec->filter. Rows are shaped like scan_next's (spec->match is not used). Order is
	 * unspecified.
	 *
	 * With spec->ordinal the source alone decides which keys have a row, comparing in its
	 * own types (never a spelling): each row of out has one more column, the 1-based index
	 * in `keys` of the key it matched, as decimal text. A row matched by several keys comes
	 * once per key. A key that no row matches gets a row of its own: its index negated,
	 * its key columns holding the key as the source reads it and prints it back, the other
	 * columns NULL.
	 */
	int (*fetch)(struct lk_conn *c, const struct lk_scan_spec *spec, const struct lk_rows *keys,
		     struct lk_rows *out, struct lk_err *err);

	/*
	 * Writes a batch inside the caller's transaction. `plain` says the target holds none of
	 * these keys (an empty target during a snapshot): PostgreSQL then COPYs straight in.
	 */
	int (*upsert)(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_rows *rows,
		      bool plain, struct lk_err *err);
	/*
	 * The binary fast path (NULL in the SQLite ops): copy_out streams the scan's rows in
	 * binary COPY format inside one read-only snapshot (spec->match unused; only key
	 * columns of the types lk_pg_copy_key_text decodes); copy_out_next appends up to max
	 * tuples to out and returns how many (0 at the end) or -1. copy_out_close cancels a
	 * stream not read to its end and ends the snapshot. upsert_copy writes such a batch
	 * like upsert (the target's columns must have the source's types).
	 */
	struct lk_copy_out *(*copy_out_open)(struct lk_conn *c, const struct lk_scan_spec *spec,
					     struct lk_err *err);
	int (*copy_out_next)(struct lk_copy_out *s, struct lk_copy_batch *out, int max,
			     struct lk_err *err);
	void (*copy_out_close)(struct lk_copy_out *s);
	int (*upsert_copy)(struct lk_conn *c, const struct lk_write_spec *w,
			   const struct lk_copy_batch *b, bool plain, struct lk_err *err);
	/* Deletes (or soft-deletes) the rows whose keys are in `rows`: rows as wide as w->cols,
	 * the key read from the w->key columns (other values are ignored). */
	int (*delete_keys)(struct lk_conn *c, const struct lk_write_spec *w,
			   const struct lk_rows *rows, struct lk_err *err);

	/*
	 * Creates lockstep's position table in this (target) database if missing, and gives an
	 * older one (a row per job name) a deployment column. `job` below is then the job's
	 * identity "JOB@DEPLOYMENT" (store.h, lk_store_ident): a row per job and deployment;
	 * a bare "JOB" is deployment "". Returns 1 when the table must keep its older shape
	 * (PostgreSQL: it is not ours to alter; a warning says so): then pass bare job names.
	 */
	int (*position_setup)(struct lk_conn *c, struct lk_err *err);
	/* Reads the job's position: *pos is malloc'd JSON, or NULL (and epoch 0) when none. A
	 * row an older lockstep wrote for the job (deployment "") becomes this deployment's
	 * when it has none: the first deployment that finds it resumes from it. */
	int (*position_get)(struct lk_conn *c, const char *job, int64_t *epoch, char **pos,
			    struct lk_err *err);
	/*
	 * The first statement of every batch transaction (DESIGN decision 5): upserts the job's
	 * row with `pos` and `epoch` only when the stored epoch <= epoch. Zero rows changed ->
	 * LK_ERR_FENCED (the caller rolls back).
	 */
	int (*position_put)(struct lk_conn *c, const char *job, int64_t epoch, const char *pos,
			    struct lk_err *err);

	/*
	 * Poll mode's cap (PostgreSQL): fills *out (struct lk_poll_cap above) with whether the
	 * open transactions of this database can be seen from here, the start time of the
	 * oldest one other than ours, then (read after it) the prepared transactions. Free
	 * out->xids after a success. NULL in the SQLite ops (SQLite serialises writers).
	 */
	int (*poll_cap)(struct lk_conn *c, struct lk_poll_cap *out, struct lk_err *err);

	/*
	 * The timeline guard's look at a source: fills *out (struct lk_lineage above),
	 * outside a transaction. With job not NULL, also reads job's consumer registry row for
	 * table relid (change capture must be installed); job NULL leaves registered false.
	 * SQLite fills only the registry row (the cdc op check_capture judges a file's
	 * history: it has no cluster identity or transaction counter).
	 */
	int (*lineage)(struct lk_conn *c, const char *job, int64_t relid, struct lk_lineage *out,
		       struct lk_err *err);
};

extern const struct lk_connector_ops lk_pg_ops;
extern const struct lk_connector_ops lk_sqlite_ops;

/* The ops for a database's kind. */
const struct lk_connector_ops *lk_connector_for(enum lk_db_kind kind);

/*
 * An open connection with its ops, opened with retries (full-jitter exponential back-off
 * per `retry`, transient failures only). Exhausted retries -> LK_ERR_UNAVAILABLE.
 */
struct lk_db {
	const struct lk_connector_ops *ops;
	struct lk_conn *conn;
	const struct lk_dbconf *conf;
	/* Statements run and failed through this handle since lk_db_open, as of the last
	 * lk_db_tally (lk_db_close tallies; they stay readable after it). */
	int64_t queries, errors;
	int64_t conn_queries, conn_errors; /* the open connection's counters at that tally */
};

/* Opens conf's database; a failed attempt counts as an error of that database. */
int lk_db_open(struct lk_db *db, const struct lk_dbconf *conf, const struct lk_retry_conf *retry,
	       volatile const bool *stop, struct lk_err *err);
void lk_db_close(struct lk_db *db);
/*
 * Brings db->queries and db->errors up to date and adds what is new to the process-wide
 * totals of its database (lk_db_stats). Call on the thread that opened db.
 */
void lk_db_tally(struct lk_db *db);

/*
 * Writers of a job's target tag their PostgreSQL session "lockstep:JOB" (application_name;
 * a name too long for its 63 bytes is cut and ends in "~" and a hash of the whole name, so
 * two jobs never share a tag; no-op on SQLite), so that a new holder can end an older
 * holder's open transaction:
 * lk_db_fence_others, called by a holder of the job's lease before its seal, terminates
 * the other sessions with that tag that are inside a transaction (a frozen zombie's batch
 * would otherwise hold the position row's lock until it wakes, and then commit). Returns
 * how many it ended; a failure (no right to signal them) is logged, and the seal waits.
 */
void lk_db_tag(struct lk_db *db, const char *job);
int64_t lk_db_fence_others(struct lk_db *db, const char *job);

/* Process-wide statement and error counts of one database (lockstep_db_* metrics). */
struct lk_db_stat {
	char name[64];
	bool state_store; /* the state store, not a configured database */
	int64_t queries, errors;
};

#define LK_DB_STATS_MAX 64
/* Copies up to max entries (in first-seen order) to out; returns how many. */
int lk_db_stats(struct lk_db_stat *out, int max);
/* Full jitter: a uniform pick in [0, min(max, initial * multiplier^attempt)] milliseconds. */
int64_t lk_backoff_ms(const struct lk_retry_conf *r, int attempt);

/* Identifier quoting: appends "name" with embedded quotes doubled (both engines). */
struct lk_buf;
void lk_quote_ident(struct lk_buf *b, const char *name);
/* Appends "schema"."name" (or just "name" when schema is NULL). */
void lk_quote_tref(struct lk_buf *b, const struct lk_tref *t);
/*
 * The same, as the engine resolves it: on PostgreSQL a missing schema is "public", never
 * left to search_path (DESIGN decision 1); on SQLite a missing schema stays absent.
 */
void lk_quote_tref_for(struct lk_buf *b, const struct lk_tref *t, enum lk_db_kind kind);
/* The table as the user reads it, for messages: schema.name or name (unquoted). */
void lk_tref_format(const struct lk_tref *t, char *out, size_t out_size);

/*
 * Canonical encoding for verify: appends a value's canonical form (docs/types.md) so that
 * PostgreSQL and SQLite encodings of the same value compare equal.
 */
void lk_value_canonical(struct lk_buf *b, enum lk_type t, const struct lk_value *v);

/* Describes a row's key for messages: "(id=42, name=x)" (values cut at 40 bytes). */
void lk_key_describe(char *out, size_t out_size, const char *const *cols, const int *key, int nkey,
		     const struct lk_value *row);

/* Maps engine type names to logical types. */
enum lk_type lk_type_from_pg(const char *typname);
enum lk_type lk_type_from_sqlite(const char *decl);
/* The declared type lockstep creates for a logical type (SQLite keeps the meaning in the name). */
const char *lk_type_sqlite_decl(enum lk_type t);
const char *lk_type_pg_decl(enum lk_type t);

#endif
