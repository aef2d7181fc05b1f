/*
 * sqlite_write.c - SQLite writes: batch upserts and (soft) deletes through
 * cached statements, and the checks that refuse values SQLite cannot hold exactly.
 * The fenced sync position (DESIGN decision 5): sqlite_position.c.
 */
#include "connector.h"
#include "core/buf.h"
#include "sqlite_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const affinity_names[] = {
	[LK_AFF_BLOB] = "BLOB",	      [LK_AFF_TEXT] = "TEXT", [LK_AFF_NUMERIC] = "NUMERIC",
	[LK_AFF_INTEGER] = "INTEGER", [LK_AFF_REAL] = "REAL",
};

/* ---- messages ---- */

/* Appends one value for a message: NULL, \x-hex for bytes, text cut at 40 bytes. */
static void describe_value(struct lk_buf *b, enum lk_type t, const struct lk_value *v)
{
	size_t n = v->len > 40 ? 40 : v->len;

	if (v->null) {
		lk_buf_adds(b, "NULL");
		return;
	}
	if (t == LK_T_BYTES) {
		lk_buf_adds(b, "\\x");
		for (size_t i = 0; i < v->len && i < 16; i++)
			lk_buf_addf(b, "%02x", (unsigned char)v->p[i]);
		lk_buf_adds(b, v->len > 16 ? "..." : "");
		return;
	}
	lk_buf_add(b, v->p, n);
	lk_buf_adds(b, v->len > n ? "..." : "");
}

/*
 * The key value j of row r. A batch row holds either every written column
 * (rows->ncols == w->ncols) or only the key columns, in key order.
 */
static const struct lk_value *key_value(const struct lk_write_spec *w, const struct lk_rows *rows,
					int r, int j)
{
	const struct lk_value *row = LK_ROW(rows, r);

	return rows->ncols == w->ncols ? &row[w->key[j]] : &row[j];
}

/* Writes "k1=v1, k2=v2" for row r into out. */
static void describe_key(char *out, size_t size, const struct lk_write_spec *w,
			 const struct lk_rows *rows, int r)
{
	struct lk_buf b = LK_BUF_INIT;

	for (int j = 0; j < w->nkey; j++) {
		lk_buf_addf(&b, "%s%s=", j ? ", " : "", w->cols[w->key[j]]);
		describe_value(&b, w->types[w->key[j]], key_value(w, rows, r, j));
	}
	(void)snprintf(out, size, "%s", b.buf);
	lk_buf_release(&b);
}

/*
 * The SQLSTATE PostgreSQL gives for the same failure, so that a row SQLite rejects is
 * recognised (lk_err_is_row_level) and reported (dead letters) like one PostgreSQL
 * rejects. "" for failures that are not about the row.
 */
static const char *row_sqlstate(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_CHECK:
		return "23514";
	case SQLITE_CONSTRAINT_NOTNULL:
		return "23502";
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_ROWID:
		return "23505";
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return "23503";
	case SQLITE_CONSTRAINT_TRIGGER: /* RAISE(ABORT, ...) in a trigger */
		return "P0001";
#ifdef SQLITE_CONSTRAINT_DATATYPE /* SQLite 3.37: a STRICT table's type check */
	case SQLITE_CONSTRAINT_DATATYPE:
#endif
	case SQLITE_MISMATCH:
		return "22P02";
	case SQLITE_TOOBIG:
		return "22001";
	default:
		return (rc & 0xff) == SQLITE_CONSTRAINT ? "23000" : "";
	}
}

/* A failed step for row r: "row (k=v): <sqlite message>", transient when busy. */
static int row_fail(struct lk_conn *c, int rc, const struct lk_write_spec *w,
		    const struct lk_rows *rows, int r, struct lk_err *err)
{
	char key[200];

	describe_key(key, sizeof(key), w, rows, r);
	lk_err_set(err, LK_ERR_SQLITE, "row (%s): %s", key, sqlite3_errmsg(c->db));
	if (err) {
		err->transient = lk_sqlite_rc_is_transient(rc);
		(void)snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", row_sqlstate(rc));
	}
	return -1;
}

/* ---- value checks ---- */

/*
 * Writes the canonical form of a decimal ("[-]DIGITSeEXP", value = DIGITS x
 * 10^EXP, no leading or trailing zeros; zero is "0") and sets *exp10.
 * False when s is not a plain decimal number.
 */
