/*
 * config_sections.c - the keys whose values need more than a type: the state store and
 * database URLs, the named maps of databases and jobs, table and database references,
 * key lists, `deletes` and `http.listen`.
 */
#include "config_int.h"
#include "core/buf.h"
#include "core/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL_EXPECT "a postgres:// URL, a libpq keyword string or sqlite:PATH"

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int lk_cfg_db_kind(const char *url, const char *dir, enum lk_db_kind *kind, char **path)
{
	struct lk_buf b = LK_BUF_INIT;
	const char *p;

	*path = NULL;
	if (starts_with(url, "postgres://") || starts_with(url, "postgresql://")) {
		*kind = LK_DB_POSTGRES;
		return 0;
	}
	if (starts_with(url, "sqlite:")) {
		p = url + strlen("sqlite:");
		if (!*p)
			return -1;
		*kind = LK_DB_SQLITE;
		if (p[0] == '/' || strcmp(p, ":memory:") == 0 || !dir || !*dir) {
			*path = lk_xstrdup(p);
			return 0;
		}
		lk_buf_addf(&b, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", p);
		*path = lk_buf_detach(&b, NULL);
		return 0;
	}
	if (strchr(url, '=') && !strstr(url, "://")) {
		*kind = LK_DB_POSTGRES;
		return 0;
	}
	return -1;
}

/* Fails with "expected ..., found '<redacted url>'". */
static int bad_url(struct lk_cfgctx *c, const struct lk_ynode *val, const char *expect)
{
	char shown[128], found[96];

	if (!val || val->type != LK_Y_SCALAR) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val, "expected %s, found %s", expect, found);
	}
	lk_redact_url(val->text, shown, sizeof(shown));
	return lk_cfg_fail(c, val, "expected %s, found '%s'", expect, shown);
}

/* Classifies a URL node: the URL, kind and SQLite path, all owned by the caller. */
static int url_value(struct lk_cfgctx *c, const struct lk_ynode *val, char **url,
		     enum lk_db_kind *kind, char **path)
{
	if (!val || val->type != LK_Y_SCALAR || strlen(val->text) != val->len ||
	    lk_cfg_db_kind(val->text, c->cfg->dir, kind, path) < 0)
		return bad_url(c, val, URL_EXPECT);
	*url = lk_xstrdup(val->text);
	return 0;
}

int lk_cfg_parse_state(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		       void *obj)
{
	struct lk_config *cfg = obj;
	enum lk_db_kind kind = LK_DB_SQLITE;
	char *url = NULL, *path = NULL;

	(void)k;
	if (url_value(c, val, &url, &kind, &path) < 0)
		return -1;
	free(cfg->state_url);
	free(cfg->state_path);
	cfg->state_url = url;
	cfg->state_kind = kind;
	cfg->state_path = path;
	return 0;
}

int lk_cfg_parse_listen(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			void *obj)
{
	char **field = (char **)(void *)((char *)obj + k->off);
	const char *colon = NULL;
	char found[96];
	int64_t port = 0;

	if (val && val->type == LK_Y_SCALAR)
		colon = strrchr(val->text, ':');
	if (!colon || colon == val->text || lk_int64_parse(colon + 1, &port) < 0 || port < 0 ||
	    port > 65535) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val, "expected HOST:PORT (like 127.0.0.1:8433), found %s",
				   found);
	}
	free(*field);
	*field = lk_xstrdup(val->text);
	return 0;
}

