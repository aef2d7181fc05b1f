/*
 * test_position.c - the position JSON (sync/position.c): every mode encoded and decoded
 * back, the forms earlier versions wrote (read the same way they were before), and the
 * order of changelog positions.
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "core/arena.h"
#include "core/buf.h"
#include "sync/position.h"

#include <stdlib.h>
#include <string.h>

static const enum lk_type types[] = {LK_T_INT, LK_T_BYTES, LK_T_TIMESTAMPTZ};

/* Encodes p, decodes the text into *out, returns the text (caller frees). */
static char *round_trip(const struct lk_position *p, struct lk_position *out)
{
	struct lk_buf b = LK_BUF_INIT;
	char *text;

	lk_position_encode(&b, p);
	text = lk_buf_detach(&b, NULL);
	lk_position_decode(text, out);
	return text;
}

static void test_snapshot(void **state)
{
	struct lk_value row[] = {{"42", 2, false}, {"\x01\xff", 2, false}, {"", 0, true}};
	int idx[] = {0, 1};
	struct lk_position p = {.mode = LK_POS_SNAPSHOT, .fp = "0123456789abcdef"}, d;
	struct lk_value got[2];
	struct lk_arena arena;
	char *text;

	(void)state;
	p.vals = (struct lk_pos_values){row, types, idx, 2};
	text = round_trip(&p, &d);
	assert_string_equal(text, "{\"v\":1,\"fp\":\"0123456789abcdef\",\"mode\":\"snapshot\","
				  "\"done\":false,\"last\":[\"42\",\"01ff\"]}");
	assert_int_equal(d.mode, LK_POS_SNAPSHOT);
	assert_false(d.done);
	assert_string_equal(d.fp, "0123456789abcdef");
	lk_arena_init(&arena, 256);
	assert_int_equal(lk_position_values(&d, got, types, idx, 2, &arena), 0);
	assert_int_equal(got[1].len, 2);
	assert_memory_equal(got[1].p, "\x01\xff", 2);
	lk_arena_release(&arena);
	lk_position_release(&d);
	free(text);
	p.done = true;
	text = round_trip(&p, &d);
	assert_string_equal(
		text, "{\"v\":1,\"fp\":\"0123456789abcdef\",\"mode\":\"snapshot\",\"done\":true}");
	assert_true(d.done);
	assert_null(d.vals_json);
	lk_position_release(&d);
	free(text);
}

static void test_poll(void **state)
{
	struct lk_value row[] = {
		{"7", 1, false}, {"", 0, true}, {"2024-01-01 00:00:00+00", 22, false}};
	int idx[] = {2, 0};
	json_t *prep = json_pack("{s:s}", "731", "2024-01-01 00:00:00+00");
	struct lk_position p = {.mode = LK_POS_POLL, .fp = "f", .has_record = true}, d;
	char *text;

	(void)state;
	p.vals = (struct lk_pos_values){row, types, idx, 2};
	p.prepared = prep;
	memcpy(p.seen, "2024-01-01 00:00:01+00", 23);
	text = round_trip(&p, &d);
	assert_string_equal(text, "{\"v\":1,\"fp\":\"f\",\"mode\":\"poll\",\"after\":[\"2024-01-01 "
				  "00:00:00+00\",\"7\"],\"seen\":\"2024-01-01 00:00:01+00\","
				  "\"prepared\":{\"731\":\"2024-01-01 00:00:00+00\"}}");
	assert_int_equal(d.mode, LK_POS_POLL);
	assert_true(d.has_record);
	assert_string_equal(d.seen, "2024-01-01 00:00:01+00");
	assert_string_equal(json_string_value(json_object_get(d.prepared, "731")),
			    "2024-01-01 00:00:00+00");
	assert_non_null(d.vals_json);
	assert_string_equal(d.from, "");
	lk_position_release(&d);
	free(text);
	/* A capped position without a record (the cap did not apply). */
	p = (struct lk_position){.mode = LK_POS_POLL, .fp = "f", .from = "-infinity"};
	text = round_trip(&p, &d);
	assert_string_equal(text,
			    "{\"v\":1,\"fp\":\"f\",\"mode\":\"poll\",\"from\":\"-infinity\"}");
	assert_string_equal(d.from, "-infinity");
	assert_false(d.has_record);
	assert_null(d.prepared);
	lk_position_release(&d);
	free(text);
	json_decref(prep);
}

static void test_realtime(void **state)
{
	struct lk_value row[] = {{"9", 1, false}};
	int idx[] = {0};
	struct lk_position p = {.mode = LK_POS_REALTIME,
				.fp = "f",
				.phase = LK_PHASE_SNAPSHOT,
				.cdc = {900, 0, 0}},
			   d;
	char *text;

	(void)state;
	p.vals = (struct lk_pos_values){row, types, idx, 1};
	text = round_trip(&p, &d);
	assert_string_equal(text,
			    "{\"v\":1,\"fp\":\"f\",\"mode\":\"realtime\",\"phase\":\"snapshot\","
			    "\"h\":\"900\",\"xid\":\"0\",\"seq\":\"0\",\"last\":[\"9\"]}");
	assert_int_equal(d.phase, LK_PHASE_SNAPSHOT);
	assert_int_equal(d.cdc.horizon, 900);
	assert_non_null(d.vals_json);
	lk_position_release(&d);
	free(text);
	/* Phase stream never carries "last". */
	p.phase = LK_PHASE_STREAM;
	text = round_trip(&p, &d);
	assert_string_equal(text,
			    "{\"v\":1,\"fp\":\"f\",\"mode\":\"realtime\",\"phase\":\"stream\","
			    "\"h\":\"900\",\"xid\":\"0\",\"seq\":\"0\"}");
	assert_null(d.vals_json);
	lk_position_release(&d);
	free(text);
}

