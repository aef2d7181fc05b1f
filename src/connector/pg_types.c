/*
 * pg_types.c - the source's types on a PostgreSQL target (pg_types.h, docs/types.md "Types
 * on a PostgreSQL target"): built-in types as they are, domains as their base type, enums,
 * ranges and composite types made on the target, extension types taken from the target's
 * own extension, and enum labels the source gained added to the target's enum.
 */
#include "pg_types.h"

#define LK_LOG_COMPONENT "postgres"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"
#include "pg_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 16	      /* nesting of arrays, domains, ranges and composites */
#define DDL_TRIES 5	      /* a DDL statement that meets a lock is tried this often */
#define DDL_LOCK_TIMEOUT "2s" /* ... each time waiting this long for its lock */

/* One resolution: the two connections and the column it is for (messages). */
struct tctx {
	struct lk_conn *src, *dst;
	const char *dst_db;
	const char *table; /* the source table, schema.name */
	const char *col;   /* the column being resolved */
	const char *native;
	bool dry;	       /* only check: no DDL (what would be made is taken as made) */
	char lock_timeout[64]; /* the target session's own, restored after each DDL */
};

/* What the source's catalog says about one type (pg_type and around). */
struct tinfo {
	char typtype;
	bool builtin;	  /* in pg_catalog: the same on every server */
	char nsp[130];	  /* schema, raw */
	char name[130];	  /* type name, raw */
	char qname[270];  /* "schema"."name" */
	char elem[16];	  /* an array: its element type's oid, else "" */
	char base[16];	  /* a domain: its base type's oid ... */
	char basemod[16]; /* ... and the typmod it applies to it */
	char ext[130];	  /* the extension it belongs to, raw, or "" */
	char ext_q[140];  /* the same, quoted when it needs it */
	char fmt[300];	  /* format_type(oid, typmod) */
	char mod[200];	  /* the typmod's text ("(Point,4326)"), or "" */
	char relid[16];	  /* a composite: its pg_class row ... */
	char relkind;	  /* ... and that row's kind ('c' for CREATE TYPE AS) */
};

static int resolve(struct tctx *x, const char *oid, const char *typmod, int depth,
		   struct lk_buf *out, struct lk_err *err);