/* Names of databases and jobs: they appear in logs, URLs and lock file names. */
static int check_name(struct lk_cfgctx *c, const struct lk_ynode *key, const char *what)
{
	const char *s = key->text;
	char found[96];
	bool ok = key->len > 0 && strlen(s) == key->len && s[0] != '.' && s[0] != '-';

	for (; ok && *s; s++) {
		ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		     (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.';
	}
	if (ok && key->len <= 64)
		return 0;
	lk_ynode_describe(key, found, sizeof(found));
	return lk_cfg_fail(c, key,
			   "expected a %s name of up to 64 letters, digits, '_', '-' and '.', "
			   "found %s",
			   what, found);
}

/* Parses one entry of `databases`: a URL string or a mapping with url, pool, listen_url. */
static int parse_db(struct lk_cfgctx *c, const struct lk_ynode *key, const struct lk_ynode *val,
		    struct lk_dbconf *d)
{
	char what[96], found[96];

	d->name = lk_xstrdup(key->text);
	d->line = key->line;
	d->col = key->col;
	if (lk_cfg_defaults(c, LK_SECT_DB, d) < 0)
		return -1;
	if (val->type == LK_Y_SCALAR)
		return url_value(c, val, &d->url, &d->kind, &d->path);
	if (val->type != LK_Y_MAP) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val->type == LK_Y_NULL ? key : val,
				   "expected a database URL or a mapping with url, found %s",
				   found);
	}
	(void)snprintf(what, sizeof(what), "database '%s'", d->name);
	if (lk_cfg_parse_map(c, LK_SECT_DB, val, key, what, d) < 0)
		return -1;
	if (d->listen_url && d->kind != LK_DB_POSTGRES)
		return lk_cfg_fail(c, lk_ymap_get(val, "listen_url"),
				   "expected listen_url only on a PostgreSQL database, found it on "
				   "an SQLite one");
	return 0;
}

int lk_cfg_parse_databases(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			   void *obj)
{
	struct lk_config *cfg = obj;
	char found[96];

	(void)k;
	if (val->type != LK_Y_MAP) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val, "expected a mapping of database names, found %s", found);
	}
	cfg->dbs = lk_xcalloc((size_t)(val->nkids / 2), sizeof(*cfg->dbs));
	for (int i = 0; i + 1 < val->nkids; i += 2) {
		const struct lk_ynode *key = val->kids[i];

		if (check_name(c, key, "database") < 0)
			return -1;
		cfg->ndbs++;
		if (parse_db(c, key, val->kids[i + 1], &cfg->dbs[cfg->ndbs - 1]) < 0)
			return -1;
	}
	return 0;
}

int lk_cfg_parse_db_url(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			void *obj)
{
	struct lk_dbconf *d = obj;

	(void)k;
	free(d->url);
	free(d->path);
	d->url = d->path = NULL;
	return url_value(c, val, &d->url, &d->kind, &d->path);
}

int lk_cfg_parse_listen_url(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			    void *obj)
{
	struct lk_dbconf *d = obj;
	enum lk_db_kind kind;
	char *path = NULL;

	(void)k;
	if (val->type != LK_Y_SCALAR || strlen(val->text) != val->len ||
	    lk_cfg_db_kind(val->text, NULL, &kind, &path) < 0 || kind != LK_DB_POSTGRES) {
		free(path);
		return bad_url(c, val, "a postgres:// URL or a libpq keyword string");
	}
	free(d->listen_url);
	d->listen_url = lk_xstrdup(val->text);
	return 0;
}

int lk_cfg_parse_jobs(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		      void *obj)
{
	struct lk_config *cfg = obj;
	char found[96], what[96];

	(void)k;
	if (val->type != LK_Y_MAP) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val, "expected a mapping of job names, found %s", found);
	}
	cfg->jobs = lk_xcalloc((size_t)(val->nkids / 2), sizeof(*cfg->jobs));
	for (int i = 0; i + 1 < val->nkids; i += 2) {
		const struct lk_ynode *key = val->kids[i], *body = val->kids[i + 1];
		struct lk_job *j;

		if (check_name(c, key, "job") < 0)
			return -1;
		j = &cfg->jobs[cfg->njobs++];
		j->name = lk_xstrdup(key->text);
		j->line = key->line;
		j->col = key->col;
		j->source.db = j->target.db = j->db = -1;
		if (lk_cfg_defaults(c, LK_SECT_JOB, j) < 0)
			return -1;
		(void)snprintf(what, sizeof(what), "job '%s'", j->name);
		if (lk_cfg_parse_map(c, LK_SECT_JOB, body, key, what, j) < 0)
			return -1;
	}
	return 0;
}

int lk_cfg_parse_dbref(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		       void *obj)
{
	char found[96];

	(void)k;
	(void)obj; /* resolved by lk_cfg_validate once every database is known */
	if (val->type == LK_Y_SCALAR && val->len > 0)
		return 0;
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected a database name, found %s", found);
}

