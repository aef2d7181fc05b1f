/*
 * test_cron.c - cron expressions: parse errors per field, next fire times in UTC (month
 * ends, Feb 29, the day-field OR rule, @every, the named schedules), the DST rules in
 * Europe/Berlin, America/New_York and Australia/Lord_Howe, the footer rule past the last
 * transition, and the TZif reader's errors. tests/integration/test_cron_oracle.py compares
 * thousands of random cases with croniter.
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "sched/cron.h"
#include "sched/tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Unix ms of a UTC date and time. */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
	return (lk_tz_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 +
		s) *
	       1000;
}

static void fmt(int64_t ms, char *out, size_t n)
{
	int64_t s = ms / 1000 - (ms % 1000 < 0), days = s / 86400 - (s % 86400 < 0);
	int64_t sod = s - days * 86400;
	int y, mo, d;

	if (ms == -1) {
		(void)snprintf(out, n, "-1");
		return;
	}
	lk_tz_civil_from_days(days, &y, &mo, &d);
	(void)snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, (int)(sod / 3600),
		       (int)(sod / 60 % 60), (int)(sod % 60));
}

static struct lk_cron parse_ok(const char *expr)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_cron c;

	if (lk_cron_parse(expr, &c, &err) != 0)
		fail_msg("'%s' refused: %s", expr, err.msg);
	return c;
}

/* expr must be refused with a message containing want. */
static void parse_bad(const char *expr, const char *want)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_cron c;

	memset(&c, 0x5a, sizeof(c));
	if (lk_cron_parse(expr, &c, &err) == 0)
		fail_msg("'%s' accepted", expr);
	assert_int_equal(err.code, LK_ERR_CONFIG);
	if (!strstr(err.msg, want))
		fail_msg("'%s': message '%s' lacks '%s'", expr, err.msg, want);
	assert_int_equal(c.every_ms, 0x5a5a5a5a5a5a5a5aLL); /* untouched */
}

static void next_is(const char *expr, const struct lk_tz *tz, int64_t after, int64_t want)
{
	struct lk_cron c = parse_ok(expr);
	int64_t got = lk_cron_next(&c, tz, after);
	char a[40], g[40], w[40];

	if (got != want) {
		fmt(after, a, sizeof(a));
		fmt(got, g, sizeof(g));
		fmt(want, w, sizeof(w));
		fail_msg("'%s' in %s after %s: got %s, want %s", expr, lk_tz_name(tz), a, g, w);
	}
}

static struct lk_tz *zone(const char *name)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_tz *tz = lk_tz_load(name, &err);

	if (!tz)
		fail_msg("cannot load %s: %s", name, err.msg);
	return tz;
}

static void test_parse_errors_name_the_field(void **state)
{
	(void)state;
	parse_bad("0 0 24 * * *", "field 'hour' (3rd): expected 0-23, found 24");
	parse_bad("0 24 * * *", "field 'hour' (2nd): expected 0-23, found 24");
	parse_bad("60 * * * * *", "field 'second' (1st): expected 0-59, found 60");
	parse_bad("* 60 * * * *", "field 'minute' (2nd): expected 0-59, found 60");
	parse_bad("* * 0 * *", "field 'day-of-month' (3rd): expected 1-31, found 0");
	parse_bad("* * 32 * *", "expected 1-31, found 32");
	parse_bad("* * * 13 *", "field 'month' (4th): expected 1-12 or JAN-DEC, found 13");
	parse_bad("* * * 0 *", "expected 1-12 or JAN-DEC, found 0");
	parse_bad("* * * * 8", "field 'day-of-week' (5th): expected 0-7 or SUN-SAT, found 8");
	parse_bad("0 * * * * 99999999999999999999", "expected 0-7 or SUN-SAT, found 9999");
	parse_bad("* * * JANUARY *", "found 'JANUARY'");
	parse_bad("* * * * MON-FOO", "expected 0-7 or SUN-SAT, found 'FOO'");
	parse_bad("* * * MON *", "field 'month' (4th): expected 1-12 or JAN-DEC, found 'MON'");
	parse_bad("* * * * JAN", "found 'JAN'");
	parse_bad("* MON * * *", "field 'hour' (2nd): expected 0-23, found 'MON'");
	parse_bad("*/0 * * * *",
		  "field 'minute' (1st): expected a step of 1-59 after '/', found 0");
	parse_bad("*/60 * * * *", "expected a step of 1-59 after '/', found 60");
	parse_bad("* */24 * * *", "expected a step of 1-23 after '/', found 24");
	parse_bad("*/x * * * *", "expected a step of 1-59 after '/', found 'x'");
	parse_bad("*/ * * * *", "found ''");
	parse_bad("30-10 * * * *", "range 30-10 is reversed");
	parse_bad("1,,2 * * * *", "empty list item");
	parse_bad("1, * * * *", "empty list item");
	parse_bad("1-2-3 * * * *", "cannot read '1-2-3'");
	parse_bad("5x * * * *", "expected 0-59, found '5x'");
	parse_bad("5/x * * * *", "expected a step of 1-59 after '/', found 'x'");
	parse_bad("? * * * *", "'?' is only allowed in the day-of-month and day-of-week");
	parse_bad("-5 * * * *", "expected 0-59, found '-5'");
}

