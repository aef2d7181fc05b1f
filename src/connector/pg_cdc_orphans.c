/*
 * pg_cdc_orphans.c - PostgreSQL's change-capture registry across deployments (cdc.h): a
 * consumer row an older lockstep named after the job alone is taken over by the first
 * deployment that resumes the job, and the consumers of a table that belong to none of a
 * config's jobs are listed or removed.
 */
#include "cdc.h"
#include "core/buf.h"
#include "pg_int.h"

#include <stdio.h>
#include <string.h>

/* The table's oid from a reference ($1 schema, $2 name); NULL when it does not exist. */
#define REL_OID                                                                                    \
	"pg_catalog.to_regclass(pg_catalog.quote_ident($1) || '.' || "                             \
	"pg_catalog.quote_ident($2))::oid"

/* Whether lockstep's registry exists in this database. */
static int installed(struct lk_conn *c, bool *yes, struct lk_err *err)
{
	PGresult *res = PQexec(lk_pg_q(c), "SELECT pg_catalog.to_regclass("
					   "'lockstep_cdc.consumers') IS NOT NULL");

	*yes = false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		lk_pg_err(err, c, res, "look for lockstep's change-capture registry");
		PQclear(res);
		return -1;
	}
	*yes = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return 0;
}

int lk_pg_cdc_adopt(struct lk_conn *c, const char *older, const char *ident,
		    const struct lk_tref *t, bool *adopted, struct lk_err *err)
{
	const char *params[] = {t->schema ? t->schema : "public", t->name, older, ident};
	int64_t n = 0;
	bool yes;

	*adopted = false;
	if (installed(c, &yes, err) < 0)
		return -1;
	if (!yes)
		return 0;
	if (lk_pg_cmd(c,
		      "UPDATE lockstep_cdc.consumers SET job = $4, updated_at = now()"
		      " WHERE job = $3 AND relid = " REL_OID " AND NOT EXISTS"
		      " (SELECT 1 FROM lockstep_cdc.consumers WHERE job = $4)",
		      4, params, &n, err) < 0)
		return lk_err_prefix(err, "take over consumer '%s' as '%s'", older, ident);
	*adopted = n > 0;
	return 0;
}

/* The consumers of the table not in keep ($3, a JSON array), with what they hold back: the
 * age of the first entry they have not applied, found along the changelog's (xid, seq)
 * index, so an orphan with a long backlog costs one index probe, not a scan of it. */
#define ORPHANS                                                                                    \
	"WITH o AS (SELECT k.job,"                                                                 \
	"  round(extract(epoch FROM now() - p.oldest)::numeric, 1) AS held,"                       \
	"  round(extract(epoch FROM now() - k.updated_at)::numeric, 1) AS idle"                    \
	" FROM lockstep_cdc.consumers k, LATERAL (SELECT (SELECT l.at"                             \
	"  FROM lockstep_cdc.changelog l WHERE l.relid = k.relid"                                  \
	"  AND l.xid >= GREATEST(k.horizon, COALESCE(k.xid, k.horizon))"                           \
	"  ORDER BY l.xid, l.seq LIMIT 1) AS oldest) p"                                            \
	" WHERE k.relid = " REL_OID " AND k.job <> ALL (SELECT"                                    \
	"  pg_catalog.jsonb_array_elements_text($3::jsonb)))"

static const char *const list_sql =
	ORPHANS " SELECT job, held::text, idle::text FROM o ORDER BY job";
static const char *const remove_sql =
	ORPHANS ", d AS (DELETE FROM lockstep_cdc.consumers x USING o WHERE x.job = o.job"
		" AND ($4::float8 = 0 OR (o.held >= $4::float8 AND o.idle >= $4::float8))"
		" RETURNING o.job, o.held, o.idle)"
		" SELECT job, held::text, idle::text FROM d ORDER BY job";

/* Appends the rows of res (LK_ORPHAN_NCOLS text columns, NULL kept) to out. */
static void add_rows(const PGresult *res, struct lk_rows *out)
{
	if (out->nrows == 0)
		lk_rows_set_ncols(out, LK_ORPHAN_NCOLS);
	for (int r = 0; r < PQntuples(res); r++) {
		lk_rows_add(out);
		for (int i = 0; i < LK_ORPHAN_NCOLS; i++) {
			if (!PQgetisnull(res, r, i))
				lk_rows_set(out, out->nrows - 1, i, PQgetvalue(res, r, i),
					    (size_t)PQgetlength(res, r, i));
		}
	}
}

int lk_pg_cdc_orphans(struct lk_conn *c, const struct lk_cdc_orphans_req *q, struct lk_rows *out,
		      struct lk_err *err)
{
	struct lk_buf keep = LK_BUF_INIT;
	char held[32];
	const char *params[4] = {q->table->schema ? q->table->schema : "public", q->table->name,
				 NULL, held};
	PGresult *res;
	bool yes;
	int rc = 0;

	if (installed(c, &yes, err) < 0)
		return -1;
	if (!yes)
		return 0;
	lk_buf_addch(&keep, '[');
	for (int i = 0; i < q->nkeep; i++) {
		if (i)
			lk_buf_addch(&keep, ',');
		lk_buf_add_json_str(&keep, q->keep[i], strlen(q->keep[i]));
	}
	lk_buf_addch(&keep, ']');
	params[2] = keep.buf;
	(void)snprintf(held, sizeof(held), "%.3f", q->min_held_s);
	res = PQexecParams(lk_pg_q(c), q->remove ? remove_sql : list_sql, q->remove ? 4 : 3, NULL,
			   params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = lk_pg_err(err, c, res,
			       q->remove ? "remove orphaned consumers" : "list orphaned consumers");
	else
		add_rows(res, out);
	PQclear(res);
	lk_buf_release(&keep);
	return rc;
}
