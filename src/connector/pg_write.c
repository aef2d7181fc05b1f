/*
 * pg_write.c - batch writes into PostgreSQL: COPY into a per-table temporary
 * stage plus one INSERT ... ON CONFLICT merge (or COPY straight into an empty
 * target) and deletes by key list. The fenced position row: pg_position.c.
 */
#include "core/failpoint.h"
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends one value in COPY text format; refuses what PostgreSQL cannot hold. */
static int copy_value(struct lk_buf *b, enum lk_type t, const struct lk_value *v)
{
	if (v->null) {
		lk_buf_add(b, "\\N", 2);
		return 0;
	}
	if (t == LK_T_BYTES) {
		lk_buf_add(b, "\\\\x", 3); /* COPY text escapes the backslash of \x */
		lk_buf_add_hex(b, v->p, v->len);
		return 0;
	}
	for (size_t i = 0, run = 0; i <= v->len; i++) {
		char ch = i < v->len ? v->p[i] : '\n';
		const char *esc;

		switch (ch) {
		case '\\':
			esc = "\\\\";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		case '\0':
			return -1;
		default:
			continue;
		}
		/* Copy the plain run before the special byte in one go, then its escape. */
		lk_buf_add(b, v->p + run, i - run);
		if (i < v->len)
			lk_buf_add(b, esc, 2);
		run = i + 1;
	}
	return 0;
}

static int copy_end(struct lk_conn *c, const char *errmsg, struct lk_err *err)
{
	PGresult *res;
	int rc = 0;

	if (PQputCopyEnd(c->pg, errmsg) != 1)
		return lk_pg_err(err, c, NULL, "end COPY");
	while ((res = PQgetResult(c->pg)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0)
			rc = lk_pg_err(err, c, res, "COPY into target");
		PQclear(res);
	}
	return rc;
}

/* A refusal: text with a NUL byte (SQLSTATE 22021, as PostgreSQL would reject it). */
static void refuse_nul(struct lk_err *err, const struct lk_write_spec *w,
		       const struct lk_value *row, int col)
{
	char key[160];

	lk_key_describe(key, sizeof(key), w->cols, w->key, w->nkey, row);
	lk_err_set(err, LK_ERR_VALUE,
		   "row %s: column '%s': text with a NUL byte cannot be stored in PostgreSQL", key,
		   w->cols[col]);
	if (err)
		(void)snprintf(err->sqlstate, sizeof(err->sqlstate), "22021");
}

/*
 * Appends row r in COPY text format. A value PostgreSQL cannot hold: with the connection's
 * refusal hook, the row is left out and reported (returns 0, *skipped set); without, -1.
 */
static int copy_row(struct lk_conn *c, struct lk_buf *data, const struct lk_write_spec *w,
		    const struct lk_rows *rows, int r, bool *skipped, struct lk_err *err)
{
	const struct lk_value *row = LK_ROW(rows, r);
	size_t start = data->len;

	*skipped = false;
	for (int i = 0; i < w->ncols; i++) {
		struct lk_err why = LK_ERR_INIT;

		if (i)
			lk_buf_addch(data, '\t');
		if (copy_value(data, w->types[i], &row[i]) == 0)
			continue;
		refuse_nul(&why, w, row, i);
		if (!c->refused) {
			*err = why;
			return -1;
		}
		lk_buf_setlen(data, start);
		c->refused(c->refused_arg, r, &why);
		*skipped = true;
		return 0;
	}
	lk_buf_addch(data, '\n');
	return 0;
}

/* Streams rows into `into` (a quoted table with column list) with COPY FROM STDIN. */
static int copy_rows(struct lk_conn *c, const char *into, const struct lk_write_spec *w,
		     const struct lk_rows *rows, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT, data = LK_BUF_INIT;
	struct lk_err scratch = LK_ERR_INIT;
	PGresult *res;
	int rc = -1;

	lk_buf_addf(&sql, "COPY %s FROM STDIN", into);
	res = PQexec(lk_pg_q(c), sql.buf);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		lk_pg_err(err, c, res, "start COPY");
		PQclear(res);
		goto out;
	}
	PQclear(res);
	for (int r = 0; r < rows->nrows; r++) {
		bool skipped;

		if (copy_row(c, &data, w, rows, r, &skipped, err ? err : &scratch) < 0) {
			(void)copy_end(c, "value refused", NULL);
			goto out;
		}
		if (data.len >= (size_t)256 * 1024 || r == rows->nrows / 2) {
			if (PQputCopyData(c->pg, data.buf, (int)data.len) != 1) {
				lk_pg_err(err, c, NULL, "send COPY data");
				goto out;
			}
			lk_buf_reset(&data);
			if (r == rows->nrows / 2)
				lk_failpoint("mid_copy");
		}
	}
	if (data.len && PQputCopyData(c->pg, data.buf, (int)data.len) != 1) {
		lk_pg_err(err, c, NULL, "send COPY data");
		goto out;
	}
	rc = copy_end(c, NULL, err);
