/* pg_read.c - streaming scans (a cursor in one snapshot) and fetches by key lists. */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lk_scan {
	struct lk_conn *c;
	char cursor[32];
	enum lk_type *types; /* per output column; the match column is LK_T_BOOL */
	int ncols;
	bool began; /* we opened the transaction and must end it */
	bool done;
	bool pending; /* a FETCH is in flight: the server reads ahead while we write */
	int pending_max;
};

const char *lk_pg_param(struct lk_arena *scratch, enum lk_type t, const struct lk_value *v)
{
	struct lk_buf b = LK_BUF_INIT;
	char *p;

	if (v->null)
		return NULL;
	if (t != LK_T_BYTES)
		return v->p;
	lk_buf_add(&b, "\\x", 2);
	lk_buf_add_hex(&b, v->p, v->len);
	p = lk_arena_memdup(scratch, b.buf, b.len);
	lk_buf_release(&b);
	return p;
}

/* Stores a bytea hex text ("\x0a0b") as raw bytes. */
int lk_pg_begin_read(struct lk_conn *c, const char *qname, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_err ignored = LK_ERR_INIT;
	int rc;

	if (lk_pg_cmd(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL, err) < 0)
		return -1;
	c->in_txn = true;
	if (!qname)
		return 0;
	lk_buf_addf(&sql, "LOCK TABLE %s IN ACCESS SHARE MODE", qname);
	rc = lk_pg_cmd(c, sql.buf, 0, NULL, NULL, err);
	lk_buf_release(&sql);
	if (rc == 0 || strcmp(err->sqlstate, "42809") != 0)
		return rc;
	/* not a relation LOCK takes: begin again, without it */
	(void)lk_pg_cmd(c, "ROLLBACK", 0, NULL, NULL, &ignored);
	c->in_txn = false;
	lk_err_clear(err);
	if (lk_pg_cmd(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL, err) < 0)
		return -1;
	c->in_txn = true;
	return 0;
}

/* lk_pg_begin_read on a scan's table. */
static int begin_read(struct lk_conn *c, const struct lk_tref *t, struct lk_err *err)
{
	struct lk_buf name = LK_BUF_INIT;
	int rc;

	lk_quote_tref_for(&name, t, LK_DB_POSTGRES);
	rc = lk_pg_begin_read(c, name.buf, err);
	lk_buf_release(&name);
	return rc;
}

static void set_bytea(struct lk_rows *out, int row, int col, const char *s, size_t len)
{
	struct lk_value *v = &LK_ROW(out, row)[col];
	size_t n = len >= 2 ? (len - 2) / 2 : 0;
	char *p = lk_arena_alloc(&out->arena, n + 1);

	(void)lk_hex_decode(p, s + 2, 2 * n); /* PostgreSQL's bytea_output = hex */
	p[n] = '\0';
	v->p = p;
	v->len = n;
	v->null = false;
}

/* Appends a typed result to out, decoding bytea. */
static void typed_rows(const PGresult *res, const enum lk_type *types, struct lk_rows *out)
{
	int nt = PQntuples(res), nf = PQnfields(res);

	for (int r = 0; r < nt; r++) {
		int row;

		lk_rows_add(out);
		row = out->nrows - 1;
		for (int f = 0; f < nf && f < out->ncols; f++) {
			const char *s;
			size_t len;

			if (PQgetisnull(res, r, f))
				continue;
			s = PQgetvalue(res, r, f);
			len = (size_t)PQgetlength(res, r, f);
			if (types[f] == LK_T_BYTES && len >= 2 && s[0] == '\\' && s[1] == 'x')
				set_bytea(out, row, f, s, len);
			else
				lk_rows_set(out, row, f, s, len);
		}
	}
}

static void add_select(struct lk_buf *sql, const struct lk_scan_spec *spec)
{
	lk_buf_adds(sql, "SELECT ");
	for (int i = 0; i < spec->ncols; i++) {
		lk_buf_adds(sql, i ? ", " : "");
		lk_quote_ident(sql, spec->cols[i]);
	}
	if (spec->match)
		lk_buf_addf(sql, ", coalesce((%s\n), false) AS lk_match", spec->match);
	lk_buf_adds(sql, " FROM ");
	lk_quote_tref_for(sql, spec->table, LK_DB_POSTGRES);
	lk_buf_adds(sql, " WHERE true");
	if (spec->filter)
		lk_buf_addf(sql, " AND (%s\n)", spec->filter); /* \n: a trailing -- comment */
}

