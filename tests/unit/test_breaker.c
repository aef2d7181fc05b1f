/*
 * test_breaker.c - the per-database circuit breaker's state machine on a fake clock (no
 * sleeps): closed -> open after N transient failures, fail fast with the last error, the
 * cooldown, one half-open probe among concurrent callers, and every probe outcome
 * (success, transient and non-transient failure); and lk_db_open()'s use of it, on SQLite
 * files, for the probe that fails with a non-transient error (it left the breaker
 * half-open for good).
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "connector/breaker.h"
#include "connector/connector.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COOLDOWN_MS 30000

static int64_t fake_now_ms;

static int64_t fake_clock(void)
{
	return __atomic_load_n(&fake_now_ms, __ATOMIC_RELAXED);
}

static void advance(int64_t ms)
{
	__atomic_fetch_add(&fake_now_ms, ms, __ATOMIC_RELAXED);
}

static int setup(void **state)
{
	(void)state;
	fake_now_ms = 1000000;
	lk_breaker_set_clock(fake_clock);
	lk_breaker_reset_all();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lk_breaker_reset_all();
	lk_breaker_set_clock(NULL);
	return 0;
}

static struct lk_dbconf dbconf(const char *name, const char *url)
{
	struct lk_dbconf c;

	memset(&c, 0, sizeof(c));
	c.name = (char *)name;
	c.url = (char *)url;
	c.kind = LK_DB_SQLITE;
	c.breaker.failures = 3;
	c.breaker.cooldown_ms = COOLDOWN_MS;
	c.breaker.probe_ms = 1000;
	return c;
}

static struct lk_err failure(bool transient, const char *msg)
{
	struct lk_err e = LK_ERR_INIT;

	lk_err_set(&e, LK_ERR_PG, "%s", msg);
	e.transient = transient;
	return e;
}

/* The state of the breaker of database `name` as lk_breaker_list() shows it. */
static struct lk_breaker_info info_of(const char *name)
{
	struct lk_breaker_info all[8], none;
	int n = lk_breaker_list(all, 8);

	for (int i = 0; i < n; i++) {
		if (strcmp(all[i].db, name) == 0)
			return all[i];
	}
	memset(&none, 0, sizeof(none));
	none.state = (enum lk_breaker_state) - 1;
	return none;
}

/* One admitted enter: asserts admit and returns the breaker; *probe as it was set. */
static struct lk_breaker *admitted(const struct lk_dbconf *c, bool *probe)
{
	struct lk_err err = LK_ERR_INIT;
	bool admit = false, p = true;
	struct lk_breaker *b = lk_breaker_enter(c, &admit, &p, &err);

	assert_non_null(b);
	assert_true(admit);
	assert_int_equal(err.code, LK_OK);
	if (probe)
		*probe = p;
	return b;
}

/* One refused enter: asserts it fails fast and returns its error. */
static struct lk_err refused(const struct lk_dbconf *c)
{
	struct lk_err err = LK_ERR_INIT;
	bool admit = true, probe = true;

	assert_non_null(lk_breaker_enter(c, &admit, &probe, &err));
	assert_false(admit);
	assert_false(probe);
	assert_int_equal(err.code, LK_ERR_UNAVAILABLE);
	assert_false(err.transient);
	assert_non_null(strstr(err.msg, "failing fast"));
	return err;
}

/* Opens the breaker of c with `failures` transient failures of plain callers. */
static void open_it(const struct lk_dbconf *c)
{
	struct lk_err why = failure(true, "connection refused");

	for (int i = 0; i < c->breaker.failures; i++) {
		bool probe;
		struct lk_breaker *b = admitted(c, &probe);

		assert_false(probe);
		lk_breaker_failure(b, probe, &why);
	}
	assert_int_equal(info_of(c->name).state, LK_BREAKER_OPEN);
}

static void closed_opens_after_n_transient_failures(void **state)
{
	struct lk_dbconf c = dbconf("a", "postgresql://a");
	struct lk_err down = failure(true, "connection refused");
	struct lk_err answered = failure(false, "password authentication failed for user \"u\"");
	struct lk_breaker *b;
	bool probe;

	(void)state;
	/* two transient failures, then a success: the count starts again */
	for (int i = 0; i < 2; i++) {
		b = admitted(&c, &probe);
		assert_false(probe);
		lk_breaker_failure(b, probe, &down);
	}
	assert_int_equal(info_of("a").state, LK_BREAKER_CLOSED);
	assert_int_equal(info_of("a").failures, 2);
	lk_breaker_success(admitted(&c, NULL));
	assert_int_equal(info_of("a").failures, 0);
	/* a non-transient failure is not counted: the database answered */
	for (int i = 0; i < 10; i++)
		lk_breaker_failure(admitted(&c, &probe), false, &answered);
	assert_int_equal(info_of("a").state, LK_BREAKER_CLOSED);
	assert_int_equal(info_of("a").failures, 0);
	/* failures - 1 transient ones keep it closed, the next opens it */
	for (int i = 0; i < 2; i++)
		lk_breaker_failure(admitted(&c, NULL), false, &down);
	assert_int_equal(info_of("a").state, LK_BREAKER_CLOSED);
	lk_breaker_failure(admitted(&c, NULL), false, &down);
	assert_int_equal(info_of("a").state, LK_BREAKER_OPEN);
	assert_int_equal(info_of("a").failures, 3);
	assert_true(info_of("a").changed_ms > 0);
}

