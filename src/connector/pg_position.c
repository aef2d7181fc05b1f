/*
 * pg_position.c - the fenced position table lockstep_sync.position in a PostgreSQL target:
 * one row per (job, deployment) (docs/ARCHITECTURE.md, "Positions"). A job's key is
 * "JOB@DEPLOYMENT"; a bare "JOB" is the form older versions wrote (deployment ''), used
 * only when the table keeps its older shape (primary key job alone).
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "postgres"
#include "core/log.h"

#define POS_CREATE                                                                                 \
	"CREATE SCHEMA IF NOT EXISTS lockstep_sync;"                                               \
	" CREATE TABLE IF NOT EXISTS lockstep_sync.position (job text NOT NULL,"                   \
	" deployment text NOT NULL DEFAULT '', epoch bigint NOT NULL, pos text NOT NULL,"          \
	" updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, deployment))"

/* An older table (primary key job alone) gets the deployment column, its rows ''. A table
 * that is not ours is refused before the lock, which would wait for other jobs' batches. */
#define POS_UPGRADE                                                                                \
	"DO $lockstep$ DECLARE k name; BEGIN"                                                      \
	" IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid ="                            \
	"  'lockstep_sync.position'::regclass AND pg_catalog.pg_has_role(relowner, 'USAGE')) THEN" \
	"  RAISE insufficient_privilege USING MESSAGE = 'not the owner of "                        \
	"lockstep_sync.position';"                                                                 \
	" END IF;"                                                                                 \
	" LOCK TABLE lockstep_sync.position IN ACCESS EXCLUSIVE MODE;"                             \
	" IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid ="                   \
	"  'lockstep_sync.position'::regclass AND attname = 'deployment' AND NOT attisdropped)"    \
	" THEN"                                                                                    \
	"  ALTER TABLE lockstep_sync.position ADD COLUMN deployment text NOT NULL DEFAULT '';"     \
	"  SELECT conname INTO k FROM pg_catalog.pg_constraint WHERE conrelid ="                   \
	"   'lockstep_sync.position'::regclass AND contype = 'p';"                                 \
	"  IF k IS NOT NULL THEN"                                                                  \
	"   EXECUTE pg_catalog.format('ALTER TABLE lockstep_sync.position DROP CONSTRAINT %I', "   \
	"k);"                                                                                      \
	"  END IF;"                                                                                \
	"  ALTER TABLE lockstep_sync.position ADD PRIMARY KEY (job, deployment);"                  \
	" END IF; END $lockstep$"

/* A key "JOB@DEP" into job (NUL-terminated copy) and *dep; false for a bare "JOB". */
static bool split_key(const char *key, char *job, size_t size, const char **dep)
{
	const char *at = strrchr(key, '@');
	size_t n = at ? (size_t)(at - key) : strlen(key);

	if (n >= size)
		n = size - 1;
	memcpy(job, key, n);
	job[n] = '\0';
	*dep = at ? at + 1 : "";
	return at != NULL;
}

/* 1 when the table has the deployment column, 0 when not, -1 on error. */
static int has_deployment(struct lk_conn *c, struct lk_err *err)
{
	PGresult *res = PQexec(lk_pg_q(c), "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute"
					   " WHERE attrelid = 'lockstep_sync.position'::regclass"
					   " AND attname = 'deployment' AND NOT attisdropped)");
	int rc;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		rc = lk_pg_err(err, c, res, "read the shape of lockstep_sync.position");
	else
		rc = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return rc;
}

/* Upgrades an older table in place; 1 when it must keep its shape (we do not own it). */
static int upgrade(struct lk_conn *c, struct lk_err *err)
{
	int rc = has_deployment(c, err);
	const char *state;
	PGresult *res;

	if (rc != 0)
		return rc < 0 ? -1 : 0;
	res = PQexec(lk_pg_q(c), POS_UPGRADE);
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res);
		lk_log_info(
			"database '%s': lockstep_sync.position now keeps a position per job and "
			"deployment (existing rows go to the first deployment that finds them)",
			c->dbname);
		return 0;
	}
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (state && strcmp(state, "42501") == 0) {
		PQclear(res);
		lk_log_warn(
			"database '%s': lockstep_sync.position is not ours to alter, so it keeps "
			"one position per job name: two deployments with a job of the same name "
			"must not write into this database (let its owner run lockstep once, or "
			"see docs/operations.md, \"Several deployments\")",
			c->dbname);
		return 1;
	}
	rc = lk_pg_err(err, c, res, "add a deployment column to lockstep_sync.position");
	PQclear(res);
	return rc;
}