/* Runs a query with text parameters; NULL (err set) unless it returned rows. */
static PGresult *query(struct lk_conn *c, const char *sql, int n, const char *const *params,
		       const char *what, struct lk_err *err)
{
	PGresult *res = PQexecParams(lk_pg_q(c), sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	lk_pg_err(err, c, res, what);
	PQclear(res);
	return NULL;
}

static void field(char *out, size_t size, const PGresult *res, int row, int col)
{
	(void)snprintf(out, size, "%s",
		       PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

/*
 * A refusal the user must act on: LK_ERR_SCHEMA, never retried, "column "c" of s.t has type
 * T" followed by the formatted rest. Returns -1.
 */
__attribute__((format(printf, 3, 4))) static int refuse(struct lk_err *err, const struct tctx *x,
							const char *fmt, ...)
{
	char rest[LK_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(rest, sizeof(rest), fmt, ap);
	va_end(ap);
	lk_err_set(err, LK_ERR_SCHEMA, "column \"%s\" of %s has type %s%s", x->col, x->table,
		   x->native, rest);
	err->transient = false;
	return -1;
}

static const char *const tinfo_sql =
	"SELECT t.typtype::text, n.nspname = 'pg_catalog', n.nspname, t.typname,"
	" pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname),"
	" CASE WHEN t.typelem <> 0 AND EXISTS (SELECT 1 FROM pg_catalog.pg_type a"
	" WHERE a.typarray = t.oid) THEN t.typelem::text END,"
	" t.typbasetype::text, t.typtypmod::text, x.extname, pg_catalog.quote_ident(x.extname),"
	" pg_catalog.format_type(t.oid, $2::int),"
	" CASE WHEN pg_catalog.left(pg_catalog.format_type(t.oid, $2::int),"
	" pg_catalog.length(pg_catalog.format_type(t.oid, NULL))) ="
	" pg_catalog.format_type(t.oid, NULL) THEN pg_catalog.substr(pg_catalog.format_type(t.oid,"
	" $2::int), pg_catalog.length(pg_catalog.format_type(t.oid, NULL)) + 1) END,"
	" t.typrelid::text, (SELECT c.relkind::text FROM pg_catalog.pg_class c"
	" WHERE c.oid = t.typrelid)"
	" FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
	" LEFT JOIN (pg_catalog.pg_depend d JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid)"
	" ON d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid"
	" AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'"
	" WHERE t.oid = $1::oid";

/* Reads the source's catalog entry of type `oid` (a column's or an element's typmod). */
static int type_info(struct tctx *x, const char *oid, const char *typmod, struct tinfo *ti,
		     struct lk_err *err)
{
	const char *params[] = {oid, typmod};
	PGresult *res = query(x->src, tinfo_sql, 2, params, "read a source type", err);
	char relkind[4];

	if (!res)
		return -1;
	memset(ti, 0, sizeof(*ti));
	if (PQntuples(res) != 1) {
		PQclear(res);
		return lk_err_set(err, LK_ERR_SCHEMA, "column \"%s\" of %s: type %s is gone",
				  x->col, x->table, oid);
	}
	ti->typtype = PQgetvalue(res, 0, 0)[0];
	ti->builtin = PQgetvalue(res, 0, 1)[0] == 't';
	field(ti->nsp, sizeof(ti->nsp), res, 0, 2);
	field(ti->name, sizeof(ti->name), res, 0, 3);
	field(ti->qname, sizeof(ti->qname), res, 0, 4);
	field(ti->elem, sizeof(ti->elem), res, 0, 5);
	field(ti->base, sizeof(ti->base), res, 0, 6);
	field(ti->basemod, sizeof(ti->basemod), res, 0, 7);
	field(ti->ext, sizeof(ti->ext), res, 0, 8);
	field(ti->ext_q, sizeof(ti->ext_q), res, 0, 9);
	field(ti->fmt, sizeof(ti->fmt), res, 0, 10);
	field(ti->mod, sizeof(ti->mod), res, 0, 11);
	field(ti->relid, sizeof(ti->relid), res, 0, 12);
	field(relkind, sizeof(relkind), res, 0, 13);
	ti->relkind = relkind[0];
	PQclear(res);
	return 0;
}

/*
 * The target's type of the same schema and name: returns 1 and sets *typtype (and oid, 16
 * bytes, when not NULL), 0 when it has none, -1 on an error.
 */
static int target_type(struct tctx *x, const struct tinfo *ti, char *typtype, char *oid,
		       struct lk_err *err)
{
	static const char *const sql =
		"SELECT t.typtype::text, t.oid::text FROM pg_catalog.pg_type t"
		" JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
		" WHERE n.nspname = $1 AND t.typname = $2";
	const char *params[] = {ti->nsp, ti->name};
	PGresult *res = query(x->dst, sql, 2, params, "look for a type on the target", err);
	int found;

	if (!res)
		return -1;
	found = PQntuples(res) == 1;
	if (found) {
		*typtype = PQgetvalue(res, 0, 0)[0];
		if (oid)
			field(oid, 16, res, 0, 1);
	}
	PQclear(res);
	return found;
}

/* Sets the target session's lock_timeout; -1 on an error. */
static int set_lock_timeout(struct tctx *x, const char *value, struct lk_err *err)
{
	const char *params[] = {value};

	return lk_pg_cmd(x->dst, "SELECT pg_catalog.set_config('lock_timeout', $1, false)", 1,
			 params, NULL, err);
}

/*
 * Runs one DDL statement on the target in autocommit with a short lock_timeout; a lock it
 * cannot get in time is tried again a few times. `what` names it for messages. An error
 * that is not the connection's is LK_ERR_SCHEMA (not transient); its SQLSTATE is kept.
 */
static int ddl(struct tctx *x, const char *sql, const char *what, struct lk_err *err)
{
	struct lk_err e = LK_ERR_INIT;
	int rc = -1;

	if (x->dry)
		return 0;
	for (int attempt = 1; attempt <= DDL_TRIES; attempt++) {
		if (set_lock_timeout(x, DDL_LOCK_TIMEOUT, &e) < 0)
			break;
		rc = lk_pg_cmd(x->dst, sql, 0, NULL, NULL, &e);
		if (set_lock_timeout(x, x->lock_timeout, rc < 0 ? NULL : &e) < 0)
			rc = -1;
		if (rc == 0 || strcmp(e.sqlstate, "55P03") != 0)
			break;
		lk_log_debug("%s in database '%s': waiting for a lock (try %d)", what, x->dst_db,
			     attempt);
		lk_sleep_ms(100LL * attempt, NULL);
	}
	if (rc == 0) {
		lk_log_info("%s in database '%s'", what, x->dst_db);
		return 0;
	}
	*err = e;
	if (strcmp(e.sqlstate, "55P03") == 0)
		err->transient = true; /* another session holds it: a later run may pass */
	else if (!e.transient)
		err->code = LK_ERR_SCHEMA;
	return lk_err_prefix(err, "%s in database '%s'", what, x->dst_db);
}

/* Makes the schema on the target unless it is there (CREATE needs no privilege then). */
static int ensure_schema(struct tctx *x, const char *nsp, struct lk_err *err)
{
	const char *params[] = {nsp};
	PGresult *res = query(x->dst, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", 1,
			      params, "look for a schema on the target", err);
	struct lk_buf sql = LK_BUF_INIT;
	char what[300];
	int n, rc;

	if (!res)
		return -1;
	n = PQntuples(res);
	PQclear(res);
	if (n > 0)
		return 0;
	lk_buf_adds(&sql, "CREATE SCHEMA IF NOT EXISTS ");
	lk_quote_ident(&sql, nsp);
	(void)snprintf(what, sizeof(what), "create schema %s",
		       sql.buf + strlen("CREATE SCHEMA IF NOT EXISTS "));
	rc = ddl(x, sql.buf, what, err);
	lk_buf_release(&sql);
	return rc;
}

/* ---- enums ---- */

/* The labels of enum `oid` in order: raw (col 0) and as SQL literals (col 1). */
static PGresult *enum_labels(struct lk_conn *c, const char *oid, struct lk_err *err)
{
	const char *params[] = {oid};

	return query(c,
		     "SELECT enumlabel, pg_catalog.quote_literal(enumlabel) FROM pg_catalog.pg_enum"
		     " WHERE enumtypid = $1::oid ORDER BY enumsortorder",
		     1, params, "read enum labels", err);
}

static bool has_label(const PGresult *res, const char *label)
{
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 0), label) == 0)
			return true;
	}
	return false;
}

