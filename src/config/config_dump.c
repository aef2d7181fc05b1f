/*
 * config_dump.c - a short, secret-free summary of a loaded config for check-config.
 */
#include "config.h"
#include "core/buf.h"

#include <stdint.h>
#include <string.h>

static const char *const kind_names[] = {"sync", "sql", "exec"};
static const char *const mode_names[] = {"snapshot", "poll", "realtime", "logical"};
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

/* One part of a table name, in double quotes when it would not read back as written. */
static void add_part(struct lk_buf *out, const char *s)
{
	if (!strchr(s, '.') && s[0] != '"') {
		lk_buf_adds(out, s);
		return;
	}
	lk_buf_addch(out, '"');
	for (; *s; s++) {
		if (*s == '"')
			lk_buf_addch(out, '"');
		lk_buf_addch(out, *s);
	}
	lk_buf_addch(out, '"');
}

static void add_table(struct lk_buf *out, const struct lk_config *cfg, int db,
		      const struct lk_tref *t)
{
	lk_buf_addf(out, "%s/", db >= 0 && db < cfg->ndbs ? cfg->dbs[db].name : "?");
	if (t->schema) {
		add_part(out, t->schema);
		lk_buf_addch(out, '.');
	}
	add_part(out, t->name ? t->name : "?");
}

/* Writes ms in the largest unit that divides it: 90000 -> "90s", 60000 -> "1m". */
static void add_duration(struct lk_buf *out, int64_t ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"d", 86400000LL}, {"h", 3600000LL}, {"m", 60000}, {"s", 1000}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0) {
			lk_buf_addf(out, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
			return;
		}
	}
	lk_buf_addf(out, "%lldms", (long long)ms);
}

static void add_names(struct lk_buf *out, const char *label, char **v, int n)
{
	if (n == 0)
		return;
	lk_buf_addf(out, ", %s: [", label);
	for (int i = 0; i < n; i++)
		lk_buf_addf(out, "%s%s", i ? ", " : "", v[i]);
	lk_buf_addch(out, ']');
}

/* ", env: [NAME, ...]": the names of "NAME=VALUE" strings, never their values. */
static void add_env_names(struct lk_buf *out, char **v, int n)
{
	if (n == 0)
		return;
	lk_buf_adds(out, ", env: [");
	for (int i = 0; i < n; i++)
		lk_buf_addf(out, "%s%.*s", i ? ", " : "", (int)strcspn(v[i], "="), v[i]);
	lk_buf_addch(out, ']');
}

static void dump_tables(const struct lk_config *cfg, const struct lk_job *j, struct lk_buf *out);
static void dump_timing(const struct lk_job *j, struct lk_buf *out);

static void dump_job(const struct lk_config *cfg, const struct lk_job *j, struct lk_buf *out)
{
	static const char *const overlaps[] = {"skip", "queue"};
	static const char *const misfires[] = {"skip", "once", "catchup"};
	static const char *const prios[] = {"high", "normal", "low"};

	if (j->kind != LK_JOB_SYNC) {
		lk_buf_addf(out, "  %s:\n    kind: %s", j->name, kind_names[j->kind]);
		if (j->kind == LK_JOB_SQL)
			lk_buf_addf(out, ", db: %s", cfg->dbs[j->db].name);
		add_names(out, "command", j->command, j->ncommand);
		add_env_names(out, j->env, j->nenv);
		lk_buf_addch(out, '\n');
	} else {
		lk_buf_addf(out, "  %s:\n    kind: %s, mode: %s, batch: %d\n", j->name,
			    kind_names[j->kind], mode_names[j->mode], j->batch);
		dump_tables(cfg, j, out);
		if (j->mode == LK_MODE_REALTIME)
			lk_buf_addf(out, "    resnapshot: %s\n",
				    j->resnapshot == LK_RESNAP_MANUAL ? "manual" : "auto");
		lk_buf_addf(out, "    schema_changes: %s\n",
			    j->schema_changes == LK_SCHEMA_FOLLOW ? "follow"
			    : j->schema_changes == LK_SCHEMA_STOP
				    ? "stop"
				    : "follow if lockstep created the target, else stop");
		if (j->verify.line) {
			lk_buf_adds(out, "    verify: {");
			if (j->verify.schedule) {
				lk_buf_addf(out, "schedule: \"%s\"", j->verify.schedule);
			} else {
				lk_buf_adds(out, "every: ");
				add_duration(out, j->verify.every_ms);
			}
			lk_buf_addf(out, ", repair: %s, rate: %lld}\n",
				    j->verify.repair ? "true" : "false", (long long)j->verify.rate);
		}
	}
	lk_buf_addf(out, "    overlap: %s, misfire: %s, priority: %s\n", overlaps[j->overlap],
		    misfires[j->misfire], prios[j->priority]);
	if (j->timeout_ms) {
		lk_buf_adds(out, "    timeout: ");
		add_duration(out, j->timeout_ms);
		lk_buf_addch(out, '\n');
	}
	if (j->timezone)
		lk_buf_addf(out, "    timezone: %s\n", j->timezone);
	if (j->nrun_on) {
		lk_buf_adds(out, "    run_on: [");
		for (int i = 0; i < j->nrun_on; i++)
			lk_buf_addf(out, "%s%s", i ? ", " : "", j->run_on[i]);
		lk_buf_adds(out, "]\n");
	}
	dump_timing(j, out);
}

