/* pg_int.h - declarations shared by the PostgreSQL connector's files. */
#ifndef LK_PG_INT_H
#define LK_PG_INT_H

#include "connector.h"
#include "core/buf.h"

#include <libpq-fe.h>

#define LK_PG_MAX_STAGES 16

/* A temporary staging table for COPY + merge upserts, one per (table, columns). */
struct pg_stage {
	char *key; /* quoted table + column list: identifies the stage */
	char name[32];
	bool dirty; /* rows copied in the current transaction */
};

struct lk_conn {
	PGconn *pg;
	char dbname[64]; /* the config's database name, for messages */
	bool in_txn;
	struct pg_stage stages[LK_PG_MAX_STAGES];
	int nstages;
	int seq;	       /* names cursors and stages */
	int sp_seq;	       /* seq when the open savepoint was taken: later stages die with it */
	lk_refused_cb refused; /* the refusal hook (set_refused), or NULL */
	void *refused_arg;
	/* Statements sent and failed (the `counters` op). Written by the owning thread, read
	 * by any: accessed with relaxed atomics. */
	int64_t queries, errors;
	/* The changelog reads' source table (pg_cdc.c): its oid and quoted name, for LOCK. */
	int64_t read_relid;
	char read_name[300];
};

/* The connection for one statement sent to the server: counts it (every PQexec*, PQsend*). */
static inline PGconn *lk_pg_q(struct lk_conn *c)
{
	__atomic_fetch_add(&c->queries, 1, __ATOMIC_RELAXED);
	return c->pg;
}

/* Fills err from a failed result (or the connection when res is NULL); returns -1. */
int lk_pg_err(struct lk_err *err, struct lk_conn *c, const PGresult *res, const char *context);

/* Runs a command with text parameters; checks the status; clears the result. */
int lk_pg_cmd(struct lk_conn *c, const char *sql, int n, const char *const *params,
	      int64_t *affected, struct lk_err *err);

/*
 * BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY, then, before the snapshot is taken,
 * LOCK TABLE qname IN ACCESS SHARE MODE (qname quoted; NULL: no lock). An ALTER TABLE that
 * rewrites the table then cannot commit between the snapshot and the read: a rewritten
 * table looks empty to a snapshot taken before the rewrite, and the rows read would be
 * taken for deleted. A relation LOCK does not take (a foreign table) is read without it.
 */
int lk_pg_begin_read(struct lk_conn *c, const char *qname, struct lk_err *err);

/*
 * Converts interchange values to PostgreSQL text parameters: bytes become "\x..." hex.
 * Pointers are valid until `scratch` is reset.
 */
const char *lk_pg_param(struct lk_arena *scratch, enum lk_type t, const struct lk_value *v);

/* Appends "(k1, k2) IN ((..),(..))"-style key matching for nkeys keys starting at $first. */
void lk_pg_key_in(struct lk_buf *sql, const char *const *cols, const int *key, int nkey, int nrows,
		  int first);

void lk_pg_stages_reset(struct lk_conn *c, bool forget);

/* pg_read.c: scans and fetches; pg_write.c: writes and positions (see connector.h). */
struct lk_scan *lk_pg_scan_open(struct lk_conn *c, const struct lk_scan_spec *spec,
				struct lk_err *err);
int lk_pg_scan_next(struct lk_scan *s, struct lk_rows *out, int max, struct lk_err *err);
void lk_pg_scan_close(struct lk_scan *s);
int lk_pg_fetch(struct lk_conn *c, const struct lk_scan_spec *spec, const struct lk_rows *keys,
		struct lk_rows *out, struct lk_err *err);
int lk_pg_upsert(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_rows *rows,
		 bool plain, struct lk_err *err);
int lk_pg_upsert_copy(struct lk_conn *c, const struct lk_write_spec *w,
		      const struct lk_copy_batch *b, bool plain, struct lk_err *err);
struct lk_copy_out *lk_pg_copy_out_open(struct lk_conn *c, const struct lk_scan_spec *spec,
					struct lk_err *err);
int lk_pg_copy_out_next(struct lk_copy_out *s, struct lk_copy_batch *out, int max,
			struct lk_err *err);
void lk_pg_copy_out_close(struct lk_copy_out *s);
int lk_pg_delete_keys(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_rows *rows,
		      struct lk_err *err);
int lk_pg_position_setup(struct lk_conn *c, struct lk_err *err);
int lk_pg_position_get(struct lk_conn *c, const char *job, int64_t *epoch, char **pos,
		       struct lk_err *err);
int lk_pg_position_put(struct lk_conn *c, const char *job, int64_t epoch, const char *pos,
		       struct lk_err *err);

#endif
