/*
 * sqlite_cdc_conflict.c - the conflict probes of sqlite_cdc_int.h: for each uniqueness
 * constraint of a captured table through which a REPLACE can delete a row with another
 * key, a statement logging the keys of the rows a new row conflicts with.
 */
#include "sqlite_cdc_int.h"
#include "sqlite_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The body's table is unqualified: a trigger writes to its own database (main). */
#define PROBE_INSERT "INSERT INTO lockstep_cdc_changelog (relid, key, op) SELECT %lld, "
#define MAX_TERMS 64 /* index terms lockstep reads from an index's SQL */

/* A piece of a text. */
struct span {
	const char *p;
	size_t len;
};

/* What the probes need to know about the table. */
struct table_info {
	char **cols; /* every column, generated ones included (pragma_table_xinfo) */
	int ncols;
	bool rowid;	   /* a rowid table */
	bool key_is_rowid; /* the key is its INTEGER PRIMARY KEY: a rowid conflict keeps it */
};

/* One term of a unique index (pragma_index_xinfo). */
struct ix_col {
	int cid; /* the column's rank, -2 for an expression */
	char *name, *coll;
};

/* ---- statements ---- */

static void finish_st(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Sets *st to the cached statement for sql with ?1 bound to a1. */
static int prepare(struct lk_conn *c, sqlite3_stmt **st, const char *sql, const char *a1,
		   struct lk_err *err)
{
	struct lk_sqlite_cached *e;
	int rc;

	if (lk_sqlite_cache_get(c, sql, &e, err) < 0)
		return -1;
	*st = e->stmt;
	rc = sqlite3_bind_text(*st, 1, a1, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		return 0;
	finish_st(*st);
	return lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
}

/* Ends a statement stepped until rc: 0 when it ran to its end, else -1 with err. */
static int end_st(struct lk_conn *c, sqlite3_stmt *st, int rc, struct lk_err *err)
{
	if (rc != SQLITE_DONE)
		lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
	finish_st(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static char *col_text(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);

	return lk_xstrdup(s ? s : "");
}

/* ---- the table ---- */

static void table_release(struct table_info *ti)
{
	for (int i = 0; i < ti->ncols; i++)
		free(ti->cols[i]);
	free(ti->cols);
}

/* Reads the table's columns and whether its key is its rowid. */
static int load_table(struct lk_conn *c, const struct lk_cdc_table *t, struct table_info *ti,
		      struct lk_err *err)
{
	char *pk = NULL;
	sqlite3_stmt *st;
	int rc, npk = 0;

	if (prepare(c, &st,
		    "SELECT wr FROM pragma_table_list WHERE schema = 'main'"
		    " AND name = ?1 COLLATE NOCASE",
		    t->table->name, err) < 0)
		return -1;
	rc = sqlite3_step(st);
	ti->rowid = rc == SQLITE_ROW && sqlite3_column_int(st, 0) == 0;
	if (end_st(c, st, rc == SQLITE_ROW ? SQLITE_DONE : rc, err) < 0 ||
	    prepare(c, &st,
		    "SELECT name, upper(type) = 'INTEGER', pk FROM"
		    " pragma_table_xinfo(?1, 'main') ORDER BY cid",
		    t->table->name, err) < 0)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ti->cols = lk_xrealloc(ti->cols, sizeof(*ti->cols) * (size_t)(ti->ncols + 1));
		ti->cols[ti->ncols] = col_text(st, 0);
		if (sqlite3_column_int(st, 2) > 0 && npk++ == 0 && sqlite3_column_int(st, 1))
			pk = ti->cols[ti->ncols];
		ti->ncols++;
	}
	ti->key_is_rowid =
		ti->rowid && npk == 1 && pk && t->nkey == 1 && strcasecmp(pk, t->key_cols[0]) == 0;
	return end_st(c, st, rc, err);
}

/* ---- an index's SQL ---- */

static bool is_word(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '$' || (unsigned char)ch >= 0x80;
}

/* The end of the token at s: a word, a quoted name or string, a comment, or one character. */
static const char *token_end(const char *s)
{
	char close = *s == '[' ? ']' : *s;
	const char *e;

	if (is_word(*s)) {
		while (is_word(*s))
			s++;
		return s;
	}
	if (s[0] == '-' && s[1] == '-') {
		e = strchr(s, '\n');
		return e ? e : s + strlen(s);
	}
	if (s[0] == '/' && s[1] == '*') {
		e = strstr(s + 2, "*/");
		return e ? e + 2 : s + strlen(s);
	}
	if (!strchr("'\"`[", *s) || !*s)
		return *s ? s + 1 : s;
	for (s++; *s; s++) {
		if (*s == close && close != ']' && s[1] == close)
			s++; /* a doubled quote */
		else if (*s == close)
			return s + 1;
	}
	return s;
}

static bool is_space_token(const char *s)
{
	return *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' ||
	       (s[0] == '-' && s[1] == '-') || (s[0] == '/' && s[1] == '*');
}

/* s without leading and trailing white space and comments (ASC / DESC dropped too). */
static struct span trim_term(const char *s, const char *end, bool drop_order)
{
	const char *last = NULL, *last_end = NULL, *first = NULL;

	for (const char *p = s; p < end; p = token_end(p)) {
		if (is_space_token(p))
			continue;
		if (!first)
			first = p;
		last = p;
		last_end = token_end(p);
	}
	if (!first)
		return (struct span){s, 0};
	if (drop_order && last > first &&
	    ((last_end - last == 3 && strncasecmp(last, "ASC", 3) == 0) ||
	     (last_end - last == 4 && strncasecmp(last, "DESC", 4) == 0)))
		return trim_term(first, last, false);
	return (struct span){first, (size_t)(last_end - first)};
}

/*
 * Splits `CREATE [UNIQUE] INDEX name ON table (term, ...) [WHERE expr]` into its terms and
 * its WHERE expression (where->p NULL when there is none). -1 when sql does not read so.
 */
static int parse_index_sql(const char *sql, struct span *terms, int *n, struct span *where)
{
	const char *s = sql, *start = NULL;
	int depth = 0;

	*n = 0;
	where->p = NULL;
	for (; *s && !(depth == 0 && start); s = token_end(s)) {
		if (*s == '(' && depth++ == 0)
			start = s + 1;
		else if ((*s == ',' && depth == 1) || (*s == ')' && --depth == 0)) {
			if (*n == MAX_TERMS)
				return -1;
			terms[(*n)++] = trim_term(start, s, true);
			start = s + 1;
		}
	}
	if (depth != 0 || *n == 0)
		return -1;
	while (*s && is_space_token(s))
		s = token_end(s);
	if (strncasecmp(s, "WHERE", 5) == 0 && !is_word(s[5])) {
		*where = trim_term(s + 5, s + strlen(s), false);
		if (where->len && where->p[where->len - 1] == ';')
			*where = trim_term(where->p, where->p + where->len - 1, false);
		return where->len ? 0 : -1;
	}
	return *s == '\0' || *s == ';' ? 0 : -1;
}

/* The column of table ti that token tok (a word or a quoted name) names, or -1. */
static int column_of(const struct table_info *ti, const char *tok, const char *end)
{
	struct lk_buf name = LK_BUF_INIT;
	int found = -1;

	if (strchr("\"`[", *tok)) {
		char q = *tok == '[' ? '\0' : *tok; /* [name] has no doubled quotes */

		for (const char *p = tok + 1; p < end - 1; p++) {
			lk_buf_addch(&name, *p);
			if (q && p[0] == q && p + 1 < end - 1 && p[1] == q)
				p++; /* a doubled quote */
		}
	} else if (is_word(*tok)) {
		lk_buf_add(&name, tok, (size_t)(end - tok));
	}
	for (int i = 0; name.len && i < ti->ncols && found < 0; i++) {
		if (strcasecmp(ti->cols[i], name.buf) == 0)
			found = i;
	}
	lk_buf_release(&name);
	return found;
}

/* ---- the probes ---- */

static void ix_cols_release(struct ix_col *cols, int n)
{
	for (int i = 0; i < n; i++) {
		free(cols[i].name);
		free(cols[i].coll);
	}
	free(cols);
}

/* Reads the key terms of index ix: its columns (or -2 for an expression) and collations. */
static int load_ix_cols(struct lk_conn *c, const char *ix, struct ix_col **cols, int *n,
			struct lk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	*cols = NULL;
	*n = 0;
	if (prepare(c, &st,
		    "SELECT cid, name, coll FROM pragma_index_xinfo(?1, 'main') WHERE key"
		    " ORDER BY seqno",
		    ix, err) < 0)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*cols = lk_xrealloc(*cols, sizeof(**cols) * (size_t)(*n + 1));
		(*cols)[*n] = (struct ix_col){sqlite3_column_int(st, 0), col_text(st, 1),
					      col_text(st, 2)};
		(*n)++;
	}
	return end_st(c, st, rc, err);
}

/* True when a conflict through these terms always keeps the key: the key's own index. */
static bool keeps_key(const struct lk_cdc_table *t, const struct ix_col *cols, int n, bool partial)
{
	if (partial || n != t->nkey)
		return false;
	for (int i = 0; i < n; i++) {
		bool is_key = false;

		for (int k = 0; k < t->nkey; k++)
			is_key = is_key || strcasecmp(cols[i].name, t->key_cols[k]) == 0;
		if (cols[i].cid < 0 || !is_key || strcasecmp(cols[i].coll, "BINARY") != 0)
			return false;
	}
	return true;
}

/*
 * Appends `, (SELECT (e1) AS "1", ... FROM (SELECT NEW."a" AS "a", ...)) AS n`: the index's
 * expressions evaluated on the new row. The subquery in FROM cannot see the outer table,
 * so an expression naming a column this did not list fails to compile (checked at install)
 * rather than silently reading the other row.
 */
static void add_new_values(struct lk_buf *b, const struct table_info *ti, const struct ix_col *cols,
			   const struct span *terms, int n)
{
	bool *used = lk_xcalloc((size_t)ti->ncols + 1, sizeof(*used));
	bool any = false;

	lk_buf_adds(b, ", (SELECT ");
	for (int i = 0, k = 0; i < n; i++) {
		if (cols[i].cid != -2)
			continue;
		lk_buf_addf(b, "%s(%.*s) AS \"%d\"", k++ ? ", " : "", (int)terms[i].len, terms[i].p,
			    i);
		for (const char *p = terms[i].p; p < terms[i].p + terms[i].len; p = token_end(p)) {
			int col = column_of(ti, p, token_end(p));

			if (col >= 0)
				used[col] = true;
		}
	}
	lk_buf_adds(b, " FROM (SELECT ");
	for (int i = 0; i < ti->ncols; i++) {
		if (!used[i])
			continue;
		lk_buf_adds(b, any ? ", NEW." : "NEW.");
		lk_quote_ident(b, ti->cols[i]);
		lk_buf_adds(b, " AS ");
		lk_quote_ident(b, ti->cols[i]);
		any = true;
	}
	lk_buf_adds(b, any ? ")) AS n" : "1)) AS n");
	free(used);
}

/* Appends the WHERE condition under which row o conflicts with NEW through the terms. */
static void add_conflict(struct lk_buf *b, const struct ix_col *cols, const struct span *terms,
			 int n, const struct span *where)
{
	for (int i = 0; i < n; i++) {
		lk_buf_adds(b, i ? " AND " : "");
		if (cols[i].cid == -2) {
			lk_buf_addf(b, "(%.*s) COLLATE ", (int)terms[i].len, terms[i].p);
			lk_quote_ident(b, cols[i].coll);
			lk_buf_addf(b, " = n.\"%d\"", i);
			continue;
		}
		lk_buf_adds(b, "o.");
		lk_quote_ident(b, cols[i].name);
		lk_buf_adds(b, " = NEW.");
		lk_quote_ident(b, cols[i].name);
		lk_buf_adds(b, " COLLATE ");
		lk_quote_ident(b, cols[i].coll);
	}
	if (where && where->p)
		lk_buf_addf(b, " AND (%.*s)", (int)where->len, where->p);
}

/* Appends the probes' shared part up to its WHERE: the keys of rows o (and n, the values). */
static void add_select(struct lk_buf *b, const struct lk_cdc_table *t, int64_t relid)
{
	lk_buf_addf(b, PROBE_INSERT, (long long)relid);
	lk_sqlite_cdc_key_expr(b, t, "o");
	lk_buf_adds(b, ", 'D' FROM ");
	lk_quote_ident(b, t->table->name);
	lk_buf_adds(b, " AS o");
}

/* An UPDATE's own row conflicts with nothing: excluded by rowid, else by its key. */
static void add_not_self(struct lk_buf *b, const struct lk_cdc_table *t,
			 const struct table_info *ti)
{
	if (ti->rowid) {
		lk_buf_adds(b, " AND o.rowid <> OLD.rowid");
		return;
	}
	lk_buf_adds(b, " AND NOT (");
	for (int k = 0; k < t->nkey; k++) {
		lk_buf_adds(b, k ? " AND o." : "o.");
		lk_quote_ident(b, t->key_cols[k]);
		lk_buf_adds(b, " IS OLD.");
		lk_quote_ident(b, t->key_cols[k]);
	}
	lk_buf_addch(b, ')');
}

/* Adds the INSERT and UPDATE probes for one conflict: `from` (after o) and `cond`. */
static void add_probes(struct lk_sqlite_probes *out, const struct lk_cdc_table *t,
		       const struct table_info *ti, int64_t relid, const char *from,
		       const char *cond)
{
	struct lk_buf b = LK_BUF_INIT;

	out->ins = lk_xrealloc(out->ins, sizeof(*out->ins) * (size_t)(out->n + 1));
	out->upd = lk_xrealloc(out->upd, sizeof(*out->upd) * (size_t)(out->n + 1));
	add_select(&b, t, relid);
	lk_buf_addf(&b, "%s WHERE %s", from, cond);
	out->ins[out->n] = lk_xstrdup(b.buf);
	add_not_self(&b, t, ti);
	out->upd[out->n] = lk_buf_detach(&b, NULL);
	out->n++;
}

/* Reads index ix's SQL into *sql (owned), or NULL when it has none (a constraint's). */
static int load_ix_sql(struct lk_conn *c, const char *ix, char **sql, struct lk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	*sql = NULL;
	if (prepare(c, &st, "SELECT sql FROM main.sqlite_master WHERE type = 'index' AND name = ?1",
		    ix, err) < 0)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		*sql = col_text(st, 0);
	return end_st(c, st, rc == SQLITE_ROW ? SQLITE_DONE : rc, err);
}

/*
 * The probe of unique index ix, added to out unless a conflict through it keeps the key.
 * Its SQL is read when it has expressions (needed) or a WHERE (kept so that the probe can
 * use the partial index; without it the probe only logs more keys).
 */
static int index_probe(struct lk_conn *c, const struct lk_cdc_table *t, const struct table_info *ti,
		       int64_t relid, const char *ix, bool partial, struct lk_sqlite_probes *out,
		       struct lk_err *err)
{
	struct lk_buf from = LK_BUF_INIT, cond = LK_BUF_INIT;
	struct span terms[MAX_TERMS] = {{NULL, 0}}, where = {NULL, 0};
	struct ix_col *cols;
	int n, nterms = 0, rc = -1;
	bool exprs = false;
	char *sql = NULL;

	if (load_ix_cols(c, ix, &cols, &n, err) < 0)
		goto out;
	for (int i = 0; i < n; i++)
		exprs = exprs || cols[i].cid == -2;
	if ((exprs || partial) && load_ix_sql(c, ix, &sql, err) < 0)
		goto out;
	if (sql && (parse_index_sql(sql, terms, &nterms, &where) < 0 || nterms != n)) {
		nterms = 0;
		where.p = NULL;
	}
	if (exprs && nterms == 0) {
		lk_err_set(err, LK_ERR_SCHEMA,
			   "change capture on '%s': cannot read the definition of its unique index"
			   " '%s' on an expression",
			   t->table->name, ix);
		goto out;
	}
	rc = 0;
	if (keeps_key(t, cols, n, partial))
		goto out;
	if (exprs)
		add_new_values(&from, ti, cols, terms, n);
	add_conflict(&cond, cols, terms, n, &where);
	add_probes(out, t, ti, relid, from.len ? from.buf : "", cond.buf);
out:
	ix_cols_release(cols, n);
	free(sql);
	lk_buf_release(&from);
	lk_buf_release(&cond);
	return rc;
}

/* The unique indexes of the table, by name (their names and partial flags, owned). */
static int load_indexes(struct lk_conn *c, const char *table, char ***names, bool **partial, int *n,
			struct lk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	*names = NULL;
	*partial = NULL;
	*n = 0;
	if (prepare(c, &st,
		    "SELECT name, partial FROM pragma_index_list(?1, 'main') WHERE \"unique\""
		    " ORDER BY name",
		    table, err) < 0)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*names = lk_xrealloc(*names, sizeof(**names) * (size_t)(*n + 1));
		*partial = lk_xrealloc(*partial, sizeof(**partial) * (size_t)(*n + 1));
		(*names)[*n] = col_text(st, 0);
		(*partial)[(*n)++] = sqlite3_column_int(st, 1) != 0;
	}
	return end_st(c, st, rc, err);
}

