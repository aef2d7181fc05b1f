/*
 * pg_cdc.c - change capture on a PostgreSQL source (see cdc.h): schema
 * lockstep_cdc, a keys-only changelog read by transaction horizon, per-table
 * row triggers, a TRUNCATE trigger and a statement-level NOTIFY.
 */
#include "pg_cdc_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "cdc"
#include "core/log.h"
#include "core/units.h"

/*
 * The version of the objects this build installs; lockstep_cdc.meta records it, and each
 * captured table's row in lockstep_cdc.tables records the version its capture function was
 * made by ("2|..." in column capture). 1: keys as `col::text` in the writer's session. 2: keys
 * as the type's output with pinned settings, never a cast; a key that cannot be read is
 * logged as a gap instead of failing the write. An older table's function is replaced in
 * place at its job's next start: its changelog and its consumers' positions stay valid.
 */
#define CDC_VERSION 2
#define CDC_VERSION_S "2"

/* Runs sql and returns its single value as text in out ("" for NULL or no row). */
static int one_value(struct lk_conn *c, const char *sql, int n, const char *const *params,
		     char *out, size_t out_size, struct lk_err *err)
{
	PGresult *res;
	int rc = 0;

	out[0] = '\0';
	res = PQexecParams(lk_pg_q(c), sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = lk_pg_err(err, c, res, "change capture");
	else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		(void)snprintf(out, out_size, "%s", PQgetvalue(res, 0, 0));
	else
		out[0] = '\0';
	PQclear(res);
	return rc;
}

/* Runs a command (several statements when it has no parameters). */
static int cmd(struct lk_conn *c, const char *sql, int n, const char *const *params,
	       struct lk_err *err)
{
	PGresult *res;
	ExecStatusType st;
	int rc = 0;

	if (n > 0) {
		if (lk_pg_cmd(c, sql, n, params, NULL, err) < 0)
			return lk_err_prefix(err, "change capture on database '%s'", c->dbname);
		return 0;
	}
	res = PQexec(lk_pg_q(c), sql);
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "query failed");
		rc = lk_err_prefix(err, "change capture on database '%s'", c->dbname);
	}
	PQclear(res);
	return rc;
}

static void abort_txn(struct lk_conn *c)
{
	PGresult *res = PQexec(lk_pg_q(c), "ROLLBACK");

	PQclear(res);
	c->in_txn = false;
}

/*
 * The expression of one key column as text in the interchange form (bytes as hex), or
 * NULL: the type's output function (format's %s), never a cast, so that no conversion the
 * table's owner defines runs with lockstep's rights; the function's pinned settings make
 * it the text lockstep's own sessions print. A type lockstep does not know may be
 * composite, whose value with all fields NULL is still a value: num_nulls, not IS NULL.
 */
static void key_value(struct lk_buf *b, const char *rec, const char *col, enum lk_type type)
{
	struct lk_buf v = LK_BUF_INIT;

	lk_buf_addf(&v, "%s.", rec);
	lk_quote_ident(&v, col);
	if (type == LK_T_BYTES)
		lk_buf_addf(b, "pg_catalog.encode(%s, 'hex')", v.buf);
	else if (type == LK_T_OTHER)
		lk_buf_addf(b,
			    "CASE WHEN pg_catalog.num_nulls(%s) = 1 THEN NULL"
			    " ELSE pg_catalog.format('%%s', %s) END",
			    v.buf, v.buf);
	else
		lk_buf_addf(b,
			    "CASE WHEN %s IS NULL THEN NULL ELSE pg_catalog.format('%%s', %s) END",
			    v.buf, v.buf);
	lk_buf_release(&v);
}

/*
 * Appends "ROW(OLD.k1, ...) IS DISTINCT FROM ROW(NEW.k1, ...)" and returns true when every
 * key column is of a type whose equality pg_catalog holds (so search_path pg_catalog
 * finds it, and it is no code of the table's owner); else appends nothing and returns
 * false. Cheaper than printing the old key on every update that keeps it.
 */
static bool key_changed(struct lk_buf *b, const struct lk_cdc_table *t)
{
	for (int i = 0; i < t->nkey; i++) {
		if (!t->key_types || t->key_types[i] == LK_T_OTHER || t->key_types[i] == LK_T_JSON)
			return false;
	}
	for (int r = 0; r < 2; r++) {
		lk_buf_adds(b, r ? " IS DISTINCT FROM ROW(" : "ROW(");
		for (int i = 0; i < t->nkey; i++) {
			lk_buf_addf(b, "%s%s.", i ? ", " : "", r ? "NEW" : "OLD");
			lk_quote_ident(b, t->key_cols[i]);
		}
		lk_buf_addch(b, ')');
	}
	return true;
}

/* "rec := the key of rec as a JSON array;" (rec is NEW or OLD, var n or o). */
static void key_assign(struct lk_buf *b, const char *var, const char *rec,
		       const struct lk_cdc_table *t)
{
	lk_buf_addf(b, "%s := pg_catalog.jsonb_build_array(", var);
	for (int i = 0; i < t->nkey; i++) {
		lk_buf_adds(b, i ? ", " : "");
		key_value(b, rec, t->key_cols[i], t->key_types ? t->key_types[i] : LK_T_OTHER);
	}
	lk_buf_adds(b, ");\n");
}

static void log_insert(struct lk_buf *b, int64_t relid, const char *key, const char *op)
{
	lk_buf_addf(b,
		    "INSERT INTO lockstep_cdc.changelog (relid, key, op) VALUES (%" PRId64
		    ", %s, %s);\n",
		    relid, key, op);
}

/*
 * The settings the key's text depends on, pinned to the values of lockstep's sessions (pg.c)
 * for the function's duration, so that the writer's session never matters. Only what the
 * key's types need: each SET costs every row write a little. An unknown type (interval,
 * money, ranges, arrays, enums...) pins them all; lc_monetary as the installing session has it.
 */
static void pinned_settings(struct lk_buf *b, const struct lk_cdc_table *t)
{
	bool time = false, fl = false, other = !t->key_types;

	for (int i = 0; t->key_types && i < t->nkey; i++) {
		enum lk_type k = t->key_types[i];

		time |= k == LK_T_TIMESTAMPTZ || k == LK_T_TIMESTAMP || k == LK_T_DATE ||
			k == LK_T_TIME;
		fl |= k == LK_T_FLOAT;
		other |= k == LK_T_OTHER;
	}
	if (time || other)
		lk_buf_adds(b, " SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'");
	if (other)
		lk_buf_adds(b, " SET IntervalStyle = 'iso_8601' SET lc_monetary FROM CURRENT");
	if (fl || other)
		lk_buf_adds(b, " SET extra_float_digits = 3");
}

/*
 * The body of the table's row trigger function. The keys are read in an inner block that
 * writes nothing (so no subtransaction id is spent per row): when a key cannot be read (its
 * column renamed, dropped or of another type since the function was made) the write goes
 * on and an LK_CDC_OP_GAP entry says why, which makes every consumer re-snapshot. An update
 * whose key changed logs the old key as a delete, then the new one. Few statements: each
 * one a call evaluates costs a single-row transaction its set-up.
 */
