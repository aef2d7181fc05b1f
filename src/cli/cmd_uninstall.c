/* cmd_uninstall.c - `lockstep uninstall JOB`: remove the job's change capture. */
#include "cli_int.h"
#include "connector/cdc.h"

#include <getopt.h>
#include <stdio.h>

static const char *const help =
	"usage: lockstep uninstall JOB\n"
	"  Deregisters JOB as a consumer of its source table's changelog. When no other job\n"
	"  reads that table, drops lockstep's triggers, function and changelog entries for\n"
	"  it; when no captured table is left, drops schema lockstep_cdc (SQLite: the\n"
	"  lockstep_cdc_ tables). Touches nothing else: the target and its rows stay.\n"
	"  Stop the job first: uninstall takes the job's lock (exit 75 while it runs).\n";

static int uninstall(struct lk_cli *cli, const struct lk_job *job, struct lk_err *err)
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
	rc = cdc->uninstall(src.conn, job->name, &job->source.table, &found, &dropped, &all_gone,
			    err);
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

int lk_cmd_uninstall(struct lk_cli *cli)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct lk_err err = LK_ERR_INIT;
	const struct lk_job *job;
	struct lk_job_lock *lock;
	struct lk_store *store;
	int64_t epoch = 0;
	int c, code = 0;

	while ((c = getopt_long(cli->argc, cli->argv, "", opts, NULL)) != -1) {
		if (c == 'h')
			return fputs(help, stdout) < 0;
		return fputs(help, stderr), LK_EXIT_USAGE;
	}
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
	if (!lock || uninstall(cli, job, &err) < 0)
		code = lk_cli_fail(&err);
	lk_store_job_unlock(lock);
	lk_store_close(store);
	return code;
}