/*
 * Appends one bound: as the next parameter ($n, value in params), or (params NULL: a COPY
 * takes none) as a quoted literal. Returns -1 when the literal cannot be quoted.
 */
static int add_bound(struct lk_buf *sql, PGconn *pg, struct lk_arena *scratch, const char **params,
		     int *n, enum lk_type t, const struct lk_value *v)
{
	const char *p = lk_pg_param(scratch, t, v);
	char *lit;

	if (params) {
		params[*n] = p;
		lk_buf_addf(sql, "$%d", ++*n);
		return 0;
	}
	if (!p) {
		lk_buf_adds(sql, "NULL");
		return 0;
	}
	lit = PQescapeLiteral(pg, p, strlen(p));
	if (!lit)
		return -1;
	lk_buf_adds(sql, lit);
	PQfreemem(lit);
	return 0;
}

/*
 * Builds the scan query and its parameters (params NULL: literals instead); returns the
 * number of parameters, or -1 when a bound cannot be quoted as a literal.
 */
static int build_scan(struct lk_buf *sql, PGconn *pg, const struct lk_scan_spec *spec,
		      struct lk_arena *scratch, const char **params)
{
	int n = 0, bad = 0;

	add_select(sql, spec);
	if (spec->after) {
		lk_buf_adds(sql, " AND (");
		for (int i = 0; i < spec->norder; i++) {
			lk_buf_adds(sql, i ? ", " : "");
			lk_quote_ident(sql, spec->cols[spec->order[i]]);
		}
		lk_buf_adds(sql, ") > (");
		for (int i = 0; i < spec->norder; i++) {
			lk_buf_adds(sql, i ? ", " : "");
			bad |= add_bound(sql, pg, scratch, params, &n, spec->types[spec->order[i]],
					 &spec->after[i]);
		}
		lk_buf_adds(sql, ")");
	}
	if (spec->min_first) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, spec->cols[spec->order[0]]);
		lk_buf_adds(sql, " >= ");
		bad |= add_bound(sql, pg, scratch, params, &n, spec->types[spec->order[0]],
				 spec->min_first);
	}
	if (spec->max_first) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, spec->cols[spec->order[0]]);
		lk_buf_adds(sql, " < ");
		bad |= add_bound(sql, pg, scratch, params, &n, spec->types[spec->order[0]],
				 spec->max_first);
	}
	lk_buf_adds(sql, " ORDER BY ");
	for (int i = 0; i < spec->norder; i++) {
		lk_buf_adds(sql, i ? ", " : "");
		lk_quote_ident(sql, spec->cols[spec->order[i]]);
	}
	return bad ? -1 : n;
}

struct lk_scan *lk_pg_scan_open(struct lk_conn *c, const struct lk_scan_spec *spec,
				struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_arena scratch;
	const char **params = calloc((size_t)spec->norder + 2, sizeof(char *));
	struct lk_scan *s = calloc(1, sizeof(*s));
	int n;

	lk_arena_init(&scratch, 4096);
	if (!params || !s)
		goto fail_nomem;
	s->c = c;
	s->ncols = spec->ncols + (spec->match ? 1 : 0);
	s->types = calloc((size_t)s->ncols, sizeof(*s->types));
	if (!s->types)
		goto fail_nomem;
	memcpy(s->types, spec->types, (size_t)spec->ncols * sizeof(*s->types));
	if (spec->match)
		s->types[spec->ncols] = LK_T_BOOL;
	(void)snprintf(s->cursor, sizeof(s->cursor), "lk_scan_%d", ++c->seq);
	if (!c->in_txn) {
		if (begin_read(c, spec->table, err) < 0)
			goto fail;
		s->began = true;
	}
	lk_buf_addf(&sql, "DECLARE %s NO SCROLL CURSOR FOR ", s->cursor);
	n = build_scan(&sql, c->pg, spec, &scratch, params);
	if (lk_pg_cmd(c, sql.buf, n, params, NULL, err) < 0)
		goto fail;
	lk_buf_release(&sql);
	lk_arena_release(&scratch);
	free(params);
	return s;
fail_nomem:
	lk_err_set(err, LK_ERR_NOMEM, "out of memory");
fail:
	lk_buf_release(&sql);
	lk_arena_release(&scratch);
	free(params);
	lk_pg_scan_close(s);
	return NULL;
}

