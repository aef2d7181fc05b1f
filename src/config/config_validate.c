/*
 * config_validate.c - the checks that involve several keys: database references, the
 * target table's default, mode-specific keys, key and cursor columns within `columns`,
 * http.read_token beside http.token.
 */
#include "config_int.h"

#include <stdlib.h>
#include <string.h>

#define LK_LOG_COMPONENT "config"
#include "core/buf.h"
#include "core/log.h"

/* Sets *idx to the database that the reference node names. */
static int resolve_db(struct lk_cfgctx *c, const struct lk_ynode *ref, int *idx)
{
	const struct lk_config *cfg = c->cfg;
	const char **names;
	const char *hint;

	for (int i = 0; i < cfg->ndbs; i++) {
		if (strcmp(cfg->dbs[i].name, ref->text) == 0) {
			*idx = i;
			return 0;
		}
	}
	if (cfg->ndbs == 0)
		return lk_cfg_fail(c, ref,
				   "expected a database defined under databases, found '%s' (no "
				   "databases are defined)",
				   ref->text);
	names = lk_xcalloc((size_t)cfg->ndbs, sizeof(*names));
	for (int i = 0; i < cfg->ndbs; i++)
		names[i] = cfg->dbs[i].name;
	hint = lk_cfg_suggest(ref->text, names, cfg->ndbs);
	lk_cfg_fail(c, ref, "expected a database defined under databases, found '%s'%s%s%s",
		    ref->text, hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
	free(names);
	return -1;
}

static void copy_tref(struct lk_tref *dst, const struct lk_tref *src)
{
	dst->schema = src->schema ? lk_xstrdup(src->schema) : NULL;
	dst->name = lk_xstrdup(src->name);
}

static const char *const mode_names[] = {"snapshot", "poll", "realtime", "logical"};

/* Keys that only some modes use, and the cursor that poll needs. */
static int check_mode(struct lk_cfgctx *c, const struct lk_job *j, const struct lk_ynode *job)
{
	const struct lk_ynode *lookback = lk_ymap_get(job, "lookback");
	const struct lk_ynode *cursor = lk_ymap_get(job, "cursor");
	const struct lk_ynode *schedule = lk_ymap_get(job, "schedule");
	const struct lk_ynode *resnap = lk_ymap_get(job, "resnapshot");

	if (j->mode == LK_MODE_POLL && !j->cursor)
		return lk_cfg_fail(c, lk_ymap_get(job, "mode"),
				   "expected key 'cursor' (the monotonic column) with mode poll, "
				   "found none");
	if (j->mode != LK_MODE_POLL && lookback && lookback->type != LK_Y_NULL)
		return lk_cfg_fail(c, lookback,
				   "expected lookback only with mode poll, found it with mode "
				   "snapshot");
	if (j->mode != LK_MODE_POLL && j->cursor)
		lk_log_warn("%s:%d:%d: job %s: cursor is only used by mode poll; ignored", c->file,
			    cursor ? cursor->line : 0, cursor ? cursor->col : 0, j->name);
	if (j->mode != LK_MODE_REALTIME && resnap && resnap->type != LK_Y_NULL)
		return lk_cfg_fail(c, resnap,
				   "expected resnapshot only with mode realtime, found it with "
				   "mode %s",
				   mode_names[j->mode]);
	if (j->every_ms > 0 && j->schedule)
		return lk_cfg_fail(c, schedule,
				   "expected either every or schedule, found both (every at line "
				   "%d)",
				   lk_ymap_get(job, "every")->line);
	return 0;
}

/* The item of a name list (or the single name) equal to name, for error positions. */
static const struct lk_ynode *list_item(const struct lk_ynode *list, const char *name)
{
	if (list && list->type == LK_Y_SCALAR)
		return list;
	for (int i = 0; list && list->type == LK_Y_SEQ && i < list->nkids; i++) {
		if (strcmp(list->kids[i]->text, name) == 0)
			return list->kids[i];
	}
	return list;
}

static bool in_list(char **v, int n, const char *s)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(v[i], s) == 0)
			return true;
	}
	return false;
}

/* With `columns` given, the key columns and the cursor must be among them. */
static int check_columns(struct lk_cfgctx *c, const struct lk_job *j, const struct lk_ynode *job)
{
	const struct lk_ynode *src = lk_ymap_get(job, "source");

	if (!j->source.columns)
		return 0;
	for (int i = 0; i < j->source.nkey; i++) {
		if (!in_list(j->source.columns, j->source.ncolumns, j->source.key[i]))
			return lk_cfg_fail(c, list_item(lk_ymap_get(src, "key"), j->source.key[i]),
					   "expected key column '%s' among source.columns, found "
					   "it missing",
					   j->source.key[i]);
	}
	if (j->mode == LK_MODE_POLL && j->cursor &&
	    !in_list(j->source.columns, j->source.ncolumns, j->cursor))
		return lk_cfg_fail(c, lk_ymap_get(job, "cursor"),
				   "expected cursor column '%s' among source.columns, found it "
				   "missing",
				   j->cursor);
	return 0;
}

