/*
 * test_sqlite_cdc_trust.c - SQLite change capture's defences (issue 17): the conflict
 * triggers (rows a REPLACE deletes), gap entries, the in-place upgrade, check_capture.
 */
/* cmocka.h needs these four headers first. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "connector/cdc.h"
#include "connector/connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Literal strings for the config structs' non-const char pointers. */
#define S(lit) ((char *)(uintptr_t)(lit))

static const struct lk_connector_ops *ops = &lk_sqlite_ops;
static const struct lk_cdc_ops *cdc = &lk_sqlite_cdc_ops;

struct fx {
	char dir[64];
	char path[96];
	struct lk_conn *c;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct lk_dbconf conf = {.name = S("src"), .kind = LK_DB_SQLITE};
	struct lk_err err = LK_ERR_INIT;

	assert_non_null(f);
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/lk_cdct_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	(void)snprintf(f->path, sizeof(f->path), "%s/src.db", f->dir);
	conf.path = f->path;
	f->c = ops->open(&conf, &err);
	if (!f->c)
		fail_msg("open: %s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	static const char *const suffix[] = {"", "-journal", "-wal", "-shm"};
	char p[128];

	ops->close(f->c);
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		(void)snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
		(void)unlink(p);
	}
	(void)rmdir(f->dir);
	free(f);
	return 0;
}

static void run_sql(struct lk_conn *c, const char *sql)
{
	struct lk_err err = LK_ERR_INIT;

	if (ops->exec(c, sql, 0, NULL, NULL, NULL, &err) < 0)
		fail_msg("%s: %s", sql, err.msg);
}

static void assert_query(struct lk_conn *c, const char *sql, const char *want)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;

	lk_rows_init(&out, 0);
	if (ops->exec(c, sql, 0, NULL, &out, NULL, &err) < 0)
		fail_msg("%s: %s", sql, err.msg);
	assert_true(out.nrows >= 1);
	assert_string_equal(LK_ROW(&out, 0)[0].null ? "NULL" : LK_ROW(&out, 0)[0].p, want);
	lk_rows_release(&out);
}

/* The changelog as "op key" entries in seq order, then emptied. */
static void assert_log(struct lk_conn *c, const char *want)
{
	assert_query(c,
		     "SELECT COALESCE(group_concat(e, ' '), '') FROM (SELECT op || key AS e"
		     " FROM lockstep_cdc_changelog ORDER BY seq)",
		     want);
	run_sql(c, "DELETE FROM lockstep_cdc_changelog");
}

static void assert_triggers(struct lk_conn *c, const char *n)
{
	assert_query(c,
		     "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
		     " AND name LIKE 'lockstep\\_cdc\\_%' ESCAPE '\\'",
		     n);
}

static int64_t install(struct lk_conn *c, const char *table, const char *const *keys, int nkey)
{
	struct lk_tref t = {NULL, S(table)};
	struct lk_cdc_table ct = {&t, keys, NULL, nkey};
	struct lk_err err = LK_ERR_INIT;
	int64_t relid = -1;

	if (cdc->install(c, &ct, &relid, &err) < 0)
		fail_msg("install %s: %s", table, err.msg);
	return relid;
}

static const char *const key_id[] = {"id"};

/* ---- conflict triggers ---- */

static void test_replace_logs_rows_removed_through_other_constraints(void **state)
{
	struct fx *f = *state;

	run_sql(f->c, "CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT)");
	install(f->c, "plain", key_id, 1);
	run_sql(f->c,
		"CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE, handle TEXT,"
		" code TEXT, active INTEGER);"
		" CREATE UNIQUE INDEX u_handle ON u (lower(handle));"
		" CREATE UNIQUE INDEX \"u code\" ON u (code) WHERE active = 1;"
		" INSERT INTO u VALUES (1, 'a@x', 'A', 'c1', 1), (2, 'b@x', 'B', 'c2', 1),"
		" (3, 'c@x', 'C', 'c3', 1), (4, 'd@x', 'D', 'c4', 0), (5, 'e@x', 'E', 'c5', 1)");
	install(f->c, "u", key_id, 1);
	assert_triggers(f->c, "8"); /* plain: its 3 (no probe needed); u: 5 */
	/* Rows 1 (email), 3 (code, partial), 2 (lower(handle)) go; 4's code is not unique. */
	run_sql(f->c, "INSERT OR REPLACE INTO u VALUES (9, 'a@x', 'b', 'c3', 1)");
	run_sql(f->c, "INSERT OR REPLACE INTO u VALUES (10, 'z@x', 'z', 'c4', 1)");
	assert_log(f->c, "D[\"1\"] D[\"3\"] D[\"2\"] I[\"9\"] I[\"10\"]");
	run_sql(f->c, "UPDATE OR REPLACE u SET email = 'e@x' WHERE id = 9");
	assert_log(f->c, "D[\"5\"] U[\"9\"]");
	assert_query(f->c, "SELECT group_concat(id) FROM (SELECT id FROM u ORDER BY id)", "4,9,10");
}