int lk_sqlite_cdc_probes(struct lk_conn *c, const struct lk_cdc_table *t, int64_t relid,
			 struct lk_sqlite_probes *out, struct lk_err *err)
{
	struct table_info ti = {0};
	char **names = NULL;
	bool *partial = NULL;
	int n = 0, rc = -1;

	memset(out, 0, sizeof(*out));
	if (load_table(c, t, &ti, err) < 0 ||
	    load_indexes(c, t->table->name, &names, &partial, &n, err) < 0)
		goto out;
	/* An explicit rowid (or INTEGER PRIMARY KEY) can replace a row with another key. */
	if (ti.rowid && !ti.key_is_rowid)
		add_probes(out, t, &ti, relid, "", "o.rowid = NEW.rowid");
	rc = 0;
	for (int i = 0; i < n && rc == 0; i++)
		rc = index_probe(c, t, &ti, relid, names[i], partial[i], out, err);
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(partial);
	table_release(&ti);
	if (rc < 0)
		lk_sqlite_cdc_probes_release(out);
	return rc;
}

void lk_sqlite_cdc_probes_release(struct lk_sqlite_probes *p)
{
	for (int i = 0; i < p->n; i++) {
		free(p->ins[i]);
		free(p->upd[i]);
	}
	free(p->ins);
	free(p->upd);
	memset(p, 0, sizeof(*p));
}
