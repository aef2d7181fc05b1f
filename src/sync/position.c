/* position.c - key and cursor values inside the position JSON. */
#include "core/buf.h"
#include "sync_int.h"

#include <jansson.h>
#include <string.h>

void lk_pos_add_values(struct lk_buf *b, const struct lk_value *v, const enum lk_type *types,
		       const int *idx, int n)
{
	lk_buf_addch(b, '[');
	for (int i = 0; i < n; i++) {
		const struct lk_value *x = &v[idx[i]];

		if (i)
			lk_buf_addch(b, ',');
		if (x->null) {
			lk_buf_adds(b, "null");
		} else if (types[idx[i]] == LK_T_BYTES) {
			lk_buf_addch(b, '"');
			lk_buf_add_hex(b, x->p, x->len);
			lk_buf_addch(b, '"');
		} else {
			lk_buf_add_json_str(b, x->p, x->len);
		}
	}
	lk_buf_addch(b, ']');
}

int lk_pos_parse_values(const void *json_array, struct lk_value *out, const enum lk_type *types,
			const int *idx, int n, struct lk_arena *arena)
{
	const json_t *a = json_array;

	if (!json_is_array(a) || (int)json_array_size(a) != n)
		return -1;
	for (int i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, (size_t)i);
		const char *s;
		size_t len;

		if (json_is_null(x)) {
			out[i].p = "";
			out[i].len = 0;
			out[i].null = true;
			continue;
		}
		if (!json_is_string(x))
			return -1;
		s = json_string_value(x);
		len = json_string_length(x);
		out[i].null = false;
		if (types[idx[i]] == LK_T_BYTES) {
			char *p = lk_arena_alloc(arena, len / 2 + 1);

			if (lk_hex_decode(p, s, len) < 0)
				return -1;
			p[len / 2] = '\0';
			out[i].p = p;
			out[i].len = len / 2;
		} else {
			out[i].p = lk_arena_memdup(arena, s, len);
			out[i].len = len;
		}
	}
	return 0;
}

void lk_key_canon(struct lk_buf *b, const struct lk_value *row, const enum lk_type *types,
		  const int *idx, int n)
{
	lk_row_canon(b, row, types, idx, n, false);
}

void lk_row_canon(struct lk_buf *b, const struct lk_value *row, const enum lk_type *types,
		  const int *idx, int n, bool raw_json)
{
	for (int i = 0; i < n; i++) {
		const struct lk_value *v = &row[idx[i]];
		size_t before;

		if (v->null) {
			lk_buf_adds(b, "N;");
			continue;
		}
		lk_buf_addch(b, 'V');
		before = b->len;
		if (types[idx[i]] == LK_T_BYTES) { /* hex: keep the string free of NUL bytes */
			lk_buf_add_hex(b, v->p, v->len);
		} else if (raw_json && types[idx[i]] == LK_T_JSON) {
			lk_buf_add(b, v->p, v->len);
		} else {
			lk_value_canonical(b, types[idx[i]], v);
		}
		lk_buf_addf(b, ":%zu;", b->len - before); /* length-suffixed: no ambiguity */
	}
}
