/*
 * pg.c - the PostgreSQL connector: connections with pinned session settings,
 * generic statements, table description and streaming reads.
 */
#define LK_LOG_COMPONENT "postgres"
#include "core/log.h"
#include "core/units.h"
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Settings every session pins (DESIGN decision 8). */
static const char *const session_setup =
	"SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601';"
	" SET extra_float_digits = 3; SET bytea_output = 'hex'; SET client_encoding = 'UTF8';"
	" SET standard_conforming_strings = on;"
	/* No call may hang (DESIGN decision 10): a zombie holding the position row's lock
	 * fails the new holder's seal after a minute instead of blocking it forever. */
	" SET lock_timeout = '60s'; SET statement_timeout = '15min'";

int lk_pg_err(struct lk_err *err, struct lk_conn *c, const PGresult *res, const char *context)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	bool bad = c && c->pg && PQstatus(c->pg) == CONNECTION_BAD;
	char clean[LK_ERR_MSG_MAX];
	size_t n;

	if (c)
		__atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED);
	if (!err) /* the caller already holds the error it will report */
		return -1;
	if (!msg)
		msg = c && c->pg ? PQerrorMessage(c->pg) : "no connection";
	(void)snprintf(clean, sizeof(clean), "%s", msg);
	n = strlen(clean);
	while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' '))
		clean[--n] = '\0';
	/* A whole row ("Failing row contains (...)") would reach logs, run records and dead
	 * letters' messages: left out (a dead letter keeps the row itself, behind the token). */
	if (detail && strncmp(detail, "Failing row contains", 20) == 0)
		detail = NULL;
	if (detail)
		lk_err_set(err, LK_ERR_PG, "%s: %s (%s)", context, clean, detail);
	else
		lk_err_set(err, LK_ERR_PG, "%s: %s", context, clean);
	if (state) {
		(void)snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state);
		err->transient = lk_err_sqlstate_is_transient(state);
	}
	if (bad || !state)
		err->transient = err->transient || bad;
	return -1;
}

/* Server NOTICEs ("relation already exists, skipping") go to the debug log, not stderr. */
static void on_notice(void *arg, const char *message)
{
	const struct lk_conn *c = arg;
	size_t n = strlen(message);

	while (n && message[n - 1] == '\n')
		n--;
	lk_log_debug("notice from database '%s': %.*s", c->dbname, (int)n, message);
}

/*
 * The error of a failed connect. libpq's message may quote the URL or its password (a
 * malformed one: "invalid percent-encoded token: \"pa%ss\""), so it is redacted with the
 * URL's own secrets before it is shortened or leaves this function (docs/security.md).
 */
static void connect_failed(PGconn *pg, const struct lk_dbconf *db, struct lk_err *err)
{
	struct lk_buf msg = LK_BUF_INIT;

	lk_redact_text(pg ? PQerrorMessage(pg) : "no memory", db->url, &msg);
	while (msg.len && (msg.buf[msg.len - 1] == '\n' || msg.buf[msg.len - 1] == ' '))
		lk_buf_setlen(&msg, msg.len - 1);
	lk_err_set(err, LK_ERR_PG, "cannot connect to database '%s': %s", db->name, msg.buf);
	/* Authentication and missing databases will not heal by retrying. */
	err->transient = !strstr(msg.buf, "authentication") && !strstr(msg.buf, "does not exist") &&
			 !strstr(msg.buf, "invalid");
	lk_buf_release(&msg);
}

static struct lk_conn *pg_open(const struct lk_dbconf *db, struct lk_err *err)
{
	const char *keys[] = {
		"connect_timeout",  "keepalives",	"keepalives_idle", "keepalives_interval",
		"keepalives_count", "application_name", "dbname",	   NULL};
	char timeout[24];
	const char *vals[] = {timeout, "1", "30", "10", "3", "lockstep", db->url, NULL};
	struct lk_conn *c = calloc(1, sizeof(*c));
	PGresult *res;

