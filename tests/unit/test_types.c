/* test_types.c - identifier quoting, type mapping, canonical values, position values. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on
#include "connector/connector.h"
#include "core/buf.h"
#include "sync/keyset.h"
#include "sync/sync_int.h"

#include <cmocka.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static struct lk_value V(const char *s) {
	struct lk_value v = {s, strlen(s), false};

	return v;
}

static void
canon(struct lk_buf *b, enum lk_type t, const char *s)
{
	struct lk_value v = V(s);

	lk_buf_reset(b);
	lk_value_canonical(b, t, &v);
}

static void assert_same_canon(enum lk_type t, const char *a, const char *b)
{
	struct lk_buf x = LK_BUF_INIT, y = LK_BUF_INIT;

	canon(&x, t, a);
	canon(&y, t, b);
	assert_string_equal(x.buf, y.buf);
	lk_buf_release(&x);
	lk_buf_release(&y);
}

static void assert_diff_canon(enum lk_type t, const char *a, const char *b)
{
	struct lk_buf x = LK_BUF_INIT, y = LK_BUF_INIT;

	canon(&x, t, a);
	canon(&y, t, b);
	assert_string_not_equal(x.buf, y.buf);
	lk_buf_release(&x);
	lk_buf_release(&y);
}

static void test_quote_ident(void **state)
{
	struct lk_buf b = LK_BUF_INIT;
	char s1[] = "odd.schema", n1[] = "We\"ird Name";
	struct lk_tref t = {s1, n1}, t2 = {NULL, n1};
	char out[64];

	(void)state;
	lk_quote_ident(&b, "users");
	assert_string_equal(b.buf, "\"users\"");
	lk_buf_reset(&b);
	lk_quote_ident(&b, "a\"b\"\"c");
	assert_string_equal(b.buf, "\"a\"\"b\"\"\"\"c\"");
	lk_buf_reset(&b);
	lk_quote_tref(&b, &t);
	assert_string_equal(b.buf, "\"odd.schema\".\"We\"\"ird Name\"");
	lk_buf_reset(&b);
	lk_quote_tref(&b, &t2);
	assert_string_equal(b.buf, "\"We\"\"ird Name\"");
	lk_tref_format(&t, out, sizeof(out));
	assert_string_equal(out, "odd.schema.We\"ird Name");
	lk_buf_release(&b);
}

static void test_type_mapping(void **state)
{
	(void)state;
	assert_int_equal(lk_type_from_pg("int8"), LK_T_INT);
	assert_int_equal(lk_type_from_pg("float4"), LK_T_FLOAT);
	assert_int_equal(lk_type_from_pg("numeric"), LK_T_NUMERIC);
	assert_int_equal(lk_type_from_pg("jsonb"), LK_T_JSON);
	assert_int_equal(lk_type_from_pg("bytea"), LK_T_BYTES);
	assert_int_equal(lk_type_from_pg("timestamptz"), LK_T_TIMESTAMPTZ);
	assert_int_equal(lk_type_from_pg("interval"), LK_T_OTHER);
	assert_int_equal(lk_type_from_sqlite("INTEGER"), LK_T_INT);
	assert_int_equal(lk_type_from_sqlite("varchar(20)"), LK_T_TEXT);
	assert_int_equal(lk_type_from_sqlite("DOUBLE PRECISION"), LK_T_FLOAT);
	assert_int_equal(lk_type_from_sqlite("BOOLEAN"), LK_T_BOOL);
	assert_int_equal(lk_type_from_sqlite("DATETIME"), LK_T_TIMESTAMP);
	assert_int_equal(lk_type_from_sqlite(""), LK_T_OTHER);
	/* Every logical type survives a round trip through the declared types we create. */
	for (int t = LK_T_INT; t <= LK_T_TIME; t++) {
		if (t == LK_T_TEXT)
			continue;
		assert_int_equal(lk_type_from_sqlite(lk_type_sqlite_decl((enum lk_type)t)), t);
	}
	assert_true(lk_type_is_time(LK_T_DATE));
	assert_false(lk_type_is_time(LK_T_INT));
}

