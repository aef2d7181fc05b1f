/*
 * test_config.c - the config loader: values and defaults of valid configs, the exact
 * "FILE:LINE:COL" and wording of errors for invalid ones, ${VAR} interpolation, SQLite
 * paths, table references, URL redaction, the dump, and docs/config.md covering every key.
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "config/config.h"
#include "config/config_int.h"
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_NAME "/etc/lk/t.yaml"

static struct lk_config *load(const char *yaml, struct lk_err *err)
{
	return lk_config_load_string(yaml, FILE_NAME, err);
}

/* Loads yaml and checks that it fails at `pos` ("LINE:COL") with `frag` in the message;
 * prints what differs and returns false otherwise. */
static bool fails_at(const char *name, const char *yaml, const char *pos, const char *frag)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_config *cfg = load(yaml, &err);
	char prefix[128];

	if (cfg) {
		lk_config_free(cfg);
		print_error("case %s: loaded, expected an error at %s with '%s'\n", name, pos,
			    frag);
		return false;
	}
	(void)snprintf(prefix, sizeof(prefix), "%s:%s: ", FILE_NAME, pos);
	if (err.code != LK_ERR_CONFIG || strncmp(err.msg, prefix, strlen(prefix)) != 0 ||
	    !strstr(err.msg, frag)) {
		print_error("case %s:\n  got      [%d] %s\n  expected %s... %s\n", name,
			    (int)err.code, err.msg, prefix, frag);
		return false;
	}
	return true;
}

static void expect_fail(const char *name, const char *yaml, const char *pos, const char *frag)
{
	if (!fails_at(name, yaml, pos, frag))
		fail();
}

static struct lk_config *load_ok(const char *yaml)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_config *cfg = load(yaml, &err);

	if (!cfg)
		fail_msg("expected a valid config, got: %s", err.msg);
	return cfg;
}

/* ---- valid configs ---- */

static const char full_yaml[] =
	"# a full config\n"
	"state: postgres://lk:statepw@state-host/lockstep\n"
	"http:\n"
	"  listen: 0.0.0.0:9000\n"
	"  token: s3cr3t-token\n"
	"log:\n"
	"  format: json\n"
	"  level: debug\n"
	"databases:\n"
	"  backend:\n"
	"    url: postgres://sync:pw1@db1/myusta_backend\n"
	"    pool: 10\n"
	"    listen_url: postgres://sync:pw1@db1:5432/myusta_backend\n"
	"  chat: postgresql://sync@db2/myusta_chatapp\n"
	"  kw: host=db3 port=5432 dbname=x password='p w'\n"
	"  edge: sqlite:edge.db\n"
	"jobs:\n"
	"  users:\n"
	"    kind: sync\n"
	"    source:\n"
	"      db: backend\n"
	"      table: public.users\n"
	"      key: [id]\n"
	"      columns: [id, first_name, last_name, updated_at]\n"
	"      where: \"status = 'active'\"\n"
	"    target:\n"
	"      db: chat\n"
	"      table: mirror.users\n"
	"      create: true\n"
	"      deletes: soft:deleted_at\n"
	"    mode: poll\n"
	"    cursor: updated_at\n"
	"    every: 1m\n"
	"    lookback: 3m\n"
	"    batch: 500\n"
	"    snapshot_deletes: True\n"
	"    retry: { attempts: 5, initial: 500ms, max: 1h, multiplier: 1.5 }\n"
	"  copy-edge:\n"
	"    source: {db: edge, table: items, key: item_id}\n"
	"    target: {db: kw, deletes: ignore}\n"
	"    schedule: \"0 */5 * * * *\"\n";

