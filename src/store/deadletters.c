/* deadletters.c - the dead-letter queue's rows in the state store (table `errors`). */
#include "deadletters.h"

#include "core/buf.h"
#include "core/units.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every column, in LK_DLCOL_ order; `row` replaced by NULL in lists. */
#define DL_COLS_HEAD "id, job, \"key\", change, op, sqlstate, message, "
#define DL_COLS_TAIL ", attempts, created_ms, resolved_ms"

static int exec_n(struct lk_store *s, const char *sql, int n, const char *const *p,
		  int64_t *affected, struct lk_err *err)
{
	return s->db.ops->exec(s->db.conn, sql, n, p, NULL, affected, err);
}

static int put_one(struct lk_store *s, const char *sql, const char *job,
		   const struct lk_dead_letter *d, const char *now, struct lk_err *err)
{
	const char *p[8] = {job, d->key, d->change, d->op, d->sqlstate, d->message, d->row, now};

	return exec_n(s, sql, 8, p, NULL, err);
}

int lk_store_dl_put(struct lk_store *s, const char *job, const struct lk_dead_letter *d, int n,
		    bool own_txn, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char now[24];
	int rc = 0;

	if (n <= 0)
		return 0;
	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(
		&sql,
		"INSERT INTO %serrors AS e (job, \"key\", change, op, sqlstate, message, \"row\","
		" attempts, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)"
		" ON CONFLICT (job, \"key\", change) DO UPDATE SET attempts = e.attempts + 1,"
		" op = excluded.op, sqlstate = excluded.sqlstate, message = excluded.message,"
		" \"row\" = excluded.\"row\", resolved_ms = NULL",
		s->prefix);
	if (own_txn && s->db.ops->begin(s->db.conn, err) < 0)
		rc = -1;
	for (int i = 0; rc == 0 && i < n; i++)
		rc = put_one(s, sql.buf, job, &d[i], now, err);
	if (own_txn && rc == 0)
		rc = s->db.ops->commit(s->db.conn, err);
	if (own_txn && rc < 0)
		s->db.ops->rollback(s->db.conn);
	lk_buf_release(&sql);
	if (rc < 0)
		lk_err_prefix(err, "cannot record dead letters of job '%s' in the state store",
			      job);
	return rc;
}