static void test_without_rowid_and_rowid_conflicts(void **state)
{
	struct fx *f = *state;
	static const char *const key_name[] = {"name"}, *const key_uuid[] = {"uuid"};

	run_sql(f->c, "CREATE TABLE tags (name TEXT PRIMARY KEY, code TEXT UNIQUE ON CONFLICT"
		      " REPLACE) WITHOUT ROWID; INSERT INTO tags VALUES ('t1', 'x'), ('t2', 'y');"
		      " CREATE TABLE docs (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE);"
		      " INSERT INTO docs VALUES (1, 'd1'), (2, 'd2')");
	install(f->c, "tags", key_name, 1);
	install(f->c, "docs", key_uuid, 1);
	run_sql(f->c, "INSERT INTO tags VALUES ('t3', 'x')");
	run_sql(f->c, "UPDATE tags SET code = 'x' WHERE name = 't2'");
	assert_log(f->c, "D[\"t1\"] I[\"t3\"] D[\"t3\"] U[\"t2\"]");
	run_sql(f->c, "INSERT OR REPLACE INTO docs VALUES (1, 'd9')");
	assert_log(f->c, "D[\"d1\"] I[\"d9\"]");
	/* A failed write logs nothing: its statement rolls back with the probes' entries. */
	assert_int_equal(ops->exec(f->c, "INSERT INTO docs VALUES (5, 'd2')", 0, NULL, NULL, NULL,
				   &(struct lk_err)LK_ERR_INIT),
			 -1);
	assert_log(f->c, "");
}

/* ---- gaps and the upgrade ---- */

static void test_new_unique_index_is_a_gap_and_the_upgrade_is_not(void **state)
{
	struct fx *f = *state;

	run_sql(f->c, "CREATE TABLE t (id INTEGER PRIMARY KEY, email TEXT)");
	install(f->c, "t", key_id, 1);
	assert_triggers(f->c, "3");
	install(f->c, "t", key_id, 1);
	assert_log(f->c, "");
	run_sql(f->c, "CREATE UNIQUE INDEX t_email ON t (email)");
	install(f->c, "t", key_id, 1);
	assert_triggers(f->c, "5");
	assert_log(f->c, "G"
			 "a uniqueness constraint was added or changed before lockstep's"
			 " triggers logged the rows a REPLACE deletes through it");
	/* ADD COLUMN changes no probe: nothing to do. */
	run_sql(f->c, "ALTER TABLE t ADD COLUMN more TEXT");
	install(f->c, "t", key_id, 1);
	assert_log(f->c, "");
	/* What version 1 left: no conflict triggers, no capture_version, meta version 1. */
	run_sql(f->c, "DROP TRIGGER lockstep_cdc_1_rpl_ins; DROP TRIGGER lockstep_cdc_1_rpl_upd;"
		      " ALTER TABLE lockstep_cdc_tables DROP COLUMN capture_version;"
		      " UPDATE lockstep_cdc_meta SET version = 1");
	install(f->c, "t", key_id, 1);
	assert_triggers(f->c, "5");
	assert_log(f->c, ""); /* an upgrade, not a gap */
	assert_query(f->c, "SELECT version FROM lockstep_cdc_meta", "2");
	assert_query(f->c, "SELECT capture_version FROM lockstep_cdc_tables", "2");
	/* A rebuilt table: its triggers are gone. */
	run_sql(f->c, "CREATE TABLE t2 (id INTEGER PRIMARY KEY, email TEXT, more TEXT);"
		      " INSERT INTO t2 SELECT * FROM t; DROP TABLE t; ALTER TABLE t2 RENAME TO t");
	assert_triggers(f->c, "0");
	install(f->c, "t", key_id, 1);
	assert_triggers(f->c, "3");
	assert_log(f->c,
		   "Gits triggers were missing (the table was rebuilt, or they were dropped)");
}