static void test_canonical_values(void **state)
{
	(void)state;
	/* PostgreSQL and SQLite spellings of the same value encode the same. */
	assert_same_canon(LK_T_BOOL, "t", "1");
	assert_same_canon(LK_T_BOOL, "f", "0");
	assert_diff_canon(LK_T_BOOL, "t", "f");
	assert_same_canon(LK_T_FLOAT, "1.5", "1.50000000000000000");
	assert_same_canon(LK_T_FLOAT, "1e+300", "1e300");
	assert_same_canon(LK_T_FLOAT, "Infinity", "inf");
	assert_same_canon(LK_T_FLOAT, "-0", "0");
	assert_same_canon(LK_T_FLOAT, "0.1", "0.10000000000000001"); /* one double */
	assert_diff_canon(LK_T_FLOAT, "0.1", "0.10000000000000002");
	assert_same_canon(LK_T_NUMERIC, "12.3400", "12.34");
	assert_same_canon(LK_T_NUMERIC, "5.000", "5");
	assert_diff_canon(LK_T_NUMERIC, "500", "5");
	assert_same_canon(LK_T_TIMESTAMPTZ, "2024-02-29 23:59:59.5+00",
			  "2024-02-29T23:59:59.500000Z");
	assert_same_canon(LK_T_TIMESTAMPTZ, "2024-03-01 01:00:00+01", "2024-03-01 00:00:00+00");
	assert_diff_canon(LK_T_TIMESTAMPTZ, "2024-03-01 00:00:00.000001+00",
			  "2024-03-01 00:00:00+00");
	assert_same_canon(LK_T_JSON, "{\"b\": [1, 2], \"a\": \"x\"}", "{\"a\":\"x\",\"b\":[1,2]}");
	assert_diff_canon(LK_T_JSON, "{\"a\": 1}", "{\"a\": 2}");
	assert_same_canon(LK_T_UUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
			  "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
	assert_same_canon(LK_T_INT, "42", "42");
	assert_diff_canon(LK_T_TEXT, "abc", "abc ");
}

static void test_key_canon_unambiguous(void **state)
{
	struct lk_buf a = LK_BUF_INIT, b = LK_BUF_INIT;
	enum lk_type types[2] = {LK_T_TEXT, LK_T_TEXT};
	int idx[2] = {0, 1};
	struct lk_value r1[2] = {V("a;V"), V("b")}, r2[2] = {V("a"), V(";Vb")};
	struct lk_value r3[2] = {V(""), V("x")}, r4[2] = {{"", 0, true}, V("x")};

	(void)state;
	lk_key_canon(&a, r1, types, idx, 2);
	lk_key_canon(&b, r2, types, idx, 2);
	assert_string_not_equal(a.buf, b.buf);
	lk_buf_reset(&a);
	lk_buf_reset(&b);
	lk_key_canon(&a, r3, types, idx, 2);
	lk_key_canon(&b, r4, types, idx, 2);
	assert_string_not_equal(a.buf, b.buf); /* '' is not NULL */
	lk_buf_release(&a);
	lk_buf_release(&b);
}

static void test_position_values_roundtrip(void **state)
{
	enum lk_type types[3] = {LK_T_TEXT, LK_T_BYTES, LK_T_INT};
	int idx[3] = {0, 1, 2};
	struct lk_value in[3] = {V("quote\" and \\ and \n"), {"\0\1\xff", 3, false}, {"", 0, true}};
	struct lk_value out[3];
	struct lk_buf b = LK_BUF_INIT;
	struct lk_arena arena;
	json_t *j;

	(void)state;
	lk_arena_init(&arena, 1024);
	lk_pos_add_values(&b, in, types, idx, 3);
	j = json_loads(b.buf, 0, NULL);
	assert_non_null(j);
	assert_int_equal(lk_pos_parse_values(j, out, types, idx, 3, &arena), 0);
	assert_int_equal(out[0].len, in[0].len);
	assert_memory_equal(out[0].p, in[0].p, in[0].len);
	assert_int_equal(out[1].len, 3);
	assert_memory_equal(out[1].p, "\0\1\xff", 3);
	assert_true(out[2].null);
	/* A wrong arity is refused, not half-read. */
	assert_int_equal(lk_pos_parse_values(j, out, types, idx, 2, &arena), -1);
	json_decref(j);
	lk_buf_release(&b);
	lk_arena_release(&arena);
}

static void test_keyset(void **state)
{
	struct lk_keyset ks;
	char key[32];

	(void)state;
	lk_keyset_init(&ks);
	for (int i = 0; i < 3000; i += 3) {
		int n = snprintf(key, sizeof(key), "k%d", i);

		lk_keyset_add(&ks, key, (size_t)n, (uint64_t)i);
	}
	for (int i = 0; i < 3000; i++) {
		struct lk_keyset_item *it;

		(void)snprintf(key, sizeof(key), "k%d", i);
		it = lk_keyset_find(&ks, key);
		if (i % 3 == 0) {
			assert_non_null(it);
			assert_int_equal(it->payload, i);
		} else {
			assert_null(it);
		}
	}
	lk_keyset_reset(&ks);
	assert_null(lk_keyset_find(&ks, "k0"));
	lk_keyset_release(&ks);
}

static void test_hex(void **state)
{
	struct lk_buf b = LK_BUF_INIT;
	char out[8];

	(void)state;
	lk_buf_add_hex(&b, "\0\x01\xab\xff", 4);
	assert_string_equal(b.buf, "0001abff");
	assert_int_equal(lk_hex_decode(out, "0001ABff", 8), 4);
	assert_memory_equal(out, "\0\x01\xab\xff", 4);
	assert_int_equal(lk_hex_decode(out, "0g", 2), -1);
	lk_buf_release(&b);
}

/* lk_buf_add_i64 writes what "%lld" writes, the extremes included. */
static void test_add_i64(void **state)
{
	static const int64_t v[] = {0, 7, -7, 10, -10, 1234567890123, INT64_MAX, INT64_MIN};
	struct lk_buf b = LK_BUF_INIT;
	char want[32];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		lk_buf_reset(&b);
		lk_buf_adds(&b, "x");
		lk_buf_add_i64(&b, v[i]);
		(void)snprintf(want, sizeof(want), "x%lld", (long long)v[i]);
		assert_string_equal(b.buf, want);
	}
	lk_buf_release(&b);
}

