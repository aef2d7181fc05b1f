/*
 * config_keys.c - the one table of every config key (SPEC §3): where it lives, its type,
 * default, bounds and whether it is built. It drives parsing, defaults, the "not supported
 * yet" refusals, the did-you-mean hints, and docs/config.md follows it key by key.
 */
#include "config_int.h"
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(enum lk_log_format) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_log_level) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_job_kind) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_sync_mode) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_overlap) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_misfire) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_priority) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_resnapshot) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum lk_schema_policy) == sizeof(int), "enums are stored as int");

static const struct lk_kenum log_formats[] = {
	{"text", LK_LOG_TEXT, true}, {"json", LK_LOG_JSON, true}, {NULL, 0, false}};
static const struct lk_kenum log_levels[] = {{"debug", LK_LOG_DEBUG, true},
					     {"info", LK_LOG_INFO, true},
					     {"warn", LK_LOG_WARN, true},
					     {"error", LK_LOG_ERROR, true},
					     {NULL, 0, false}};
static const struct lk_kenum job_kinds[] = {{"sync", LK_JOB_SYNC, true},
					    {"sql", LK_JOB_SQL, true},
					    {"exec", LK_JOB_EXEC, true},
					    {NULL, 0, false}};
static const struct lk_kenum modes[] = {{"snapshot", LK_MODE_SNAPSHOT, true},
					{"poll", LK_MODE_POLL, true},
					{"realtime", LK_MODE_REALTIME, true},
					{"logical", LK_MODE_LOGICAL, false},
					{NULL, 0, false}};
static const struct lk_kenum overlaps[] = {
	{"skip", LK_OVERLAP_SKIP, true}, {"queue", LK_OVERLAP_QUEUE, true}, {NULL, 0, false}};
static const struct lk_kenum misfires[] = {{"skip", LK_MISFIRE_SKIP, true},
					   {"once", LK_MISFIRE_ONCE, true},
					   {"catchup", LK_MISFIRE_CATCHUP, true},
					   {NULL, 0, false}};
static const struct lk_kenum priorities[] = {{"high", LK_PRIO_HIGH, true},
					     {"normal", LK_PRIO_NORMAL, true},
					     {"low", LK_PRIO_LOW, true},
					     {NULL, 0, false}};
static const struct lk_kenum schema_policies[] = {
	{"follow", LK_SCHEMA_FOLLOW, true}, {"stop", LK_SCHEMA_STOP, true}, {NULL, 0, false}};
static const struct lk_kenum resnapshots[] = {
	{"auto", LK_RESNAP_AUTO, true}, {"manual", LK_RESNAP_MANUAL, true}, {NULL, 0, false}};

/*
 * http.allowed_hosts: up to 32 names by which the API may be reached (the Host rule) and
 * origins whose POSTs it takes (the Origin rule): "HOST" or "HOST:PORT", HOST a DNS name
 * or an address ("[v6]" in brackets); no scheme, path or wildcard (docs/security.md).
 */
static bool allowed_host_ok(const char *s)
{
	const char *colon = s[0] == '[' ? strchr(s, ']') : strchr(s, ':');
	size_t hn = colon ? (size_t)(colon - s) + (s[0] == '[') : strlen(s);
	const char *port = colon ? (s[0] == '[' ? colon + 1 : colon) : NULL;

	if (hn == 0 || hn > 253)
		return false;
	if (s[0] == '[' ? strspn(s + 1, "0123456789abcdefABCDEF:.") != hn - 2
			: strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				    "-.") != hn)
		return false;
	if (port && *port) /* ":PORT" */
		return port[0] == ':' && strlen(port) >= 2 && strlen(port) <= 6 &&
		       strspn(port + 1, "0123456789") == strlen(port + 1);
	return !(s[0] == '[' && !colon);
}