static void dump_tables(const struct lk_config *cfg, const struct lk_job *j, struct lk_buf *out)
{
	static const char *const deletes[] = {"delete", "ignore", "soft:"};

	lk_buf_adds(out, "    source: ");
	add_table(out, cfg, j->source.db, &j->source.table);
	add_names(out, "key", j->source.key, j->source.nkey);
	add_names(out, "columns", j->source.columns, j->source.ncolumns);
	if (j->source.where)
		lk_buf_addf(out, ", where: %s", j->source.where);
	lk_buf_adds(out, "\n    target: ");
	add_table(out, cfg, j->target.db, &j->target.table);
	lk_buf_addf(out, ", create: %s, deletes: %s%s\n", j->target.create ? "true" : "false",
		    deletes[j->target.deletes], j->target.soft_column ? j->target.soft_column : "");
}

static void dump_timing(const struct lk_job *j, struct lk_buf *out)
{
	if (j->cursor)
		lk_buf_addf(out, "    cursor: %s\n", j->cursor);
	if (j->every_ms) {
		lk_buf_adds(out, "    every: ");
		add_duration(out, j->every_ms);
		lk_buf_addch(out, '\n');
	}
	if (j->schedule)
		lk_buf_addf(out, "    schedule: %s\n", j->schedule);
	if (j->lookback_ms) {
		lk_buf_adds(out, "    lookback: ");
		add_duration(out, j->lookback_ms);
		lk_buf_addch(out, '\n');
	}
	lk_buf_addf(out, "    retry: {attempts: %d, initial: ", j->retry.attempts);
	add_duration(out, j->retry.initial_ms);
	lk_buf_adds(out, ", max: ");
	add_duration(out, j->retry.max_ms);
	lk_buf_addf(out, ", multiplier: %g}\n", j->retry.multiplier);
}

void lk_config_dump(const struct lk_config *cfg, struct lk_buf *out)
{
	lk_buf_adds(out, "state: ");
	lk_redact_url_buf(cfg->state_url, out);
	if (cfg->state_path)
		lk_buf_addf(out, " (%s)", cfg->state_path);
	lk_buf_addf(out, "\nlog: {format: %s, level: %s}\n",
		    cfg->log.format == LK_LOG_JSON ? "json" : "text", level_names[cfg->log.level]);
	lk_buf_addf(out, "http: {listen: %s, token: %s, read_token: %s", cfg->http.listen,
		    cfg->http.token ? "***" : "none", cfg->http.read_token ? "***" : "none");
	if (cfg->http.nallowed_hosts) {
		lk_buf_adds(out, ", allowed_hosts: [");
		for (int i = 0; i < cfg->http.nallowed_hosts; i++)
			lk_buf_addf(out, "%s%s", i ? ", " : "", cfg->http.allowed_hosts[i]);
		lk_buf_adds(out, "]");
	}
	lk_buf_adds(out, "}\n");
	lk_buf_addf(out, "deployment: %s\norphan_after: ",
		    cfg->deployment ? cfg->deployment : "(made by the state store)");
	if (cfg->orphan_after_ms)
		add_duration(out, cfg->orphan_after_ms);
	else
		lk_buf_adds(out, "off");
	lk_buf_addch(out, '\n');
	if (cfg->instance_name || cfg->nlabels) {
		lk_buf_addf(out, "instance: {name: %s, labels: [",
			    cfg->instance_name ? cfg->instance_name : "(the host name)");
		for (int i = 0; i < cfg->nlabels; i++)
			lk_buf_addf(out, "%s%s", i ? ", " : "", cfg->labels[i]);
		lk_buf_adds(out, "]}\n");
	}
	lk_buf_adds(out, cfg->ndbs ? "databases:\n" : "databases: {}\n");
	for (int i = 0; i < cfg->ndbs; i++) {
		const struct lk_dbconf *d = &cfg->dbs[i];

		lk_buf_addf(out, "  %s: {kind: %s, ", d->name,
			    d->kind == LK_DB_POSTGRES ? "postgres" : "sqlite");
		if (d->kind == LK_DB_SQLITE) {
			lk_buf_addf(out, "path: %s", d->path);
		} else {
			lk_buf_adds(out, "url: ");
			lk_redact_url_buf(d->url, out);
		}
		if (d->listen_url) {
			lk_buf_adds(out, ", listen_url: ");
			lk_redact_url_buf(d->listen_url, out);
		}
		lk_buf_addf(out, ", pool: %d}\n", d->pool);
	}
	lk_buf_adds(out, cfg->njobs ? "jobs:\n" : "jobs: {}\n");
	for (int i = 0; i < cfg->njobs; i++)
		dump_job(cfg, &cfg->jobs[i], out);
}

