/* test_sqlite_cdc.c - change capture on SQLite (lk_sqlite_cdc_ops) against a temporary file. */
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
#include "core/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Literal strings for the config structs' non-const char pointers. */
#define S(lit) ((char *)(uintptr_t)(lit))

static const struct lk_connector_ops *ops = &lk_sqlite_ops;
static const struct lk_cdc_ops *cdc = &lk_sqlite_cdc_ops;

/* A fresh database file in its own directory, and one connection to it. */
struct fx {
	char dir[64];
	char path[96];
	struct lk_conn *c;
};

/* ---- helpers ---- */

static struct lk_conn *open_path(const char *path)
{
	struct lk_dbconf conf = {.name = S("src"), .kind = LK_DB_SQLITE, .path = S(path)};
	struct lk_err err = LK_ERR_INIT;
	struct lk_conn *c = ops->open(&conf, &err);

	if (!c)
		fail_msg("open %s: %s", path, err.msg);
	return c;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/lk_cdc_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	(void)snprintf(f->path, sizeof(f->path), "%s/src.db", f->dir);
	f->c = open_path(f->path);
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

/* Runs a query and returns the first column of its first row as a malloc'd string. */
static char *query1(struct lk_conn *c, const char *sql)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;
	char *s;

	lk_rows_init(&out, 0);
	if (ops->exec(c, sql, 0, NULL, &out, NULL, &err) < 0)
		fail_msg("%s: %s", sql, err.msg);
	assert_true(out.nrows >= 1);
	s = strdup(LK_ROW(&out, 0)[0].null ? "NULL" : LK_ROW(&out, 0)[0].p);
	lk_rows_release(&out);
	return s;
}

static void assert_query(struct lk_conn *c, const char *sql, const char *want)
{
	char *got = query1(c, sql);

	assert_string_equal(got, want);
	free(got);
}

static void assert_triggers(struct lk_conn *c, const char *n)
{
	assert_query(c,
		     "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
		     " AND name LIKE 'lockstep\\_cdc\\_%' ESCAPE '\\'",
		     n);
}

/* Installs capture of `table` with the given key; returns its relid. */
static int64_t install(struct lk_conn *c, const char *table, const char *const *keys, int nkey,
		       const enum lk_type *types)
{
	struct lk_tref t = {NULL, S(table)};
	struct lk_cdc_table ct = {&t, keys, types, nkey};
	struct lk_err err = LK_ERR_INIT;
	int64_t relid = -1;

	if (cdc->install(c, &ct, &relid, &err) < 0)
		fail_msg("install %s: %s", table, err.msg);
	assert_true(relid > 0);
	return relid;
}

static const char *const key_id[] = {"id"};

/* Creates table `name` (id INTEGER PRIMARY KEY, v TEXT) and captures it; returns its relid. */
static int64_t captured(struct lk_conn *c, const char *name)
{
	char sql[128];

	(void)snprintf(sql, sizeof(sql), "CREATE TABLE \"%s\" (id INTEGER PRIMARY KEY, v TEXT)",
		       name);
	run_sql(c, sql);
	return install(c, name, key_id, 1, NULL);
}

static struct lk_cdc_pos register_job(struct lk_conn *c, const char *job, int64_t relid)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_cdc_pos h = {-1, -1, -1};

	if (cdc->register_consumer(c, job, relid, &h, &err) < 0)
		fail_msg("register %s: %s", job, err.msg);
	assert_int_equal(h.horizon, 0);
	assert_true(h.seq == 0 ? h.xid == 0 : h.xid > 0); /* xid: the stamp of entry seq */
	return h;
}

static void advance(struct lk_conn *c, const char *job, int64_t seq)
{
	struct lk_cdc_pos p = {0, 0, seq};
	struct lk_err err = LK_ERR_INIT;

	if (cdc->consumer_advance(c, job, &p, &err) < 0)
		fail_msg("advance %s: %s", job, err.msg);
}