static int parse_allowed_hosts(struct lk_cfgctx *c, const struct lk_key *k,
			       const struct lk_ynode *val, void *obj)
{
	char ***out = (char ***)(void *)((char *)obj + k->off);
	int *n = (int *)(void *)((char *)obj + k->off2);

	if (lk_cfg_strlist(c, val, true, out, n) < 0)
		return -1;
	if (*n > 32)
		return lk_cfg_fail(c, val, "expected at most 32 hosts, found %d", *n);
	for (int i = 0; i < *n; i++) {
		const struct lk_ynode *at = val->type == LK_Y_SEQ ? val->kids[i] : val;

		if (!allowed_host_ok((*out)[i]))
			return lk_cfg_fail(c, at,
					   "expected HOST or HOST:PORT (like dash.example.com or "
					   "lockstep.internal:8433, no scheme or path), found '%s'",
					   (*out)[i]);
	}
	return 0;
}

/* jobs.NAME.env: an environment variable name, [A-Za-z_][A-Za-z0-9_]*, that lockstep
 * does not set itself; returns 0 or -1 with c->err at `at`. */
static int env_name_check(struct lk_cfgctx *c, const struct lk_ynode *at, const char *s)
{
	static const char *const own[] = {"LOCKSTEP_RUN_ID", "LOCKSTEP_FENCING_TOKEN"};
	size_t len = strlen(s);

	if (len == 0 || (s[0] >= '0' && s[0] <= '9') ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != len)
		return lk_cfg_fail(
			c, at,
			"expected an environment variable name (letters, digits and '_', "
			"not starting with a digit), found '%s'",
			s);
	for (size_t i = 0; i < sizeof(own) / sizeof(*own); i++)
		if (strcmp(s, own[i]) == 0)
			return lk_cfg_fail(c, at,
					   "expected a name lockstep does not set, found '%s' "
					   "(lockstep sets it for each run)",
					   s);
	return 0;
}

static char *env_pair(const char *name, const char *value)
{
	struct lk_buf b = LK_BUF_INIT;

	lk_buf_addf(&b, "%s=%s", name, value);
	return lk_buf_detach(&b, NULL);
}

/* env as a list: names passed through from lockstep's environment when set there. */
static int parse_env_names(struct lk_cfgctx *c, const struct lk_ynode *val, char **out, int *n)
{
	char **names = NULL;
	int nnames = 0, rc = 0;

	if (lk_cfg_strlist(c, val, false, &names, &nnames) < 0)
		return -1;
	for (int i = 0; i < nnames && rc == 0; i++) {
		const char *v = getenv(names[i]);

		rc = env_name_check(c, val->kids[i], names[i]);
		if (rc == 0 && v)
			out[(*n)++] = env_pair(names[i], v);
	}
	for (int i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	return rc;
}

/*
 * jobs.NAME.env (exec jobs): what the command gets on top of PATH, HOME, LANG, LC_ALL and
 * TZ. A mapping NAME: VALUE (values interpolated like every string) or a list of names
 * passed through from lockstep's environment; stored as "NAME=VALUE" (docs/exec-jobs.md).
 */
static int parse_env(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		     void *obj)
{
	char ***out = (char ***)(void *)((char *)obj + k->off);
	int *n = (int *)(void *)((char *)obj + k->off2);
	char found[96];

	if (val->type == LK_Y_SEQ) {
		*out = lk_xcalloc((size_t)val->nkids + 1, sizeof(**out));
		return parse_env_names(c, val, *out, n);
	}
	if (val->type != LK_Y_MAP) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val,
				   "expected a mapping of NAME: VALUE or a list of names, found %s",
				   found);
	}
	*out = lk_xcalloc((size_t)val->nkids / 2 + 1, sizeof(**out));
	for (int i = 0; i + 1 < val->nkids; i += 2) {
		const struct lk_ynode *name = val->kids[i], *v = val->kids[i + 1];

		if (env_name_check(c, name, name->text) < 0)
			return -1;
		if (v->type != LK_Y_SCALAR) {
			lk_ynode_describe(v, found, sizeof(found));
			return lk_cfg_fail(c, v, "expected a string value for '%s', found %s",
					   name->text, found);
		}
		(*out)[(*n)++] = env_pair(name->text, v->text);
	}
	return 0;
}

