/*
 * test_units.c - durations, sizes, integers and the timestamp parsing and shifting that the
 * poll look-back uses.
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "core/buf.h"
#include "core/json.h"
#include "core/units.h"

#include <stdlib.h>
#include <string.h>

static void duration_is(const char *s, int64_t want)
{
	int64_t v = -42;

	if (lk_duration_parse(s, &v) != 0 || v != want)
		fail_msg("duration '%s': got %lld, want %lld", s, (long long)v, (long long)want);
}

static void duration_bad(const char *s)
{
	int64_t v = -42;

	if (lk_duration_parse(s, &v) == 0)
		fail_msg("duration '%s' accepted as %lld", s ? s : "(null)", (long long)v);
	assert_int_equal(v, -42); /* untouched on failure */
}

static void test_duration(void **state)
{
	(void)state;
	duration_is("500ms", 500);
	duration_is("30s", 30000);
	duration_is("5m", 300000);
	duration_is("2h", 7200000);
	duration_is("1d", 86400000);
	duration_is("1h30m", 5400000);
	duration_is("1m30s500ms", 90500);
	duration_is("0s", 0);
	duration_is("100000d", 8640000000000LL);
	duration_bad(NULL);
	duration_bad("");
	duration_bad("30");   /* a unit is required */
	duration_bad("1h30"); /* every number needs one */
	duration_bad("-5s");
	duration_bad("+5s");
	duration_bad("5 s");
	duration_bad(" 5s");
	duration_bad("5s ");
	duration_bad("1.5h");
	duration_bad("5sec");
	duration_bad("5mm");
	duration_bad("5M");
	duration_bad("5w");
	duration_bad("s");
	duration_bad("9999999999999999999ms");	 /* does not fit strtoll */
	duration_bad("106751991167301d");	 /* overflows int64 milliseconds */
	duration_bad("9223372036854775807ms1s"); /* the sum overflows */
}

static void size_is(const char *s, int64_t want)
{
	int64_t v = -42;

	if (lk_size_parse(s, &v) != 0 || v != want)
		fail_msg("size '%s': got %lld, want %lld", s, (long long)v, (long long)want);
}

static void size_bad(const char *s)
{
	int64_t v = -42;

	if (lk_size_parse(s, &v) == 0)
		fail_msg("size '%s' accepted as %lld", s ? s : "(null)", (long long)v);
}

static void test_size(void **state)
{
	(void)state;
	size_is("512", 512);
	size_is("0", 0);
	size_is("512B", 512);
	size_is("64KiB", 65536);
	size_is("64MiB", 64LL * 1024 * 1024);
	size_is("1GiB", 1073741824LL);
	size_is("10KB", 10000);
	size_is("10MB", 10000000);
	size_is("2GB", 2000000000LL);
	size_bad(NULL);
	size_bad("");
	size_bad("MiB");
	size_bad("-1");
	size_bad("64 MiB");
	size_bad("64mib");
	size_bad("1.5GiB");
	size_bad("1TiB");
	size_bad(" 64");
	size_bad("9223372036854775807KiB"); /* overflows */
}