	/* libpq takes whole seconds, and treats anything under 2 as 2 */
	(void)snprintf(timeout, sizeof(timeout), "%lld",
		       db->connect_timeout_ms > 0 ? (long long)(db->connect_timeout_ms + 999) / 1000
						  : 10LL);
	if (!c) {
		lk_err_set(err, LK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	(void)snprintf(c->dbname, sizeof(c->dbname), "%s", db->name);
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
		connect_failed(c->pg, db, err);
		PQfinish(c->pg);
		free(c);
		return NULL;
	}
	(void)PQsetNoticeProcessor(c->pg, on_notice, c);
	res = PQexec(lk_pg_q(c), session_setup);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		lk_pg_err(err, c, res, "session setup");
		PQclear(res);
		PQfinish(c->pg);
		free(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

void lk_pg_stages_reset(struct lk_conn *c, bool forget)
{
	for (int i = 0; i < c->nstages; i++) {
		c->stages[i].dirty = false;
		if (forget)
			free(c->stages[i].key);
	}
	if (forget)
		c->nstages = 0;
}

static void pg_close(struct lk_conn *c)
{
	if (!c)
		return;
	lk_pg_stages_reset(c, true);
	PQfinish(c->pg);
	free(c);
}

int lk_pg_cmd(struct lk_conn *c, const char *sql, int n, const char *const *params,
	      int64_t *affected, struct lk_err *err)
{
	PGresult *res = PQexecParams(lk_pg_q(c), sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		rc = lk_pg_err(err, c, res, "query failed");
	} else if (affected) {
		const char *t = PQcmdTuples(res);

		*affected = (t && *t) ? strtoll(t, NULL, 10) : 0;
	}
	PQclear(res);
	return rc;
}

static int pg_begin(struct lk_conn *c, struct lk_err *err)
{
	if (lk_pg_cmd(c, "BEGIN", 0, NULL, NULL, err) < 0)
		return -1;
	c->in_txn = true;
	return 0;
}

static int pg_commit(struct lk_conn *c, struct lk_err *err)
{
	int rc = lk_pg_cmd(c, "COMMIT", 0, NULL, NULL, err);

	c->in_txn = false;
	lk_pg_stages_reset(c, rc < 0);
	return rc;
}

static int pg_rollback(struct lk_conn *c)
{
	PGresult *res = PQexec(lk_pg_q(c), "ROLLBACK");

	PQclear(res);
	c->in_txn = false;
	lk_pg_stages_reset(c, true); /* a stage created in this transaction is gone */
	return 0;
}

static int pg_savepoint(struct lk_conn *c, struct lk_err *err)
{
	if (lk_pg_cmd(c, "SAVEPOINT lk_rows", 0, NULL, NULL, err) < 0)
		return -1;
	c->sp_seq = c->seq;
	return 0;
}

static int pg_savepoint_release(struct lk_conn *c, struct lk_err *err)
{
	return lk_pg_cmd(c, "RELEASE SAVEPOINT lk_rows", 0, NULL, NULL, err);
}

/* Forgets the stages created after the savepoint: ROLLBACK TO dropped their tables. */
static void forget_stages_since(struct lk_conn *c, int seq)
{
	int kept = 0;

	for (int i = 0; i < c->nstages; i++) {
		long n = strtol(c->stages[i].name + strlen("lk_stage_"), NULL, 10);

		if (n > seq) {
			free(c->stages[i].key);
			continue;
		}
		c->stages[kept++] = c->stages[i];
	}
	c->nstages = kept;
}

static int pg_savepoint_rollback(struct lk_conn *c, struct lk_err *err)
{
	if (lk_pg_cmd(c, "ROLLBACK TO SAVEPOINT lk_rows", 0, NULL, NULL, err) < 0)
		return -1;
	forget_stages_since(c, c->sp_seq);
	return lk_pg_cmd(c, "RELEASE SAVEPOINT lk_rows", 0, NULL, NULL, err);
}

static int pg_check_deferred(struct lk_conn *c, struct lk_err *err)
{
	return lk_pg_cmd(c, "SET CONSTRAINTS ALL IMMEDIATE", 0, NULL, NULL, err);
}

static void pg_set_refused(struct lk_conn *c, lk_refused_cb cb, void *arg)
{
	c->refused = cb;
	c->refused_arg = arg;
}

/* Copies a text result into out (all values as text). */
static void result_to_rows(const PGresult *res, struct lk_rows *out)
{
	int nt = PQntuples(res), nf = PQnfields(res);

	if (out->nrows == 0)
		lk_rows_set_ncols(out, nf);
	for (int r = 0; r < nt; r++) {
		int row;

		lk_rows_add(out);
		row = out->nrows - 1;
		for (int f = 0; f < nf && f < out->ncols; f++) {
			if (!PQgetisnull(res, r, f))
				lk_rows_set(out, row, f, PQgetvalue(res, r, f),
					    (size_t)PQgetlength(res, r, f));
		}
	}
}

static int pg_set_timeout(struct lk_conn *c, int64_t ms, struct lk_err *err)
{
	char sql[64];

	(void)snprintf(sql, sizeof(sql), "SET LOCAL statement_timeout = %lld", (long long)ms);
	return lk_pg_cmd(c, sql, 0, NULL, NULL, err);
}

static void pg_counters(const struct lk_conn *c, int64_t *queries, int64_t *errors)
{
	*queries = __atomic_load_n(&c->queries, __ATOMIC_RELAXED);
	*errors = __atomic_load_n(&c->errors, __ATOMIC_RELAXED);
}

static int pg_exec(struct lk_conn *c, const char *sql, int n, const char *const *params,
		   struct lk_rows *out, int64_t *affected, struct lk_err *err)
{
	PGresult *res;
	ExecStatusType st;
	int rc = -1;

	if (n == 0 && !out)
		res = PQexec(lk_pg_q(c), sql); /* allows several statements */
	else
		res = PQexecParams(lk_pg_q(c), sql, n, NULL, params, NULL, NULL, 0);
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "query failed");
		goto out;
	}
	if (affected) {
		const char *t = PQcmdTuples(res);

		*affected = (t && *t) ? strtoll(t, NULL, 10) : 0;
	}
	if (out && st == PGRES_TUPLES_OK)
		result_to_rows(res, out);
	rc = 0;
out:
	PQclear(res);
	return rc;
}

static const char *schema_of(const struct lk_tref *t)
{
	return t->schema ? t->schema : "public";
}

static const char *const describe_sql =
	"SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
	/* a domain's type is its base type's, through domains over domains */
	" (WITH RECURSIVE d(oid, typtype, typbasetype, typname) AS (SELECT t.oid, t.typtype,"
	" t.typbasetype, t.typname UNION ALL SELECT b.oid, b.typtype, b.typbasetype, b.typname"
	" FROM pg_type b JOIN d ON b.oid = d.typbasetype WHERE d.typtype = 'd')"
	" SELECT d.typname FROM d WHERE d.typtype <> 'd'), a.attnotnull,"
	/* int2vector subscripts start at 0: count key positions with ORDINALITY instead. */
	" coalesce((SELECT k.n FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(att, n)"
	" WHERE k.att = a.attnum), 0),"
	" a.attnum, a.atthasdef OR a.attidentity <> '', a.attgenerated, a.attidentity,"
	" CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN"
	" (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co"
	" JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END"
	" FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
	" JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid"
	" LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary"
	" WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
	" AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

static int pg_describe(struct lk_conn *c, const struct lk_tref *t, struct lk_table *out,
		       struct lk_err *err)
{
	const char *params[2] = {schema_of(t), t->name};
	PGresult *res = PQexecParams(lk_pg_q(c), describe_sql, 2, NULL, params, NULL, NULL, 0);
	int n, npk = 0;