static int send_fetch(struct lk_scan *s, int max, struct lk_err *err)
{
	char sql[80];

	(void)snprintf(sql, sizeof(sql), "FETCH FORWARD %d FROM %s", max, s->cursor);
	if (!PQsendQuery(lk_pg_q(s->c), sql))
		return lk_pg_err(err, s->c, NULL, "read source rows");
	s->pending = true;
	s->pending_max = max;
	return 0;
}

/* Collects the in-flight FETCH; returns its result (the caller clears it) or NULL. */
static PGresult *collect(struct lk_scan *s)
{
	PGresult *res = NULL, *r;

	while ((r = PQgetResult(s->c->pg)) != NULL) {
		if (res)
			PQclear(res);
		res = r;
	}
	s->pending = false;
	return res;
}

/*
 * Returns the next rows and, unless the cursor is drained, sends the FETCH after them
 * before returning: the source server produces page N+1 while the caller writes page N.
 * While a scan is open its connection runs nothing else.
 */
int lk_pg_scan_next(struct lk_scan *s, struct lk_rows *out, int max, struct lk_err *err)
{
	PGresult *res;
	int n;

	if (s->done)
		return 0;
	if (out->nrows == 0)
		lk_rows_set_ncols(out, s->ncols);
	if (s->pending && s->pending_max != max) {
		/* Batch size changed: take what is in flight, at most `max` fit the contract. */
		max = s->pending_max;
	}
	if (!s->pending && send_fetch(s, max, err) < 0)
		return -1;
	res = collect(s);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		lk_pg_err(err, s->c, res, "read source rows");
		PQclear(res);
		s->done = true;
		return -1;
	}
	n = PQntuples(res);
	if (n < max)
		s->done = true;
	else if (send_fetch(s, max, err) < 0) {
		PQclear(res);
		return -1;
	}
	typed_rows(res, s->types, out);
	PQclear(res);
	return n;
}

void lk_pg_scan_close(struct lk_scan *s)
{
	if (!s)
		return;
	if (s->pending)
		PQclear(collect(s));
	if (s->began && s->c->in_txn) {
		PGresult *res = PQexec(lk_pg_q(s->c), "COMMIT"); /* read-only: ends the snapshot */

		PQclear(res);
		s->c->in_txn = false;
	}
	free(s->types);
	free(s);
}

void lk_pg_key_in(struct lk_buf *sql, const char *const *cols, const int *key, int nkey, int nrows,
		  int first)
{
	int p = first;

	lk_buf_adds(sql, "(");
	for (int i = 0; i < nkey; i++) {
		lk_buf_adds(sql, i ? ", " : "");
		lk_quote_ident(sql, cols[key[i]]);
	}
	lk_buf_adds(sql, ") IN (");
	for (int r = 0; r < nrows; r++) {
		lk_buf_adds(sql, r ? ", (" : "(");
		for (int i = 0; i < nkey; i++)
			lk_buf_addf(sql, "%s$%d", i ? ", " : "", p++);
		lk_buf_adds(sql, ")");
	}
	lk_buf_adds(sql, ")");
}

/* The plain fetch's query: the scan's SELECT and "(k1, k2) IN (($1, $2), ...)". */
static void build_fetch(struct lk_buf *sql, const struct lk_scan_spec *spec, int nrows)
{
	add_select(sql, spec);
	lk_buf_adds(sql, " AND ");
	lk_pg_key_in(sql, spec->cols, spec->order, spec->norder, nrows, 1);
}

/* The index in spec->order of column col, or -1 when it is not a key column. */
static int key_pos(const struct lk_scan_spec *spec, int col)
{
	for (int k = 0; k < spec->norder; k++) {
		if (spec->order[k] == col)
			return k;
	}
	return -1;
}

/*
 * The ordinal fetch's output list: each column from the matched row (a key column from
 * the logged key when there is none), then the key's index, negated when no row matched.
 */
static void add_ordinal_select(struct lk_buf *sql, const struct lk_scan_spec *spec)
{
	lk_buf_adds(sql, "SELECT ");
	for (int i = 0; i < spec->ncols; i++) {
		int k = key_pos(spec, i);

		lk_buf_adds(sql, i ? ", " : "");
		if (k >= 0)
			lk_buf_addf(sql,
				    "CASE WHEN lk_s.lk_hit THEN lk_s.lk_c%d ELSE lk_u.lk_k%d END",
				    i, k);
		else
			lk_buf_addf(sql, "lk_s.lk_c%d", i);
	}
	lk_buf_adds(sql, ", CASE WHEN lk_s.lk_hit THEN lk_u.lk_ord ELSE -lk_u.lk_ord END");
}

