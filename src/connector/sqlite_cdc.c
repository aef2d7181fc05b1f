/*
 * sqlite_cdc.c - change capture on a SQLite source (cdc.h, DESIGN decisions 1-4, 13,
 * 14): tables main.lockstep_cdc_{meta,tables,changelog,consumers}, three row triggers
 * per captured table (and two conflict triggers, sqlite_cdc_conflict.c), capture health
 * and lineage checks, and wake-ups by polling PRAGMA data_version.
 */
#include "cdc.h"
#include "core/buf.h"
#include "core/units.h"
#include "sqlite_cdc_int.h"
#include "sqlite_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Everything lives in `main`, always qualified so a TEMP table of the same name
 * cannot shadow it. Triggers can only write to their own database, and most ops
 * know just a relid, so tables of attached databases are refused at install.
 */
#define CDC "main.lockstep_cdc_"
#define CDC_SCHEMA "main"
/* 2: the conflict triggers, tables.capture_version, gap entries, at_ms read as xid. */
#define CDC_VERSION 2
#define POLL_MS 20

static const char create_sql[] =
	"CREATE TABLE IF NOT EXISTS " CDC "meta (version INTEGER NOT NULL);"
	/* NOCASE: SQLite resolves table names case-insensitively, so must the registry. */
	/* capture_version: the CDC_VERSION whose triggers the table has (NULL: 1). */
	"CREATE TABLE IF NOT EXISTS " CDC "tables (relid INTEGER PRIMARY KEY AUTOINCREMENT,"
	" schema_name TEXT, table_name TEXT NOT NULL COLLATE NOCASE, key_cols TEXT NOT NULL,"
	" installed_ms INTEGER, capture_version INTEGER, UNIQUE (schema_name, table_name));"
	/* AUTOINCREMENT: a seq is never handed out twice, even after pruning. */
	"CREATE TABLE IF NOT EXISTS " CDC "changelog (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" xid INTEGER NOT NULL DEFAULT 0, relid INTEGER NOT NULL, key TEXT, op TEXT NOT NULL,"
	" at_ms INTEGER NOT NULL"
	" DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)));"
	"CREATE INDEX IF NOT EXISTS " CDC "changelog_relid ON lockstep_cdc_changelog (relid, seq);"
	"CREATE TABLE IF NOT EXISTS " CDC "consumers (job TEXT PRIMARY KEY,"
	" relid INTEGER NOT NULL, horizon INTEGER NOT NULL DEFAULT 0,"
	" xid INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0,"
	" registered_ms INTEGER, updated_ms INTEGER);";

/* ---- statements ---- */

static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/*
 * Sets *st to the connection's cached statement for sql with ?1..?n bound from the
 * arguments, one per letter of fmt: 't' a const char * (NULL binds SQL NULL), 'i'
 * an int64_t. The caller ends with done(*st).
 */
static int vprep(struct lk_conn *c, sqlite3_stmt **st, struct lk_err *err, const char *sql,
		 const char *fmt, va_list ap)
{
	struct lk_sqlite_cached *e;
	int rc = SQLITE_OK;

	if (lk_sqlite_cache_get(c, sql, &e, err) < 0)
		return -1;
	*st = e->stmt;
	for (int i = 0; fmt[i] && rc == SQLITE_OK; i++) {
		if (fmt[i] == 't')
			rc = sqlite3_bind_text(*st, i + 1, va_arg(ap, const char *), -1,
					       SQLITE_STATIC);
		else
			rc = sqlite3_bind_int64(*st, i + 1, va_arg(ap, int64_t));
	}
	if (rc == SQLITE_OK)
		return 0;
	done(*st);
	return lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
}

static int prep(struct lk_conn *c, sqlite3_stmt **st, struct lk_err *err, const char *sql,
		const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vprep(c, st, err, sql, fmt, ap);
	va_end(ap);
	return rc;
}

/*
 * Runs a query and reads the first n columns of its first row into out as integers;
 * a NULL reads as -1 (no value read here is ever negative). *found (if not NULL) tells
 * whether there was a row; without one, out is all -1.
 */
