/* test_sqlite_conn.c - the SQLite connector against in-memory and temporary databases. */
/* cmocka.h needs these four headers first. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "connector/connector.h"
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Literal strings for the config structs' non-const char pointers. */
#define S(lit) ((char *)(uintptr_t)(lit))

static const struct lk_connector_ops *ops = &lk_sqlite_ops;

/* ---- helpers ---- */

static struct lk_conn *open_path(const char *path)
{
	struct lk_dbconf conf = {.name = S("testdb"), .kind = LK_DB_SQLITE, .path = S(path)};
	struct lk_err err = LK_ERR_INIT;
	struct lk_conn *c = ops->open(&conf, &err);

	if (!c)
		fail_msg("open %s: %s", path, err.msg);
	return c;
}

static struct lk_conn *open_mem(void)
{
	return open_path(":memory:");
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
	s = LK_ROW(&out, 0)[0].null ? strdup("NULL") : strdup(LK_ROW(&out, 0)[0].p);
	lk_rows_release(&out);
	return s;
}

static void assert_query(struct lk_conn *c, const char *sql, const char *want)
{
	char *got = query1(c, sql);

	assert_string_equal(got, want);
	free(got);
}

/* Appends a row of C strings (NULL = SQL NULL). */
static void add_row(struct lk_rows *r, const char *const *vals)
{
	lk_rows_add(r);
	for (int i = 0; i < r->ncols; i++) {
		if (vals[i])
			lk_rows_set(r, r->nrows - 1, i, vals[i], strlen(vals[i]));
	}
}

static const char *val(const struct lk_rows *r, int row, int col)
{
	const struct lk_value *v = &LK_ROW(r, row)[col];

	return v->null ? "NULL" : v->p;
}

/* Scans everything the spec selects, `batch` rows at a time. */
static void scan_all(struct lk_conn *c, const struct lk_scan_spec *spec, int batch,
		     struct lk_rows *out)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_scan *s = ops->scan_open(c, spec, &err);
	int n;

	if (!s)
		fail_msg("scan_open: %s", err.msg);
	lk_rows_init(out, 0);
	while ((n = ops->scan_next(s, out, batch, &err)) > 0)
		assert_true(n <= batch);
	if (n < 0)
		fail_msg("scan_next: %s", err.msg);
	ops->scan_close(s);
}

static struct lk_tref T(const char *name) {
	struct lk_tref t = {NULL, S(name)};

	return t;
}

/* ---- describe ---- */

static void
test_describe_maps_types_and_pk(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("t");
	struct lk_table tab;
	struct lk_err err = LK_ERR_INIT;

	(void)state;
	run_sql(c, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL,"
		   " flag BOOLEAN, amount NUMERIC TEXT, data BLOB, ts TIMESTAMPTZ TEXT, x)");
	assert_int_equal(ops->describe(c, &t, &tab, &err), 0);
	assert_string_equal(tab.schema, "main");
	assert_string_equal(tab.name, "t");
	assert_int_equal(tab.ncols, 8);
	assert_string_equal(tab.cols[1].name, "name");
	assert_string_equal(tab.cols[1].native, "TEXT");
	assert_true(tab.cols[1].not_null);
	assert_false(tab.cols[2].not_null);
	assert_int_equal(tab.cols[0].type, LK_T_INT);
	assert_int_equal(tab.cols[1].type, LK_T_TEXT);
	assert_int_equal(tab.cols[2].type, LK_T_FLOAT);
	assert_int_equal(tab.cols[3].type, LK_T_BOOL);
	assert_int_equal(tab.cols[4].type, LK_T_NUMERIC);
	assert_int_equal(tab.cols[5].type, LK_T_BYTES);
	assert_int_equal(tab.cols[6].type, LK_T_TIMESTAMPTZ);
	assert_int_equal(tab.cols[7].type, LK_T_OTHER);
	assert_string_equal(tab.cols[7].native, "");
	assert_int_equal(tab.npk, 1);
	assert_int_equal(tab.pk[0], 0);
	lk_table_release(&tab);
	ops->close(c);
}

static void test_describe_composite_pk_in_key_order(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = {S("main"), S("c")};
	struct lk_table tab;
	struct lk_err err = LK_ERR_INIT;

	(void)state;
	run_sql(c, "CREATE TABLE c (a TEXT, v TEXT, b INTEGER, PRIMARY KEY (b, a))");
	assert_int_equal(ops->describe(c, &t, &tab, &err), 0);
	assert_int_equal(tab.npk, 2);
	assert_int_equal(tab.pk[0], 2);
	assert_int_equal(tab.pk[1], 0);
	lk_table_release(&tab);
	run_sql(c, "CREATE TABLE nokey (a TEXT)");
	t.name = S("nokey");
	assert_int_equal(ops->describe(c, &t, &tab, &err), 0);
	assert_int_equal(tab.npk, 0);
	lk_table_release(&tab);
	ops->close(c);
}

static void test_describe_missing_table_is_notfound(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("nope");
	struct lk_tref ts = {S("main"), S("nope")};
	struct lk_tref other = {S("elsewhere"), S("t")};
	struct lk_table tab;
	struct lk_err err = LK_ERR_INIT;

	(void)state;
	assert_int_equal(ops->describe(c, &t, &tab, &err), -1);
	assert_int_equal(err.code, LK_ERR_NOTFOUND);
	assert_string_equal(err.msg, "table 'nope' does not exist in testdb");
	assert_int_equal(ops->describe(c, &ts, &tab, &err), -1);
	assert_string_equal(err.msg, "table 'main.nope' does not exist in testdb");
	assert_int_equal(ops->describe(c, &other, &tab, &err), -1);
	assert_int_equal(err.code, LK_ERR_NOTFOUND);
	assert_string_equal(err.msg, "table 'elsewhere.t' does not exist in testdb");
	ops->close(c);
}

/* ---- has_unique ---- */

static bool unique_on(struct lk_conn *c, const char *table, const char *const *cols, int n)
{
	struct lk_tref t = T(table);
	struct lk_err err = LK_ERR_INIT;
	bool yes = true;

	if (ops->has_unique(c, &t, cols, n, &yes, &err) < 0)
		fail_msg("has_unique: %s", err.msg);
	return yes;
}