out:
	lk_buf_release(&sql);
	lk_buf_release(&data);
	return rc;
}

static void add_cols(struct lk_buf *b, const char *prefix, const char *const *cols, int n)
{
	for (int i = 0; i < n; i++) {
		lk_buf_adds(b, i ? ", " : "");
		lk_buf_adds(b, prefix);
		lk_quote_ident(b, cols[i]);
	}
}

static bool is_key(const struct lk_write_spec *w, int col)
{
	for (int k = 0; k < w->nkey; k++) {
		if (w->key[k] == col)
			return true;
	}
	return false;
}

/* Finds or creates the stage for this table and column list. */
static struct pg_stage *stage_for(struct lk_conn *c, const struct lk_write_spec *w,
				  struct lk_err *err)
{
	struct lk_buf key = LK_BUF_INIT, sql = LK_BUF_INIT;
	struct pg_stage *st = NULL;

	lk_quote_tref_for(&key, w->table, LK_DB_POSTGRES);
	lk_buf_addch(&key, '(');
	add_cols(&key, "", w->cols, w->ncols);
	lk_buf_addch(&key, ')');
	for (int i = 0; i < c->nstages; i++) {
		if (strcmp(c->stages[i].key, key.buf) == 0) {
			lk_buf_release(&key);
			return &c->stages[i];
		}
	}
	if (c->nstages == LK_PG_MAX_STAGES)
		lk_pg_stages_reset(c, true); /* temp tables stay; names are never reused */
	st = &c->stages[c->nstages];
	(void)snprintf(st->name, sizeof(st->name), "lk_stage_%d", ++c->seq);
	lk_buf_addf(&sql, "CREATE TEMP TABLE %s ON COMMIT DELETE ROWS AS SELECT ", st->name);
	add_cols(&sql, "", w->cols, w->ncols);
	lk_buf_adds(&sql, " FROM ");
	lk_quote_tref_for(&sql, w->table, LK_DB_POSTGRES);
	lk_buf_adds(&sql, " WITH NO DATA");
	if (lk_pg_cmd(c, sql.buf, 0, NULL, NULL, err) < 0) {
		lk_buf_release(&key);
		st = NULL;
	} else {
		st->key = lk_buf_detach(&key, NULL);
		st->dirty = false;
		c->nstages++;
	}
	lk_buf_release(&sql);
	return st;
}

/* Appends a column for the no-op check: cast to text where the type may lack "=" (json,
 * xml, geometric and other types lockstep passes through as text). */
/*
 * A column of the no-op check, compared as its text: a type's own equality can call two
 * different values equal (numeric 2 and 2.000, citext 'abc' and 'ABC', float 0 and -0, text
 * under a nondeterministic collation), and an update skipped for that would leave the
 * target different from the source. Both sides are printed in this session, whose
 * settings lockstep pins, so equal text means the same value.
 */
static void add_cmp_col(struct lk_buf *sql, const char *prefix, const struct lk_write_spec *w,
			int i)
{
	lk_buf_adds(sql, "(");
	lk_buf_adds(sql, prefix);
	lk_quote_ident(sql, w->cols[i]);
	lk_buf_adds(sql, ")::text");
}