static void capture_body(struct lk_buf *b, int64_t relid, const struct lk_cdc_table *t)
{
	struct lk_buf changed = LK_BUF_INIT;

	lk_buf_adds(b, "DECLARE n jsonb; o jsonb;\nBEGIN\nBEGIN\nIF TG_OP = 'UPDATE' THEN\n");
	key_assign(b, "n", "NEW", t);
	if (key_changed(&changed, t)) {
		lk_buf_addf(b, "IF %s THEN\n", changed.buf);
		key_assign(b, "o", "OLD", t);
		lk_buf_adds(b, "END IF;\n");
	} else {
		key_assign(b, "o", "OLD", t);
		lk_buf_adds(b, "IF o = n THEN\no := NULL;\nEND IF;\n");
	}
	lk_buf_release(&changed);
	lk_buf_adds(b, "ELSIF TG_OP = 'INSERT' THEN\n");
	key_assign(b, "n", "NEW", t);
	lk_buf_adds(b, "ELSE\n");
	key_assign(b, "o", "OLD", t);
	lk_buf_adds(b, "END IF;\nEXCEPTION WHEN OTHERS THEN\n");
	log_insert(b, relid,
		   "pg_catalog.to_jsonb(pg_catalog.concat('change capture could not read the key"
		   " of a row of ', TG_TABLE_SCHEMA, '.', TG_TABLE_NAME, ' (', SQLERRM,"
		   " '): a key column was renamed, dropped or changed type'))",
		   "'G'");
	lk_buf_adds(b, "RETURN NULL;\nEND;\nIF o IS NOT NULL THEN\n");
	log_insert(b, relid, "o", "'D'");
	lk_buf_adds(b, "END IF;\nIF n IS NOT NULL THEN\n");
	log_insert(b, relid, "n", "CASE TG_OP WHEN 'INSERT' THEN 'I' ELSE 'U' END");
	lk_buf_adds(b, "END IF;\nRETURN NULL;\nEND");
}

/*
 * The table's row trigger function. SECURITY DEFINER so writers need no grant on the
 * changelog; search_path pinned because it runs with the installer's rights.
 */
static void capture_function(struct lk_buf *sql, int64_t relid, const struct lk_cdc_table *t)
{
	struct lk_buf body = LK_BUF_INIT;
	char tag[32] = "$lockstep$";

	capture_body(&body, relid, t);
	/* A column name could contain the dollar-quote tag: pick one it does not. */
	for (int i = 0; strstr(body.buf, tag); i++)
		(void)snprintf(tag, sizeof(tag), "$lockstep%d$", i);
	lk_buf_addf(sql,
		    "CREATE OR REPLACE FUNCTION lockstep_cdc.capture_%" PRId64 "()"
		    " RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
		    " SET search_path = pg_catalog, pg_temp",
		    relid);
	pinned_settings(sql, t);
	lk_buf_addf(sql, " AS %s\n%s\n%s", tag, body.buf, tag);
	lk_buf_release(&body);
}

static const char *const base_objects =
	"CREATE SCHEMA IF NOT EXISTS lockstep_cdc;"
	"CREATE TABLE IF NOT EXISTS lockstep_cdc.meta (version int NOT NULL);"
	"CREATE TABLE IF NOT EXISTS lockstep_cdc.changelog ("
	" seq bigint GENERATED ALWAYS AS IDENTITY,"
	" xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),"
	" relid oid NOT NULL, key jsonb, op \"char\" NOT NULL,"
	" at timestamptz NOT NULL DEFAULT pg_catalog.now());"
	"CREATE INDEX IF NOT EXISTS changelog_xid_seq ON lockstep_cdc.changelog (xid, seq);"
	"CREATE TABLE IF NOT EXISTS lockstep_cdc.tables ("
	" relid oid PRIMARY KEY, schema_name text NOT NULL, table_name text NOT NULL,"
	" key_cols text[] NOT NULL, installed_at timestamptz NOT NULL DEFAULT now());"
	/* Version 2: what the table's capture function was made for: "<version>|<key_sig>". */
	"ALTER TABLE lockstep_cdc.tables ADD COLUMN IF NOT EXISTS key_attnums int2[],"
	" ADD COLUMN IF NOT EXISTS capture text;"
	/* The signature of a table's key columns, from the catalog: for each attribute number
	 * (in key order) its name, type and pg_attribute row version, "-" once dropped. Any
	 * change to a key column's catalog row (a rename, a drop, ALTER COLUMN TYPE, even one
	 * undone since) changes it. */
	"CREATE OR REPLACE FUNCTION lockstep_cdc.key_sig(rel oid, attnums int2[]) RETURNS text"
	" LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $lockstep$"
	" SELECT pg_catalog.string_agg(k.n::text || ':' || COALESCE(a.attname::text || ':' ||"
	" a.atttypid::text || ':' || a.xmin::text, '-'), ',' ORDER BY k.o)"
	" FROM pg_catalog.unnest(attnums) WITH ORDINALITY AS k(n, o)"
	" LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.n"
	" AND NOT a.attisdropped $lockstep$;"
	"CREATE TABLE IF NOT EXISTS lockstep_cdc.consumers ("
	" job text PRIMARY KEY, relid oid NOT NULL, horizon xid8 NOT NULL, xid xid8, seq bigint,"
	" registered_at timestamptz NOT NULL DEFAULT now(),"
	" updated_at timestamptz NOT NULL DEFAULT now());"
	"CREATE OR REPLACE FUNCTION lockstep_cdc.on_truncate() RETURNS trigger LANGUAGE plpgsql"
	" SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $lockstep$\n"
	"BEGIN\n"
	"INSERT INTO lockstep_cdc.changelog (relid, key, op) VALUES (TG_RELID, NULL, 'T');\n"
	"PERFORM pg_notify('lockstep_cdc_' || TG_RELID::text, '');\n"
	"RETURN NULL;\nEND $lockstep$;"
	/* One NOTIFY per statement; PostgreSQL folds equal ones within a transaction. */
	"CREATE OR REPLACE FUNCTION lockstep_cdc.on_statement() RETURNS trigger LANGUAGE plpgsql"
	" SET search_path = pg_catalog, pg_temp AS $lockstep$\n"
	"BEGIN\nPERFORM pg_notify('lockstep_cdc_' || TG_RELID::text, '');\nRETURN NULL;\n"
	"END $lockstep$;";