/*
 * Reads up to max entries of relid after seq into out (initialised here), then commits
 * the read transaction, which fails unless read() left one open.
 */
static void read_from(struct lk_conn *c, int64_t relid, int64_t seq, int max, struct lk_rows *out)
{
	struct lk_cdc_pos from = {0, 0, seq};
	struct lk_err err = LK_ERR_INIT;
	int64_t h = -1;

	lk_rows_init(out, 0);
	if (cdc->read(c, relid, &from, max, out, &h, &err) < 0)
		fail_msg("read: %s", err.msg);
	assert_int_equal(h, 0);
	assert_int_equal(out->ncols, LK_CDC_NCOLS);
	if (ops->commit(c, &err) < 0)
		fail_msg("commit after read: %s", err.msg);
}

static const char *val(const struct lk_rows *r, int row, int col)
{
	const struct lk_value *v = &LK_ROW(r, row)[col];

	return v->null ? "NULL" : v->p;
}

static int64_t seq_of(const struct lk_rows *r, int row)
{
	return strtoll(val(r, row, LK_CDC_SEQ), NULL, 10);
}

/* Asserts the ops and keys of out, "op key" per entry, and that seqs increase. */
static void assert_entries(const struct lk_rows *r, const char *const *want, int n)
{
	assert_int_equal(r->nrows, n);
	for (int i = 0; i < n; i++) {
		char got[256];

		(void)snprintf(got, sizeof(got), "%s %s", val(r, i, LK_CDC_OP),
			       val(r, i, LK_CDC_KEY));
		assert_string_equal(got, want[i]);
		assert_true(strtoll(val(r, i, LK_CDC_XID), NULL, 10) > 0); /* the stamp, at_ms */
		if (i > 0)
			assert_true(seq_of(r, i) > seq_of(r, i - 1));
	}
}

/* ---- install ---- */

static void test_install_is_idempotent(void **state)
{
	struct fx *f = *state;
	int64_t relid;
	char *row;

	run_sql(f->c, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)");
	relid = install(f->c, "users", key_id, 1, NULL);
	assert_triggers(f->c, "3");
	row = query1(f->c, "SELECT relid || '|' || schema_name || '|' || table_name || '|' ||"
			   " key_cols || '|' || installed_ms FROM lockstep_cdc_tables");
	assert_int_equal(install(f->c, "users", key_id, 1, NULL), relid);
	assert_triggers(f->c, "3");
	assert_query(f->c, "SELECT count(*) FROM lockstep_cdc_tables", "1");
	assert_query(f->c,
		     "SELECT relid || '|' || schema_name || '|' || table_name || '|' ||"
		     " key_cols || '|' || installed_ms FROM lockstep_cdc_tables",
		     row);
	assert_query(f->c, "SELECT group_concat(version) FROM lockstep_cdc_meta", "2");
	/* The registry resolves names as SQLite does, case-insensitively. */
	assert_int_equal(install(f->c, "USERS", key_id, 1, NULL), relid);
	assert_triggers(f->c, "3");
	/* A dropped trigger comes back, with a gap entry: changes may have gone unlogged. */
	assert_query(f->c, "SELECT count(*) FROM lockstep_cdc_changelog", "0");
	run_sql(f->c, "DROP TRIGGER lockstep_cdc_1_upd");
	assert_int_equal(install(f->c, "users", key_id, 1, NULL), relid);
	assert_triggers(f->c, "3");
	assert_query(f->c, "SELECT group_concat(op) FROM lockstep_cdc_changelog", "G");
	free(row);
}

