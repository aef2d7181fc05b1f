/* cmd_sync.c - `lockstep sync JOB [--full] [--json]`: one run in the foreground. */
#include "cli_int.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
	"usage: lockstep sync JOB [--full] [--json]\n"
	"  One run of a sync job now, in the foreground. Resumes from the job's position\n"
	"  in the target (a snapshot continues after its last committed key; a poll after\n"
	"  its cursor). --full starts from the beginning instead. --json prints the result\n"
	"  as one JSON object on the last line of stdout. Progress goes to stderr.\n"
	"  Rows the target rejects go to the dead-letter queue (lockstep errors list); the\n"
	"  run still succeeds, and says how many.\n"
	"  Exit: 0 done, 1 failed, 69 a database unreachable, 75 another process runs the job.\n";

static void print_result(const struct lk_sync_result *res, const char *job, bool json)
{
	double secs = (double)res->elapsed_ms / 1000.0;

	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f}", "runId",
				      res->run_id, "job", job, "status", res->status, "rowsRead",
				      (json_int_t)res->rows_read, "rowsWritten",
				      (json_int_t)res->rows_written, "rowsDeleted",
				      (json_int_t)res->rows_deleted, "rowsFailed",
				      (json_int_t)res->rows_failed, "seconds", secs);
		char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));

		(void)printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(o);
		return;
	}
	(void)printf("sync %s: %s: %lld rows read, %lld written, %lld deleted, %lld failed in "
		     "%.1f s",
		     job, res->status, (long long)res->rows_read, (long long)res->rows_written,
		     (long long)res->rows_deleted, (long long)res->rows_failed, secs);
	if (secs > 0.05)
		(void)printf(" (%.0f rows/s)", (double)res->rows_read / secs);
	(void)printf(" [run %s]\n", res->run_id);
}

/* Rows sent to the dead-letter queue: counted in the output, not a failure (SPEC §2). */
static void print_dead_letters(const struct lk_sync_result *res, bool json)
{
	if (res->rows_failed <= 0)
		return;
	/* With --json, stdout's last line is the JSON object: the note goes to stderr. */
	(void)fprintf(json ? stderr : stdout, "%lld row%s dead-lettered (lockstep errors list)\n",
		      (long long)res->rows_failed, res->rows_failed == 1 ? " was" : "s were");
}

int lk_cmd_sync(struct lk_cli *cli)
{
	static const struct option opts[] = {{"full", no_argument, NULL, 'f'},
					     {"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct lk_sync_opts so = {0};
	struct lk_sync_result res;
	struct lk_err err = LK_ERR_INIT;
	const struct lk_job *job;
	struct lk_store *store;
	struct lk_progress_view *view;
	bool json = false;
	int c, code = 0, rc;

	while ((c = getopt_long(cli->argc, cli->argv, "", opts, NULL)) != -1) {
		if (c == 'f')
			so.full = true;
		else if (c == 'j')
			json = true;
		else if (c == 'h')
			return fputs(help, stdout) < 0;
		else
			return fputs(help, stderr), LK_EXIT_USAGE;
	}
	if (optind + 1 != cli->argc)
		return fputs(help, stderr), LK_EXIT_USAGE;
	job = lk_cli_job(cli, cli->argv[optind], &code);
	if (!job)
		return code;
	store = lk_cli_open_store(cli, &code);
	if (!store)
		return code;
	view = lk_progress_view_new("sync");
	so.stop = &lk_cli_stop;
	so.progress = lk_progress_view_cb;
	so.progress_arg = view;
	rc = lk_sync_run(cli->cfg, job, store, &so, &res, &err);
	lk_progress_view_free(view);
	if (rc < 0 && err.code == LK_ERR_BUSY) {
		code = lk_cli_fail(&err);
	} else {
		if (rc < 0)
			code = lk_cli_fail(&err);
		if (res.run_id[0] && err.code != LK_ERR_UNAVAILABLE) {
			print_result(&res, job->name, json);
			print_dead_letters(&res, json);
		}
	}
	lk_store_close(store);
	return code;
}