static void test_full_config_values(void **state)
{
	struct lk_config *cfg = load_ok(full_yaml);
	const struct lk_job *j, *e;
	const struct lk_dbconf *d;

	(void)state;
	assert_string_equal(cfg->path, FILE_NAME);
	assert_string_equal(cfg->dir, "/etc/lk");
	assert_int_equal(cfg->state_kind, LK_DB_POSTGRES);
	assert_null(cfg->state_path);
	assert_string_equal(cfg->http.listen, "0.0.0.0:9000");
	assert_string_equal(cfg->http.token, "s3cr3t-token");
	assert_int_equal(cfg->log.format, LK_LOG_JSON);
	assert_int_equal(cfg->log.level, LK_LOG_DEBUG);
	assert_int_equal(cfg->ndbs, 4);
	d = lk_config_db(cfg, "backend");
	assert_non_null(d);
	assert_int_equal(d->kind, LK_DB_POSTGRES);
	assert_int_equal(d->pool, 10);
	assert_string_equal(d->listen_url, "postgres://sync:pw1@db1:5432/myusta_backend");
	assert_int_equal(d->line, 10);
	assert_int_equal(d->col, 3);
	d = lk_config_db(cfg, "chat");
	assert_int_equal(d->kind, LK_DB_POSTGRES);
	assert_int_equal(d->pool, 4);
	assert_null(d->listen_url);
	assert_int_equal(lk_config_db(cfg, "kw")->kind, LK_DB_POSTGRES);
	d = lk_config_db(cfg, "edge");
	assert_int_equal(d->kind, LK_DB_SQLITE);
	assert_string_equal(d->path, "/etc/lk/edge.db");
	assert_string_equal(d->url, "sqlite:edge.db");
	assert_null(lk_config_db(cfg, "nope"));

	assert_int_equal(cfg->njobs, 2);
	j = lk_config_job(cfg, "users");
	assert_non_null(j);
	assert_int_equal(j->line, 18);
	assert_int_equal(j->kind, LK_JOB_SYNC);
	assert_string_equal(cfg->dbs[j->source.db].name, "backend");
	assert_string_equal(j->source.table.schema, "public");
	assert_string_equal(j->source.table.name, "users");
	assert_int_equal(j->source.nkey, 1);
	assert_string_equal(j->source.key[0], "id");
	assert_int_equal(j->source.ncolumns, 4);
	assert_string_equal(j->source.columns[3], "updated_at");
	assert_string_equal(j->source.where, "status = 'active'");
	assert_string_equal(cfg->dbs[j->target.db].name, "chat");
	assert_string_equal(j->target.table.schema, "mirror");
	assert_true(j->target.create);
	assert_int_equal(j->target.deletes, LK_DELETES_SOFT);
	assert_string_equal(j->target.soft_column, "deleted_at");
	assert_int_equal(j->mode, LK_MODE_POLL);
	assert_string_equal(j->cursor, "updated_at");
	assert_int_equal(j->every_ms, 60000);
	assert_int_equal(j->lookback_ms, 180000);
	assert_int_equal(j->batch, 500);
	assert_true(j->snapshot_deletes);
	assert_int_equal(j->retry.attempts, 5);
	assert_int_equal(j->retry.initial_ms, 500);
	assert_int_equal(j->retry.max_ms, 3600000);
	assert_true(j->retry.multiplier > 1.49 && j->retry.multiplier < 1.51);

	e = lk_config_job(cfg, "copy-edge");
	assert_non_null(e);
	assert_int_equal(e->source.nkey, 1); /* a single string is a one-column key */
	assert_string_equal(e->source.key[0], "item_id");
	assert_null(e->source.table.schema);
	assert_string_equal(e->target.table.name, "items"); /* defaults to the source's */
	assert_null(e->target.table.schema);
	assert_int_equal(e->target.deletes, LK_DELETES_IGNORE);
	assert_string_equal(e->schedule, "0 */5 * * * *");
	assert_int_equal(e->every_ms, 0);
	assert_null(lk_config_job(cfg, "nope"));
	lk_config_free(cfg);
}

static void test_defaults(void **state)
{
	struct lk_config *cfg = load_ok("databases: {a: 'sqlite:a.db', b: 'sqlite:/data/b.db'}\n"
					"jobs:\n"
					"  j:\n"
					"    source: {db: a, table: '\"odd.schema\".users'}\n"
					"    target: {db: b}\n");
	const struct lk_job *j = &cfg->jobs[0];

	(void)state;
	assert_string_equal(cfg->state_url, "sqlite:lockstep-state.db");
	assert_int_equal(cfg->state_kind, LK_DB_SQLITE);
	assert_string_equal(cfg->state_path, "/etc/lk/lockstep-state.db");
	assert_string_equal(cfg->http.listen, "127.0.0.1:8433");
	assert_null(cfg->http.token);
	assert_int_equal(cfg->log.format, LK_LOG_TEXT);
	assert_int_equal(cfg->log.level, LK_LOG_INFO);
	assert_string_equal(cfg->dbs[1].path, "/data/b.db");
	assert_int_equal(cfg->dbs[0].pool, 4);
	assert_int_equal(j->kind, LK_JOB_SYNC);
	assert_int_equal(j->mode, LK_MODE_SNAPSHOT);
	assert_int_equal(j->batch, 1000);
	assert_false(j->snapshot_deletes);
	assert_int_equal(j->retry.attempts, 3);
	assert_int_equal(j->retry.initial_ms, 1000);
	assert_int_equal(j->retry.max_ms, 30000);
	assert_true(j->retry.multiplier == 2.0);
	assert_null(j->source.key);
	assert_int_equal(j->source.nkey, 0);
	assert_null(j->source.columns);
	assert_null(j->source.where);
	assert_null(j->cursor);
	assert_null(j->schedule);
	assert_int_equal(j->every_ms, 0);
	assert_int_equal(j->lookback_ms, 0);
	assert_false(j->target.create);
	assert_int_equal(j->target.deletes, LK_DELETES_DELETE);
	assert_null(j->target.soft_column);
	assert_string_equal(j->source.table.schema, "odd.schema");
	assert_string_equal(j->target.table.schema, "odd.schema");
	assert_string_equal(j->target.table.name, "users");
	assert_int_equal(j->source.db, 0);
	assert_int_equal(j->target.db, 1);
	lk_config_free(cfg);
}

