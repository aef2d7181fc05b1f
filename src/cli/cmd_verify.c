/* cmd_verify.c - `lockstep verify JOB [--json] [--repair]`: compare source and target, and
 * repair the differences through the job's own path (docs/verify.md). */
#include "cli_int.h"
#include "core/json.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
	"usage: lockstep verify JOB [--json] [--repair]\n"
	"  Compares the job's source rows (those matching `where`) with the target over the\n"
	"  synced columns: checksums of chunks in key order over a canonical encoding of each\n"
	"  value, then the keys that differ (up to 20 listed). A real-time job's differing keys\n"
	"  are checked again once its stream has applied past them (30 s at most).\n"
	"  --repair  applies every difference from the key's current source row through the\n"
	"            job's own fenced path (docs/verify.md), recorded as a run of type repair\n"
	"  Exit: 0 equal (after the repair), 1 different (or failed), 69 a database\n"
	"  unreachable, 75 the job is held by a running lockstep (ask it over HTTP).\n";

static const char *const kind_names[] = {"missing", "extra", "changed"};

static void print_json(const struct lk_verify_result *r, const char *job)
{
	json_t *o = json_pack(
		"{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:f}", "job", job, "equal",
		r->equal, "sourceRows", (json_int_t)r->source_rows, "targetRows",
		(json_int_t)r->target_rows, "chunks", (json_int_t)r->chunks, "chunksDiffering",
		(json_int_t)r->chunks_differing, "differenceCount", (json_int_t)r->differences,
		"repaired", (json_int_t)r->repaired, "remaining", (json_int_t)r->remaining,
		"unsettled", r->unsettled, "seconds", (double)r->elapsed_ms / 1000.0);
	json_t *diffs = json_array();
	char *s;

	if (r->run_id[0])
		(void)json_object_set_new(o, "runId", json_string(r->run_id));
	(void)json_object_set_new(o, "countDiffers", json_boolean(r->count_differs));
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

static void print_text(const struct lk_verify_result *r, const char *job, bool repair)
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
	if (repair)
		(void)printf("repaired %lld; %lld differences left (run %s)\n",
			     (long long)r->repaired, (long long)r->remaining, r->run_id);
	if (r->count_differs)
		(void)printf(
			"  the row counts differ while no key does: the target holds a key in two "
			"spellings (an SQLite text column), or the source holds a key twice\n");
	if (r->unsettled)
		(void)printf("note: the job had not applied past the rows read in time; a "
			     "difference may be a change still on its way\n");
}

/* How long a real-time job's stream gets to apply past the rows read (docs/verify.md). */
#define VERIFY_SETTLE_MS 30000

/* A job held by a running lockstep: the repair is asked of it over HTTP. */
static void busy_hint(struct lk_cli *cli, const struct lk_job *job, struct lk_err *err)
{
	const char *listen = cli->cfg->http.listen ? cli->cfg->http.listen : "127.0.0.1:8433";
	char msg[LK_ERR_MSG_MAX];

	(void)snprintf(msg, sizeof(msg), "%s", err->msg);
	lk_err_set(err, LK_ERR_BUSY,
		   "%s; to repair it there, ask that lockstep: curl -X POST%s -H "
		   "'Content-Type: application/json' http://%s/api/verify -d "
		   "'{\"job\":\"%s\",\"repair\":true}'",
		   msg, cli->cfg->http.token ? " -H \"Authorization: Bearer $TOKEN\"" : "", listen,
		   job->name);
}

int lk_cmd_verify(struct lk_cli *cli)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {"repair", no_argument, NULL, 'r'},
					     {NULL, 0, NULL, 0}};
	struct lk_sync_opts so = {0};
	struct lk_verify_opts vo = {0};
	struct lk_store *store = NULL;
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
			vo.repair = true;
		} else {
			return fputs(help, stderr), LK_EXIT_USAGE;
		}
	}
	if (optind + 1 != cli->argc)
		return fputs(help, stderr), LK_EXIT_USAGE;
	job = lk_cli_job(cli, cli->argv[optind], &code);
	if (!job)
		return code;
	/* the store: the job's position key, its lock, the recorded repair */
	if (job->kind == LK_JOB_SYNC && (vo.repair || job->mode == LK_MODE_REALTIME)) {
		store = lk_cli_open_store(cli, &code);
		if (!store)
			return code;
	}
	vo.store = store;
	vo.settle_ms = job->mode == LK_MODE_REALTIME ? VERIFY_SETTLE_MS : 0;
	vo.record = vo.repair ? "repair" : NULL;
	vo.catch_up = true;
	view = lk_progress_view_new("verify");
	so.stop = &lk_cli_stop;
	so.progress = lk_progress_view_cb;
	so.progress_arg = view;
	if (lk_verify_run(cli->cfg, job, &so, &vo, &res, &err) < 0) {
		lk_progress_view_free(view);
		lk_verify_result_release(&res);
		lk_store_close(store);
		if (err.code == LK_ERR_BUSY)
			busy_hint(cli, job, &err);
		return lk_cli_fail(&err);
	}
	lk_progress_view_free(view);
	lk_store_close(store);
	if (json)
		print_json(&res, job->name);
	else
		print_text(&res, job->name, vo.repair);
	code = res.equal ? 0 : LK_EXIT_FAILED;
	lk_verify_result_release(&res);
	return code;
}