static void open_fails_fast_until_the_cooldown(void **state)
{
	struct lk_dbconf c = dbconf("a", "postgresql://a");
	struct lk_dbconf other = dbconf("b", "postgresql://b");
	struct lk_err err;

	(void)state;
	open_it(&c);
	err = refused(&c);
	assert_non_null(strstr(err.msg, "'a'"));
	assert_non_null(strstr(err.msg, "circuit breaker is open after 3 consecutive failures"));
	assert_non_null(strstr(err.msg, "next probe in 30.0 s"));
	assert_non_null(strstr(err.msg, "last error: connection refused"));
	assert_int_equal(info_of("a").probe_in_ms, COOLDOWN_MS);
	/* another database (another URL) has a breaker of its own */
	lk_breaker_success(admitted(&other, NULL));
	assert_int_equal(info_of("b").state, LK_BREAKER_CLOSED);
	/* one millisecond before the cooldown ends it still fails fast */
	advance(COOLDOWN_MS - 1);
	assert_int_equal(info_of("a").probe_in_ms, 1);
	(void)refused(&c);
	assert_int_equal(info_of("a").state, LK_BREAKER_OPEN);
}

static void half_open_admits_one_probe(void **state)
{
	struct lk_dbconf c = dbconf("a", "postgresql://a");
	bool probe = false;

	(void)state;
	open_it(&c);
	advance(COOLDOWN_MS);
	(void)admitted(&c, &probe);
	assert_true(probe);
	assert_int_equal(info_of("a").state, LK_BREAKER_HALF_OPEN);
	assert_int_equal(info_of("a").probe_in_ms, 0);
	/* while the probe is out, every other caller fails fast, however long it takes */
	for (int i = 0; i < 3; i++) {
		(void)refused(&c);
		advance(COOLDOWN_MS);
	}
	assert_int_equal(info_of("a").state, LK_BREAKER_HALF_OPEN);
}

static void probe_success_closes(void **state)
{
	struct lk_dbconf c = dbconf("a", "postgresql://a");
	struct lk_breaker *b;
	bool probe = false;

	(void)state;
	open_it(&c);
	advance(COOLDOWN_MS);
	b = admitted(&c, &probe);
	assert_true(probe);
	lk_breaker_success(b);
	assert_int_equal(info_of("a").state, LK_BREAKER_CLOSED);
	assert_int_equal(info_of("a").failures, 0);
	/* closed again: callers go through, none of them a probe */
	for (int i = 0; i < 3; i++) {
		(void)admitted(&c, &probe);
		assert_false(probe);
	}
}

/* The probe fails with `why`: the breaker opens again for a whole new cooldown, then the
 * next probe's success closes it. */
static void probe_failure_opens_again(bool transient)
{
	struct lk_dbconf c = dbconf("a", "postgresql://a");
	struct lk_err why = failure(transient, transient ? "connection refused"
							 : "password authentication failed");
	struct lk_err err;
	struct lk_breaker *b;
	bool probe = false;

	open_it(&c);
	advance(COOLDOWN_MS + 5000); /* the probe comes late: the new cooldown starts at its end */
	b = admitted(&c, &probe);
	assert_true(probe);
	lk_breaker_failure(b, probe, &why);
	assert_int_equal(info_of("a").state, LK_BREAKER_OPEN);
	assert_int_equal(info_of("a").failures, 4);
	assert_int_equal(info_of("a").probe_in_ms, COOLDOWN_MS);
	err = refused(&c);
	assert_non_null(strstr(err.msg, why.msg));
	advance(COOLDOWN_MS - 1);
	(void)refused(&c);
	advance(1);
	b = admitted(&c, &probe);
	assert_true(probe);
	assert_int_equal(info_of("a").state, LK_BREAKER_HALF_OPEN);
	lk_breaker_success(b);
	assert_int_equal(info_of("a").state, LK_BREAKER_CLOSED);
}

static void probe_transient_failure_opens_again(void **state)
{
	(void)state;
	probe_failure_opens_again(true);
}

static void probe_non_transient_failure_opens_again(void **state)
{
	(void)state;
	probe_failure_opens_again(false);
}

/* Outcomes of callers admitted before the breaker opened, reported while it is half-open:
 * a failure does not take the probe's place, a success closes it. */