/* Refuses, with one message naming the privilege and the fix, what would fail later. */
static int check_privileges(struct lk_conn *c, const char *table, const char *relid,
			    struct lk_err *err)
{
	static const char *const sql =
		"SELECT current_user, pg_catalog.current_database(),"
		" pg_catalog.to_regnamespace('lockstep_cdc') IS NOT NULL,"
		" pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),"
		" CASE WHEN pg_catalog.to_regnamespace('lockstep_cdc') IS NULL THEN true ELSE"
		"  pg_catalog.has_schema_privilege('lockstep_cdc', 'CREATE, USAGE') END,"
		" pg_catalog.has_table_privilege($1::oid, 'TRIGGER'),"
		" pg_catalog.has_table_privilege($1::oid, 'SELECT'),"
		" pg_catalog.pg_get_userbyid((SELECT relowner FROM pg_catalog.pg_class"
		"  WHERE oid = $1::oid)),"
		" pg_catalog.current_setting('server_version_num')::int,"
		/* CREATE TRIGGER on a partitioned table clones it onto every partition */
		" (SELECT pg_catalog.string_agg(p.relid::text, ', ' ORDER BY p.relid::text)"
		"  FROM pg_catalog.pg_partition_tree($1::oid::pg_catalog.regclass) p"
		"  WHERE p.relid <> $1::oid"
		"  AND NOT pg_catalog.has_table_privilege(p.relid, 'TRIGGER')"
		"  AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = p.relid"
		"  AND g.tgname = 'lockstep_cdc_capture'))";
	const char *params[] = {relid};
	PGresult *res = PQexecParams(lk_pg_q(c), sql, 1, NULL, params, NULL, NULL, 0);
	const char *user, *db, *owner;
	int rc = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "check change-capture privileges");
		goto out;
	}
	user = PQgetvalue(res, 0, 0);
	db = PQgetvalue(res, 0, 1);
	owner = PQgetvalue(res, 0, 7);
	if (atoi(PQgetvalue(res, 0, 8)) < 130000) {
		lk_err_set(err, LK_ERR_SCHEMA,
			   "mode realtime needs PostgreSQL 13 or newer on the source (database "
			   "'%s' runs %s)",
			   c->dbname, PQparameterStatus(c->pg, "server_version"));
	} else if (PQgetvalue(res, 0, 2)[0] == 'f' && PQgetvalue(res, 0, 3)[0] == 'f') {
		lk_err_set(err, LK_ERR_PERMISSION,
			   "role %s may not create schema lockstep_cdc in database %s (it needs "
			   "CREATE on the database): GRANT CREATE ON DATABASE \"%s\" TO \"%s\"; "
			   "or have the owner run: CREATE SCHEMA lockstep_cdc AUTHORIZATION \"%s\"",
			   user, db, db, user, user);
	} else if (PQgetvalue(res, 0, 4)[0] == 'f') {
		lk_err_set(err, LK_ERR_PERMISSION,
			   "role %s lacks CREATE and USAGE on schema lockstep_cdc in database %s: "
			   "GRANT CREATE, USAGE ON SCHEMA lockstep_cdc TO \"%s\"",
			   user, db, user);
	} else if (PQgetvalue(res, 0, 5)[0] == 'f') {
		lk_err_set(err, LK_ERR_PERMISSION,
			   "role %s lacks the TRIGGER privilege on %s (owned by %s) that change "
			   "capture needs: GRANT TRIGGER ON %s TO \"%s\", or run as the owner",
			   user, table, owner, table, user);
	} else if (PQgetvalue(res, 0, 6)[0] == 'f') {
		lk_err_set(err, LK_ERR_PERMISSION,
			   "role %s lacks SELECT on %s: GRANT SELECT ON %s TO \"%s\"", user, table,
			   table, user);
	} else if (!PQgetisnull(res, 0, 9)) {
		lk_err_set(err, LK_ERR_PERMISSION,
			   "role %s lacks the TRIGGER privilege on partitions of %s that change "
			   "capture needs (PostgreSQL adds its trigger to each partition): GRANT "
			   "TRIGGER ON %s TO \"%s\", or run as the owner",
			   user, table, PQgetvalue(res, 0, 9), user);
	} else {
		rc = 0;
	}
out:
	PQclear(res);
	return rc;
}

/* Resolves the table's oid, never through search_path. */
static int table_oid(struct lk_conn *c, const struct lk_tref *t, char *oid, size_t size,
		     struct lk_err *err)
{
	const char *params[] = {t->schema ? t->schema : "public", t->name};
	char name[300];

	if (one_value(c,
		      "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
		      " ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
		      2, params, oid, size, err) < 0)
		return -1;
	if (!oid[0]) {
		lk_tref_format(t, name, sizeof(name));
		return lk_err_set(err, LK_ERR_NOTFOUND, "table %s does not exist in database '%s'",
				  name, c->dbname);
	}
	return 0;
}

/* Refuses objects from a newer lockstep; records our version (a fresh install, an upgrade). */
static int check_version(struct lk_conn *c, struct lk_err *err)
{
	char v[32];

	if (one_value(c, "SELECT max(version) FROM lockstep_cdc.meta", 0, NULL, v, sizeof(v), err) <
	    0)
		return -1;
	if (!v[0])
		return cmd(c, "INSERT INTO lockstep_cdc.meta (version) VALUES (" CDC_VERSION_S ")",
			   0, NULL, err);
	if (atoi(v) < CDC_VERSION) /* the tables' functions are replaced one by one */
		return cmd(c, "UPDATE lockstep_cdc.meta SET version = " CDC_VERSION_S, 0, NULL,
			   err);
	if (atoi(v) > CDC_VERSION)
		return lk_err_set(err, LK_ERR_CONFLICT,
				  "change capture on database '%s' was installed by a newer "
				  "lockstep (version %s; this build knows %d)",
				  c->dbname, v, CDC_VERSION);
	return 0;
}

/* Registers the table with its key; another key already registered -> LK_ERR_CONFLICT. */
static int register_table(struct lk_conn *c, const char *relid, const struct lk_cdc_table *t,
			  struct lk_err *err)
{
	struct lk_buf keys = LK_BUF_INIT;
	const char *params[4];
	char have[1024], name[300];
	int rc = -1;

	lk_buf_addch(&keys, '{');
	for (int i = 0; i < t->nkey; i++) {
		lk_buf_adds(&keys, i ? "," : "");
		lk_buf_add_json_str(&keys, t->key_cols[i], strlen(t->key_cols[i]));
	}
	lk_buf_addch(&keys, '}');
	params[0] = relid;
	params[1] = t->table->schema ? t->table->schema : "public";
	params[2] = t->table->name;
	params[3] = keys.buf;
	if (cmd(c,
		"INSERT INTO lockstep_cdc.tables (relid, schema_name, table_name, key_cols)"
		" VALUES ($1, $2, $3, $4) ON CONFLICT (relid) DO NOTHING",
		4, params, err) < 0)
		goto out;
	/* the same columns by attribute number under new names: a key column renamed */
	if (one_value(
		    c,
		    "SELECT CASE WHEN key_cols = $2::text[] THEN ''"
		    " WHEN key_attnums = (SELECT pg_catalog.array_agg(a.attnum ORDER BY k.o)"
		    " FROM pg_catalog.unnest($2::text[]) WITH ORDINALITY AS k(name, o)"
		    " JOIN pg_catalog.pg_attribute a ON a.attrelid = $1::oid AND a.attname = k.name"
		    " AND a.attnum > 0 AND NOT a.attisdropped) THEN 'renamed' ELSE"
		    " '(' || pg_catalog.array_to_string(key_cols, ', ') || ')' END"
		    " FROM lockstep_cdc.tables WHERE relid = $1",
		    2, (const char *[]){relid, keys.buf}, have, sizeof(have), err) < 0)
		goto out;
	if (strcmp(have, "renamed") == 0) {
		rc = cmd(c, "UPDATE lockstep_cdc.tables SET key_cols = $2::text[] WHERE relid = $1",
			 2, (const char *[]){relid, keys.buf}, err);
		goto out;
	}
	if (have[0]) {
		lk_buf_reset(&keys); /* the same form as `have`: (a, b) */
		lk_buf_addch(&keys, '(');
		for (int i = 0; i < t->nkey; i++)
			lk_buf_addf(&keys, "%s%s", i ? ", " : "", t->key_cols[i]);
		lk_buf_addch(&keys, ')');
		lk_tref_format(t->table, name, sizeof(name));
		lk_err_set(err, LK_ERR_CONFLICT,
			   "%s is already captured with key %s; this job's key is %s (jobs reading "
			   "one table must use the same key)",
			   name, have, keys.buf);
		goto out;
	}
	rc = 0;
out:
	lk_buf_release(&keys);
	return rc;
}