/*
 * The ordinal fetch (spec->ordinal, connector.h): the keys as VALUES whose columns take the
 * key columns' types without naming a type (COALESCE with a column of an empty read of the
 * table: no cast, so no user-defined cast runs), then each key's rows by a LATERAL join in
 * which the source's own equality decides:
 *
 *   SELECT ... FROM (SELECT) lk_o LEFT JOIN (SELECT k1 FROM t WHERE false) lk_z(lk_z0) ON true
 *   CROSS JOIN LATERAL (VALUES (1, COALESCE($1, lk_z0)), ...) lk_u(lk_ord, lk_k0)
 *   LEFT JOIN LATERAL (SELECT true, c0, ... FROM t WHERE filter AND k1 = lk_u.lk_k0)
 *     lk_s(lk_hit, lk_c0, ...) ON true
 */
static void build_ordinal(struct lk_buf *sql, const struct lk_scan_spec *spec, int nrows)
{
	int p = 1;

	add_ordinal_select(sql, spec);
	lk_buf_adds(sql, " FROM (SELECT) lk_o LEFT JOIN (SELECT ");
	for (int k = 0; k < spec->norder; k++) {
		lk_buf_adds(sql, k ? ", " : "");
		lk_quote_ident(sql, spec->cols[spec->order[k]]);
	}
	lk_buf_adds(sql, " FROM ");
	lk_quote_tref_for(sql, spec->table, LK_DB_POSTGRES);
	lk_buf_adds(sql, " WHERE false) lk_z(");
	for (int k = 0; k < spec->norder; k++)
		lk_buf_addf(sql, "%slk_z%d", k ? ", " : "", k);
	lk_buf_adds(sql, ") ON true CROSS JOIN LATERAL (VALUES ");
	for (int r = 0; r < nrows; r++) {
		lk_buf_addf(sql, "%s(%d", r ? ", " : "", r + 1);
		for (int k = 0; k < spec->norder; k++)
			lk_buf_addf(sql, ", COALESCE($%d, lk_z%d)", p++, k);
		lk_buf_addch(sql, ')');
	}
	lk_buf_adds(sql, ") lk_u(lk_ord");
	for (int k = 0; k < spec->norder; k++)
		lk_buf_addf(sql, ", lk_k%d", k);
	lk_buf_adds(sql, ") LEFT JOIN LATERAL (");
	add_select(sql, &(struct lk_scan_spec){.table = spec->table,
					       .cols = spec->cols,
					       .ncols = spec->ncols,
					       .filter = spec->filter,
					       .match = "true"});
	for (int k = 0; k < spec->norder; k++) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, spec->cols[spec->order[k]]);
		lk_buf_addf(sql, " = lk_u.lk_k%d", k);
	}
	lk_buf_adds(sql, ") lk_s(");
	for (int i = 0; i < spec->ncols; i++)
		lk_buf_addf(sql, "lk_c%d, ", i);
	lk_buf_adds(sql, "lk_hit) ON true");
}

/* Fetches rows [start, start + nrows) of keys with one statement. */
static int fetch_chunk(struct lk_conn *c, const struct lk_scan_spec *spec,
		       const enum lk_type *types, const struct lk_rows *keys, int start, int nrows,
		       struct lk_rows *out, struct lk_err *err)
{
	const char **params = lk_xcalloc((size_t)nrows * (size_t)spec->norder, sizeof(char *));
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_arena scratch;
	PGresult *res;
	int n = 0, rc = 0;

	lk_arena_init(&scratch, 16384);
	if (spec->ordinal)
		build_ordinal(&sql, spec, nrows);
	else
		build_fetch(&sql, spec, nrows);
	for (int r = 0; r < nrows; r++) {
		const struct lk_value *row = LK_ROW(keys, start + r);

		for (int i = 0; i < spec->norder; i++)
			params[n++] = lk_pg_param(&scratch, spec->types[spec->order[i]], &row[i]);
	}
	res = PQexecParams(lk_pg_q(c), sql.buf, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = lk_pg_err(err, c, res, "fetch rows by key");
	else
		typed_rows(res, types, out);
	PQclear(res);
	lk_buf_release(&sql);
	lk_arena_release(&scratch);
	free(params);
	return rc;
}

int lk_pg_fetch(struct lk_conn *c, const struct lk_scan_spec *spec_in, const struct lk_rows *keys,
		struct lk_rows *out, struct lk_err *err)
{
	struct lk_scan_spec spec = *spec_in;
	int per = 30000 / (spec.norder ? spec.norder : 1);
	int ncols = spec.ncols + (spec.ordinal ? 1 : 0);
	enum lk_type *types = lk_xcalloc((size_t)ncols, sizeof(*types));
	int rc = 0;

