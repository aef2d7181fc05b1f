/*
 * config.h - the typed, validated configuration (SPEC §3).
 *
 * lk_config_load() reads YAML (after ${VAR} interpolation), fills these plain
 * structs from one key table, validates them, and returns a config that is
 * const for the rest of its life. Reload builds a new one and swaps it in.
 * Every string is owned by the config and freed by lk_config_free().
 */
#ifndef LK_CONFIG_H
#define LK_CONFIG_H

#include "core/err.h"
#include "core/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lk_db_kind { LK_DB_POSTGRES, LK_DB_SQLITE };

struct lk_retry_conf {
	int attempts;	    /* total tries, >= 1 (default 3) */
	int64_t initial_ms; /* first back-off (default 1s) */
	int64_t max_ms;	    /* cap (default 30s) */
	double multiplier;  /* growth (default 2) */
};

/* A circuit breaker per database (databases.NAME.breaker). */
struct lk_breaker_conf {
	int failures;	     /* consecutive failed runs that open it (default 5) */
	int64_t cooldown_ms; /* open for this long before one probe (default 30s) */
	int64_t probe_ms;    /* the probe's connect timeout (default 5s) */
};

struct lk_dbconf {
	char *name;
	enum lk_db_kind kind;
	char *url; /* as written (after interpolation): a postgres URL/keywords, or "sqlite:PATH" */
	char *path;	  /* SQLite: the file path, made absolute relative to the config's folder */
	int pool;	  /* connections lockstep may hold (default 4) */
	char *listen_url; /* optional direct URL for LISTEN; NULL when absent */
	struct lk_breaker_conf breaker;
	int64_t connect_timeout_ms; /* 0: the default (10 s); the breaker's probe sets its own */
	bool state_store; /* the state store's synthetic entry: its counts are kept apart */
	int line, col;	  /* where it was defined, for later errors */
};

/* A table reference: `schema.name` or `name`; names are literal (case, spaces kept). */
struct lk_tref {
	char *schema; /* NULL when not given: "public" on PostgreSQL, "main" on SQLite */
	char *name;
};

enum lk_job_kind { LK_JOB_SYNC = 0, LK_JOB_SQL, LK_JOB_EXEC };
enum lk_sync_mode { LK_MODE_SNAPSHOT = 0, LK_MODE_POLL, LK_MODE_REALTIME, LK_MODE_LOGICAL };
enum lk_deletes { LK_DELETES_DELETE = 0, LK_DELETES_IGNORE, LK_DELETES_SOFT };
enum lk_overlap { LK_OVERLAP_SKIP = 0, LK_OVERLAP_QUEUE };
enum lk_misfire { LK_MISFIRE_SKIP = 0, LK_MISFIRE_ONCE, LK_MISFIRE_CATCHUP };
enum lk_priority { LK_PRIO_HIGH = 0, LK_PRIO_NORMAL, LK_PRIO_LOW };
/* realtime: what a needed re-snapshot does (auto: runs it; manual: stops until --full) */
enum lk_resnapshot { LK_RESNAP_AUTO = 0, LK_RESNAP_MANUAL };
/* schema_changes (docs/schema-changes.md): unset means follow when lockstep created the
 * target table, stop when the user did. */
enum lk_schema_policy { LK_SCHEMA_DEFAULT = 0, LK_SCHEMA_FOLLOW, LK_SCHEMA_STOP };

/* The longest deployment name (the `deployment` key, and the ones the store makes). */
#define LK_DEPLOYMENT_MAX 40

/* misfire: catchup runs at most this many missed fire times after a start. */
#define LK_CATCHUP_MAX 10

/* jobs.NAME.verify (docs/verify.md): scheduled passes of `lockstep verify` in the daemon. */
struct lk_verify_conf {
	int64_t every_ms; /* 0 when not set */
	char *schedule;	  /* cron, or NULL */
	bool repair;	  /* default false */
	int64_t rate;	  /* rows read a second at most, default 20000; 0: no limit */
	int line, col;	  /* where `verify` is written; 0 when it is not */
};

struct lk_job {
	char *name;
	enum lk_job_kind kind;
	struct {
		int db; /* index into lk_config.dbs */
		struct lk_tref table;
		char **key; /* NULL/0: the primary key */
		int nkey;
		char **columns; /* NULL/0: all columns */
		int ncolumns;
		char *where; /* SQL boolean expression, or NULL */
	} source;
	struct {
		int db;
		struct lk_tref table; /* defaults to the source table's schema and name */
		bool create;
		enum lk_deletes deletes;
		char *soft_column; /* deletes: soft:COL */
	} target;
	enum lk_sync_mode mode; /* default snapshot */
	char *cursor;		/* poll: the monotonic column; required for poll */
	int64_t every_ms;	/* 0 when not set */
	char *schedule;		/* raw string, or NULL */
	char *timezone;		/* schedule's zone (IANA name), NULL: UTC */
	int64_t lookback_ms;	/* poll, time cursors only; default 0 */
	int batch;		/* rows per batch, default 1000, 1..100000 */
	bool snapshot_deletes;	/* snapshot into a non-empty target also deletes extras */
	struct lk_retry_conf retry;
	enum lk_overlap overlap;       /* default skip */
	enum lk_misfire misfire;       /* default skip */
	enum lk_priority priority;     /* default normal */
	enum lk_resnapshot resnapshot; /* realtime only; default auto */
	enum lk_schema_policy schema_changes;
	struct lk_verify_conf verify; /* sync jobs */
	char **run_on;		      /* instance labels the job needs, all of them; NULL: any */
	int nrun_on;
	/* kind sql: the database and the statement(s), run in one transaction */
	int db; /* index into lk_config.dbs, -1 when not set */
	char *sql;
	/* kind exec: argv, no shell */
	char **command;
	int ncommand;
	int64_t timeout_ms; /* sql and exec: 0 = none */
	int64_t memory_max; /* exec: bytes, 0 = none */
	/* exec: env, "NAME=VALUE" strings added to the command's clean environment (values may
	 * hold secrets: never logged); NULL-terminated, nenv of them; NULL/0: none */
	char **env;
	int nenv;
	int schedule_line, schedule_col; /* where schedule/every is written, for later errors */
	int line, col;
};