/* The key columns' attribute numbers and signature now, and what the function was made for. */
static int capture_state(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t,
			 char **attnums, char **sig, char **made, struct lk_err *err)
{
	static const char *const sql =
		"SELECT x.attnums::text, lockstep_cdc.key_sig($1::oid, x.attnums), t.capture"
		" FROM (SELECT pg_catalog.array_agg(a.attnum ORDER BY k.o) AS attnums,"
		"  pg_catalog.count(a.attnum) AS n FROM pg_catalog.unnest($2::text[])"
		"  WITH ORDINALITY AS k(name, o) LEFT JOIN pg_catalog.pg_attribute a"
		"  ON a.attrelid = $1::oid AND a.attname = k.name AND a.attnum > 0"
		"  AND NOT a.attisdropped) x, lockstep_cdc.tables t"
		" WHERE t.relid = $1::oid AND x.n = pg_catalog.cardinality($2::text[])";
	struct lk_buf keys = LK_BUF_INIT;
	PGresult *res;
	int rc = 0;

	lk_buf_addch(&keys, '{');
	for (int i = 0; i < t->nkey; i++) {
		lk_buf_adds(&keys, i ? "," : "");
		lk_buf_add_json_str(&keys, t->key_cols[i], strlen(t->key_cols[i]));
	}
	lk_buf_addch(&keys, '}');
	res = PQexecParams(lk_pg_q(c), sql, 2, NULL, (const char *[]){oid, keys.buf}, NULL, NULL,
			   0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = lk_pg_err(err, c, res, "read the key columns of the captured table");
	else if (PQntuples(res) != 1)
		rc = lk_err_set(err, LK_ERR_SCHEMA,
				"a key column of the table to capture is missing");
	if (rc == 0) {
		*attnums = lk_xstrdup(PQgetvalue(res, 0, 0));
		*sig = lk_xstrdup(PQgetvalue(res, 0, 1));
		*made = PQgetisnull(res, 0, 2) ? NULL : lk_xstrdup(PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	lk_buf_release(&keys);
	return rc;
}

/* Logs an LK_CDC_OP_GAP entry for table oid (why follows its name) when SQL `when` is true
 * ($1: the oid, $3: the key's attribute numbers), and a warning saying so. */
static int gap_if(struct lk_conn *c, const char *oid, const char *attnums, const char *when,
		  const char *why, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char logged[512];
	int rc;

	lk_buf_addf(&sql,
		    "INSERT INTO lockstep_cdc.changelog (relid, key, op) SELECT $1::oid,"
		    " pg_catalog.to_jsonb($1::oid::pg_catalog.regclass::text || $2), 'G'"
		    " WHERE pg_catalog.cardinality($3::int2[]) > 0 AND (%s)"
		    " RETURNING key #>> '{}'",
		    when);
	rc = one_value(c, sql.buf, 3, (const char *[]){oid, why, attnums}, logged, sizeof(logged),
		       err);
	if (rc == 0 && logged[0])
		lk_log_warn("change capture of %s: every job reading the table re-snapshots",
			    logged);
	lk_buf_release(&sql);
	return rc < 0 ? lk_err_prefix(err, "change capture on database '%s'", c->dbname) : 0;
}

/*
 * Makes (or replaces, in place) the table's capture function when it was made by an older
 * lockstep or for key columns that have changed since, and records what it is made for in
 * lockstep_cdc.tables ("<version>|<key_sig>"). Changed key columns: the changelog's entries
 * since the change may hold other columns' values, or none; an LK_CDC_OP_GAP entry makes
 * every consumer re-snapshot. An older function with the same key columns: its entries stay
 * valid (the applier matches keys in the source's types) and nobody re-snapshots.
 */
static int install_capture(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t,
			   int64_t relid, bool remake, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT, cap = LK_BUF_INIT;
	char *attnums = NULL, *sig = NULL, *made = NULL, have[8];
	const char *was;
	int rc = -1;

	if (capture_state(c, oid, t, &attnums, &sig, &made, err) < 0 ||
	    one_value(c,
		      "SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = "
		      "'lockstep_cdc'::regnamespace AND proname = 'capture_' || $1",
		      1, (const char *[]){oid}, have, sizeof(have), err) < 0)
		goto out;
	lk_buf_addf(&cap, CDC_VERSION_S "|%s", sig);
	was = made && strchr(made, '|') ? strchr(made, '|') + 1 : NULL;
	if (!remake && have[0] && made && strcmp(made, cap.buf) == 0) {
		rc = 0; /* up to date */
		goto out;
	}
	capture_function(&sql, relid, t);
	if (cmd(c, sql.buf, 0, NULL, err) < 0 ||
	    cmd(c,
		"UPDATE lockstep_cdc.tables SET key_attnums = $2::int2[], capture = $3"
		" WHERE relid = $1::oid",
		3, (const char *[]){oid, attnums, cap.buf}, err) < 0)
		goto out;
	if (was && strcmp(was, sig) != 0)
		rc = gap_if(
			c, oid, attnums, "true",
			": its key columns changed since their change capture was made (renamed, "
			"dropped or of another type)",
			err);
	else if (have[0] && !made) /* version 1: char(n) keys were logged without padding */
		rc = gap_if(
			c, oid, attnums,
			"EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::oid"
			" AND a.attnum = ANY ($3::int2[]) AND a.atttypid = 'pg_catalog.bpchar'::"
			"pg_catalog.regtype) AND EXISTS (SELECT FROM lockstep_cdc.changelog l"
			" WHERE l.relid = $1::oid)",
			": change capture was upgraded, and the char(n) keys the previous version "
			"logged lack their padding",
			err);
	else
		rc = 0;
out:
	free(attnums);
	free(sig);
	free(made);
	lk_buf_release(&sql);
	lk_buf_release(&cap);
	return rc;
}

/* Creates the table's triggers that are missing (CREATE TRIGGER locks out writers). */
static int create_triggers(struct lk_conn *c, const char *relid, const struct lk_cdc_table *t,
			   int64_t id, struct lk_err *err)
{
	static const char *const names[] = {"lockstep_cdc_capture", "lockstep_cdc_notify",
					    "lockstep_cdc_truncate"};
	struct lk_buf sql = LK_BUF_INIT;
	char have[8], owner[8];
	int rc = 0;

	if (one_value(c,
		      "SELECT pg_catalog.pg_has_role(relowner, 'USAGE') FROM pg_catalog.pg_class"
		      " WHERE oid = $1::oid",
		      1, (const char *[]){relid}, owner, sizeof(owner), err) < 0)
		return -1;
	for (int i = 0; i < 3 && rc == 0; i++) {
		const char *params[] = {relid, names[i]};

		if (one_value(c,
			      "SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1::oid AND"
			      " tgname = $2",
			      2, params, have, sizeof(have), err) < 0)
			return -1;
		if (have[0])
			continue;
		lk_buf_reset(&sql);
		lk_buf_addf(&sql, "CREATE TRIGGER %s AFTER ", names[i]);
		lk_buf_adds(&sql, i == 2 ? "TRUNCATE" : "INSERT OR UPDATE OR DELETE");
		lk_buf_adds(&sql, " ON ");
		lk_quote_tref_for(&sql, t->table, LK_DB_POSTGRES);
		if (i == 0)
			lk_buf_addf(&sql,
				    " FOR EACH ROW EXECUTE FUNCTION lockstep_cdc.capture_%" PRId64
				    "()",
				    id);
		else
			lk_buf_addf(&sql, " FOR EACH STATEMENT EXECUTE FUNCTION lockstep_cdc.%s()",
				    i == 1 ? "on_statement" : "on_truncate");
		rc = cmd(c, sql.buf, 0, NULL, err);
		/* Fire also under session_replication_role = replica (a source that is itself
		 * a logical-replication subscriber); only the owner may say so. */
		if (rc == 0 && owner[0] == 't') {
			lk_buf_reset(&sql);
			lk_buf_adds(&sql, "ALTER TABLE ");
			lk_quote_tref_for(&sql, t->table, LK_DB_POSTGRES);
			lk_buf_addf(&sql, " ENABLE ALWAYS TRIGGER %s", names[i]);
			rc = cmd(c, sql.buf, 0, NULL, err);
		}
	}
	lk_buf_release(&sql);
	return rc;
}

int lk_pgc_repair(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t, int64_t relid,
		  bool remake, struct lk_err *err)
{
	if (install_capture(c, oid, t, relid, remake, err) < 0)
		return -1;
	return create_triggers(c, oid, t, relid, err);
}

/* Sets *current when this build's objects are installed already (nothing to create). */
static int installed_version(struct lk_conn *c, bool *current, struct lk_err *err)
{
	char v[32];

	*current = false;
	if (one_value(c, "SELECT pg_catalog.to_regclass('lockstep_cdc.meta') IS NOT NULL", 0, NULL,
		      v, sizeof(v), err) < 0)
		return -1;
	if (v[0] != 't')
		return 0;
	/* No row (""): the health objects are not there yet either. */
	if (one_value(c,
		      "SELECT max(version) FROM lockstep_cdc.meta HAVING EXISTS (SELECT FROM"
		      " pg_catalog.pg_attribute WHERE attrelid = 'lockstep_cdc.tables'::regclass"
		      " AND attname = 'capture_sig')",
		      0, NULL, v, sizeof(v), err) < 0)
		return -1;
	*current = v[0] && atoi(v) == CDC_VERSION;
	return 0;
}

/*
 * One install attempt in one transaction. DDL waits behind open transactions on the
 * table and new writers queue behind the DDL, so each attempt gives up after 2 s
 * (55P03) rather than stall the application; the caller retries.
 */
static int install_once(struct lk_conn *c, const struct lk_cdc_table *t, const char *oid,
			int64_t relid, struct lk_err *err)
{
	bool current = false;
	int rc = -1;

	if (installed_version(c, &current, err) < 0 ||
	    lk_pg_cmd(c, "BEGIN", 0, NULL, NULL, err) < 0)
		return -1;
	c->in_txn = true;
	if (cmd(c,
		"SET LOCAL lock_timeout = '2s';"
		" SELECT pg_catalog.pg_advisory_xact_lock(" CDC_LOCK ")",
		0, NULL, err) < 0)
		goto out;
	/* CREATE INDEX IF NOT EXISTS locks the changelog against writers even when the
	 * index exists: an up-to-date install creates nothing. */
	/* Again in the transaction, before the first read of lockstep_cdc: the schema may
	 * have been made by another role since the check before it. */
	if (!current && cmd(c, base_objects, 0, NULL, err) < 0)
		goto out;
	if (lk_pgc_check_trust(c, oid, err) < 0)
		goto out;
	if (!current &&
	    (check_version(c, err) < 0 || cmd(c, lk_pgc_health_objects, 0, NULL, err) < 0))
		goto out;
	/* The health pass repairs capture, saying so with a gap entry when it was off. */
	if (register_table(c, oid, t, err) < 0 || lk_pgc_health(c, oid, t, relid, err) < 0)
		goto out;
	rc = lk_pg_cmd(c, "COMMIT", 0, NULL, NULL, err);
	c->in_txn = false;
out:
	if (rc < 0)
		abort_txn(c);
	return rc;
}

static int pg_cdc_install(struct lk_conn *c, const struct lk_cdc_table *t, int64_t *relid,
			  struct lk_err *err)
{
	char oid[32], name[300];
	int rc = -1;

	lk_tref_format(t->table, name, sizeof(name));
	if (table_oid(c, t->table, oid, sizeof(oid), err) < 0 ||
	    lk_pgc_check_trust(c, oid, err) < 0 || check_privileges(c, name, oid, err) < 0)
		return -1;
	*relid = strtoll(oid, NULL, 10);
	for (int attempt = 0; attempt < 30; attempt++) {
		lk_err_clear(err);
		rc = install_once(c, t, oid, *relid, err);
		if (rc == 0 || strcmp(err->sqlstate, "55P03") != 0)
			break;
		if (attempt == 0)
			lk_log_info("waiting for open transactions on %s to end to install change "
				    "capture (retrying every second)",
				    name);
		lk_sleep_ms(1000, NULL);
	}
	if (rc < 0) {
		if (strcmp(err->sqlstate, "42501") == 0)
			err->code = LK_ERR_PERMISSION;
		if (strcmp(err->sqlstate, "55P03") == 0)
			err->transient = true;
		lk_err_prefix(err, "cannot install change capture on %s", name);
	}
	return rc;
}

static int pg_cdc_check(struct lk_conn *c, const struct lk_cdc_table *t, struct lk_err *err)
{
	char oid[32], name[300];

	lk_tref_format(t->table, name, sizeof(name));
	if (table_oid(c, t->table, oid, sizeof(oid), err) < 0 ||
	    lk_pgc_check_trust(c, oid, err) < 0 || check_privileges(c, name, oid, err) < 0)
		return lk_err_prefix(err, "change capture on %s", name);
	return 0;
}

static int pg_cdc_register(struct lk_conn *c, const char *job, int64_t relid, struct lk_cdc_pos *h,
			   struct lk_err *err)
{
	char id[32], v[32];
	const char *params[] = {job, id};

	(void)snprintf(id, sizeof(id), "%" PRId64, relid);
	/* Under the lock uninstall takes, and only while the table is still captured: an
	 * uninstall of the table's last other consumer, between this job's install and now,
	 * dropped its triggers, and a row registered after that would stream nothing. */
	if (lk_pg_cmd(c, "BEGIN", 0, NULL, NULL, err) < 0)
		return lk_err_prefix(err, "cannot register job '%s' as a consumer", job);
	c->in_txn = true;
	if (cmd(c, "SELECT pg_catalog.pg_advisory_xact_lock(" CDC_LOCK ")", 0, NULL, err) < 0 ||
	    one_value(c, "SELECT 1 FROM lockstep_cdc.tables WHERE relid = $1::oid", 1,
		      (const char *[]){id}, v, sizeof(v), err) < 0) {
		abort_txn(c);
		return lk_err_prefix(err, "cannot register job '%s' as a consumer", job);
	}
	if (!v[0]) {
		abort_txn(c);
		lk_err_set(
			err, LK_ERR_CONFLICT,
			"cannot register job '%s' as a consumer: the change capture of its table "
			"was removed since it was installed (`lockstep uninstall` of the table's "
			"last other job?); the next run installs it again",
			job);
		err->transient = true;
		return -1;
	}
	if (one_value(c,
		      "INSERT INTO lockstep_cdc.consumers (job, relid, horizon)"
		      " VALUES ($1, $2, "
		      "pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()))"
		      " ON CONFLICT (job) DO UPDATE SET relid = EXCLUDED.relid,"
		      " horizon = EXCLUDED.horizon, xid = NULL, seq = NULL,"
		      " registered_at = now(), updated_at = now()"
		      " RETURNING horizon::text",
		      2, params, v, sizeof(v), err) < 0 ||
	    lk_pg_cmd(c, "COMMIT", 0, NULL, NULL, err) < 0) {
		abort_txn(c);
		return lk_err_prefix(err, "cannot register job '%s' as a consumer", job);
	}
	c->in_txn = false;
	*h = (struct lk_cdc_pos){strtoll(v, NULL, 10), 0, 0};
	return 0;
}

static int pg_cdc_consumer_get(struct lk_conn *c, const char *job, int64_t relid, bool *found,
			       struct lk_err *err)
{
	char id[32], v[8];
	const char *params[] = {job, id};

	(void)snprintf(id, sizeof(id), "%" PRId64, relid);
	if (one_value(c, "SELECT 1 FROM lockstep_cdc.consumers WHERE job = $1 AND relid = $2::oid",
		      2, params, v, sizeof(v), err) < 0)
		return -1;
	*found = v[0] != '\0';
	return 0;
}

static int pg_cdc_advance(struct lk_conn *c, const char *job, const struct lk_cdc_pos *p,
			  struct lk_err *err)
{
	char h[32], x[32], s[32];
	const char *params[] = {job, h, p->xid ? x : NULL, p->xid ? s : NULL};

	(void)snprintf(h, sizeof(h), "%" PRId64, p->horizon);
	(void)snprintf(x, sizeof(x), "%" PRId64, p->xid);
	(void)snprintf(s, sizeof(s), "%" PRId64, p->seq);
	int64_t n = 0;

	if (lk_pg_cmd(c,
		      "UPDATE lockstep_cdc.consumers SET horizon = $2::xid8, xid = $3::xid8,"
		      " seq = $4::bigint, updated_at = now() WHERE job = $1",
		      4, params, &n, err) < 0)
		return lk_err_prefix(err, "advance consumer '%s'", job);
	if (n == 0) /* uninstalled meanwhile: what it still needed may be pruned */
		return lk_err_set(err, LK_ERR_NOTFOUND,
				  "job '%s' is no longer registered as a consumer of its source "
				  "table's changelog",
				  job);
	return 0;
}

/*
 * The first statement of a read: takes the snapshot (every xid below its xmin, copied into
 * hv, has finished) and checks, in it, that the table's key columns are still those its
 * capture function was made for. Any entry this snapshot shows was written after every
 * change to them it shows, so a changed key column is seen no later than the first entry
 * it may have spoilt; the run then stops, and at the next start install() remakes capture
 * with a gap entry that makes every consumer re-snapshot.
 */
static int read_horizon(struct lk_conn *c, const char *id, char *hv, size_t size,
			struct lk_err *err)
{
	static const char *const sql =
		"SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text,"
		" COALESCE((SELECT t.capture IS NULL OR pg_catalog.split_part(t.capture, '|', 2) ="
		" lockstep_cdc.key_sig(t.relid, t.key_attnums) FROM lockstep_cdc.tables t"
		" WHERE t.relid = $1::oid), true), $1::oid::regclass::text";
	PGresult *res = PQexecParams(lk_pg_q(c), sql, 1, NULL, (const char *[]){id}, NULL, NULL, 0);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = lk_pg_err(err, c, res, "read the changelog");
	} else if (PQgetvalue(res, 0, 1)[0] != 't') {
		rc = lk_err_set(
			err, LK_ERR_SCHEMA,
			"a key column of %s was renamed, dropped or changed type since its "
			"change capture was made: the job stops here, and re-snapshots when "
			"it starts again (if its key columns still exist)",
			PQgetvalue(res, 0, 2));
	} else {
		(void)snprintf(hv, size, "%s", PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return rc;
}

static int pg_cdc_read(struct lk_conn *c, int64_t relid, const struct lk_cdc_pos *from, int max,
		       struct lk_rows *out, int64_t *h, struct lk_err *err)
{
	static const char *const sql =
		/* ORDER BY names the table's columns: a bare "seq" would sort by the output
		 * column seq::text, where "10000" < "6875". */
		"SELECT l.xid::text, l.seq::text, l.op::text, l.key::text"
		" FROM lockstep_cdc.changelog l WHERE l.relid = $1::oid"
		" AND (l.xid, l.seq) > ($2::xid8, $3::bigint) AND l.xid < $4::xid8"
		" ORDER BY l.xid, l.seq LIMIT $5";
	char id[32], x[32], s[32], hv[32], lim[16];
	const char *params[] = {id, x, s, hv, lim};
	PGresult *res;
	int rc = -1;

	(void)snprintf(id, sizeof(id), "%" PRId64, relid);
	if (c->read_relid != relid) { /* its name, for the LOCK before the snapshot */
		if (one_value(c,
			      "SELECT pg_catalog.quote_ident(n.nspname) || '.' ||"
			      " pg_catalog.quote_ident(r.relname) FROM pg_catalog.pg_class r"
			      " JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace"
			      " WHERE r.oid = $1::oid",
			      1, (const char *[]){id}, c->read_name, sizeof(c->read_name), err) < 0)
			return -1;
		c->read_relid = relid;
	}
	if (lk_pg_begin_read(c, c->read_name[0] ? c->read_name : NULL, err) < 0) {
		c->read_relid = 0; /* renamed or gone: look again next time */
		return -1;
	}
	if (read_horizon(c, id, hv, sizeof(hv), err) < 0)
		return -1;
	*h = strtoll(hv, NULL, 10);
	/* After (xid, seq) when a page stopped inside the window, else from the horizon. */
	(void)snprintf(x, sizeof(x), "%" PRId64,
		       from->xid > from->horizon ? from->xid : from->horizon);
	(void)snprintf(s, sizeof(s), "%" PRId64, from->xid >= from->horizon ? from->seq : 0);
	(void)snprintf(lim, sizeof(lim), "%d", max);
	res = PQexecParams(lk_pg_q(c), sql, 5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "read the changelog");
		goto out;
	}
	if (out->nrows == 0)
		lk_rows_set_ncols(out, LK_CDC_NCOLS);
	for (int r = 0; r < PQntuples(res); r++) {
		lk_rows_add(out);
		for (int f = 0; f < LK_CDC_NCOLS; f++) {
			if (!PQgetisnull(res, r, f))
				lk_rows_set(out, out->nrows - 1, f, PQgetvalue(res, r, f),
					    (size_t)PQgetlength(res, r, f));
		}
	}
	rc = 0;
out:
	PQclear(res);
	return rc;
}

static int pg_cdc_catch_up_target(struct lk_conn *c, int64_t *target, struct lk_err *err)
{
	char v[32];

	if (one_value(c, "SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())", 0,
		      NULL, v, sizeof(v), err) < 0)
		return -1;
	*target = strtoll(v, NULL, 10);
	return 0;
}

static int pg_cdc_prune(struct lk_conn *c, int64_t relid, int max, int64_t *deleted,
			struct lk_err *err)
{
	char id[32], lim[16];
	const char *params[] = {id, lim};

	(void)snprintf(id, sizeof(id), "%" PRId64, relid);
	(void)snprintf(lim, sizeof(lim), "%d", max);
	/* Entries below min over consumers of GREATEST(horizon, xid) are applied by all. */
	if (lk_pg_cmd(c,
		      "DELETE FROM lockstep_cdc.changelog WHERE ctid = ANY (ARRAY("
		      " SELECT ctid FROM lockstep_cdc.changelog WHERE relid = $1::oid AND xid < ("
		      "  SELECT min(GREATEST(horizon, COALESCE(xid, horizon)))"
		      "  FROM lockstep_cdc.consumers WHERE relid = $1::oid)"
		      " LIMIT $2::int))",
		      2, params, deleted, err) < 0)
		return lk_err_prefix(err, "prune the changelog");
	return 0;
}

static int pg_cdc_stalled(struct lk_conn *c, int64_t relid, const char *self, double stall_s,
			  struct lk_rows *out, struct lk_err *err)
{
	char id[32], secs[32];
	const char *params[] = {id, self, secs};
	PGresult *res;
	int rc = 0;

	(void)snprintf(id, sizeof(id), "%" PRId64, relid);
	(void)snprintf(secs, sizeof(secs), "%.3f", stall_s);
	res = PQexecParams(
		lk_pg_q(c),
		"SELECT job, round(extract(epoch FROM now() - updated_at))::text, p.n::text"
		" FROM lockstep_cdc.consumers k, LATERAL (SELECT count(*) AS n"
		"  FROM lockstep_cdc.changelog l WHERE l.relid = k.relid"
		"  AND l.xid >= GREATEST(k.horizon, COALESCE(k.xid, k.horizon))) p"
		" WHERE k.relid = $1::oid AND k.job <> $2"
		" AND k.updated_at < now() - make_interval(secs => $3::float8) AND p.n > 0",
		3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = lk_pg_err(err, c, res, "list stalled consumers");
	} else {
		if (out->nrows == 0)
			lk_rows_set_ncols(out, 3);
		for (int r = 0; r < PQntuples(res); r++) {
			lk_rows_add(out);
			for (int f = 0; f < 3; f++)
				lk_rows_set(out, out->nrows - 1, f, PQgetvalue(res, r, f),
					    (size_t)PQgetlength(res, r, f));
		}
	}
	PQclear(res);
	return rc;
}

/*
 * Behind pgbouncer in transaction pooling LISTEN is silently useless (DESIGN decision 6).
 * pgbouncer listens on 6432 by default and forwards to a server port that differs from
 * the one we dialled; either sign earns a warning (the 1 s fallback poll still applies).
 */
static void warn_if_pooled(struct lk_conn *c)
{
	const char *port = PQport(c->pg);
	char server[16] = "";
	struct lk_err ignored = LK_ERR_INIT;

	if (one_value(c, "SELECT pg_catalog.inet_server_port()", 0, NULL, server, sizeof(server),
		      &ignored) < 0)
		return;
	if (!port || !*port || port[0] == '/')
		return;
	if (strcmp(port, "6432") == 0 || (server[0] && strcmp(server, port) != 0))
		lk_log_warn("database '%s' looks like it goes through a connection pooler such as "
			    "pgbouncer (dialled port %s, server port %s): in transaction pooling "
			    "LISTEN wake-ups are lost and changes arrive only by the 1 s poll; set "
			    "listen_url to a direct connection",
			    c->dbname, port, server[0] ? server : "unknown");
}

static int pg_cdc_listen(struct lk_conn *c, int64_t relid, struct lk_err *err)
{
	char sql[64];

	warn_if_pooled(c);
	(void)snprintf(sql, sizeof(sql), "LISTEN lockstep_cdc_%" PRId64, relid);
	return cmd(c, sql, 0, NULL, err);
}

/* Takes the notifications libpq has read; true when there was one. */
static bool drain_notifies(struct lk_conn *c)
{
	PGnotify *n;
	bool any = false;

	while ((n = PQnotifies(c->pg)) != NULL) {
		any = true;
		PQfreemem(n);
	}
	return any;
}

static int pg_cdc_wait(struct lk_conn *c, int timeout_ms, bool *woken, struct lk_err *err)
{
	int64_t deadline = lk_mono_ms() + timeout_ms;
	struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};

	*woken = false;
	for (;;) {
		int64_t left = deadline - lk_mono_ms();
		int n;

		if (!PQconsumeInput(c->pg))
			return lk_pg_err(err, c, NULL, "wait for changes");
		if (drain_notifies(c)) {
			*woken = true;
			return 0;
		}
		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno != EINTR)
			return lk_err_set(err, LK_ERR_IO, "poll: %s", strerror(errno));
		if (n > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) &&
		    !(pfd.revents & POLLIN)) {
			lk_err_set(err, LK_ERR_PG,
				   "wait for changes: the connection to '%s' closed", c->dbname);
			err->transient = true;
			return -1;
		}
	}
}

