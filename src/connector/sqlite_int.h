/*
 * sqlite_int.h - declarations shared by the SQLite connector's files:
 * sqlite.c (connection, transactions, exec, schema), sqlite_scan.c (scans,
 * fetches, value conversion), sqlite_write.c (upserts, deletes, position) and
 * sqlite_cdc.c (change capture).
 */
#ifndef LK_SQLITE_INT_H
#define LK_SQLITE_INT_H

#include "connector.h"
#include "core/buf.h"

#include <sqlite3.h>

/* Statements the connection keeps prepared (upserts, deletes, the position). */
#define LK_SQLITE_CACHE_MAX 32

/* SQLite's column affinities (datatype3.html §3.1), from a declared type. */
enum lk_sqlite_affinity {
	LK_AFF_BLOB = 0,
	LK_AFF_TEXT,
	LK_AFF_NUMERIC,
	LK_AFF_INTEGER,
	LK_AFF_REAL,
};

/*
 * A statement prepared once for one SQL text and reused until the connection
 * closes (or it is evicted, least recently used first). It is always reset
 * after use, so it never holds a lock or a read between calls.
 */
struct lk_sqlite_cached {
	struct lk_sqlite_cached *next;
	char *sql;
	sqlite3_stmt *stmt;
	unsigned char *affinity; /* upserts: target affinity per written column, or NULL */
};

struct lk_conn {
	sqlite3 *db;
	char *label;			/* the database in messages: config name, else path */
	struct lk_sqlite_cached *cache; /* most recently used first */
	int ncache;
	/* Change capture: PRAGMA data_version as listen() or the last wake-up saw it. */
	int64_t data_version;
	bool listening;
	lk_refused_cb refused; /* the refusal hook (set_refused), or NULL */
	void *refused_arg;
	int64_t deadline_ms; /* set_timeout: statements are interrupted after it (monotonic) */
	/* Statements started and failed (the `counters` op): relaxed atomics, read by any
	 * thread. */
	int64_t queries, errors;
};

/*
 * Fills err with LK_ERR_SQLITE, "context: <sqlite3_errmsg>", transient for
 * SQLITE_BUSY and SQLITE_LOCKED (rc is the failing call's result). Returns -1.
 */
int lk_sqlite_fail(struct lk_conn *c, int rc, struct lk_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* True when rc (possibly extended) says another connection holds a lock. */
bool lk_sqlite_rc_is_transient(int rc);

/* The affinity SQLite gives a column declared with type `decl` (NULL = none). */
enum lk_sqlite_affinity lk_sqlite_affinity(const char *decl);

/*
 * Returns the connection's prepared statement for `sql` in *out, preparing and
 * caching it on first use. The entry stays owned by the connection; it is valid
 * until the next lk_sqlite_cache_get() or close. The caller resets the statement.
 */
int lk_sqlite_cache_get(struct lk_conn *c, const char *sql, struct lk_sqlite_cached **out,
			struct lk_err *err);
/* Finalizes and frees every cached statement. */
void lk_sqlite_cache_clear(struct lk_conn *c);

/*
 * Binds an interchange value by its logical type: INT as an integer when it
 * parses as int64, FLOAT as a double (NaN as text), BOOL t/f/true/false as 1/0,
 * BYTES as a blob, anything else as text. `dtor` is SQLITE_STATIC when the value
 * outlives the binding, else SQLITE_TRANSIENT. Returns SQLite's result code.
 */
int lk_sqlite_bind(sqlite3_stmt *st,		/* the statement */
		   int idx,			/* 1-based parameter index */
		   enum lk_type t,		/* the value's logical type */
		   const struct lk_value *v,	/* the value (null -> SQL NULL) */
		   sqlite3_destructor_type dtor /* SQLITE_STATIC or SQLITE_TRANSIENT */
);

/*
 * Stores column i of the current row of st as (row, col) of out, in the
 * interchange form for logical type t (LK_T_OTHER: by storage class alone).
 */
void lk_sqlite_read(struct lk_rows *out, /* the batch receiving the value */
		    int row,		 /* its row in out */
		    int col,		 /* its column in out */
		    sqlite3_stmt *st,	 /* a statement positioned on a row (SQLITE_ROW) */
		    int i,		 /* the 0-based result column of st */
		    enum lk_type t	 /* the column's logical type */
);

/*
 * Appends d as PostgreSQL prints a float8 (shortest exact digits, exponent
 * outside 1e-4..1e15, "NaN", "Infinity"), or, when `positional`, as a numeric
 * prints it (never an exponent).
 */
void lk_sqlite_format_double(struct lk_buf *b, double d, bool positional);

/* Parses exactly `len` bytes of s as a decimal int64 / a double. */
bool lk_sqlite_parse_int64(const char *s, size_t len, int64_t *out);
bool lk_sqlite_parse_double(const char *s, size_t len, double *out);

/* sqlite.c: describes a table (the describe op). */
int lk_sqlite_describe(struct lk_conn *c, const struct lk_tref *t, struct lk_table *out,
		       struct lk_err *err);

/* sqlite_scan.c and sqlite_write.c: the ops of the same names (see connector.h). */
struct lk_scan *lk_sqlite_scan_open(struct lk_conn *c, const struct lk_scan_spec *spec,
				    struct lk_err *err);
int lk_sqlite_scan_next(struct lk_scan *s, struct lk_rows *out, int max, struct lk_err *err);
void lk_sqlite_scan_close(struct lk_scan *s);
int lk_sqlite_fetch(struct lk_conn *c, const struct lk_scan_spec *spec, const struct lk_rows *keys,
		    struct lk_rows *out, struct lk_err *err);
int lk_sqlite_upsert(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_rows *rows,
		     bool plain, struct lk_err *err);
int lk_sqlite_delete_keys(struct lk_conn *c, const struct lk_write_spec *w,
			  const struct lk_rows *rows, struct lk_err *err);
int lk_sqlite_position_setup(struct lk_conn *c, struct lk_err *err);
int lk_sqlite_position_get(struct lk_conn *c, const char *job, int64_t *epoch, char **pos,
			   struct lk_err *err);
int lk_sqlite_position_put(struct lk_conn *c, const char *job, int64_t epoch, const char *pos,
			   struct lk_err *err);

#endif