	memset(out, 0, sizeof(*out));
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "describe table");
		PQclear(res);
		return -1;
	}
	n = PQntuples(res);
	if (n == 0) {
		PQclear(res);
		return lk_err_set(err, LK_ERR_NOTFOUND,
				  "table %s.%s does not exist in database '%s'", schema_of(t),
				  t->name, c->dbname);
	}
	out->schema = strdup(schema_of(t));
	out->name = strdup(t->name);
	out->cols = calloc((size_t)n, sizeof(*out->cols));
	out->pk = calloc((size_t)n, sizeof(int));
	out->ncols = n;
	for (int i = 0; i < n; i++) {
		int pos = atoi(PQgetvalue(res, i, 4)); /* NOLINT: catalog int2, always valid */

		out->cols[i].name = strdup(PQgetvalue(res, i, 0));
		out->cols[i].native = strdup(PQgetvalue(res, i, 1));
		out->cols[i].type = lk_type_from_pg(PQgetvalue(res, i, 2));
		out->cols[i].not_null = PQgetvalue(res, i, 3)[0] == 't';
		out->cols[i].attnum = atoi(PQgetvalue(res, i, 5)); /* NOLINT: catalog int2 */
		out->cols[i].has_default = PQgetvalue(res, i, 6)[0] == 't';
		out->cols[i].generated = PQgetvalue(res, i, 7)[0];
		out->cols[i].identity = PQgetvalue(res, i, 8)[0];
		if (!PQgetisnull(res, i, 9))
			out->cols[i].collation = strdup(PQgetvalue(res, i, 9));
		if (pos > 0 && pos <= n) {
			out->pk[pos - 1] = i;
			npk++;
		}
	}
	out->npk = npk;
	PQclear(res);
	return 0;
}