static bool decimal_canon(const char *s, size_t len, struct lk_buf *out, long *exp10)
{
	const char *p = s, *end = s + len;
	struct lk_buf d = LK_BUF_INIT;
	bool neg = false, ok = true;
	long exp = 0;
	size_t lead = 0;

	if (p < end && (*p == '-' || *p == '+'))
		neg = *p++ == '-';
	for (; p < end && *p >= '0' && *p <= '9'; p++)
		lk_buf_addch(&d, *p);
	if (p < end && *p == '.') {
		for (p++; p < end && *p >= '0' && *p <= '9'; p++, exp--)
			lk_buf_addch(&d, *p);
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		int64_t e;

		ok = lk_sqlite_parse_int64(p + 1, (size_t)(end - p - 1), &e) && e > -100000000 &&
		     e < 100000000;
		exp += ok ? (long)e : 0;
		p = end;
	}
	ok = ok && p == end && d.len > 0;
	while (lead < d.len && d.buf[lead] == '0')
		lead++;
	while (d.len > lead && d.buf[d.len - 1] == '0') {
		lk_buf_setlen(&d, d.len - 1);
		exp++;
	}
	if (ok && lead == d.len)
		lk_buf_adds(out, "0");
	else if (ok)
		lk_buf_addf(out, "%s%se%ld", neg ? "-" : "", d.buf + lead, exp);
	*exp10 = lead == d.len ? 0 : exp;
	lk_buf_release(&d);
	return ok;
}

/* Binds an integral decimal as an int64 when it fits; false when it does not. */
static bool bind_integral(sqlite3_stmt *st, int idx, const char *canon, long exp10, int *rc)
{
	const char *e = strrchr(canon, 'e');
	size_t nd = e ? (size_t)(e - canon) : strlen(canon);
	char text[32];
	int64_t n;

	if (exp10 < 0 || nd + (size_t)exp10 > 20)
		return false;
	memcpy(text, canon, nd);
	memset(text + nd, '0', (size_t)exp10);
	text[nd + (size_t)exp10] = '\0'; /* strtoll reads up to the NUL */
	if (!lk_sqlite_parse_int64(text, nd + (size_t)exp10, &n))
		return false;
	*rc = sqlite3_bind_int64(st, idx, n);
	return true;
}

/*
 * A NUMERIC into a column whose affinity turns it into a number: stored only
 * when it survives as an int64 or round-trips through a double exactly.
 */
static int bind_numeric(sqlite3_stmt *st, int idx, enum lk_sqlite_affinity aff,
			const struct lk_value *v, char *why, size_t whysize)
{
	struct lk_buf want = LK_BUF_INIT, got = LK_BUF_INIT, back = LK_BUF_INIT;
	long exp10, unused;
	double d = 0;
	int rc = SQLITE_MISMATCH;

	if (strcmp(v->p, "Infinity") == 0 || strcmp(v->p, "-Infinity") == 0)
		return sqlite3_bind_double(st, idx, v->p[0] == '-' ? -INFINITY : INFINITY);
	if (strcmp(v->p, "NaN") == 0) {
		(void)snprintf(why, whysize, "NaN cannot be stored in SQLite");
		return SQLITE_MISMATCH;
	}
	if (!decimal_canon(v->p, v->len, &want, &exp10)) {
		(void)snprintf(why, whysize, "'%.40s' is not a decimal number", v->p);
		goto out;
	}
	if (aff != LK_AFF_REAL && bind_integral(st, idx, want.buf, exp10, &rc))
		goto out;
	if (lk_sqlite_parse_double(v->p, v->len, &d))
		lk_sqlite_format_double(&back, d, true);
	if (back.len && decimal_canon(back.buf, back.len, &got, &unused) &&
	    strcmp(want.buf, got.buf) == 0) {
		rc = sqlite3_bind_double(st, idx, d);
		goto out;
	}
	(void)snprintf(why, whysize, "%.60s%s cannot be stored exactly in a column of %s affinity",
		       v->p, v->len > 60 ? "..." : "", affinity_names[aff]);
out:
	lk_buf_release(&want);
	lk_buf_release(&got);
	lk_buf_release(&back);
	return rc;
}

/*
 * Binds a value being written. Returns SQLite's result code; SQLITE_MISMATCH
 * with `why` filled when the target cannot hold the value exactly.
 */
static int bind_write(sqlite3_stmt *st, int idx, enum lk_type t, enum lk_sqlite_affinity aff,
		      const struct lk_value *v, char *why, size_t whysize)
{
	int64_t n;
	double d;

	why[0] = '\0';
	if (v->null)
		return sqlite3_bind_null(st, idx);
	if (t == LK_T_FLOAT && lk_sqlite_parse_double(v->p, v->len, &d) && isnan(d)) {
		(void)snprintf(why, whysize, "NaN cannot be stored in SQLite");
		return SQLITE_MISMATCH;
	}
	if (t == LK_T_NUMERIC && aff != LK_AFF_TEXT && aff != LK_AFF_BLOB)
		return bind_numeric(st, idx, aff, v, why, whysize);
	if (t == LK_T_INT && aff == LK_AFF_REAL && lk_sqlite_parse_int64(v->p, v->len, &n)) {
		double dd = (double)n;

		if (dd >= 9223372036854775808.0 || (int64_t)dd != n) {
			(void)snprintf(why, whysize, "%s cannot be stored exactly in a REAL column",
				       v->p);
			return SQLITE_MISMATCH;
		}
	}
	return lk_sqlite_bind(st, idx, t, v, SQLITE_STATIC);
}