/* http: the API's listener and who may call it (docs/security.md). */
struct lk_http_conf {
	char *listen;	      /* default "127.0.0.1:8433" */
	char *token;	      /* NULL when not set */
	char *read_token;     /* http.read_token: GETs only; NULL when not set */
	char **allowed_hosts; /* http.allowed_hosts: "HOST" or "HOST:PORT"; NULL/0: none */
	int nallowed_hosts;
};

struct lk_config {
	char *path; /* the file as given */
	char *dir;  /* its folder, absolute: base for relative SQLite paths */

	char *state_url;	    /* default "sqlite:lockstep-state.db" */
	enum lk_db_kind state_kind; /* derived from state_url */
	char *state_path;	    /* SQLite state store: absolute path; NULL for PostgreSQL */

	struct lk_http_conf http;
	struct {
		enum lk_log_format format; /* default text */
		enum lk_log_level level;   /* default info */
	} log;

	int64_t memory_limit; /* memory.limit in bytes, 0 = none (SPEC §7) */
	int64_t retention_ms; /* finished runs and resolved dead letters (default 24h) */
	int64_t lease_ms;     /* cluster.lease: a job lease's time to live (default 30s) */
	int64_t renew_ms;     /* cluster.renew: how often held leases are renewed (10s) */
	char *instance_name;  /* instance.name; NULL: the host name */
	char **labels;	      /* instance.labels (read at start, like the name) */
	int nlabels;
	/* deployment: names this deployment (NULL: the state store makes one at first start
	 * and keeps it); [A-Za-z0-9_.-]{1,40}. What the source's consumer registry and the
	 * target's position table hold with each job (docs/operations.md, "Several
	 * deployments"). */
	char *deployment;
	int64_t orphan_after_ms; /* orphan_after: a foreign consumer holding entries back this
				  * long is removed before a prune; 0: never (default 7d) */

	struct lk_dbconf *dbs;
	int ndbs;
	struct lk_job *jobs;
	int njobs;
};

/*
 * Loads, interpolates, parses and validates the config at `path`.
 * On failure returns NULL with err->code LK_ERR_CONFIG and err->msg of the form
 * "FILE:LINE:COL: expected ..., found ...[; did you mean 'x'?]", or "FILE:LINE:COL: key
 * 'k' is not supported yet" for a known key whose feature is not built. A file that cannot
 * be read gives LK_ERR_CONFIG too, with "cannot read config 'PATH': <strerror>".
 * Key `cursor` on a job whose mode is not poll is logged as a warning, not refused.
 * The caller frees the result with lk_config_free(). Main thread only.
 */
struct lk_config *lk_config_load(const char *path, struct lk_err *err);

/* Same as lk_config_load but from a string; `path` is used for messages and dir. */
struct lk_config *lk_config_load_string(const char *text, const char *path, struct lk_err *err);

void lk_config_free(struct lk_config *cfg);

/* Finds a job or database by name; NULL when absent. */
const struct lk_job *lk_config_job(const struct lk_config *cfg, const char *name);
const struct lk_dbconf *lk_config_db(const struct lk_config *cfg, const char *name);

/*
 * Writes `url` with any password replaced by "***" into out (always NUL-terminated,
 * truncated to out_size; NULL url gives ""). Handles postgres://user:pass@host URLs,
 * "password=..." (and sslpassword) keyword strings, quoted or not, and "?password=..."
 * query parameters. Other text is copied unchanged. Thread-safe.
 */
void lk_redact_url(const char *url, char *out, size_t out_size);

struct lk_buf;

/* Same as lk_redact_url, appending to a growable buffer (no truncation). */
void lk_redact_url_buf(const char *url, struct lk_buf *out);

/*
 * Appends to `set` every secret of `url`, each followed by a NUL: its password (URI user
 * info up to the last '@', "?password=" and "sslpassword" parameters, "password=" keyword
 * values quoted or not), each both raw and percent-decoded (or unescaped), and the pieces
 * libpq may cut a malformed one into at '@', ':', '/', '?', '&', blanks and the like.
 * NULL or a URL without a password appends nothing.
 */
void lk_redact_secrets(const char *url, struct lk_buf *set);

/*
 * Appends `text` (an error message, e.g. libpq's for a failed connect to `url`) to out
 * with every secret of url (lk_redact_secrets) replaced by "***", longest first; a
 * secret shorter than 4 bytes only where it is a whole word. Redact before truncating.
 */
void lk_redact_text(const char *text, const char *url, struct lk_buf *out);

/*
 * Appends a short YAML-like summary of cfg to out: state store, log and http settings,
 * databases (URLs redacted, the token shown as "***"), and each job's kind, mode, source,
 * target and timing. For `lockstep check-config`; never prints a secret.
 */
void lk_config_dump(const struct lk_config *cfg, struct lk_buf *out);

/*
 * Appends a text that is equal for two jobs exactly when they would run the same way
 * (every key, and the URLs of the databases they use): SIGHUP restarts a job whose
 * fingerprint changed and leaves the others running. Contains secrets: never log it.
 */
void lk_config_job_fingerprint(const struct lk_config *cfg, const struct lk_job *j,
			       struct lk_buf *out);

#endif