int lk_pg_position_setup(struct lk_conn *c, struct lk_err *err)
{
	PGresult *res =
		PQexec(lk_pg_q(c), "SELECT to_regclass('lockstep_sync.position') IS NOT NULL");
	bool exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		      PQgetvalue(res, 0, 0)[0] == 't';
	int rc = 0;

	PQclear(res);
	/* An admin may have created it for a role without CREATE: then just use it. */
	if (exists)
		return upgrade(c, err);
	res = PQexec(lk_pg_q(c), POS_CREATE);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* Two first runs racing on CREATE ... IF NOT EXISTS: the loser retries once. */
		if (state && strcmp(state, "23505") == 0) {
			PQclear(res);
			res = PQexec(lk_pg_q(c), POS_CREATE);
			if (PQresultStatus(res) == PGRES_COMMAND_OK)
				goto out;
		}
		rc = lk_pg_err(err, c, res, "create lockstep_sync.position in the target");
	}
out:
	PQclear(res);
	return rc;
}

/*
 * Our row; else the row an older lockstep wrote for the job (deployment ''), which becomes
 * ours here: the first deployment that finds it resumes from it, the others start their own.
 */
static const char *const get_sql =
	"WITH mine AS (SELECT epoch, pos FROM lockstep_sync.position"
	"  WHERE job = $1 AND deployment = $2),"
	" adopted AS (UPDATE lockstep_sync.position SET deployment = $2, updated_at = now()"
	"  WHERE job = $1 AND deployment = '' AND $2 <> '' AND NOT EXISTS (SELECT 1 FROM mine)"
	"  RETURNING epoch, pos)"
	" SELECT epoch, pos, false FROM mine UNION ALL SELECT epoch, pos, true FROM adopted";

int lk_pg_position_get(struct lk_conn *c, const char *job, int64_t *epoch, char **pos,
		       struct lk_err *err)
{
	char name[128];
	const char *dep;
	bool qualified = split_key(job, name, sizeof(name), &dep);
	const char *params[2] = {qualified ? name : job, dep};
	PGresult *res =
		qualified ? PQexecParams(lk_pg_q(c), get_sql, 2, NULL, params, NULL, NULL, 0)
			  : PQexecParams(lk_pg_q(c),
					 "SELECT epoch, pos, false FROM lockstep_sync.position"
					 " WHERE job = $1",
					 1, NULL, params, NULL, NULL, 0);

	*epoch = 0;
	*pos = NULL;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "read the job's position");
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1) {
		*epoch = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*pos = strdup(PQgetvalue(res, 0, 1));
		if (PQgetvalue(res, 0, 2)[0] == 't')
			lk_log_info("job %s: deployment '%s' takes over the position an older "
				    "lockstep wrote in database '%s'",
				    name, dep, c->dbname);
	}
	PQclear(res);
	return 0;
}

int lk_pg_position_put(struct lk_conn *c, const char *job, int64_t epoch, const char *pos,
		       struct lk_err *err)
{
	static const char *const sql =
		"INSERT INTO lockstep_sync.position AS p (job, deployment, epoch, pos, updated_at)"
		" VALUES ($1, $4, $2, $3, now()) ON CONFLICT (job, deployment) DO UPDATE"
		" SET epoch = EXCLUDED.epoch, pos = EXCLUDED.pos, updated_at = now()"
		" WHERE p.epoch <= EXCLUDED.epoch";
	static const char *const older =
		"INSERT INTO lockstep_sync.position AS p (job, epoch, pos, updated_at)"
		" VALUES ($1, $2, $3, now()) ON CONFLICT (job) DO UPDATE"
		" SET epoch = EXCLUDED.epoch, pos = EXCLUDED.pos, updated_at = now()"
		" WHERE p.epoch <= EXCLUDED.epoch";
	char ebuf[24], name[128];
	const char *dep;
	bool qualified = split_key(job, name, sizeof(name), &dep);
	const char *params[4] = {name, ebuf, pos, dep};
	int64_t n = 0;

	(void)snprintf(ebuf, sizeof(ebuf), "%lld", (long long)epoch);
	if (lk_pg_cmd(c, qualified ? sql : older, qualified ? 4 : 3, params, &n, err) < 0)
		return -1;
	if (n != 1)
		return lk_err_set(err, LK_ERR_FENCED,
				  "position of job '%s'%s%s%s is held by a newer epoch than %lld",
				  name, qualified ? " (deployment '" : "", dep,
				  qualified ? "')" : "", (long long)epoch);
	return 0;
}