static void test_parse_errors_shape_and_extensions(void **state)
{
	(void)state;
	parse_bad("* * * *", "expected 5 or 6 fields");
	parse_bad("* * * *", "found 4");
	parse_bad("* * * * * * *", "found 7");
	parse_bad("", "empty cron expression");
	parse_bad("   ", "empty cron expression");
	parse_bad("0 0 L * *", "field 'day-of-month' (3rd): 'L' (last day) is not supported");
	parse_bad("0 0 L-3 * *", "'L' (last day) is not supported");
	parse_bad("0 0 LW * *", "'L' (last day) is not supported");
	parse_bad("0 0 * * 5L", "field 'day-of-week' (5th): 'L' (last day) is not supported");
	parse_bad("0 0 15W * *", "'W' (nearest weekday) is not supported");
	parse_bad("0 0 * * 5#3", "'#' (nth weekday of the month) is not supported");
	parse_bad("0 0 * * MON#1", "'#' (nth weekday of the month) is not supported");
	parse_bad("H * * * *", "'H' (hashed value) is not supported");
	parse_bad("H/15 * * * *", "'H' (hashed value) is not supported");
	parse_bad("@reboot", "unknown schedule '@reboot'");
	parse_bad("@daily 5", "unknown schedule '@daily 5'");
	parse_bad("@every", "@every: expected a duration such as 90s or 1h30m, found nothing");
	parse_bad("@every 90", "@every: expected a duration such as 90s or 1h30m, found '90'");
	parse_bad("@every 1m x", "found '1m x'");
	parse_bad("@every 500ms", "@every: expected a duration of at least 1s, found '500ms'");
	parse_bad("@every 0s", "at least 1s");
	assert_int_equal(lk_cron_parse(NULL, &(struct lk_cron){0}, NULL), -1);
}