/*
 * ALTER TYPE qname ADD VALUE for source label j: after the source label before it (on the
 * target by now), else before the first later source label the target has, else at the end.
 */
static void add_value_sql(struct lk_buf *sql, const char *qname, const PGresult *s,
			  const PGresult *d, int j)
{
	lk_buf_addf(sql, "ALTER TYPE %s ADD VALUE IF NOT EXISTS %s", qname, PQgetvalue(s, j, 1));
	if (j > 0) {
		lk_buf_addf(sql, " AFTER %s", PQgetvalue(s, j - 1, 1));
		return;
	}
	for (int k = 1; k < PQntuples(s); k++) {
		if (has_label(d, PQgetvalue(s, k, 0))) {
			lk_buf_addf(sql, " BEFORE %s", PQgetvalue(s, k, 1));
			return;
		}
	}
}

/* Adds to the target's enum (qname, dst_oid) the labels of the source's (src_oid) it lacks. */
static int sync_labels(struct tctx *x, const char *src_oid, const char *qname, const char *dst_oid,
		       struct lk_err *err)
{
	PGresult *s, *d = NULL;
	struct lk_buf sql = LK_BUF_INIT;
	int rc = -1;

	if (x->dry) /* the check-only pass changes nothing */
		return 0;
	s = enum_labels(x->src, src_oid, err);
	if (!s || !(d = enum_labels(x->dst, dst_oid, err)))
		goto out;
	for (int j = 0; j < PQntuples(s); j++) {
		char what[400];

		if (has_label(d, PQgetvalue(s, j, 0)))
			continue;
		lk_buf_reset(&sql);
		add_value_sql(&sql, qname, s, d, j);
		(void)snprintf(what, sizeof(what), "add label %s to enum %s", PQgetvalue(s, j, 1),
			       qname);
		if (ddl(x, sql.buf, what, err) < 0)
			goto out;
		PQclear(d);
		if (!(d = enum_labels(x->dst, dst_oid, err)))
			goto out;
	}
	rc = 0;
out:
	PQclear(s);
	PQclear(d);
	lk_buf_release(&sql);
	return rc;
}

/* CREATE TYPE qname AS ENUM with the source's labels in order. */
static int create_enum(struct tctx *x, const char *oid, const struct tinfo *ti, struct lk_err *err)
{
	PGresult *s = enum_labels(x->src, oid, err);
	struct lk_buf sql = LK_BUF_INIT;
	char what[320];
	int rc;

	if (!s)
		return -1;
	lk_buf_addf(&sql, "CREATE TYPE %s AS ENUM (", ti->qname);
	for (int j = 0; j < PQntuples(s); j++)
		lk_buf_addf(&sql, "%s%s", j ? ", " : "", PQgetvalue(s, j, 1));
	lk_buf_adds(&sql, ")");
	PQclear(s);
	(void)snprintf(what, sizeof(what), "create enum %s", ti->qname);
	rc = ddl(x, sql.buf, what, err);
	lk_buf_release(&sql);
	return rc;
}

/*
 * An enum: the target's of the same schema and name, made when missing, given the labels
 * it lacks when present. Another session making it at the same time is no error.
 */
static int ensure_enum(struct tctx *x, const char *oid, const struct tinfo *ti, struct lk_buf *out,
		       struct lk_err *err)
{
	char typtype = 0, dst_oid[16];