static int pg_has_unique(struct lk_conn *c, const struct lk_tref *t, const char *const *cols,
			 int ncols, bool *yes, struct lk_err *err)
{
	static const char *const sql =
		"SELECT i.indexrelid, a.attname FROM pg_index i"
		" JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = "
		"c.relnamespace"
		" JOIN pg_attribute a ON a.attrelid = c.oid"
		" AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1])" /* not INCLUDE */
		" WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL"
		" AND i.indexprs IS NULL AND i.indimmediate AND i.indisvalid"
		" AND i.indnkeyatts = $3::int ORDER BY 1";
	char nbuf[16];
	const char *params[3] = {schema_of(t), t->name, nbuf};
	PGresult *res;
	int n, start = 0;

	*yes = false;
	(void)snprintf(nbuf, sizeof(nbuf), "%d", ncols);
	res = PQexecParams(lk_pg_q(c), sql, 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		lk_pg_err(err, c, res, "list unique indexes");
		PQclear(res);
		return -1;
	}
	n = PQntuples(res);
	/* Rows come grouped by index; an index matches when all its columns are in cols. */
	while (start < n && !*yes) {
		int end = start, hits = 0;

		while (end < n && strcmp(PQgetvalue(res, end, 0), PQgetvalue(res, start, 0)) == 0) {
			for (int k = 0; k < ncols; k++)
				hits += strcmp(cols[k], PQgetvalue(res, end, 1)) == 0;
			end++;
		}
		*yes = (end - start == ncols && hits == ncols);
		start = end;
	}
	PQclear(res);
	return 0;
}

/*
 * Appends " COLLATE x" for a column's collation (quoted, qualified) when this database has
 * it for its encoding; else leaves it out (the column gets its type's default) and says so.
 */
static int add_collation(struct lk_conn *c, struct lk_buf *sql, const struct lk_column *col,
			 struct lk_err *err)
{
	static const char *const q =
		"SELECT 1 FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace n"
		" ON n.oid = co.collnamespace WHERE pg_catalog.quote_ident(n.nspname) || '.' ||"
		" pg_catalog.quote_ident(co.collname) = $1 AND co.collencoding IN (-1,"
		" (SELECT encoding FROM pg_catalog.pg_database WHERE datname ="
		" pg_catalog.current_database()))";
	const char *params[] = {col->collation};
	struct lk_rows out;
	int rc;