/* What earlier versions wrote reads as it did then. */
static void test_older_forms(void **state)
{
	struct lk_position d;

	(void)state;
	/* the first release: no fingerprint */
	lk_position_decode("{\"v\":1,\"mode\":\"poll\",\"after\":[\"1\",\"2\"]}", &d);
	assert_int_equal(d.mode, LK_POS_POLL);
	assert_string_equal(d.fp, "");
	assert_false(d.blank);
	assert_non_null(d.vals_json);
	lk_position_release(&d);
	/* a real-time position with numbers as JSON integers too */
	lk_position_decode("{\"v\":1,\"fp\":\"f\",\"mode\":\"realtime\",\"phase\":\"stream\","
			   "\"h\":\"812\",\"xid\":815,\"seq\":\"3\"}",
			   &d);
	assert_int_equal(d.phase, LK_PHASE_STREAM);
	assert_int_equal(d.cdc.horizon, 812);
	assert_int_equal(d.cdc.xid, 815);
	assert_int_equal(d.cdc.seq, 3);
	lk_position_release(&d);
	/* a snapshot position without "done" is not resumed (done reads true) */
	lk_position_decode("{\"mode\":\"snapshot\",\"last\":[\"1\"]}", &d);
	assert_true(d.done);
	lk_position_release(&d);
	/* the seal's "{}", an sql job's, junk, none */
	lk_position_decode("{}", &d);
	assert_true(d.blank);
	lk_position_release(&d);
	lk_position_decode("{\"kind\":\"sql\"}", &d);
	assert_false(d.blank);
	assert_int_equal(d.mode, LK_POS_NONE);
	lk_position_release(&d);
	lk_position_decode("not json", &d);
	assert_true(d.blank);
	lk_position_release(&d);
	lk_position_decode(NULL, &d);
	assert_true(d.blank);
	assert_int_equal(d.mode, LK_POS_NONE);
	lk_position_release(&d);
	/* an unknown phase starts over */
	lk_position_decode("{\"mode\":\"realtime\",\"phase\":\"later\",\"h\":\"5\"}", &d);
	assert_int_equal(d.phase, LK_PHASE_NONE);
	lk_position_release(&d);
}

/* Where a real-time position's history comes from (the timeline guard). */
static void test_origin(void **state)
{
	struct lk_position p = {.mode = LK_POS_REALTIME,
				.fp = "f",
				.phase = LK_PHASE_STREAM,
				.cdc = {900, 901, 7},
				.origin = {true, "7716581912663490022", 2}},
			   d;
	char *text;

	(void)state;
	text = round_trip(&p, &d);
	assert_string_equal(text,
			    "{\"v\":1,\"fp\":\"f\",\"mode\":\"realtime\",\"phase\":\"stream\","
			    "\"h\":\"900\",\"xid\":\"901\",\"seq\":\"7\",\"src\":{\"sysid\":"
			    "\"7716581912663490022\",\"tli\":\"2\"}}");
	assert_true(d.origin.known);
	assert_string_equal(d.origin.sysid, "7716581912663490022");
	assert_int_equal(d.origin.tli, 2);
	lk_position_release(&d);
	free(text);
	/* A source whose identity could not be read still says the guard wrote it. */
	p.origin = (struct lk_pos_origin){.known = true};
	text = round_trip(&p, &d);
	assert_true(d.origin.known);
	assert_string_equal(d.origin.sysid, "");
	assert_int_equal(d.origin.tli, 0);
	lk_position_release(&d);
	free(text);
	/* Written before the guard: unknown, not judged. */
	lk_position_decode("{\"v\":1,\"fp\":\"f\",\"mode\":\"realtime\",\"phase\":\"stream\","
			   "\"h\":\"812\",\"xid\":\"0\",\"seq\":\"0\"}",
			   &d);
	assert_false(d.origin.known);
	lk_position_release(&d);
}

static void test_order(void **state)
{
	struct lk_cdc_pos drained = {100, 0, 0}, inside = {90, 100, 4}, later = {90, 100, 5},
			  next = {101, 0, 0};

	(void)state;
	assert_true(lk_cdc_pos_cmp(&drained, &inside, false) < 0); /* (100, 0) < (100, 4) */
	assert_true(lk_cdc_pos_cmp(&inside, &later, false) < 0);
	assert_true(lk_cdc_pos_cmp(&later, &next, false) < 0);
	assert_int_equal(lk_cdc_pos_cmp(&next, &next, false), 0);
	assert_true(lk_cdc_pos_cmp(&next, &drained, false) > 0);
	/* SQLite: seq alone (xid is a stamp) */
	assert_true(lk_cdc_pos_cmp(&(struct lk_cdc_pos){0, 999, 3}, &(struct lk_cdc_pos){0, 1, 4},
				   true) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot), cmocka_unit_test(test_poll),
		cmocka_unit_test(test_realtime), cmocka_unit_test(test_older_forms),
		cmocka_unit_test(test_origin),	 cmocka_unit_test(test_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