	for (int attempt = 0; attempt < 3; attempt++) {
		int found = target_type(x, ti, &typtype, dst_oid, err);

		if (found < 0)
			return -1;
		if (found && typtype != 'e')
			return refuse(err, x,
				      ", but type %s in database '%s' is not an enum: drop or "
				      "rename it, or create the target table yourself",
				      ti->qname, x->dst_db);
		if (found) {
			if (sync_labels(x, oid, ti->qname, dst_oid, err) < 0)
				return -1;
			lk_buf_adds(out, ti->qname);
			return 0;
		}
		if (ensure_schema(x, ti->nsp, err) < 0)
			return -1;
		if (create_enum(x, oid, ti, err) == 0) {
			lk_buf_adds(out, ti->qname);
			return 0;
		}
		if (strcmp(err->sqlstate, "42710") != 0)
			return -1; /* 42710: made meanwhile by someone else: look again */
	}
	return lk_err_set(err, LK_ERR_SCHEMA, "cannot create enum %s in database '%s'", ti->qname,
			  x->dst_db);
}

/* ---- ranges and multiranges ---- */

static const char *const range_sql =
	"SELECT r.rngsubtype::text, r.rngcanonical <> 0, r.rngsubdiff <> 0,"
	" CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> st.typcollation THEN"
	" (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)"
	" FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn"
	" ON cn.oid = co.collnamespace WHERE co.oid = r.rngcollation) END,"
	" CASE WHEN NOT oc.opcdefault THEN pg_catalog.quote_ident(opn.nspname) || '.' ||"
	" pg_catalog.quote_ident(oc.opcname) END, %s"
	" FROM pg_catalog.pg_range r JOIN pg_catalog.pg_type st ON st.oid = r.rngsubtype"
	" JOIN pg_catalog.pg_opclass oc ON oc.oid = r.rngsubopc"
	" JOIN pg_catalog.pg_namespace opn ON opn.oid = oc.opcnamespace WHERE r.rngtypid = $1::oid";

/* The multirange's name and schema (PostgreSQL 14 and later, on both ends), kept the same. */
static const char *const multirange_cols =
	"(SELECT pg_catalog.quote_ident(mn.nspname) || '.' || pg_catalog.quote_ident(mt.typname)"
	" FROM pg_catalog.pg_type mt JOIN pg_catalog.pg_namespace mn ON mn.oid = mt.typnamespace"
	" WHERE mt.oid = r.rngmultitypid), (SELECT mn.nspname FROM pg_catalog.pg_type mt"
	" JOIN pg_catalog.pg_namespace mn ON mn.oid = mt.typnamespace"
	" WHERE mt.oid = r.rngmultitypid)";

/* Appends the options after `subtype = ...` of CREATE TYPE ... AS RANGE from range_sql's row. */
static int range_options(struct tctx *x, const PGresult *r, struct lk_buf *sql, struct lk_err *err)
{
	if (!PQgetisnull(r, 0, 4))
		lk_buf_addf(sql, ", subtype_opclass = %s", PQgetvalue(r, 0, 4));
	if (!PQgetisnull(r, 0, 3))
		lk_buf_addf(sql, ", collation = %s", PQgetvalue(r, 0, 3));
	if (!PQgetisnull(r, 0, 5) && !PQgetisnull(r, 0, 6)) {
		if (ensure_schema(x, PQgetvalue(r, 0, 6), err) < 0)
			return -1;
		lk_buf_addf(sql, ", multirange_type_name = %s", PQgetvalue(r, 0, 5));
	}
	return 0;
}

/* CREATE TYPE qname AS RANGE from the source's definition (r: range_sql's row). */
static int create_range(struct tctx *x, const struct tinfo *ti, const PGresult *r, int depth,
			struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT, sub = LK_BUF_INIT;
	char what[320];
	int rc = -1;

	if (resolve(x, PQgetvalue(r, 0, 0), "-1", depth + 1, &sub, err) < 0 ||
	    ensure_schema(x, ti->nsp, err) < 0)
		goto out;
	lk_buf_addf(&sql, "CREATE TYPE %s AS RANGE (subtype = %s", ti->qname, sub.buf);
	if (range_options(x, r, &sql, err) < 0)
		goto out;
	lk_buf_adds(&sql, ")");
	if (PQgetvalue(r, 0, 2)[0] == 't' && !x->dry)
		lk_log_warn("range type %s is created in database '%s' without its subtype_diff "
			    "function (lockstep cannot copy functions): GiST indexes on it work, "
			    "less well",
			    ti->qname, x->dst_db);
	(void)snprintf(what, sizeof(what), "create range type %s", ti->qname);
	rc = ddl(x, sql.buf, what, err);
out:
	lk_buf_release(&sql);
	lk_buf_release(&sub);
	return rc;
}

/*
 * A user-defined range: the target's of the same schema and name, else made there with the
 * same subtype, operator class and collation. A range with a canonical function (a C
 * function) cannot be made by lockstep: refused unless the target has it.
 */
static int ensure_range(struct tctx *x, const char *oid, const struct tinfo *ti, int depth,
			struct lk_buf *out, struct lk_err *err)
{
	char sql[2048], typtype = 0;
	const char *params[] = {oid};
	bool both14 =
		PQserverVersion(x->src->pg) >= 140000 && PQserverVersion(x->dst->pg) >= 140000;
	PGresult *r;
	int found = target_type(x, ti, &typtype, NULL, err), rc = -1;