static void build_merge(struct lk_buf *sql, const struct lk_write_spec *w, const char *stage)
{
	int nset = 0;

	lk_buf_adds(sql, "INSERT INTO ");
	lk_quote_tref_for(sql, w->table, LK_DB_POSTGRES);
	lk_buf_adds(sql, " AS t (");
	add_cols(sql, "", w->cols, w->ncols);
	/* A column the user made GENERATED ALWAYS AS IDENTITY takes the source's values too
	 * (COPY does so by itself); without an identity column this changes nothing. */
	lk_buf_adds(sql, ") OVERRIDING SYSTEM VALUE SELECT ");
	add_cols(sql, "", w->cols, w->ncols);
	lk_buf_addf(sql, " FROM %s ON CONFLICT (", stage);
	for (int k = 0; k < w->nkey; k++) {
		lk_buf_adds(sql, k ? ", " : "");
		lk_quote_ident(sql, w->cols[w->key[k]]);
	}
	lk_buf_adds(sql, ") DO UPDATE SET ");
	for (int i = 0; i < w->ncols; i++) {
		if (is_key(w, i))
			continue;
		lk_buf_adds(sql, nset++ ? ", " : "");
		lk_quote_ident(sql, w->cols[i]);
		lk_buf_adds(sql, " = EXCLUDED.");
		lk_quote_ident(sql, w->cols[i]);
	}
	if (w->soft_column) {
		lk_buf_adds(sql, nset++ ? ", " : "");
		lk_quote_ident(sql, w->soft_column);
		lk_buf_adds(sql, " = NULL");
	}
	if (nset == 0) {
		/* Every column is a key: nothing to update. */
		lk_buf_setlen(sql, sql->len - strlen(" DO UPDATE SET "));
		lk_buf_adds(sql, " DO NOTHING");
		return;
	}
	/* Skip rows that would not change: re-reads (lookback, replays) cost no writes. */
	lk_buf_adds(sql, " WHERE (");
	for (int i = 0, n = 0; i < w->ncols; i++) {
		if (is_key(w, i))
			continue;
		lk_buf_adds(sql, n++ ? ", " : "");
		add_cmp_col(sql, "t.", w, i);
	}
	if (w->soft_column) {
		lk_buf_adds(sql, ", t.");
		lk_quote_ident(sql, w->soft_column);
	}
	lk_buf_adds(sql, ") IS DISTINCT FROM (");
	for (int i = 0, n = 0; i < w->ncols; i++) {
		if (is_key(w, i))
			continue;
		lk_buf_adds(sql, n++ ? ", " : "");
		add_cmp_col(sql, "EXCLUDED.", w, i);
	}
	if (w->soft_column)
		lk_buf_adds(sql, ", NULL");
	lk_buf_adds(sql, ")");
}

/* Streams a binary batch into `into` (a quoted table with column list). */
static int copy_binary(struct lk_conn *c, const char *into, const struct lk_copy_batch *b,
		       struct lk_err *err)
{
	static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0";
	static const char trailer[2] = "\377\377";
	struct lk_buf sql = LK_BUF_INIT;
	size_t half = b->len / 2;
	PGresult *res;
	int rc = -1;

	lk_buf_addf(&sql, "COPY %s FROM STDIN (FORMAT binary)", into);
	res = PQexec(lk_pg_q(c), sql.buf);
	lk_buf_release(&sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		lk_pg_err(err, c, res, "start COPY");
		PQclear(res);
		return -1;
	}
	PQclear(res);
	/* Two halves, so that the mid_copy crash point falls inside the COPY. */
	if (PQputCopyData(c->pg, header, (int)sizeof(header)) != 1 ||
	    PQputCopyData(c->pg, b->data, (int)half) != 1) {
		lk_pg_err(err, c, NULL, "send COPY data");
		return -1;
	}
	lk_failpoint("mid_copy");
	if (PQputCopyData(c->pg, b->data + half, (int)(b->len - half)) != 1 ||
	    PQputCopyData(c->pg, trailer, (int)sizeof(trailer)) != 1) {
		lk_pg_err(err, c, NULL, "send COPY data");
		return -1;
	}
	rc = copy_end(c, NULL, err);
	return rc;
}

/* The rows of a batch: interchange text (rows) or binary COPY tuples (copy). */
struct upsert_src {
	const struct lk_rows *rows;
	const struct lk_copy_batch *copy;
};

static int copy_src(struct lk_conn *c, const char *into, const struct lk_write_spec *w,
		    const struct upsert_src *src, struct lk_err *err)
{
	return src->copy ? copy_binary(c, into, src->copy, err)
			 : copy_rows(c, into, w, src->rows, err);
}

static int upsert(struct lk_conn *c, const struct lk_write_spec *w, const struct upsert_src *src,
		  bool plain, struct lk_err *err)
{
	struct lk_buf into = LK_BUF_INIT, sql = LK_BUF_INIT;
	struct pg_stage *st;
	int rc = -1;

	if (!c->in_txn) /* the stage is ON COMMIT DELETE ROWS: autocommit would lose the rows */
		return lk_err_set(err, LK_ERR_INTERNAL, "upsert outside a transaction");
	if (plain) {
		lk_quote_tref_for(&into, w->table, LK_DB_POSTGRES);
		lk_buf_adds(&into, " (");
		add_cols(&into, "", w->cols, w->ncols);
		lk_buf_adds(&into, ")");
		rc = copy_src(c, into.buf, w, src, err);
		goto out;
	}
	st = stage_for(c, w, err);
	if (!st)
		goto out;
	if (st->dirty) {
		lk_buf_addf(&sql, "TRUNCATE %s", st->name);
		if (lk_pg_cmd(c, sql.buf, 0, NULL, NULL, err) < 0)
			goto out;
		lk_buf_reset(&sql);
	}
	if (copy_src(c, st->name, w, src, err) < 0)
		goto out;
	st->dirty = true;
	build_merge(&sql, w, st->name);
	rc = lk_pg_cmd(c, sql.buf, 0, NULL, NULL, err);
out:
	lk_buf_release(&into);
	lk_buf_release(&sql);
	return rc;
}