static void test_parse_fields_into_masks(void **state)
{
	struct lk_cron c;

	(void)state;
	c = parse_ok("*/15 0 1,15 * 1-5"); /* five fields: seconds = 0 */
	assert_true(c.sec == 1 && c.min == 0x0000200040008001ULL && c.hour == 1);
	assert_true(c.dom == ((1u << 1) | (1u << 15)) && c.month == 0x1ffe && c.dow == 0x3e);
	assert_false(lk_cron_is_every(&c));
	assert_int_equal(lk_cron_every_ms(&c), 0);
	c = parse_ok("  0 0 0 ? jan,Jul SUN,7  ");
	assert_true(c.dom == 0xfffffffe && c.month == ((1u << 1) | (1u << 7)) && c.dow == 1);
	assert_int_equal(parse_ok("0 0 * * 7").dow, 1);
	assert_int_equal(parse_ok("0 0 * * 0-7").dow, 0x7f);
	assert_int_equal(parse_ok("0 0 * * FRI-SUN").dow, 0x61);
	assert_int_equal(parse_ok("0 0 * * 5-0").dow, 0x61);
	assert_int_equal(parse_ok("0 0 * * 1/2").dow, 0x2b); /* 1,3,5,7 */
	assert_int_equal(parse_ok("0 0 * * */2").dow, 0x55);
	assert_int_equal(parse_ok("0 0 * MAR-5/2 *").month, (1u << 3) | (1u << 5));
	assert_int_equal(parse_ok("0 10/20 * * * *").min,
			 (1ULL << 10) | (1ULL << 30) | (1ULL << 50));
	assert_int_equal(parse_ok("0 0-30/15,59 * * * *").min,
			 1ULL | (1ULL << 15) | (1ULL << 30) | (1ULL << 59));
	assert_int_equal(parse_ok("7 0 0 * * *").sec, 1ULL << 7);
	assert_int_equal(parse_ok("@weekly").dow, 1);
	assert_int_equal(parse_ok("@YEARLY").month, 2);
	c = parse_ok("@every 1h30m");
	assert_true(lk_cron_is_every(&c));
	assert_int_equal(lk_cron_every_ms(&c), 5400000);
}

static void test_next_utc_basics(void **state)
{
	int64_t t = utc(2024, 5, 17, 10, 20, 30);

	(void)state;
	next_is("* * * * * *", NULL, t, t + 1000);
	next_is("* * * * * *", NULL, t + 1, t + 1000);
	next_is("* * * * * *", NULL, t - 1, t);
	next_is("* * * * *", NULL, t, utc(2024, 5, 17, 10, 21, 0));
	next_is("0 0 12 * * *", NULL, utc(2024, 5, 17, 12, 0, 0), utc(2024, 5, 18, 12, 0, 0));
	next_is("0 0 12 * * *", NULL, utc(2024, 5, 17, 11, 59, 59) + 999,
		utc(2024, 5, 17, 12, 0, 0));
	next_is("*/20 * * * * *", NULL, utc(2024, 12, 31, 23, 59, 40), utc(2025, 1, 1, 0, 0, 0));
	next_is("0 0 0 1 1 *", NULL, utc(2024, 1, 1, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0));
	next_is("* * * * * *", NULL, -20000000, -19999000); /* before 1970 */
	next_is("0 0 0 1 1 *", NULL, utc(1969, 6, 1, 0, 0, 0), 0);
	next_is("@hourly", NULL, t, utc(2024, 5, 17, 11, 0, 0));
	next_is("@daily", NULL, t, utc(2024, 5, 18, 0, 0, 0));
	next_is("@midnight", NULL, t, utc(2024, 5, 18, 0, 0, 0));
	next_is("@weekly", NULL, t, utc(2024, 5, 19, 0, 0, 0)); /* a Sunday */
	next_is("@monthly", NULL, t, utc(2024, 6, 1, 0, 0, 0));
	next_is("@yearly", NULL, t, utc(2025, 1, 1, 0, 0, 0));
	next_is("@annually", NULL, t, utc(2025, 1, 1, 0, 0, 0));
	next_is("@every 90s", NULL, t, t + 90000);
	next_is("@every 1d", NULL, 1, 86400001);
	next_is("@every 1s", NULL, INT64_MAX - 10, -1);
}