static void test_empty_and_minimal(void **state)
{
	struct lk_config *cfg = load_ok("");

	(void)state;
	assert_int_equal(cfg->ndbs, 0);
	assert_int_equal(cfg->njobs, 0);
	lk_config_free(cfg);
	cfg = load_ok("# only a comment\n---\n");
	assert_int_equal(cfg->njobs, 0);
	lk_config_free(cfg);
	cfg = load_ok("state: 'sqlite::memory:'\nhttp:\nlog: {level: null}\njobs: {}\n");
	assert_string_equal(cfg->state_path, ":memory:");
	assert_string_equal(cfg->http.listen, "127.0.0.1:8433");
	assert_int_equal(cfg->log.level, LK_LOG_INFO);
	lk_config_free(cfg);
}

static void test_table_refs(void **state)
{
	static const struct {
		const char *in, *schema, *name;
	} ok[] = {
		{"users", NULL, "users"},
		{"public.users", "public", "users"},
		{"\"odd.schema\".users", "odd.schema", "users"},
		{"\"a\"\"b\".\"c.d\"", "a\"b", "c.d"},
		{"\"x.y\"", NULL, "x.y"},
		{"My Table", NULL, "My Table"},
		{"Sch. T", "Sch", " T"},
		{"we\"ird", NULL, "we\"ird"},
	};
	static const char *const bad[] = {"", ".t", "s.", "a.b.c", "\"a.b", "\"a\"x.b", "s..t"};
	char why[160];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct lk_tref t = {NULL, NULL};

		if (lk_tref_parse(ok[i].in, &t, why, sizeof(why)) < 0)
			fail_msg("'%s' refused: %s", ok[i].in, why);
		if (ok[i].schema)
			assert_string_equal(t.schema, ok[i].schema);
		else
			assert_null(t.schema);
		assert_string_equal(t.name, ok[i].name);
		free(t.schema);
		free(t.name);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lk_tref t = {NULL, NULL};

		if (lk_tref_parse(bad[i], &t, why, sizeof(why)) == 0)
			fail_msg("'%s' accepted", bad[i]);
	}
}

static void test_interpolation(void **state)
{
	struct lk_config *cfg;

	(void)state;
	assert_int_equal(setenv("LK_T_DB", "sqlite:from-env.db", 1), 0);
	assert_int_equal(setenv("LK_T_EMPTY", "", 1), 0);
	assert_int_equal(setenv("LK_T_TOKEN", "tok", 1), 0);
	(void)unsetenv("LK_T_UNSET");
	cfg = load_ok("# ${LK_T_UNSET} in a comment is left alone\n"
		      "databases:\n"
		      "  a: ${LK_T_DB}\n"
		      "  b: ${LK_T_UNSET:-sqlite:default.db}   # trailing ${LK_T_UNSET}\n"
		      "  c: ${LK_T_EMPTY:-sqlite:empty-default.db}\n"
		      "  d: sqlite:pa$$th-$x.db\n"
		      "http: {token: '${LK_T_TOKEN}', listen: '127.0.0.1:${LK_T_UNSET:-9999}'}\n");
	assert_string_equal(cfg->dbs[0].url, "sqlite:from-env.db");
	assert_string_equal(cfg->dbs[1].url, "sqlite:default.db");
	assert_string_equal(cfg->dbs[2].url, "sqlite:empty-default.db");
	assert_string_equal(cfg->dbs[3].url, "sqlite:pa$th-$x.db");
	assert_string_equal(cfg->http.token, "tok");
	assert_string_equal(cfg->http.listen, "127.0.0.1:9999");
	lk_config_free(cfg);
	/* An empty default gives null: the token stays unset. */
	cfg = load_ok("http:\n  token: ${LK_T_UNSET:-}\n");
	assert_null(cfg->http.token);
	lk_config_free(cfg);
}

static void test_sqlite_paths(void **state)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_config *cfg;
	char cwd[4096], want[4200];

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	cfg = lk_config_load_string("databases: {a: 'sqlite:data/a.db', m: 'sqlite::memory:'}\n",
				    "conf/lockstep.yaml", &err);
	assert_non_null(cfg);
	(void)snprintf(want, sizeof(want), "%s/conf", cwd);
	assert_string_equal(cfg->dir, want);
	(void)snprintf(want, sizeof(want), "%s/conf/data/a.db", cwd);
	assert_string_equal(cfg->dbs[0].path, want);
	assert_string_equal(cfg->dbs[1].path, ":memory:");
	(void)snprintf(want, sizeof(want), "%s/conf/lockstep-state.db", cwd);
	assert_string_equal(cfg->state_path, want);
	lk_config_free(cfg);
	cfg = lk_config_load_string("state: sqlite:s.db\n", "./lockstep.yaml", &err);
	assert_non_null(cfg);
	(void)snprintf(want, sizeof(want), "%s/s.db", cwd);
	assert_string_equal(cfg->state_path, want);
	lk_config_free(cfg);
	cfg = lk_config_load_string("state: sqlite:s.db\n", "/x.yaml", &err);
	assert_non_null(cfg);
	assert_string_equal(cfg->state_path, "/s.db");
	lk_config_free(cfg);
}

