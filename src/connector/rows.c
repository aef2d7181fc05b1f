/* rows.c - batches of rows whose bytes live in one arena, reused across batches. */
#include "connector.h"
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define LK_LOG_COMPONENT "rows"
#include "core/log.h"

void lk_rows_init(struct lk_rows *r, int ncols)
{
	r->ncols = ncols;
	r->nrows = 0;
	r->cap = 0;
	r->v = NULL;
	lk_arena_init(&r->arena, (size_t)256 * 1024);
}

void lk_rows_reset(struct lk_rows *r)
{
	r->nrows = 0;
	lk_arena_reset(&r->arena);
}

void lk_rows_set_ncols(struct lk_rows *r, int ncols)
{
	if (r->nrows)
		LK_BUG("lk_rows_set_ncols on a non-empty batch");
	if (ncols != r->ncols) {
		free(r->v);
		r->v = NULL;
		r->cap = 0;
		r->ncols = ncols;
	}
}

void lk_rows_release(struct lk_rows *r)
{
	free(r->v);
	r->v = NULL;
	r->cap = 0;
	r->nrows = 0;
	lk_arena_release(&r->arena);
}

struct lk_value *lk_rows_add(struct lk_rows *r)
{
	struct lk_value *row;

	if (r->nrows == r->cap) {
		int cap = r->cap ? r->cap * 2 : 64;

		r->v = lk_xrealloc(r->v,
				   (size_t)cap * (size_t)(r->ncols ? r->ncols : 1) * sizeof(*r->v));
		r->cap = cap;
	}
	row = LK_ROW(r, r->nrows);
	for (int i = 0; i < r->ncols; i++) {
		row[i].p = "";
		row[i].len = 0;
		row[i].null = true;
	}
	r->nrows++;
	return row;
}

void lk_rows_set(struct lk_rows *r, int row, int col, const char *p, size_t len)
{
	struct lk_value *v = &LK_ROW(r, row)[col];

	v->p = lk_arena_memdup(&r->arena, p, len);
	v->len = len;
	v->null = false;
}

void lk_rows_set_null(struct lk_rows *r, int row, int col)
{
	struct lk_value *v = &LK_ROW(r, row)[col];

	v->p = "";
	v->len = 0;
	v->null = true;
}

void lk_rows_copy_row(struct lk_rows *dst, const struct lk_rows *src, int i)
{
	const struct lk_value *s = LK_ROW(src, i);
	int n = dst->ncols < src->ncols ? dst->ncols : src->ncols;
	int row;

	lk_rows_add(dst);
	row = dst->nrows - 1;
	for (int c = 0; c < n; c++) {
		if (!s[c].null)
			lk_rows_set(dst, row, c, s[c].p, s[c].len);
	}
}

void lk_table_release(struct lk_table *t)
{
	for (int i = 0; i < t->ncols; i++) {
		free(t->cols[i].name);
		free(t->cols[i].native);
		free(t->cols[i].collation);
	}
	free(t->cols);
	free(t->pk);
	free(t->schema);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

int lk_table_col(const struct lk_table *t, const char *name)
{
	for (int i = 0; i < t->ncols; i++) {
		if (strcmp(t->cols[i].name, name) == 0)
			return i;
	}
	return -1;
}

void lk_key_describe(char *out, size_t out_size, const char *const *cols, const int *key, int nkey,
		     const struct lk_value *row)
{
	struct lk_buf b = LK_BUF_INIT;

	lk_buf_addch(&b, '(');
	for (int i = 0; i < nkey; i++) {
		const struct lk_value *v = &row[key[i]];

		lk_buf_addf(&b, "%s%s=", i ? ", " : "", cols[key[i]]);
		if (v->null)
			lk_buf_adds(&b, "NULL");
		else
			lk_buf_add(&b, v->p, v->len > 40 ? 40 : strnlen(v->p, v->len));
	}
	lk_buf_addch(&b, ')');
	(void)snprintf(out, out_size, "%s", b.buf);
	lk_buf_release(&b);
}