static void test_next_month_ends_and_leap_days(void **state)
{
	(void)state;
	/* The 31st skips the months that lack it. */
	next_is("0 0 31 * *", NULL, utc(2024, 1, 31, 0, 0, 0), utc(2024, 3, 31, 0, 0, 0));
	next_is("0 0 31 * *", NULL, utc(2024, 4, 1, 0, 0, 0), utc(2024, 5, 31, 0, 0, 0));
	next_is("0 0 30 * *", NULL, utc(2023, 1, 30, 0, 0, 0), utc(2023, 3, 30, 0, 0, 0));
	/* Feb 29 only in leap years; 2100 is not one. */
	next_is("0 0 29 2 *", NULL, utc(2025, 1, 1, 0, 0, 0), utc(2028, 2, 29, 0, 0, 0));
	next_is("0 0 29 2 *", NULL, utc(2024, 2, 29, 0, 0, 0), utc(2028, 2, 29, 0, 0, 0));
	next_is("0 0 29 2 *", NULL, utc(2097, 1, 1, 0, 0, 0), utc(2104, 2, 29, 0, 0, 0));
	next_is("0 0 29 2 *", NULL, utc(1999, 3, 1, 0, 0, 0), utc(2000, 2, 29, 0, 0, 0));
	/* Never: none within the horizon. */
	next_is("0 0 30 2 *", NULL, 0, -1);
	next_is("0 0 31 4,6,9,11 *", NULL, 0, -1);
	/* The end of the supported range. */
	next_is("0 0 1 1 *", NULL, utc(9999, 6, 1, 0, 0, 0), -1);
	next_is("59 59 23 31 12 *", NULL, utc(9999, 12, 31, 0, 0, 0), LK_CRON_MAX_MS - 999);
	next_is("* * * * * *", NULL, LK_CRON_MAX_MS, -1);
	next_is("* * * * * *", NULL, LK_CRON_MIN_MS - 1, -1);
}

static void test_next_day_fields_or_rule(void **state)
{
	(void)state;
	/* Both restricted: the 13th or a Friday, whichever comes first. 2024-09-06 is a Friday. */
	next_is("0 0 13 * FRI", NULL, utc(2024, 9, 1, 0, 0, 0), utc(2024, 9, 6, 0, 0, 0));
	next_is("0 0 13 * FRI", NULL, utc(2024, 9, 10, 0, 0, 0), utc(2024, 9, 13, 0, 0, 0));
	/* Only one restricted: that one alone. */
	next_is("0 0 13 * *", NULL, utc(2024, 9, 1, 0, 0, 0), utc(2024, 9, 13, 0, 0, 0));
	next_is("0 0 * * FRI", NULL, utc(2024, 9, 7, 0, 0, 0), utc(2024, 9, 13, 0, 0, 0));
	next_is("0 0 ? * 5", NULL, utc(2024, 9, 7, 0, 0, 0), utc(2024, 9, 13, 0, 0, 0));
	/* A field listing every value is not restricted (croniter): 1-31 leaves Fridays only. */
	next_is("0 0 1-31 * FRI", NULL, utc(2024, 9, 7, 0, 0, 0), utc(2024, 9, 13, 0, 0, 0));
	next_is("0 0 13 * 0-6", NULL, utc(2024, 9, 1, 0, 0, 0), utc(2024, 9, 13, 0, 0, 0));
	/* A step is a restriction: the odd days or Mondays (2024-09-02 is a Monday). */
	next_is("0 0 */2 * MON", NULL, utc(2024, 9, 1, 0, 0, 1), utc(2024, 9, 2, 0, 0, 0));
	/* The 31st cannot be in June, so June's Thursdays still fire. */
	next_is("0 0 31 6 THU", NULL, utc(2024, 1, 1, 0, 0, 0), utc(2024, 6, 6, 0, 0, 0));
	/* 7 and SUN are Sunday. 2024-09-08 is a Sunday. */
	next_is("0 0 * * 7", NULL, utc(2024, 9, 3, 0, 0, 0), utc(2024, 9, 8, 0, 0, 0));
	next_is("0 0 * * sun", NULL, utc(2024, 9, 3, 0, 0, 0), utc(2024, 9, 8, 0, 0, 0));
}

/* Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST at 01:00Z; 2024-10-27 03:00 CEST ->
 * 02:00 CET at 01:00Z. */
