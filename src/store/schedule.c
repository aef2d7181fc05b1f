/* schedule.c - next fire times of scheduled jobs, the daemon's heartbeat, retention. */
#include "core/buf.h"
#include "core/units.h"
#include "store_int.h"

#include <stdio.h>
#include <string.h>

int lk_store_schedule_get(struct lk_store *s, const char *job, const char *spec, int64_t *next_ms,
			  struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	const char *p[2] = {job, spec};
	int rc;

	*next_ms = 0;
	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql, "SELECT next_ms FROM %sschedules WHERE job = $1 AND spec = $2",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 2, p, &rows, err);
	if (rc == 0 && rows.nrows == 1 && LK_ROW(&rows, 0)[0].p &&
	    lk_int64_parse(LK_ROW(&rows, 0)[0].p, next_ms) < 0)
		*next_ms = 0;
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_schedule_put(struct lk_store *s, const char *job, const char *spec, int64_t next_ms,
			  struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char next[24], now[24];
	const char *p[4] = {job, spec, next, now};
	int rc;

	(void)snprintf(next, sizeof(next), "%lld", (long long)next_ms);
	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(
		&sql,
		"INSERT INTO %sschedules (job, spec, next_ms, updated_ms) VALUES ($1, $2, $3, $4)"
		" ON CONFLICT (job) DO UPDATE SET spec = $2, next_ms = $3, updated_ms = $4",
		s->prefix);
	rc = lk_store_exec(s, sql.buf, 4, p, NULL, err);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_prune(struct lk_store *s, int64_t before_ms, int64_t *runs, int64_t *errors,
		   struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char before[24];
	const char *p[1] = {before};
	int64_t nruns = 0, nerrors = 0;
	int rc;

	(void)snprintf(before, sizeof(before), "%lld", (long long)before_ms);
	lk_buf_addf(&sql,
		    "DELETE FROM %sruns WHERE finished_ms IS NOT NULL AND finished_ms < $1"
		    " AND status <> 'running'",
		    s->prefix);
	rc = s->db.ops->exec(s->db.conn, sql.buf, 1, p, NULL, &nruns, err);
	lk_buf_reset(&sql);
	lk_buf_addf(&sql, "DELETE FROM %serrors WHERE resolved_ms IS NOT NULL AND resolved_ms < $1",
		    s->prefix);
	if (rc == 0)
		rc = s->db.ops->exec(s->db.conn, sql.buf, 1, p, NULL, &nerrors, err);
	lk_buf_release(&sql);
	if (runs)
		*runs = nruns;
	if (errors)
		*errors = nerrors;
	return rc;
}

int lk_store_instance_report(struct lk_store *s, const char *name, const char *health,
			     const char *detail_json, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char now[24];
	const char *p[4] = {name, now, health, detail_json};
	int rc;

	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(&sql,
		    "UPDATE %sinstances SET seen_ms = $2, health = $3, detail = $4 WHERE name = $1",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 4, p, NULL, err);
	lk_buf_release(&sql);
	return rc;
}
