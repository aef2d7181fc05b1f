/*
 * pg_cdc_health.c - capture health on a PostgreSQL source (cdc.h check_capture; issue 17
 * "Capture health, checked"; docs/realtime.md "Capture health and partitions").
 *
 * A table's capture is whole while its lockstep triggers fire on every write. Install
 * records a signature of capture as installed in lockstep_cdc.tables.capture_sig: for the
 * table and each of its partitions, every lockstep trigger's mode (tgenabled) and the xmin
 * of its pg_trigger row, the xmin of the capture function, and the set of leaf partitions.
 * A check compares it with the catalogue in one query. Any difference means changes may
 * have gone unlogged (a DISABLE ... ENABLE pair that is over by the time we look still
 * changed the rows' xmin; a partition attached with rows, detached or dropped): capture is
 * repaired and one gap entry makes every consumer re-snapshot with the sweep. A new
 * partition holding no row older than its cloned capture trigger (CREATE TABLE ...
 * PARTITION OF, then writes) is no gap.
 *
 * Statement triggers are not cloned to partitions: each leaf gets a TRUNCATE trigger that
 * logs a TRUNCATE of the captured table, and a statement trigger that wakes its consumers.
 */
#include "pg_cdc_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "cdc"
#include "core/log.h"

/* The triggers lockstep makes on a captured table's leaf partitions. */
#define PART_TRUNCATE "lockstep_cdc_part_truncate"
#define PART_NOTIFY "lockstep_cdc_part_notify"

const char *const lk_pgc_health_objects =
	"ALTER TABLE lockstep_cdc.tables ADD COLUMN IF NOT EXISTS capture_sig jsonb,"
	" ADD COLUMN IF NOT EXISTS capture_sig_at timestamptz;"
	/* TG_ARGV[0]: the captured table; a table detached since logs nothing. */
	"CREATE OR REPLACE FUNCTION lockstep_cdc.on_part_truncate() RETURNS trigger"
	" LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
	" AS $lockstep$\nBEGIN\n"
	"IF EXISTS (SELECT FROM pg_catalog.pg_partition_tree("
	"TG_ARGV[0]::pg_catalog.oid::pg_catalog.regclass) p WHERE p.relid = TG_RELID) THEN\n"
	"INSERT INTO lockstep_cdc.changelog (relid, key, op)"
	" VALUES (TG_ARGV[0]::pg_catalog.oid, NULL, 'T');\n"
	"PERFORM pg_catalog.pg_notify('lockstep_cdc_' || TG_ARGV[0], '');\n"
	"END IF;\nRETURN NULL;\nEND $lockstep$;"
	"CREATE OR REPLACE FUNCTION lockstep_cdc.on_part_statement() RETURNS trigger"
	" LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $lockstep$\n"
	"BEGIN\nPERFORM pg_catalog.pg_notify('lockstep_cdc_' || TG_ARGV[0], '');\n"
	"RETURN NULL;\nEND $lockstep$;";

/* The signature of table $1's capture now, as jsonb (see the file's comment). */
#define SIG_SQL                                                                                    \
	"pg_catalog.jsonb_build_object('trig', COALESCE((SELECT pg_catalog.jsonb_object_agg("      \
	" g.tgrelid::text || '/' || g.tgname::text, g.tgenabled::text || '@' || g.xmin::text)"     \
	" FROM pg_catalog.pg_trigger g WHERE g.tgname::text LIKE 'lockstep\\_cdc\\_%' AND"         \
	" (g.tgrelid = $1::oid OR g.tgrelid IN (SELECT p.relid FROM"                               \
	" pg_catalog.pg_partition_tree($1::oid::pg_catalog.regclass) p))), '{}'::jsonb),"          \
	" 'fn', (SELECT f.xmin::text FROM pg_catalog.pg_proc f WHERE f.pronamespace ="             \
	" 'lockstep_cdc'::pg_catalog.regnamespace AND f.proname::text = 'capture_' ||"             \
	" $1::oid::text), 'parts', COALESCE((SELECT "                                              \
	"pg_catalog.jsonb_object_agg(p.relid::oid::text,"                                          \
	" pg_catalog.quote_ident(n.nspname::text) || '.' || pg_catalog.quote_ident("               \
	"c.relname::text)) FROM pg_catalog.pg_partition_tree($1::oid::pg_catalog.regclass) p"      \
	" JOIN pg_catalog.pg_class c ON c.oid = p.relid JOIN pg_catalog.pg_namespace n"            \
	" ON n.oid = c.relnamespace WHERE p.isleaf AND p.relid <> $1::oid), '{}'::jsonb))"