static void test_has_unique_matches_exact_column_sets(void **state)
{
	static const char *const ab[] = {"a", "b"}, *const ba[] = {"b", "a"};
	static const char *const a[] = {"a"}, *const x[] = {"x"}, *const y[] = {"y"};
	static const char *const z[] = {"z"}, *const w[] = {"w"}, *const xy[] = {"x", "y"};
	static const char *const aa[] = {"a", "a"};
	struct lk_conn *c = open_mem();

	(void)state;
	run_sql(c, "CREATE TABLE u (a INT, b TEXT, x INT, y INT, z TEXT, w INT,"
		   " PRIMARY KEY (a, b));"
		   "CREATE UNIQUE INDEX u_x ON u (x);"
		   "CREATE UNIQUE INDEX u_y ON u (y) WHERE y > 0;"
		   "CREATE UNIQUE INDEX u_z ON u (lower(z));"
		   "CREATE INDEX u_w ON u (w);"
		   "CREATE TABLE r (id INTEGER PRIMARY KEY, a INT UNIQUE)");
	assert_true(unique_on(c, "u", ab, 2));
	assert_true(unique_on(c, "u", ba, 2));
	assert_false(unique_on(c, "u", a, 1));
	assert_false(unique_on(c, "u", aa, 2));
	assert_true(unique_on(c, "u", x, 1));
	assert_false(unique_on(c, "u", xy, 2));
	assert_false(unique_on(c, "u", y, 1)); /* partial */
	assert_false(unique_on(c, "u", z, 1)); /* expression */
	assert_false(unique_on(c, "u", w, 1)); /* not unique */
	assert_true(unique_on(c, "r", a, 1));  /* UNIQUE constraint: an automatic index */
	ops->close(c);
}

/* ---- create_table ---- */

static void test_create_table_round_trips_logical_types(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = {S("main"), S("all types")};
	struct lk_column cols[LK_T_TIME + 1];
	char names[LK_T_TIME + 1][32];
	int key[] = {LK_T_INT, LK_T_TEXT};
	struct lk_table tab;
	struct lk_err err = LK_ERR_INIT;

	(void)state;
	for (int i = 0; i <= LK_T_TIME; i++) {
		(void)snprintf(names[i], sizeof(names[i]), "c %s", lk_type_name((enum lk_type)i));
		cols[i] = (struct lk_column){
			.name = names[i], .type = (enum lk_type)i, .not_null = i == LK_T_UUID};
	}
	assert_int_equal(ops->create_table(c, &t, cols, LK_T_TIME + 1, key, 2, &err), 0);
	/* IF NOT EXISTS: a second create is harmless. */
	assert_int_equal(ops->create_table(c, &t, cols, LK_T_TIME + 1, key, 2, &err), 0);
	assert_int_equal(ops->describe(c, &t, &tab, &err), 0);
	assert_int_equal(tab.ncols, LK_T_TIME + 1);
	for (int i = 1; i <= LK_T_TIME; i++) {
		assert_string_equal(tab.cols[i].name, names[i]);
		assert_int_equal(tab.cols[i].type, i);
		assert_int_equal(tab.cols[i].not_null, i == LK_T_UUID);
	}
	assert_int_equal(tab.cols[LK_T_OTHER].type, LK_T_TEXT); /* passed through as text */
	assert_int_equal(tab.npk, 2);
	assert_int_equal(tab.pk[0], LK_T_INT);
	assert_int_equal(tab.pk[1], LK_T_TEXT);
	lk_table_release(&tab);
	ops->close(c);
}

/* ---- upsert ---- */

static const char *const pcols[] = {"id", "name", "score"};
static const enum lk_type ptypes[] = {LK_T_INT, LK_T_TEXT, LK_T_FLOAT};
static const int pkey[] = {0};

static struct lk_write_spec people_spec(const struct lk_tref *t)
{
	struct lk_write_spec w = {t, pcols, ptypes, 3, pkey, 1, NULL};

	return w;
}