	spec.match = NULL; /* fetched rows are shaped like a scan's without the match column */
	memcpy(types, spec.types, (size_t)spec.ncols * sizeof(*types));
	if (spec.ordinal)
		types[spec.ncols] = LK_T_INT;
	if (per > 1000)
		per = 1000;
	if (out->nrows == 0)
		lk_rows_set_ncols(out, ncols);
	for (int start = 0; start < keys->nrows && rc == 0; start += per) {
		int nrows = keys->nrows - start < per ? keys->nrows - start : per;

		rc = fetch_chunk(c, &spec, types, keys, start, nrows, out, err);
	}
	free(types);
	return rc;
}

/*
 * The snapshot's binary fast path: one COPY (SELECT ... ORDER BY key) TO STDOUT (FORMAT
 * binary) in the scan's snapshot, read a tuple at a time (the server sends one CopyData
 * message per tuple; a message holding several is parsed all the same).
 */
struct lk_copy_out {
	struct lk_conn *c;
	int ncols;
	int *key; /* the scan's order: indexes into its columns */
	enum lk_type *types;
	int nkey;
	size_t *off; /* the current tuple's fields */
	int32_t *flen;
	bool began;   /* we opened the transaction and must end it */
	bool copying; /* the COPY is still streaming */
	bool header, trailer, done;
	char *msg; /* the message being parsed (PQgetCopyData's), and how far */
	size_t msglen, msgpos;
};

static const char copy_signature[11] = "PGCOPY\n\377\r\n";

struct lk_copy_out *lk_pg_copy_out_open(struct lk_conn *c, const struct lk_scan_spec *spec,
					struct lk_err *err)
{
	struct lk_copy_out *s = lk_xcalloc(1, sizeof(*s));
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_arena scratch;
	PGresult *res;