/* Runs sql; returns its result, or NULL with err set when it failed. */
static PGresult *query(struct lk_conn *c, const char *sql, int n, const char *const *params,
		       const char *what, struct lk_err *err)
{
	PGresult *res = PQexecParams(lk_pg_q(c), sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
		return res;
	lk_pg_err(err, c, res, what);
	PQclear(res);
	return NULL;
}

static int run(struct lk_conn *c, const char *sql, int n, const char *const *params,
	       const char *what, struct lk_err *err)
{
	PGresult *res = query(c, sql, n, params, what, err);

	PQclear(res);
	return res ? 0 : -1;
}

/* What one health pass found: reasons for a gap (user words) and the leaves to judge. */
struct finding {
	struct lk_buf capture; /* triggers or function changed: "; "-separated */
	struct lk_buf parts;   /* partitions attached with rows, detached, dropped */
	bool remake;	       /* the capture function was replaced by someone else */
};

static void add_reason(struct lk_buf *b, const char *s)
{
	if (b->len > 700) /* enough to say why; the rest is in the catalogue */
		return;
	lk_buf_adds(b, b->len ? "; " : "");
	lk_buf_adds(b, s);
}

/*
 * Whether leaf partition `leaf` (oid, quoted name) arrived with nothing capture missed: its
 * cloned capture trigger fires, its pg_class row has not changed since the trigger was
 * cloned (no TRUNCATE or rewrite since), and no row in it is older than the trigger (rows
 * frozen long ago count as older). Reads through the captured table when lockstep may not
 * read the partition itself.
 */
static int leaf_is_new(struct lk_conn *c, const struct lk_cdc_table *t, const char *leaf,
		       const char *name, bool *clean, struct lk_err *err)
{
	static const char *const trig_sql =
		"SELECT g.xmin::text, pg_catalog.age(c.xmin) >= pg_catalog.age(g.xmin)"
		" AND g.tgenabled <> 'D', pg_catalog.has_table_privilege(c.oid, 'SELECT')"
		" FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid"
		" WHERE g.tgrelid = $1::oid AND g.tgname = 'lockstep_cdc_capture'";
	struct lk_buf sql = LK_BUF_INIT;
	PGresult *res = query(c, trig_sql, 1, (const char *[]){leaf}, "inspect a partition", err);
	const char *params[2];
	int rc = -1;

	*clean = false;
	if (!res)
		return -1;
	if (PQntuples(res) != 1 || PQgetvalue(res, 0, 1)[0] != 't') {
		PQclear(res);
		return 0;
	}
	params[0] = PQgetvalue(res, 0, 0);
	params[1] = leaf;
	lk_buf_adds(&sql, "SELECT NOT EXISTS (SELECT FROM ");
	if (PQgetvalue(res, 0, 2)[0] == 't') {
		lk_buf_adds(&sql, name);
		lk_buf_adds(&sql, " x WHERE $2::oid IS NOT NULL AND");
	} else {
		lk_quote_tref_for(&sql, t->table, LK_DB_POSTGRES);
		lk_buf_adds(&sql, " x WHERE x.tableoid = $2::oid AND");
	}
	lk_buf_adds(&sql, " (pg_catalog.age(x.xmin) >= pg_catalog.age($1::xid)"
			  " OR pg_catalog.age(x.xmin) < 0))");
	PGresult *rows = query(c, sql.buf, 2, params, "inspect a partition's rows", err);

	if (rows) {
		*clean = PQntuples(rows) == 1 && PQgetvalue(rows, 0, 0)[0] == 't';
		rc = 0;
	}
	PQclear(rows);
	PQclear(res);
	lk_buf_release(&sql);
	return rc;
}

/*
 * Compares the recorded signature (was) with the one now: kind 'r' rows are reasons about
 * triggers and the function, 'p' about partitions gone, 'n' new leaves (oid, name).
 */
static const char *const diff_sql =
	"WITH m(c, w) AS (VALUES ('A', 'ENABLE ALWAYS'), ('O', 'ENABLE'), ('D', 'DISABLE'),"
	" ('R', 'ENABLE REPLICA'))"
	" SELECT 'p', 'partition ' || e.value || ' was detached from ' || $4 || ' or dropped', NULL"
	" FROM pg_catalog.jsonb_each_text($2::jsonb -> 'parts') e"
	" WHERE NOT ($3::jsonb -> 'parts') ? e.key"
	" UNION ALL SELECT 'r', 'trigger ' || pg_catalog.split_part(e.key, '/', 2) || ' on ' ||"
	" COALESCE($3::jsonb -> 'parts' ->> pg_catalog.split_part(e.key, '/', 1), $4) ||"
	" CASE WHEN n.v IS NULL THEN ' was dropped'"
	" WHEN pg_catalog.left(n.v, 1) = pg_catalog.left(e.value, 1) THEN ' was altered'"
	" ELSE ' went from ' || (SELECT m.w FROM m WHERE m.c = pg_catalog.left(e.value, 1)) ||"
	" ' to ' || (SELECT m.w FROM m WHERE m.c = pg_catalog.left(n.v, 1)) END, NULL"
	" FROM pg_catalog.jsonb_each_text($2::jsonb -> 'trig') e,"
	" LATERAL (SELECT $3::jsonb -> 'trig' ->> e.key AS v) n"
	" WHERE n.v IS DISTINCT FROM e.value"
	" AND (pg_catalog.split_part(e.key, '/', 1) = $1::oid::text"
	"  OR ($3::jsonb -> 'parts') ? pg_catalog.split_part(e.key, '/', 1))"
	" UNION ALL SELECT 'r', 'its capture function was replaced', 'remake'"
	" WHERE ($2::jsonb ->> 'fn') IS DISTINCT FROM ($3::jsonb ->> 'fn')"
	" UNION ALL SELECT 'n', e.key, e.value FROM pg_catalog.jsonb_each_text($3::jsonb -> "
	"'parts') e"
	" WHERE NOT ($2::jsonb -> 'parts') ? e.key ORDER BY 1, 2";

/* The table's name for messages: schema.name. */
static void table_name(const struct lk_cdc_table *t, char *out, size_t size)
{
	(void)snprintf(out, size, "%s.%s", t->table->schema ? t->table->schema : "public",
		       t->table->name);
}

/* Fills f from the difference between the recorded signature and the one now. */
static int diff(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t, const char *was,
		const char *now, struct finding *f, struct lk_err *err)
{
	char name[300];
	PGresult *res;
	int rc = 0;

	table_name(t, name, sizeof(name));
	res = query(c, diff_sql, 4, (const char *[]){oid, was, now, name},
		    "compare change capture with its signature", err);
	if (!res)
		return -1;
	for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
		const char *kind = PQgetvalue(res, r, 0), *what = PQgetvalue(res, r, 1);
		bool clean = false;

		if (kind[0] == 'r') {
			add_reason(&f->capture, what);
			f->remake |= !PQgetisnull(res, r, 2);
		} else if (kind[0] == 'p') {
			add_reason(&f->parts, what);
		} else if ((rc = leaf_is_new(c, t, what, PQgetvalue(res, r, 2), &clean, err)) ==
				   0 &&
			   !clean) {
			struct lk_buf b = LK_BUF_INIT;

			lk_buf_addf(&b,
				    "partition %s was attached to %s holding rows its change "
				    "capture never saw",
				    PQgetvalue(res, r, 2), name);
			add_reason(&f->parts, b.buf);
			lk_buf_release(&b);
		}
	}
	PQclear(res);
	return rc;
}