	if (found < 0)
		return -1;
	if (found && typtype != 'r')
		return refuse(err, x,
			      ", but type %s in database '%s' is not a range: drop or rename it, "
			      "or create the target table yourself",
			      ti->qname, x->dst_db);
	if (found) {
		lk_buf_adds(out, ti->qname);
		return 0;
	}
	(void)snprintf(sql, sizeof(sql), range_sql, both14 ? multirange_cols : "NULL, NULL");
	if (!(r = query(x->src, sql, 1, params, "read a source range type", err)))
		return -1;
	if (PQntuples(r) != 1)
		rc = lk_err_set(err, LK_ERR_SCHEMA, "range type %s is gone", ti->qname);
	else if (PQgetvalue(r, 0, 1)[0] == 't')
		rc = refuse(err, x,
			    ": range type %s has a canonical function, which lockstep cannot copy: "
			    "create the type in database '%s' yourself, or create the target "
			    "table yourself",
			    ti->qname, x->dst_db);
	else
		rc = create_range(x, ti, r, depth, err);
	PQclear(r);
	if (rc == 0)
		lk_buf_adds(out, ti->qname);
	return rc;
}

/* Appends the target's multirange of its range `range` (quoted, qualified). */
static int target_multirange(struct tctx *x, const char *range, struct lk_buf *out,
			     struct lk_err *err)
{
	const char *params[] = {range};
	PGresult *r = query(x->dst,
			    "SELECT pg_catalog.quote_ident(n.nspname) || '.' ||"
			    " pg_catalog.quote_ident(t.typname) FROM pg_catalog.pg_range r"
			    " JOIN pg_catalog.pg_type t ON t.oid = r.rngmultitypid"
			    " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
			    " WHERE r.rngtypid = $1::pg_catalog.regtype",
			    1, params, "look for a multirange on the target", err);
	int rc = 0;

	if (!r)
		return -1;
	if (PQntuples(r) == 1)
		lk_buf_adds(out, PQgetvalue(r, 0, 0));
	else
		rc = refuse(err, x, ": range %s in database '%s' has no multirange", range,
			    x->dst_db);
	PQclear(r);
	return rc;
}

/* A multirange: its range is resolved (made), and the target's multirange of it is used. */
static int multirange(struct tctx *x, const char *oid, const struct tinfo *ti, int depth,
		      struct lk_buf *out, struct lk_err *err)
{
	const char *params[] = {oid};
	struct lk_buf range = LK_BUF_INIT;
	PGresult *r = query(
		x->src,
		"SELECT rngtypid::text FROM pg_catalog.pg_range WHERE rngmultitypid = $1::oid", 1,
		params, "read a source multirange type", err);
	int rc = -1;

	if (!r)
		return -1;
	if (PQntuples(r) != 1)
		rc = lk_err_set(err, LK_ERR_SCHEMA, "multirange type %s has no range", ti->qname);
	else if (resolve(x, PQgetvalue(r, 0, 0), "-1", depth + 1, &range, err) < 0)
		rc = -1;
	else if (!x->dry)
		rc = target_multirange(x, range.buf, out, err);
	else /* only checking: the range is fine, its multirange comes with it */
		rc = 0;
	if (rc == 0 && x->dry)
		lk_buf_adds(out, ti->qname);
	PQclear(r);
	lk_buf_release(&range);
	return rc;
}

/* ---- composite types ---- */

/* 1 when collation qname (quoted, qualified) exists on the target for its encoding. */
static int collation_on_target(struct tctx *x, const char *qname, struct lk_err *err)
{
	const char *params[] = {qname};
	PGresult *r = query(
		x->dst,
		"SELECT 1 FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace n"
		" ON n.oid = co.collnamespace WHERE pg_catalog.quote_ident(n.nspname) || '.' ||"
		" pg_catalog.quote_ident(co.collname) = $1 AND co.collencoding IN (-1,"
		" (SELECT encoding FROM pg_catalog.pg_database WHERE datname ="
		" pg_catalog.current_database()))",
		1, params, "look for a collation on the target", err);
	int n;

	if (!r)
		return -1;
	n = PQntuples(r);
	PQclear(r);
	return n > 0;
}

/* Appends "attname type [COLLATE c]" for each attribute of composite relid. */
static int composite_attrs(struct tctx *x, const char *relid, int depth, struct lk_buf *sql,
			   struct lk_err *err)
{
	const char *params[] = {relid};
	PGresult *a = query(
		x->src,
		"SELECT pg_catalog.quote_ident(a.attname), a.atttypid::text, a.atttypmod::text,"
		" CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN"
		" (SELECT pg_catalog.quote_ident(cn.nspname) || '.' ||"
		" pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co"
		" JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace"
		" WHERE co.oid = a.attcollation) END"
		" FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
		" WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY "
		"a.attnum",
		1, params, "read a source composite type", err);
	int rc = 0;

