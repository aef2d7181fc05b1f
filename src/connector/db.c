/* db.c - opening a database connection with retries and full-jitter back-off. */
#include "breaker.h"
#include "connector.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include <xxhash.h>

#define LK_LOG_COMPONENT "db"
#include "core/log.h"
#include "core/units.h"

/* Full jitter (AWS architecture blog): a uniform pick in [0, min(max, initial*mult^n)]. */
int64_t lk_backoff_ms(const struct lk_retry_conf *r, int attempt)
{
	double cap = (double)r->initial_ms;
	unsigned char rnd[16];
	uint64_t x = 0;

	for (int i = 0; i < attempt; i++)
		cap *= r->multiplier;
	if (cap > (double)r->max_ms)
		cap = (double)r->max_ms;
	uuid_generate_random(rnd);
	for (int i = 0; i < 8; i++)
		x = (x << 8) | rnd[i];
	return (int64_t)((double)(x >> 11) / (double)(1ULL << 53) * cap);
}

/* The process-wide counts per database: few entries, updated at most about once a second
 * per connection, so one lock and a linear search do. */
static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lk_db_stat stats[LK_DB_STATS_MAX];
static int nstats;

static void stats_add(const struct lk_dbconf *conf, int64_t queries, int64_t errors)
{
	const char *name = conf->name ? conf->name : "?";
	struct lk_db_stat *e = NULL;

	if (queries == 0 && errors == 0)
		return;
	pthread_mutex_lock(&stats_mu);
	for (int i = 0; i < nstats && !e; i++) {
		if (stats[i].state_store == conf->state_store && strcmp(stats[i].name, name) == 0)
			e = &stats[i];
	}
	if (!e && nstats < LK_DB_STATS_MAX) {
		e = &stats[nstats++];
		(void)snprintf(e->name, sizeof(e->name), "%s", name);
		e->state_store = conf->state_store;
	}
	if (e) {
		e->queries += queries;
		e->errors += errors;
	}
	pthread_mutex_unlock(&stats_mu);
}

int lk_db_stats(struct lk_db_stat *out, int max)
{
	int n;

	pthread_mutex_lock(&stats_mu);
	n = nstats < max ? nstats : max;
	memcpy(out, stats, (size_t)n * sizeof(*out));
	pthread_mutex_unlock(&stats_mu);
	return n;
}

void lk_db_tally(struct lk_db *db)
{
	int64_t q, e;

	if (!db->ops || !db->conn)
		return;
	db->ops->counters(db->conn, &q, &e);
	stats_add(db->conf, q - db->conn_queries, e - db->conn_errors);
	db->queries += q - db->conn_queries;
	db->errors += e - db->conn_errors;
	db->conn_queries = q;
	db->conn_errors = e;
}

int lk_db_open(struct lk_db *db, const struct lk_dbconf *conf, const struct lk_retry_conf *retry,
	       volatile const bool *stop, struct lk_err *err)
{
	struct lk_retry_conf def = {3, 1000, 30000, 2.0};
	struct lk_breaker *br;
	struct lk_dbconf probe_conf;
	bool admit, probe;
	int attempts;

	if (!retry)
		retry = &def;
	memset(db, 0, sizeof(*db));
	db->ops = lk_connector_for(conf->kind);
	db->conf = conf;
	br = lk_breaker_enter(conf, &admit, &probe, err);
	if (!admit)
		return -1;
	attempts = probe ? 1 : (retry->attempts > 0 ? retry->attempts : 1);
	/* the half-open probe is one try with its own, shorter connect timeout */
	probe_conf = *conf;
	if (probe)
		probe_conf.connect_timeout_ms = conf->breaker.probe_ms;
	for (int i = 0; i < attempts; i++) {
		int64_t wait;

		db->conn = db->ops->open(&probe_conf, err);
		if (db->conn) {
			lk_breaker_success(br);
			return 0;
		}
		stats_add(conf, 0, 1);
		db->errors++;
		if (!err->transient) {
			/* a probe's failure must move the breaker whatever the error (else it
			 * stayed half-open, failing every caller fast, until a restart) */
			lk_breaker_failure(br, probe, err);
			return -1;
		}
		if (i + 1 == attempts || lk_flag(stop))
			break;
		wait = lk_backoff_ms(retry, i);
		lk_log_warn_err(err, "database '%s' unreachable, retry %d of %d in %lld ms",
				conf->name, i + 1, attempts - 1, (long long)wait);
		lk_sleep_ms(wait, stop);
	}
	lk_breaker_failure(br, probe, err);
	err->code = LK_ERR_UNAVAILABLE;
	return lk_err_prefix(err, "database '%s' stayed unreachable after %d attempt%s", conf->name,
			     attempts, attempts == 1 ? "" : "s");
}

void lk_db_close(struct lk_db *db)
{
	lk_db_tally(db);
	if (db->ops && db->conn)
		db->ops->close(db->conn);
	db->conn = NULL;
}

/*
 * The session tag of a job: "lockstep:JOB" when it fits PostgreSQL's 63 bytes of
 * application_name, else "lockstep:" + the name's first bytes (cut on a character) + "~" +
 * a hash of the whole name. Cut alone, two long names with a common start would share a tag,
 * and each job's new holder would end the other job's open transactions.
 */
static void job_tag(const char *job, char out[64])
{
	static const char pre[] = "lockstep:";
	size_t n = strlen(job), keep;

	if (sizeof(pre) - 1 + n <= 63) {
		(void)snprintf(out, 64, "%s%s", pre, job);
		return;
	}
	keep = 63 - (sizeof(pre) - 1) - 17; /* room for "~" and 16 hex digits */
	while (keep > 0 && ((unsigned char)job[keep] & 0xC0) == 0x80)
		keep--; /* not inside a UTF-8 character */
	(void)snprintf(out, 64, "%s%.*s~%016llx", pre, (int)keep, job,
		       (unsigned long long)XXH64(job, n, 0));
}

void lk_db_tag(struct lk_db *db, const char *job)
{
	struct lk_err err = LK_ERR_INIT;
	char tag[64];
	const char *p[1] = {tag};

	if (!db->conn || db->conf->kind != LK_DB_POSTGRES)
		return;
	job_tag(job, tag); /* application_name: 63 bytes */
	if (db->ops->exec(db->conn, "SELECT set_config('application_name', $1, false)", 1, p, NULL,
			  NULL, &err) < 0)
		lk_log_warn_err(&err, "job %s: cannot tag its session on database '%s'", job,
				db->conf->name);
}

int64_t lk_db_fence_others(struct lk_db *db, const char *job)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows rows;
	char tag[64];
	const char *p[1] = {tag};
	int64_t n = 0;

	if (!db->conn || db->conf->kind != LK_DB_POSTGRES)
		return 0;
	job_tag(job, tag);
	lk_rows_init(&rows, 1);
	if (db->ops->exec(db->conn,
			  "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
			  " WHERE datname = current_database() AND application_name = $1"
			  " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
			  1, p, &rows, NULL, &err) < 0)
		lk_log_warn_err(&err,
				"job %s: cannot end an older holder's open transaction on "
				"database '%s' (the seal waits for it)",
				job, db->conf->name);
	else if (rows.nrows == 1)
		(void)lk_int64_parse(LK_ROW(&rows, 0)[0].p, &n);
	lk_rows_release(&rows);
	if (n > 0)
		lk_log_warn("job %s: ended %lld open transaction%s of an older holder on database "
			    "'%s' (it lost its lease; its uncommitted batch is rolled back)",
			    job, (long long)n, n == 1 ? "" : "s", db->conf->name);
	return n;
}