/* ALTER TABLE rel ENABLE ALWAYS TRIGGER name (only an owner may). */
static int enable_always(struct lk_conn *c, const char *rel, const char *name, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	int rc;

	lk_buf_addf(&sql, "ALTER TABLE %s ENABLE ALWAYS TRIGGER ", rel);
	lk_quote_ident(&sql, name);
	rc = run(c, sql.buf, 0, NULL, "restore a capture trigger's mode", err);
	lk_buf_release(&sql);
	return rc;
}

/*
 * Restores mode ALWAYS (an ENABLE TRIGGER ALL makes it ordinary 'O', which does not fire
 * under session_replication_role = replica) on the lockstep triggers of the table and its
 * partitions; the table first (its row trigger's clones follow it). A trigger lockstep may
 * not enable (not the owner) that does not fire in ordinary sessions: an error naming it.
 */
static int restore_modes(struct lk_conn *c, const char *oid, struct lk_err *err)
{
	static const char *const sql =
		"SELECT g.tgrelid::pg_catalog.regclass::text, g.tgname::text, g.tgenabled::text,"
		" pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_trigger g"
		" JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid"
		" WHERE g.tgname::text LIKE 'lockstep\\_cdc\\_%' AND g.tgenabled <> 'A'"
		" AND (g.tgrelid = $1::oid OR g.tgrelid IN (SELECT p.relid FROM"
		" pg_catalog.pg_partition_tree($1::oid::pg_catalog.regclass) p))"
		" ORDER BY g.tgrelid <> $1::oid, g.tgparentid <> 0, 1, 2";
	PGresult *res = query(c, sql, 1, (const char *[]){oid}, "read capture triggers", err);
	int rc = res ? 0 : -1;

	for (int r = 0; res && r < PQntuples(res) && rc == 0; r++) {
		const char *rel = PQgetvalue(res, r, 0), *name = PQgetvalue(res, r, 1);
		char mode = PQgetvalue(res, r, 2)[0];

		if (PQgetvalue(res, r, 3)[0] == 't')
			rc = enable_always(c, rel, name, err);
		else if (mode == 'D' || mode == 'R')
			rc = lk_err_set(err, LK_ERR_PERMISSION,
					"change capture trigger %s on %s is disabled and only the "
					"table's owner may enable it: ALTER TABLE %s ENABLE ALWAYS "
					"TRIGGER %s",
					name, rel, rel, name);
	}
	PQclear(res);
	return rc;
}

