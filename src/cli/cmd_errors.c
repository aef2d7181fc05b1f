/*
 * cmd_errors.c - `lockstep errors list|show ID|replay ID|resolve ID`: the dead-letter
 * queue (docs/dead-letters.md). Works without a daemon: it reads the state store, and
 * replay writes through the job's own fenced path.
 */
#include "cli_int.h"
#include "core/json.h"
#include "core/units.h"
#include "store/deadletters.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
	"usage: lockstep errors list [--all] [--job JOB] [--limit N] [--json]\n"
	"       lockstep errors show ID [--json]\n"
	"       lockstep errors replay ID\n"
	"       lockstep errors resolve ID\n"
	"  The dead-letter queue: rows a target rejected (a constraint, a type, a trigger) or\n"
	"  could not hold exactly, kept with their key, SQLSTATE, message and row.\n"
	"  list     open dead letters (--all: resolved ones too), oldest first, at most\n"
	"           --limit (default 1000)\n"
	"  show     one dead letter with its row image\n"
	"  replay   applies the key's CURRENT source row (or its delete) through the job's\n"
	"           fenced path and resolves it; for a real-time job, queues the key for its\n"
	"           applier, which resolves it once the key applies cleanly\n"
	"  resolve  marks it resolved without applying anything\n"
	"  A dead letter also resolves itself when a later change to its key applies cleanly.\n"
	"  Exit: 0 done, 1 failed (replay rejected again, unknown ID), 2 usage,\n"
	"  69 a database unreachable, 75 another process runs the job.\n";

struct errors_opts {
	bool json, all;
	const char *job;
	int limit;
	const char *verb;
	int64_t id;
};

static int usage_error(const char *what)
{
	if (what)
		(void)fprintf(stderr, "lockstep errors: %s\n", what);
	(void)fputs(help, stderr);
	return LK_EXIT_USAGE;
}

/* Parses options and the verb (and ID); returns -1 after printing help (0 exit) or usage. */
static int parse(struct lk_cli *cli, struct errors_opts *o, int *code)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},      {"all", no_argument, NULL, 'a'},
		{"job", required_argument, NULL, 'J'}, {"limit", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0}};
	int64_t n;
	int c;

	memset(o, 0, sizeof(*o));
	o->limit = 1000;
	while ((c = getopt_long(cli->argc, cli->argv, "", opts, NULL)) != -1) {
		if (c == 'j') {
			o->json = true;
		} else if (c == 'a') {
			o->all = true;
		} else if (c == 'J') {
			o->job = optarg;
		} else if (c == 'l' && lk_int64_parse(optarg, &n) == 0 && n > 0 && n <= 1000000) {
			o->limit = (int)n;
		} else if (c == 'h') {
			*code = fputs(help, stdout) < 0;
			return -1;
		} else {
			*code = usage_error(c == 'l' ? "--limit takes a number from 1 to 1000000"
						     : NULL);
			return -1;
		}
	}
	o->verb = optind < cli->argc ? cli->argv[optind] : NULL;
	if (!o->verb) {
		*code = usage_error("name what to do: list, show, replay or resolve");
		return -1;
	}
	if (strcmp(o->verb, "list") != 0 && strcmp(o->verb, "show") != 0 &&
	    strcmp(o->verb, "replay") != 0 && strcmp(o->verb, "resolve") != 0) {
		*code = usage_error("unknown action: use list, show, replay or resolve");
		return -1;
	}
	if (strcmp(o->verb, "list") == 0) {
		if (optind + 1 == cli->argc)
			return 0;
		*code = usage_error("list takes no ID");
		return -1;
	}
	if (optind + 2 != cli->argc || lk_int64_parse(cli->argv[optind + 1], &o->id) < 0 ||
	    o->id <= 0) {
		*code = usage_error("show, replay and resolve take one ID (a number from `lockstep "
				    "errors list`)");
		return -1;
	}
	return 0;
}

static int64_t num(const struct lk_value *v)
{
	int64_t n = 0;

	if (v->null || lk_int64_parse(v->p, &n) < 0)
		return 0;
	return n;
}

/* "42s", "7m", "3h", "5d": how long ago ms was. */
static void age(int64_t ms, char *out, size_t size)
{
	int64_t s = (lk_wall_ms() - ms) / 1000;

	if (s < 0)
		s = 0;
	if (s < 120)
		(void)snprintf(out, size, "%llds", (long long)s);
	else if (s < 7200)
		(void)snprintf(out, size, "%lldm", (long long)(s / 60));
	else if (s < 172800)
		(void)snprintf(out, size, "%lldh", (long long)(s / 3600));
	else
		(void)snprintf(out, size, "%lldd", (long long)(s / 86400));
}

static json_t *str_or_null(const struct lk_value *v)
{
	return v->null ? json_null() : lk_json_text(v->p, v->len);
}