static const char *eff_schema(const struct lk_config *cfg, int db, const struct lk_tref *t)
{
	if (t->schema)
		return t->schema;
	return cfg->dbs[db].kind == LK_DB_POSTGRES ? "public" : "main";
}

/* A job must not write into the table it reads. */
static int check_not_self(struct lk_cfgctx *c, const struct lk_job *j, const struct lk_ynode *job)
{
	const struct lk_config *cfg = c->cfg;
	const struct lk_ynode *tgt = lk_ymap_get(job, "target");
	const struct lk_ynode *at = lk_ymap_get(tgt, "table");

	if (j->source.db != j->target.db ||
	    strcmp(j->source.table.name, j->target.table.name) != 0 ||
	    strcmp(eff_schema(cfg, j->source.db, &j->source.table),
		   eff_schema(cfg, j->target.db, &j->target.table)) != 0)
		return 0;
	return lk_cfg_fail(c, at ? at : lk_ymap_get(tgt, "db"),
			   "expected a target table other than the source table, found the same "
			   "table '%s' in database '%s'",
			   j->target.table.name, cfg->dbs[j->target.db].name);
}

/* The keys that belong to other kinds are refused, so a typo'd kind is not silently ignored. */
static int check_kind_keys(struct lk_cfgctx *c, const struct lk_job *j, const struct lk_ynode *job)
{
	static const char *const sync_only[] = {
		"source", "target",	      "mode",	    "cursor",	      "lookback",
		"batch",  "snapshot_deletes", "resnapshot", "schema_changes", "verify"};
	static const char *const sql_only[] = {"db", "sql"};
	static const char *const exec_only[] = {"command", "memory_max", "env"};
	static const char *const kinds[] = {"sync", "sql", "exec"};
	struct {
		const char *const *keys;
		size_t n;
		enum lk_job_kind kind;
	} groups[] = {{sync_only, sizeof(sync_only) / sizeof(*sync_only), LK_JOB_SYNC},
		      {sql_only, sizeof(sql_only) / sizeof(*sql_only), LK_JOB_SQL},
		      {exec_only, sizeof(exec_only) / sizeof(*exec_only), LK_JOB_EXEC}};

	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		if (groups[g].kind == j->kind)
			continue;
		for (size_t i = 0; i < groups[g].n; i++) {
			const struct lk_ynode *k = lk_ymap_key(job, groups[g].keys[i]);

			if (k)
				return lk_cfg_fail(
					c, k,
					"expected no key '%s' in a job of kind %s, found "
					"it (it belongs to kind %s)",
					groups[g].keys[i], kinds[j->kind], kinds[groups[g].kind]);
		}
	}
	if (j->kind == LK_JOB_SYNC && lk_ymap_key(job, "timeout"))
		return lk_cfg_fail(c, lk_ymap_key(job, "timeout"),
				   "expected no key 'timeout' in a job of kind sync, found it (sql "
				   "and exec jobs have a timeout)");
	return 0;
}

/* `what` must be present in the job, for its kind. */
static int need(struct lk_cfgctx *c, const struct lk_job *j, const struct lk_ynode *owner,
		bool present, const char *what, const char *kind)
{
	if (present)
		return 0;
	(void)j;
	return lk_cfg_fail(c, owner, "expected key '%s' in a job of kind %s, found none", what,
			   kind);
}

static int validate_sync(struct lk_cfgctx *c, struct lk_job *j, const struct lk_ynode *job,
			 const struct lk_ynode *owner)
{
	const struct lk_ynode *src = lk_ymap_get(job, "source");
	const struct lk_ynode *tgt = lk_ymap_get(job, "target");

	/* `source:` with nothing after it is a null node that parsing skipped: not given */
	if (src && src->type == LK_Y_NULL)
		src = NULL;
	if (tgt && tgt->type == LK_Y_NULL)
		tgt = NULL;
	if (need(c, j, owner, src != NULL, "source", "sync") < 0 ||
	    need(c, j, owner, tgt != NULL, "target", "sync") < 0)
		return -1;
	if (resolve_db(c, lk_ymap_get(src, "db"), &j->source.db) < 0 ||
	    resolve_db(c, lk_ymap_get(tgt, "db"), &j->target.db) < 0)
		return -1;
	if (!j->target.table.name)
		copy_tref(&j->target.table, &j->source.table);
	if (check_mode(c, j, job) < 0 || check_columns(c, j, job) < 0 ||
	    check_not_self(c, j, job) < 0)
		return -1;
	if (j->mode == LK_MODE_REALTIME && (j->every_ms || j->schedule))
		return lk_cfg_fail(c, lk_ymap_key(job, j->schedule ? "schedule" : "every"),
				   "expected no schedule for mode realtime (it streams "
				   "continuously), found %s",
				   j->schedule ? "schedule" : "every");
	return 0;
}