/* Creates trigger name on leaf (quoted) for the captured table oid; ALWAYS when owner. */
static int part_trigger(struct lk_conn *c, const char *oid, const char *leaf, const char *name,
			bool owner, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	bool trunc = strcmp(name, PART_TRUNCATE) == 0;
	int rc;

	lk_buf_addf(&sql,
		    "CREATE TRIGGER %s AFTER %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION "
		    "lockstep_cdc.%s('%s')",
		    name, trunc ? "TRUNCATE" : "INSERT OR UPDATE OR DELETE", leaf,
		    trunc ? "on_part_truncate" : "on_part_statement", oid);
	rc = run(c, sql.buf, 0, NULL, "install change capture on a partition", err);
	if (rc == 0 && owner)
		rc = enable_always(c, leaf, name, err);
	lk_buf_release(&sql);
	return rc;
}

/*
 * Gives every leaf partition of table oid the triggers statement-level capture needs
 * (TRUNCATE, and the wake-up); a leaf lockstep may not add triggers to: a warning.
 */
static int part_triggers(struct lk_conn *c, const char *oid, struct lk_err *err)
{
	static const char *const sql =
		"SELECT pg_catalog.quote_ident(n.nspname::text) || '.' ||"
		" pg_catalog.quote_ident(c.relname::text),"
		" pg_catalog.has_table_privilege(c.oid, 'TRIGGER'),"
		" pg_catalog.pg_has_role(c.relowner, 'USAGE'), EXISTS (SELECT FROM"
		" pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = '" PART_TRUNCATE
		"'),"
		" EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid"
		" AND g.tgname = '" PART_NOTIFY "')"
		" FROM pg_catalog.pg_partition_tree($1::oid::pg_catalog.regclass) p"
		" JOIN pg_catalog.pg_class c ON c.oid = p.relid"
		" JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
		" WHERE p.isleaf AND p.relid <> $1::oid ORDER BY p.relid";
	PGresult *res = query(c, sql, 1, (const char *[]){oid}, "list partitions", err);
	int rc = res ? 0 : -1;

	for (int r = 0; res && r < PQntuples(res) && rc == 0; r++) {
		const char *leaf = PQgetvalue(res, r, 0);
		bool owner = PQgetvalue(res, r, 2)[0] == 't';

		if (PQgetvalue(res, r, 3)[0] == 't' && PQgetvalue(res, r, 4)[0] == 't')
			continue;
		if (PQgetvalue(res, r, 1)[0] != 't') {
			lk_log_warn(
				"change capture cannot see a TRUNCATE of partition %s (lockstep's "
				"role lacks TRIGGER on it): GRANT TRIGGER ON %s TO the role",
				leaf, leaf);
			continue;
		}
		if (PQgetvalue(res, r, 3)[0] != 't')
			rc = part_trigger(c, oid, leaf, PART_TRUNCATE, owner, err);
		if (rc == 0 && PQgetvalue(res, r, 4)[0] != 't')
			rc = part_trigger(c, oid, leaf, PART_NOTIFY, owner, err);
	}
	PQclear(res);
	return rc;
}