	if (!a)
		return -1;
	for (int i = 0; i < PQntuples(a) && rc == 0; i++) {
		lk_buf_addf(sql, "%s%s ", i ? ", " : "", PQgetvalue(a, i, 0));
		rc = resolve(x, PQgetvalue(a, i, 1), PQgetvalue(a, i, 2), depth + 1, sql, err);
		if (rc == 0 && !PQgetisnull(a, i, 3)) {
			int on = collation_on_target(x, PQgetvalue(a, i, 3), err);

			if (on > 0)
				lk_buf_addf(sql, " COLLATE %s", PQgetvalue(a, i, 3));
			rc = on < 0 ? -1 : 0;
		}
	}
	PQclear(a);
	return rc;
}

/*
 * A composite type: the target's of the same schema and name, else made there from the
 * source's attributes (their types resolved the same way). A table's row type is not made
 * (that would be a table): refused unless the target has the type.
 */
static int ensure_composite(struct tctx *x, const struct tinfo *ti, int depth, struct lk_buf *out,
			    struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char typtype = 0, what[320];
	int found = target_type(x, ti, &typtype, NULL, err), rc = -1;

	if (found < 0)
		return -1;
	if (found && typtype != 'c')
		return refuse(err, x, ", but type %s in database '%s' is not a composite type",
			      ti->qname, x->dst_db);
	if (!found && ti->relkind != 'c')
		return refuse(err, x,
			      ", the row type of table %s, which database '%s' does not have: "
			      "create the target table yourself",
			      ti->qname, x->dst_db);
	if (found) {
		lk_buf_adds(out, ti->qname);
		return 0;
	}
	lk_buf_addf(&sql, "CREATE TYPE %s AS (", ti->qname);
	if (composite_attrs(x, ti->relid, depth, &sql, err) == 0 &&
	    ensure_schema(x, ti->nsp, err) == 0) {
		lk_buf_adds(&sql, ")");
		(void)snprintf(what, sizeof(what), "create composite type %s", ti->qname);
		rc = ddl(x, sql.buf, what, err);
	}
	lk_buf_release(&sql);
	if (rc == 0 || strcmp(err->sqlstate, "42710") == 0) {
		lk_buf_adds(out, ti->qname); /* 42710: another job made it meanwhile */
		rc = 0;
	}
	return rc;
}

/* ---- extension and other types the target must have ---- */

/*
 * A type of an extension: the target's type of that name from the same extension, in the
 * schema the extension lives in there. lockstep never creates extensions.
 */
static int extension_type(struct tctx *x, const struct tinfo *ti, struct lk_buf *out,
			  struct lk_err *err)
{
	static const char *const sql =
		"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = $1),"
		" (SELECT pg_catalog.quote_ident(n.nspname) || '.' || "
		"pg_catalog.quote_ident(t.typname)"
		" FROM pg_catalog.pg_extension x JOIN pg_catalog.pg_depend d ON d.refobjid = x.oid"
		" AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass"
		" AND d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.deptype = 'e'"
		" JOIN pg_catalog.pg_type t ON t.oid = d.objid"
		" JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
		" WHERE x.extname = $1 AND t.typname = $2)";
	const char *params[] = {ti->ext, ti->name};
	PGresult *r = query(x->dst, sql, 2, params, "look for an extension on the target", err);
	int rc = 0;

	if (!r)
		return -1;
	if (PQgetvalue(r, 0, 0)[0] != 't') {
		bool other = strcmp(x->native, ti->name) != 0; /* an array, a domain ... */

		rc = refuse(err, x,
			    "%s%s%s from extension \"%s\", which database '%s' does not have: run "
			    "CREATE EXTENSION %s; in it (lockstep does not create extensions), or "
			    "create the target table yourself",
			    other ? " (made of type " : "", other ? ti->name : "", other ? ")" : "",
			    ti->ext, x->dst_db, ti->ext_q);
	} else if (PQgetisnull(r, 0, 1)) {
		rc = refuse(err, x,
			    ": extension %s in database '%s' has no type %s (another version?): "
			    "update it, or create the target table yourself",
			    ti->ext_q, x->dst_db, ti->name);
	} else {
		lk_buf_addf(out, "%s%s", PQgetvalue(r, 0, 1), ti->mod);
	}
	PQclear(r);
	return rc;
}

/* A user-defined base type (made with C functions): the target must have it already. */
static int existing_type(struct tctx *x, const struct tinfo *ti, struct lk_buf *out,
			 struct lk_err *err)
{
	char typtype = 0;
	int found = target_type(x, ti, &typtype, NULL, err);

	if (found < 0)
		return -1;
	if (!found)
		return refuse(err, x,
			      ", made of type %s, which database '%s' does not have (lockstep "
			      "makes only enums, ranges and composite types): create it there, or "
			      "create the target table yourself",
			      ti->qname, x->dst_db);
	lk_buf_addf(out, "%s%s", ti->qname, ti->mod);
	return 0;
}