static void test_install_refuses_other_key_missing_table_and_column(void **state)
{
	struct fx *f = *state;
	static const char *const key_name[] = {"name"};
	static const char *const key_nope[] = {"nope"};
	struct lk_tref users = {NULL, S("users")}, ghost = {NULL, S("ghost")};
	struct lk_tref other = {S("aux"), S("users")};
	struct lk_cdc_table t = {&users, key_name, NULL, 1};
	struct lk_err err = LK_ERR_INIT;
	int64_t relid;

	run_sql(f->c, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)");
	install(f->c, "users", key_id, 1, NULL);
	assert_int_equal(cdc->install(f->c, &t, &relid, &err), -1);
	assert_int_equal(err.code, LK_ERR_CONFLICT);
	assert_string_equal(err.msg, "table 'users' in src is already captured with key [\"id\"],"
				     " not [\"name\"]");

	t.table = &ghost;
	assert_int_equal(cdc->install(f->c, &t, &relid, &err), -1);
	assert_int_equal(err.code, LK_ERR_NOTFOUND);
	assert_string_equal(err.msg, "table 'ghost' does not exist in src");

	/* Such a trigger would be created, then fail every write to the table. */
	run_sql(f->c, "CREATE TABLE plain (id INTEGER PRIMARY KEY)");
	users.name = S("plain");
	t.table = &users;
	t.key_cols = key_nope;
	assert_int_equal(cdc->install(f->c, &t, &relid, &err), -1);
	assert_int_equal(err.code, LK_ERR_SCHEMA);
	assert_string_equal(err.msg, "key column 'nope' does not exist in table 'plain' in src");
	run_sql(f->c, "INSERT INTO plain VALUES (1)");

	t.table = &other;
	t.key_cols = key_id;
	assert_int_equal(cdc->install(f->c, &t, &relid, &err), -1);
	assert_int_equal(err.code, LK_ERR_SCHEMA);

	/* The failed installs rolled back: one table, its three triggers. */
	assert_query(f->c, "SELECT count(*) FROM lockstep_cdc_tables", "1");
	assert_triggers(f->c, "3");
}

static void test_install_refuses_newer_version(void **state)
{
	struct fx *f = *state;
	struct lk_tref t = {NULL, S("t2")};
	struct lk_cdc_table ct = {&t, key_id, NULL, 1};
	struct lk_err err = LK_ERR_INIT;
	int64_t relid;

	captured(f->c, "t1");
	run_sql(f->c, "CREATE TABLE t2 (id INTEGER PRIMARY KEY)");
	run_sql(f->c, "UPDATE lockstep_cdc_meta SET version = 7");
	assert_int_equal(cdc->install(f->c, &ct, &relid, &err), -1);
	assert_int_equal(err.code, LK_ERR_CONFLICT);
	assert_string_equal(err.msg,
			    "change capture on src was installed by a newer lockstep (version 7)");
	assert_triggers(f->c, "3");
}

