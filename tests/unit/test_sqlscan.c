/* test_sqlscan.c - transaction control in an sql job's script (sched/sqlscan.c). */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "sched/sqlscan.h"

#include <string.h>

static void refused(const char *sql, const char *want)
{
	char word[16];
	const char *got = lk_sql_txn_control(sql, word, sizeof(word));

	if (!got || strcmp(got, want) != 0)
		fail_msg("'%s': got %s, want %s", sql, got ? got : "none", want);
}

static void allowed(const char *sql)
{
	char word[16];
	const char *got = lk_sql_txn_control(sql, word, sizeof(word));

	if (got)
		fail_msg("'%s': refused for %s, want allowed", sql, got);
}

static void test_refused(void **state)
{
	(void)state;
	refused("COMMIT", "COMMIT");
	refused("DELETE FROM t; COMMIT; DELETE FROM u", "COMMIT");
	refused("delete from t;commit", "COMMIT");
	refused("BEGIN; DELETE FROM t; END;", "BEGIN");
	refused("DELETE FROM t;\n  end", "END");
	refused("DELETE FROM t; ROLLBACK", "ROLLBACK");
	refused("DELETE FROM t; ROLLBACK WORK", "ROLLBACK");
	refused("DELETE FROM t; ROLLBACK TRANSACTION;", "ROLLBACK");
	refused("DELETE FROM t; ABORT", "ABORT");
	refused("START TRANSACTION; SELECT 1", "START");
	refused("SELECT 1; /* a comment */ COMMIT", "COMMIT");
	refused("SELECT 1; -- a comment\nCOMMIT", "COMMIT");
	refused("SELECT 'a;b'; COMMIT", "COMMIT");
	refused("SELECT $$;$$; COMMIT", "COMMIT");
	refused("SELECT $x$ ; COMMIT; $x$; Commit", "COMMIT");
	refused("SELECT E'it\\'s;'; COMMIT", "COMMIT");
	refused("CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1); END; COMMIT",
		"COMMIT");
	refused("SELECT CASE WHEN true THEN 1 END; COMMIT", "COMMIT");
	refused("/* /* nested */ still a comment */ COMMIT", "COMMIT");
}

static void test_allowed(void **state)
{
	(void)state;
	allowed("");
	allowed("DELETE FROM sync_status WHERE created_at < now() - interval '24 hours'");
	allowed("SELECT 'COMMIT'; SELECT \"commit\" FROM t; SELECT 1 -- COMMIT\n");
	allowed("SELECT 1; /* ; COMMIT */ SELECT 2");
	allowed("SAVEPOINT a; DELETE FROM t; ROLLBACK TO a; RELEASE a");
	allowed("SAVEPOINT a; ROLLBACK TO SAVEPOINT a; ROLLBACK WORK TO a; ROLLBACK TRANSACTION TO "
		"a");
	allowed("DO $$ BEGIN PERFORM 1; COMMIT; END $$");
	allowed("DO $body$ BEGIN RAISE NOTICE 'x'; END $body$; SELECT $1");
	allowed("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE "
		"WHEN true THEN 1 END; END; SELECT f()");
	allowed("CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1); UPDATE u SET "
		"a = CASE WHEN a > 0 THEN 1 ELSE 2 END; END");
	allowed("UPDATE t SET committed = true; SELECT ending FROM t");
	allowed("SELECT E'\\';COMMIT'");
	allowed("SELECT [commit] FROM t; SELECT `end` FROM t");
	allowed("SELECT 1 /* unterminated comment ; COMMIT");
	allowed("SELECT 'unterminated ; COMMIT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_allowed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
