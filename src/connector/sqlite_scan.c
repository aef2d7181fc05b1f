/*
 * sqlite_scan.c - SQLite reads: keyset scans inside one read transaction,
 * fetches by key lists, and the conversion of values to and from the
 * interchange form (PostgreSQL's printed shape; raw bytes for LK_T_BYTES).
 */
#include "connector.h"
#include "core/buf.h"
#include "sqlite_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Keys per fetch statement: well under SQLITE_MAX_VARIABLE_NUMBER (32766). */
#define FETCH_MAX_KEYS 500
#define MAX_VARIABLES 32766

struct lk_scan {
	struct lk_conn *c;
	sqlite3_stmt *st;
	enum lk_type *types; /* per selected column */
	int ncols;	     /* selected columns, without the match column */
	bool match;
	bool began; /* we opened the read transaction and end it at close */
	bool done;
};

/* ---- values ---- */

bool lk_sqlite_parse_int64(const char *s, size_t len, int64_t *out)
{
	char *end;
	long long v;

	if (len == 0 || !(s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9')))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end != s + len)
		return false;
	*out = v;
	return true;
}

bool lk_sqlite_parse_double(const char *s, size_t len, double *out)
{
	char *end;

	if (len == 0 || s[0] == ' ' || s[0] == '\t' || s[0] == '\n')
		return false;
	errno = 0;
	*out = strtod(s, &end);
	/* ERANGE on underflow still yields the nearest double; only overflow is refused. */
	if (end != s + len || (errno == ERANGE && isinf(*out)))
		return false;
	return true;
}

/* Parses "t"/"true"/"1"/"f"/"false"/"0" (any case) into *yes. */
static bool parse_bool(const char *s, bool *yes)
{
	static const char *const truths[] = {"t", "true", "1", "yes", "on"};
	static const char *const lies[] = {"f", "false", "0", "no", "off"};

	for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
		if (strcasecmp(s, truths[i]) == 0)
			return (*yes = true);
		if (strcasecmp(s, lies[i]) == 0) {
			*yes = false;
			return true;
		}
	}
	return false;
}

int lk_sqlite_bind(sqlite3_stmt *st, int idx, enum lk_type t, const struct lk_value *v,
		   sqlite3_destructor_type dtor)
{
	int64_t n;
	double d;
	bool b;

	if (v->null)
		return sqlite3_bind_null(st, idx);
	switch (t) {
	case LK_T_INT:
		if (lk_sqlite_parse_int64(v->p, v->len, &n))
			return sqlite3_bind_int64(st, idx, n);
		break;
	case LK_T_FLOAT:
		if (lk_sqlite_parse_double(v->p, v->len, &d) && !isnan(d))
			return sqlite3_bind_double(st, idx, d);
		break;
	case LK_T_BOOL:
		if (parse_bool(v->p, &b))
			return sqlite3_bind_int(st, idx, b);
		break;
	case LK_T_BYTES:
		return sqlite3_bind_blob64(st, idx, v->p, v->len, dtor);
	default:
		break;
	}
	return sqlite3_bind_text64(st, idx, v->p, v->len, dtor, SQLITE_UTF8);
}

/* Splits d's shortest round-tripping form into digits (no trailing zeros) and exponent. */
static int shortest_digits(double d, char *digits, size_t size, int *exp10)
{
	char tmp[40];
	int nd = 0;

	for (int prec = 1; prec <= 17; prec++) {
		(void)snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	for (const char *p = tmp; *p && *p != 'e'; p++) {
		if (*p >= '0' && *p <= '9' && (size_t)nd + 1 < size)
			digits[nd++] = *p;
	}
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	*exp10 = (int)strtol(strchr(tmp, 'e') + 1, NULL, 10);
	return nd;
}

/* The text of a double that has no digits to print (NaN, infinities, zeros), else NULL. */
static const char *special_double(double d, bool positional)
{
	if (isnan(d))
		return "NaN";
	if (isinf(d))
		return d < 0 ? "-Infinity" : "Infinity";
	if (d == 0)
		return signbit(d) && !positional ? "-0" : "0"; /* numeric has no -0 */
	return NULL;
}

void lk_sqlite_format_double(struct lk_buf *b, double d, bool positional)
{
	const char *special = special_double(d, positional);
	char digits[24];
	int exp10, nd;

	if (special) {
		lk_buf_adds(b, special);
		return;
	}
	nd = shortest_digits(d, digits, sizeof(digits), &exp10);
	if (d < 0)
		lk_buf_addch(b, '-');
	if (!positional && (exp10 < -4 || exp10 >= 15)) { /* float8out's thresholds */
		lk_buf_addch(b, digits[0]);
		if (nd > 1)
			lk_buf_addf(b, ".%s", digits + 1);
		lk_buf_addf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
	} else if (exp10 < 0) {
		lk_buf_adds(b, "0.");
		for (int i = -1; i > exp10; i--)
			lk_buf_addch(b, '0');
		lk_buf_adds(b, digits);
	} else if (nd <= exp10 + 1) {
		lk_buf_adds(b, digits);
		for (int i = nd; i <= exp10; i++)
			lk_buf_addch(b, '0');
	} else {
		lk_buf_add(b, digits, (size_t)exp10 + 1);
		lk_buf_addf(b, ".%s", digits + exp10 + 1);
	}
}

static void set_str(struct lk_rows *out, int row, int col, const char *s)
{
	lk_rows_set(out, row, col, s, strlen(s));
}

/* A REAL read back as logical type t. */
static void read_real(struct lk_rows *out, int row, int col, double d, enum lk_type t)
{
	struct lk_buf b = LK_BUF_INIT;

	if (t == LK_T_BOOL) {
		set_str(out, row, col, d != 0 ? "t" : "f");
		return;
	}
	if (t == LK_T_INT && d == floor(d) && d >= -9223372036854775808.0 &&
	    d < 9223372036854775808.0)
		lk_buf_addf(&b, "%lld", (long long)d);
	else
		lk_sqlite_format_double(&b, d, t == LK_T_NUMERIC);
	lk_rows_set(out, row, col, b.buf, b.len);
	lk_buf_release(&b);
}

void lk_sqlite_read(struct lk_rows *out, int row, int col, sqlite3_stmt *st, int i, enum lk_type t)
{
	char num[32];
	const char *p;
	bool yes;

	switch (sqlite3_column_type(st, i)) {
	case SQLITE_NULL:
		lk_rows_set_null(out, row, col);
		return;
	case SQLITE_INTEGER:
		if (t == LK_T_BOOL) {
			set_str(out, row, col, sqlite3_column_int64(st, i) ? "t" : "f");
			return;
		}
		(void)snprintf(num, sizeof(num), "%lld", (long long)sqlite3_column_int64(st, i));
		set_str(out, row, col, num);
		return;
	case SQLITE_FLOAT:
		read_real(out, row, col, sqlite3_column_double(st, i), t);
		return;
	case SQLITE_TEXT:
		p = (const char *)sqlite3_column_text(st, i);
		if (t == LK_T_BOOL && parse_bool(p, &yes)) {
			set_str(out, row, col, yes ? "t" : "f");
			return;
		}
		lk_rows_set(out, row, col, p, (size_t)sqlite3_column_bytes(st, i));
		return;
	default: /* BLOB: the bytes as they are (a zero-length blob has a NULL pointer) */
		p = sqlite3_column_blob(st, i);
		lk_rows_set(out, row, col, p ? p : "", (size_t)sqlite3_column_bytes(st, i));
		return;
	}
}

/* ---- SQL text ---- */

static void add_select(struct lk_buf *sql, const struct lk_scan_spec *spec)
{
	lk_buf_adds(sql, "SELECT ");
	for (int i = 0; i < spec->ncols; i++) {
		lk_buf_adds(sql, i ? ", " : "");
		lk_quote_ident(sql, spec->cols[i]);
	}
	if (spec->match)
		lk_buf_addf(sql, ", CASE WHEN (%s\n) THEN 1 ELSE 0 END AS lk_match", spec->match);
	lk_buf_adds(sql, " FROM ");
	lk_quote_tref(sql, spec->table);
	lk_buf_adds(sql, " WHERE ");
	lk_buf_adds(sql, spec->filter ? "(" : "1");
	if (spec->filter)
		lk_buf_addf(sql, "%s\n)", spec->filter);
}

/* Appends "(o1, o2, ...)" or, for one column, "o1". */
static void add_order_cols(struct lk_buf *sql, const struct lk_scan_spec *spec, bool paren)
{
	if (paren)
		lk_buf_addch(sql, '(');
	for (int i = 0; i < spec->norder; i++) {
		lk_buf_adds(sql, i ? ", " : "");
		lk_quote_ident(sql, spec->cols[spec->order[i]]);
	}
	if (paren)
		lk_buf_addch(sql, ')');
}

/* Appends "(?, ?, ...)" for n placeholders (no parentheses for one). */
static void add_marks(struct lk_buf *sql, int n, bool paren)
{
	if (paren)
		lk_buf_addch(sql, '(');
	for (int i = 0; i < n; i++)
		lk_buf_adds(sql, i ? ", ?" : "?");
	if (paren)
		lk_buf_addch(sql, ')');
}

static void build_scan(struct lk_buf *sql, const struct lk_scan_spec *spec)
{
	bool row = spec->norder > 1;

	add_select(sql, spec);
	if (spec->after) {
		lk_buf_adds(sql, " AND ");
		add_order_cols(sql, spec, row);
		lk_buf_adds(sql, " > ");
		add_marks(sql, spec->norder, row);
	}
	if (spec->min_first) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, spec->cols[spec->order[0]]);
		lk_buf_adds(sql, " >= ?");
	}
	if (spec->max_first) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, spec->cols[spec->order[0]]);
		lk_buf_adds(sql, " < ?");
	}
	lk_buf_adds(sql, " ORDER BY ");
	add_order_cols(sql, spec, false);
}