#define CFG(f) offsetof(struct lk_config, f)
#define DB(f) offsetof(struct lk_dbconf, f)
#define JOB(f) offsetof(struct lk_job, f)
#define RETRY(f) offsetof(struct lk_retry_conf, f)
#define BREAKER(f) offsetof(struct lk_breaker_conf, f)
#define VERIFY(f) offsetof(struct lk_verify_conf, f)
#define NOTYET(s, n, t, d)                                                                         \
	{                                                                                          \
		.sect = LK_SECT_##s, .name = (n), .type = LK_KT_##t, .def = (d)                    \
	}

static const struct lk_key keys[] = {
	{.sect = LK_SECT_TOP,
	 .name = "state",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .def = "sqlite:lockstep-state.db",
	 .parse = lk_cfg_parse_state,
	 .expect = "a database URL"},
	{.sect = LK_SECT_TOP,
	 .name = "http",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_HTTP},
	{.sect = LK_SECT_TOP,
	 .name = "log",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_LOG},
	{.sect = LK_SECT_TOP,
	 .name = "memory",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_MEMORY},
	{.sect = LK_SECT_TOP,
	 .name = "instance",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_INSTANCE},
	{.sect = LK_SECT_TOP,
	 .name = "cluster",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_CLUSTER},
	{.sect = LK_SECT_TOP,
	 .name = "retention",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .def = "24h",
	 .min = 1000,
	 .off = CFG(retention_ms)},
	{.sect = LK_SECT_TOP,
	 .name = "deployment",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .off = CFG(deployment),
	 .parse = lk_cfg_parse_deployment,
	 .expect = "a deployment name"},
	{.sect = LK_SECT_TOP,
	 .name = "orphan_after",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .def = "7d",
	 .off = CFG(orphan_after_ms),
	 .parse = lk_cfg_parse_orphan_after,
	 .expect = "a duration or off"},
	{.sect = LK_SECT_TOP,
	 .name = "databases",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .parse = lk_cfg_parse_databases,
	 .expect = "a mapping of database names"},
	{.sect = LK_SECT_TOP,
	 .name = "jobs",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .parse = lk_cfg_parse_jobs,
	 .expect = "a mapping of job names"},

	{.sect = LK_SECT_HTTP,
	 .name = "listen",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .def = "127.0.0.1:8433",
	 .off = CFG(http.listen),
	 .parse = lk_cfg_parse_listen,
	 .expect = "HOST:PORT"},
	{.sect = LK_SECT_HTTP,
	 .name = "token",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = CFG(http.token),
	 .expect = "a token string"},
	{.sect = LK_SECT_HTTP,
	 .name = "read_token",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = CFG(http.read_token),
	 .expect = "a token string"},
	{.sect = LK_SECT_HTTP,
	 .name = "allowed_hosts",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .off = CFG(http.allowed_hosts),
	 .off2 = CFG(http.nallowed_hosts),
	 .parse = parse_allowed_hosts,
	 .expect = "a list of host names"},

	{.sect = LK_SECT_LOG,
	 .name = "format",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "text",
	 .off = CFG(log.format),
	 .enums = log_formats},
	{.sect = LK_SECT_LOG,
	 .name = "level",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "info",
	 .off = CFG(log.level),
	 .enums = log_levels},

	{.sect = LK_SECT_MEMORY,
	 .name = "limit",
	 .type = LK_KT_SIZE,
	 .built = true,
	 .off = CFG(memory_limit)},
	{.sect = LK_SECT_INSTANCE,
	 .name = "name",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = CFG(instance_name),
	 .expect = "an instance name"},
	{.sect = LK_SECT_INSTANCE,
	 .name = "labels",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .off = CFG(labels),
	 .off2 = CFG(nlabels),
	 .parse = lk_cfg_parse_labels,
	 .expect = "a list of labels"},
	{.sect = LK_SECT_CLUSTER,
	 .name = "lease",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .def = "30s",
	 .min = 2000,
	 .off = CFG(lease_ms)},
	{.sect = LK_SECT_CLUSTER,
	 .name = "renew",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .def = "10s",
	 .min = 200,
	 .off = CFG(renew_ms)},

	{.sect = LK_SECT_DB,
	 .name = "url",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .required = true,
	 .parse = lk_cfg_parse_db_url,
	 .expect = "a database URL"},
	{.sect = LK_SECT_DB,
	 .name = "pool",
	 .type = LK_KT_INT,
	 .built = true,
	 .def = "4",
	 .min = 1,
	 .max = 1000,
	 .off = DB(pool)},
	{.sect = LK_SECT_DB,
	 .name = "listen_url",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .parse = lk_cfg_parse_listen_url,
	 .expect = "a PostgreSQL URL"},
	{.sect = LK_SECT_DB,
	 .name = "breaker",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_BREAKER,
	 .off = DB(breaker)},

	{.sect = LK_SECT_JOB,
	 .name = "kind",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "sync",
	 .off = JOB(kind),
	 .enums = job_kinds},
	{.sect = LK_SECT_JOB,
	 .name = "source",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_SOURCE,
	 .expect = "a mapping"},
	{.sect = LK_SECT_JOB,
	 .name = "target",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_TARGET,
	 .expect = "a mapping"},
	{.sect = LK_SECT_JOB,
	 .name = "mode",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "snapshot",
	 .off = JOB(mode),
	 .enums = modes},
	{.sect = LK_SECT_JOB,
	 .name = "cursor",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = JOB(cursor),
	 .expect = "a column name"},
	{.sect = LK_SECT_JOB,
	 .name = "every",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .min = 1,
	 .off = JOB(every_ms)},
	{.sect = LK_SECT_JOB,
	 .name = "schedule",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = JOB(schedule),
	 .expect = "a schedule string"},
	{.sect = LK_SECT_JOB,
	 .name = "timezone",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = JOB(timezone),
	 .expect = "a time zone name like Europe/Berlin"},
	{.sect = LK_SECT_JOB,
	 .name = "lookback",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .min = 0,
	 .off = JOB(lookback_ms)},
	{.sect = LK_SECT_JOB,
	 .name = "batch",
	 .type = LK_KT_INT,
	 .built = true,
	 .def = "1000",
	 .min = 1,
	 .max = 100000,
	 .off = JOB(batch)},
	{.sect = LK_SECT_JOB,
	 .name = "snapshot_deletes",
	 .type = LK_KT_BOOL,
	 .built = true,
	 .def = "false",
	 .off = JOB(snapshot_deletes)},
	{.sect = LK_SECT_JOB,
	 .name = "retry",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_RETRY,
	 .off = JOB(retry)},
	{.sect = LK_SECT_JOB,
	 .name = "overlap",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "skip",
	 .off = JOB(overlap),
	 .enums = overlaps},
	{.sect = LK_SECT_JOB,
	 .name = "misfire",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "skip",
	 .off = JOB(misfire),
	 .enums = misfires},
	{.sect = LK_SECT_JOB,
	 .name = "priority",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "normal",
	 .off = JOB(priority),
	 .enums = priorities},
	{.sect = LK_SECT_JOB,
	 .name = "verify",
	 .type = LK_KT_MAP,
	 .built = true,
	 .child = LK_SECT_VERIFY,
	 .off = JOB(verify)},
	{.sect = LK_SECT_JOB,
	 .name = "resnapshot",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .def = "auto",
	 .off = JOB(resnapshot),
	 .enums = resnapshots},
	{.sect = LK_SECT_JOB,
	 .name = "schema_changes",
	 .type = LK_KT_ENUM,
	 .built = true,
	 .off = JOB(schema_changes),
	 .enums = schema_policies},
	{.sect = LK_SECT_JOB,
	 .name = "run_on",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .off = JOB(run_on),
	 .off2 = JOB(nrun_on),
	 .parse = lk_cfg_parse_labels,
	 .expect = "a list of instance labels"},
	{.sect = LK_SECT_JOB,
	 .name = "timeout",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .min = 1,
	 .off = JOB(timeout_ms)},
	{.sect = LK_SECT_JOB,
	 .name = "memory_max",
	 .type = LK_KT_SIZE,
	 .built = true,
	 .off = JOB(memory_max)},
	{.sect = LK_SECT_JOB,
	 .name = "command",
	 .type = LK_KT_STRLIST,
	 .built = true,
	 .off = JOB(command),
	 .off2 = JOB(ncommand)},
	{.sect = LK_SECT_JOB,
	 .name = "env",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .off = JOB(env),
	 .off2 = JOB(nenv),
	 .parse = parse_env,
	 .expect = "a mapping of NAME: VALUE or a list of names"},
	{.sect = LK_SECT_JOB,
	 .name = "sql",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = JOB(sql),
	 .expect = "an SQL statement or script"},
	{.sect = LK_SECT_JOB,
	 .name = "db",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .parse = lk_cfg_parse_dbref,
	 .expect = "a database name"},

	{.sect = LK_SECT_SOURCE,
	 .name = "db",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .required = true,
	 .off = JOB(source.db),
	 .parse = lk_cfg_parse_dbref,
	 .expect = "a database name"},
	{.sect = LK_SECT_SOURCE,
	 .name = "table",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .required = true,
	 .off = JOB(source.table),
	 .parse = lk_cfg_parse_tref,
	 .expect = "a table as name or schema.name"},
	{.sect = LK_SECT_SOURCE,
	 .name = "key",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .off = JOB(source.key),
	 .off2 = JOB(source.nkey),
	 .parse = lk_cfg_parse_key},
	{.sect = LK_SECT_SOURCE,
	 .name = "columns",
	 .type = LK_KT_STRLIST,
	 .built = true,
	 .off = JOB(source.columns),
	 .off2 = JOB(source.ncolumns)},
	{.sect = LK_SECT_SOURCE,
	 .name = "where",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = JOB(source.where),
	 .expect = "an SQL condition string"},

	{.sect = LK_SECT_TARGET,
	 .name = "db",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .required = true,
	 .off = JOB(target.db),
	 .parse = lk_cfg_parse_dbref,
	 .expect = "a database name"},
	{.sect = LK_SECT_TARGET,
	 .name = "table",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .off = JOB(target.table),
	 .parse = lk_cfg_parse_tref,
	 .expect = "a table as name or schema.name"},
	{.sect = LK_SECT_TARGET,
	 .name = "create",
	 .type = LK_KT_BOOL,
	 .built = true,
	 .def = "false",
	 .off = JOB(target.create)},
	{.sect = LK_SECT_TARGET,
	 .name = "deletes",
	 .type = LK_KT_CUSTOM,
	 .built = true,
	 .def = "delete",
	 .parse = lk_cfg_parse_deletes,
	 .expect = "delete | ignore | soft:COLUMN"},

	{.sect = LK_SECT_RETRY,
	 .name = "attempts",
	 .type = LK_KT_INT,
	 .built = true,
	 .def = "3",
	 .min = 1,
	 .max = 1000,
	 .off = RETRY(attempts)},
	{.sect = LK_SECT_RETRY,
	 .name = "initial",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .def = "1s",
	 .min = 1,
	 .off = RETRY(initial_ms)},
	{.sect = LK_SECT_RETRY,
	 .name = "max",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .def = "30s",
	 .min = 1,
	 .off = RETRY(max_ms)},
	{.sect = LK_SECT_RETRY,
	 .name = "multiplier",
	 .type = LK_KT_NUMBER,
	 .built = true,
	 .def = "2",
	 .min = 1,
	 .max = 100,
	 .off = RETRY(multiplier)},

	{.sect = LK_SECT_VERIFY,
	 .name = "every",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .min = 1000,
	 .off = VERIFY(every_ms)},
	{.sect = LK_SECT_VERIFY,
	 .name = "schedule",
	 .type = LK_KT_STRING,
	 .built = true,
	 .off = VERIFY(schedule),
	 .expect = "a schedule string"},
	{.sect = LK_SECT_VERIFY,
	 .name = "repair",
	 .type = LK_KT_BOOL,
	 .built = true,
	 .def = "false",
	 .off = VERIFY(repair)},
	{.sect = LK_SECT_VERIFY,
	 .name = "rate",
	 .type = LK_KT_INT,
	 .built = true,
	 .def = "20000",
	 .min = 0,
	 .max = 100000000,
	 .off = VERIFY(rate)},
	{.sect = LK_SECT_BREAKER,
	 .name = "failures",
	 .type = LK_KT_INT,
	 .built = true,
	 .def = "5",
	 .min = 1,
	 .max = 1000,
	 .off = BREAKER(failures)},
	{.sect = LK_SECT_BREAKER,
	 .name = "cooldown",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .def = "30s",
	 .min = 100,
	 .off = BREAKER(cooldown_ms)},
	{.sect = LK_SECT_BREAKER,
	 .name = "probe_timeout",
	 .type = LK_KT_DURATION,
	 .built = true,
	 .def = "5s",
	 .min = 1000,
	 .off = BREAKER(probe_ms)},
};