int lk_store_dl_open_keys(struct lk_store *s, const char *job, int max, struct lk_rows *keys,
			  int64_t *total, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	const char *p[1] = {job};
	int rc;

	*total = 0;
	rc = lk_store_dl_count_open(s, job, total, err);
	if (rc == 0 && *total > 0) {
		lk_buf_addf(
			&sql,
			"SELECT DISTINCT \"key\" FROM %serrors WHERE job = $1 AND resolved_ms IS "
			"NULL LIMIT %d",
			s->prefix, max);
		rc = lk_store_exec(s, sql.buf, 1, p, keys, err);
	}
	if (keys->nrows == 0)
		lk_rows_set_ncols(keys, 1);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_dl_resolve_keys(struct lk_store *s, const char *job, const char *const *keys, int n,
			     int64_t *resolved, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char now[24];
	int64_t total = 0;
	int rc = 0;

	if (n <= 0)
		goto out;
	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(&sql,
		    "UPDATE %serrors SET resolved_ms = $3 WHERE job = $1 AND \"key\" = $2"
		    " AND resolved_ms IS NULL",
		    s->prefix);
	rc = s->db.ops->begin(s->db.conn, err);
	for (int i = 0; rc == 0 && i < n; i++) {
		const char *p[3] = {job, keys[i], now};
		int64_t k = 0;

		rc = exec_n(s, sql.buf, 3, p, &k, err);
		total += k;
	}
	if (rc == 0)
		rc = s->db.ops->commit(s->db.conn, err);
	if (rc < 0)
		s->db.ops->rollback(s->db.conn);
out:
	if (resolved)
		*resolved = rc == 0 ? total : 0;
	lk_buf_release(&sql);
	return rc;
}

int lk_store_dl_list(struct lk_store *s, const char *job, bool all, int limit, struct lk_rows *out,
		     bool *more, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	const char *p[1] = {job};
	int rc;

	lk_buf_addf(&sql, "SELECT " DL_COLS_HEAD "NULL" DL_COLS_TAIL " FROM %serrors WHERE %s%s",
		    s->prefix, job ? "job = $1" : "1 = 1", all ? "" : " AND resolved_ms IS NULL");
	lk_buf_addf(&sql, " ORDER BY id LIMIT %d", limit + 1);
	lk_rows_reset(out);
	rc = lk_store_exec(s, sql.buf, job ? 1 : 0, job ? p : NULL, out, err);
	if (out->nrows == 0)
		lk_rows_set_ncols(out, LK_DLCOL_N);
	if (more)
		*more = rc == 0 && out->nrows > limit;
	if (rc == 0 && out->nrows > limit)
		out->nrows = limit;
	lk_buf_release(&sql);
	return rc;
}

int lk_store_dl_get(struct lk_store *s, int64_t id, struct lk_rows *out, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char ids[24];
	const char *p[1] = {ids};
	int rc;

	(void)snprintf(ids, sizeof(ids), "%lld", (long long)id);
	lk_buf_addf(&sql,
		    "SELECT " DL_COLS_HEAD "\"row\"" DL_COLS_TAIL " FROM %serrors WHERE id = $1",
		    s->prefix);
	lk_rows_reset(out);
	rc = lk_store_exec(s, sql.buf, 1, p, out, err);
	if (out->nrows == 0)
		lk_rows_set_ncols(out, LK_DLCOL_N);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_dl_resolve(struct lk_store *s, int64_t id, bool *was_open, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char ids[24], now[24];
	const char *p[2] = {ids, now};
	int64_t n = 0;
	int rc;

	(void)snprintf(ids, sizeof(ids), "%lld", (long long)id);
	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(&sql,
		    "UPDATE %serrors SET resolved_ms = $2 WHERE id = $1 AND resolved_ms IS NULL",
		    s->prefix);
	rc = exec_n(s, sql.buf, 2, p, &n, err);
	*was_open = rc == 0 && n > 0;
	lk_buf_release(&sql);
	return rc;
}

int lk_store_dl_failed_again(struct lk_store *s, int64_t id, const char *sqlstate,
			     const char *message, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char ids[24];
	const char *p[3] = {ids, sqlstate, message};
	int rc;

	(void)snprintf(ids, sizeof(ids), "%lld", (long long)id);
	lk_buf_addf(&sql,
		    "UPDATE %serrors SET attempts = attempts + 1, sqlstate = $2, message = $3,"
		    " resolved_ms = NULL WHERE id = $1",
		    s->prefix);
	rc = exec_n(s, sql.buf, 3, p, NULL, err);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_dl_count_open(struct lk_store *s, const char *job, int64_t *n, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	const char *p[1] = {job};
	struct lk_rows rows;
	int rc;

	*n = 0;
	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql, "SELECT count(*) FROM %serrors WHERE resolved_ms IS NULL%s", s->prefix,
		    job ? " AND job = $1" : "");
	rc = lk_store_exec(s, sql.buf, job ? 1 : 0, job ? p : NULL, &rows, err);
	if (rc == 0 && rows.nrows == 1 && lk_int64_parse(LK_ROW(&rows, 0)[0].p, n) < 0)
		*n = 0;
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

struct lk_store *lk_store_dl_borrow(const struct lk_db *db)
{
	struct lk_store *s = lk_xcalloc(1, sizeof(*s));

	s->db = *db;
	s->kind = db->conf->kind;
	s->prefix = s->kind == LK_DB_POSTGRES ? "lockstep." : "lockstep_";
	return s;
}

void lk_store_dl_unborrow(struct lk_store *s)
{
	free(s); /* the connection stays its owner's */
}