static void test_next_berlin_gap_and_overlap(void **state)
{
	struct lk_tz *tz = zone("Europe/Berlin");

	(void)state;
	next_is("0 0 12 * * *", tz, utc(2024, 3, 30, 12, 0, 0), utc(2024, 3, 31, 10, 0, 0));
	/* A fixed time in the gap runs once, as the gap ends (03:00 CEST). */
	next_is("0 30 2 * * *", tz, utc(2024, 3, 30, 12, 0, 0), utc(2024, 3, 31, 1, 0, 0));
	next_is("0 30 2 * * *", tz, utc(2024, 3, 31, 1, 0, 0), utc(2024, 4, 1, 0, 30, 0));
	next_is("0 */15 2 * * *", tz, utc(2024, 3, 31, 0, 59, 0), utc(2024, 3, 31, 1, 0, 0));
	next_is("0 */15 2 * * *", tz, utc(2024, 3, 31, 1, 0, 0), utc(2024, 4, 1, 0, 0, 0));
	/* An every-hour job skips the wall times that do not exist. */
	next_is("0 30 * * * *", tz, utc(2024, 3, 31, 0, 45, 0), utc(2024, 3, 31, 1, 30, 0));
	/* A fixed time in the overlap runs once, at its first occurrence (CEST). */
	next_is("0 30 2 * * *", tz, utc(2024, 10, 26, 12, 0, 0), utc(2024, 10, 27, 0, 30, 0));
	next_is("0 30 2 * * *", tz, utc(2024, 10, 27, 0, 30, 0), utc(2024, 10, 28, 1, 30, 0));
	next_is("0 30 2 * * *", tz, utc(2024, 10, 27, 1, 10, 0), utc(2024, 10, 28, 1, 30, 0));
	/* An every-hour job runs in both passes. */
	next_is("0 30 * * * *", tz, utc(2024, 10, 27, 0, 30, 0), utc(2024, 10, 27, 1, 30, 0));
	next_is("0 */20 * * * *", tz, utc(2024, 10, 27, 0, 45, 0), utc(2024, 10, 27, 1, 0, 0));
	lk_tz_free(tz);
}

/* America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT at 07:00Z; 2024-11-03 02:00 EDT ->
 * 01:00 EST at 06:00Z. */
static void test_next_new_york_gap_and_overlap(void **state)
{
	struct lk_tz *tz = zone("America/New_York");

	(void)state;
	next_is("0 30 2 * * *", tz, utc(2024, 3, 9, 12, 0, 0), utc(2024, 3, 10, 7, 0, 0));
	next_is("0 0 3 * * *", tz, utc(2024, 3, 9, 12, 0, 0), utc(2024, 3, 10, 7, 0, 0));
	next_is("0 30 1 * * *", tz, utc(2024, 11, 2, 12, 0, 0), utc(2024, 11, 3, 5, 30, 0));
	next_is("0 30 1 * * *", tz, utc(2024, 11, 3, 5, 30, 0), utc(2024, 11, 4, 6, 30, 0));
	next_is("0 0 * * * *", tz, utc(2024, 11, 3, 5, 0, 0), utc(2024, 11, 3, 6, 0, 0));
	next_is("0 0 * * * *", tz, utc(2024, 11, 3, 6, 0, 0), utc(2024, 11, 3, 7, 0, 0));
	next_is("0 0 0 * * *", tz, utc(2024, 7, 1, 12, 0, 0), utc(2024, 7, 2, 4, 0, 0));
	lk_tz_free(tz);
}

/* Australia/Lord_Howe moves by 30 minutes: 2024-04-07 02:00 +11 -> 01:30 +10:30 at
 * 15:00Z (Apr 6); 2024-10-06 02:00 +10:30 -> 02:30 +11 at 15:30Z (Oct 5). */
static void test_next_lord_howe_half_hour(void **state)
{
	struct lk_tz *tz = zone("Australia/Lord_Howe");

	(void)state;
	next_is("0 15 2 * * *", tz, utc(2024, 10, 5, 0, 0, 0), utc(2024, 10, 5, 15, 30, 0));
	next_is("0 45 2 * * *", tz, utc(2024, 10, 5, 0, 0, 0), utc(2024, 10, 5, 15, 45, 0));
	next_is("0 45 1 * * *", tz, utc(2024, 4, 6, 0, 0, 0), utc(2024, 4, 6, 14, 45, 0));
	next_is("0 45 1 * * *", tz, utc(2024, 4, 6, 14, 45, 0), utc(2024, 4, 7, 15, 15, 0));
	next_is("0 45 * * * *", tz, utc(2024, 4, 6, 14, 45, 0), utc(2024, 4, 6, 15, 15, 0));
	lk_tz_free(tz);
}