const struct lk_key *lk_config_keys(size_t *n)
{
	*n = sizeof(keys) / sizeof(keys[0]);
	return keys;
}

const char *lk_config_sect_name(enum lk_ksect s)
{
	static const char *const names[LK_SECT_COUNT] = {"",
							 "http",
							 "log",
							 "memory",
							 "instance",
							 "cluster",
							 "databases.NAME",
							 "jobs.NAME",
							 "jobs.NAME.source",
							 "jobs.NAME.target",
							 "jobs.NAME.retry",
							 "databases.NAME.breaker",
							 "jobs.NAME.verify"};

	return (unsigned)s < LK_SECT_COUNT ? names[s] : "?";
}

static const struct lk_key *find_key(enum lk_ksect sect, const char *name)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].sect == sect && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	}
	return NULL;
}

/* Parses one value into the field the key names. `key` is the key node (for nesting). */
static int apply(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *key,
		 const struct lk_ynode *val, void *obj)
{
	char *field = (char *)obj + k->off;
	int64_t v = 0;
	int iv = 0;

	switch (k->type) {
	case LK_KT_STRING:
		return lk_cfg_string(c, val, k->expect, (char **)(void *)field);
	case LK_KT_BOOL:
		return lk_cfg_bool(c, val, (bool *)field);
	case LK_KT_INT:
		if (lk_cfg_int(c, val, k->min, k->max, &v) < 0)
			return -1;
		iv = (int)v;
		memcpy(field, &iv, sizeof(iv));
		return 0;
	case LK_KT_DURATION:
		return lk_cfg_duration(c, val, k->min, (int64_t *)(void *)field);
	case LK_KT_SIZE:
		return lk_cfg_size(c, val, (int64_t *)(void *)field);
	case LK_KT_NUMBER:
		return lk_cfg_number(c, val, (double)k->min, (double)k->max,
				     (double *)(void *)field);
	case LK_KT_ENUM:
		if (lk_cfg_enum(c, val, k->name, k->enums, &iv) < 0)
			return -1;
		memcpy(field, &iv, sizeof(iv));
		return 0;
	case LK_KT_STRLIST:
		return lk_cfg_strlist(c, val, false, (char ***)(void *)field,
				      (int *)(void *)((char *)obj + k->off2));
	case LK_KT_MAP:
		return lk_cfg_parse_map(c, k->child, val, key, k->name, field);
	case LK_KT_CUSTOM:
		return k->parse(c, k, val, obj);
	}
	return lk_cfg_fail(c, val, "internal: key '%s' has no type", k->name);
}