/* Binds the scan's bounds in the order build_scan placed them (copies: SQLITE_TRANSIENT). */
static int bind_bounds(sqlite3_stmt *st, const struct lk_scan_spec *spec)
{
	enum lk_type first = spec->types[spec->order[0]];
	int idx = 1, rc = SQLITE_OK;

	for (int i = 0; spec->after && i < spec->norder && rc == SQLITE_OK; i++)
		rc = lk_sqlite_bind(st, idx++, spec->types[spec->order[i]], &spec->after[i],
				    SQLITE_TRANSIENT);
	if (spec->min_first && rc == SQLITE_OK)
		rc = lk_sqlite_bind(st, idx++, first, spec->min_first, SQLITE_TRANSIENT);
	if (spec->max_first && rc == SQLITE_OK)
		rc = lk_sqlite_bind(st, idx++, first, spec->max_first, SQLITE_TRANSIENT);
	return rc;
}

/* ---- scans ---- */

struct lk_scan *lk_sqlite_scan_open(struct lk_conn *c, const struct lk_scan_spec *spec,
				    struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_scan *s;
	int rc;

	if (spec->norder < 1 || spec->ncols < 1) {
		lk_err_set(err, LK_ERR_INTERNAL, "scan of %s without columns or order",
			   spec->table->name);
		return NULL;
	}
	s = lk_xcalloc(1, sizeof(*s));
	s->c = c;
	s->ncols = spec->ncols;
	s->match = spec->match != NULL;
	s->types = lk_xcalloc((size_t)spec->ncols, sizeof(*s->types));
	memcpy(s->types, spec->types, (size_t)spec->ncols * sizeof(*s->types));
	build_scan(&sql, spec);
	rc = sqlite3_prepare_v2(c->db, sql.buf, -1, &s->st, NULL);
	lk_buf_release(&sql);
	if (rc == SQLITE_OK)
		rc = bind_bounds(s->st, spec);
	if (rc == SQLITE_OK && sqlite3_get_autocommit(c->db)) {
		/* A deferred BEGIN: the snapshot starts at the first step and ends at close. */
		rc = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL);
		s->began = rc == SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		lk_sqlite_fail(c, rc, err, "scan %s", spec->table->name);
		lk_sqlite_scan_close(s);
		return NULL;
	}
	return s;
}