	lk_rows_init(&out, 1);
	rc = pg_exec(c, q, 1, params, &out, NULL, err);
	if (rc == 0 && out.nrows > 0)
		lk_buf_addf(sql, " COLLATE %s", col->collation);
	else if (rc == 0)
		lk_log_warn("column %s is created in database '%s' without its collation %s, "
			    "which that database does not have: it gets its type's default",
			    col->name, c->dbname, col->collation);
	lk_rows_release(&out);
	return rc;
}

/*
 * A target made from the source: plain columns of the given types (a generated or identity
 * source column becomes a plain column holding the source's values: the source is the only
 * writer of them), with the column's collation when this database has it, and the key.
 */
static int pg_create_table(struct lk_conn *c, const struct lk_tref *t, const struct lk_column *cols,
			   int ncols, const int *key, int nkey, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	int rc = -1;

	if (t->schema) {
		lk_buf_adds(&sql, "CREATE SCHEMA IF NOT EXISTS ");
		lk_quote_ident(&sql, t->schema);
		lk_buf_adds(&sql, "; ");
	}
	lk_buf_adds(&sql, "CREATE TABLE IF NOT EXISTS ");
	lk_quote_tref_for(&sql, t, LK_DB_POSTGRES);
	lk_buf_adds(&sql, " (");
	for (int i = 0; i < ncols; i++) {
		lk_buf_adds(&sql, i ? ", " : "");
		lk_quote_ident(&sql, cols[i].name);
		/* Same engine: the exact native type; across engines: the mapped meaning. */
		lk_buf_addf(&sql, " %s",
			    cols[i].native ? cols[i].native : lk_type_pg_decl(cols[i].type));
		if (cols[i].collation && add_collation(c, &sql, &cols[i], err) < 0)
			goto out;
		lk_buf_adds(&sql, cols[i].not_null ? " NOT NULL" : "");
	}
	lk_buf_adds(&sql, ", PRIMARY KEY (");
	for (int i = 0; i < nkey; i++) {
		lk_buf_adds(&sql, i ? ", " : "");
		lk_quote_ident(&sql, cols[key[i]].name);
	}
	lk_buf_adds(&sql, "))");
	rc = pg_exec(c, sql.buf, 0, NULL, NULL, NULL, err);
out:
	lk_buf_release(&sql);
	return rc;
}

static int pg_estimate(struct lk_conn *c, const struct lk_tref *t, int64_t *rows,
		       struct lk_err *err)
{
	static const char *const sql =
		"SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n"
		" ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2";
	const char *params[2] = {schema_of(t), t->name};
	struct lk_rows out;
	int rc;

	lk_rows_init(&out, 1);
	*rows = -1;
	rc = pg_exec(c, sql, 2, params, &out, NULL, err);
	if (rc == 0 && out.nrows == 1 && !LK_ROW(&out, 0)[0].null &&
	    lk_int64_parse(LK_ROW(&out, 0)[0].p, rows) < 0)
		*rows = -1;
	lk_rows_release(&out);
	return rc;
}

static int pg_is_empty(struct lk_conn *c, const struct lk_tref *t, bool *empty, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows out;
	int rc;

	lk_buf_adds(&sql, "SELECT 1 FROM ");
	lk_quote_tref_for(&sql, t, LK_DB_POSTGRES);
	lk_buf_adds(&sql, " LIMIT 1");
	lk_rows_init(&out, 1);
	rc = pg_exec(c, sql.buf, 0, NULL, &out, NULL, err);
	*empty = out.nrows == 0;
	lk_rows_release(&out);
	lk_buf_release(&sql);
	return rc;
}

/* Copies a column's text into a field, "" for NULL. */
static void copy_col(char *out, size_t out_size, const struct lk_value *v)
{
	(void)snprintf(out, out_size, "%s", v->null ? "" : v->p);
}