/* ---- invalid configs: each error names the exact position ---- */

#define DBS "databases:\n  a: sqlite:a.db\n  b: sqlite:b.db\n" /* lines 1-3 */
#define JOB DBS "jobs:\n  j:\n"				       /* job body from line 6 */
#define SRC "    source: {db: a, table: t}\n"
#define TGT "    target: {db: b}\n"

static const struct bad_case {
	const char *name, *yaml, *pos, *frag;
} bad_cases[] = {
	{"unknown top key", "databses:\n  a: sqlite:a.db\n", "1:1",
	 "found unknown key 'databses'; did you mean 'databases'?"},
	{"unknown job key", JOB "    sorce: {db: a, table: t}\n", "6:5",
	 "expected a key of job 'j', found unknown key 'sorce'; did you mean 'source'?"},
	{"unknown source key", JOB "    source: {db: a, tabel: t}\n", "6:21",
	 "found unknown key 'tabel'; did you mean 'table'?"},
	{"unknown key, no hint", JOB SRC TGT "    frobnicate: 1\n", "8:5",
	 "(kind, source, target, mode, cursor"},
	{"list for a mapping", "log: [text]\n", "1:6", "expected a mapping for log, found a list"},
	{"mapping for a string", JOB "    source: {db: a, table: t, where: {x: 1}}\n" TGT, "6:38",
	 "expected an SQL condition string, found a mapping"},
	{"list for a table", JOB "    source:\n      db: a\n      table: [t]\n" TGT, "8:14",
	 "expected a table as name or schema.name, found a list"},
	{"bad duration", JOB SRC TGT "    every: 5 minutes\n", "8:12",
	 "expected a positive duration with a unit (500ms, 30s, 5m, 2h, 1d), found '5 minutes'"},
	{"duration without unit", JOB SRC TGT "    every: 30\n", "8:12",
	 "expected a positive duration"},
	{"zero every", JOB SRC TGT "    every: 0s\n", "8:12", "expected a positive duration"},
	{"unknown database",
	 DBS "  chat: sqlite:c.db\njobs:\n  j:\n" SRC "    target: {db: chatt}\n", "8:18",
	 "expected a database defined under databases, found 'chatt'; did you mean 'chat'?"},
	{"unknown source database", JOB "    source: {db: nope, table: t}\n" TGT, "6:18",
	 "found 'nope'"},
	{"missing source.table", JOB "    source: {db: a}\n" TGT, "6:5",
	 "expected key 'table' in source, found none"},
	{"missing source", JOB TGT, "5:3",
	 "expected key 'source' in a job of kind sync, found none"},
	{"missing target.db", JOB SRC "    target:\n      table: x\n", "7:5",
	 "expected key 'db' in target, found none"},
	{"mode logical", JOB SRC TGT "    mode: logical\n", "8:11", "not supported yet"},
	{"bad mode", JOB SRC TGT "    mode: snapshots\n", "8:11",
	 "expected snapshot | poll | realtime | logical, found 'snapshots'; did you mean "
	 "'snapshot'?"},
	{"kind exec with source", JOB "    kind: exec\n" SRC TGT, "7:5",
	 "expected no key 'source' in a job of kind exec, found it (it belongs to kind sync)"},
	{"kind sql without db", JOB "    kind: sql\n", "5:3",
	 "expected key 'db' in a job of kind sql, found none"},
	{"kind sql without sql", JOB "    kind: sql\n    db: a\n", "5:3",
	 "expected key 'sql' in a job of kind sql, found none"},
	{"kind exec without command", JOB "    kind: exec\n", "5:3",
	 "expected key 'command' in a job of kind exec, found none"},
	{"bad overlap", JOB SRC TGT "    overlap: wait\n", "8:14", "expected skip | queue"},
	{"bad misfire", JOB SRC TGT "    misfire: all\n", "8:14", "expected skip | once | catchup"},
	{"key command on sync", JOB "    command: [node, x.js]\n", "6:5",
	 "expected no key 'command' in a job of kind sync, found it (it belongs to kind exec)"},
	{"timeout on sync", JOB SRC TGT "    timeout: 5s\n", "8:5",
	 "expected no key 'timeout' in a job of kind sync"},
	{"realtime with every", JOB SRC TGT "    mode: realtime\n    every: 1m\n", "9:5",
	 "expected no schedule for mode realtime"},
	{"bad memory limit", "memory:\n  limit: lots\n", "2:10", "expected a size"},
	{"short retention", "retention: 10ms\n", "1:12", "expected"},
	{"cluster renew over half the lease", "cluster: {lease: 10s, renew: 6s}\n", "1:30",
	 "expected cluster.renew of at most half of cluster.lease"},
	{"cluster lease too short", "cluster: {lease: 1s}\n", "1:18",
	 "expected a duration of at least 2000 ms, found '1s'"},
	{"unset variable", "databases:\n  a: ${LK_T_SURELY_UNSET}\n", "2:6",
	 "environment variable 'LK_T_SURELY_UNSET' is not set"},
	{"bad variable name", "databases:\n  a: x${1X}\n", "2:7", "expected ${NAME}"},
	{"variable with a line break", "databases:\n  a: ${LK_T_NEWLINE}\n", "2:6",
	 "environment variable 'LK_T_NEWLINE' holds a line break"},
	{"defaulted variable with a line break", "databases:\n  a: ${LK_T_NEWLINE:-x}\n", "2:6",
	 "holds a line break"},
	{"unclosed variable", "databases:\n  a: ${X:-abc\n  b: c\n", "2:6", "expected '}'"},
	{"bad deletes", JOB SRC "    target: {db: b, deletes: remove}\n", "7:30",
	 "expected delete | ignore | soft:COLUMN, found 'remove'"},
	{"soft without column", JOB SRC "    target: {db: b, deletes: 'soft:'}\n", "7:30",
	 "expected soft:COLUMN"},
	{"batch 0", JOB SRC TGT "    batch: 0\n", "8:12",
	 "expected an integer from 1 to 100000, found '0'"},
	{"batch too big", JOB SRC TGT "    batch: 100001\n", "8:12", "from 1 to 100000"},
	{"batch quoted", JOB SRC TGT "    batch: \"100\"\n", "8:12",
	 "found the quoted string '100'"},
	{"tab indentation", "log:\n\tlevel: info\n", "2:1",
	 "invalid YAML: tab character may not be used as indentation"},
	{"bad indentation", "log:\n  level: info\n    format: text\n", "2:10", "invalid YAML"},
	{"unquoted memory url", "state: sqlite::memory:\n", "1:22",
	 "invalid YAML: invalid nested block mapping on the same line (quote a value"},
	{"unclosed flow", "log: {level: info\n", "2:1", "invalid YAML"},
	{"duplicate key", JOB SRC TGT "  j:\n" SRC TGT, "8:3",
	 "expected each key once, found 'j' again (first at line 5)"},
	{"duplicate nested key", "log:\n  level: info\n  level: warn\n", "3:3",
	 "found 'level' again"},
	{"alias", "databases:\n  a: &x sqlite:a.db\n  b: *x\n", "2:6", "found an anchor '&x'"},
	{"merge key alias", "log: *y\n", "1:6", "found an alias '*y'"},
	{"tag", "log: {level: !!str info}\n", "1:14", "found a tag"},
	{"two documents", "log: {}\n---\nlog: {}\n", "2:1", "found another document"},
	{"top-level list", "- a\n- b\n", "1:1",
	 "expected a mapping for the top level, found a list"},
	{"poll without cursor", JOB SRC TGT "    mode: poll\n", "8:11",
	 "expected key 'cursor' (the monotonic column) with mode poll, found none"},
	{"lookback without poll", JOB SRC TGT "    lookback: 1m\n", "8:15",
	 "expected lookback only with mode poll"},
	{"key not in columns",
	 JOB "    source: {db: a, table: t, key: [id], columns: [name, ts]}\n" TGT, "6:37",
	 "expected key column 'id' among source.columns"},
	{"cursor not in columns",
	 JOB "    source: {db: a, table: t, columns: [id]}\n" TGT "    mode: poll\n"
	     "    cursor: ts\n",
	 "9:13", "expected cursor column 'ts' among source.columns"},
	{"empty key list", JOB "    source: {db: a, table: t, key: []}\n" TGT, "6:36",
	 "expected a non-empty list of names, found []"},
	{"duplicate column", JOB "    source: {db: a, table: t, columns: [id, id]}\n" TGT, "6:45",
	 "expected distinct names, found 'id' twice"},
	{"empty column name", JOB "    source: {db: a, table: t, columns: [id, '']}\n" TGT, "6:45",
	 "expected a non-empty name, found the quoted string ''"},
	{"bool yes", JOB SRC "    target: {db: b, create: yes}\n", "7:29",
	 "expected true or false, found 'yes'"},
	{"three-part table", JOB "    source: {db: a, table: a.b.c}\n" TGT, "6:28",
	 "more than two dot-separated parts"},
	{"unclosed quoted table", JOB "    source: {db: a, table: '\"a.b'}\n" TGT, "6:28",
	 "a double quote is not closed"},
	{"bad url", "databases:\n  a: mysql://u:hunter2@h/db\n", "2:6",
	 "expected a postgres:// URL, a libpq keyword string or sqlite:PATH, found "
	 "'mysql://u:***@h/db'"},
	{"sqlite without path", "databases:\n  a: 'sqlite:'\n", "2:6", "sqlite:PATH"},
	{"bad state url", "state: lockstep.db\n", "1:8", "found 'lockstep.db'"},
	{"db without url", "databases:\n  a:\n    pool: 2\n", "2:3",
	 "expected key 'url' in database 'a', found none"},
	{"null database", "databases:\n  a:\n", "2:3", "expected a database URL or a mapping"},
	{"pool 0", "databases:\n  a: {url: 'sqlite:a.db', pool: 0}\n", "2:33",
	 "expected an integer from 1 to 1000"},
	{"listen_url on sqlite", "databases:\n  a: {url: 'sqlite:a.db', listen_url: 'host=x'}\n",
	 "2:39", "expected listen_url only on a PostgreSQL database"},
	{"retry max below initial", JOB SRC TGT "    retry: {initial: 10s, max: 1s}\n", "8:32",
	 "expected retry.max of at least retry.initial (10000 ms), found 1000 ms"},
	{"retry attempts 0", JOB SRC TGT "    retry: {attempts: 0}\n", "8:23",
	 "expected an integer from 1 to 1000"},
	{"multiplier below 1", JOB SRC TGT "    retry: {multiplier: 0.5}\n", "8:25",
	 "expected a number from 1 to 100, found '0.5'"},
	{"unknown retry key", JOB SRC TGT "    retry: {atempts: 2}\n", "8:13",
	 "did you mean 'attempts'?"},
	{"bad listen", "http: {listen: localhost}\n", "1:16", "expected HOST:PORT"},
	{"bad port", "http: {listen: 'h:99999'}\n", "1:16", "expected HOST:PORT"},
	{"bad level", "log: {level: verbose}\n", "1:14",
	 "expected debug | info | warn | error, found 'verbose'"},
	{"bad format", "log: {format: jsn}\n", "1:15", "did you mean 'json'?"},
	{"bad job name", DBS "jobs:\n  a/b:\n" SRC TGT, "5:3", "expected a job name"},
	{"job not a mapping", DBS "jobs:\n  j: [1]\n", "5:6", "expected a mapping for job 'j'"},
	{"jobs a list", "jobs: [a]\n", "1:7", "expected a mapping of job names, found a list"},
	{"verify without a time", JOB SRC TGT "    verify: {repair: true}\n", "8:13",
	 "expected verify.every (e.g. every: 10m) or verify.schedule"},
	{"verify every and schedule", JOB SRC TGT "    verify: {every: 1m, schedule: '@hourly'}\n",
	 "8:35", "expected either verify.every or verify.schedule, found both"},
	{"verify every below 1s", JOB SRC TGT "    verify: {every: 10ms}\n", "8:21",
	 "expected a duration"},
	{"unknown verify key", JOB SRC TGT "    verify: {every: 1m, repiar: true}\n", "8:25",
	 "did you mean 'repair'?"},
	{"verify rate negative", JOB SRC TGT "    verify: {every: 1m, rate: -1}\n", "8:31",
	 "expected an integer from 0"},
	{"every and schedule", JOB SRC TGT "    every: 1m\n    schedule: '@hourly'\n", "9:15",
	 "expected either every or schedule, found both (every at line 8)"},
	{"same table", JOB "    source: {db: a, table: t}\n    target: {db: a, table: main.t}\n",
	 "7:28", "expected a target table other than the source table"},
	{"null required", JOB "    source: {db: a, table: }\n" TGT, "6:21",
	 "expected a table as name or schema.name for 'table', found an empty value"},
	{"null table value", JOB "    source:\n      db: a\n      table: ~\n" TGT, "8:7",
	 "expected a table as name or schema.name for 'table', found null"},
	{"complex key", "? [a]\n: b\n", "1:3", "expected a key, found a list"},
	/* found by fuzz/fuzz_config.c (fuzz/regress/fuzz_config/) */
	{"empty target", JOB SRC "    target:\n", "5:3",
	 "expected key 'target' in a job of kind sync, found none"},
	{"empty source", JOB "    source:\n" TGT, "5:3",
	 "expected key 'source' in a job of kind sync, found none"},
	{"not UTF-8", "%\xf9\n", "1:2", "invalid YAML: expected UTF-8 text, found the byte 0xF9"},
	{"latin-1 in a comment", "# caf\xe9\nlog: {}\n", "1:6", "expected UTF-8 text"},
};

