/*
 * config.c - loading a config (read, interpolate, parse, fill, validate), freeing it and
 * looking up jobs and databases by name.
 */
#include "config.h"

#include "config_int.h"
#include "core/buf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES ((size_t)16 << 20)

/* The config's folder as an absolute path, found lexically (the file need not exist). */
static char *config_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	struct lk_buf b = LK_BUF_INIT;
	char cwd[PATH_MAX];
	size_t dlen;

	if (path[0] == '/')
		return lk_xstrndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (!getcwd(cwd, sizeof(cwd)))
		(void)snprintf(cwd, sizeof(cwd), ".");
	lk_buf_adds(&b, cwd);
	if (slash) {
		dlen = (size_t)(slash - path);
		while (dlen >= 2 && path[0] == '.' && path[1] == '/') {
			path += 2;
			dlen -= 2;
			while (dlen > 0 && path[0] == '/') {
				path++;
				dlen--;
			}
		}
		if (dlen > 0 && !(dlen == 1 && path[0] == '.')) {
			lk_buf_addch(&b, '/');
			lk_buf_add(&b, path, dlen);
		}
	}
	return lk_buf_detach(&b, NULL);
}

static struct lk_config *load_text(const char *text, size_t len, const char *path,
				   struct lk_err *err)
{
	struct lk_config *cfg = lk_xcalloc(1, sizeof(*cfg));
	struct lk_cfgctx c = {path, cfg, err};
	struct lk_interp ip;
	struct lk_ynode *root = NULL;
	int rc = -1;

	cfg->path = lk_xstrdup(path);
	cfg->dir = config_dir(path);
	if (lk_interp_run(&ip, text, len, path, err) < 0)
		goto out;
	root = lk_yaml_parse(&c, &ip);
	if (!root)
		goto out;
	if (lk_cfg_defaults(&c, LK_SECT_TOP, cfg) < 0 ||
	    lk_cfg_parse_map(&c, LK_SECT_TOP, root, NULL, "the top level", cfg) < 0 ||
	    lk_cfg_validate(&c, root) < 0)
		goto out;
	rc = 0;
out:
	lk_ynode_free(root);
	lk_interp_release(&ip);
	if (rc == 0)
		return cfg;
	lk_config_free(cfg);
	return NULL;
}

struct lk_config *lk_config_load_string(const char *text, const char *path, struct lk_err *err)
{
	return load_text(text, strlen(text), path, err);
}

/* Reads the whole file into a NUL-terminated heap buffer. */
static char *read_file(const char *path, size_t *len, struct lk_err *err)
{
	struct lk_buf b = LK_BUF_INIT;
	char chunk[8192];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		lk_err_set(err, LK_ERR_CONFIG, "cannot read config '%s': %s", path,
			   strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		lk_buf_add(&b, chunk, n);
		if (b.len > CONFIG_MAX_BYTES) {
			lk_err_set(err, LK_ERR_CONFIG,
				   "cannot read config '%s': larger than %zu MiB", path,
				   CONFIG_MAX_BYTES >> 20);
			goto fail;
		}
	}
	if (ferror(f)) {
		lk_err_set(err, LK_ERR_CONFIG, "cannot read config '%s': %s", path,
			   strerror(errno ? errno : EIO));
		goto fail;
	}
	(void)fclose(f);
	return lk_buf_detach(&b, len);
fail:
	(void)fclose(f);
	lk_buf_release(&b);
	return NULL;
}

struct lk_config *lk_config_load(const char *path, struct lk_err *err)
{
	struct lk_config *cfg;
	size_t len = 0;
	char *text = read_file(path, &len, err);

	if (!text)
		return NULL;
	cfg = load_text(text, len, path, err);
	free(text);
	return cfg;
}

static void free_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Like free_list, but wipes each string first (they may hold secrets). */
static void free_secret_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		memset(v[i], 0, strlen(v[i]));
	free_list(v, n);
}

static void free_tref(struct lk_tref *t)
{
	free(t->schema);
	free(t->name);
}

static void free_job(struct lk_job *j)
{
	free(j->name);
	free_tref(&j->source.table);
	free_list(j->source.key, j->source.nkey);
	free_list(j->source.columns, j->source.ncolumns);
	free(j->source.where);
	free_tref(&j->target.table);
	free(j->target.soft_column);
	free(j->cursor);
	free(j->schedule);
	free(j->timezone);
	free(j->verify.schedule);
	free(j->sql);
	free_list(j->command, j->ncommand);
	free_secret_list(j->env, j->nenv);
	free_list(j->run_on, j->nrun_on);
}

void lk_config_free(struct lk_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->dir);
	free(cfg->state_url);
	free(cfg->state_path);
	free(cfg->http.listen);
	free(cfg->instance_name);
	free(cfg->deployment);
	free_list(cfg->labels, cfg->nlabels);
	if (cfg->http.token)
		memset(cfg->http.token, 0, strlen(cfg->http.token));
	free(cfg->http.token);
	if (cfg->http.read_token)
		memset(cfg->http.read_token, 0, strlen(cfg->http.read_token));
	free(cfg->http.read_token);
	free_list(cfg->http.allowed_hosts, cfg->http.nallowed_hosts);
	for (int i = 0; i < cfg->ndbs; i++) {
		free(cfg->dbs[i].name);
		free(cfg->dbs[i].url);
		free(cfg->dbs[i].path);
		free(cfg->dbs[i].listen_url);
	}
	free(cfg->dbs);
	for (int i = 0; i < cfg->njobs; i++)
		free_job(&cfg->jobs[i]);
	free(cfg->jobs);
	free(cfg);
}

const struct lk_job *lk_config_job(const struct lk_config *cfg, const char *name)
{
	for (int i = 0; cfg && name && i < cfg->njobs; i++) {
		if (strcmp(cfg->jobs[i].name, name) == 0)
			return &cfg->jobs[i];
	}
	return NULL;
}

const struct lk_dbconf *lk_config_db(const struct lk_config *cfg, const char *name)
{
	for (int i = 0; cfg && name && i < cfg->ndbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
	}
	return NULL;
}
