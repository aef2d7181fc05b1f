/*
 * fuzz_decode.c - feeds the input to the decoders of text that comes back from a database
 * or the state store: the value mapping of docs/types.md (lk_value_canonical and
 * lk_row_canon for every type, lk_type_from_pg / _from_sqlite on a type name), the
 * timestamp, integer, duration and size parsers of core/units.c, hex, and the stored
 * position's JSON (an array of key values, or an object whose "last" / "after" holds
 * one) through lk_pos_parse_values. The first byte picks the types of the position's
 * values (value i has type (byte + 5 * i) % 13); the rest is the text.
 * Checks, with abort() on a violation: a position that parses is written back by
 * lk_pos_add_values as JSON that parses to the same values; a timestamp shifted by 0 and
 * by an hour parses back to the same instant (plus the hour; a date alone to the start of
 * its day) when its year has 4 digits. The same bytes are also read as a binary COPY
 * stream (decode_copy).
 */
#include "connector/connector.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/units.h"
#include "sched/tz.h"
#include "sync/sync_int.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NTYPES 13 /* LK_T_OTHER .. LK_T_TIME */
#define MAXVALS 16
#define HOUR_US 3600000000LL
#define DAY_US 86400000000LL

/* Every mapping of one value, as verify and the key sets see it. */
static void decode_value(const char *s, size_t len)
{
	struct lk_value v = {s, len, false}, null = {"", 0, true};
	struct lk_buf b = LK_BUF_INIT;
	enum lk_type types[NTYPES];
	int idx[NTYPES];
	char *hex = lk_xmalloc(len / 2 + 1);

	for (int t = 0; t < NTYPES; t++) {
		types[t] = (enum lk_type)t;
		idx[t] = 0;
		lk_value_canonical(&b, (enum lk_type)t, &v);
	}
	lk_value_canonical(&b, LK_T_TEXT, &null);
	for (int t = 0; t < NTYPES; t++) {
		lk_row_canon(&b, &v, &types[t], idx, 1, true);
		lk_key_canon(&b, &v, &types[t], idx, 1);
	}
	(void)lk_type_from_pg(s);
	(void)lk_type_from_sqlite(s);
	(void)lk_hex_decode(hex, s, len);
	free(hex);
	lk_buf_release(&b);
}

/*
 * lk_ts_shift(s, delta) must print an instant that parses back to us + delta, or for a
 * date alone ("YYYY-MM-DD", the same shape) to the start of that instant's day.
 */
static void shift_back(const char *s, int64_t us, int64_t delta)
{
	char out[40];
	int64_t back, want = us + delta, days = want / DAY_US - (want % DAY_US < 0);
	int y, m, d;

	lk_tz_civil_from_days(days, &y, &m, &d);
	if (y < 2 || y > 9998)
		return; /* five digits or a sign: outside the shape, refused by design */
	if (strlen(s) == 10)
		want = days * DAY_US;
	if (lk_ts_shift(s, delta, out, sizeof(out)) < 0 || lk_ts_parse(out, &back) < 0 ||
	    back != want)
		abort();
}

static void decode_units(const char *s)
{
	int64_t v;

	(void)lk_int64_parse(s, &v);
	(void)lk_duration_parse(s, &v);
	(void)lk_size_parse(s, &v);
	if (lk_ts_parse(s, &v) == 0) {
		shift_back(s, v, 0);
		shift_back(s, v, HOUR_US);
		shift_back(s, v, -HOUR_US);
	}
}

static bool same_values(const struct lk_value *a, const struct lk_value *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i].null != b[i].null || a[i].len != b[i].len ||
		    memcmp(a[i].p, b[i].p, a[i].len) != 0 || a[i].p[a[i].len] != '\0')
			return false;
	return true;
}

/* A position's value array: parsed, written back, parsed again. */
static void decode_values(const json_t *arr, uint8_t sel)
{
	struct lk_value v[MAXVALS], w[MAXVALS];
	enum lk_type types[MAXVALS];
	int idx[MAXVALS], n = (int)json_array_size(arr);
	struct lk_arena arena;
	struct lk_buf b = LK_BUF_INIT;
	json_t *again;

	if (!json_is_array(arr) || n > MAXVALS)
		return;
	for (int i = 0; i < n; i++) {
		types[i] = (enum lk_type)((sel + 5 * i) % NTYPES);
		idx[i] = i;
	}
	lk_arena_init(&arena, 4096);
	if (lk_pos_parse_values(arr, v, types, idx, n, &arena) == 0) {
		lk_pos_add_values(&b, v, types, idx, n);
		again = json_loadb(b.buf, b.len, 0, NULL);
		if (!again || lk_pos_parse_values(again, w, types, idx, n, &arena) < 0 ||
		    !same_values(v, w, n))
			abort();
		json_decref(again);
		lk_buf_reset(&b);
		lk_key_canon(&b, v, types, idx, n);
		lk_row_canon(&b, v, types, idx, n, false);
	}
	lk_buf_release(&b);
	lk_arena_release(&arena);
}

/*
 * A binary COPY stream (the snapshot's fast path reads it from the source): tuples of
 * 1 + sel % 8 fields until the trailer or a malformed one. Every field must lie inside
 * the tuple, and the tuple inside the input; each field is decoded as a key of the type
 * sel picks, and an integer key's text must parse back to the same number.
 */
static void decode_copy(const unsigned char *p, size_t n, uint8_t sel)
{
	static const enum lk_type kt[] = {LK_T_INT, LK_T_TEXT, LK_T_UUID, LK_T_NUMERIC};
	int ncols = 1 + sel % 8;
	size_t off[8], used;
	int32_t flen[8];
	struct lk_rows r;

	lk_rows_init(&r, ncols);
	for (int rc; n > 0 && (rc = lk_pg_copy_tuple(p, n, ncols, &used, off, flen)) == 1;
	     p += used, n -= used) {
		if (used > n)
			abort();
		lk_rows_reset(&r);
		lk_rows_add(&r);
		for (int i = 0; i < ncols; i++) {
			enum lk_type t = kt[(sel / 8 + i) % 4];
			int64_t v;

			if (flen[i] < 0)
				continue;
			if (off[i] + (size_t)flen[i] > used)
				abort();
			if (lk_pg_copy_key_text(t, p + off[i], flen[i], &r, 0, i) < 0)
				continue;
			if (t == LK_T_INT && (lk_int64_parse(LK_ROW(&r, 0)[i].p, &v) < 0 ||
					      (flen[i] == 2 && (v < INT16_MIN || v > INT16_MAX)) ||
					      (flen[i] == 4 && (v < INT32_MIN || v > INT32_MAX))))
				abort();
		}
		if (used == 0)
			abort();
	}
	lk_rows_release(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;
	json_t *j;
	size_t len;

	if (size == 0)
		return 0;
	len = size - 1;
	s = lk_xmalloc(len + 1);
	memcpy(s, data + 1, len);
	s[len] = '\0'; /* values are NUL-terminated (struct lk_value) */
	decode_value(s, len);
	decode_units(s);
	decode_copy(data + 1, len, data[0]);
	j = json_loadb(s, len, 0, NULL);
	if (json_is_array(j)) {
		decode_values(j, data[0]);
	} else if (json_is_object(j)) {
		decode_values(json_object_get(j, "last"), data[0]);
		decode_values(json_object_get(j, "after"), data[0]);
	}
	json_decref(j);
	free(s);
	return 0;
}