/*
 * The prepared transactions of this database: how many, their xids, the oldest's gid and
 * PREPARE time. Read after pg_stat_activity: a transaction that PREPAREs in between is
 * then seen in one of the two (it is listed here before it leaves pg_stat_activity).
 */
static int prepared_xacts(struct lk_conn *c, struct lk_poll_cap *out, struct lk_err *err)
{
	static const char *const sql =
		"WITH px AS MATERIALIZED (SELECT transaction, gid, prepared FROM pg_prepared_xacts"
		" WHERE database = current_database())"
		" SELECT (SELECT count(*) FROM px),"
		" coalesce((SELECT string_agg(transaction::text, ',') FROM px), ''),"
		" p.gid, p.prepared::text FROM (SELECT 1) one LEFT JOIN LATERAL"
		" (SELECT gid, prepared FROM px ORDER BY prepared LIMIT 1) p ON true";
	struct lk_rows rows;
	const struct lk_value *r;
	int rc;

	lk_rows_init(&rows, 4);
	rc = pg_exec(c, sql, 0, NULL, &rows, NULL, err);
	if (rc == 0 && rows.nrows == 1) {
		r = LK_ROW(&rows, 0);
		if (lk_int64_parse(r[0].p, &out->nprepared) < 0)
			out->nprepared = 0;
		out->xids = lk_xstrdup(r[1].p);
		copy_col(out->gid, sizeof(out->gid), &r[2]);
		copy_col(out->prepared_at, sizeof(out->prepared_at), &r[3]);
	}
	lk_rows_release(&rows);
	return rc;
}

/*
 * Poll mode's view of the open transactions. A standby's pg_stat_activity lists only its
 * own sessions, without pg_read_all_stats other roles' xact_start reads NULL, and a
 * session with track_activities off shows none: then the oldest start cannot be known,
 * and the state says why.
 */
static int pg_poll_cap(struct lk_conn *c, struct lk_poll_cap *out, struct lk_err *err)
{
	static const char *const sql =
		"SELECT pg_is_in_recovery(),"
		" (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
		" OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER'),"
		/* Every other open transaction here, background workers too. */
		" coalesce(min(xact_start) FILTER (WHERE state IS DISTINCT FROM 'idle'), "
		"clock_timestamp())::text,"
		/* A session with track_activities off shows no xact_start. */
		" coalesce(bool_or(state = 'disabled'), false)"
		" FROM pg_stat_activity WHERE datname = current_database()"
		" AND pid <> pg_backend_pid()";
	struct lk_rows rows;
	const struct lk_value *r;
	int rc;

	memset(out, 0, sizeof(*out));
	out->state = LK_POLL_CAP_NO_PRIVILEGE;
	lk_rows_init(&rows, 4);
	rc = pg_exec(c, sql, 0, NULL, &rows, NULL, err);
	if (rc == 0 && rows.nrows == 1) {
		r = LK_ROW(&rows, 0);
		if (r[0].p[0] == 't')
			out->state = LK_POLL_CAP_STANDBY;
		else if (r[1].p[0] != 't')
			out->state = LK_POLL_CAP_NO_PRIVILEGE;
		else if (r[3].p[0] == 't')
			out->state = LK_POLL_CAP_UNTRACKED;
		else
			out->state = LK_POLL_CAP_ON;
		if (out->state == LK_POLL_CAP_ON)
			copy_col(out->cap, sizeof(out->cap), &r[2]);
	}
	lk_rows_release(&rows);
	if (rc == 0 && out->state == LK_POLL_CAP_ON)
		rc = prepared_xacts(c, out, err);
	return rc;
}

/* The timeline guard's look at the server: system identifier, timeline, next xid. A
 * primary's timeline is the one it writes WAL on (the first 8 hex digits of its current
 * WAL file's name, new at once after a promotion); a standby's, its last restartpoint's.
 * A function the role may not run reads NULL, and its check is skipped. */