/* ---- one type ---- */

/* Appends to out the target's text for source type oid (with typmod), making what it needs. */
static int resolve(struct tctx *x, const char *oid, const char *typmod, int depth,
		   struct lk_buf *out, struct lk_err *err)
{
	struct tinfo ti;

	if (depth > MAX_DEPTH)
		return refuse(err, x,
			      ", nested deeper than lockstep follows (%d levels): create the "
			      "target table in database '%s' yourself",
			      MAX_DEPTH, x->dst_db);
	if (type_info(x, oid, typmod, &ti, err) < 0)
		return -1;
	if (ti.elem[0]) { /* an array: of its element's type (a typmod is the element's) */
		if (resolve(x, ti.elem, typmod, depth + 1, out, err) < 0)
			return -1;
		lk_buf_adds(out, "[]");
		return 0;
	}
	if (ti.builtin) {
		lk_buf_adds(out, ti.fmt);
		return 0;
	}
	if (ti.ext[0])
		return extension_type(x, &ti, out, err);
	switch (ti.typtype) {
	case 'd': /* the values passed the domain's checks on the source */
		return resolve(x, ti.base, ti.basemod, depth + 1, out, err);
	case 'e':
		return ensure_enum(x, oid, &ti, out, err);
	case 'r':
		return ensure_range(x, oid, &ti, depth, out, err);
	case 'm':
		return multirange(x, oid, &ti, depth, out, err);
	case 'c':
		return ensure_composite(x, &ti, depth, out, err);
	default:
		return existing_type(x, &ti, out, err);
	}
}

/* The type oid and typmod of column `col` of the source table. */
static int column_type(struct tctx *x, const struct lk_tref *t, const char *col, char *oid,
		       char *typmod, struct lk_err *err)
{
	const char *params[] = {t->schema ? t->schema : "public", t->name, col};
	PGresult *r =
		query(x->src,
		      "SELECT a.atttypid::text, a.atttypmod::text FROM pg_catalog.pg_attribute a"
		      " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
		      " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
		      " WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0"
		      " AND NOT a.attisdropped",
		      3, params, "read a source column's type", err);

	if (!r)
		return -1;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return lk_err_set(err, LK_ERR_SCHEMA, "column \"%s\" of %s is gone", col, x->table);
	}
	field(oid, 16, r, 0, 0);
	field(typmod, 16, r, 0, 1);
	PQclear(r);
	return 0;
}

/* Starts a resolution: reads the target session's lock_timeout (restored after each DDL). */
static int tctx_init(struct tctx *x, struct lk_conn *src, struct lk_conn *dst, const char *dst_db,
		     const char *table, struct lk_err *err)
{
	PGresult *r;

	memset(x, 0, sizeof(*x));
	x->src = src;
	x->dst = dst;
	x->dst_db = dst_db;
	x->table = table;
	if (dst->in_txn)
		return lk_err_set(err, LK_ERR_INTERNAL, "target types: inside a transaction");
	r = query(dst, "SELECT pg_catalog.current_setting('lock_timeout')", 0, NULL,
		  "read lock_timeout", err);
	if (!r)
		return -1;
	field(x->lock_timeout, sizeof(x->lock_timeout), r, 0, 0);
	PQclear(r);
	return 0;
}

/* One pass over the columns; natives NULL: x->dry (checks only). */
static int target_pass(struct tctx *x, const struct lk_tref *src_table,
		       const struct lk_column *cols, int ncols, char **natives, struct lk_err *err)
{
	char oid[16], typmod[16];
	struct lk_buf out = LK_BUF_INIT;
	int i;

	for (i = 0; i < ncols; i++) {
		x->col = cols[i].name;
		x->native = cols[i].native;
		lk_buf_reset(&out);
		if (column_type(x, src_table, cols[i].name, oid, typmod, err) < 0 ||
		    resolve(x, oid, typmod, 0, &out, err) < 0)
			break;
		if (natives)
			natives[i] = lk_buf_detach(&out, NULL);
	}
	lk_buf_release(&out);
	if (i == ncols)
		return 0;
	for (int j = 0; natives && j < i; j++) {
		free(natives[j]);
		natives[j] = NULL;
	}
	return -1;
}

int lk_pg_target_types(struct lk_conn *src, struct lk_conn *dst, const struct lk_tref *src_table,
		       const struct lk_column *cols, int ncols, const char *dst_db, char **natives,
		       struct lk_err *err)
{
	char table[300];
	struct lk_err scratch = LK_ERR_INIT;
	struct tctx x;

