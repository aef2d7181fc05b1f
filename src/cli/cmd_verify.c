/* cmd_verify.c - `lockstep verify JOB [--json]`: compare source and target. */
#include "cli_int.h"
#include "core/json.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
	"usage: lockstep verify JOB [--json]\n"
	"  Compares the job's source rows (those matching `where`) with the target over the\n"
	"  synced columns: row counts, checksums of 1000-row chunks in key order over a\n"
	"  canonical encoding of each value, then the keys that differ (up to 20 listed).\n"
	"  Exit: 0 equal, 1 different (or failed), 69 a database unreachable.\n";

static const char *const kind_names[] = {"missing", "extra", "changed"};

static void print_json(const struct lk_verify_result *r, const char *job)
{
	json_t *o =
		json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:f}", "job", job, "equal", r->equal,
			  "sourceRows", (json_int_t)r->source_rows, "targetRows",
			  (json_int_t)r->target_rows, "chunks", (json_int_t)r->chunks,
			  "chunksDiffering", (json_int_t)r->chunks_differing, "differenceCount",
			  (json_int_t)r->differences, "seconds", (double)r->elapsed_ms / 1000.0);
	json_t *diffs = json_array();
	char *s;

	for (int i = 0; i < r->ndiffs; i++) {
		json_t *key =
			lk_json_parse_text(r->diffs[i].key_json, strlen(r->diffs[i].key_json));

		(void)json_array_append_new(diffs,
					    json_pack("{s:o, s:s}", "key", key ? key : json_null(),
						      "kind", kind_names[r->diffs[i].kind]));
	}
	(void)json_object_set_new(o, "differences", diffs);
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
	(void)printf("%s\n", s ? s : "{}");
	free(s);
	json_decref(o);
}

static void print_text(const struct lk_verify_result *r, const char *job)
{
	(void)printf("verify %s: %s: source %lld rows, target %lld rows, %lld of %lld chunks "
		     "differ, %lld differences (%.1f s)\n",
		     job, r->equal ? "equal" : "DIFFERENT", (long long)r->source_rows,
		     (long long)r->target_rows, (long long)r->chunks_differing,
		     (long long)r->chunks, (long long)r->differences,
		     (double)r->elapsed_ms / 1000.0);
	for (int i = 0; i < r->ndiffs; i++)
		(void)printf("  %-8s key %s\n", kind_names[r->diffs[i].kind], r->diffs[i].key_json);
	if (r->differences > r->ndiffs)
		(void)printf("  ... and %lld more\n", (long long)(r->differences - r->ndiffs));
}

int lk_cmd_verify(struct lk_cli *cli)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {"repair", no_argument, NULL, 'r'},
					     {NULL, 0, NULL, 0}};
	struct lk_sync_opts so = {0};
	struct lk_verify_result res;
	struct lk_err err = LK_ERR_INIT;
	const struct lk_job *job;
	struct lk_progress_view *view;
	bool json = false;
	int c, code = 0;

	while ((c = getopt_long(cli->argc, cli->argv, "", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'h') {
			return fputs(help, stdout) < 0;
		} else if (c == 'r') {
			(void)fprintf(stderr, "lockstep: verify --repair is not supported yet\n");
			return LK_EXIT_USAGE;
		} else {
			return fputs(help, stderr), LK_EXIT_USAGE;
		}
	}
	if (optind + 1 != cli->argc)
		return fputs(help, stderr), LK_EXIT_USAGE;
	job = lk_cli_job(cli, cli->argv[optind], &code);
	if (!job)
		return code;
	view = lk_progress_view_new("verify");
	so.stop = &lk_cli_stop;
	so.progress = lk_progress_view_cb;
	so.progress_arg = view;
	if (lk_verify_run(cli->cfg, job, &so, &res, &err) < 0) {
		lk_progress_view_free(view);
		lk_verify_result_release(&res);
		return lk_cli_fail(&err);
	}
	lk_progress_view_free(view);
	if (json)
		print_json(&res, job->name);
	else
		print_text(&res, job->name);
	code = res.equal ? 0 : LK_EXIT_FAILED;
	lk_verify_result_release(&res);
	return code;
}