int lk_cfg_parse_tref(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		      void *obj)
{
	return lk_cfg_tref(c, val, (struct lk_tref *)(void *)((char *)obj + k->off));
}

int lk_cfg_parse_key(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		     void *obj)
{
	return lk_cfg_strlist(c, val, true, (char ***)(void *)((char *)obj + k->off),
			      (int *)(void *)((char *)obj + k->off2));
}

/*
 * instance.labels and jobs.NAME.run_on: up to 16 labels of letters, digits, '_', '-' and '.'
 * (they are stored comma-separated in the members table).
 */
int lk_cfg_parse_labels(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			void *obj)
{
	char ***out = (char ***)(void *)((char *)obj + k->off);
	int *n = (int *)(void *)((char *)obj + k->off2);

	if (lk_cfg_strlist(c, val, true, out, n) < 0)
		return -1;
	if (*n > 16)
		return lk_cfg_fail(c, val, "expected at most 16 labels, found %d", *n);
	for (int i = 0; i < *n; i++) {
		const char *s = (*out)[i];
		const struct lk_ynode *at = val->type == LK_Y_SEQ ? val->kids[i] : val;

		if (!s[0] || strlen(s) > 63 ||
		    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			      "0123456789_-.") != strlen(s))
			return lk_cfg_fail(c, at,
					   "expected a label of letters, digits, '_', '-' and '.'"
					   " (at most 63), found '%s'",
					   s);
		for (int j = 0; j < i; j++) {
			if (strcmp((*out)[j], s) == 0)
				return lk_cfg_fail(c, at, "label '%s' is listed twice", s);
		}
	}
	return 0;
}

int lk_cfg_parse_deletes(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			 void *obj)
{
	static const char *const names[] = {"delete", "ignore", "soft:"};
	struct lk_job *j = obj;
	const char *hint = NULL;
	char found[96];

	(void)k;
	if (val->type == LK_Y_SCALAR && strlen(val->text) == val->len) {
		if (strcmp(val->text, "delete") == 0 || strcmp(val->text, "ignore") == 0) {
			j->target.deletes =
				val->text[0] == 'd' ? LK_DELETES_DELETE : LK_DELETES_IGNORE;
			return 0;
		}
		if (starts_with(val->text, "soft:") && val->text[5]) {
			free(j->target.soft_column);
			j->target.soft_column = lk_xstrdup(val->text + 5);
			j->target.deletes = LK_DELETES_SOFT;
			return 0;
		}
		if (starts_with(val->text, "soft"))
			return lk_cfg_fail(c, val,
					   "expected soft:COLUMN with the column to set, "
					   "found '%s'",
					   val->text);
		hint = lk_cfg_suggest(val->text, names, 3);
	}
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected delete | ignore | soft:COLUMN, found %s%s%s%s", found,
			   hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
}

int lk_cfg_parse_deployment(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			    void *obj)
{
	char **field = (char **)(void *)((char *)obj + k->off);
	size_t n = val && val->type == LK_Y_SCALAR ? strlen(val->text) : 0;
	bool ok = n > 0 && n <= LK_DEPLOYMENT_MAX && n == val->len;
	char found[96];

	for (size_t i = 0; ok && i < n; i++) {
		char ch = val->text[i];

		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		     (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
	}
	if (!ok) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val,
				   "expected a deployment name of 1 to %d letters, digits, '_', "
				   "'-' and '.', found %s",
				   LK_DEPLOYMENT_MAX, found);
	}
	free(*field);
	*field = lk_xstrdup(val->text);
	return 0;
}

int lk_cfg_parse_orphan_after(struct lk_cfgctx *c, const struct lk_key *k,
			      const struct lk_ynode *val, void *obj)
{
	int64_t *field = (int64_t *)(void *)((char *)obj + k->off);
	bool scalar = val && val->type == LK_Y_SCALAR;
	char found[96];
	int64_t v;

	if (scalar && (strcmp(val->text, "off") == 0 || strcmp(val->text, "0") == 0)) {
		*field = 0;
		return 0;
	}
	if (scalar && lk_duration_parse(val->text, &v) == 0 && v >= 1000) {
		*field = v;
		return 0;
	}
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected a duration of at least 1s (12h, 7d) or off, found %s",
			   found);
}
