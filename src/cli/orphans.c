/* orphans.c - the config's orphaned change-capture consumers (orphans.h). */
#include "orphans.h"

#include "connector/cdc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether job j's source table was already seen in an earlier real-time job. */
static bool seen_before(const struct lk_config *cfg, int j)
{
	const struct lk_job *a = &cfg->jobs[j];

	for (int i = 0; i < j; i++) {
		const struct lk_job *b = &cfg->jobs[i];

		if (b->kind == LK_JOB_SYNC && b->mode == LK_MODE_REALTIME &&
		    b->source.db == a->source.db &&
		    strcmp(b->source.table.name, a->source.table.name) == 0 &&
		    (b->source.table.schema == a->source.table.schema ||
		     (b->source.table.schema && a->source.table.schema &&
		      strcmp(b->source.table.schema, a->source.table.schema) == 0)))
			return true;
	}
	return false;
}

static void report(const struct lk_rows *out, const char *db, const char *table, lk_orphan_cb cb,
		   void *arg)
{
	for (int r = 0; r < out->nrows; r++) {
		const struct lk_value *v = LK_ROW(out, r);
		struct lk_orphan o = {.db = db, .table = table, .name = v[LK_ORPHAN_NAME].p};
		const char *at = strrchr(o.name, '@');
		size_t n = at ? (size_t)(at - o.name) : strlen(o.name);

		(void)snprintf(o.job, sizeof(o.job), "%.*s", (int)n, o.name);
		(void)snprintf(o.deployment, sizeof(o.deployment), "%s", at ? at + 1 : "");
		o.held_s = v[LK_ORPHAN_HELD_S].null ? -1 : atof(v[LK_ORPHAN_HELD_S].p);
		o.idle_s = v[LK_ORPHAN_IDLE_S].null ? 0 : atof(v[LK_ORPHAN_IDLE_S].p);
		cb(arg, &o);
	}
}

/* The orphans of job j's source table. */
static int one_table(struct lk_cli *cli, const struct lk_job *job, char **keep, int nkeep,
		     bool remove, lk_orphan_cb cb, void *arg, struct lk_err *err)
{
	const struct lk_retry_conf once = {1, 0, 0, 1.0};
	const struct lk_dbconf *conf = &cli->cfg->dbs[job->source.db];
	struct lk_cdc_orphans_req q = {&job->source.table, (const char *const *)keep, nkeep, remove,
				       0};
	const struct lk_cdc_ops *cdc;
	struct lk_rows out;
	struct lk_db src = {0};
	char table[300];
	int rc = -1;

	lk_tref_format(&job->source.table, table, sizeof(table));
	if (lk_db_open(&src, conf, &once, NULL, err) < 0)
		return -1;
	lk_rows_init(&out, LK_ORPHAN_NCOLS);
	cdc = lk_cdc_for(src.ops);
	if (cdc && cdc->orphans && cdc->orphans(src.conn, &q, &out, err) == 0) {
		report(&out, conf->name, table, cb, arg);
		rc = 0;
	} else if (!cdc || !cdc->orphans) {
		rc = 0;
	}
	lk_rows_release(&out);
	lk_db_close(&src);
	if (rc < 0)
		lk_err_prefix(err, "consumers of %s in database '%s'", table, conf->name);
	return rc;
}

int lk_cli_orphans(struct lk_cli *cli, struct lk_store *store, bool remove, lk_orphan_cb cb,
		   void *arg, struct lk_err *err)
{
	const struct lk_config *cfg = cli->cfg;
	const char *dep;
	struct lk_err first = LK_ERR_INIT;
	char **keep;
	int nkeep, rc = 0;

	if (lk_store_deployment(store, &dep, err) < 0)
		return -1;
	keep = lk_store_idents(cfg, dep, &nkeep);
	for (int i = 0; i < cfg->njobs; i++) {
		const struct lk_job *j = &cfg->jobs[i];

		if (j->kind != LK_JOB_SYNC || j->mode != LK_MODE_REALTIME || seen_before(cfg, i))
			continue;
		if (one_table(cli, j, keep, nkeep, remove, cb, arg, err) < 0 && rc == 0) {
			first = *err;
			rc = -1;
		}
		lk_err_clear(err);
	}
	lk_store_idents_free(keep, nkeep);
	if (rc < 0)
		*err = first;
	return rc;
}

void lk_orphan_describe(const struct lk_orphan *o, char *out, size_t size)
{
	char held[64] = "holds no entries back", whose[96];

	if (o->held_s >= 0)
		(void)snprintf(held, sizeof(held), "holds entries back for %.0f s", o->held_s);
	if (o->deployment[0])
		(void)snprintf(whose, sizeof(whose), "deployment '%s'", o->deployment);
	else
		(void)snprintf(whose, sizeof(whose), "an older lockstep (no deployment)");
	(void)snprintf(out, size,
		       "consumer '%s' of %s in database '%s': job %s of %s, %s, last advanced "
		       "%.0f s ago",
		       o->name, o->table, o->db, o->job, whose, held, o->idle_s);
}
