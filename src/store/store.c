/* store.c - opening the state store, migrations, instances and position copies. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define LK_LOG_COMPONENT "store"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"

/*
 * The SQLite state database holds run errors and dead letters (row images): made 0600
 * whatever the umask, before SQLite opens it (its -wal and -shm files take the same
 * mode). An existing file is left as it is.
 */
static void make_private(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd >= 0)
		(void)close(fd);
	else if (errno != EEXIST)
		lk_log_debug("cannot create %s beforehand: %s", path, strerror(errno));
}

struct lk_store *lk_store_open(const struct lk_config *cfg, struct lk_err *err)
{
	struct lk_store *s = lk_xcalloc(1, sizeof(*s));
	struct lk_retry_conf retry = {3, 500, 5000, 2.0};

	memcpy(s->name, "state", 6);
	s->kind = cfg->state_kind;
	s->conf.name = s->name;
	s->conf.kind = cfg->state_kind;
	s->conf.url = cfg->state_url;
	s->conf.path = cfg->state_path;
	s->conf.pool = 1;
	s->conf.state_store = true;
	s->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 30000;
	s->renew_ms = cfg->renew_ms > 0 ? cfg->renew_ms : 10000;
	s->prefix = s->kind == LK_DB_POSTGRES ? "lockstep." : "lockstep_";
	if (cfg->deployment)
		(void)snprintf(s->named, sizeof(s->named), "%s", cfg->deployment);
	if (cfg->state_path) {
		s->lock_base = lk_xstrdup(cfg->state_path);
		make_private(cfg->state_path);
	}
	if (lk_db_open(&s->db, &s->conf, &retry, NULL, err) < 0) {
		lk_err_prefix(err, "state store");
		free(s->lock_base);
		free(s);
		return NULL;
	}
	return s;
}

struct lk_store *lk_store_clone(const struct lk_store *s, struct lk_err *err)
{
	struct lk_store *c = lk_xcalloc(1, sizeof(*c));
	struct lk_retry_conf retry = {3, 500, 5000, 2.0};

	*c = *s;
	c->conf.name = c->name;
	c->lock_base = s->lock_base ? lk_xstrdup(s->lock_base) : NULL;
	c->member = s->member ? lk_xstrdup(s->member) : NULL;
	c->observer = NULL;
	if (lk_db_open(&c->db, &c->conf, &retry, NULL, err) < 0) {
		free(c->lock_base);
		free(c->member);
		free(c);
		return NULL;
	}
	return c;
}

void lk_store_close(struct lk_store *s)
{
	if (!s)
		return;
	lk_db_close(&s->db);
	free(s->lock_base);
	free(s->member);
	free(s);
}

const char *lk_store_prefix(const struct lk_store *s)
{
	return s->prefix;
}

struct lk_db *lk_store_db(struct lk_store *s)
{
	return &s->db;
}

/* A failure of the connection itself (the server restarted, the link broke), not of the
 * statement: a lost connection (no SQLSTATE), class 08, or an administrator's shutdown. */
static bool conn_lost(const struct lk_err *err)
{
	return err->transient && (!err->sqlstate[0] || strncmp(err->sqlstate, "08", 2) == 0 ||
				  strncmp(err->sqlstate, "57P0", 4) == 0);
}

/*
 * Opens a new connection in place of one that was lost. A long-lived handle (the daemon's
 * heartbeat, a real-time job's thread, the API's) would otherwise fail every statement
 * after a restart of the store's server. One attempt: the caller's next statement tries
 * again.
 */
static int reconnect(struct lk_store *s, struct lk_err *err)
{
	struct lk_retry_conf once = {1, 0, 0, 1.0};
	struct lk_db fresh;

	if (lk_db_open(&fresh, &s->conf, &once, NULL, err) < 0) {
		lk_err_prefix(err, "state store");
		return -1;
	}
	lk_db_close(&s->db);
	s->db = fresh;
	s->lost = false;
	lk_log_info("reconnected to the state store");
	return 0;
}