static void test_invalid_configs(void **state)
{
	int failed = 0;

	(void)state;
	(void)unsetenv("LK_T_SURELY_UNSET");
	assert_int_equal(setenv("LK_T_NEWLINE", "sqlite:x.db\n  b: sqlite:injected.db", 1), 0);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		failed += !fails_at(bad_cases[i].name, bad_cases[i].yaml, bad_cases[i].pos,
				    bad_cases[i].frag);
	if (failed)
		fail_msg("%d of %zu invalid configs failed differently", failed,
			 sizeof(bad_cases) / sizeof(bad_cases[0]));
}

static void test_positions_after_interpolation(void **state)
{
	(void)state;
	assert_int_equal(setenv("LK_T_LONG", "a-very-very-very-long-value-for-a-db", 1), 0);
	assert_int_equal(setenv("LK_T_NL", "first\nsecond\nthird", 1), 0);
	assert_int_equal(setenv("LK_T_NL3", "first\n   second\n   third", 1), 0);
	/* The replacement is much longer than ${LK_T_LONG}; the column is still the file's. */
	expect_fail("long value", "databases: {a: \"sqlite:${LK_T_LONG}\", b: [x]}\n", "1:42",
		    "expected a database URL or a mapping with url, found a list");
	/* An error inside a replacement points at its ${ (quoted: at the quote). */
	expect_fail("inside value", "log: {level: '${LK_T_LONG}'}\n", "1:14",
		    "found the quoted string 'a-very-very-very-long-value-for-a-db'");
	expect_fail("inside plain value", "log: {level: ${LK_T_LONG}}\n", "1:14",
		    "found 'a-very-very-very-long-value-for-a-db'");
	/* A value with a line break is refused at its ${ (it could add YAML keys), quoted
	 * or not, wherever it stands. */
	expect_fail("multi-line value", "x1: \"${LK_T_NL}\"\nlog: {level: nope}\n", "1:6",
		    "environment variable 'LK_T_NL' holds a line break");
	expect_fail("multi-line value later", "http:\n  token: \"${LK_T_NL3}\"\nstate: nope\n",
		    "2:11", "environment variable 'LK_T_NL3' holds a line break");
	expect_fail("$$ shifts nothing", "http: {token: 'a$$b$$c', listen: [x]}\n", "1:34",
		    "expected HOST:PORT (like 127.0.0.1:8433), found a list");
}