/* Drops the partition triggers for table oid on tables that are no longer (all: or still)
 * its partitions, where lockstep owns the table. */
static int drop_parts(struct lk_conn *c, const char *oid, bool all, struct lk_err *err)
{
	static const char *const sql =
		"SELECT g.tgrelid::pg_catalog.regclass::text, g.tgname::text"
		" FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid"
		" WHERE g.tgname IN ('" PART_TRUNCATE "', '" PART_NOTIFY "')"
		" AND pg_catalog.encode(g.tgargs, 'escape') = $1::oid::text || '\\000'"
		" AND pg_catalog.pg_has_role(c.relowner, 'USAGE') AND ($2::bool OR g.tgrelid NOT IN"
		" (SELECT p.relid FROM pg_catalog.pg_partition_tree($1::oid::pg_catalog.regclass) "
		"p))";
	PGresult *res = query(c, sql, 2, (const char *[]){oid, all ? "true" : "false"},
			      "list partition triggers", err);
	struct lk_buf b = LK_BUF_INIT;
	int rc = res ? 0 : -1;

	for (int r = 0; res && r < PQntuples(res) && rc == 0; r++) {
		lk_buf_reset(&b);
		lk_buf_addf(&b, "DROP TRIGGER IF EXISTS %s ON %s", PQgetvalue(res, r, 1),
			    PQgetvalue(res, r, 0));
		rc = run(c, b.buf, 0, NULL, "drop change capture on a former partition", err);
	}
	PQclear(res);
	lk_buf_release(&b);
	return rc;
}

int lk_pgc_drop_part_triggers(struct lk_conn *c, const char *oid, struct lk_err *err)
{
	return drop_parts(c, oid, true, err);
}