/* jobs.NAME.verify: exactly one of every and schedule (check_kind_keys: sync jobs only). */
static int check_verify(struct lk_cfgctx *c, struct lk_job *j, const struct lk_ynode *job)
{
	const struct lk_ynode *v = lk_ymap_get(job, "verify");

	if (!v || v->type == LK_Y_NULL)
		return 0;
	j->verify.line = v->line;
	j->verify.col = v->col;
	if (j->verify.every_ms > 0 && j->verify.schedule)
		return lk_cfg_fail(c, lk_ymap_get(v, "schedule"),
				   "expected either verify.every or verify.schedule, found both");
	if (j->verify.every_ms == 0 && !j->verify.schedule)
		return lk_cfg_fail(c, v,
				   "expected verify.every (e.g. every: 10m) or verify.schedule "
				   "(a cron expression), found neither");
	if (j->verify.schedule) {
		const struct lk_ynode *s = lk_ymap_get(v, "schedule");

		j->verify.line = s->line;
		j->verify.col = s->col;
	}
	return 0;
}

static int validate_job(struct lk_cfgctx *c, struct lk_job *j, const struct lk_ynode *job,
			const struct lk_ynode *owner)
{
	const struct lk_ynode *sched = lk_ymap_get(job, "schedule");

	if (!sched)
		sched = lk_ymap_get(job, "every");
	if (sched) {
		j->schedule_line = sched->line;
		j->schedule_col = sched->col;
	}
	if (check_kind_keys(c, j, job) < 0 || check_verify(c, j, job) < 0)
		return -1;
	if (j->kind == LK_JOB_SYNC && validate_sync(c, j, job, owner) < 0)
		return -1;
	if (j->kind == LK_JOB_SQL) {
		if (need(c, j, owner, lk_ymap_get(job, "db") != NULL, "db", "sql") < 0 ||
		    need(c, j, owner, j->sql && j->sql[0], "sql", "sql") < 0 ||
		    resolve_db(c, lk_ymap_get(job, "db"), &j->db) < 0)
			return -1;
	}
	if (j->kind == LK_JOB_EXEC && need(c, j, owner, j->ncommand > 0, "command", "exec") < 0)
		return -1;
	if (j->kind != LK_JOB_SYNC && j->every_ms > 0 && j->schedule)
		return lk_cfg_fail(c, lk_ymap_get(job, "schedule"),
				   "expected either every or schedule, found both");
	if (j->retry.max_ms < j->retry.initial_ms) {
		const struct lk_ynode *retry = lk_ymap_get(job, "retry");
		const struct lk_ynode *at = lk_ymap_get(retry, "max");

		return lk_cfg_fail(c, at ? at : lk_ymap_get(retry, "initial"),
				   "expected retry.max of at least retry.initial (%lld ms), found "
				   "%lld ms",
				   (long long)j->retry.initial_ms, (long long)j->retry.max_ms);
	}
	return 0;
}

/* http.read_token: only beside http.token (alone, POSTs would need nothing), and another. */
static int check_http(struct lk_cfgctx *c, const struct lk_ynode *root)
{
	const struct lk_http_conf *h = &c->cfg->http;
	const struct lk_ynode *rt = lk_ymap_get(lk_ymap_get(root, "http"), "read_token");

	if (!h->read_token || !h->read_token[0])
		return 0;
	if (!h->token || !h->token[0])
		return lk_cfg_fail(c, rt,
				   "expected http.read_token only with http.token set (the read "
				   "token allows GETs; the token is needed for the rest), found "
				   "no http.token");
	if (strcmp(h->read_token, h->token) == 0)
		return lk_cfg_fail(c, rt,
				   "expected http.read_token to differ from http.token, found the "
				   "same value");
	return 0;
}

int lk_cfg_validate(struct lk_cfgctx *c, const struct lk_ynode *root)
{
	const struct lk_ynode *jobs = lk_ymap_get(root, "jobs");
	const struct lk_ynode *cluster = lk_ymap_get(root, "cluster");

	if (check_http(c, root) < 0)
		return -1;

	/* A lease must survive a missed renewal or two (and the holder stops a margin early). */
	if (c->cfg->renew_ms * 2 > c->cfg->lease_ms) {
		const struct lk_ynode *at = lk_ymap_get(cluster, "renew");

		return lk_cfg_fail(
			c, at ? at : lk_ymap_get(cluster, "lease"),
			"expected cluster.renew of at most half of cluster.lease (%lld ms), "
			"found %lld ms; hint: renew every third of the lease (the defaults "
			"are 30s and 10s)",
			(long long)c->cfg->lease_ms, (long long)c->cfg->renew_ms);
	}

	for (int i = 0; i < c->cfg->njobs; i++) {
		if (validate_job(c, &c->cfg->jobs[i], jobs->kids[2 * (size_t)i + 1],
				 jobs->kids[2 * (size_t)i]) < 0)
			return -1;
	}
	return 0;
}