int lk_store_exec(struct lk_store *s, const char *sql, int n, const char *const *params,
		  struct lk_rows *out, struct lk_err *err)
{
	int rc;

	if (s->lost && reconnect(s, err) < 0)
		return -1;
	rc = s->db.ops->exec(s->db.conn, sql, n, params, out, NULL, err);
	lk_db_tally(&s->db); /* the state store's statement counts (metrics) */
	if (rc < 0 && s->kind == LK_DB_POSTGRES && conn_lost(err))
		s->lost = true;
	return rc;
}

static void checksum(const char *sql, char out[17])
{
	(void)snprintf(out, 17, "%016llx", (unsigned long long)XXH64(sql, strlen(sql), 0));
}

static int ensure_meta(struct lk_store *s, struct lk_err *err)
{
	const char *sql =
		s->kind == LK_DB_POSTGRES
			? "CREATE SCHEMA IF NOT EXISTS lockstep; CREATE TABLE IF NOT EXISTS"
			  " lockstep.migrations (version integer PRIMARY KEY, name text NOT NULL,"
			  " checksum text NOT NULL, applied_ms bigint NOT NULL)"
			: "CREATE TABLE IF NOT EXISTS lockstep_migrations (version INTEGER PRIMARY "
			  "KEY,"
			  " name TEXT NOT NULL, checksum TEXT NOT NULL, applied_ms INTEGER NOT "
			  "NULL)";

	if (lk_store_exec(s, sql, 0, NULL, NULL, err) == 0)
		return 0;
	/* Two instances creating the schema at once: the loser sees a unique violation. */
	if (strcmp(err->sqlstate, "23505") == 0)
		return lk_store_exec(s, sql, 0, NULL, NULL, err);
	return -1;
}