/* Logs one gap entry for table oid saying why (f), and a warning. */
static int log_gap(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t,
		   const char *since, const struct finding *f, struct lk_err *err)
{
	struct lk_buf why = LK_BUF_INIT;
	char name[300];
	int rc;

	table_name(t, name, sizeof(name));
	if (f->capture.len)
		lk_buf_addf(&why, "change capture on %s was disabled or changed after %s UTC (%s)",
			    name, since, f->capture.buf);
	if (f->parts.len)
		lk_buf_addf(&why, "%s%s", why.len ? "; " : "", f->parts.buf);
	rc = run(c,
		 "INSERT INTO lockstep_cdc.changelog (relid, key, op)"
		 " VALUES ($1::oid, pg_catalog.to_jsonb($2::text), 'G')",
		 2, (const char *[]){oid, why.buf}, "log a capture gap", err);
	if (rc == 0)
		lk_log_warn("%s: changes may be missing from the changelog; every job reading %s "
			    "re-snapshots",
			    why.buf, name);
	lk_buf_release(&why);
	return rc;
}

/* Reads the recorded signature (NULL: none yet), when it was recorded, and the one now. */
static PGresult *signatures(struct lk_conn *c, const char *oid, struct lk_err *err)
{
	static const char *const sql =
		"SELECT t.capture_sig::text, pg_catalog.to_char(t.capture_sig_at AT TIME ZONE"
		" 'UTC', 'YYYY-MM-DD HH24:MI:SS'), (" SIG_SQL ")::text"
		" FROM lockstep_cdc.tables t WHERE t.relid = $1::oid FOR UPDATE";
	PGresult *res = query(c, sql, 1, (const char *[]){oid}, "read capture's signature", err);

	if (res && PQntuples(res) != 1) {
		PQclear(res);
		lk_err_set(err, LK_ERR_NOTFOUND, "the captured table is not registered");
		return NULL;
	}
	return res;
}

int lk_pgc_health(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t, int64_t relid,
		  struct lk_err *err)
{
	struct finding f = {LK_BUF_INIT, LK_BUF_INIT, false};
	PGresult *sig = signatures(c, oid, err);
	int rc = -1;

	if (!sig)
		return -1;
	if (!PQgetisnull(sig, 0, 0) && strcmp(PQgetvalue(sig, 0, 0), PQgetvalue(sig, 0, 2)) != 0 &&
	    diff(c, oid, t, PQgetvalue(sig, 0, 0), PQgetvalue(sig, 0, 2), &f, err) < 0)
		goto out;
	if (lk_pgc_repair(c, oid, t, relid, f.remake, err) < 0 || restore_modes(c, oid, err) < 0 ||
	    part_triggers(c, oid, err) < 0 || drop_parts(c, oid, false, err) < 0)
		goto out;
	if ((f.capture.len || f.parts.len) &&
	    log_gap(c, oid, t, PQgetvalue(sig, 0, 1), &f, err) < 0)
		goto out;
	rc = run(c,
		 "UPDATE lockstep_cdc.tables SET capture_sig = (" SIG_SQL "),"
		 " capture_sig_at = pg_catalog.now() WHERE relid = $1::oid",
		 1, (const char *[]){oid}, "record capture's signature", err);
out:
	PQclear(sig);
	lk_buf_release(&f.capture);
	lk_buf_release(&f.parts);
	return rc;
}

/* Repairs capture in its own transaction; a table lock not had within 2 s: next time. */
static int repair_txn(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t,
		      int64_t relid, struct lk_err *err)
{
	int rc = run(c, "BEGIN", 0, NULL, "check change capture", err);

	if (rc < 0)
		return -1;
	c->in_txn = true;
	if (run(c, "SET LOCAL lock_timeout = '2s'", 0, NULL, "check change capture", err) < 0 ||
	    run(c, "SELECT pg_catalog.pg_advisory_xact_lock(" CDC_LOCK ")", 0, NULL,
		"check change capture", err) < 0 ||
	    lk_pgc_health(c, oid, t, relid, err) < 0 ||
	    run(c, "COMMIT", 0, NULL, "check change capture", err) < 0)
		rc = -1;
	if (rc < 0)
		PQclear(PQexec(lk_pg_q(c), "ROLLBACK"));
	c->in_txn = false;
	if (rc < 0 && strcmp(err->sqlstate, "55P03") == 0) {
		lk_log_info("change capture check: the table is busy, trying again later");
		lk_err_clear(err);
		return 0;
	}
	return rc;
}