static void test_rows_reuse(void **state)
{
	struct lk_rows r;

	(void)state;
	lk_rows_init(&r, 2);
	for (int round = 0; round < 3; round++) {
		lk_rows_reset(&r);
		for (int i = 0; i < 1000; i++) {
			lk_rows_add(&r);
			lk_rows_set(&r, i, 0, "hello", 5);
		}
		assert_int_equal(r.nrows, 1000);
		assert_true(LK_ROW(&r, 999)[1].null);
		assert_string_equal(LK_ROW(&r, 999)[0].p, "hello");
	}
	lk_rows_release(&r);
}

/* Binary COPY tuples: fields, NULLs, the trailer, and every way a tuple can be cut. */
static void test_copy_tuple(void **state)
{
	/* 3 fields: int8 -2, NULL, text "hé"; then the trailer */
	static const unsigned char t[] = {0,	3,    0,    0,	  0,	8,    0xff, 0xff, 0xff,
					  0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff,
					  0,	0,    0,    3,	  'h',	0xc3, 0xa9, 0xff, 0xff};
	size_t off[3], used = 0;
	int32_t flen[3];
	struct lk_rows r;

	(void)state;
	assert_int_equal(lk_pg_copy_tuple(t, sizeof(t), 3, &used, off, flen), 1);
	assert_int_equal(used, 25);
	assert_int_equal(flen[0], 8);
	assert_int_equal(off[0], 6);
	assert_int_equal(flen[1], -1);
	assert_int_equal(flen[2], 3);
	assert_int_equal(off[2], 22);
	assert_int_equal(lk_pg_copy_tuple(t + 25, 2, 3, &used, off, flen), 0);
	assert_int_equal(used, 2);
	/* another width, and every cut short */
	assert_int_equal(lk_pg_copy_tuple(t, sizeof(t), 2, &used, off, flen), -1);
	for (size_t n = 0; n < 25; n++)
		assert_int_equal(lk_pg_copy_tuple(t, n, 3, &used, off, flen), -1);

	lk_rows_init(&r, 4);
	lk_rows_add(&r);
	assert_int_equal(lk_pg_copy_key_text(LK_T_INT, t + off[0], flen[0], &r, 0, 0), 0);
	assert_string_equal(LK_ROW(&r, 0)[0].p, "-2");
	{
		static const unsigned char i2[] = {0x80, 0x00}, i4[] = {0x7f, 0xff, 0xff, 0xff};
		static const unsigned char i8[] = {0x80, 0, 0, 0, 0, 0, 0, 0};
		static const unsigned char u[] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
						  0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};

		assert_int_equal(lk_pg_copy_key_text(LK_T_INT, i2, 2, &r, 0, 1), 0);
		assert_string_equal(LK_ROW(&r, 0)[1].p, "-32768");
		assert_int_equal(lk_pg_copy_key_text(LK_T_INT, i4, 4, &r, 0, 1), 0);
		assert_string_equal(LK_ROW(&r, 0)[1].p, "2147483647");
		assert_int_equal(lk_pg_copy_key_text(LK_T_INT, i8, 8, &r, 0, 1), 0);
		assert_string_equal(LK_ROW(&r, 0)[1].p, "-9223372036854775808");
		assert_int_equal(lk_pg_copy_key_text(LK_T_UUID, u, 16, &r, 0, 3), 0);
		assert_string_equal(LK_ROW(&r, 0)[3].p, "01234567-89ab-cdef-fedc-ba9876543210");
		assert_int_equal(lk_pg_copy_key_text(LK_T_INT, i8, 3, &r, 0, 1), -1);
		assert_int_equal(lk_pg_copy_key_text(LK_T_UUID, u, 15, &r, 0, 1), -1);
		assert_int_equal(lk_pg_copy_key_text(LK_T_NUMERIC, u, 16, &r, 0, 1), -1);
	}
	assert_int_equal(lk_pg_copy_key_text(LK_T_TEXT, t + off[2], flen[2], &r, 0, 2), 0);
	assert_int_equal(LK_ROW(&r, 0)[2].len, 3);
	assert_string_equal(LK_ROW(&r, 0)[2].p, "h\xc3\xa9");
	lk_rows_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote_ident),
		cmocka_unit_test(test_type_mapping),
		cmocka_unit_test(test_canonical_values),
		cmocka_unit_test(test_key_canon_unambiguous),
		cmocka_unit_test(test_position_values_roundtrip),
		cmocka_unit_test(test_keyset),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_add_i64),
		cmocka_unit_test(test_rows_reuse),
		cmocka_unit_test(test_copy_tuple),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
