/* deployment.c - this deployment's id, kept in the state store (store.h). */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "store"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"
#include "core/uuid7.h"

/* The stored id into out ("" when none yet). */
static int stored(struct lk_store *s, char *out, size_t size, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	int rc;

	out[0] = '\0';
	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql, "SELECT value FROM %smeta WHERE key = 'deployment'", s->prefix);
	rc = lk_store_exec(s, sql.buf, 0, NULL, &rows, err);
	if (rc == 0 && rows.nrows == 1 && LK_ROW(&rows, 0)[0].p)
		(void)snprintf(out, size, "%s", LK_ROW(&rows, 0)[0].p);
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

/* Records id (replace: over another one; else only when none is stored). */
static int record(struct lk_store *s, const char *id, bool replace, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char now[24];
	const char *p[2] = {id, now};
	int rc;

	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(&sql,
		    "INSERT INTO %smeta (key, value, updated_ms) VALUES ('deployment', $1, $2)"
		    " ON CONFLICT (key) DO %s",
		    s->prefix,
		    replace ? "UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms"
			    : "NOTHING");
	rc = lk_store_exec(s, sql.buf, 2, p, NULL, err);
	lk_buf_release(&sql);
	return rc;
}

/* A new id: "d-" and the 12 random hex digits that end a UUIDv7. */
static void make_id(char out[LK_DEPLOYMENT_MAX + 1])
{
	char u[37];

	lk_uuid7(u);
	(void)snprintf(out, LK_DEPLOYMENT_MAX + 1, "d-%s", u + 24);
}

int lk_store_deployment(struct lk_store *s, const char **out, struct lk_err *err)
{
	char have[LK_DEPLOYMENT_MAX + 1], id[LK_DEPLOYMENT_MAX + 1];

	*out = s->deployment;
	if (s->deployment[0])
		return 0;
	if (stored(s, have, sizeof(have), err) < 0)
		return lk_err_prefix(err, "read this deployment's id from the state store");
	if (s->named[0] && strcmp(have, s->named) != 0) {
		if (record(s, s->named, true, err) < 0)
			return lk_err_prefix(err, "record this deployment's id");
		if (have[0])
			lk_log_warn(
				"the config names this deployment '%s'; the state store knew it "
				"as '%s': consumers and positions of '%s' are no longer this "
				"deployment's (`lockstep status` lists them as orphans)",
				s->named, have, have);
		memcpy(have, s->named, sizeof(have));
	} else if (!have[0]) {
		make_id(id);
		/* Two processes starting at once: the first id recorded wins. */
		if (record(s, id, false, err) < 0 || stored(s, have, sizeof(have), err) < 0)
			return lk_err_prefix(err, "record this deployment's id");
		if (strcmp(have, id) == 0)
			lk_log_info("this deployment is '%s' (kept in the state store; the config "
				    "key `deployment` names it explicitly)",
				    id);
	}
	if (!have[0])
		return lk_err_set(err, LK_ERR_INTERNAL, "the state store holds no deployment id");
	memcpy(s->deployment, have, sizeof(s->deployment));
	return 0;
}

int lk_store_ident(struct lk_store *s, const char *job, char out[LK_IDENT_MAX], struct lk_err *err)
{
	const char *dep;

	out[0] = '\0';
	if (lk_store_deployment(s, &dep, err) < 0)
		return -1;
	(void)snprintf(out, LK_IDENT_MAX, "%s@%s", job, dep);
	return 0;
}

char **lk_store_idents(const struct lk_config *cfg, const char *dep, int *n)
{
	char **v = lk_xcalloc((size_t)cfg->njobs + 1, sizeof(*v));

	*n = 0;
	for (int i = 0; i < cfg->njobs; i++) {
		const struct lk_job *j = &cfg->jobs[i];
		struct lk_buf b = LK_BUF_INIT;

		if (j->kind != LK_JOB_SYNC || j->mode != LK_MODE_REALTIME)
			continue;
		lk_buf_addf(&b, "%s@%s", j->name, dep);
		v[(*n)++] = lk_buf_detach(&b, NULL);
	}
	return v;
}

void lk_store_idents_free(char **v, int n)
{
	for (int i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}