static int drop_table_capture(struct lk_conn *c, const char *oid, struct lk_err *err)
{
	static const char *const names[] = {"lockstep_cdc_capture", "lockstep_cdc_notify",
					    "lockstep_cdc_truncate"};
	struct lk_buf sql = LK_BUF_INIT;
	char tbl[700];
	int rc = 0;

	/* The table may have been dropped since (its triggers went with it). */
	if (one_value(c,
		      "SELECT $1::oid::regclass::text FROM pg_catalog.pg_class WHERE oid = $1::oid",
		      1, (const char *[]){oid}, tbl, sizeof(tbl), err) < 0)
		return -1;
	for (int i = 0; i < 3 && rc == 0 && tbl[0]; i++) {
		lk_buf_reset(&sql);
		lk_buf_addf(&sql, "DROP TRIGGER IF EXISTS %s ON %s", names[i], tbl);
		rc = cmd(c, sql.buf, 0, NULL, err);
	}
	if (rc == 0)
		rc = lk_pgc_drop_part_triggers(c, oid, err);
	if (rc == 0) {
		lk_buf_reset(&sql);
		lk_buf_addf(&sql, "DROP FUNCTION IF EXISTS lockstep_cdc.capture_%s()", oid);
		rc = cmd(c, sql.buf, 0, NULL, err);
	}
	if (rc == 0)
		rc = cmd(c, "DELETE FROM lockstep_cdc.changelog WHERE relid = $1::oid", 1,
			 (const char *[]){oid}, err);
	if (rc == 0)
		rc = cmd(c, "DELETE FROM lockstep_cdc.tables WHERE relid = $1::oid", 1,
			 (const char *[]){oid}, err);
	lk_buf_release(&sql);
	return rc;
}