int lk_pgc_check_capture(struct lk_conn *c, const struct lk_cdc_table *t, int64_t relid,
			 const char *job, const struct lk_cdc_pos *pos, char *gap, size_t gap_size,
			 struct lk_err *err)
{
	static const char *const sql = "SELECT t.capture_sig IS NOT DISTINCT FROM (" SIG_SQL ")"
				       " FROM lockstep_cdc.tables t WHERE t.relid = $1::oid";
	char oid[32];
	PGresult *res;
	bool same;

	(void)job;
	(void)pos; /* the source's lineage is the timeline guard's (guard.c) */
	if (gap_size)
		gap[0] = '\0';
	(void)snprintf(oid, sizeof(oid), "%" PRId64, relid);
	if (lk_pgc_check_trust(c, oid, err) < 0)
		return -1;
	res = query(c, sql, 1, (const char *[]){oid}, "check change capture", err);
	if (!res) {
		if (strcmp(err->sqlstate, "42P01") != 0 && strcmp(err->sqlstate, "3F000") != 0)
			return -1;
		lk_err_clear(err); /* uninstalled meanwhile: the registry calls say so */
		return 0;
	}
	same = PQntuples(res) == 0 || PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return same ? 0 : repair_txn(c, oid, t, relid, err);
}

/*
 * What may run with lockstep's rights (issue 20 item 5) and what capture cannot follow, in
 * one catalogue query ($1: the captured table, or NULL): the first problem as (kind, what,
 * owner, current_user), or no row. Kind 'o': the schema lockstep_cdc, or an object in it,
 * owned by a role lockstep's is not a member of (whoever owns the schema may replace
 * anything in it; whoever owns a table may add triggers, rules and policies to it). Kind
 * 'c': a trigger, rule or policy on a table of lockstep_cdc (lockstep makes none). Kind
 * 'i': the table has inheritance children (what: their names; owner: the table's). It reads
 * only the catalogue, so a squatter's object is named before anything of it runs.
 */