/* Applies migration m unless present; checks its checksum when present. In one txn. */
static int apply_one(struct lk_store *s, const struct lk_migration *m, int *applied,
		     struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	char sum[17], ver[16], now[24];
	const char *p[4] = {ver, m->name, sum, now};
	int rc = -1;

	checksum(m->sql, sum);
	(void)snprintf(ver, sizeof(ver), "%d", m->version);
	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_rows_init(&rows, 1);
	if (s->db.ops->begin(s->db.conn, err) < 0)
		goto out;
	if (s->kind == LK_DB_POSTGRES &&
	    lk_store_exec(s, "SELECT pg_advisory_xact_lock(7154238)", 0, NULL, NULL, err) < 0)
		goto fail;
	lk_buf_addf(&sql, "SELECT checksum FROM %smigrations WHERE version = $1", s->prefix);
	if (lk_store_exec(s, sql.buf, 1, p, &rows, err) < 0)
		goto fail;
	if (rows.nrows == 1) {
		if (strcmp(LK_ROW(&rows, 0)[0].p, sum) != 0) {
			lk_err_set(
				err, LK_ERR_CONFLICT,
				"state store migration %d (%s) was applied with checksum %s but "
				"this binary has %s: the store was migrated by a different build; "
				"restore the matching binary or a backup of the store",
				m->version, m->name, LK_ROW(&rows, 0)[0].p, sum);
			goto fail;
		}
		rc = s->db.ops->commit(s->db.conn, err);
		goto out;
	}
	if (lk_store_exec(s, m->sql, 0, NULL, NULL, err) < 0) {
		lk_err_prefix(err, "migration %d (%s)", m->version, m->name);
		goto fail;
	}
	lk_buf_reset(&sql);
	lk_buf_addf(&sql,
		    "INSERT INTO %smigrations (version, name, checksum, applied_ms)"
		    " VALUES ($1, $2, $3, $4)",
		    s->prefix);
	if (lk_store_exec(s, sql.buf, 4, p, NULL, err) < 0)
		goto fail;
	rc = s->db.ops->commit(s->db.conn, err);
	if (rc == 0) {
		lk_log_info("applied state store migration %d (%s)", m->version, m->name);
		(*applied)++;
	}
	goto out;
fail:
	s->db.ops->rollback(s->db.conn);
out:
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

/*
 * Refuses a store that a newer lockstep migrated: its tables may have changed in ways this
 * binary does not know, and running on them could lose what the newer one keeps there.
 */
static int check_not_newer(struct lk_store *s, int known, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	int rc;

	lk_rows_init(&rows, 2);
	lk_buf_addf(&sql,
		    "SELECT version, name FROM %smigrations WHERE version > %d ORDER BY version "
		    "DESC LIMIT 1",
		    s->prefix, known);
	rc = lk_store_exec(s, sql.buf, 0, NULL, &rows, err);
	if (rc == 0 && rows.nrows > 0)
		rc = lk_err_set(
			err, LK_ERR_CONFLICT,
			"the state store was migrated by a newer lockstep (it has migration "
			"%s, %s; this binary knows migrations up to %d): run the newer "
			"lockstep, or restore a backup of the store taken before the upgrade",
			LK_ROW(&rows, 0)[0].p, LK_ROW(&rows, 0)[1].p, known);
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_migrate(struct lk_store *s, int *applied, struct lk_err *err)
{
	int n, count = 0;
	const struct lk_migration *list = lk_store_migration_list(s->kind, &n);

	if (ensure_meta(s, err) < 0)
		return lk_err_prefix(err, "state store");
	if (check_not_newer(s, n > 0 ? list[n - 1].version : 0, err) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (apply_one(s, &list[i], &count, err) < 0)
			return -1;
	}
	if (applied)
		*applied = count;
	return 0;
}

int lk_store_migration_status(struct lk_store *s, struct lk_rows *out, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	int n, rc;
	const struct lk_migration *list = lk_store_migration_list(s->kind, &n);

	if (ensure_meta(s, err) < 0)
		return -1;
	lk_rows_init(&rows, 2);
	lk_buf_addf(&sql, "SELECT version, applied_ms FROM %smigrations ORDER BY version",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 0, NULL, &rows, err);
	lk_rows_set_ncols(out, 4);
	for (int i = 0; rc == 0 && i < n; i++) {
		char ver[16], sum[17];
		int row;

		(void)snprintf(ver, sizeof(ver), "%d", list[i].version);
		checksum(list[i].sql, sum);
		lk_rows_add(out);
		row = out->nrows - 1;
		lk_rows_set(out, row, 0, ver, strlen(ver));
		lk_rows_set(out, row, 1, list[i].name, strlen(list[i].name));
		lk_rows_set(out, row, 2, sum, strlen(sum));
		for (int r = 0; r < rows.nrows; r++) {
			const struct lk_value *v = LK_ROW(&rows, r);

			if (strcmp(v[0].p, ver) == 0)
				lk_rows_set(out, row, 3, v[1].p, v[1].len);
		}
	}
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_instance_start(struct lk_store *s, const char *name, int64_t *restarts,
			    struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	char now[24];
	const char *p[2] = {name, now};
	int rc;

	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql,
		    "INSERT INTO %sinstances AS i (name, restarts, started_ms, seen_ms)"
		    " VALUES ($1, 0, $2, $2) ON CONFLICT (name) DO UPDATE"
		    " SET restarts = i.restarts + 1, started_ms = $2, seen_ms = $2"
		    " RETURNING restarts",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 2, p, &rows, err);
	*restarts = 0;
	if (rc == 0 && rows.nrows == 1 && lk_int64_parse(LK_ROW(&rows, 0)[0].p, restarts) < 0)
		*restarts = 0;
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_position_copy(struct lk_store *s, const char *job, int64_t epoch, const char *pos,
			   struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char e[24], now[24];
	const char *p[4] = {job, e, pos, now};
	int rc;

	(void)snprintf(e, sizeof(e), "%lld", (long long)epoch);
	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(&sql,
		    "INSERT INTO %spositions (job, epoch, pos, updated_ms) VALUES ($1, $2, $3, $4)"
		    " ON CONFLICT (job) DO UPDATE SET epoch = $2, pos = $3, updated_ms = $4",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 4, p, NULL, err);
	lk_buf_release(&sql);
	return rc;
}
