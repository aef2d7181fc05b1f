/* cmd_uninstall.c - `lockstep uninstall JOB | --orphans`: remove change capture. */
#include "cli_int.h"
#include "connector/cdc.h"
#include "orphans.h"

#include <getopt.h>
#include <stdio.h>

static const char *const help =
	"usage: lockstep uninstall JOB\n"
	"       lockstep uninstall --orphans\n"
	"  JOB: deregisters JOB (of this deployment) as a consumer of its source table's\n"
	"  changelog. When no other consumer reads that table, drops lockstep's triggers,\n"
	"  function and changelog entries for it; when no captured table is left, drops\n"
	"  schema lockstep_cdc (SQLite: the lockstep_cdc_ tables). Touches nothing else: the\n"
	"  target and its rows stay. Stop the job first: uninstall takes the job's lock (exit\n"
	"  75 while it runs).\n"
	"  --orphans: removes, from the source tables of this config's real-time jobs, every\n"
	"  consumer that is none of them in this deployment: those of a deployment whose state\n"
	"  store is gone, of jobs removed from the config, and older lockstep versions' rows\n"
	"  (`lockstep status` lists them first). Pruning then stops waiting for them. Triggers\n"
	"  and this deployment's consumers stay. Safe for data: a deployment that still runs\n"
	"  and loses its consumer row takes a fresh snapshot (with the sweep) at its next start\n"
	"  instead of resuming, so no change is missed; it only costs that copy. So check\n"
	"  that each orphan `lockstep status` lists is really abandoned before running it.\n";

static int uninstall(struct lk_cli *cli, const struct lk_job *job, const char *ident,
		     struct lk_err *err)
{
	const struct lk_dbconf *db = &cli->cfg->dbs[job->source.db];
	struct lk_db src = {0};
	const struct lk_cdc_ops *cdc;
	bool found = false, dropped = false, all_gone = false;
	char table[300];
	int rc;

	lk_tref_format(&job->source.table, table, sizeof(table));
	if (lk_db_open(&src, db, &job->retry, &lk_cli_stop, err) < 0)
		return -1;
	cdc = lk_cdc_for(src.ops);
	rc = cdc->uninstall(src.conn, ident, &job->source.table, &found, &dropped, &all_gone, err);
	/* Not run since the upgrade: its row still has the name an older lockstep gave it. */
	if (rc == 0 && !found && !all_gone)
		rc = cdc->uninstall(src.conn, job->name, &job->source.table, &found, &dropped,
				    &all_gone, err);
	lk_db_close(&src);
	if (rc < 0)
		return -1;
	(void)printf("uninstall %s: %s", job->name,
		     found ? "deregistered from the changelog" : "was not registered");
	if (dropped)
		(void)printf("; triggers and changelog entries of %s dropped", table);
	else if (!all_gone)
		(void)printf("; %s stays captured for other jobs", table);
	if (all_gone)
		(void)printf("; no lockstep change-capture object is left on database '%s'",
			     db->name);
	(void)printf("\n");
	return 0;
}

static void removed(void *arg, const struct lk_orphan *o)
{
	char what[512];

	(*(int *)arg)++;
	lk_orphan_describe(o, what, sizeof(what));
	(void)printf("removed %s\n", what);
}

static int uninstall_orphans(struct lk_cli *cli)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_store *store;
	int code = 0, n = 0;

	store = lk_cli_open_store(cli, &code);
	if (!store)
		return code;
	if (lk_cli_orphans(cli, store, true, removed, &n, &err) < 0)
		code = lk_cli_fail(&err);
	else if (n == 0)
		(void)printf("no orphaned consumer on the source tables of this config\n");
	lk_store_close(store);
	return code;
}

int lk_cmd_uninstall(struct lk_cli *cli)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
					     {"orphans", no_argument, NULL, 'o'},
					     {NULL, 0, NULL, 0}};
	struct lk_err err = LK_ERR_INIT;
	const struct lk_job *job;
	struct lk_job_lock *lock;
	struct lk_store *store;
	char ident[LK_IDENT_MAX];
	bool orphans = false;
	int64_t epoch = 0;
	int c, code = 0;

	while ((c = getopt_long(cli->argc, cli->argv, "", opts, NULL)) != -1) {
		if (c == 'h')
			return fputs(help, stdout) < 0;
		if (c == 'o') {
			orphans = true;
			continue;
		}
		return fputs(help, stderr), LK_EXIT_USAGE;
	}
	if (orphans)
		return optind == cli->argc ? uninstall_orphans(cli)
					   : (fputs(help, stderr), LK_EXIT_USAGE);
	if (optind + 1 != cli->argc)
		return fputs(help, stderr), LK_EXIT_USAGE;
	job = lk_cli_job(cli, cli->argv[optind], &code);
	if (!job)
		return code;
	if (job->kind != LK_JOB_SYNC) {
		(void)fprintf(stderr,
			      "lockstep: job '%s' is not a sync job: nothing to uninstall\n",
			      job->name);
		return LK_EXIT_USAGE;
	}
	store = lk_cli_open_store(cli, &code);
	if (!store)
		return code;
	/* A running applier would keep streaming from a changelog about to vanish. */
	lock = lk_store_job_lock(store, job->name, 0, &epoch, &err);
	if (!lock || lk_store_ident(store, job->name, ident, &err) < 0 ||
	    uninstall(cli, job, ident, &err) < 0)
		code = lk_cli_fail(&err);
	lk_store_job_unlock(lock);
	lk_store_close(store);
	return code;
}
