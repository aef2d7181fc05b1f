/*
 * meta.c - a job's small records in the state store's meta table, by key (store.h):
 * "schema:JOB@DEPLOYMENT" (the source columns a job last followed, sync/schema.c) and "blocked:JOB"
 * (why a job stopped on its schemas, for `lockstep status`).
 */
#include "core/buf.h"
#include "core/units.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>

int lk_store_meta_get(struct lk_store *s, const char *key, char **value, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	int rc;

	*value = NULL;
	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql, "SELECT value FROM %smeta WHERE key = $1", s->prefix);
	rc = lk_store_exec(s, sql.buf, 1, (const char *const[]){key}, &rows, err);
	if (rc == 0 && rows.nrows == 1 && !LK_ROW(&rows, 0)[0].null)
		*value = lk_xstrdup(LK_ROW(&rows, 0)[0].p);
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_meta_put(struct lk_store *s, const char *key, const char *value, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char now[24];
	int rc;

	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	if (value)
		lk_buf_addf(&sql,
			    "INSERT INTO %smeta (key, value, updated_ms) VALUES ($1, $2, $3)"
			    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
			    " updated_ms = excluded.updated_ms",
			    s->prefix);
	else
		lk_buf_addf(&sql, "DELETE FROM %smeta WHERE key = $1", s->prefix);
	rc = lk_store_exec(s, sql.buf, value ? 3 : 1, (const char *const[]){key, value, now}, NULL,
			   err);
	lk_buf_release(&sql);
	return rc;
}