static int uninstall_in_txn(struct lk_conn *c, const char *job, const struct lk_tref *t,
			    bool *found, bool *dropped, bool *all_gone, struct lk_err *err)
{
	const char *sp[] = {t->schema ? t->schema : "public", t->name};
	char oid[32], v[32];

	if (cmd(c, "SELECT pg_catalog.pg_advisory_xact_lock(" CDC_LOCK ")", 0, NULL, err) < 0 ||
	    one_value(c, "DELETE FROM lockstep_cdc.consumers WHERE job = $1 RETURNING relid", 1,
		      (const char *[]){job}, oid, sizeof(oid), err) < 0)
		return -1;
	*found = oid[0] != '\0';
	if (!*found && one_value(c,
				 "SELECT relid FROM lockstep_cdc.tables WHERE schema_name = $1"
				 " AND table_name = $2",
				 2, sp, oid, sizeof(oid), err) < 0)
		return -1;
	if (oid[0]) {
		if (one_value(c,
			      "SELECT count(*) FROM lockstep_cdc.consumers WHERE relid = $1::oid",
			      1, (const char *[]){oid}, v, sizeof(v), err) < 0)
			return -1;
		if (atoll(v) == 0) {
			if (drop_table_capture(c, oid, err) < 0)
				return -1;
			*dropped = true;
		}
	}
	if (one_value(c,
		      "SELECT (SELECT count(*) FROM lockstep_cdc.tables) +"
		      " (SELECT count(*) FROM lockstep_cdc.consumers)",
		      0, NULL, v, sizeof(v), err) < 0)
		return -1;
	if (atoll(v) == 0) {
		if (cmd(c, "DROP SCHEMA lockstep_cdc CASCADE", 0, NULL, err) < 0)
			return -1;
		*all_gone = true;
	}
	return 0;
}