	if (!err)
		err = &scratch;
	(void)snprintf(table, sizeof(table), "%s.%s",
		       src_table->schema ? src_table->schema : "public", src_table->name);
	if (tctx_init(&x, src, dst, dst_db, table, err) < 0)
		return -1;
	/* Everything that can be refused is refused before anything is made. */
	x.dry = true;
	if (target_pass(&x, src_table, cols, ncols, NULL, err) < 0)
		return -1;
	if (!natives)
		return 0;
	x.dry = false;
	return target_pass(&x, src_table, cols, ncols, natives, err);
}

/* ---- labels before each run ---- */

/*
 * The enums under each of the n type texts (through arrays, domains, ranges and composite
 * types' attributes): rows (ordinal from 1, enum oid, schema, name, "schema"."name").
 */
static PGresult *enums_under(struct lk_conn *c, const char *const *natives, int n,
			     struct lk_err *err)
{
	static const char *const sql =
		"WITH RECURSIVE u(i, oid, depth) AS ("
		" SELECT i, pg_catalog.to_regtype(n)::oid, 0 FROM pg_catalog.unnest($1::text[])"
		" WITH ORDINALITY AS s(n, i)"
		" UNION ALL SELECT u.i, nx.oid, u.depth + 1 FROM u"
		" JOIN pg_catalog.pg_type t ON t.oid = u.oid CROSS JOIN LATERAL ("
		" SELECT t.typbasetype AS oid WHERE t.typtype = 'd'"
		" UNION ALL SELECT t.typelem WHERE t.typelem <> 0 AND EXISTS (SELECT 1"
		" FROM pg_catalog.pg_type a WHERE a.typarray = t.oid)"
		" UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid"
		" UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE t.typtype = 'c'"
		" AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) nx"
		" WHERE u.depth < 16)"
		" SELECT DISTINCT u.i::int, u.oid::text, n.nspname, t.typname,"
		" pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)"
		" FROM u JOIN pg_catalog.pg_type t ON t.oid = u.oid"
		" JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'e'";
	struct lk_buf arr = LK_BUF_INIT;
	const char *params[1];
	PGresult *r;

	lk_buf_addch(&arr, '{');
	for (int i = 0; i < n; i++) {
		lk_buf_adds(&arr, i ? ",\"" : "\"");
		for (const char *p = natives[i] ? natives[i] : ""; *p; p++) {
			if (*p == '"' || *p == '\\')
				lk_buf_addch(&arr, '\\');
			lk_buf_addch(&arr, *p);
		}
		lk_buf_addch(&arr, '"');
	}
	lk_buf_addch(&arr, '}');
	params[0] = arr.buf;
	r = query(c, sql, 1, params, "find enum columns", err);
	lk_buf_release(&arr);
	return r;
}

/* The row of t (enums_under) for the same column and enum as row k of s, or -1. */
static int same_enum(const PGresult *s, int k, const PGresult *t)
{
	for (int j = 0; j < PQntuples(t); j++) {
		if (strcmp(PQgetvalue(s, k, 0), PQgetvalue(t, j, 0)) == 0 &&
		    strcmp(PQgetvalue(s, k, 2), PQgetvalue(t, j, 2)) == 0 &&
		    strcmp(PQgetvalue(s, k, 3), PQgetvalue(t, j, 3)) == 0)
			return j;
	}
	return -1;
}

/* Column texts of one side, for enums_under. */
static const char **natives_of(const struct lk_column *cols, int n)
{
	const char **v = lk_xcalloc((size_t)(n ? n : 1), sizeof(char *));

	for (int i = 0; i < n; i++)
		v[i] = cols[i].native;
	return v;
}

int lk_pg_sync_enum_labels(struct lk_conn *src, struct lk_conn *dst, const struct lk_column *scols,
			   const struct lk_column *tcols, int n, const char *dst_db,
			   struct lk_err *err)
{
	const char **sn = natives_of(scols, n), **tn = natives_of(tcols, n);
	PGresult *s = NULL, *t = NULL;
	struct lk_err scratch = LK_ERR_INIT;
	struct tctx x;
	int rc = -1;

	if (!err)
		err = &scratch;
	if (n == 0 || !(s = enums_under(src, sn, n, err)) || PQntuples(s) == 0) {
		rc = s || n == 0 ? 0 : -1;
		goto out;
	}
	if (!(t = enums_under(dst, tn, n, err)) || tctx_init(&x, src, dst, dst_db, "", err) < 0)
		goto out;
	rc = 0;
	for (int k = 0; k < PQntuples(s) && rc == 0; k++) {
		int i = atoi(PQgetvalue(s, k, 0)), j = same_enum(s, k, t); /* NOLINT: int4 */

		if (j < 0)
			continue; /* not the same enum on both sides: left to the user */
		x.col = scols[i - 1].name;
		rc = sync_labels(&x, PQgetvalue(s, k, 1), PQgetvalue(t, j, 4), PQgetvalue(t, j, 1),
				 err);
	}
out:
	PQclear(s);
	PQclear(t);
	free(sn);
	free(tn);
	return rc;
}
