/*
 * sqlite_position.c - the fenced position table lockstep_sync_position in an SQLite target:
 * one row per (job, deployment) (docs/ARCHITECTURE.md, "Positions"). A job's key is
 * "JOB@DEPLOYMENT"; a bare "JOB" means deployment '' (the rows older versions wrote).
 */
#include "connector.h"
#include "sqlite_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "sqlite"
#include "core/log.h"

#define POSITION_TABLE "main.lockstep_sync_position"
#define POSITION_COLS                                                                              \
	" (job TEXT NOT NULL, deployment TEXT NOT NULL DEFAULT '', epoch INTEGER NOT NULL,"        \
	" pos TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (job, deployment))"

/* An older table (primary key job alone) is rebuilt with the deployment column, rows ''. */
static const char upgrade_sql[] =
	"SAVEPOINT lk_position;"
	"CREATE TABLE main.lockstep_sync_position_new" POSITION_COLS ";"
	"INSERT INTO main.lockstep_sync_position_new (job, deployment, epoch, pos, updated_at)"
	" SELECT job, '', epoch, pos, updated_at FROM " POSITION_TABLE ";"
	"DROP TABLE " POSITION_TABLE ";"
	"ALTER TABLE main.lockstep_sync_position_new RENAME TO lockstep_sync_position;"
	"RELEASE lk_position";

/* A key "JOB@DEP" into job (NUL-terminated copy) and *dep ("" for a bare "JOB"). */
static void split_key(const char *key, char *job, size_t size, const char **dep)
{
	const char *at = strrchr(key, '@');
	size_t n = at ? (size_t)(at - key) : strlen(key);

	if (n >= size)
		n = size - 1;
	memcpy(job, key, n);
	job[n] = '\0';
	*dep = at ? at + 1 : "";
}

/* 1 when the table exists and lacks the deployment column, 0 when not, -1 on error. */
static int is_older(struct lk_conn *c, struct lk_err *err)
{
	static const char sql[] = "SELECT coalesce(sum(name = 'deployment'), 0), count(*)"
				  " FROM pragma_table_info('lockstep_sync_position', 'main')";
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL), older = 0;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		older = sqlite3_column_int(st, 1) > 0 && sqlite3_column_int(st, 0) == 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return lk_sqlite_fail(c, rc, err, "read the shape of the sync position table");
	return older;
}

int lk_sqlite_position_setup(struct lk_conn *c, struct lk_err *err)
{
	static const char sql[] = "CREATE TABLE IF NOT EXISTS " POSITION_TABLE POSITION_COLS;
	int older = is_older(c, err), rc;

	if (older < 0)
		return -1;
	if (older) {
		lk_sqlite_cache_clear(c); /* statements on the older table */
		rc = sqlite3_exec(c->db, upgrade_sql, NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			lk_sqlite_fail(c, rc, err,
				       "add a deployment column to the sync position "
				       "table");
			(void)sqlite3_exec(c->db, "ROLLBACK TO lk_position; RELEASE lk_position",
					   NULL, NULL, NULL);
			return -1;
		}
		lk_log_info("database '%s': the sync position table now keeps a position per job "
			    "and deployment",
			    c->label);
		return 0;
	}
	rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return lk_sqlite_fail(c, rc, err, "create the sync position table");
	return 0;
}

/* A row an older lockstep wrote for the job (deployment '') becomes ours when we have none. */
static int adopt(struct lk_conn *c, const char *job, const char *dep, struct lk_err *err)
{
	static const char sql[] =
		"UPDATE " POSITION_TABLE " SET deployment = ?2 WHERE job = ?1 AND deployment = ''"
		" AND NOT EXISTS (SELECT 1 FROM " POSITION_TABLE
		" WHERE job = ?1 AND deployment = ?2)";
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, dep, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return lk_sqlite_fail(c, rc, err, "take over the position of job '%s'", job);
	if (sqlite3_changes64(c->db) > 0)
		lk_log_info("job %s: deployment '%s' takes over the position an older lockstep "
			    "wrote in database '%s'",
			    job, dep, c->label);
	return 0;
}

/* Whether the table exists (a target that never had a batch has none: "no position"). */
static bool table_exists(struct lk_conn *c)
{
	static const char sql[] = "SELECT 1 FROM main.sqlite_master"
				  " WHERE type = 'table' AND name = 'lockstep_sync_position'";
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW;
}

int lk_sqlite_position_get(struct lk_conn *c, const char *job, int64_t *epoch, char **pos,
			   struct lk_err *err)
{
	static const char sql[] =
		"SELECT epoch, pos FROM " POSITION_TABLE " WHERE job = ?1 AND deployment = ?2";
	sqlite3_stmt *st = NULL;
	char name[128];
	const char *dep;
	int rc;

	*epoch = 0;
	*pos = NULL;
	if (!table_exists(c))
		return 0;
	split_key(job, name, sizeof(name), &dep);
	if (dep[0] && is_older(c, err) == 0 && adopt(c, name, dep, err) < 0)
		return -1;
	rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, dep, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*epoch = sqlite3_column_int64(st, 0);
		*pos = lk_xstrdup((const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return lk_sqlite_fail(c, rc, err, "read the position of job '%s'", name);
	return 0;
}

int lk_sqlite_position_put(struct lk_conn *c, const char *job, int64_t epoch, const char *pos,
			   struct lk_err *err)
{
	static const char sql[] =
		"INSERT INTO " POSITION_TABLE " (job, deployment, epoch, pos, updated_at)"
		" VALUES (?1, ?4, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
		" ON CONFLICT (job, deployment) DO UPDATE SET epoch = excluded.epoch,"
		" pos = excluded.pos, updated_at = excluded.updated_at"
		" WHERE lockstep_sync_position.epoch <= excluded.epoch";
	struct lk_sqlite_cached *e;
	char name[128];
	const char *dep;
	int rc;

	split_key(job, name, sizeof(name), &dep);
	if (lk_sqlite_cache_get(c, sql, &e, err) < 0)
		return lk_err_prefix(err, "write the position of job '%s'", name);
	rc = sqlite3_bind_text(e->stmt, 1, name, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(e->stmt, 2, epoch);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(e->stmt, 3, pos, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(e->stmt, 4, dep, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(e->stmt);
	if (rc != SQLITE_DONE)
		lk_sqlite_fail(c, rc, err, "write the position of job '%s'", name);
	sqlite3_reset(e->stmt);
	sqlite3_clear_bindings(e->stmt);
	if (rc != SQLITE_DONE)
		return -1;
	if (sqlite3_changes64(c->db) == 0)
		return lk_err_set(err, LK_ERR_FENCED,
				  "position of job '%s'%s%s%s is held by a "
				  "newer epoch",
				  name, dep[0] ? " (deployment '" : "", dep, dep[0] ? "')" : "");
	return 0;
}