static void test_int64(void **state)
{
	int64_t v = 0;

	(void)state;
	assert_int_equal(lk_int64_parse("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(lk_int64_parse("-42", &v), 0);
	assert_int_equal(v, -42);
	assert_int_equal(lk_int64_parse("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(lk_int64_parse("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	v = 7;
	assert_int_equal(lk_int64_parse("9223372036854775808", &v), -1);
	assert_int_equal(lk_int64_parse("", &v), -1);
	assert_int_equal(lk_int64_parse(NULL, &v), -1);
	assert_int_equal(lk_int64_parse(" 1", &v), -1);
	assert_int_equal(lk_int64_parse("1 ", &v), -1);
	assert_int_equal(lk_int64_parse("1x", &v), -1);
	assert_int_equal(lk_int64_parse("0x10", &v), -1);
	assert_int_equal(lk_int64_parse("1e3", &v), -1);
	assert_int_equal(v, 7); /* untouched on failure */
}

static void ts_is(const char *s, int64_t want_us)
{
	int64_t v = -42;

	if (lk_ts_parse(s, &v) != 0 || v != want_us)
		fail_msg("ts '%s': got %lld, want %lld", s, (long long)v, (long long)want_us);
}

static void ts_bad(const char *s)
{
	int64_t v = -42;

	if (lk_ts_parse(s, &v) == 0)
		fail_msg("ts '%s' accepted as %lld", s, (long long)v);
}

static void test_ts_parse(void **state)
{
	const int64_t day = 86400LL * 1000000;

	(void)state;
	ts_is("1970-01-01 00:00:00", 0);
	ts_is("1970-01-01T00:00:00Z", 0);
	ts_is("1970-01-01 00:00:00+00", 0);
	ts_is("1970-01-01 01:00:00+01", 0);
	ts_is("1969-12-31 19:00:00-05:00", 0);
	ts_is("1970-01-01 05:30:00+05:30", 0);
	ts_is("1970-01-02", day);
	ts_is("1970-01-01 00:00:00.5", 500000);
	ts_is("1970-01-01 00:00:00.000001", 1);
	ts_is("1970-01-01 00:00:00.1234567", 123456); /* beyond microseconds: cut */
	ts_is("1969-12-31 23:59:59.999999", -1);
	ts_is("2000-02-29 00:00:00", 951782400LL * 1000000);
	ts_is("2024-01-02 03:04:05", 1704164645LL * 1000000);
	ts_is("2024-01-02 03:04:05.123456+02", (1704164645LL - 7200) * 1000000 + 123456);
	ts_is("2024-01-01 24:00:00", 1704153600LL * 1000000); /* = 2024-01-02 00:00 */
	ts_bad("");
	ts_bad("2024");
	ts_bad("2024-01");
	ts_bad("2024-1-02");
	ts_bad("2024-13-01");
	ts_bad("2024-00-10");
	ts_bad("2023-02-29"); /* not a leap year */
	ts_bad("2024-04-31");
	ts_bad("1900-02-29");
	ts_bad("2024-01-02 3:04:05");
	ts_bad("2024-01-02  3:04:05");
	ts_bad("2024-01-02 -1:04:05");
	ts_bad("2024-01-02 00:-1:05");
	ts_bad("2024-01-02 00:00:+5");
	ts_bad("+024-01-02");
	ts_bad(" 2024-01-02");
	ts_bad("2024-01-02 00:60:00");
	ts_bad("2024-01-02 25:00:00");
	ts_bad("2024-01-02 00:00:00.");
	ts_bad("2024-01-02 00:00:00+1");
	ts_bad("2024-01-02 00:00:00 +01");
	ts_bad("2024-01-02 00:00:00x");
	ts_bad("2024-01-02x00:00:00");
	ts_bad("infinity");
}

static void shift_is(const char *s, int64_t delta_us, const char *want)
{
	char out[64];

	if (lk_ts_shift(s, delta_us, out, sizeof(out)) != 0)
		fail_msg("shift '%s' by %lld failed", s, (long long)delta_us);
	if (strcmp(out, want) != 0)
		fail_msg("shift '%s' by %lld: got '%s', want '%s'", s, (long long)delta_us, out,
			 want);
}

static void test_ts_shift(void **state)
{
	const int64_t min = 60LL * 1000000;
	char small[8];

	(void)state;
	shift_is("2024-01-01 00:00:00", 0, "2024-01-01 00:00:00");
	shift_is("2024-01-01 00:00:00", -3 * min, "2023-12-31 23:57:00");
	shift_is("2024-03-01T00:01:00", -2 * min, "2024-02-29T23:59:00");
	shift_is("2024-01-01 00:00:00", -500000, "2023-12-31 23:59:59.5");
	shift_is("2024-01-01 00:00:00", -1, "2023-12-31 23:59:59.999999");
	/* The fraction keeps the input's digits unless the shift needs more. */
	shift_is("2024-01-01 00:00:00.5", -min, "2023-12-31 23:59:00.5");
	shift_is("2024-01-01 00:00:00.120", -min, "2023-12-31 23:59:00.120");
	shift_is("2024-01-01 00:00:00.5", -1000, "2024-01-01 00:00:00.499");
	shift_is("2024-01-01 00:00:00.500000", 0, "2024-01-01 00:00:00.500000");
	shift_is("2024-01-01 00:00:00.5", 500000, "2024-01-01 00:00:01.0");
	/* A zone is applied and the result is printed at UTC in the same suffix shape. */
	shift_is("2024-01-01 00:30:00+01", -min, "2023-12-31 23:29:00+00");
	shift_is("2024-01-01 00:30:00+05:30", 0, "2023-12-31 19:00:00+00:00");
	shift_is("2024-01-01T00:00:00Z", -min, "2023-12-31T23:59:00Z");
	shift_is("2024-01-01 00:00:00.25-02", 0, "2024-01-01 02:00:00.25+00");
	/* Before the epoch, and a date alone (its time is dropped again: a lower bound). */
	shift_is("1970-01-01 00:00:00", -1, "1969-12-31 23:59:59.999999");
	shift_is("1969-12-31 23:59:59", 1000000, "1970-01-01 00:00:00");
	shift_is("2024-01-01", -3 * min, "2023-12-31");
	assert_int_equal(lk_ts_shift("not a time", 0, small, sizeof(small)), -1);
	assert_int_equal(lk_ts_shift("2024-01-01 00:00:00", 0, small, sizeof(small)), -1);
}

static void utf8_is(const char *in, size_t len, const char *want)
{
	struct lk_buf b;

	lk_buf_init(&b);
	lk_buf_add_utf8(&b, in, len);
	lk_buf_addch(&b, '\0');
	assert_string_equal(b.buf, want);
	lk_buf_release(&b);
}

/* Text from databases into JSON: malformed bytes become U+FFFD, the rest is kept. */
static void test_utf8(void **state)
{
	(void)state;
	assert_int_equal(lk_utf8_seq((const unsigned char *)"a", 1), 1);
	assert_int_equal(lk_utf8_seq((const unsigned char *)"\xc3\xa9", 2), 2);
	assert_int_equal(lk_utf8_seq((const unsigned char *)"\xc3\xa9", 1), 0);	    /* cut short */
	assert_int_equal(lk_utf8_seq((const unsigned char *)"\xc0\xaf", 2), 0);	    /* overlong */
	assert_int_equal(lk_utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0); /* surrogate */
	assert_int_equal(lk_utf8_seq((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(lk_utf8_seq((const unsigned char *)"\xf4\x90\x80\x80", 4), 0);
	utf8_is("caf\xc3\xa9", 5, "caf\xc3\xa9");
	utf8_is("caf\xe9!", 5, "caf\xef\xbf\xbd!");		/* Latin-1 */
	utf8_is("ab\xe2\x82", 4, "ab\xef\xbf\xbd\xef\xbf\xbd"); /* cut mid-sequence */
	utf8_is("", 0, "");
}

static void json_text_is(const char *in, size_t len, const char *want)
{
	struct lk_buf b = LK_BUF_INIT;

	lk_buf_add_json_text(&b, in, len);
	assert_string_equal(b.buf, want);
	lk_buf_release(&b);
}

/* Text that is only shown (logs): always a valid JSON literal; keys keep their bytes. */
static void test_json_text(void **state)
{
	struct lk_buf b = LK_BUF_INIT;
	json_t *j;
	char *s;

	(void)state;
	json_text_is("a\"b\\c\n\x01", 7, "\"a\\\"b\\\\c\\n\\u0001\"");
	json_text_is("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");
	json_text_is("A\xff\x42", 3, "\"A\xef\xbf\xbd\x42\"");
	json_text_is("\xe2\x82", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
	lk_buf_add_json_str(&b, "A\xff\x42", 3); /* a key: its bytes as they are */
	assert_string_equal(b.buf, "\"A\xff\x42\"");
	/* jansson refuses it; lk_json_parse_text still gives the array, with U+FFFD */
	assert_null(json_loadb(b.buf, b.len, 0, NULL));
	lk_buf_reset(&b);
	lk_buf_adds(&b, "[");
	lk_buf_add_json_str(&b, "A\xff\x42", 3);
	lk_buf_adds(&b, ",\"x\"]");
	j = lk_json_parse_text(b.buf, b.len);
	assert_true(json_is_array(j));
	assert_string_equal(json_string_value(json_array_get(j, 0)), "A\xef\xbf\xbd\x42");
	assert_string_equal(json_string_value(json_array_get(j, 1)), "x");
	json_decref(j);
	j = lk_json_parse_text("not json \xff", 10); /* not JSON: its text */
	assert_string_equal(json_string_value(j), "not json \xef\xbf\xbd");
	json_decref(j);
	j = lk_json_text("ok", 2);
	s = json_dumps(j, JSON_ENCODE_ANY);
	assert_string_equal(s, "\"ok\"");
	free(s);
	json_decref(j);
	lk_buf_release(&b);
}

/*
 * An interval timer is due at its first check whatever the clock reads: on a machine that
 * booted a second ago, CLOCK_MONOTONIC reads about 1,000 ms, and an hourly duty kept as
 * "last = 0" would not run until the machine had been up for an hour.
 */
static void test_every(void **state)
{
	struct lk_every t = {0};
	const int64_t hour = 3600000;

	(void)state;
	assert_true(lk_every_due(&t, 1000, hour)); /* one second after boot */
	assert_false(lk_every_due(&t, 1000, hour));
	assert_false(lk_every_due(&t, 1000 + hour - 1, hour));
	assert_true(lk_every_due(&t, 1000 + hour, hour));
	assert_false(lk_every_due(&t, 1000 + hour + 1, hour));
	lk_every_reset(&t); /* due again at once */
	assert_true(lk_every_due(&t, 1000 + hour + 2, hour));
	assert_false(lk_every_due(&t, 1000 + hour + 3, hour));

	t = (struct lk_every){0};
	assert_true(lk_every_due(&t, 0, 100)); /* a clock at zero */
	t = (struct lk_every){0};
	assert_true(lk_every_due(&t, INT64_C(86400000) * 365, 100)); /* a year of uptime */
	assert_false(lk_every_due(&t, INT64_C(86400000) * 365 + 99, 100));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),  cmocka_unit_test(test_size),
		cmocka_unit_test(test_int64),	  cmocka_unit_test(test_ts_parse),
		cmocka_unit_test(test_ts_shift),  cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_json_text), cmocka_unit_test(test_every),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