/* Makes out ready for rows of ncols columns; an empty batch takes the new shape. */
static int shape_out(struct lk_rows *out, int ncols, struct lk_err *err)
{
	if (out->nrows == 0)
		lk_rows_set_ncols(out, ncols);
	if (out->ncols != ncols)
		return lk_err_set(err, LK_ERR_INTERNAL, "batch has %d columns, rows have %d",
				  out->ncols, ncols);
	return 0;
}

/* Appends the statement's current row: ncols typed values, then the match column. */
static void add_row(struct lk_rows *out, sqlite3_stmt *st, const enum lk_type *types, int ncols,
		    bool match)
{
	int row;

	lk_rows_add(out);
	row = out->nrows - 1;
	for (int i = 0; i < ncols; i++)
		lk_sqlite_read(out, row, i, st, i, types[i]);
	if (match)
		set_str(out, row, ncols, sqlite3_column_int(st, ncols) ? "t" : "f");
}

int lk_sqlite_scan_next(struct lk_scan *s, struct lk_rows *out, int max, struct lk_err *err)
{
	int n = 0;

	if (shape_out(out, s->ncols + (s->match ? 1 : 0), err) < 0)
		return -1;
	while (!s->done && n < max) {
		int rc = sqlite3_step(s->st);

		if (rc == SQLITE_DONE) {
			s->done = true;
			break;
		}
		if (rc != SQLITE_ROW)
			return lk_sqlite_fail(s->c, rc, err, "read source rows");
		add_row(out, s->st, s->types, s->ncols, s->match);
		n++;
	}
	return n;
}