int lk_cfg_defaults(struct lk_cfgctx *c, enum lk_ksect sect, void *obj)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct lk_key *k = &keys[i];
		struct lk_ynode def = {LK_Y_SCALAR, false, NULL, 0, 0, 0, NULL, 0};

		if (k->sect != sect || !k->built || !k->def || k->type == LK_KT_MAP)
			continue;
		def.text = (char *)k->def;
		def.len = strlen(k->def);
		if (apply(c, k, NULL, &def, obj) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].sect == sect && keys[i].built && keys[i].type == LK_KT_MAP &&
		    lk_cfg_defaults(c, keys[i].child, (char *)obj + keys[i].off) < 0)
			return -1;
	}
	return 0;
}

/* "expected a key of WHAT, found unknown key 'x'" with a hint or the list of keys. */
static int unknown_key(struct lk_cfgctx *c, enum lk_ksect sect, const struct lk_ynode *key,
		       const char *what)
{
	const char *names[64];
	struct lk_buf list = LK_BUF_INIT;
	const char *hint;
	int n = 0;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && n < 64; i++) {
		if (keys[i].sect != sect)
			continue;
		lk_buf_addf(&list, "%s%s", n ? ", " : "", keys[i].name);
		names[n++] = keys[i].name;
	}
	hint = lk_cfg_suggest(key->text, names, n);
	if (hint)
		lk_cfg_fail(c, key,
			    "expected a key of %s, found unknown key '%s'; did you mean "
			    "'%s'?",
			    what, key->text, hint);
	else
		lk_cfg_fail(c, key, "expected a key of %s (%s), found unknown key '%s'", what,
			    list.buf, key->text);
	lk_buf_release(&list);
	return -1;
}