static void late_reports_while_half_open(void **state)
{
	struct lk_dbconf c = dbconf("a", "postgresql://a");
	struct lk_err down = failure(true, "connection refused");
	struct lk_breaker *early, *b;
	bool probe = false;

	(void)state;
	early = admitted(&c, &probe); /* a slow open, admitted while closed */
	open_it(&c);
	advance(COOLDOWN_MS);
	b = admitted(&c, &probe);
	assert_true(probe);
	lk_breaker_failure(early, false, &down);
	assert_int_equal(info_of("a").state, LK_BREAKER_HALF_OPEN);
	(void)refused(&c);
	lk_breaker_failure(b, true, &down);
	assert_int_equal(info_of("a").state, LK_BREAKER_OPEN);
	advance(COOLDOWN_MS);
	b = admitted(&c, &probe);
	assert_true(probe);
	lk_breaker_success(early);
	assert_int_equal(info_of("a").state, LK_BREAKER_CLOSED);
	/* the probe's failure after that is an ordinary transient failure: it counts */
	lk_breaker_failure(b, true, &down);
	assert_int_equal(info_of("a").state, LK_BREAKER_CLOSED);
	assert_int_equal(info_of("a").failures, 1);
}

#define NTHREADS 8

struct racer {
	const struct lk_dbconf *c;
	pthread_barrier_t *go;
	bool admit, probe;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct lk_err err = LK_ERR_INIT;

	(void)pthread_barrier_wait(r->go);
	(void)lk_breaker_enter(r->c, &r->admit, &r->probe, &err);
	return NULL;
}

/* Callers that arrive together once the cooldown has passed: exactly one probes. */
static void concurrent_callers_one_probe(void **state)
{
	struct lk_dbconf c = dbconf("a", "postgresql://a");
	struct racer r[NTHREADS];
	pthread_t th[NTHREADS];
	pthread_barrier_t go;
	int admits = 0, probes = 0;

	(void)state;
	open_it(&c);
	advance(COOLDOWN_MS);
	assert_int_equal(pthread_barrier_init(&go, NULL, NTHREADS), 0);
	for (int i = 0; i < NTHREADS; i++) {
		r[i] = (struct racer){&c, &go, false, false};
		assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		admits += r[i].admit;
		probes += r[i].probe;
	}
	(void)pthread_barrier_destroy(&go);
	assert_int_equal(admits, 1);
	assert_int_equal(probes, 1);
	assert_int_equal(info_of("a").state, LK_BREAKER_HALF_OPEN);
}

/*
 * lk_db_open() as the probe, on SQLite: the database's breaker (by its URL) opened during
 * an outage; the probe then fails with a non-transient error (here a file in a folder that
 * does not exist, as a wrong password would be on PostgreSQL). The breaker must open again,
 * and once the cause is fixed the next probe must bring the database back.
 */
static void db_open_probe_non_transient_failure(void **state)
{
	char dir[] = "/tmp/lk_test_breaker_XXXXXX", good[64];
	struct lk_dbconf c = dbconf("sq", "sqlite:breaker-probe.db");
	struct lk_retry_conf once = {1, 10, 10, 2.0};
	struct lk_err err = LK_ERR_INIT;
	struct lk_db db;

	(void)state;
	assert_non_null(mkdtemp(dir));
	(void)snprintf(good, sizeof(good), "%s/ok.db", dir);
	c.path = (char *)"/nonexistent-lockstep-dir/x.db";
	open_it(&c);
	advance(COOLDOWN_MS);
	assert_int_equal(lk_db_open(&db, &c, &once, NULL, &err), -1);
	assert_false(err.transient);
	assert_int_equal(info_of("sq").state, LK_BREAKER_OPEN);
	err = refused(&c);
	assert_non_null(strstr(err.msg, "cannot open '/nonexistent-lockstep-dir/x.db'"));
	/* the cause is fixed (the path now works); the next probe closes the breaker */
	c.path = good;
	advance(COOLDOWN_MS);
	lk_err_clear(&err);
	assert_int_equal(lk_db_open(&db, &c, &once, NULL, &err), 0);
	lk_db_close(&db);
	assert_int_equal(info_of("sq").state, LK_BREAKER_CLOSED);
	assert_int_equal(lk_db_open(&db, &c, &once, NULL, &err), 0);
	lk_db_close(&db);
	(void)unlink(good);
	(void)rmdir(dir);
}

/* A non-transient failure of an ordinary open leaves a closed breaker closed. */
static void db_open_non_transient_failure_keeps_closed(void **state)
{
	struct lk_dbconf c = dbconf("sq", "sqlite:breaker-closed.db");
	struct lk_retry_conf once = {1, 10, 10, 2.0};
	struct lk_err err = LK_ERR_INIT;
	struct lk_db db;

	(void)state;
	c.path = (char *)"/nonexistent-lockstep-dir/x.db";
	for (int i = 0; i < 5; i++) {
		assert_int_equal(lk_db_open(&db, &c, &once, NULL, &err), -1);
		assert_non_null(strstr(err.msg, "cannot open"));
	}
	assert_int_equal(info_of("sq").state, LK_BREAKER_CLOSED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(closed_opens_after_n_transient_failures, setup,
						teardown),
		cmocka_unit_test_setup_teardown(open_fails_fast_until_the_cooldown, setup,
						teardown),
		cmocka_unit_test_setup_teardown(half_open_admits_one_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(probe_success_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(probe_transient_failure_opens_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(probe_non_transient_failure_opens_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(late_reports_while_half_open, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrent_callers_one_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(db_open_probe_non_transient_failure, setup,
						teardown),
		cmocka_unit_test_setup_teardown(db_open_non_transient_failure_keeps_closed, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
