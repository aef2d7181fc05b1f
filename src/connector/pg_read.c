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

/* Builds the scan query and its parameters; returns the number of parameters. */
static int build_scan(struct lk_buf *sql, const struct lk_scan_spec *spec, struct lk_arena *scratch,
		      const char **params)
{
	int n = 0;

	add_select(sql, spec);
	if (spec->after) {
		lk_buf_adds(sql, " AND (");
		for (int i = 0; i < spec->norder; i++) {
			lk_buf_adds(sql, i ? ", " : "");
			lk_quote_ident(sql, spec->cols[spec->order[i]]);
		}
		lk_buf_adds(sql, ") > (");
		for (int i = 0; i < spec->norder; i++) {
			params[n] =
				lk_pg_param(scratch, spec->types[spec->order[i]], &spec->after[i]);
			lk_buf_addf(sql, "%s$%d", i ? ", " : "", ++n);
		}
		lk_buf_adds(sql, ")");
	}
	if (spec->min_first) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, spec->cols[spec->order[0]]);
		params[n] = lk_pg_param(scratch, spec->types[spec->order[0]], spec->min_first);
		lk_buf_addf(sql, " >= $%d", ++n);
	}
	if (spec->max_first) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, spec->cols[spec->order[0]]);
		params[n] = lk_pg_param(scratch, spec->types[spec->order[0]], spec->max_first);
		lk_buf_addf(sql, " < $%d", ++n);
	}
	lk_buf_adds(sql, " ORDER BY ");
	for (int i = 0; i < spec->norder; i++) {
		lk_buf_adds(sql, i ? ", " : "");
		lk_quote_ident(sql, spec->cols[spec->order[i]]);
	}
	return n;
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
		if (lk_pg_cmd(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
			      err) < 0)
			goto fail;
		c->in_txn = true;
		s->began = true;
	}
	lk_buf_addf(&sql, "DECLARE %s NO SCROLL CURSOR FOR ", s->cursor);
	n = build_scan(&sql, spec, &scratch, params);
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

int lk_pg_fetch(struct lk_conn *c, const struct lk_scan_spec *spec_in, const struct lk_rows *keys,
		struct lk_rows *out, struct lk_err *err)
{
	struct lk_scan_spec nomatch = *spec_in;
	const struct lk_scan_spec *spec = &nomatch;
	int per = 30000 / (spec->norder ? spec->norder : 1);
	int rc = 0;

	nomatch.match = NULL; /* fetched rows are shaped like a scan's without the match column */

	if (per > 1000)
		per = 1000;
	if (out->nrows == 0)
		lk_rows_set_ncols(out, spec->ncols);
	for (int start = 0; start < keys->nrows && rc == 0; start += per) {
		int nrows = keys->nrows - start < per ? keys->nrows - start : per;
		const char **params =
			lk_xcalloc((size_t)nrows * (size_t)spec->norder, sizeof(char *));
		struct lk_buf sql = LK_BUF_INIT;
		struct lk_arena scratch;
		PGresult *res;
		int n = 0;

		lk_arena_init(&scratch, 16384);
		add_select(&sql, spec);
		lk_buf_adds(&sql, " AND ");
		lk_pg_key_in(&sql, spec->cols, spec->order, spec->norder, nrows, 1);
		for (int r = 0; r < nrows; r++) {
			const struct lk_value *row = LK_ROW(keys, start + r);

			for (int i = 0; i < spec->norder; i++)
				params[n++] =
					lk_pg_param(&scratch, spec->types[spec->order[i]], &row[i]);
		}
		res = PQexecParams(lk_pg_q(c), sql.buf, n, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			rc = lk_pg_err(err, c, res, "fetch rows by key");
		else
			typed_rows(res, spec->types, out);
		PQclear(res);
		lk_buf_release(&sql);
		lk_arena_release(&scratch);
		free(params);
	}
	return rc;
}