/* Reports the first required key of sect missing from map. */
static int check_required(struct lk_cfgctx *c, enum lk_ksect sect, const struct lk_ynode *map,
			  const struct lk_ynode *owner, const char *what)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct lk_key *k = &keys[i];

		if (k->sect == sect && k->required && k->built && !lk_ymap_key(map, k->name))
			return lk_cfg_fail(c, owner ? owner : map,
					   "expected key '%s' in %s, found none", k->name, what);
	}
	return 0;
}

int lk_cfg_parse_map(struct lk_cfgctx *c, enum lk_ksect sect, const struct lk_ynode *map,
		     const struct lk_ynode *owner, const char *what, void *obj)
{
	char found[96];

	if (!map || map->type != LK_Y_MAP) {
		lk_ynode_describe(map, found, sizeof(found));
		return lk_cfg_fail(c, map ? map : owner, "expected a mapping for %s, found %s",
				   what, found);
	}
	for (int i = 0; i + 1 < map->nkids; i += 2) {
		const struct lk_ynode *key = map->kids[i], *val = map->kids[i + 1];
		const struct lk_key *k = find_key(sect, key->text);

		if (!k)
			return unknown_key(c, sect, key, what);
		if (!k->built)
			return lk_cfg_fail(c, key, "key '%s' is not supported yet", key->text);
		if (val->type == LK_Y_NULL && !k->required)
			continue; /* `key:` or `key: null` keeps the default */
		if (val->type == LK_Y_NULL) {
			lk_ynode_describe(val, found, sizeof(found));
			return lk_cfg_fail(c, key, "expected %s for '%s', found %s",
					   k->expect ? k->expect : "a value", k->name, found);
		}
		if (apply(c, k, key, val, obj) < 0)
			return -1;
	}
	return check_required(c, sect, map, owner, what);
}
