/* ident.c - identifier quoting (DESIGN decision 12) shared by both engines. */
#include "connector.h"
#include "core/buf.h"

#include <stdio.h>
#include <string.h>

void lk_quote_ident(struct lk_buf *b, const char *name)
{
	lk_buf_addch(b, '"');
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			lk_buf_addch(b, '"');
		lk_buf_addch(b, *p);
	}
	lk_buf_addch(b, '"');
}

void lk_quote_tref(struct lk_buf *b, const struct lk_tref *t)
{
	if (t->schema) {
		lk_quote_ident(b, t->schema);
		lk_buf_addch(b, '.');
	}
	lk_quote_ident(b, t->name);
}

void lk_quote_tref_for(struct lk_buf *b, const struct lk_tref *t, enum lk_db_kind kind)
{
	struct lk_tref q = *t;
	char public_schema[] = "public";

	if (kind == LK_DB_POSTGRES && !q.schema)
		q.schema = public_schema;
	lk_quote_tref(b, &q);
}

void lk_tref_format(const struct lk_tref *t, char *out, size_t out_size)
{
	if (t->schema)
		(void)snprintf(out, out_size, "%s.%s", t->schema, t->name);
	else
		(void)snprintf(out, out_size, "%s", t->name);
}