/* ---- upsert ---- */

static bool is_written(const struct lk_write_spec *w, const char *name)
{
	for (int i = 0; i < w->ncols; i++) {
		if (strcmp(w->cols[i], name) == 0)
			return true;
	}
	return false;
}

static bool is_key(const struct lk_write_spec *w, int col)
{
	for (int j = 0; j < w->nkey; j++) {
		if (w->key[j] == col)
			return true;
	}
	return false;
}

/* INSERT ... ON CONFLICT (keys) DO UPDATE SET c = excluded.c ... [, soft = NULL]. */
static void build_upsert(struct lk_buf *sql, const struct lk_write_spec *w)
{
	const char *soft = w->soft_column && !is_written(w, w->soft_column) ? w->soft_column : NULL;
	int nset = 0;

	lk_buf_adds(sql, "INSERT INTO ");
	lk_quote_tref(sql, w->table);
	lk_buf_adds(sql, " (");
	for (int i = 0; i < w->ncols; i++) {
		lk_buf_adds(sql, i ? ", " : "");
		lk_quote_ident(sql, w->cols[i]);
	}
	if (soft) {
		lk_buf_adds(sql, ", ");
		lk_quote_ident(sql, soft);
	}
	lk_buf_adds(sql, ") VALUES (");
	for (int i = 0; i < w->ncols; i++)
		lk_buf_adds(sql, i ? ", ?" : "?");
	lk_buf_adds(sql, soft ? ", NULL) ON CONFLICT (" : ") ON CONFLICT (");
	for (int j = 0; j < w->nkey; j++) {
		lk_buf_adds(sql, j ? ", " : "");
		lk_quote_ident(sql, w->cols[w->key[j]]);
	}
	lk_buf_adds(sql, ") DO ");
	for (int i = 0; i < w->ncols; i++) {
		if (is_key(w, i))
			continue;
		lk_buf_adds(sql, nset++ ? ", " : "UPDATE SET ");
		lk_quote_ident(sql, w->cols[i]);
		lk_buf_adds(sql, " = excluded.");
		lk_quote_ident(sql, w->cols[i]);
	}
	if (soft) {
		lk_buf_adds(sql, nset++ ? ", " : "UPDATE SET ");
		lk_quote_ident(sql, soft);
		lk_buf_adds(sql, " = NULL");
	}
	if (nset == 0)
		lk_buf_adds(sql, "NOTHING");
}

/* The cached upsert for w; a new entry learns the target columns' affinities once. */
static int upsert_stmt(struct lk_conn *c, const struct lk_write_spec *w,
		       struct lk_sqlite_cached **out, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_table tab;
	int rc;

	build_upsert(&sql, w);
	rc = lk_sqlite_cache_get(c, sql.buf, out, err);
	lk_buf_release(&sql);
	if (rc < 0) {
		lk_err_prefix(err, "upsert into %s", w->table->name);
		return -1;
	}
	if ((*out)->affinity)
		return 0;
	if (lk_sqlite_describe(c, w->table, &tab, err) < 0)
		return -1;
	(*out)->affinity = lk_xcalloc((size_t)w->ncols + 1, 1);
	for (int i = 0; i < w->ncols; i++) {
		int k = lk_table_col(&tab, w->cols[i]);

		(*out)->affinity[i] =
			(unsigned char)(k < 0 ? LK_AFF_BLOB
					      : lk_sqlite_affinity(tab.cols[k].native));
	}
	lk_table_release(&tab);
	return 0;
}

/*
 * A value SQLite cannot hold exactly (SQLSTATE 22003: a number out of its range). With the
 * connection's refusal hook the row is reported and skipped (returns 0), else -1.
 */
static int refuse_value(struct lk_conn *c, const struct lk_write_spec *w,
			const struct lk_rows *rows, int r, int col, const char *why,
			struct lk_err *err)
{
	struct lk_err e = LK_ERR_INIT;
	char key[200];

	describe_key(key, sizeof(key), w, rows, r);
	lk_err_set(&e, LK_ERR_VALUE, "row (%s): column '%s': %s", key, w->cols[col], why);
	(void)snprintf(e.sqlstate, sizeof(e.sqlstate), "22003");
	if (!c->refused) {
		if (err)
			*err = e;
		return -1;
	}
	c->refused(c->refused_arg, r, &e);
	return 0;
}

static int upsert_row(struct lk_conn *c, const struct lk_write_spec *w,
		      const struct lk_sqlite_cached *e, const struct lk_rows *rows, int r,
		      struct lk_err *err)
{
	const struct lk_value *row = LK_ROW(rows, r);
	char why[200];
	int rc = SQLITE_OK;