static void test_install_busy_is_transient(void **state)
{
	struct fx *f = *state;
	struct lk_conn *other = open_path(f->path);
	struct lk_tref t = {NULL, S("t")};
	struct lk_cdc_table ct = {&t, key_id, NULL, 1};
	struct lk_err err = LK_ERR_INIT;
	int64_t relid;

	run_sql(f->c, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
	run_sql(f->c, "PRAGMA busy_timeout = 0");
	assert_int_equal(ops->begin(other, &err), 0);
	assert_int_equal(cdc->install(f->c, &ct, &relid, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_true(err.transient);
	assert_int_equal(ops->rollback(other), 0);
	assert_true(install(f->c, "t", key_id, 1, NULL) > 0);
	ops->close(other);
}

/* ---- triggers ---- */

static void test_changes_log_keys_and_ops_in_seq_order(void **state)
{
	struct fx *f = *state;
	static const char *const key_ab[] = {"a", "b"};
	static const char *const want[] = {
		"I [\"x\",\"1\"]", "I [\"y\",\"2\"]", "U [\"x\",\"1\"]", /* v changed */
		"D [\"x\",\"1\"]", "U [\"x\",\"3\"]",			 /* key changed */
		"D [\"y\",\"2\"]",					 /* delete */
		"D [\"x\",\"3\"]", /* DELETE without WHERE fires row triggers */
		"I [\"q\",null]",  /* a NULL key value */
	};
	struct lk_rows out;
	int64_t relid;

	run_sql(f->c, "CREATE TABLE c (a TEXT, b INTEGER, v TEXT, UNIQUE (a, b))");
	relid = install(f->c, "c", key_ab, 2, NULL);
	run_sql(f->c, "INSERT INTO c VALUES ('x', 1, 'one'), ('y', 2, 'two')");
	run_sql(f->c, "UPDATE c SET v = 'uno' WHERE a = 'x'");
	run_sql(f->c, "UPDATE c SET b = 3 WHERE a = 'x'");
	run_sql(f->c, "DELETE FROM c WHERE a = 'y'");
	run_sql(f->c, "DELETE FROM c");
	run_sql(f->c, "INSERT INTO c VALUES ('q', NULL, 'n')");
	read_from(f->c, relid, 0, 100, &out);
	assert_entries(&out, want, 8);
	assert_string_equal(val(&out, 0, LK_CDC_SEQ), "1");
	lk_rows_release(&out);
}

static void test_keys_render_as_interchange_text(void **state)
{
	struct fx *f = *state;
	static const char *const keys[] = {"b", "by", "i", "t", "r", "we\"ird"};
	static const enum lk_type types[] = {LK_T_OTHER, LK_T_BYTES, LK_T_INT,
					     LK_T_TEXT,	 LK_T_FLOAT, LK_T_TEXT};
	static const char *const want[] = {
		"I [\"00ff\",\"6869\",\"42\",\"it's \\\"q\\\"\",\"0.1\",\"w\"]",
		"I [\"abcd\",null,\"-7\",\"\",\"0.30000000000000004\",\"x\"]",
	};
	struct lk_rows out;
	int64_t relid;

	run_sql(f->c, "CREATE TABLE k (b, by BLOB, i INTEGER, t TEXT, r REAL, \"we\"\"ird\" TEXT)");
	relid = install(f->c, "k", keys, 6, types);
	/* by holds text here: a bytes key is hex whatever SQLite stored. */
	run_sql(f->c, "INSERT INTO k VALUES (x'00FF', 'hi', 42, 'it''s \"q\"', 0.1, 'w')");
	run_sql(f->c, "INSERT INTO k VALUES (x'ABCD', NULL, -7, '', 0.1 + 0.2, 'x')");
	read_from(f->c, relid, 0, 100, &out);
	assert_entries(&out, want, 2);
	lk_rows_release(&out);
}

/* ---- consumers and reads ---- */

static void test_register_starts_after_existing_entries(void **state)
{
	struct fx *f = *state;
	static const char *const want[] = {"I [\"3\"]"};
	struct lk_err err = LK_ERR_INIT;
	struct lk_cdc_pos h;
	struct lk_rows out;
	int64_t a, b;
	bool found = true;

	a = captured(f->c, "a");
	b = captured(f->c, "b");
	assert_int_equal(cdc->consumer_get(f->c, "job1", a, &found, &err), 0);
	assert_false(found);
	run_sql(f->c, "INSERT INTO a VALUES (1, 'x'), (2, 'y')");
	run_sql(f->c, "INSERT INTO b VALUES (1, 'x')"); /* another table's entry counts too */
	h = register_job(f->c, "job1", a);
	assert_int_equal(h.seq, 3);
	run_sql(f->c, "INSERT INTO a VALUES (3, 'z')");
	read_from(f->c, a, h.seq, 100, &out);
	assert_entries(&out, want, 1);
	assert_int_equal(seq_of(&out, 0), 4);
	lk_rows_release(&out);

	assert_int_equal(cdc->consumer_get(f->c, "job1", a, &found, &err), 0);
	assert_true(found);
	assert_int_equal(cdc->consumer_get(f->c, "job1", b, &found, &err), 0);
	assert_false(found);
	assert_int_equal(cdc->consumer_get(f->c, "job2", a, &found, &err), 0);
	assert_false(found);

	/* Re-registering moves the consumer to the current end. */
	assert_int_equal(register_job(f->c, "job1", a).seq, 4);
	assert_int_equal(cdc->register_consumer(f->c, "job1", 99, &h, &err), -1);
	assert_int_equal(err.code, LK_ERR_NOTFOUND);
}

static void test_read_pages_and_leaves_its_transaction_open(void **state)
{
	struct fx *f = *state;
	static const char *const want[] = {"I [\"1\"]", "I [\"2\"]", "I [\"3\"]"};
	struct lk_cdc_pos from = {0, 0, 2};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;
	int64_t relid, h;

	relid = captured(f->c, "t");
	run_sql(f->c, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')");
	read_from(f->c, relid, 0, 2, &out);
	assert_entries(&out, want, 2);
	/* A batch that already holds entries is appended to; the txn ends by rollback too. */
	assert_int_equal(cdc->read(f->c, relid, &from, 1, &out, &h, &err), 0);
	assert_entries(&out, want, 3);
	assert_int_equal(ops->rollback(f->c), 0);
	assert_int_equal(ops->commit(f->c, &err), -1); /* no transaction is left */
	lk_rows_release(&out);
}

static void test_advance_of_unknown_job_is_notfound(void **state)
{
	struct fx *f = *state;
	struct lk_cdc_pos p = {0, 0, 1};
	struct lk_err err = LK_ERR_INIT;

	register_job(f->c, "job1", captured(f->c, "t"));
	advance(f->c, "job1", 1);
	assert_query(f->c, "SELECT seq FROM lockstep_cdc_consumers WHERE job = 'job1'", "1");
	assert_int_equal(cdc->consumer_advance(f->c, "gone", &p, &err), -1);
	assert_int_equal(err.code, LK_ERR_NOTFOUND);
}

/* ---- prune ---- */

static void test_prune_keeps_what_the_slowest_consumer_needs(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	int64_t a, b, n = -1;

	a = captured(f->c, "a");
	b = captured(f->c, "b");
	register_job(f->c, "fast", a);
	register_job(f->c, "slow", a);
	run_sql(f->c, "INSERT INTO a VALUES (1, ''), (2, ''), (3, ''), (4, ''), (5, '')");
	run_sql(f->c, "INSERT INTO b VALUES (1, ''), (2, '')"); /* seq 6, 7: no consumer */
	advance(f->c, "fast", 4);
	advance(f->c, "slow", 2);
	assert_int_equal(cdc->prune(f->c, a, 100, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_query(f->c, "SELECT group_concat(seq) FROM lockstep_cdc_changelog WHERE relid = 1",
		     "3,4,5");
	advance(f->c, "slow", 5);
	assert_int_equal(cdc->prune(f->c, a, 1, &n, &err), 0);
	assert_int_equal(n, 1); /* max */
	assert_int_equal(cdc->prune(f->c, a, 100, &n, &err), 0);
	assert_int_equal(n, 1); /* up to fast's 4 */
	assert_query(f->c, "SELECT group_concat(seq) FROM lockstep_cdc_changelog", "5,6,7");
	assert_int_equal(cdc->prune(f->c, b, 100, &n, &err), 0);
	assert_int_equal(n, 0);
	/* A pruned seq is never handed out again. */
	advance(f->c, "fast", 5);
	assert_int_equal(cdc->prune(f->c, a, 100, &n, &err), 0);
	assert_int_equal(n, 1);
	run_sql(f->c, "DELETE FROM lockstep_cdc_changelog");
	run_sql(f->c, "INSERT INTO a VALUES (6, '')");
	assert_query(f->c, "SELECT seq FROM lockstep_cdc_changelog", "8");
}

/* ---- stalled and lag ---- */

static void test_stalled_lists_idle_consumers_with_pending_entries(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;
	int64_t relid;

	relid = captured(f->c, "t");
	register_job(f->c, "me", relid);
	register_job(f->c, "late", relid);
	register_job(f->c, "idle", relid); /* idle, but nothing waits for it */
	run_sql(f->c, "INSERT INTO t VALUES (1, ''), (2, '')");
	advance(f->c, "idle", 2);
	run_sql(f->c, "UPDATE lockstep_cdc_consumers SET updated_ms = updated_ms - 600000");
	lk_rows_init(&out, 0);
	assert_int_equal(cdc->stalled(f->c, relid, "me", 300, &out, &err), 0);
	assert_int_equal(out.ncols, 3);
	assert_int_equal(out.nrows, 1);
	assert_string_equal(val(&out, 0, 0), "late");
	assert_true(strtoll(val(&out, 0, 1), NULL, 10) >= 600);
	assert_string_equal(val(&out, 0, 2), "2");
	lk_rows_reset(&out);
	assert_int_equal(cdc->stalled(f->c, relid, "me", 3600, &out, &err), 0);
	assert_int_equal(out.nrows, 0);
	lk_rows_release(&out);
}

static void test_lag_counts_pending_entries(void **state)
{
	struct fx *f = *state;
	struct lk_tref t = {NULL, S("t")};
	struct lk_err err = LK_ERR_INIT;
	struct lk_cdc_lag lag;

	assert_int_equal(cdc->lag(f->c, "job1", &t, &lag, &err), 0);
	assert_false(lag.installed);
	assert_false(lag.registered);
	assert_true(lag.idle_s == -1 && lag.oldest_age_s == -1);

	register_job(f->c, "job1", captured(f->c, "t"));
	run_sql(f->c, "INSERT INTO t VALUES (1, ''), (2, ''), (3, '')");
	assert_int_equal(cdc->lag(f->c, "job1", &t, &lag, &err), 0);
	assert_true(lag.installed);
	assert_true(lag.registered);
	assert_int_equal(lag.pending, 3);
	assert_int_equal(lag.entries, 3);
	assert_true(lag.oldest_age_s >= 0 && lag.oldest_age_s < 60);
	assert_true(lag.idle_s >= 0 && lag.idle_s < 60);
	assert_true(lag.horizon_age_s == 0);
	assert_int_equal(lag.holder_pid, 0);

	advance(f->c, "job1", 3);
	assert_int_equal(cdc->lag(f->c, "job1", &t, &lag, &err), 0);
	assert_int_equal(lag.pending, 0);
	assert_true(lag.oldest_age_s == -1);
	assert_int_equal(lag.entries, 3);

	assert_int_equal(cdc->lag(f->c, "nobody", &t, &lag, &err), 0);
	assert_true(lag.installed);
	assert_false(lag.registered);
	assert_int_equal(lag.pending, 0);
	assert_true(lag.idle_s == -1);
	assert_int_equal(lag.entries, 3);
}

/* ---- wake-ups ---- */

static void test_wait_wakes_only_on_other_connections_commits(void **state)
{
	struct fx *f = *state;
	struct lk_conn *writer = open_path(f->path);
	struct lk_err err = LK_ERR_INIT;
	int64_t relid, t0;
	bool woken = true;

	relid = captured(f->c, "t");
	assert_int_equal(cdc->wait(f->c, 10, &woken, &err), -1); /* not listening yet */
	assert_int_equal(cdc->listen(f->c, relid, &err), 0);
	t0 = lk_mono_ms();
	assert_int_equal(cdc->wait(f->c, 60, &woken, &err), 0);
	assert_false(woken);
	assert_true(lk_mono_ms() - t0 >= 55);

	run_sql(f->c, "INSERT INTO t VALUES (1, 'own')"); /* our own commit does not wake us */
	assert_int_equal(cdc->wait(f->c, 30, &woken, &err), 0);
	assert_false(woken);

	run_sql(writer, "INSERT INTO t VALUES (2, 'other')");
	t0 = lk_mono_ms();
	assert_int_equal(cdc->wait(f->c, 5000, &woken, &err), 0);
	assert_true(woken);
	assert_true(lk_mono_ms() - t0 < 1000);
	/* The wake-up is consumed: no new commit, no new wake-up. */
	assert_int_equal(cdc->wait(f->c, 30, &woken, &err), 0);
	assert_false(woken);
	ops->close(writer);
}

/* ---- uninstall ---- */

static void test_uninstall_drops_only_with_the_last_consumer(void **state)
{
	struct fx *f = *state;
	struct lk_tref a = {NULL, S("a")}, b = {NULL, S("b")};
	struct lk_err err = LK_ERR_INIT;
	bool found, dropped, gone;
	int64_t ra, rb;

	ra = captured(f->c, "a");
	rb = captured(f->c, "b");
	register_job(f->c, "j1", ra);
	register_job(f->c, "j2", ra);
	register_job(f->c, "jb", rb);
	run_sql(f->c, "INSERT INTO a VALUES (1, '')");
	run_sql(f->c, "INSERT INTO b VALUES (1, '')");

	assert_int_equal(cdc->uninstall(f->c, "j1", &a, &found, &dropped, &gone, &err), 0);
	assert_true(found && !dropped && !gone);
	assert_triggers(f->c, "6");
	assert_int_equal(cdc->uninstall(f->c, "j2", &a, &found, &dropped, &gone, &err), 0);
	assert_true(found && dropped && !gone);
	assert_triggers(f->c, "3");
	assert_query(f->c, "SELECT group_concat(relid) FROM lockstep_cdc_changelog", "2");
	assert_query(f->c, "SELECT group_concat(table_name) FROM lockstep_cdc_tables", "b");
	run_sql(f->c, "INSERT INTO a VALUES (2, '')"); /* no longer captured */
	assert_query(f->c, "SELECT count(*) FROM lockstep_cdc_changelog", "1");

	assert_int_equal(cdc->uninstall(f->c, "jb", &b, &found, &dropped, &gone, &err), 0);
	assert_true(found && dropped && gone);
	assert_query(f->c,
		     "SELECT count(*) FROM sqlite_master WHERE name LIKE 'lockstep\\_cdc\\_%'"
		     " ESCAPE '\\'",
		     "0");
	run_sql(f->c, "INSERT INTO b VALUES (2, '')");

	assert_int_equal(cdc->uninstall(f->c, "jb", &b, &found, &dropped, &gone, &err), 0);
	assert_true(!found && !dropped && gone);
}

static void test_uninstall_of_unregistered_job_drops_an_unconsumed_table(void **state)
{
	struct fx *f = *state;
	struct lk_tref t = {NULL, S("t")}, u = {NULL, S("u")};
	struct lk_err err = LK_ERR_INIT;
	bool found, dropped, gone;

	captured(f->c, "t");
	register_job(f->c, "ju", captured(f->c, "u"));
	assert_int_equal(cdc->uninstall(f->c, "never", &u, &found, &dropped, &gone, &err), 0);
	assert_true(!found && !dropped && !gone); /* ju still consumes u */
	assert_int_equal(cdc->uninstall(f->c, "never", &t, &found, &dropped, &gone, &err), 0);
	assert_true(!found && dropped && !gone);
	assert_triggers(f->c, "3");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_install_is_idempotent),
		T(test_install_refuses_other_key_missing_table_and_column),
		T(test_install_refuses_newer_version),
		T(test_install_busy_is_transient),
		T(test_changes_log_keys_and_ops_in_seq_order),
		T(test_keys_render_as_interchange_text),
		T(test_register_starts_after_existing_entries),
		T(test_read_pages_and_leaves_its_transaction_open),
		T(test_advance_of_unknown_job_is_notfound),
		T(test_prune_keeps_what_the_slowest_consumer_needs),
		T(test_stalled_lists_idle_consumers_with_pending_entries),
		T(test_lag_counts_pending_entries),
		T(test_wait_wakes_only_on_other_connections_commits),
		T(test_uninstall_drops_only_with_the_last_consumer),
		T(test_uninstall_of_unregistered_job_drops_an_unconsumed_table),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