static const char *const lineage_sql =
	"SELECT CASE WHEN pg_catalog.has_function_privilege("
	"'pg_catalog.pg_control_system()', 'EXECUTE')"
	" THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END,"
	" CASE WHEN pg_catalog.pg_is_in_recovery() THEN"
	" CASE WHEN pg_catalog.has_function_privilege("
	"'pg_catalog.pg_control_checkpoint()', 'EXECUTE')"
	" THEN (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())::text END"
	" WHEN pg_catalog.has_function_privilege("
	"'pg_catalog.pg_walfile_name(pg_lsn)', 'EXECUTE')"
	" THEN ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name("
	"pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::bigint::text END,"
	" pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text";

/* The job's row of the change-capture consumer registry (connector/pg_cdc.c keeps it). */
static int registry_row(struct lk_conn *c, const char *job, int64_t relid, struct lk_lineage *out,
			struct lk_err *err)
{
	char id[32];
	const char *params[] = {job, id};
	struct lk_rows rows;
	int rc;

	(void)snprintf(id, sizeof(id), "%lld", (long long)relid);
	lk_rows_init(&rows, 3);
	rc = pg_exec(c,
		     "SELECT horizon::text, COALESCE(xid::text, '0'), COALESCE(seq::text, '0')"
		     " FROM lockstep_cdc.consumers WHERE job = $1 AND relid = $2::oid",
		     2, params, &rows, NULL, err);
	out->registered = rc == 0 && rows.nrows == 1;
	for (int i = 0; out->registered && i < 3; i++)
		if (lk_int64_parse(LK_ROW(&rows, 0)[i].p, &out->reg[i]) < 0)
			out->reg[i] = 0;
	lk_rows_release(&rows);
	return rc;
}

static int pg_lineage(struct lk_conn *c, const char *job, int64_t relid, struct lk_lineage *out,
		      struct lk_err *err)
{
	struct lk_rows rows;
	const struct lk_value *r;
	int rc;

	memset(out, 0, sizeof(*out));
	lk_rows_init(&rows, 3);
	rc = pg_exec(c, lineage_sql, 0, NULL, &rows, NULL, err);
	if (rc == 0 && rows.nrows == 1) {
		r = LK_ROW(&rows, 0);
		copy_col(out->sysid, sizeof(out->sysid), &r[0]);
		if (r[1].null || lk_int64_parse(r[1].p, &out->tli) < 0)
			out->tli = 0;
		if (lk_int64_parse(r[2].p, &out->next_xid) < 0)
			out->next_xid = 0;
	}
	lk_rows_release(&rows);
	if (rc == 0 && job)
		rc = registry_row(c, job, relid, out, err);
	return rc < 0 ? lk_err_prefix(err, "read where the source's history comes from") : 0;
}

const struct lk_connector_ops lk_pg_ops = {
	.name = "postgres",
	.open = pg_open,
	.close = pg_close,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.savepoint = pg_savepoint,
	.savepoint_release = pg_savepoint_release,
	.savepoint_rollback = pg_savepoint_rollback,
	.check_deferred = pg_check_deferred,
	.set_refused = pg_set_refused,
	.exec = pg_exec,
	.set_timeout = pg_set_timeout,
	.counters = pg_counters,
	.describe = pg_describe,
	.has_unique = pg_has_unique,
	.create_table = pg_create_table,
	.estimate = pg_estimate,
	.is_empty = pg_is_empty,
	.scan_open = lk_pg_scan_open,
	.scan_next = lk_pg_scan_next,
	.scan_close = lk_pg_scan_close,
	.fetch = lk_pg_fetch,
	.upsert = lk_pg_upsert,
	.copy_out_open = lk_pg_copy_out_open,
	.copy_out_next = lk_pg_copy_out_next,
	.copy_out_close = lk_pg_copy_out_close,
	.upsert_copy = lk_pg_upsert_copy,
	.delete_keys = lk_pg_delete_keys,
	.position_setup = lk_pg_position_setup,
	.position_get = lk_pg_position_get,
	.position_put = lk_pg_position_put,
	.poll_cap = pg_poll_cap,
	.lineage = pg_lineage,
};