/* ---- check_capture ---- */

/* check_capture for job j on t (relid) at pos; returns the gap ("" when none). */
static const char *check(struct lk_conn *c, int64_t relid, struct lk_cdc_pos pos, char *gap,
			 size_t size)
{
	struct lk_tref t = {NULL, S("t")};
	struct lk_cdc_table ct = {&t, key_id, NULL, 1};
	struct lk_err err = LK_ERR_INIT;

	if (cdc->check_capture(c, &ct, relid, "j", &pos, gap, size, &err) < 0)
		fail_msg("check_capture: %s", err.msg);
	return gap;
}

/* The position after reading every entry: the last entry's seq and stamp. */
static struct lk_cdc_pos last_pos(struct lk_conn *c, int64_t relid)
{
	struct lk_cdc_pos from = {0, 0, 0}, p = {0, 0, 0};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;
	int64_t h;

	lk_rows_init(&out, 0);
	if (cdc->read(c, relid, &from, 1000, &out, &h, &err) < 0 || ops->commit(c, &err) < 0)
		fail_msg("read: %s", err.msg);
	assert_true(out.nrows > 0);
	p.xid = strtoll(LK_ROW(&out, out.nrows - 1)[LK_CDC_XID].p, NULL, 10);
	p.seq = strtoll(LK_ROW(&out, out.nrows - 1)[LK_CDC_SEQ].p, NULL, 10);
	lk_rows_release(&out);
	return p;
}

static void test_check_capture_repairs_and_checks_lineage(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_cdc_pos p, h;
	int64_t relid;
	char gap[320];

	run_sql(f->c, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
	relid = install(f->c, "t", key_id, 1);
	assert_int_equal(cdc->register_consumer(f->c, "j", relid, &h, &err), 0);
	run_sql(f->c, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
	p = last_pos(f->c, relid);
	assert_true(p.xid > 0);
	assert_string_equal(check(f->c, relid, p, gap, sizeof(gap)), "");
	/* A dropped trigger: put back, with a gap entry the stream will read. */
	run_sql(f->c, "DROP TRIGGER lockstep_cdc_1_del");
	assert_string_equal(check(f->c, relid, p, gap, sizeof(gap)), "");
	assert_triggers(f->c, "3");
	assert_query(f->c, "SELECT op FROM lockstep_cdc_changelog ORDER BY seq DESC LIMIT 1", "G");
	/* The changelog went back: the position is past the highest seq ever handed out. */
	p.seq += 10;
	assert_non_null(strstr(check(f->c, relid, p, gap, sizeof(gap)), "changelog went back"));
	p.seq -= 10;
	/* Entry p.seq is another one (a restored file handed the seq out again). */
	p.xid -= 1;
	assert_non_null(strstr(check(f->c, relid, p, gap, sizeof(gap)), "is now another one"));
	p.xid += 1;
	/* Gone while the job's registration is below it: it was never pruned. */
	run_sql(f->c, "DELETE FROM lockstep_cdc_changelog WHERE seq = 2");
	assert_non_null(strstr(check(f->c, relid, p, gap, sizeof(gap)), "is gone"));
	/* Pruned after the registry heard of it: fine. */
	assert_int_equal(cdc->consumer_advance(f->c, "j", &p, &err), 0);
	assert_string_equal(check(f->c, relid, p, gap, sizeof(gap)), "");
	/* A position without a stamp (an older lockstep's) resumes. */
	run_sql(f->c, "INSERT INTO t VALUES (3, 'c')");
	p = last_pos(f->c, relid);
	p.xid = 0;
	assert_string_equal(check(f->c, relid, p, gap, sizeof(gap)), "");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_replace_logs_rows_removed_through_other_constraints),
		T(test_without_rowid_and_rowid_conflicts),
		T(test_new_unique_index_is_a_gap_and_the_upgrade_is_not),
		T(test_check_capture_repairs_and_checks_lineage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