	lk_arena_init(&scratch, 4096);
	s->c = c;
	s->ncols = spec->ncols;
	s->nkey = spec->norder;
	s->key = lk_xcalloc((size_t)spec->norder, sizeof(*s->key));
	s->types = lk_xcalloc((size_t)spec->ncols, sizeof(*s->types));
	s->off = lk_xcalloc((size_t)spec->ncols, sizeof(*s->off));
	s->flen = lk_xcalloc((size_t)spec->ncols, sizeof(*s->flen));
	memcpy(s->key, spec->order, (size_t)spec->norder * sizeof(*s->key));
	memcpy(s->types, spec->types, (size_t)spec->ncols * sizeof(*s->types));
	if (!c->in_txn) {
		/* One statement streams the whole table: the session's statement_timeout (a
		 * guard for single statements) would cut a large snapshot short. A COPY is
		 * planned for its total cost, which may sort the whole table before the first
		 * row; with sorts discouraged it follows the key's index when there is one and
		 * streams from the first row, as the cursor path does. */
		if (begin_read(c, spec->table, err) < 0)
			goto fail;
		s->began = true;
		if (lk_pg_cmd(c,
			      "SELECT pg_catalog.set_config('statement_timeout', '0', true),"
			      " pg_catalog.set_config('enable_sort', 'off', true)",
			      0, NULL, NULL, err) < 0)
			goto fail;
	}
	lk_buf_adds(&sql, "COPY (");
	if (build_scan(&sql, c->pg, spec, &scratch, NULL) < 0) {
		lk_err_set(err, LK_ERR_VALUE, "a resume key cannot be quoted for the source");
		goto fail;
	}
	lk_buf_adds(&sql, ") TO STDOUT (FORMAT binary)");
	res = PQexec(lk_pg_q(c), sql.buf);
	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		lk_pg_err(err, c, res, "read source rows");
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	s->copying = true;
	lk_buf_release(&sql);
	lk_arena_release(&scratch);
	return s;
fail:
	lk_buf_release(&sql);
	lk_arena_release(&scratch);
	lk_pg_copy_out_close(s);
	return NULL;
}

/* The COPY has ended (PQgetCopyData -1 or -2): collects its result. */
static int copy_out_result(struct lk_copy_out *s, struct lk_err *err)
{
	PGresult *res;
	int rc = 0;

	s->copying = false;
	s->done = true;
	while ((res = PQgetResult(s->c->pg)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0)
			rc = lk_pg_err(err, s->c, res, "read source rows");
		PQclear(res);
	}
	if (rc == 0 && !s->trailer)
		rc = lk_err_set(err, LK_ERR_PG,
				"the source's COPY stream ended without its trailer");
	return rc;
}

/* Makes the next message current; 0 when the stream has ended, -1 on an error. */
static int copy_out_message(struct lk_copy_out *s, struct lk_err *err)
{
	int len;

	if (s->msg)
		PQfreemem(s->msg);
	s->msg = NULL;
	s->msglen = s->msgpos = 0;
	len = PQgetCopyData(s->c->pg, &s->msg, 0);
	if (len < 0) {
		if (len == -2 && PQstatus(s->c->pg) == CONNECTION_BAD) {
			s->copying = false;
			s->done = true;
			return lk_pg_err(err, s->c, NULL, "read source rows");
		}
		return copy_out_result(s, err) < 0 ? -1 : 0;
	}
	s->msglen = (size_t)len;
	if (!s->header) {
		const unsigned char *p = (const unsigned char *)s->msg;
		uint32_t ext;

		if (s->msglen < 19 || memcmp(p, copy_signature, sizeof(copy_signature)) != 0)
			return lk_err_set(err, LK_ERR_PG, "the source's COPY stream has no header");
		ext = (uint32_t)p[15] << 24 | (uint32_t)p[16] << 16 | (uint32_t)p[17] << 8 | p[18];
		if (ext > s->msglen - 19)
			return lk_err_set(err, LK_ERR_PG, "the source's COPY header is cut short");
		s->msgpos = 19 + ext;
		s->header = true;
	}
	return 1;
}

static void copy_batch_add(struct lk_copy_batch *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;

		while (cap < b->len + n)
			cap *= 2;
		b->data = lk_xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

int lk_pg_copy_out_next(struct lk_copy_out *s, struct lk_copy_batch *out, int max,
			struct lk_err *err)
{
	size_t last = 0;
	int n = 0;

	while (n < max && !s->done) {
		const unsigned char *p;
		size_t used;
		int rc;

		if (s->msgpos >= s->msglen) {
			rc = copy_out_message(s, err);
			if (rc < 0)
				return -1;
			if (rc == 0)
				break;
			continue;
		}
		p = (const unsigned char *)s->msg + s->msgpos;
		rc = s->trailer ? -1
				: lk_pg_copy_tuple(p, s->msglen - s->msgpos, s->ncols, &used,
						   s->off, s->flen);
		if (rc < 0)
			return lk_err_set(err, LK_ERR_PG,
					  "the source's COPY stream holds a malformed tuple");
		s->msgpos += used;
		if (rc == 0) {
			s->trailer = true;
			continue;
		}
		last = out->len;
		copy_batch_add(out, p, used);
		n++;
	}
	if (n == 0)
		return 0;
	/* s->off and s->flen describe the last tuple: its key is the batch's position. */
	lk_rows_add(&out->last);
	for (int k = 0; k < s->nkey; k++) {
		int col = s->key[k];
		const unsigned char *f = (const unsigned char *)out->data + last + s->off[col];

		if (s->flen[col] >= 0 &&
		    lk_pg_copy_key_text(s->types[col], f, s->flen[col], &out->last,
					out->last.nrows - 1, col) < 0)
			return lk_err_set(err, LK_ERR_INTERNAL,
					  "a key column of type %s cannot be read from binary COPY",
					  lk_type_name(s->types[col]));
	}
	out->nrows += n;
	return n;
}

void lk_pg_copy_out_close(struct lk_copy_out *s)
{
	if (!s)
		return;
	if (s->copying) {
		/* Not read to its end: ask the server to stop, then drain what is in flight. */
		PGcancel *cn = PQgetCancel(s->c->pg);
		PGresult *res;
		char buf[256];
		char *m = NULL;

		if (cn) {
			(void)PQcancel(cn, buf, sizeof(buf));
			PQfreeCancel(cn);
		}
		while (PQgetCopyData(s->c->pg, &m, 0) >= 0) {
			PQfreemem(m);
			m = NULL;
		}
		while ((res = PQgetResult(s->c->pg)) != NULL)
			PQclear(res);
	}
	if (s->msg)
		PQfreemem(s->msg);
	if (s->began && s->c->in_txn) {
		PGresult *res =
			PQexec(lk_pg_q(s->c), "ROLLBACK"); /* read-only: ends the snapshot */

		PQclear(res);
		s->c->in_txn = false;
	}
	free(s->key);
	free(s->types);
	free(s->off);
	free(s->flen);
	free(s);
}
