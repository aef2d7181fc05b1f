/*
 * pg_types.c - the source's types on a PostgreSQL target (pg_types.h).
 */
#include "pg_types.h"

#include "core/buf.h"

#include <string.h>

int lk_pg_target_types(struct lk_conn *src, struct lk_conn *dst, const struct lk_tref *src_table,
		       const struct lk_column *cols, int ncols, const char *dst_db, char **natives,
		       struct lk_err *err)
{
	(void)src;
	(void)dst;
	(void)src_table;
	(void)dst_db;
	(void)err;
	for (int i = 0; i < ncols; i++)
		natives[i] = lk_xstrdup(cols[i].native);
	return 0;
}

int lk_pg_sync_enum_labels(struct lk_conn *src, struct lk_conn *dst, const struct lk_column *scols,
			   const struct lk_column *tcols, int n, const char *dst_db,
			   struct lk_err *err)
{
	(void)src;
	(void)dst;
	(void)scols;
	(void)tcols;
	(void)n;
	(void)dst_db;
	(void)err;
	return 0;
}