static int pg_cdc_uninstall(struct lk_conn *c, const char *job, const struct lk_tref *t,
			    bool *found, bool *dropped, bool *all_gone, struct lk_err *err)
{
	char v[8];

	*found = *dropped = *all_gone = false;
	if (one_value(c, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'lockstep_cdc'", 0,
		      NULL, v, sizeof(v), err) < 0)
		return -1;
	if (!v[0]) {
		*all_gone = true;
		return 0;
	}
	if (lk_pgc_check_trust(c, NULL, err) < 0 || lk_pg_cmd(c, "BEGIN", 0, NULL, NULL, err) < 0)
		return -1;
	c->in_txn = true;
	if (uninstall_in_txn(c, job, t, found, dropped, all_gone, err) < 0 ||
	    lk_pg_cmd(c, "COMMIT", 0, NULL, NULL, err) < 0) {
		abort_txn(c);
		*found = *dropped = *all_gone = false;
		return -1;
	}
	c->in_txn = false;
	return 0;
}

/* The oldest open writing transaction: it holds every consumer's horizon back. */
static int horizon_holder(struct lk_conn *c, struct lk_cdc_lag *out, struct lk_err *err)
{
	PGresult *res = PQexec(
		lk_pg_q(c), "SELECT pid, extract(epoch FROM now() - xact_start) FROM ("
			    " SELECT pid, xact_start, backend_xid FROM pg_catalog.pg_stat_activity"
			    " WHERE backend_xid IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()"
			    " UNION ALL SELECT 0, prepared, transaction"
			    " FROM pg_catalog.pg_prepared_xacts) a"
			    " ORDER BY pg_catalog.age(backend_xid) DESC LIMIT 1");
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = lk_pg_err(err, c, res, "find the oldest open transaction");
	} else if (PQntuples(res) == 1) {
		out->holder_pid = atoi(PQgetvalue(res, 0, 0));
		out->horizon_age_s = PQgetisnull(res, 0, 1) ? 0 : atof(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return rc;
}

static int pg_cdc_lag(struct lk_conn *c, const char *job, const struct lk_tref *t,
		      struct lk_cdc_lag *out, struct lk_err *err)
{
	const char *params[] = {job};
	PGresult *res;
	char v[8];
	int rc = -1;

	(void)t;
	memset(out, 0, sizeof(*out));
	out->oldest_age_s = -1;
	out->idle_s = -1;
	if (one_value(c, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'lockstep_cdc'", 0,
		      NULL, v, sizeof(v), err) < 0)
		return -1;
	if (!v[0])
		return 0;
	if (lk_pgc_check_trust(c, NULL, err) < 0)
		return -1;
	out->installed = true;
	res = PQexecParams(
		lk_pg_q(c),
		"SELECT extract(epoch FROM now() - k.updated_at), p.n, extract(epoch FROM now() -"
		" p.oldest), (SELECT count(*) FROM lockstep_cdc.changelog l WHERE l.relid = "
		"k.relid)"
		" FROM lockstep_cdc.consumers k, LATERAL (SELECT count(*) AS n, min(at) AS oldest"
		"  FROM lockstep_cdc.changelog l WHERE l.relid = k.relid AND (l.xid, l.seq) >"
		"  (GREATEST(k.horizon, COALESCE(k.xid, k.horizon)),"
		"   CASE WHEN k.xid >= k.horizon THEN k.seq ELSE 0 END)) p"
		" WHERE k.job = $1",
		1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "read the consumer's lag");
		goto out;
	}
	if (PQntuples(res) == 1) {
		out->registered = true;
		out->idle_s = atof(PQgetvalue(res, 0, 0));
		out->pending = atoll(PQgetvalue(res, 0, 1));
		out->oldest_age_s = PQgetisnull(res, 0, 2) ? -1 : atof(PQgetvalue(res, 0, 2));
		out->entries = atoll(PQgetvalue(res, 0, 3));
	}
	rc = horizon_holder(c, out, err);
out:
	PQclear(res);
	return rc;
}

const struct lk_cdc_ops lk_pg_cdc_ops = {
	.install = pg_cdc_install,
	.check = pg_cdc_check,
	.register_consumer = pg_cdc_register,
	.consumer_get = pg_cdc_consumer_get,
	.consumer_advance = pg_cdc_advance,
	.read = pg_cdc_read,
	.catch_up_target = pg_cdc_catch_up_target,
	.prune = pg_cdc_prune,
	.stalled = pg_cdc_stalled,
	.listen = pg_cdc_listen,
	.wait = pg_cdc_wait,
	.uninstall = pg_cdc_uninstall,
	.lag = pg_cdc_lag,
	.check_capture = lk_pgc_check_capture,
	.adopt_consumer = lk_pg_cdc_adopt,
	.orphans = lk_pg_cdc_orphans,
};