static int get_ints(struct lk_conn *c, int n, int64_t *out, bool *found, struct lk_err *err,
		    const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vprep(c, &st, err, sql, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	rc = sqlite3_step(st);
	for (int i = 0; i < n; i++)
		out[i] = rc == SQLITE_ROW && sqlite3_column_type(st, i) != SQLITE_NULL
				 ? sqlite3_column_int64(st, i)
				 : -1;
	if (found)
		*found = rc == SQLITE_ROW;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
	done(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Runs a statement that returns no rows; *changes (if not NULL) gets the rows it changed. */
static int put(struct lk_conn *c, int64_t *changes, struct lk_err *err, const char *sql,
	       const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vprep(c, &st, err, sql, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
	else if (changes)
		*changes = sqlite3_changes64(c->db);
	done(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Runs SQL text without parameters or results (DDL, transaction control). */
static int run(struct lk_conn *c, const char *sql, struct lk_err *err)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
	return 0;
}

/* Ends a transaction begun here: commits when rc is 0, else (or when COMMIT fails) rolls back. */
static int finish(struct lk_conn *c, int rc, struct lk_err *err)
{
	if (rc == 0)
		rc = run(c, "COMMIT", err);
	if (rc < 0 && !sqlite3_get_autocommit(c->db))
		(void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* ---- registry ---- */

/* Sets *n to how many of the four lockstep_cdc_ tables exist (install makes all four at once). */
static int count_tables(struct lk_conn *c, int64_t *n, struct lk_err *err)
{
	return get_ints(c, 1, n, NULL, err,
			"SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name IN"
			" ('lockstep_cdc_meta', 'lockstep_cdc_tables', 'lockstep_cdc_changelog',"
			" 'lockstep_cdc_consumers')",
			"");
}

/*
 * Refuses objects a newer lockstep made: this one does not know their layout. Upgrades
 * version 1 in place: its tables keep capture_version NULL, and their conflict triggers
 * are added by the next install of each (an upgrade, not a gap).
 */
static int check_version(struct lk_conn *c, struct lk_err *err)
{
	int64_t v;

	if (get_ints(c, 1, &v, NULL, err, "SELECT max(version) FROM " CDC "meta", "") < 0)
		return -1;
	if (v > CDC_VERSION)
		return lk_err_set(
			err, LK_ERR_CONFLICT,
			"change capture on %s was installed by a newer lockstep (version %lld)",
			c->label, (long long)v);
	if (v < 0)
		return put(c, NULL, err, "INSERT INTO " CDC "meta (version) VALUES (?1)", "i",
			   (int64_t)CDC_VERSION);
	if (v == 1 &&
	    run(c, "ALTER TABLE " CDC "tables ADD COLUMN capture_version INTEGER", err) < 0)
		return -1;
	if (v < CDC_VERSION)
		return put(c, NULL, err, "UPDATE " CDC "meta SET version = ?1", "i",
			   (int64_t)CDC_VERSION);
	return 0;
}

/* The relid of table `name` in the registry; *found false when it is not captured. */
static int lookup_relid(struct lk_conn *c, const char *schema, const char *name, int64_t *relid,
			bool *found, struct lk_err *err)
{
	return get_ints(c, 1, relid, found, err,
			"SELECT relid FROM " CDC "tables"
			" WHERE schema_name = ?1 AND table_name = ?2",
			"tt", schema, name);
}

/* ---- install ---- */

/* The table's schema as the registry spells it: "main" however the config wrote it. */
static const char *schema_of(const struct lk_tref *t)
{
	return !t->schema || strcasecmp(t->schema, CDC_SCHEMA) == 0 ? CDC_SCHEMA : t->schema;
}

/* Appends the key columns as a JSON array of names: the registry's key_cols. */
static void add_key_names(struct lk_buf *b, const struct lk_cdc_table *t)
{
	lk_buf_addch(b, '[');
	for (int i = 0; i < t->nkey; i++) {
		lk_buf_adds(b, i ? "," : "");
		lk_buf_add_json_str(b, t->key_cols[i], strlen(t->key_cols[i]));
	}
	lk_buf_addch(b, ']');
}

/*
 * Checks that the table exists and has every key column. A trigger naming a missing
 * column is accepted by CREATE TRIGGER and would then fail every write to the table.
 */
static int check_table(struct lk_conn *c, const struct lk_cdc_table *t, struct lk_err *err)
{
	char name[256];
	int64_t n;
	bool found;

	lk_tref_format(t->table, name, sizeof(name));
	if (get_ints(c, 1, &n, &found, err,
		     "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1"
		     " COLLATE NOCASE",
		     "t", t->table->name) < 0)
		return -1;
	if (!found)
		return lk_err_set(err, LK_ERR_NOTFOUND, "table '%s' does not exist in %s", name,
				  c->label);
	if (t->nkey < 1)
		return lk_err_set(err, LK_ERR_SCHEMA, "change capture on '%s' needs a key", name);
	for (int i = 0; i < t->nkey; i++) {
		if (get_ints(c, 1, &n, NULL, err,
			     "SELECT count(*) FROM pragma_table_info(?1, 'main')"
			     " WHERE name = ?2 COLLATE NOCASE",
			     "tt", t->table->name, t->key_cols[i]) < 0)
			return -1;
		if (n == 0)
			return lk_err_set(err, LK_ERR_SCHEMA,
					  "key column '%s' does not exist in table '%s' in %s",
					  t->key_cols[i], name, c->label);
	}
	return 0;
}

/*
 * Whether the registered key `have` (a JSON array of names) was renamed to this job's key:
 * as many columns, none of the old names left in the table. SQLite cannot drop a primary
 * key column, and RENAME COLUMN rewrites the triggers that name it: they still capture.
 */
static int key_renamed(struct lk_conn *c, const struct lk_cdc_table *t, const char *have, bool *yes,
		       struct lk_err *err)
{
	int64_t n[2];

	*yes = false;
	if (get_ints(c, 2, n, NULL, err,
		     "SELECT json_array_length(?1), (SELECT count(*) FROM json_each(?1) j"
		     " WHERE j.value IN (SELECT name FROM pragma_table_info(?2, 'main')))",
		     "tt", have, t->table->name) < 0)
		return -1;
	*yes = n[0] == t->nkey && n[1] == 0;
	return 0;
}

/*
 * Finds or adds the table's registry row; another key -> LK_ERR_CONFLICT naming both (a
 * key column renamed since is the same key: its new name is recorded).
 * *version: the CDC_VERSION of the row's triggers, 0 when the row is new.
 */
static int register_table(struct lk_conn *c, const struct lk_cdc_table *t, int64_t *relid,
			  int64_t *version, struct lk_err *err)
{
	static const char sel[] = "SELECT relid, key_cols, COALESCE(capture_version, 1) FROM " CDC
				  "tables WHERE schema_name = ?1 AND table_name = ?2";
	struct lk_buf keys = LK_BUF_INIT;
	sqlite3_stmt *st;
	char name[256];
	int rc, ret = -1;

	add_key_names(&keys, t);
	lk_tref_format(t->table, name, sizeof(name));
	if (prep(c, &st, err, sel, "tt", CDC_SCHEMA, t->table->name) < 0)
		goto out;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *have = (const char *)sqlite3_column_text(st, 1);

		*relid = sqlite3_column_int64(st, 0);
		*version = sqlite3_column_int64(st, 2);
		bool renamed = false;

		if (have && strcmp(have, keys.buf) != 0 &&
		    key_renamed(c, t, have, &renamed, err) < 0) {
			done(st);
			goto out;
		}
		if (renamed)
			ret = put(c, NULL, err,
				  "UPDATE " CDC "tables SET key_cols = ?1 WHERE relid = ?2", "ti",
				  keys.buf, *relid);
		else if (have && strcmp(have, keys.buf) == 0)
			ret = 0;
		else
			lk_err_set(err, LK_ERR_CONFLICT,
				   "table '%s' in %s is already captured with key %s, not %s", name,
				   c->label, have ? have : "?", keys.buf);
	} else if (rc != SQLITE_DONE) {
		lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
	}
	done(st);
	if (rc != SQLITE_DONE)
		goto out;
	if (put(c, NULL, err,
		"INSERT INTO " CDC "tables (schema_name, table_name, key_cols, installed_ms,"
		" capture_version) VALUES (?1, ?2, ?3, ?4, ?5)",
		"tttii", CDC_SCHEMA, t->table->name, keys.buf, lk_wall_ms(),
		(int64_t)CDC_VERSION) < 0)
		goto out;
	*relid = sqlite3_last_insert_rowid(c->db);
	*version = 0;
	ret = 0;
out:
	lk_buf_release(&keys);
	return ret;
}

/*
 * Appends json_array() of the key of row `row` (NEW, OLD, an alias), each value as text the
 * way the applier decodes it (lk_pos_parse_values): a bytes column always as
 * lower-case hex (as PostgreSQL's encode(..., 'hex') prints it, whatever SQLite
 * stored), a blob in another column as hex too, a real with 15 significant digits
 * when those read back as the same double, else with 17, and NULL as JSON null.
 */
void lk_sqlite_cdc_key_expr(struct lk_buf *b, const struct lk_cdc_table *t, const char *row)
{
	struct lk_buf col = LK_BUF_INIT;

	lk_buf_adds(b, "json_array(");
	for (int i = 0; i < t->nkey; i++) {
		const char *v;

		lk_buf_reset(&col);
		lk_buf_addf(&col, "%s.", row);
		lk_quote_ident(&col, t->key_cols[i]);
		v = col.buf;
		lk_buf_adds(b, i ? ", " : "");
		if (t->key_types && t->key_types[i] == LK_T_BYTES)
			lk_buf_addf(b, "CASE WHEN %s IS NULL THEN NULL ELSE lower(hex(%s)) END", v,
				    v);
		else
			lk_buf_addf(b,
				    "CASE typeof(%s) WHEN 'blob' THEN lower(hex(%s))"
				    " WHEN 'real' THEN"
				    " CASE WHEN CAST(printf('%%!.15g', %s) AS REAL) = %s"
				    " THEN printf('%%!.15g', %s) ELSE printf('%%!.17g', %s) END"
				    " WHEN 'null' THEN NULL ELSE CAST(%s AS TEXT) END",
				    v, v, v, v, v, v, v);
	}
	lk_buf_addch(b, ')');
	lk_buf_release(&col);
}

/* The row triggers (AFTER) and the conflict triggers (BEFORE, only when needed). */
enum trig { TRIG_INS, TRIG_UPD, TRIG_DEL, TRIG_RPL_INS, TRIG_RPL_UPD, TRIG_N };
#define TRIG_NROW 3

static const char *const trig_suffix[TRIG_N] = {"ins", "upd", "del", "rpl_ins", "rpl_upd"};

/*
 * Appends the text of one of the table's row triggers from its name on: sqlite_master
 * keeps "CREATE TRIGGER " and this text, however the schema was qualified.
 */
static void add_trigger(struct lk_buf *b, const struct lk_cdc_table *t, int64_t relid, enum trig k)
{
	static const char *const event[TRIG_NROW] = {"INSERT", "UPDATE", "DELETE"};
	static const char insert[] = " INSERT INTO lockstep_cdc_changelog (relid, key, op)";

	/* The body's table is unqualified: a trigger writes to its own database (main). */
	lk_buf_addf(b, "\"lockstep_cdc_%lld_%s\" AFTER %s ON ", (long long)relid, trig_suffix[k],
		    event[k]);
	lk_quote_ident(b, t->table->name);
	lk_buf_adds(b, " FOR EACH ROW BEGIN");
	if (k == TRIG_UPD) {
		/* A changed key: the old key is gone (D), the new one is upserted (U). */
		lk_buf_addf(b, "%s SELECT %lld, ", insert, (long long)relid);
		lk_sqlite_cdc_key_expr(b, t, "OLD");
		lk_buf_adds(b, ", 'D' WHERE ");
		lk_sqlite_cdc_key_expr(b, t, "OLD");
		lk_buf_adds(b, " IS NOT ");
		lk_sqlite_cdc_key_expr(b, t, "NEW");
		lk_buf_adds(b, ";");
	}
	lk_buf_addf(b, "%s VALUES (%lld, ", insert, (long long)relid);
	lk_sqlite_cdc_key_expr(b, t, k == TRIG_DEL ? "OLD" : "NEW");
	lk_buf_addf(b, ", '%c'); END", k == TRIG_INS ? 'I' : k == TRIG_UPD ? 'U' : 'D');
}

/*
 * Appends the text of a conflict trigger (as add_trigger): BEFORE the row is written, it
 * logs the keys of the rows a REPLACE would delete for it (sqlite_cdc_int.h).
 */
static void add_rpl_trigger(struct lk_buf *b, const struct lk_cdc_table *t, int64_t relid,
			    enum trig k, const struct lk_sqlite_probes *p)
{
	lk_buf_addf(b, "\"lockstep_cdc_%lld_%s\" BEFORE %s ON ", (long long)relid, trig_suffix[k],
		    k == TRIG_RPL_INS ? "INSERT" : "UPDATE");
	lk_quote_ident(b, t->table->name);
	lk_buf_adds(b, " FOR EACH ROW BEGIN ");
	for (int i = 0; i < p->n; i++)
		lk_buf_addf(b, "%s; ", k == TRIG_RPL_INS ? p->ins[i] : p->upd[i]);
	lk_buf_adds(b, "END");
}

/* What capture of a table needs: its expected triggers against those installed. */
struct capture {
	char *want[TRIG_N]; /* expected text from the name on; NULL: not wanted */
	char *have[TRIG_N]; /* sqlite_master's text; NULL: missing */
	bool row_missing;   /* a row trigger is missing: capture was off */
	bool rpl_stale;	    /* a conflict trigger is missing, out of date or not wanted */
	bool rpl_unprobed;  /* a conflict the installed triggers did not probe */
};

static void capture_release(struct capture *cap)
{
	for (int k = 0; k < TRIG_N; k++) {
		free(cap->want[k]);
		free(cap->have[k]);
	}
}

/* Reads trigger k's text from sqlite_master into *sql (owned), NULL when it is missing. */
static int trigger_text(struct lk_conn *c, int64_t relid, enum trig k, char **sql,
			struct lk_err *err)
{
	struct lk_buf name = LK_BUF_INIT;
	sqlite3_stmt *st;
	int rc;

	*sql = NULL;
	lk_buf_addf(&name, "lockstep_cdc_%lld_%s", (long long)relid, trig_suffix[k]);
	/* name is bound SQLITE_STATIC: released once the statement is done. */
	rc = prep(c, &st, err,
		  "SELECT sql FROM main.sqlite_master WHERE type = 'trigger' AND name = ?1", "t",
		  name.buf);
	if (rc == 0) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			*sql = lk_xstrdup((const char *)sqlite3_column_text(st, 0));
		else if (rc != SQLITE_DONE)
			lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
		done(st);
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
	}
	lk_buf_release(&name);
	return rc;
}

/* True when sqlite_master's text `have` is that of the text `want` (both may be NULL). */
static bool same_text(const char *have, const char *want)
{
	static const char create[] = "CREATE TRIGGER ";

	if (!have || !want)
		return !have && !want;
	return strncmp(have, create, sizeof(create) - 1) == 0 &&
	       strcmp(have + sizeof(create) - 1, want) == 0;
}

/* Fills *cap for table t (relid) from its schema and sqlite_master (read only). */
static int inspect(struct lk_conn *c, const struct lk_cdc_table *t, int64_t relid,
		   struct capture *cap, struct lk_err *err)
{
	struct lk_sqlite_probes p;
	struct lk_buf b = LK_BUF_INIT;
	int rc = lk_sqlite_cdc_probes(c, t, relid, &p, err);

	memset(cap, 0, sizeof(*cap));
	for (int k = 0; rc == 0 && k < TRIG_N; k++) {
		lk_buf_reset(&b);
		if (k < TRIG_NROW)
			add_trigger(&b, t, relid, (enum trig)k);
		else if (p.n > 0)
			add_rpl_trigger(&b, t, relid, (enum trig)k, &p);
		cap->want[k] = b.len ? lk_xstrdup(b.buf) : NULL;
		rc = trigger_text(c, relid, (enum trig)k, &cap->have[k], err);
		if (k < TRIG_NROW) {
			cap->row_missing = cap->row_missing || !cap->have[k];
			continue;
		}
		cap->rpl_stale = cap->rpl_stale || !same_text(cap->have[k], cap->want[k]);
		for (int i = 0; i < p.n; i++) {
			const char *probe = k == TRIG_RPL_INS ? p.ins[i] : p.upd[i];

			cap->rpl_unprobed =
				cap->rpl_unprobed || !cap->have[k] || !strstr(cap->have[k], probe);
		}
	}
	lk_buf_release(&b);
	lk_sqlite_cdc_probes_release(&p);
	return rc;
}

/*
 * Compiles an INSERT, an UPDATE and a DELETE of the table without running them, which
 * compiles its triggers: CREATE TRIGGER accepts a body naming a missing column, and such
 * a trigger would fail every write of the application.
 */
static int validate(struct lk_conn *c, const struct lk_cdc_table *t, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	int rc = SQLITE_OK;

	for (int i = 0; i < 3 && rc == SQLITE_OK; i++) {
		sqlite3_stmt *st = NULL;

		lk_buf_reset(&sql);
		lk_buf_adds(&sql, i == 0 ? "INSERT INTO " : i == 1 ? "UPDATE " : "DELETE FROM ");
		lk_quote_ident(&sql, t->table->name);
		if (i == 1) {
			lk_buf_adds(&sql, " SET ");
			lk_quote_ident(&sql, t->key_cols[0]);
			lk_buf_adds(&sql, " = ");
			lk_quote_ident(&sql, t->key_cols[0]);
		}
		lk_buf_adds(&sql, i == 0 ? " DEFAULT VALUES" : " WHERE 0");
		rc = sqlite3_prepare_v2(c->db, sql.buf, -1, &st, NULL);
		if (rc != SQLITE_OK)
			lk_err_set(err, LK_ERR_SCHEMA,
				   "change capture on '%s' in %s: its triggers would fail the"
				   " table's writes (%s); nothing installed",
				   t->table->name, c->label, sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
	}
	lk_buf_release(&sql);
	return rc == SQLITE_OK ? 0 : -1;
}

/* (Re)creates the triggers that are missing or out of date, drops unwanted ones. */
static int repair(struct lk_conn *c, int64_t relid, const struct capture *cap, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	int ret = 0;

	for (int k = 0; k < TRIG_N && ret == 0; k++) {
		if (cap->have[k] && cap->want[k] && (k < TRIG_NROW || !cap->rpl_stale))
			continue; /* row triggers: present is enough, as ever */
		if (!cap->have[k] && !cap->want[k])
			continue;
		lk_buf_reset(&sql);
		if (cap->have[k])
			lk_buf_addf(&sql, "DROP TRIGGER " CDC_SCHEMA ".\"lockstep_cdc_%lld_%s\";",
				    (long long)relid, trig_suffix[k]);
		if (cap->want[k])
			lk_buf_addf(&sql, "CREATE TRIGGER " CDC_SCHEMA ".%s;", cap->want[k]);
		ret = run(c, sql.buf, err);
	}
	lk_buf_release(&sql);
	return ret;
}

/*
 * Why changes of a registered table may have gone unlogged, or NULL: a row trigger was
 * missing (a rebuilt table, dropped triggers), or a uniqueness constraint appeared that the
 * conflict triggers did not probe (on a table whose triggers had them: version >= 2).
 */
static const char *gap_reason(const struct capture *cap, int64_t version)
{
	if (version == 0)
		return NULL; /* just registered: nothing to have missed */
	if (cap->row_missing)
		return "its triggers were missing (the table was rebuilt, or they were dropped)";
	if (version >= 2 && cap->rpl_unprobed)
		return "a uniqueness constraint was added or changed before lockstep's triggers"
		       " logged the rows a REPLACE deletes through it";
	return NULL;
}

/*
 * Makes the table's capture whole. When it was not, logs a gap entry (op G, its key the
 * reason as text) in the same transaction: every consumer that reaches it re-snapshots, and
 * the triggers log everything after it.
 */
static int install_in_txn(struct lk_conn *c, const struct lk_cdc_table *t, int64_t *relid,
			  struct lk_err *err)
{
	struct capture cap;
	const char *why;
	int64_t version;
	int rc;

	if (run(c, create_sql, err) < 0 || check_version(c, err) < 0 ||
	    check_table(c, t, err) < 0 || register_table(c, t, relid, &version, err) < 0)
		return -1;
	rc = inspect(c, t, *relid, &cap, err);
	why = rc == 0 ? gap_reason(&cap, version) : NULL;
	if (rc == 0)
		rc = repair(c, *relid, &cap, err);
	if (rc == 0)
		rc = validate(c, t, err);
	if (rc == 0 && why)
		rc = put(c, NULL, err,
			 "INSERT INTO " CDC "changelog (relid, key, op) VALUES (?1, ?2, ?3)", "itt",
			 *relid, why, (const char[]){LK_CDC_OP_GAP, '\0'});
	if (rc == 0 && version != CDC_VERSION && version != 0)
		rc = put(c, NULL, err,
			 "UPDATE " CDC "tables SET capture_version = ?2 WHERE relid = ?1", "ii",
			 *relid, (int64_t)CDC_VERSION);
	capture_release(&cap);
	return rc;
}

static int sc_install(struct lk_conn *c, const struct lk_cdc_table *t, int64_t *relid,
		      struct lk_err *err)
{
	char name[256];

	if (strcmp(schema_of(t->table), CDC_SCHEMA) != 0) {
		lk_tref_format(t->table, name, sizeof(name));
		return lk_err_set(err, LK_ERR_SCHEMA,
				  "change capture on '%s': SQLite captures tables of the main"
				  " database only",
				  name);
	}
	if (run(c, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	return finish(c, install_in_txn(c, t, relid, err), err);
}

static int sc_check(struct lk_conn *c, const struct lk_cdc_table *t, struct lk_err *err)
{
	struct lk_sqlite_probes p;
	char name[256];
	int rc;

	if (strcmp(schema_of(t->table), CDC_SCHEMA) != 0) {
		lk_tref_format(t->table, name, sizeof(name));
		return lk_err_set(err, LK_ERR_SCHEMA,
				  "change capture on '%s': SQLite captures tables of the main"
				  " database only",
				  name);
	}
	if (check_table(c, t, err) < 0) /* SQLite has no privileges to miss */
		return -1;
	rc = lk_sqlite_cdc_probes(c, t, 0, &p, err); /* an index it cannot read */
	lk_sqlite_cdc_probes_release(&p);
	return rc;
}

static int sc_catch_up_target(struct lk_conn *c, int64_t *target, struct lk_err *err)
{
	(void)c;
	(void)err;
	*target = 0; /* writers are serialised: a drained read has seen every commit */
	return 0;
}

/* ---- consumers ---- */

static int register_in_txn(struct lk_conn *c, const char *job, int64_t relid, struct lk_cdc_pos *h,
			   struct lk_err *err)
{
	int64_t n, last[2], now = lk_wall_ms();
	bool found = false;

	if (count_tables(c, &n, err) < 0)
		return -1;
	if (n == 4 && get_ints(c, 1, &n, &found, err,
			       "SELECT 1 FROM " CDC "tables WHERE relid = ?1", "i", relid) < 0)
		return -1;
	if (!found)
		return lk_err_set(err, LK_ERR_NOTFOUND,
				  "change capture is not installed for table id %lld in %s",
				  (long long)relid, c->label);
	/* Every change committed after this one gets a larger seq (serialised writers). The
	 * entry's at_ms is its stamp (lk_cdc_pos.xid, see lineage()). */
	if (get_ints(c, 2, last, &found, err,
		     "SELECT seq, at_ms FROM " CDC "changelog ORDER BY seq DESC LIMIT 1", "") < 0)
		return -1;
	h->seq = found ? last[0] : 0;
	h->xid = found && last[1] > 0 ? last[1] : 0;
	return put(
		c, NULL, err,
		"INSERT INTO " CDC "consumers (job, relid, horizon, xid, seq, registered_ms,"
		" updated_ms) VALUES (?1, ?2, 0, ?5, ?3, ?4, ?4) ON CONFLICT (job) DO UPDATE"
		" SET relid = excluded.relid, horizon = 0, xid = excluded.xid, seq = excluded.seq,"
		" registered_ms = excluded.registered_ms, updated_ms = excluded.updated_ms",
		"tiiii", job, relid, h->seq, now, h->xid);
}

static int sc_register_consumer(struct lk_conn *c, const char *job, int64_t relid,
				struct lk_cdc_pos *h, struct lk_err *err)
{
	h->horizon = h->xid = h->seq = 0;
	if (run(c, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	return finish(c, register_in_txn(c, job, relid, h, err), err);
}

static int sc_consumer_get(struct lk_conn *c, const char *job, int64_t relid, bool *found,
			   struct lk_err *err)
{
	int64_t n;

	*found = false;
	if (count_tables(c, &n, err) < 0)
		return -1;
	if (n < 4)
		return 0;
	return get_ints(c, 1, &n, found, err,
			"SELECT 1 FROM " CDC "consumers WHERE job = ?1 AND relid = ?2", "ti", job,
			relid);
}

static int sc_consumer_advance(struct lk_conn *c, const char *job, const struct lk_cdc_pos *p,
			       struct lk_err *err)
{
	int64_t changed = 0;

	if (put(c, &changed, err,
		"UPDATE " CDC "consumers SET seq = ?2, horizon = ?3, xid = ?4, updated_ms = ?5"
		" WHERE job = ?1",
		"tiiii", job, p->seq, p->horizon, p->xid, lk_wall_ms()) < 0)
		return -1;
	/* Gone (uninstalled): pruning no longer waits for this job, so it must not go on. */
	if (changed == 0)
		return lk_err_set(err, LK_ERR_NOTFOUND,
				  "job '%s' is not a registered change-capture consumer in %s", job,
				  c->label);
	return 0;
}

/* ---- read, prune, stalled ---- */

/* Appends the rows of a stepped statement to out as text (NULL stays NULL). */
static int add_rows(struct lk_conn *c, sqlite3_stmt *st, struct lk_rows *out, struct lk_err *err)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		lk_rows_add(out);
		for (int i = 0; i < out->ncols; i++)
			lk_sqlite_read(out, out->nrows - 1, i, st, i, LK_T_OTHER);
	}
	if (rc != SQLITE_DONE)
		return lk_sqlite_fail(c, rc, err, "change capture on %s", c->label);
	return 0;
}

/* Gives an empty out `ncols` columns; a non-empty one must have them already. */
static int shape(struct lk_rows *out, int ncols, struct lk_err *err)
{
	if (out->nrows == 0)
		lk_rows_set_ncols(out, ncols);
	if (out->ncols != ncols)
		return lk_err_set(err, LK_ERR_INTERNAL,
				  "change capture rows need %d columns, not %d", ncols, out->ncols);
	return 0;
}

/* The xid column is the entry's stamp, its at_ms (xid is always 0 in an SQLite changelog). */
static int sc_read(struct lk_conn *c, int64_t relid, const struct lk_cdc_pos *from, int max,
		   struct lk_rows *out, int64_t *h, struct lk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	*h = 0;
	if (shape(out, LK_CDC_NCOLS, err) < 0)
		return -1;
	/* Deferred: the SELECT starts the read snapshot, which lasts until the caller ends it. */
	if (run(c, "BEGIN", err) < 0)
		return -1;
	rc = prep(c, &st, err,
		  "SELECT at_ms, seq, op, key FROM " CDC "changelog WHERE relid = ?1 AND seq > ?2"
		  " ORDER BY seq LIMIT ?3",
		  "iii", relid, from->seq, (int64_t)(max > 0 ? max : 0));
	if (rc == 0) {
		rc = add_rows(c, st, out, err);
		done(st);
	}
	if (rc < 0)
		(void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int sc_prune(struct lk_conn *c, int64_t relid, int max, int64_t *deleted, struct lk_err *err)
{
	*deleted = 0;
	if (max <= 0)
		return 0;
	/* Without consumers min() is NULL and `seq <= NULL` matches nothing. */
	return put(c, deleted, err,
		   "DELETE FROM " CDC "changelog WHERE seq IN (SELECT seq FROM " CDC "changelog"
		   " WHERE relid = ?1 AND seq <= (SELECT min(seq) FROM " CDC "consumers"
		   " WHERE relid = ?1) ORDER BY seq LIMIT ?2)",
		   "ii", relid, (int64_t)max);
}

static int sc_stalled(struct lk_conn *c, int64_t relid, const char *self, double stall_s,
		      struct lk_rows *out, struct lk_err *err)
{
	int64_t now = lk_wall_ms();
	sqlite3_stmt *st;
	int rc;

	if (shape(out, 3, err) < 0)
		return -1;
	if (prep(c, &st, err,
		 "SELECT job, idle_s, pending FROM (SELECT job, (?3 - COALESCE(updated_ms, 0))"
		 " / 1000 AS idle_s, (SELECT count(*) FROM " CDC "changelog l"
		 " WHERE l.relid = k.relid AND l.seq > k.seq) AS pending,"
		 " COALESCE(updated_ms, 0) AS upd FROM " CDC "consumers k"
		 " WHERE relid = ?1 AND job IS NOT ?2)"
		 " WHERE upd <= ?3 - ?4 AND pending > 0 ORDER BY job",
		 "itii", relid, self, now, (int64_t)(stall_s * 1000)) < 0)
		return -1;
	rc = add_rows(c, st, out, err);
	done(st);
	return rc;
}

/* ---- wake-ups ---- */

/* PRAGMA data_version: changes whenever another connection commits to the database. */
static int data_version(struct lk_conn *c, int64_t *v, struct lk_err *err)
{
	return get_ints(c, 1, v, NULL, err, "PRAGMA main.data_version", "");
}

static int sc_listen(struct lk_conn *c, int64_t relid, struct lk_err *err)
{
	(void)relid; /* data_version covers the whole database */
	if (data_version(c, &c->data_version, err) < 0)
		return -1;
	c->listening = true;
	return 0;
}

static int sc_wait(struct lk_conn *c, int timeout_ms, bool *woken, struct lk_err *err)
{
	int64_t deadline = lk_mono_ms() + timeout_ms, v, left;

	*woken = false;
	if (!c->listening)
		return lk_err_set(err, LK_ERR_INTERNAL, "change capture wait on %s before listen",
				  c->label);
	/* Inside a transaction the snapshot hides other commits: the wait could never end. */
	if (!sqlite3_get_autocommit(c->db))
		return lk_err_set(err, LK_ERR_INTERNAL,
				  "change capture wait on %s inside a transaction", c->label);
	for (;;) {
		if (data_version(c, &v, err) < 0)
			return -1;
		if (v != c->data_version) {
			c->data_version = v;
			*woken = true;
			return 0;
		}
		left = deadline - lk_mono_ms();
		if (left <= 0)
			return 0;
		lk_sleep_ms(left < POLL_MS ? left : POLL_MS, NULL);
	}
}

/* ---- uninstall, lag ---- */

/* Drops the table's triggers and entries when it has no consumer left. */
static int drop_table_capture(struct lk_conn *c, int64_t relid, bool *dropped, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	int64_t n;
	int ret;

	if (get_ints(c, 1, &n, NULL, err, "SELECT count(*) FROM " CDC "consumers WHERE relid = ?1",
		     "i", relid) < 0)
		return -1;
	if (n > 0)
		return 0;
	for (int k = 0; k < TRIG_N; k++)
		lk_buf_addf(&sql, "DROP TRIGGER IF EXISTS " CDC_SCHEMA ".\"lockstep_cdc_%lld_%s\";",
			    (long long)relid, trig_suffix[k]);
	ret = run(c, sql.buf, err);
	lk_buf_release(&sql);
	if (ret == 0)
		ret = put(c, NULL, err, "DELETE FROM " CDC "changelog WHERE relid = ?1", "i",
			  relid);
	if (ret == 0)
		ret = put(c, NULL, err, "DELETE FROM " CDC "tables WHERE relid = ?1", "i", relid);
	*dropped = ret == 0;
	return ret;
}

/* Drops the four tables when no captured table and no consumer is left. */
static int drop_all_if_unused(struct lk_conn *c, bool *all_gone, struct lk_err *err)
{
	int64_t n;

	if (get_ints(c, 1, &n, NULL, err,
		     "SELECT (SELECT count(*) FROM " CDC "tables)"
		     " + (SELECT count(*) FROM " CDC "consumers)",
		     "") < 0)
		return -1;
	if (n > 0)
		return 0;
	if (run(c,
		"DROP TABLE " CDC "consumers; DROP TABLE " CDC "changelog;"
		" DROP TABLE " CDC "tables; DROP TABLE " CDC "meta;",
		err) < 0)
		return -1;
	*all_gone = true;
	return 0;
}

static int uninstall_in_txn(struct lk_conn *c, const char *job, const struct lk_tref *t,
			    bool *found, bool *dropped, bool *all_gone, struct lk_err *err)
{
	int64_t n, relid;
	bool known;

	if (count_tables(c, &n, err) < 0)
		return -1;
	if (n == 0) {
		*all_gone = true;
		return 0;
	}
	if (check_version(c, err) < 0 ||
	    get_ints(c, 1, &relid, found, err, "SELECT relid FROM " CDC "consumers WHERE job = ?1",
		     "t", job) < 0)
		return -1;
	known = *found;
	if (*found &&
	    put(c, NULL, err, "DELETE FROM " CDC "consumers WHERE job = ?1", "t", job) < 0)
		return -1;
	if (!known && lookup_relid(c, schema_of(t), t->name, &relid, &known, err) < 0)
		return -1;
	if (known && drop_table_capture(c, relid, dropped, err) < 0)
		return -1;
	return drop_all_if_unused(c, all_gone, err);
}

static int sc_uninstall(struct lk_conn *c, const char *job, const struct lk_tref *t, bool *found,
			bool *dropped, bool *all_gone, struct lk_err *err)
{
	*found = *dropped = *all_gone = false;
	if (run(c, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	return finish(c, uninstall_in_txn(c, job, t, found, dropped, all_gone, err), err);
}

static int sc_lag(struct lk_conn *c, const char *job, const struct lk_tref *t,
		  struct lk_cdc_lag *out, struct lk_err *err)
{
	int64_t n, relid, now = lk_wall_ms();
	int64_t v[4]; /* seq, updated_ms, pending, oldest at_ms */
	bool known;

	memset(out, 0, sizeof(*out));
	out->oldest_age_s = out->idle_s = -1;
	if (count_tables(c, &n, err) < 0)
		return -1;
	if (n < 4)
		return 0;
	out->installed = true;
	if (lookup_relid(c, schema_of(t), t->name, &relid, &known, err) < 0)
		return -1;
	if (!known)
		return 0;
	if (get_ints(c, 1, &out->entries, NULL, err,
		     "SELECT count(*) FROM " CDC "changelog WHERE relid = ?1", "i", relid) < 0 ||
	    get_ints(c, 4, v, &out->registered, err,
		     "SELECT k.seq, k.updated_ms, count(l.seq), min(l.at_ms) FROM " CDC
		     "consumers k"
		     " LEFT JOIN " CDC "changelog l ON l.relid = k.relid AND l.seq > k.seq"
		     " WHERE k.job = ?1 AND k.relid = ?2 GROUP BY k.job",
		     "ti", job, relid) < 0)
		return -1;
	if (!out->registered)
		return 0;
	out->pending = v[2];
	if (v[1] >= 0)
		out->idle_s = now > v[1] ? (double)(now - v[1]) / 1000 : 0;
	if (v[3] >= 0)
		out->oldest_age_s = now > v[3] ? (double)(now - v[3]) / 1000 : 0;
	return 0;
}

/* ---- capture health, lineage ---- */

/* Writes the lineage gap about entry seq: `what` it is now. */
static void replaced(char *gap, size_t size, int64_t seq, const char *what)
{
	(void)snprintf(gap, size,
		       "changelog entry %lld, which this job applied, %s: the source's history was"
		       " replaced (a database file restored from an older copy?)",
		       (long long)seq, what);
}

/*
 * Whether the changelog still holds the history pos was taken in (cdc.h). A seq is handed
 * out once, in order, and an entry leaves only by pruning, which never passes a consumer of
 * its table. So unless the source went back: the sequence has reached pos.seq; entry
 * pos.seq, if still there, is the one the position was taken after (the same stamp: a file
 * restored from a copy hands the old seqs out again, to entries stamped later); if gone, it
 * was pruned, which needs this job's registration at pos.seq or beyond (pos.seq is an entry
 * of its table, or the point it registered at). Writes why not into gap.
 */
static int lineage(struct lk_conn *c, const char *job, const struct lk_cdc_pos *pos, char *gap,
		   size_t size, struct lk_err *err)
{
	int64_t top, at, reg;
	bool found;

	if (pos->seq <= 0)
		return 0;
	if (get_ints(c, 1, &top, NULL, err,
		     "SELECT seq FROM main.sqlite_sequence WHERE name = 'lockstep_cdc_changelog'",
		     "") < 0)
		return -1;
	if (top < pos->seq) {
		(void)snprintf(
			gap, size,
			"the source's changelog went back: this job applied it up to seq %lld but"
			" the source has handed out seq %lld at most (a database file restored"
			" from an older copy?)",
			(long long)pos->seq, (long long)(top > 0 ? top : 0));
		return 0;
	}
	if (get_ints(c, 1, &at, &found, err, "SELECT at_ms FROM " CDC "changelog WHERE seq = ?1",
		     "i", pos->seq) < 0)
		return -1;
	if (found) {
		if (pos->xid > 0 && at != pos->xid)
			replaced(gap, size, pos->seq, "is now another one");
		return 0;
	}
	if (get_ints(c, 1, &reg, NULL, err, "SELECT seq FROM " CDC "consumers WHERE job = ?1", "t",
		     job) < 0)
		return -1;
	if (reg < pos->seq)
		replaced(gap, size, pos->seq, "is gone but was never pruned");
	return 0;
}

static int sc_check_capture(struct lk_conn *c, const struct lk_cdc_table *t, int64_t relid,
			    const char *job, const struct lk_cdc_pos *pos, char *gap,
			    size_t gap_size, struct lk_err *err)
{
	struct capture cap;
	int64_t n, have;
	bool known, broken;
	int rc;

	gap[0] = '\0';
	if (count_tables(c, &n, err) < 0)
		return -1;
	if (n < 4)
		return 0; /* uninstalled: the registry calls say so */
	if (lookup_relid(c, CDC_SCHEMA, t->table->name, &have, &known, err) < 0)
		return -1;
	if (known && have == relid) {
		rc = inspect(c, t, relid, &cap, err);
		broken = cap.row_missing || cap.rpl_stale;
		capture_release(&cap);
		if (rc < 0)
			return -1;
		if (broken && (run(c, "BEGIN IMMEDIATE", err) < 0 ||
			       finish(c, install_in_txn(c, t, &have, err), err) < 0))
			return -1;
	}
	return lineage(c, job, pos, gap, gap_size, err);
}

/* ---- deployments: older consumer names, orphans ---- */

static int sc_adopt_consumer(struct lk_conn *c, const char *older, const char *ident,
			     const struct lk_tref *t, bool *adopted, struct lk_err *err)
{
	int64_t n = 0;

	*adopted = false;
	if (count_tables(c, &n, err) < 0)
		return -1;
	if (n < 4)
		return 0;
	if (put(c, &n, err,
		"UPDATE " CDC "consumers SET job = ?2 WHERE job = ?1 AND relid = (SELECT relid"
		" FROM " CDC "tables WHERE schema_name = ?3 AND table_name = ?4) AND NOT EXISTS"
		" (SELECT 1 FROM " CDC "consumers WHERE job = ?2)",
		"tttt", older, ident, schema_of(t), t->name) < 0)
		return -1;
	*adopted = n > 0;
	return 0;
}

/* Appends the consumers of relid not in keep (a JSON array) holding entries back and idle
 * (not advanced) for at least min_held_ms each (0: all) to out, from row out->nrows on. A
 * live run advances its row as it applies, so its backlog alone never makes it one. */
static int list_orphans(struct lk_conn *c, int64_t relid, const char *keep, int64_t min_held_ms,
			struct lk_rows *out, struct lk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	if (shape(out, LK_ORPHAN_NCOLS, err) < 0 ||
	    prep(c, &st, err,
		 "SELECT job, CASE WHEN oldest IS NULL THEN NULL"
		 " ELSE printf('%.1f', (?3 - oldest) / 1000.0) END,"
		 " printf('%.1f', (?3 - upd) / 1000.0) FROM (SELECT k.job AS job,"
		 " (SELECT l.at_ms FROM " CDC "changelog l WHERE l.relid = k.relid"
		 "  AND l.seq > k.seq ORDER BY l.seq LIMIT 1) AS oldest,"
		 " COALESCE(k.updated_ms, 0) AS upd"
		 " FROM " CDC "consumers k WHERE k.relid = ?1"
		 " AND k.job NOT IN (SELECT value FROM json_each(?2)))"
		 " WHERE ?4 = 0 OR (oldest <= ?3 - ?4 AND upd <= ?3 - ?4) ORDER BY job",
		 "itii", relid, keep, lk_wall_ms(), min_held_ms) < 0)
		return -1;
	rc = add_rows(c, st, out, err);
	done(st);
	return rc;
}

static int orphans_in_txn(struct lk_conn *c, const struct lk_cdc_orphans_req *q, const char *keep,
			  struct lk_rows *out, struct lk_err *err)
{
	int64_t n, relid;
	bool known;
	int first = out->nrows;

	if (count_tables(c, &n, err) < 0)
		return -1;
	if (n < 4)
		return 0;
	if (lookup_relid(c, schema_of(q->table), q->table->name, &relid, &known, err) < 0)
		return -1;
	if (!known)
		return 0;
	if (list_orphans(c, relid, keep, q->remove ? (int64_t)(q->min_held_s * 1000) : 0, out,
			 err) < 0)
		return -1;
	for (int r = first; q->remove && r < out->nrows; r++) {
		if (put(c, NULL, err, "DELETE FROM " CDC "consumers WHERE job = ?1", "t",
			LK_ROW(out, r)[LK_ORPHAN_NAME].p) < 0)
			return -1;
	}
	return 0;
}

static int sc_orphans(struct lk_conn *c, const struct lk_cdc_orphans_req *q, struct lk_rows *out,
		      struct lk_err *err)
{
	struct lk_buf keep = LK_BUF_INIT;
	int rc;

	lk_buf_addch(&keep, '[');
	for (int i = 0; i < q->nkeep; i++) {
		if (i)
			lk_buf_addch(&keep, ',');
		lk_buf_add_json_str(&keep, q->keep[i], strlen(q->keep[i]));
	}
	lk_buf_addch(&keep, ']');
	if (!q->remove) {
		rc = orphans_in_txn(c, q, keep.buf, out, err);
	} else {
		rc = run(c, "BEGIN IMMEDIATE", err);
		if (rc == 0)
			rc = finish(c, orphans_in_txn(c, q, keep.buf, out, err), err);
	}
	lk_buf_release(&keep);
	return rc;
}

const struct lk_cdc_ops lk_sqlite_cdc_ops = {
	.install = sc_install,
	.check = sc_check,
	.catch_up_target = sc_catch_up_target,
	.register_consumer = sc_register_consumer,
	.consumer_get = sc_consumer_get,
	.consumer_advance = sc_consumer_advance,
	.read = sc_read,
	.prune = sc_prune,
	.stalled = sc_stalled,
	.listen = sc_listen,
	.wait = sc_wait,
	.uninstall = sc_uninstall,
	.lag = sc_lag,
	.check_capture = sc_check_capture,
	.adopt_consumer = sc_adopt_consumer,
	.orphans = sc_orphans,
};