/* Past the last transition of the file (2037), the footer's rule gives DST. */
static void test_next_far_future_uses_footer_rule(void **state)
{
	struct lk_tz *be = zone("Europe/Berlin"), *ny = zone("America/New_York");
	struct lk_tz *lh = zone("Australia/Lord_Howe");
	struct lk_tz_period p;
	int64_t out[2];

	(void)state;
	/* The file's last transition (2038-01-19, 2^31 - 1) keeps the offset: no boundary. */
	lk_tz_period(lh, utc(2038, 2, 1, 0, 0, 0) / 1000, &p);
	assert_int_equal(p.start_s, utc(2037, 10, 3, 15, 30, 0) / 1000);
	assert_int_equal(p.end_s, utc(2038, 4, 3, 15, 0, 0) / 1000);
	assert_int_equal(p.off_s, 39600);
	assert_int_equal(p.prev_off_s, 37800);
	lk_tz_free(lh);
	next_is("0 0 12 * * *", be, utc(2100, 7, 1, 0, 0, 0), utc(2100, 7, 1, 10, 0, 0));
	next_is("0 0 12 * * *", be, utc(2100, 12, 1, 0, 0, 0), utc(2100, 12, 1, 11, 0, 0));
	next_is("0 30 2 * * *", be, utc(2100, 3, 27, 12, 0, 0), utc(2100, 3, 28, 1, 0, 0));
	next_is("0 30 1 * * *", ny, utc(2099, 11, 1, 0, 0, 0), utc(2099, 11, 1, 5, 30, 0));
	next_is("0 30 1 * * *", ny, utc(2099, 11, 1, 5, 30, 0), utc(2099, 11, 2, 6, 30, 0));
	assert_int_equal(lk_tz_offset(be, utc(2300, 7, 1, 0, 0, 0) / 1000), 7200);
	assert_int_equal(lk_tz_offset(ny, utc(2300, 1, 1, 0, 0, 0) / 1000), -18000);
	/* 2099-03-08 02:30 does not exist in New York; 2099-11-01 01:30 exists twice. */
	assert_int_equal(lk_tz_local_to_utc(ny, utc(2099, 3, 8, 2, 30, 0) / 1000, out), 0);
	assert_int_equal(lk_tz_local_to_utc(ny, utc(2099, 11, 1, 1, 30, 0) / 1000, out), 2);
	assert_int_equal(out[0], utc(2099, 11, 1, 5, 30, 0) / 1000);
	assert_int_equal(out[1], utc(2099, 11, 1, 6, 30, 0) / 1000);
	lk_tz_free(be);
	lk_tz_free(ny);
}

/* The result is always strictly after the start, and chained fires strictly increase. */
static void test_next_is_strictly_after(void **state)
{
	static const char *const exprs[] = {"* * * * * *",     "*/7 */13 * * * *", "0 30 2 * * *",
					    "0 0 * * * *",     "0 */15 1-3 * * *", "0 0 0 29 2 *",
					    "30 15 1 * * SUN", "0 45 1 * * *"};
	static const char *const zones[] = {"Europe/Berlin", "America/New_York",
					    "Australia/Lord_Howe", "UTC"};
	int64_t starts[] = {utc(2024, 3, 31, 0, 59, 59),  utc(2024, 10, 27, 0, 59, 59) + 999,
			    utc(2024, 11, 3, 5, 59, 0),	  utc(2024, 4, 6, 14, 59, 59),
			    utc(2024, 10, 5, 15, 29, 59), utc(2040, 3, 25, 0, 0, 0)};

	(void)state;
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		struct lk_tz *tz = strcmp(zones[z], "UTC") ? zone(zones[z]) : NULL;

		for (size_t e = 0; e < sizeof(exprs) / sizeof(exprs[0]); e++) {
			struct lk_cron c = parse_ok(exprs[e]);

			for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
				int64_t t = starts[s];

				for (int i = 0; i < 200; i++) {
					int64_t n = lk_cron_next(&c, tz, t);

					if (n <= t)
						fail_msg("'%s' in %s: next(%lld) = %lld", exprs[e],
							 zones[z], (long long)t, (long long)n);
					assert_int_equal(n % 1000, 0);
					t = n;
				}
			}
		}
		lk_tz_free(tz);
	}
}