void lk_sqlite_scan_close(struct lk_scan *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->st);
	if (s->began && !sqlite3_get_autocommit(s->c->db)) {
		/* Read-only: COMMIT only ends the snapshot; ROLLBACK if it cannot. */
		if (sqlite3_exec(s->c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			(void)sqlite3_exec(s->c->db, "ROLLBACK", NULL, NULL, NULL);
	}
	free(s->types);
	free(s);
}

/* ---- fetch by keys ---- */

/* SELECT ... WHERE [filter AND] (k1, k2) IN (VALUES (?, ?), ...), or "k IN (?, ...)". */
static void build_fetch(struct lk_buf *sql, const struct lk_scan_spec *spec, int nrows)
{
	bool row = spec->norder > 1;

	add_select(sql, spec);
	lk_buf_adds(sql, " AND ");
	add_order_cols(sql, spec, row);
	lk_buf_adds(sql, row ? " IN (VALUES " : " IN (");
	for (int r = 0; r < nrows; r++) {
		lk_buf_adds(sql, r ? ", " : "");
		add_marks(sql, spec->norder, row);
	}
	lk_buf_adds(sql, ")");
}

/* Appends the table's column col, qualified: "main"."t"."c". */
static void add_table_col(struct lk_buf *sql, const struct lk_scan_spec *spec, int col)
{
	lk_quote_tref(sql, spec->table);
	lk_buf_addch(sql, '.');
	lk_quote_ident(sql, spec->cols[col]);
}

/*
 * The ordinal fetch (spec->ordinal, connector.h): the keys as a VALUES list, each joined to
 * the table's rows by SQLite's own comparison (the key columns' affinity and collation):
 *
 *   WITH "lk u"("lk ord", "lk k0") AS (VALUES (1, ?), ...)
 *   SELECT COALESCE(t.k, "lk k0"), t.c, ..., CASE WHEN t.k IS NULL THEN -"lk ord" ELSE ... END
 *   FROM "lk u" LEFT JOIN t ON t.k = "lk u"."lk k0" AND (filter)
 *
 * A matched row's key columns are not NULL (NULL equals nothing). Ordinals count from 1
 * within the statement; the caller adds the chunk's start.
 */
static void build_ordinal(struct lk_buf *sql, const struct lk_scan_spec *spec, int nrows)
{
	lk_buf_adds(sql, "WITH \"lk u\"(\"lk ord\"");
	for (int k = 0; k < spec->norder; k++)
		lk_buf_addf(sql, ", \"lk k%d\"", k);
	lk_buf_adds(sql, ") AS (VALUES ");
	for (int r = 0; r < nrows; r++) {
		lk_buf_addf(sql, "%s(%d, ", r ? ", " : "", r + 1);
		add_marks(sql, spec->norder, false);
		lk_buf_addch(sql, ')');
	}
	lk_buf_adds(sql, ") SELECT ");
	for (int i = 0; i < spec->ncols; i++) {
		int k = 0;

		while (k < spec->norder && spec->order[k] != i)
			k++;
		lk_buf_adds(sql, i ? ", " : "");
		lk_buf_adds(sql, k < spec->norder ? "COALESCE(" : "");
		add_table_col(sql, spec, i);
		if (k < spec->norder)
			lk_buf_addf(sql, ", \"lk u\".\"lk k%d\")", k);
	}
	lk_buf_adds(sql, ", CASE WHEN ");
	add_table_col(sql, spec, spec->order[0]);
	lk_buf_adds(sql, " IS NULL THEN -\"lk ord\" ELSE \"lk ord\" END FROM \"lk u\" LEFT JOIN ");
	lk_quote_tref(sql, spec->table);
	lk_buf_adds(sql, " ON ");
	for (int k = 0; k < spec->norder; k++) {
		lk_buf_adds(sql, k ? " AND " : "");
		add_table_col(sql, spec, spec->order[k]);
		lk_buf_addf(sql, " = \"lk u\".\"lk k%d\"", k);
	}
	if (spec->filter)
		lk_buf_addf(sql, " AND (%s\n)", spec->filter);
}

/* Appends the ordinal column of an ordinal fetch's current row, counted from start. */
static void add_ordinal(struct lk_rows *out, sqlite3_stmt *st, int col, int start)
{
	int64_t ord = sqlite3_column_int64(st, col);
	char buf[32];

	(void)snprintf(buf, sizeof(buf), "%lld", (long long)(ord < 0 ? ord - start : ord + start));
	set_str(out, out->nrows - 1, col, buf);
}

/* Binds rows [start, start + nrows) of keys, steps, and appends the results to out. */
static int fetch_chunk(struct lk_conn *c, sqlite3_stmt *st, const struct lk_scan_spec *spec,
		       const struct lk_rows *keys, int start, int nrows, struct lk_rows *out,
		       struct lk_err *err)
{
	int idx = 1, rc = SQLITE_OK;

	for (int r = start; r < start + nrows && rc == SQLITE_OK; r++) {
		const struct lk_value *key = LK_ROW(keys, r);

		for (int i = 0; i < spec->norder && rc == SQLITE_OK; i++)
			rc = lk_sqlite_bind(st, idx++, spec->types[spec->order[i]], &key[i],
					    SQLITE_STATIC);
	}
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		add_row(out, st, spec->types, spec->ncols, spec->match != NULL && !spec->ordinal);
		if (spec->ordinal)
			add_ordinal(out, st, spec->ncols, start);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		lk_sqlite_fail(c, rc, err, "fetch rows of %s by key", spec->table->name);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int prepare_fetch(struct lk_conn *c, const struct lk_scan_spec *spec, int nrows,
			 sqlite3_stmt **st, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	int rc;

	if (spec->ordinal)
		build_ordinal(&sql, spec, nrows);
	else
		build_fetch(&sql, spec, nrows);
	rc = sqlite3_prepare_v2(c->db, sql.buf, -1, st, NULL);
	lk_buf_release(&sql);
	if (rc != SQLITE_OK)
		return lk_sqlite_fail(c, rc, err, "fetch rows of %s by key", spec->table->name);
	return 0;
}

int lk_sqlite_fetch(struct lk_conn *c, const struct lk_scan_spec *spec, const struct lk_rows *keys,
		    struct lk_rows *out, struct lk_err *err)
{
	sqlite3_stmt *full = NULL, *part = NULL;
	int per, ret = 0;

	if (spec->norder < 1 || spec->ncols < 1 || keys->ncols < spec->norder)
		return lk_err_set(err, LK_ERR_INTERNAL, "fetch of %s with a bad key shape",
				  spec->table->name);
	if (shape_out(out, spec->ncols + (spec->match || spec->ordinal ? 1 : 0), err) < 0)
		return -1;
	per = MAX_VARIABLES / spec->norder;
	if (per > FETCH_MAX_KEYS)
		per = FETCH_MAX_KEYS;
	for (int start = 0; start < keys->nrows && ret == 0; start += per) {
		int n = keys->nrows - start < per ? keys->nrows - start : per;
		sqlite3_stmt **st = n == per ? &full : &part;

		/* Full chunks share one statement; only the last, short one needs its own. */
		if (!*st)
			ret = prepare_fetch(c, spec, n, st, err);
		if (ret == 0)
			ret = fetch_chunk(c, *st, spec, keys, start, n, out, err);
	}
	sqlite3_finalize(full);
	sqlite3_finalize(part);
	return ret;
}