int lk_pg_upsert(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_rows *rows,
		 bool plain, struct lk_err *err)
{
	if (rows->nrows == 0)
		return 0;
	return upsert(c, w, &(struct upsert_src){.rows = rows}, plain, err);
}

int lk_pg_upsert_copy(struct lk_conn *c, const struct lk_write_spec *w,
		      const struct lk_copy_batch *b, bool plain, struct lk_err *err)
{
	if (b->nrows == 0)
		return 0;
	return upsert(c, w, &(struct upsert_src){.copy = b}, plain, err);
}

/* "DELETE FROM t WHERE " or the soft delete's "UPDATE t SET col = now() WHERE col IS NULL AND ". */
static void delete_head(struct lk_buf *sql, const struct lk_write_spec *w)
{
	if (w->soft_column) {
		lk_buf_adds(sql, "UPDATE ");
		lk_quote_tref_for(sql, w->table, LK_DB_POSTGRES);
		lk_buf_adds(sql, " SET ");
		lk_quote_ident(sql, w->soft_column);
		lk_buf_adds(sql, " = now() WHERE ");
		lk_quote_ident(sql, w->soft_column);
		lk_buf_adds(sql, " IS NULL AND ");
	} else {
		lk_buf_adds(sql, "DELETE FROM ");
		lk_quote_tref_for(sql, w->table, LK_DB_POSTGRES);
		lk_buf_adds(sql, " WHERE ");
	}
}

/*
 * A key holding text with a NUL byte names no PostgreSQL row, and as a parameter it would
 * be cut at the NUL (and could match another row): refused like an upsert's value.
 * Returns 1 to skip the row (hooked), -1 to fail, 0 when the key is fine.
 */
static int check_key(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_value *row,
		     int r, struct lk_err *err)
{
	for (int k = 0; k < w->nkey; k++) {
		const struct lk_value *v = &row[w->key[k]];
		struct lk_err why = LK_ERR_INIT;

		if (v->null || w->types[w->key[k]] == LK_T_BYTES || !memchr(v->p, '\0', v->len))
			continue;
		refuse_nul(&why, w, row, w->key[k]);
		if (!c->refused) {
			if (err)
				*err = why;
			return -1;
		}
		c->refused(c->refused_arg, r, &why);
		return 1;
	}
	return 0;
}

/* Deletes the keys of rows start..start+nrows-1 in one statement. */
static int delete_chunk(struct lk_conn *c, const struct lk_write_spec *w,
			const struct lk_rows *rows, int start, int nrows, struct lk_err *err)
{
	const char **params = lk_xcalloc((size_t)nrows * (size_t)w->nkey, sizeof(char *));
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_arena scratch;
	int n = 0, nok = 0, rc = 0;

	lk_arena_init(&scratch, 16384);
	for (int r = 0; r < nrows && rc == 0; r++) {
		const struct lk_value *row = LK_ROW(rows, start + r);
		int bad = check_key(c, w, row, start + r, err);

		if (bad)
			rc = bad < 0 ? -1 : 0;
		for (int k = 0; !bad && k < w->nkey; k++)
			params[n++] = lk_pg_param(&scratch, w->types[w->key[k]], &row[w->key[k]]);
		nok += !bad;
	}
	if (rc == 0 && nok > 0) {
		delete_head(&sql, w);
		lk_pg_key_in(&sql, w->cols, w->key, w->nkey, nok, 1);
		rc = lk_pg_cmd(c, sql.buf, n, params, NULL, err);
	}
	lk_buf_release(&sql);
	lk_arena_release(&scratch);
	free(params);
	return rc;
}

int lk_pg_delete_keys(struct lk_conn *c, const struct lk_write_spec *w, const struct lk_rows *rows,
		      struct lk_err *err)
{
	int per = 30000 / (w->nkey ? w->nkey : 1);

	if (per > 1000)
		per = 1000;
	for (int start = 0; start < rows->nrows; start += per) {
		int nrows = rows->nrows - start < per ? rows->nrows - start : per;

		if (delete_chunk(c, w, rows, start, nrows, err) < 0)
			return -1;
	}
	return 0;
}