static void test_tz_offsets_and_wall_times(void **state)
{
	struct lk_tz *tz = zone("Europe/Berlin");
	struct lk_tz_period p;
	int64_t out[2];

	(void)state;
	assert_string_equal(lk_tz_name(tz), "Europe/Berlin");
	assert_string_equal(lk_tz_name(NULL), "UTC");
	assert_int_equal(lk_tz_offset(NULL, 12345), 0);
	assert_int_equal(lk_tz_offset(tz, utc(2024, 1, 1, 0, 0, 0) / 1000), 3600);
	assert_int_equal(lk_tz_offset(tz, utc(2024, 7, 1, 0, 0, 0) / 1000), 7200);
	assert_int_equal(lk_tz_offset(tz, utc(1850, 1, 1, 0, 0, 0) / 1000), 3208); /* LMT */
	lk_tz_period(tz, utc(2024, 5, 1, 0, 0, 0) / 1000, &p);
	assert_int_equal(p.start_s, utc(2024, 3, 31, 1, 0, 0) / 1000);
	assert_int_equal(p.end_s, utc(2024, 10, 27, 1, 0, 0) / 1000);
	assert_int_equal(p.off_s, 7200);
	assert_int_equal(p.prev_off_s, 3600);
	assert_int_equal(lk_tz_local_to_utc(tz, utc(2024, 3, 31, 2, 30, 0) / 1000, out), 0);
	assert_int_equal(lk_tz_local_to_utc(tz, utc(2024, 3, 31, 3, 0, 0) / 1000, out), 1);
	assert_int_equal(out[0], utc(2024, 3, 31, 1, 0, 0) / 1000);
	assert_int_equal(lk_tz_local_to_utc(tz, utc(2024, 10, 27, 2, 0, 0) / 1000, out), 2);
	assert_int_equal(out[0], utc(2024, 10, 27, 0, 0, 0) / 1000);
	assert_int_equal(out[1], utc(2024, 10, 27, 1, 0, 0) / 1000);
	assert_int_equal(lk_tz_local_to_utc(NULL, 42, out), 1);
	assert_int_equal(out[0], 42);
	lk_tz_free(tz);
	lk_tz_free(NULL);
}

static void tz_bad(const char *name, enum lk_errcode code, const char *want)
{
	struct lk_err err = LK_ERR_INIT;

	assert_null(lk_tz_load(name, &err));
	assert_int_equal(err.code, code);
	if (!strstr(err.msg, want))
		fail_msg("zone '%s': message '%s' lacks '%s'", name, err.msg, want);
}

static void tzif_bad(const void *data, size_t len, const char *want)
{
	struct lk_err err = LK_ERR_INIT;

	assert_null(lk_tz_parse("Test/Zone", data, len, &err));
	assert_int_equal(err.code, LK_ERR_CONFIG);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' lacks '%s'", err.msg, want);
}

/* Reads a zone file to hand-edit it. */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = malloc(1 << 16);

	assert_non_null(f);
	assert_non_null(buf);
	*len = fread(buf, 1, 1 << 16, f);
	(void)fclose(f);
	return buf;
}

/* A copy of the Berlin file with its footer TZ string replaced; parses it. */
static struct lk_tz *with_footer(const unsigned char *file, size_t len, const char *footer,
				 struct lk_err *err)
{
	size_t keep = len - strlen("CET-1CEST,M3.5.0,M10.5.0/3\n"), n = strlen(footer);
	unsigned char *copy = malloc(keep + n + 1);
	struct lk_tz *tz;