	for (int i = 0; i < w->ncols && rc == SQLITE_OK; i++) {
		rc = bind_write(e->stmt, i + 1, w->types[i],
				(enum lk_sqlite_affinity)e->affinity[i], &row[i], why, sizeof(why));
		if (rc != SQLITE_OK && why[0]) {
			sqlite3_reset(e->stmt);
			return refuse_value(c, w, rows, r, i, why, err);
		}
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_step(e->stmt);
	if (rc != SQLITE_DONE && rc != SQLITE_OK)
		row_fail(c, rc, w, rows, r, err);
	sqlite3_reset(e->stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

int lk_sqlite_upsert(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_rows *rows,
		     bool plain, struct lk_err *err)
{
	struct lk_sqlite_cached *e;
	int ret = 0;

	(void)plain; /* an INSERT with ON CONFLICT costs nothing extra on an empty table */
	if (rows->nrows == 0)
		return 0;
	if (rows->ncols < w->ncols || w->nkey < 1)
		return lk_err_set(err, LK_ERR_INTERNAL, "upsert into %s: bad batch shape",
				  w->table->name);
	if (upsert_stmt(c, w, &e, err) < 0)
		return -1;
	for (int r = 0; r < rows->nrows && ret == 0; r++)
		ret = upsert_row(c, w, e, rows, r, err);
	sqlite3_clear_bindings(e->stmt); /* the batch's memory goes away after we return */
	return ret;
}

/* ---- delete ---- */

/* Now, in UTC, as PostgreSQL prints a timestamptz: "YYYY-MM-DD HH:MM:SS.ffffff+00". */
static void now_text(char *out, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	(void)gmtime_r(&ts.tv_sec, &tm);
	(void)strftime(base, sizeof(base), "%Y-%m-%d %H:%M:%S", &tm);
	(void)snprintf(out, size, "%s.%06ld+00", base, ts.tv_nsec / 1000);
}

/* DELETE FROM t WHERE k1 = ? AND ..., or UPDATE t SET soft = ? WHERE ... AND soft IS NULL. */
static void build_delete(struct lk_buf *sql, const struct lk_write_spec *w)
{
	if (w->soft_column) {
		lk_buf_adds(sql, "UPDATE ");
		lk_quote_tref(sql, w->table);
		lk_buf_adds(sql, " SET ");
		lk_quote_ident(sql, w->soft_column);
		lk_buf_adds(sql, " = ? WHERE ");
	} else {
		lk_buf_adds(sql, "DELETE FROM ");
		lk_quote_tref(sql, w->table);
		lk_buf_adds(sql, " WHERE ");
	}
	for (int j = 0; j < w->nkey; j++) {
		lk_buf_adds(sql, j ? " AND " : "");
		lk_quote_ident(sql, w->cols[w->key[j]]);
		lk_buf_adds(sql, " = ?");
	}
	if (w->soft_column) {
		lk_buf_adds(sql, " AND ");
		lk_quote_ident(sql, w->soft_column);
		lk_buf_adds(sql, " IS NULL");
	}
}

static int delete_row(struct lk_conn *c, const struct lk_write_spec *w, sqlite3_stmt *st,
		      const struct lk_rows *rows, int r, const char *now, struct lk_err *err)
{
	int idx = 1, rc = SQLITE_OK;

	if (now)
		rc = sqlite3_bind_text(st, idx++, now, -1, SQLITE_STATIC);
	for (int j = 0; j < w->nkey && rc == SQLITE_OK; j++)
		rc = lk_sqlite_bind(st, idx++, w->types[w->key[j]], key_value(w, rows, r, j),
				    SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_OK)
		row_fail(c, rc, w, rows, r, err);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int lk_sqlite_delete_keys(struct lk_conn *c, const struct lk_write_spec *w,
			  const struct lk_rows *rows, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_sqlite_cached *e;
	char now[48];
	int ret;

	if (rows->nrows == 0)
		return 0;
	if (w->nkey < 1 || (rows->ncols != w->ncols && rows->ncols != w->nkey))
		return lk_err_set(err, LK_ERR_INTERNAL, "delete from %s: bad batch shape",
				  w->table->name);
	now_text(now, sizeof(now));
	build_delete(&sql, w);
	ret = lk_sqlite_cache_get(c, sql.buf, &e, err);
	lk_buf_release(&sql);
	if (ret < 0)
		return lk_err_prefix(err, "delete from %s", w->table->name);
	for (int r = 0; r < rows->nrows && ret == 0; r++)
		ret = delete_row(c, w, e->stmt, rows, r, w->soft_column ? now : NULL, err);
	sqlite3_clear_bindings(e->stmt);
	return ret;
}