static void test_size_converter(void **state)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_cfgctx c = {"s.yaml", NULL, &err};
	struct lk_ynode n = {LK_Y_SCALAR, false, (char *)"64 MB", 5, 3, 9, NULL, 0};
	int64_t v = 0;

	(void)state;
	assert_int_equal(lk_cfg_size(&c, &n, &v), -1);
	assert_string_equal(err.msg,
			    "s.yaml:3:9: expected a size (512, 64KiB, 64MiB, 1GiB), found '64 MB'");
	n.text = (char *)"64MiB";
	assert_int_equal(lk_cfg_size(&c, &n, &v), 0);
	assert_int_equal(v, 64 * 1024 * 1024);
}

static void test_missing_file(void **state)
{
	struct lk_err err = LK_ERR_INIT;

	(void)state;
	assert_null(lk_config_load("/nonexistent/dir/lockstep.yaml", &err));
	assert_int_equal(err.code, LK_ERR_CONFIG);
	assert_string_equal(err.msg, "cannot read config '/nonexistent/dir/lockstep.yaml': No such "
				     "file or directory");
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/lk_test_config_XXXXXX";
	struct lk_err err = LK_ERR_INIT;
	struct lk_config *cfg;
	int fd = mkstemp(path);
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_true(fputs("log:\n  level: warn\n  lvl: x\n", f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_null(lk_config_load(path, &err));
	assert_non_null(strstr(
		err.msg, ":3:3: expected a key of log (format, level), found unknown key 'lvl'"));
	assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_true(fputs("log:\n  level: warn\n", f) >= 0);
	assert_int_equal(fclose(f), 0);
	cfg = lk_config_load(path, &err);
	assert_non_null(cfg);
	assert_int_equal(cfg->log.level, LK_LOG_WARN);
	assert_string_equal(cfg->dir, "/tmp");
	lk_config_free(cfg);
	assert_int_equal(unlink(path), 0);
	lk_config_free(NULL);
}

static void redacts(const char *in, const char *want)
{
	char out[256];

	lk_redact_url(in, out, sizeof(out));
	if (strcmp(out, want) != 0)
		fail_msg("redact '%s':\n  got  '%s'\n  want '%s'", in, out, want);
}

static void test_redaction(void **state)
{
	char small[12];

	(void)state;
	redacts("postgres://user:secret@host/db", "postgres://user:***@host/db");
	redacts("postgresql://user:secret@host:5432/db?sslmode=require",
		"postgresql://user:***@host:5432/db?sslmode=require");
	redacts("postgres://user@host/db", "postgres://user@host/db");
	redacts("postgres://host/db", "postgres://host/db");
	redacts("postgres://:pw@host/db", "postgres://:***@host/db");
	redacts("postgres://u:p@ss/w?rd@host/db", "postgres://u:***@host/db");
	redacts("postgres://host/db?user=u&password=secret&sslmode=x",
		"postgres://host/db?user=u&password=***&sslmode=x");
	redacts("postgres://host/db?password=secret", "postgres://host/db?password=***");
	redacts("postgres://u:a@host/db?sslpassword=k", "postgres://u:***@host/db?sslpassword=***");
	redacts("host=x password=secret dbname=y", "host=x password=*** dbname=y");
	redacts("host=x password = 'se cr\\'et' dbname=y", "host=x password = *** dbname=y");
	redacts("password=secret", "password=***");
	redacts("host=x sslpassword=k", "host=x sslpassword=***");
	redacts("dbname='my db' user=u", "dbname='my db' user=u");
	redacts("sqlite:edge.db", "sqlite:edge.db");
	/* trailing blanks after a keyword string: read past the NUL before (fuzz_config) */
	redacts("host=db password=secret ", "host=db password=*** ");
	redacts("host=db   ", "host=db   ");
	redacts("", "");
	lk_redact_url(NULL, small, sizeof(small));
	assert_string_equal(small, "");
	lk_redact_url("postgres://user:secret@host/db", small, sizeof(small));
	assert_string_equal(small, "postgres://");
}

static void test_dump_has_no_secrets(void **state)
{
	struct lk_config *cfg = load_ok(full_yaml);
	struct lk_buf b = LK_BUF_INIT;

	(void)state;
	lk_config_dump(cfg, &b);
	assert_null(strstr(b.buf, "s3cr3t-token"));
	assert_null(strstr(b.buf, "pw1"));
	assert_null(strstr(b.buf, "statepw"));
	assert_null(strstr(b.buf, "p w"));
	assert_non_null(strstr(b.buf, "token: ***"));
	assert_non_null(strstr(b.buf, "postgres://sync:***@db1/myusta_backend"));
	assert_non_null(strstr(b.buf, "source: backend/public.users, key: [id]"));
	assert_non_null(strstr(b.buf, "target: chat/mirror.users, create: true, deletes: "
				      "soft:deleted_at"));
	assert_non_null(strstr(b.buf, "every: 1m"));
	assert_non_null(strstr(b.buf, "edge: {kind: sqlite, path: /etc/lk/edge.db"));
	lk_buf_release(&b);
	lk_config_free(cfg);
}

static void test_suggest(void **state)
{
	static const char *const c[] = {"source", "target", "mode", "batch"};

	(void)state;
	assert_string_equal(lk_cfg_suggest("sorce", c, 4), "source");
	assert_string_equal(lk_cfg_suggest("targte", c, 4), "target");
	assert_string_equal(lk_cfg_suggest("mod", c, 4), "mode");
	assert_null(lk_cfg_suggest("zzzzzz", c, 4));
	assert_null(lk_cfg_suggest("x", c, 4));
}

/*
 * Puts the path of docs/config.md in path: beside this source when the compiler named it
 * by an absolute path (CMake does), else in the first folder above the test executable
 * that has one (a build folder inside the tree). Fails the test when neither has it.
 */
static void find_config_doc(char *path, size_t size)
{
	const char *slash = strrchr(__FILE__, '/');
	char dir[4096];
	ssize_t n;

	if (slash && __FILE__[0] == '/') {
		(void)snprintf(path, size, "%.*s/../../docs/config.md", (int)(slash - __FILE__),
			       __FILE__);
		if (access(path, R_OK) == 0)
			return;
	}
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	if (n > 0) {
		char *cut;

		dir[n] = '\0';
		while ((cut = strrchr(dir, '/')) != NULL) {
			*cut = '\0';
			(void)snprintf(path, size, "%s/docs/config.md", dir);
			if (access(path, R_OK) == 0)
				return;
		}
	}
	fail_msg("cannot find docs/config.md beside %s or above the test executable", __FILE__);
}

/* docs/config.md documents every key of the table, as `section.key`. */
static void test_docs_cover_every_key(void **state)
{
	char path[4096];
	struct lk_buf doc = LK_BUF_INIT;
	const struct lk_key *keys;
	size_t n, got;
	char chunk[4096];
	FILE *f;

	(void)state;
	find_config_doc(path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		lk_buf_add(&doc, chunk, got);
	(void)fclose(f);
	keys = lk_config_keys(&n);
	for (size_t i = 0; i < n; i++) {
		const char *sect = lk_config_sect_name(keys[i].sect);
		char want[128];

		(void)snprintf(want, sizeof(want), "`%s%s%s`", sect, *sect ? "." : "",
			       keys[i].name);
		if (!strstr(doc.buf, want))
			fail_msg("docs/config.md does not document %s", want);
	}
	lk_buf_release(&doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_config_values),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_and_minimal),
		cmocka_unit_test(test_table_refs),
		cmocka_unit_test(test_interpolation),
		cmocka_unit_test(test_sqlite_paths),
		cmocka_unit_test(test_invalid_configs),
		cmocka_unit_test(test_positions_after_interpolation),
		cmocka_unit_test(test_size_converter),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_redaction),
		cmocka_unit_test(test_dump_has_no_secrets),
		cmocka_unit_test(test_suggest),
		cmocka_unit_test(test_docs_cover_every_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