static void fp_str(struct lk_buf *out, const char *k, const char *v)
{
	lk_buf_addf(out, "%s=", k);
	if (v)
		lk_buf_add_json_str(out, v, strlen(v));
	else
		lk_buf_adds(out, "null");
	lk_buf_addch(out, '\n');
}

static void fp_list(struct lk_buf *out, const char *k, char **v, int n)
{
	lk_buf_addf(out, "%s=%d", k, n);
	for (int i = 0; i < n; i++) {
		lk_buf_addch(out, ',');
		lk_buf_add_json_str(out, v[i], strlen(v[i]));
	}
	lk_buf_addch(out, '\n');
}

static void fp_db(struct lk_buf *out, const struct lk_config *cfg, const char *k, int db)
{
	if (db < 0) {
		fp_str(out, k, NULL);
		return;
	}
	fp_str(out, k, cfg->dbs[db].url);
	fp_str(out, "listen_url", cfg->dbs[db].listen_url);
}

void lk_config_job_fingerprint(const struct lk_config *cfg, const struct lk_job *j,
			       struct lk_buf *out)
{
	const struct lk_retry_conf *r = &j->retry;

	fp_str(out, "name", j->name);
	lk_buf_addf(out, "kind=%d mode=%d deletes=%d create=%d every=%lld batch=%d sd=%d\n",
		    (int)j->kind, (int)j->mode, (int)j->target.deletes, (int)j->target.create,
		    (long long)j->every_ms, j->batch, (int)j->snapshot_deletes);
	lk_buf_addf(out, "lookback=%lld overlap=%d misfire=%d prio=%d timeout=%lld mem=%lld\n",
		    (long long)j->lookback_ms, (int)j->overlap, (int)j->misfire, (int)j->priority,
		    (long long)j->timeout_ms, (long long)j->memory_max);
	lk_buf_addf(out, "resnapshot=%d schema=%d\n", (int)j->resnapshot, (int)j->schema_changes);
	lk_buf_addf(out, "verify=%d,%lld,%d,%lld\n", j->verify.line > 0,
		    (long long)j->verify.every_ms, (int)j->verify.repair,
		    (long long)j->verify.rate);
	fp_str(out, "verify.schedule", j->verify.schedule);
	lk_buf_addf(out, "retry=%d,%lld,%lld,%.17g\n", r->attempts, (long long)r->initial_ms,
		    (long long)r->max_ms, r->multiplier);
	fp_db(out, cfg, "source.db", j->source.db);
	fp_str(out, "source.schema", j->source.table.schema);
	fp_str(out, "source.table", j->source.table.name);
	fp_list(out, "source.key", j->source.key, j->source.nkey);
	fp_list(out, "source.columns", j->source.columns, j->source.ncolumns);
	fp_str(out, "source.where", j->source.where);
	fp_db(out, cfg, "target.db", j->target.db);
	fp_str(out, "target.schema", j->target.table.schema);
	fp_str(out, "target.table", j->target.table.name);
	fp_str(out, "target.soft", j->target.soft_column);
	fp_str(out, "cursor", j->cursor);
	fp_str(out, "schedule", j->schedule);
	fp_str(out, "timezone", j->timezone);
	fp_db(out, cfg, "db", j->db);
	fp_str(out, "sql", j->sql);
	fp_list(out, "command", j->command, j->ncommand);
	fp_list(out, "env", j->env, j->nenv);
	fp_list(out, "run_on", j->run_on, j->nrun_on);
}