/* A stored JSON text as a JSON value (its text when it does not parse). */
static json_t *parsed(const struct lk_value *v)
{
	return v->null ? json_null() : lk_json_parse_text(v->p, v->len);
}

static json_t *time_json(const struct lk_value *v)
{
	char buf[40];

	if (v->null || num(v) <= 0)
		return json_null();
	lk_cli_time(num(v), buf, sizeof(buf));
	return json_string(buf);
}

static json_t *dl_json(const struct lk_value *v, bool with_row)
{
	json_t *o = json_object();

	(void)json_object_set_new(o, "id", json_integer(num(&v[LK_DLCOL_ID])));
	(void)json_object_set_new(o, "job", str_or_null(&v[LK_DLCOL_JOB]));
	(void)json_object_set_new(o, "key", parsed(&v[LK_DLCOL_KEY]));
	(void)json_object_set_new(o, "change", str_or_null(&v[LK_DLCOL_CHANGE]));
	(void)json_object_set_new(o, "op", str_or_null(&v[LK_DLCOL_OP]));
	(void)json_object_set_new(o, "sqlstate", str_or_null(&v[LK_DLCOL_SQLSTATE]));
	(void)json_object_set_new(o, "message", str_or_null(&v[LK_DLCOL_MESSAGE]));
	(void)json_object_set_new(o, "attempts", json_integer(num(&v[LK_DLCOL_ATTEMPTS])));
	(void)json_object_set_new(o, "created", time_json(&v[LK_DLCOL_CREATED]));
	(void)json_object_set_new(o, "resolved", time_json(&v[LK_DLCOL_RESOLVED]));
	(void)json_object_set_new(o, "open", json_boolean(v[LK_DLCOL_RESOLVED].null));
	if (with_row)
		(void)json_object_set_new(o, "row", parsed(&v[LK_DLCOL_ROW]));
	return o;
}

static void print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	(void)printf("%s\n", s ? s : "{}");
	free(s);
	json_decref(o);
}

/* One line of the list: the message cut to fit a terminal line. */
static void print_line(const struct lk_value *v, bool all)
{
	const struct lk_value *m = &v[LK_DLCOL_MESSAGE];
	char ago[16];
	int cut = m->len > 60 ? 57 : (int)m->len;

	age(num(&v[LK_DLCOL_CREATED]), ago, sizeof(ago));
	(void)printf("%-6s %-16s %-20s %-6s %-9s %8lld %5s ", v[LK_DLCOL_ID].p, v[LK_DLCOL_JOB].p,
		     v[LK_DLCOL_KEY].p, v[LK_DLCOL_OP].p,
		     v[LK_DLCOL_SQLSTATE].null ? "-" : v[LK_DLCOL_SQLSTATE].p,
		     (long long)num(&v[LK_DLCOL_ATTEMPTS]), ago);
	if (all)
		(void)printf("%-8s ", v[LK_DLCOL_RESOLVED].null ? "open" : "resolved");
	(void)printf("%.*s%s\n", cut, m->null ? "" : m->p, m->len > 60 ? "..." : "");
}

static int cmd_list(struct lk_store *store, const struct errors_opts *o)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;
	bool more = false;
	int code = LK_EXIT_OK;

	lk_rows_init(&rows, LK_DLCOL_N);
	if (lk_store_dl_list(store, o->job, o->all, o->limit, &rows, &more, &err) < 0) {
		code = lk_cli_fail(&err);
	} else if (o->json) {
		json_t *a = json_array();

		for (int r = 0; r < rows.nrows; r++)
			(void)json_array_append_new(a, dl_json(LK_ROW(&rows, r), false));
		print_json(json_pack("{s:o, s:b}", "errors", a, "more", more));
	} else if (rows.nrows == 0) {
		(void)printf("no %sdead letters%s%s\n", o->all ? "" : "open ",
			     o->job ? " of job " : "", o->job ? o->job : "");
	} else {
		(void)printf("%-6s %-16s %-20s %-6s %-9s %8s %5s %s%s\n", "ID", "JOB", "KEY", "OP",
			     "SQLSTATE", "ATTEMPTS", "AGE", o->all ? "STATE    " : "", "MESSAGE");
		for (int r = 0; r < rows.nrows; r++)
			print_line(LK_ROW(&rows, r), o->all);
		if (more)
			(void)printf("(more than %d; --limit N shows more)\n", o->limit);
	}
	lk_rows_release(&rows);
	return code;
}

/* Reads dead letter id into rows; prints and returns an exit code when there is none. */
static int get_one(struct lk_store *store, int64_t id, struct lk_rows *rows)
{
	struct lk_err err = LK_ERR_INIT;

	if (lk_store_dl_get(store, id, rows, &err) < 0)
		return lk_cli_fail(&err);
	if (rows->nrows == 1)
		return LK_EXIT_OK;
	(void)fprintf(stderr,
		      "lockstep: no dead letter with id %lld (`lockstep errors list --all` lists "
		      "them)\n",
		      (long long)id);
	return LK_EXIT_FAILED;
}