static const char *const trust_sql =
	"WITH s AS (SELECT n.oid, n.nspowner FROM pg_catalog.pg_namespace n"
	" WHERE n.nspname = 'lockstep_cdc'),"
	" o(r, what, owner) AS (SELECT 0, 'schema lockstep_cdc', s.nspowner FROM s"
	" UNION ALL SELECT CASE WHEN c.relkind IN ('r', 'p', 'v', 'm', 'f') THEN 1 ELSE 2 END,"
	"  CASE WHEN c.relkind IN ('r', 'p') THEN 'table'"
	"  WHEN c.relkind IN ('i', 'I') THEN 'index' WHEN c.relkind = 'S' THEN 'sequence'"
	"  WHEN c.relkind = 'v' THEN 'view' ELSE 'relation' END || ' lockstep_cdc.' ||"
	"  pg_catalog.quote_ident(c.relname::text), c.relowner"
	"  FROM pg_catalog.pg_class c JOIN s ON c.relnamespace = s.oid"
	" UNION ALL SELECT 3, 'function ' || p.oid::pg_catalog.regprocedure::text, p.proowner"
	"  FROM pg_catalog.pg_proc p JOIN s ON p.pronamespace = s.oid"
	" UNION ALL SELECT 4, 'type ' || y.oid::pg_catalog.regtype::text, y.typowner"
	"  FROM pg_catalog.pg_type y JOIN s ON y.typnamespace = s.oid"
	" UNION ALL SELECT 5, 'operator ' || x.oid::pg_catalog.regoperator::text, x.oprowner"
	"  FROM pg_catalog.pg_operator x JOIN s ON x.oprnamespace = s.oid"
	" UNION ALL SELECT 6, 'collation lockstep_cdc.' || pg_catalog.quote_ident("
	"  l.collname::text), l.collowner FROM pg_catalog.pg_collation l"
	"  JOIN s ON l.collnamespace = s.oid),"
	" t AS (SELECT c.oid, 'lockstep_cdc.' || pg_catalog.quote_ident(c.relname::text) AS name"
	"  FROM pg_catalog.pg_class c JOIN s ON c.relnamespace = s.oid),"
	/* the table and its inheritance children (partitions too), by qualified name */
	" q AS (SELECT c.oid, c.relispartition, pg_catalog.quote_ident(n.nspname::text) || '.'"
	"  || pg_catalog.quote_ident(c.relname::text) AS name FROM pg_catalog.pg_class c"
	"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid"
	"  OR c.oid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i"
	"  WHERE i.inhparent = $1::oid))"
	" SELECT b.kind, b.what, b.owner, current_user::text FROM ("
	" SELECT o.r, 'o', o.what, pg_catalog.pg_get_userbyid(o.owner) FROM o"
	" WHERE NOT pg_catalog.pg_has_role(o.owner, 'MEMBER')"
	" UNION ALL SELECT 10, 'c', 'trigger ' || pg_catalog.quote_ident(g.tgname::text) ||"
	"  ' on ' || t.name, NULL FROM pg_catalog.pg_trigger g JOIN t ON t.oid = g.tgrelid"
	"  WHERE NOT g.tgisinternal"
	" UNION ALL SELECT 11, 'c', 'rule ' || pg_catalog.quote_ident(w.rulename::text) ||"
	"  ' on ' || t.name, NULL FROM pg_catalog.pg_rewrite w JOIN t ON t.oid = w.ev_class"
	"  WHERE w.rulename <> '_RETURN'"
	" UNION ALL SELECT 12, 'c', 'policy ' || pg_catalog.quote_ident(y.polname::text) ||"
	"  ' on ' || t.name, NULL FROM pg_catalog.pg_policy y JOIN t ON t.oid = y.polrelid"
	" UNION ALL SELECT 20, 'i', pg_catalog.string_agg(q.name, ', ' ORDER BY q.name),"
	"  (SELECT p.name FROM q p WHERE p.oid = $1::oid) FROM q"
	"  WHERE q.oid <> $1::oid AND NOT q.relispartition HAVING pg_catalog.count(*) > 0"
	") b(r, kind, what, owner) ORDER BY b.r, b.what LIMIT 1";

/* The refusal for one row of trust_sql. */
static int trust_refusal(struct lk_conn *c, const char *kind, const char *what, const char *owner,
			 const char *user, struct lk_err *err)
{
	if (kind[0] == 'i')
		return lk_err_set(
			err, LK_ERR_SCHEMA,
			"%s has inheritance children (%s): writes to a child fire no "
			"trigger of its parent while reading the parent includes the "
			"children's rows, so a real-time target would silently differ. Sync "
			"each child table as its own job, or make them partitions (which "
			"change capture follows)",
			owner, what);
	if (kind[0] == 'c')
		return lk_err_set(err, LK_ERR_PERMISSION,
				  "%s in database %s was not made by lockstep, and its code would "
				  "run with the rights of role %s: remove it and run again",
				  what, c->dbname, user);
	return lk_err_set(err, LK_ERR_PERMISSION,
			  "%s in database %s is owned by role %s, not by role %s (lockstep's) "
			  "or a role it belongs to, so its owner could run code with lockstep's "
			  "rights: drop it (DROP SCHEMA lockstep_cdc CASCADE when nothing in it is "
			  "lockstep's) and let lockstep create it, or ALTER it OWNER TO \"%s\" "
			  "once you trust it",
			  what, c->dbname, owner, user, user);
}

int lk_pgc_check_trust(struct lk_conn *c, const char *oid, struct lk_err *err)
{
	PGresult *res = query(c, trust_sql, 1, (const char *[]){oid},
			      "check who owns change capture's objects", err);
	int rc = 0;

	if (!res)
		return -1;
	if (PQntuples(res) > 0)
		rc = trust_refusal(c, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
				   PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3), err);
	PQclear(res);
	return rc;
}
