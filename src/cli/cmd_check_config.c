/* cmd_check_config.c - `lockstep check-config`: config, databases, tables, columns. */
#include "cli_int.h"
#include "connector/connector.h"
#include "core/buf.h"
#include "http/http.h"
#include "orphans.h"
#include "sched/exec.h"
#include "sched/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const help =
	"usage: lockstep check-config\n"
	"  Parses and validates the config, connects to every database and to the state\n"
	"  store, and checks that every job's tables, columns and keys exist and fit. Names\n"
	"  this deployment and lists the consumers of its real-time jobs' source tables that\n"
	"  belong to none of its jobs (orphans: `lockstep uninstall --orphans`).\n"
	"  Exit: 0 all good, 1 a table or column problem, 69 a database unreachable,\n"
	"  78 invalid config.\n";

static void orphan_line(void *arg, const struct lk_orphan *o)
{
	char what[512];

	(void)arg;
	lk_orphan_describe(o, what, sizeof(what));
	(void)printf("orphan %s\n", what);
}

/* This deployment's id, and the orphaned consumers of its source tables (never fatal). */
static void check_deployment(struct lk_cli *cli, struct lk_store *store)
{
	struct lk_err err = LK_ERR_INIT;
	const char *dep;

	if (lk_store_deployment(store, &dep, &err) < 0) {
		(void)printf("deployment: unknown (%s)\n", err.msg);
		return;
	}
	(void)printf("deployment: %s\n", dep);
	if (lk_cli_orphans(cli, store, false, orphan_line, NULL, &err) < 0)
		(void)printf("orphans: unknown (%s)\n", err.msg);
}

static int check_databases(struct lk_cli *cli)
{
	int worst = 0;

	for (int i = 0; i < cli->cfg->ndbs; i++) {
		const struct lk_dbconf *d = &cli->cfg->dbs[i];
		struct lk_err err = LK_ERR_INIT;
		struct lk_retry_conf once = {1, 0, 0, 1.0};
		struct lk_db db;
		char url[512];

		lk_redact_url(d->url, url, sizeof(url));
		if (lk_db_open(&db, d, &once, NULL, &err) < 0) {
			(void)printf("database %-12s %s: UNREACHABLE\n", d->name, url);
			(void)fprintf(stderr, "lockstep: %s\n", err.msg);
			worst = LK_EXIT_UNAVAILABLE;
			continue;
		}
		(void)printf("database %-12s %s: ok (%s)\n", d->name, url, db.ops->name);
		lk_db_close(&db);
	}
	return worst;
}

/* The PATH an exec job's command gets: its env's, else lockstep's own. */
static const char *exec_path(const struct lk_job *job)
{
	for (int i = 0; i < job->nenv; i++) {
		if (strncmp(job->env[i], "PATH=", 5) == 0)
			return job->env[i] + 5;
	}
	return getenv("PATH");
}

/* An exec job's command must be there: a name found in its PATH, or an executable path
 * (relative ones from the config's folder, where it runs). */
static int check_exec(struct lk_cli *cli, const struct lk_job *job)
{
	const char *cmd = job->command[0], *path = exec_path(job);
	char *found = NULL;
	struct lk_buf rel = LK_BUF_INIT;
	bool ok;

	if (strchr(cmd, '/')) {
		if (cmd[0] != '/' && cli->cfg->dir)
			lk_buf_addf(&rel, "%s/", cli->cfg->dir);
		lk_buf_adds(&rel, cmd);
		ok = access(rel.buf, X_OK) == 0;
	} else {
		found = lk_exec_which(cmd, path, cli->cfg->dir);
		ok = found != NULL;
	}
	lk_buf_release(&rel);
	if (!ok) {
		(void)printf("job %-16s FAILED\n", job->name);
		(void)fprintf(stderr,
			      "%s:%d:%d: job '%s': command '%s' is not %s (hint: install it, give "
			      "its absolute path, or set env: {PATH: ...} for the job)\n",
			      cli->cfg->path, job->line, job->col, job->name, cmd,
			      strchr(cmd, '/') ? "an executable file" : "found in the job's PATH");
		return LK_EXIT_CONFIG;
	}
	(void)printf("job %-16s ok: runs %s (no shell)\n", job->name, found ? found : cmd);
	free(found);
	return 0;
}

static int check_job(struct lk_cli *cli, const struct lk_job *job)
{
	struct lk_check_result r;
	struct lk_err err = LK_ERR_INIT;

	if (job->kind == LK_JOB_SQL) {
		struct lk_db db;

		if (lk_db_open(&db, &cli->cfg->dbs[job->db], NULL, NULL, &err) < 0) {
			(void)printf("job %-16s FAILED\n", job->name);
			return lk_cli_fail(&err);
		}
		lk_db_close(&db);
		(void)printf("job %-16s ok: database '%s' reachable (the statement runs in one "
			     "transaction, fenced)\n",
			     job->name, cli->cfg->dbs[job->db].name);
		return 0;
	}
	if (job->kind == LK_JOB_EXEC)
		return check_exec(cli, job);
	if (lk_sync_check(cli->cfg, job, &r, &err) < 0) {
		(void)printf("job %-16s FAILED\n", job->name);
		return lk_cli_fail(&err);
	}
	(void)printf("job %-16s ok: %d columns, ~%lld source rows%s\n", job->name, r.ncols,
		     (long long)r.source_estimate,
		     r.target_missing ? ", target table will be created on the first run" : "");
	if (r.poll_note[0])
		(void)printf("  poll: %s\n", r.poll_note);
	if (job->mode == LK_MODE_REALTIME)
		(void)printf("  realtime: the role may install change capture on the source "
			     "table (docs/realtime.md)\n");
	return 0;
}

int lk_cmd_check_config(struct lk_cli *cli)
{
	struct lk_buf dump = LK_BUF_INIT;
	struct lk_err err = LK_ERR_INIT;
	struct lk_store *store;
	int code = 0, worst;

	if (cli->argc > 1)
		return fputs(help, strcmp(cli->argv[1], "--help") == 0 ? stdout : stderr),
		       strcmp(cli->argv[1], "--help") == 0 ? 0 : LK_EXIT_USAGE;
	if (lk_sched_check_config(cli->cfg, &err) < 0) {
		(void)fprintf(stderr, "%s\n", err.msg);
		return LK_EXIT_CONFIG;
	}
	if (lk_http_check_listen(cli->cfg->http.listen ? cli->cfg->http.listen : "127.0.0.1:8433",
				 cli->cfg->http.token, &err) < 0) {
		(void)fprintf(stderr, "%s: %s\n", cli->cfg->path, err.msg);
		return LK_EXIT_CONFIG;
	}
	lk_config_dump(cli->cfg, &dump);
	(void)printf("config %s: valid\n%s", cli->cfg->path, dump.buf);
	lk_buf_release(&dump);
	worst = check_databases(cli);
	store = lk_cli_open_store(cli, &code);
	if (!store)
		return code;
	(void)printf("state store: ok (migrated)\n");
	if (worst) {
		lk_store_close(store);
		return worst;
	}
	for (int i = 0; i < cli->cfg->njobs; i++) {
		int rc = check_job(cli, &cli->cfg->jobs[i]);

		if (rc && (worst == 0 || rc == LK_EXIT_UNAVAILABLE))
			worst = rc;
	}
	check_deployment(cli, store);
	lk_store_close(store);
	return worst;
}