static int cmd_show(struct lk_store *store, const struct errors_opts *o)
{
	struct lk_rows rows;
	const struct lk_value *v;
	char created[40], resolved[40];
	int code;

	lk_rows_init(&rows, LK_DLCOL_N);
	code = get_one(store, o->id, &rows);
	if (code != LK_EXIT_OK)
		goto out;
	v = LK_ROW(&rows, 0);
	if (o->json) {
		print_json(dl_json(v, true));
		goto out;
	}
	lk_cli_time(num(&v[LK_DLCOL_CREATED]), created, sizeof(created));
	lk_cli_time(num(&v[LK_DLCOL_RESOLVED]), resolved, sizeof(resolved));
	(void)printf("dead letter %s (%s)\n  job:       %s\n  key:       %s\n  change:    %s\n"
		     "  op:        %s\n  sqlstate:  %s\n  attempts:  %s\n  created:   %s\n"
		     "  resolved:  %s\n  message:   %s\n  row:       %s\n",
		     v[LK_DLCOL_ID].p, v[LK_DLCOL_RESOLVED].null ? "open" : "resolved",
		     v[LK_DLCOL_JOB].p, v[LK_DLCOL_KEY].p, v[LK_DLCOL_CHANGE].p, v[LK_DLCOL_OP].p,
		     v[LK_DLCOL_SQLSTATE].null ? "-" : v[LK_DLCOL_SQLSTATE].p,
		     v[LK_DLCOL_ATTEMPTS].p, created, resolved[0] ? resolved : "-",
		     v[LK_DLCOL_MESSAGE].null ? "" : v[LK_DLCOL_MESSAGE].p,
		     v[LK_DLCOL_ROW].null ? "null" : v[LK_DLCOL_ROW].p);
out:
	lk_rows_release(&rows);
	return code;
}

static int cmd_replay(struct lk_cli *cli, struct lk_store *store, const struct errors_opts *o)
{
	static const char *const done[] = {
		[LK_REPLAY_UPSERTED] = "the key's current source row was applied; resolved",
		[LK_REPLAY_DELETED] = "the key is gone from the source (or left `where`): its "
				      "delete was applied; resolved",
		[LK_REPLAY_NOTHING] = "the key is gone from the source and the job keeps deleted "
				      "rows (deletes: ignore): nothing to apply; resolved",
		[LK_REPLAY_QUEUED] =
			"real-time job: the key is queued for its applier (a changelog "
			"entry); the dead letter resolves itself once the key applies "
			"cleanly (`lockstep run`, or `lockstep sync JOB`)",
	};
	struct lk_sync_opts so = {.stop = &lk_cli_stop};
	struct lk_replay_result res;
	struct lk_err err = LK_ERR_INIT;

	if (lk_sync_replay(cli->cfg, store, o->id, &so, &res, &err) < 0) {
		if (res.job[0])
			(void)fprintf(stderr,
				      "lockstep: replay of dead letter %lld (job %s, key %s) "
				      "failed\n",
				      (long long)o->id, res.job, res.key);
		return lk_cli_fail(&err);
	}
	(void)printf("dead letter %lld (job %s, key %s): %s\n", (long long)o->id, res.job, res.key,
		     done[res.action]);
	return LK_EXIT_OK;
}

static int cmd_resolve(struct lk_store *store, const struct errors_opts *o)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;
	bool was_open = false;
	int code;

	lk_rows_init(&rows, LK_DLCOL_N);
	code = get_one(store, o->id, &rows);
	if (code == LK_EXIT_OK && lk_store_dl_resolve(store, o->id, &was_open, &err) < 0)
		code = lk_cli_fail(&err);
	else if (code == LK_EXIT_OK)
		(void)printf("dead letter %lld %s\n", (long long)o->id,
			     was_open ? "resolved (nothing was applied)" : "was resolved already");
	lk_rows_release(&rows);
	return code;
}

int lk_cmd_errors(struct lk_cli *cli)
{
	struct errors_opts o;
	struct lk_store *store;
	int code = 0;

	if (parse(cli, &o, &code) < 0)
		return code;
	store = lk_cli_open_store(cli, &code);
	if (!store)
		return code;
	if (strcmp(o.verb, "list") == 0)
		code = cmd_list(store, &o);
	else if (strcmp(o.verb, "show") == 0)
		code = cmd_show(store, &o);
	else if (strcmp(o.verb, "replay") == 0)
		code = cmd_replay(cli, store, &o);
	else
		code = cmd_resolve(store, &o);
	lk_store_close(store);
	return code;
}