static void test_upsert_inserts_updates_and_replays(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("p");
	struct lk_write_spec w = people_spec(&t);
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;

	(void)state;
	run_sql(c, "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, score REAL)");
	lk_rows_init(&rows, 3);
	add_row(&rows, (const char *[]){"1", "ann", "1.5"});
	add_row(&rows, (const char *[]){"2", "bob", NULL});
	add_row(&rows, (const char *[]){"3", NULL, "-0.25"});
	assert_int_equal(ops->begin(c, &err), 0);
	assert_int_equal(ops->upsert(c, &w, &rows, true, &err), 0);
	assert_int_equal(ops->commit(c, &err), 0);
	assert_query(c, "SELECT count(*) FROM p", "3");

	lk_rows_reset(&rows);
	add_row(&rows, (const char *[]){"2", "bobby", "7"});
	add_row(&rows, (const char *[]){"4", "dee", "1e300"});
	for (int replay = 0; replay < 2; replay++) {
		assert_int_equal(ops->begin(c, &err), 0);
		assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
		assert_int_equal(ops->commit(c, &err), 0);
	}
	assert_query(c, "SELECT count(*) FROM p", "4");
	assert_query(c, "SELECT name || ':' || score FROM p WHERE id = 2", "bobby:7.0");
	assert_query(c, "SELECT typeof(score) FROM p WHERE id = 4", "real");
	assert_query(c, "SELECT score FROM p WHERE id = 4", "1e+300");
	assert_query(c, "SELECT quote(name) FROM p WHERE id = 3", "NULL");
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_upsert_refuses_nan_naming_key_and_column(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("p");
	struct lk_write_spec w = people_spec(&t);
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;

	(void)state;
	run_sql(c, "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, score REAL)");
	lk_rows_init(&rows, 3);
	add_row(&rows, (const char *[]){"41", "inf", "Infinity"});
	add_row(&rows, (const char *[]){"40", "-inf", "-Infinity"});
	add_row(&rows, (const char *[]){"42", "x", "NaN"});
	assert_int_equal(ops->begin(c, &err), 0);
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), -1);
	assert_int_equal(err.code, LK_ERR_VALUE);
	assert_string_equal(err.msg, "row (id=42): column 'score': NaN cannot be stored in SQLite");
	assert_int_equal(ops->rollback(c), 0);

	lk_rows_reset(&rows);
	add_row(&rows, (const char *[]){"41", "inf", "Infinity"});
	add_row(&rows, (const char *[]){"40", "-inf", "-Infinity"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
	assert_query(c, "SELECT score FROM p WHERE id = 41", "Infinity");
	assert_query(c, "SELECT score FROM p WHERE id = 40", "-Infinity");
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_upsert_refuses_numeric_precision_loss(void **state)
{
	static const char *const cols[] = {"id", "r", "n", "t", "i"};
	static const enum lk_type types[] = {LK_T_INT, LK_T_NUMERIC, LK_T_NUMERIC, LK_T_NUMERIC,
					     LK_T_INT};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("m");
	struct lk_write_spec w = {&t, cols, types, 5, pkey, 1, NULL};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;

	(void)state;
	run_sql(c, "CREATE TABLE m (id INTEGER PRIMARY KEY, r REAL, n NUMERIC, t NUMERIC TEXT,"
		   " i DOUBLE)");
	lk_rows_init(&rows, 5);
	add_row(&rows, (const char *[]){"1", "0.1", "1234567890123456789", "0.10000000000000001",
					"9007199254740992"});
	add_row(&rows, (const char *[]){"2", "-12.500", "42.000", "1.10", "-3"});
	add_row(&rows, (const char *[]){"3", "1e-7", "Infinity", "NaN", NULL});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
	assert_query(c, "SELECT r FROM m WHERE id = 1", "0.1");
	assert_query(c, "SELECT n || ' ' || typeof(n) FROM m WHERE id = 1",
		     "1234567890123456789 integer");
	assert_query(c, "SELECT t FROM m WHERE id = 1", "0.10000000000000001");
	assert_query(c, "SELECT r FROM m WHERE id = 2", "-12.5");
	assert_query(c, "SELECT n || ' ' || typeof(n) FROM m WHERE id = 2", "42 integer");
	assert_query(c, "SELECT t FROM m WHERE id = 2", "1.10");
	assert_query(c, "SELECT t FROM m WHERE id = 3", "NaN");

	lk_rows_reset(&rows);
	add_row(&rows, (const char *[]){"7", "0.10000000000000001", "1", "1", "1"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), -1);
	assert_int_equal(err.code, LK_ERR_VALUE);
	assert_non_null(strstr(err.msg, "row (id=7): column 'r': 0.10000000000000001 cannot be"
					" stored exactly"));
	lk_rows_reset(&rows);
	add_row(&rows, (const char *[]){"8", "1", "12345678901234567890", "1", "1"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), -1);
	assert_non_null(strstr(err.msg, "column 'n'"));
	lk_rows_reset(&rows);
	add_row(&rows, (const char *[]){"9", "NaN", "1", "1", "1"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), -1);
	assert_string_equal(err.msg, "row (id=9): column 'r': NaN cannot be stored in SQLite");
	lk_rows_reset(&rows);
	add_row(&rows, (const char *[]){"10", "1", "1", "1", "9007199254740993"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), -1);
	assert_non_null(strstr(err.msg, "column 'i': 9007199254740993 cannot be stored exactly"));
	assert_query(c, "SELECT count(*) FROM m", "3");
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_upsert_all_key_columns_does_nothing_on_conflict(void **state)
{
	static const char *const cols[] = {"a", "b"};
	static const enum lk_type types[] = {LK_T_INT, LK_T_TEXT};
	static const int key[] = {0, 1};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("k");
	struct lk_write_spec w = {&t, cols, types, 2, key, 2, NULL};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;

	(void)state;
	run_sql(c, "CREATE TABLE k (a INT, b TEXT, PRIMARY KEY (a, b))");
	lk_rows_init(&rows, 2);
	add_row(&rows, (const char *[]){"1", "x"});
	add_row(&rows, (const char *[]){"1", "x"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
	assert_query(c, "SELECT count(*) FROM k", "1");
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_upsert_constraint_error_names_row(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("p");
	struct lk_write_spec w = people_spec(&t);
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;

	(void)state;
	run_sql(c, "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)");
	lk_rows_init(&rows, 3);
	add_row(&rows, (const char *[]){"5", NULL, "1"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_false(err.transient);
	assert_non_null(strstr(err.msg, "row (id=5): NOT NULL constraint failed"));
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_upsert_statement_cache_survives_many_tables(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;
	char name[16], sql[96];

	(void)state;
	lk_rows_init(&rows, 3);
	add_row(&rows, (const char *[]){"1", "a", "1"});
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 40; i++) { /* more tables than the cache holds */
			struct lk_tref t = T(name);
			struct lk_write_spec w = people_spec(&t);

			(void)snprintf(name, sizeof(name), "p%d", i);
			(void)snprintf(sql, sizeof(sql),
				       "CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY,"
				       " name TEXT, score REAL)",
				       name);
			run_sql(c, sql);
			assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
		}
	}
	assert_query(c, "SELECT count(*) FROM p0", "1");
	assert_query(c, "SELECT count(*) FROM p39", "1");
	lk_rows_release(&rows);
	ops->close(c);
}

/* ---- values ---- */

static void test_blobs_with_nul_bytes_round_trip(void **state)
{
	static const char *const cols[] = {"id", "data"};
	static const enum lk_type types[] = {LK_T_INT, LK_T_BYTES};
	static const char bytes[] = {'a', '\0', 'b', '\0', (char)0xff};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("b");
	struct lk_write_spec w = {&t, cols, types, 2, pkey, 1, NULL};
	struct lk_scan_spec s = {&t, cols, types, 2, pkey, 1, NULL, NULL, NULL, NULL, NULL, false};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows, out;

	(void)state;
	run_sql(c, "CREATE TABLE b (id INTEGER PRIMARY KEY, data BLOB);"
		   "INSERT INTO b VALUES (3, 'as text')");
	lk_rows_init(&rows, 2);
	add_row(&rows, (const char *[]){"1", NULL});
	lk_rows_set(&rows, 0, 1, bytes, sizeof(bytes));
	add_row(&rows, (const char *[]){"2", ""});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
	assert_query(c, "SELECT hex(data) FROM b WHERE id = 1", "61006200FF");
	assert_query(c, "SELECT typeof(data) FROM b WHERE id = 2", "blob");
	scan_all(c, &s, 10, &out);
	assert_int_equal(out.nrows, 3);
	assert_int_equal(LK_ROW(&out, 0)[1].len, sizeof(bytes));
	assert_memory_equal(LK_ROW(&out, 0)[1].p, bytes, sizeof(bytes));
	assert_false(LK_ROW(&out, 1)[1].null);
	assert_int_equal(LK_ROW(&out, 1)[1].len, 0);
	assert_string_equal(val(&out, 2, 1), "as text");
	lk_rows_release(&out);
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_unicode_text_round_trips(void **state)
{
	static const char *const text = "Grüße, 世界 🌍 \"quoted\" 'single'";
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("p");
	struct lk_write_spec w = people_spec(&t);
	struct lk_scan_spec s = {&t,   pcols, ptypes, 3,    pkey, 1,
				 NULL, NULL,  NULL,   NULL, NULL, false};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows, out;

	(void)state;
	run_sql(c, "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, score REAL)");
	lk_rows_init(&rows, 3);
	add_row(&rows, (const char *[]){"1", text, "0.1"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
	scan_all(c, &s, 10, &out);
	assert_int_equal(out.nrows, 1);
	assert_string_equal(val(&out, 0, 1), text);
	assert_int_equal(LK_ROW(&out, 0)[1].len, strlen(text));
	assert_string_equal(val(&out, 0, 2), "0.1");
	assert_query(c, "SELECT length(name) FROM p", "29");
	lk_rows_release(&out);
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_values_read_in_interchange_form(void **state)
{
	static const char *const cols[] = {"id", "b", "i", "f", "n", "x"};
	static const enum lk_type types[] = {LK_T_INT,	 LK_T_BOOL,    LK_T_INT,
					     LK_T_FLOAT, LK_T_NUMERIC, LK_T_OTHER};
	static const char *const want[][6] = {
		{"1", "t", "3", "100", "100000000000000000000", "0.1"},
		{"2", "f", "-7", "1e-05", "0.00000015", "1e+15"},
		{"3", "t", "2.5", "1.2345678901234567e+19", "12.25", "123456789012345"},
		{"4", "f", "x", "0.0001", "0", "-0"},
	};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("v");
	struct lk_scan_spec s = {&t, cols, types, 6, pkey, 1, NULL, NULL, NULL, NULL, NULL, false};
	struct lk_rows out;

	(void)state;
	/* No declared types (BLOB affinity): values keep the storage class they are given. */
	run_sql(c, "CREATE TABLE v (id INTEGER PRIMARY KEY, b BOOLEAN, i, f, n, x);"
		   "INSERT INTO v VALUES (1, 1, 3.0, 100, 1e20, 0.1),"
		   " (2, 0, -7, 1e-5, 1.5e-7, 1e15),"
		   " (3, 'true', 2.5, 12345678901234567890.0, 12.25, 123456789012345.0),"
		   " (4, 'f', 'x', 0.0001, -0.0, -0.0)");
	scan_all(c, &s, 3, &out);
	assert_int_equal(out.nrows, 4);
	for (int r = 0; r < 4; r++) {
		for (int i = 0; i < 6; i++)
			assert_string_equal(val(&out, r, i), want[r][i]);
	}
	lk_rows_release(&out);
	ops->close(c);
}

/* ---- scans ---- */

static void test_scan_orders_by_composite_key_with_bounds(void **state)
{
	static const char *const cols[] = {"name", "g", "s"};
	static const enum lk_type types[] = {LK_T_TEXT, LK_T_INT, LK_T_TEXT};
	static const int order[] = {1, 2};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("ck");
	struct lk_scan_spec s = {&t, cols, types, 3, order, 2, NULL, NULL, NULL, NULL, NULL, false};
	struct lk_value after[] = {{"2", 1, false}, {"b", 1, false}};
	struct lk_value lo = {"2", 1, false}, hi = {"10", 2, false};
	struct lk_rows out;

	(void)state;
	run_sql(c, "CREATE TABLE ck (g INTEGER, s TEXT, name TEXT, PRIMARY KEY (g, s));"
		   "INSERT INTO ck VALUES (10,'a','j'),(2,'c','f'),(1,'b','b'),(2,'a','d'),"
		   " (1,'a','a'),(2,'b','e'),(3,'a','g'),(1,'c','c'),(9,'z','i'),(3,'b','h')");
	scan_all(c, &s, 3, &out);
	assert_int_equal(out.nrows, 10);
	for (int r = 0; r < 10; r++)
		assert_int_equal(val(&out, r, 0)[0], 'a' + r);
	lk_rows_release(&out);

	s.after = after; /* exclusive: (2,'b') itself is not returned */
	scan_all(c, &s, 2, &out);
	assert_int_equal(out.nrows, 5);
	assert_string_equal(val(&out, 0, 0), "f");
	assert_string_equal(val(&out, 4, 0), "j");
	lk_rows_release(&out);

	s.after = NULL;
	s.min_first = &lo; /* inclusive */
	s.max_first = &hi; /* exclusive; compared as integers, not text */
	scan_all(c, &s, 100, &out);
	assert_int_equal(out.nrows, 6);
	assert_string_equal(val(&out, 0, 0), "d");
	assert_string_equal(val(&out, 5, 0), "i");
	lk_rows_release(&out);

	s.after = after;
	scan_all(c, &s, 1, &out);
	assert_int_equal(out.nrows, 4);
	assert_string_equal(val(&out, 0, 0), "f");
	lk_rows_release(&out);
	ops->close(c);
}

static void test_scan_cursor_ties_are_neither_lost_nor_repeated(void **state)
{
	static const char *const cols[] = {"id", "ts"};
	static const enum lk_type types[] = {LK_T_INT, LK_T_TIMESTAMPTZ};
	static const int order[] = {1, 0};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("ev");
	struct lk_scan_spec s = {&t, cols, types, 2, order, 2, NULL, NULL, NULL, NULL, NULL, false};
	struct lk_value after[] = {{"2024-01-01 00:00:05+00", 22, false}, {"3", 1, false}};
	struct lk_rows out;

	(void)state;
	run_sql(c, "CREATE TABLE ev (id INTEGER PRIMARY KEY, ts TIMESTAMPTZ TEXT);"
		   "INSERT INTO ev VALUES (1, '2024-01-01 00:00:05+00'), (2, '2024-01-01 "
		   "00:00:01+00'),"
		   " (3, '2024-01-01 00:00:05+00'), (4, '2024-01-01 00:00:05+00'),"
		   " (5, '2024-01-01 00:00:09+00')");
	s.after = after;
	scan_all(c, &s, 10, &out);
	assert_int_equal(out.nrows, 2);
	assert_string_equal(val(&out, 0, 0), "4");
	assert_string_equal(val(&out, 1, 0), "5");
	lk_rows_release(&out);
	ops->close(c);
}

static void test_scan_match_column_is_t_or_f(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("p");
	struct lk_scan_spec s = {&t,   pcols, ptypes, 3,	 pkey,	      1,
				 NULL, NULL,  NULL,   "id <> 4", "score > 1", false};
	struct lk_value one = {"1", 1, false};
	struct lk_rows out;

	(void)state;
	run_sql(c, "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, score REAL);"
		   "INSERT INTO p VALUES (1,'a',0.5),(2,'b',2),(3,'c',NULL),(4,'d',9)");
	scan_all(c, &s, 10, &out);
	assert_int_equal(out.ncols, 4);
	assert_int_equal(out.nrows, 3);
	assert_string_equal(val(&out, 0, 3), "f");
	assert_string_equal(val(&out, 1, 3), "t");
	assert_string_equal(val(&out, 2, 3), "f"); /* NULL -> f */
	lk_rows_release(&out);

	s.after = &one; /* a one-column key: a plain comparison */
	scan_all(c, &s, 10, &out);
	assert_int_equal(out.nrows, 2);
	assert_string_equal(val(&out, 0, 0), "2");
	lk_rows_release(&out);
	ops->close(c);
}

static void test_scan_holds_one_snapshot(void **state)
{
	char path[] = "/tmp/lk_sqlite_snapXXXXXX";
	int fd = mkstemp(path);
	struct lk_conn *r, *w;
	struct lk_tref t = T("p");
	struct lk_scan_spec s = {&t,   pcols, ptypes, 3,    pkey, 1,
				 NULL, NULL,  NULL,   NULL, NULL, false};
	struct lk_err err = LK_ERR_INIT;
	struct lk_scan *sc;
	struct lk_rows out;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	r = open_path(path);
	w = open_path(path);
	run_sql(w, "PRAGMA journal_mode=WAL;"
		   "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, score REAL);"
		   "INSERT INTO p VALUES (1,'a',1),(2,'b',2),(3,'c',3)");
	lk_rows_init(&out, 0);
	sc = ops->scan_open(r, &s, &err);
	assert_non_null(sc);
	assert_int_equal(ops->scan_next(sc, &out, 1, &err), 1);
	run_sql(w, "INSERT INTO p VALUES (4,'d',4)");
	assert_int_equal(ops->scan_next(sc, &out, 10, &err), 2);
	assert_int_equal(ops->scan_next(sc, &out, 10, &err), 0);
	ops->scan_close(sc);
	assert_query(r, "SELECT count(*) FROM p", "4");
	lk_rows_release(&out);
	ops->close(r);
	ops->close(w);
	unlink(path);
}

/* ---- fetch ---- */

static void test_fetch_by_key_list_skips_missing_keys(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("p");
	struct lk_scan_spec s = {&t,   pcols, ptypes, 3,    pkey, 1,
				 NULL, NULL,  NULL,   NULL, NULL, false};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows keys, out;
	char num[32];
	long sum = 0;

	(void)state;
	run_sql(c, "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, score REAL);"
		   "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200)"
		   " INSERT INTO p SELECT i, 'n' || i, i / 2.0 FROM n");
	lk_rows_init(&keys, 1);
	for (int i = 1; i <= 1300; i += 1) { /* 1200 present (1..1200), 100 missing */
		(void)snprintf(num, sizeof(num), "%d", i);
		add_row(&keys, (const char *[]){num});
	}
	lk_rows_init(&out, 0);
	assert_int_equal(ops->fetch(c, &s, &keys, &out, &err), 0);
	assert_int_equal(out.ncols, 3);
	assert_int_equal(out.nrows, 1200);
	for (int r = 0; r < out.nrows; r++)
		sum += strtol(val(&out, r, 0), NULL, 10);
	assert_int_equal(sum, 1200L * 1201L / 2);
	lk_rows_reset(&out);
	lk_rows_reset(&keys);
	assert_int_equal(ops->fetch(c, &s, &keys, &out, &err), 0);
	assert_int_equal(out.nrows, 0);
	lk_rows_release(&keys);
	lk_rows_release(&out);
	ops->close(c);
}

static void test_fetch_composite_keys_with_filter(void **state)
{
	static const char *const cols[] = {"g", "s", "name"};
	static const enum lk_type types[] = {LK_T_INT, LK_T_TEXT, LK_T_TEXT};
	static const int order[] = {0, 1};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("ck");
	struct lk_scan_spec s = {&t,   cols, types,	    3,	  order, 2, NULL,
				 NULL, NULL, "name <> 'e'", NULL, false};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows keys, out;

	(void)state;
	run_sql(c, "CREATE TABLE ck (g INTEGER, s TEXT, name TEXT, PRIMARY KEY (g, s));"
		   "INSERT INTO ck VALUES (1,'a','a'),(1,'b','b'),(2,'a','d'),(2,'b','e')");
	lk_rows_init(&keys, 2);
	add_row(&keys, (const char *[]){"1", "b"});
	add_row(&keys, (const char *[]){"2", "b"}); /* filtered out */
	add_row(&keys, (const char *[]){"2", "a"});
	add_row(&keys, (const char *[]){"1", "z"}); /* missing */
	add_row(&keys, (const char *[]){"a", "1"}); /* swapped: no match */
	lk_rows_init(&out, 0);
	assert_int_equal(ops->fetch(c, &s, &keys, &out, &err), 0);
	assert_int_equal(out.nrows, 2);
	/* Order is unspecified: compare as a set. */
	assert_true((strcmp(val(&out, 0, 2), "b") == 0 && strcmp(val(&out, 1, 2), "d") == 0) ||
		    (strcmp(val(&out, 0, 2), "d") == 0 && strcmp(val(&out, 1, 2), "b") == 0));

	/* With a match expression, fetched rows carry the match column like scanned ones. */
	lk_rows_release(&out);
	lk_rows_init(&out, 0);
	s.filter = NULL;
	s.match = "name = 'e'";
	assert_int_equal(ops->fetch(c, &s, &keys, &out, &err), 0);
	assert_int_equal(out.ncols, 4);
	assert_int_equal(out.nrows, 3);
	for (int r = 0; r < out.nrows; r++)
		assert_string_equal(val(&out, r, 3), strcmp(val(&out, r, 2), "e") == 0 ? "t" : "f");
	lk_rows_release(&keys);
	lk_rows_release(&out);
	ops->close(c);
}

/* Finds the row of out whose last column (the ordinal) is ord; -1 when none. */
static int row_of(const struct lk_rows *out, const char *ord)
{
	for (int r = 0; r < out->nrows; r++) {
		if (strcmp(val(out, r, out->ncols - 1), ord) == 0)
			return r;
	}
	return -1;
}

static void test_fetch_ordinal_lets_the_source_match_keys(void **state)
{
	static const char *const cols[] = {"g", "s", "name"};
	static const enum lk_type types[] = {LK_T_INT, LK_T_TEXT, LK_T_TEXT};
	static const int order[] = {0, 1};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("ok");
	struct lk_scan_spec s = {&t,   cols, types,	    3,	  order, 2, NULL,
				 NULL, NULL, "name <> 'e'", NULL, true};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows keys, out;
	char num[16];
	int r;

	(void)state;
	run_sql(c,
		"CREATE TABLE ok (g INTEGER, s TEXT COLLATE NOCASE, name TEXT, PRIMARY KEY (g, s));"
		"INSERT INTO ok VALUES (1,'a','a'),(1,'b','b'),(2,'a','d'),(2,'b','e')");
	lk_rows_init(&keys, 2);
	add_row(&keys, (const char *[]){"1", "B"}); /* 1: the source's collation says (1, 'b') */
	add_row(&keys, (const char *[]){"1", "b"}); /* 2: the same row again */
	add_row(&keys, (const char *[]){"2", "b"}); /* 3: filtered out: gone */
	add_row(&keys, (const char *[]){"2", "a"}); /* 4 */
	add_row(&keys, (const char *[]){"9", "z"}); /* 5: missing */
	for (int i = 0; i < 1100; i++) {	    /* more than one statement's worth */
		(void)snprintf(num, sizeof(num), "%d", 100 + i);
		add_row(&keys, (const char *[]){num, "x"});
	}
	lk_rows_init(&out, 0);
	assert_int_equal(ops->fetch(c, &s, &keys, &out, &err), 0);
	assert_int_equal(out.ncols, 4);
	assert_int_equal(out.nrows, 1105);
	for (int i = 0; i < 2; i++) {
		r = row_of(&out, i ? "2" : "1");
		assert_true(r >= 0);
		assert_string_equal(val(&out, r, 1), "b"); /* the row's key, not the logged one */
		assert_string_equal(val(&out, r, 2), "b");
	}
	assert_true((r = row_of(&out, "4")) >= 0);
	assert_string_equal(val(&out, r, 2), "d");
	assert_true((r = row_of(&out, "-3")) >= 0);
	assert_string_equal(val(&out, r, 0), "2");
	assert_string_equal(val(&out, r, 1), "b");
	assert_true(LK_ROW(&out, r)[2].null);
	assert_true((r = row_of(&out, "-5")) >= 0);
	assert_string_equal(val(&out, r, 0), "9");
	assert_true((r = row_of(&out, "-1105")) >= 0);
	assert_string_equal(val(&out, r, 0), "1199");
	assert_int_equal(row_of(&out, "3"), -1);
	lk_rows_release(&keys);
	lk_rows_release(&out);
	ops->close(c);
}

/* ---- delete ---- */

static void test_delete_and_soft_delete(void **state)
{
	static const char *const cols[] = {"id", "name", "gone"};
	static const enum lk_type types[] = {LK_T_INT, LK_T_TEXT, LK_T_TIMESTAMPTZ};
	struct lk_conn *c = open_mem();
	struct lk_tref t = T("d");
	struct lk_write_spec w = {&t, cols, types, 2, pkey, 1, NULL};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;
	char *when;

	(void)state;
	run_sql(c, "CREATE TABLE d (id INTEGER PRIMARY KEY, name TEXT, gone TIMESTAMPTZ TEXT);"
		   "INSERT INTO d (id, name) VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d')");
	lk_rows_init(&rows, 1); /* key-only rows */
	add_row(&rows, (const char *[]){"1"});
	add_row(&rows, (const char *[]){"99"});
	assert_int_equal(ops->delete_keys(c, &w, &rows, &err), 0);
	assert_query(c, "SELECT group_concat(id) FROM d", "2,3,4");

	lk_rows_release(&rows);
	lk_rows_init(&rows, 2); /* full rows */
	add_row(&rows, (const char *[]){"2", "b"});
	w.soft_column = "gone";
	assert_int_equal(ops->delete_keys(c, &w, &rows, &err), 0);
	when = query1(c, "SELECT gone FROM d WHERE id = 2");
	assert_int_equal(strlen(when), strlen("2024-01-01 00:00:00.000000+00"));
	assert_string_equal(when + 26, "+00");
	assert_int_equal(when[10], ' ');
	/* Deleting again keeps the first time. */
	assert_int_equal(ops->delete_keys(c, &w, &rows, &err), 0);
	assert_query(c, "SELECT count(*) FROM d WHERE gone IS NOT NULL", "1");
	free(when);

	/* An upsert of the row brings it back (clears the soft column). */
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
	assert_query(c, "SELECT quote(gone) FROM d WHERE id = 2", "NULL");
	lk_rows_release(&rows);
	ops->close(c);
}

/* ---- the sync position ---- */

static void test_position_put_get_and_epoch_fence(void **state)
{
	struct lk_conn *c = open_mem();
	struct lk_err err = LK_ERR_INIT;
	int64_t epoch = -1;
	char sentinel[2] = "x";
	char *none = sentinel; /* position_get must set it to NULL */
	char *pos = NULL;

	(void)state;
	assert_int_equal(ops->position_get(c, "job1", &epoch, &none, &err), 0);
	assert_int_equal(epoch, 0);
	assert_null(none);
	assert_int_equal(ops->position_setup(c, &err), 0);
	assert_int_equal(ops->position_setup(c, &err), 0);
	assert_int_equal(ops->position_get(c, "job1", &epoch, &none, &err), 0);
	assert_null(none);

	assert_int_equal(ops->begin(c, &err), 0);
	assert_int_equal(ops->position_put(c, "job1", 3, "{\"k\":1}", &err), 0);
	assert_int_equal(ops->commit(c, &err), 0);
	assert_int_equal(ops->position_put(c, "job1", 3, "{\"k\":2}", &err), 0);
	assert_int_equal(ops->position_put(c, "job2", 1, "{}", &err), 0);
	assert_int_equal(ops->position_get(c, "job1", &epoch, &pos, &err), 0);
	assert_int_equal(epoch, 3);
	assert_string_equal(pos, "{\"k\":2}");
	free(pos);

	assert_int_equal(ops->begin(c, &err), 0);
	assert_int_equal(ops->position_put(c, "job1", 2, "{\"k\":9}", &err), -1);
	assert_int_equal(err.code, LK_ERR_FENCED);
	assert_string_equal(err.msg, "position of job 'job1' is held by a newer epoch");
	assert_int_equal(ops->rollback(c), 0);
	assert_int_equal(ops->position_get(c, "job1", &epoch, &pos, &err), 0);
	assert_int_equal(epoch, 3);
	assert_string_equal(pos, "{\"k\":2}");
	free(pos);

	assert_int_equal(ops->position_put(c, "job1", 4, "{\"k\":4}", &err), 0);
	assert_int_equal(ops->position_get(c, "job1", &epoch, &pos, &err), 0);
	assert_int_equal(epoch, 4);
	free(pos);
	assert_query(c, "SELECT count(*) FROM lockstep_sync_position WHERE updated_at LIKE '20%Z'",
		     "2");
	ops->close(c);
}

/* ---- identifiers, exec, errors ---- */

static void test_quoted_identifiers(void **state)
{
	static const char *const cols[] = {"Key Col", "we\"ird", "MiXeD"};
	static const enum lk_type types[] = {LK_T_TEXT, LK_T_INT, LK_T_BOOL};
	struct lk_conn *c = open_mem();
	struct lk_tref t = {S("main"), S("My \"Table\" x")};
	struct lk_column ccols[] = {{.name = S("Key Col"), .type = LK_T_TEXT, .not_null = true},
				    {.name = S("we\"ird"), .type = LK_T_INT},
				    {.name = S("MiXeD"), .type = LK_T_BOOL}};
	struct lk_write_spec w = {&t, cols, types, 3, pkey, 1, "gone'"};
	struct lk_scan_spec s = {&t, cols, types, 3, pkey, 1, NULL, NULL, NULL, NULL, NULL, false};
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows, out;
	struct lk_table tab;
	bool yes = false;
	int64_t n = 0;

	(void)state;
	assert_int_equal(ops->create_table(c, &t, ccols, 3, pkey, 1, &err), 0);
	run_sql(c, "ALTER TABLE \"My \"\"Table\"\" x\" ADD COLUMN \"gone'\" TEXT");
	assert_int_equal(ops->describe(c, &t, &tab, &err), 0);
	assert_string_equal(tab.cols[1].name, "we\"ird");
	assert_int_equal(tab.pk[0], 0);
	lk_table_release(&tab);
	assert_int_equal(ops->has_unique(c, &t, cols, 1, &yes, &err), 0);
	assert_true(yes);
	lk_rows_init(&rows, 3);
	add_row(&rows, (const char *[]){"a b", "1", "t"});
	add_row(&rows, (const char *[]){"it's", "2", "f"});
	assert_int_equal(ops->upsert(c, &w, &rows, false, &err), 0);
	assert_int_equal(ops->estimate(c, &t, &n, &err), 0);
	assert_int_equal(n, 2);
	scan_all(c, &s, 10, &out);
	assert_int_equal(out.nrows, 2);
	assert_string_equal(val(&out, 0, 0), "a b");
	assert_string_equal(val(&out, 0, 2), "t");
	assert_string_equal(val(&out, 1, 0), "it's");
	assert_string_equal(val(&out, 1, 2), "f");
	lk_rows_release(&out);
	assert_int_equal(ops->delete_keys(c, &w, &rows, &err), 0);
	assert_query(c, "SELECT count(*) FROM \"My \"\"Table\"\" x\" WHERE \"gone'\" IS NULL", "0");
	w.soft_column = NULL;
	assert_int_equal(ops->delete_keys(c, &w, &rows, &err), 0);
	assert_int_equal(ops->estimate(c, &t, &n, &err), 0);
	assert_int_equal(n, 0);
	lk_rows_release(&rows);
	ops->close(c);
}

static void test_exec_binds_by_name_and_counts_changes(void **state)
{
	const char *params[] = {"5", NULL, "x"};
	struct lk_conn *c = open_mem();
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;
	int64_t affected = -1;
	bool empty = false;
	struct lk_tref t = T("e");

	(void)state;
	run_sql(c, "CREATE TABLE e (a INT, b TEXT, c TEXT); -- a comment\n");
	assert_int_equal(ops->is_empty(c, &t, &empty, &err), 0);
	assert_true(empty);
	assert_int_equal(ops->exec(c, "INSERT INTO e VALUES ($1, $2, $3), ($1 + 1, $3, $2)", 3,
				   params, NULL, &affected, &err),
			 0);
	assert_int_equal(affected, 2);
	assert_int_equal(ops->is_empty(c, &t, &empty, &err), 0);
	assert_false(empty);
	assert_int_equal(
		ops->exec(c, "UPDATE e SET c = 'y' WHERE a > $1", 1, params, NULL, &affected, &err),
		0);
	assert_int_equal(affected, 1);
	lk_rows_init(&out, 0);
	assert_int_equal(ops->exec(c,
				   "SELECT a, b, c, x'00ff', 1.5 FROM e WHERE a >= $1 ORDER BY a",
				   1, params, &out, &affected, &err),
			 0);
	assert_int_equal(affected, 0);
	assert_int_equal(out.ncols, 5);
	assert_int_equal(out.nrows, 2);
	assert_string_equal(val(&out, 0, 0), "5");
	assert_true(LK_ROW(&out, 0)[1].null);
	assert_string_equal(val(&out, 1, 1), "x");
	assert_string_equal(val(&out, 1, 2), "y");
	assert_int_equal(LK_ROW(&out, 0)[3].len, 2);
	assert_string_equal(val(&out, 0, 4), "1.5");
	lk_rows_release(&out);

	assert_int_equal(ops->exec(c, "SELECT $4", 3, params, NULL, NULL, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_int_equal(ops->exec(c, "SELECT ?", 0, NULL, NULL, NULL, &err), -1);
	assert_int_equal(ops->exec(c, "SELEC 1", 0, NULL, NULL, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "syntax error"));
	ops->close(c);
}

static void test_exec_prints_floats_like_postgres(void **state)
{
	/* Literals SQLite parses exactly even under valgrind (which has no 80-bit long double). */
	static const char *const want[] = {
		"0.30000000000000004", "5e-324", "1e+15", "-1.5e-07", "100", "123.456", "-2.5"};
	struct lk_conn *c = open_mem();
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;

	(void)state;
	lk_rows_init(&out, 0);
	assert_int_equal(
		ops->exec(c,
			  "SELECT 0.1 + 0.2, 4.9406564584124654e-324, 1e15, -1.5e-7, 100.0,"
			  " 123.456, -2.5",
			  0, NULL, &out, NULL, &err),
		0);
	assert_int_equal(out.ncols, 7);
	for (int i = 0; i < 7; i++)
		assert_string_equal(val(&out, 0, i), want[i]);
	lk_rows_release(&out);
	ops->close(c);
}

static void test_open_errors(void **state)
{
	char path[] = "/tmp/lk_sqlite_badXXXXXX";
	struct lk_dbconf conf = {
		.name = S("bad"), .kind = LK_DB_SQLITE, .path = S("/nonexistent-dir/x.db")};
	struct lk_err err = LK_ERR_INIT;
	int fd;

	(void)state;
	assert_null(ops->open(&conf, &err));
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_non_null(strstr(err.msg, "/nonexistent-dir/x.db"));
	assert_false(err.transient);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "this is not a database, not at all, no no no no no no no", 56),
			 56);
	close(fd);
	conf.path = path;
	assert_null(ops->open(&conf, &err));
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_non_null(strstr(err.msg, "not a database"));
	unlink(path);
	ops->close(NULL);
}

static void test_busy_is_transient(void **state)
{
	char path[] = "/tmp/lk_sqlite_busyXXXXXX";
	int fd = mkstemp(path);
	struct lk_conn *a, *b;
	struct lk_err err = LK_ERR_INIT;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	a = open_path(path);
	b = open_path(path);
	run_sql(b, "PRAGMA busy_timeout = 0"); /* fail at once instead of after 5 s */
	assert_int_equal(ops->begin(a, &err), 0);
	assert_int_equal(ops->begin(b, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_true(err.transient);
	assert_int_equal(ops->rollback(a), 0);
	assert_int_equal(ops->rollback(b), 0);
	assert_int_equal(ops->begin(b, &err), 0);
	assert_int_equal(ops->commit(b, &err), 0);
	ops->close(a);
	ops->close(b);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_describe_maps_types_and_pk),
		cmocka_unit_test(test_describe_composite_pk_in_key_order),
		cmocka_unit_test(test_describe_missing_table_is_notfound),
		cmocka_unit_test(test_has_unique_matches_exact_column_sets),
		cmocka_unit_test(test_create_table_round_trips_logical_types),
		cmocka_unit_test(test_upsert_inserts_updates_and_replays),
		cmocka_unit_test(test_upsert_refuses_nan_naming_key_and_column),
		cmocka_unit_test(test_upsert_refuses_numeric_precision_loss),
		cmocka_unit_test(test_upsert_all_key_columns_does_nothing_on_conflict),
		cmocka_unit_test(test_upsert_constraint_error_names_row),
		cmocka_unit_test(test_upsert_statement_cache_survives_many_tables),
		cmocka_unit_test(test_blobs_with_nul_bytes_round_trip),
		cmocka_unit_test(test_unicode_text_round_trips),
		cmocka_unit_test(test_values_read_in_interchange_form),
		cmocka_unit_test(test_scan_orders_by_composite_key_with_bounds),
		cmocka_unit_test(test_scan_cursor_ties_are_neither_lost_nor_repeated),
		cmocka_unit_test(test_scan_match_column_is_t_or_f),
		cmocka_unit_test(test_scan_holds_one_snapshot),
		cmocka_unit_test(test_fetch_by_key_list_skips_missing_keys),
		cmocka_unit_test(test_fetch_composite_keys_with_filter),
		cmocka_unit_test(test_fetch_ordinal_lets_the_source_match_keys),
		cmocka_unit_test(test_delete_and_soft_delete),
		cmocka_unit_test(test_position_put_get_and_epoch_fence),
		cmocka_unit_test(test_quoted_identifiers),
		cmocka_unit_test(test_exec_binds_by_name_and_counts_changes),
		cmocka_unit_test(test_exec_prints_floats_like_postgres),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_busy_is_transient),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