	assert_non_null(copy);
	for (size_t i = 0; i < keep + n; i++) /* bytes, not a string */
		copy[i] = i < keep ? file[i] : (unsigned char)footer[i - keep];
	copy[keep + n] = '\n';
	tz = lk_tz_parse("Test/Footer", copy, keep + n + 1, err);
	free(copy);
	return tz;
}

static void test_tz_refuses_bad_names_and_files(void **state)
{
	struct lk_err err = LK_ERR_INIT;
	unsigned char *buf;
	struct lk_tz *tz;
	size_t len;

	(void)state;
	tz_bad("Mars/Olympus_Mons", LK_ERR_CONFIG, "unknown time zone 'Mars/Olympus_Mons'");
	tz_bad("../etc/passwd", LK_ERR_CONFIG, "expected a zone name such as Europe/Berlin");
	tz_bad("/etc/localtime", LK_ERR_CONFIG, "expected a zone name");
	tz_bad("Europe/./Berlin", LK_ERR_CONFIG, "expected a zone name");
	tz_bad("", LK_ERR_CONFIG, "expected a zone name");
	tz_bad("Europe", LK_ERR_CONFIG, "is not a zone file");
	tzif_bad("hello", 5, "not a TZif file");
	buf = slurp(LK_TZ_DIR "/Europe/Berlin", &len);
	buf[4] = '\0'; /* version 1 */
	tzif_bad(buf, len, "TZif version 1 is not supported");
	buf[4] = '2';
	tzif_bad(buf, len / 2, "truncated or malformed 64-bit data");
	tzif_bad(buf, len - 1, "malformed footer");
	assert_null(with_footer(buf, len, "XX0YY,M3.5.0,M10.5.0/3", &err));
	assert_non_null(strstr(err.msg, "unsupported footer TZ string"));
	assert_null(with_footer(buf, len, "CET-1CEST", &err));
	assert_null(with_footer(buf, len, "CET-1CEST,M13.5.0,M10.5.0", &err));
	/* Other footers: a fixed offset, and a rule with its own times and DST offset. */
	tz = with_footer(buf, len, "<+0130>-1:30", &err);
	assert_non_null(tz);
	assert_int_equal(lk_tz_offset(tz, utc(2100, 7, 1, 0, 0, 0) / 1000), 5400);
	lk_tz_free(tz);
	tz = with_footer(buf, len, "AAA3BBB2,J60/1,300/-1:30", &err);
	assert_non_null(tz);
	assert_int_equal(lk_tz_offset(tz, utc(2100, 7, 1, 0, 0, 0) / 1000), -7200);
	assert_int_equal(lk_tz_offset(tz, utc(2100, 12, 1, 0, 0, 0) / 1000), -10800);
	/* J60 is March 1 even in leap years: 01:00 local standard time = 04:00Z. */
	assert_int_equal(lk_tz_offset(tz, utc(2096, 3, 1, 3, 59, 59) / 1000), -10800);
	assert_int_equal(lk_tz_offset(tz, utc(2096, 3, 1, 4, 0, 0) / 1000), -7200);
	lk_tz_free(tz);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_errors_name_the_field),
		cmocka_unit_test(test_parse_errors_shape_and_extensions),
		cmocka_unit_test(test_parse_fields_into_masks),
		cmocka_unit_test(test_next_utc_basics),
		cmocka_unit_test(test_next_month_ends_and_leap_days),
		cmocka_unit_test(test_next_day_fields_or_rule),
		cmocka_unit_test(test_next_berlin_gap_and_overlap),
		cmocka_unit_test(test_next_new_york_gap_and_overlap),
		cmocka_unit_test(test_next_lord_howe_half_hour),
		cmocka_unit_test(test_next_far_future_uses_footer_rule),
		cmocka_unit_test(test_next_is_strictly_after),
		cmocka_unit_test(test_tz_offsets_and_wall_times),
		cmocka_unit_test(test_tz_refuses_bad_names_and_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
