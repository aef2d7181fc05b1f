/*
 * usage.c - the per-day usage counters (SPEC §6 /api/usage): runs, rows and statements
 * per job and database, added to the state store's usage_daily as runs go.
 */
#include "core/buf.h"
#include "core/units.h"
#include "store_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void lk_usage_day(int64_t wall_ms, char out[11])
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	(void)gmtime_r(&t, &tm);
	(void)snprintf(out, 11, "%04d-%02d-%02d", (tm.tm_year + 1900) % 10000,
		       (tm.tm_mon + 1) % 100, tm.tm_mday % 100);
}

int lk_store_usage_add(struct lk_store *s, const char *job, const struct lk_usage *u, int n,
		       struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char day[11], runs[24], rows[24], queries[24];
	const char *p[6] = {day, job, NULL, runs, rows, queries};
	int rc = 0;

	lk_usage_day(lk_wall_ms(), day);
	lk_buf_addf(&sql,
		    "INSERT INTO %susage_daily (day, job, db, runs, rows, queries)"
		    " VALUES (%s, $2, $3, $4, $5, $6) ON CONFLICT (day, job, db) DO UPDATE SET"
		    " runs = %susage_daily.runs + excluded.runs,"
		    " rows = %susage_daily.rows + excluded.rows,"
		    " queries = %susage_daily.queries + excluded.queries",
		    s->prefix, s->kind == LK_DB_POSTGRES ? "$1::date" : "$1", s->prefix, s->prefix,
		    s->prefix);
	if (s->db.ops->begin(s->db.conn, err) < 0) {
		lk_buf_release(&sql);
		return -1;
	}
	for (int i = 0; i < n && rc == 0; i++) {
		if (u[i].runs == 0 && u[i].rows == 0 && u[i].queries == 0)
			continue;
		p[2] = u[i].db ? u[i].db : "";
		(void)snprintf(runs, sizeof(runs), "%lld", (long long)u[i].runs);
		(void)snprintf(rows, sizeof(rows), "%lld", (long long)u[i].rows);
		(void)snprintf(queries, sizeof(queries), "%lld", (long long)u[i].queries);
		rc = lk_store_exec(s, sql.buf, 6, p, NULL, err);
	}
	lk_buf_release(&sql);
	if (rc == 0)
		rc = s->db.ops->commit(s->db.conn, err);
	if (rc < 0)
		s->db.ops->rollback(s->db.conn);
	return rc;
}

int lk_store_usage(struct lk_store *s, int days, struct lk_rows *out, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	const char *day = s->kind == LK_DB_POSTGRES ? "day::text" : "day";
	const char *from_p = s->kind == LK_DB_POSTGRES ? "$1::date" : "$1";
	char from[11];
	const char *p[1] = {from};
	int rc;

	lk_usage_day(lk_wall_ms() - (int64_t)(days - 1) * 86400000, from);
	lk_buf_addf(&sql,
		    "SELECT 0 AS part, %s AS d, job, db, runs, rows, queries FROM %susage_daily"
		    " WHERE day >= %s"
		    " UNION ALL SELECT 1, %s, '', db, sum(runs), sum(rows), sum(queries)"
		    " FROM %susage_daily WHERE day >= %s AND db <> '' GROUP BY day, db"
		    " ORDER BY 1, 2 DESC, 3, 4",
		    day, s->prefix, from_p, day, s->prefix, from_p);
	rc = lk_store_exec(s, sql.buf, 1, p, out, err);
	lk_buf_release(&sql);
	return rc;
}
