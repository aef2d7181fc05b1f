/*
 * types.c - the one table that maps values across engines (docs/types.md):
 * engine type names to logical types, declared types for created tables, and
 * the canonical encoding verify hashes on both sides.
 */
#include "connector.h"
#include "core/buf.h"
#include "core/units.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const type_names[] = {
	[LK_T_OTHER] = "other",		[LK_T_INT] = "int",
	[LK_T_FLOAT] = "float",		[LK_T_NUMERIC] = "numeric",
	[LK_T_BOOL] = "bool",		[LK_T_TEXT] = "text",
	[LK_T_UUID] = "uuid",		[LK_T_JSON] = "json",
	[LK_T_BYTES] = "bytes",		[LK_T_TIMESTAMPTZ] = "timestamptz",
	[LK_T_TIMESTAMP] = "timestamp", [LK_T_DATE] = "date",
	[LK_T_TIME] = "time",
};

const char *lk_type_name(enum lk_type t)
{
	if ((unsigned)t < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[t];
	return "other";
}

bool lk_type_is_time(enum lk_type t)
{
	return t == LK_T_TIMESTAMPTZ || t == LK_T_TIMESTAMP || t == LK_T_DATE;
}

enum lk_type lk_type_from_pg(const char *n)
{
	static const struct {
		const char *name;
		enum lk_type type;
	} map[] = {
		{"int2", LK_T_INT},
		{"int4", LK_T_INT},
		{"int8", LK_T_INT},
		{"oid", LK_T_INT},
		{"float4", LK_T_FLOAT},
		{"float8", LK_T_FLOAT},
		{"numeric", LK_T_NUMERIC},
		{"bool", LK_T_BOOL},
		{"text", LK_T_TEXT},
		{"varchar", LK_T_TEXT},
		{"bpchar", LK_T_TEXT},
		{"name", LK_T_TEXT},
		{"citext", LK_T_TEXT},
		{"uuid", LK_T_UUID},
		{"json", LK_T_JSON},
		{"jsonb", LK_T_JSON},
		{"bytea", LK_T_BYTES},
		{"timestamptz", LK_T_TIMESTAMPTZ},
		{"timestamp", LK_T_TIMESTAMP},
		{"date", LK_T_DATE},
		{"time", LK_T_TIME},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(n, map[i].name) == 0)
			return map[i].type;
	}
	return LK_T_OTHER;
}

static bool has(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay; hay++) {
		if (strncasecmp(hay, needle, n) == 0)
			return true;
	}
	return false;
}

enum lk_type lk_type_from_sqlite(const char *d)
{
	if (!d || !*d)
		return LK_T_OTHER;
	/* Names first: lockstep keeps a column's meaning in its declared type. */
	if (has(d, "BOOL"))
		return LK_T_BOOL;
	if (has(d, "TIMESTAMPTZ") || has(d, "TIMESTAMP WITH TIME ZONE"))
		return LK_T_TIMESTAMPTZ;
	if (has(d, "TIMESTAMP") || has(d, "DATETIME"))
		return LK_T_TIMESTAMP;
	if (has(d, "DATE"))
		return LK_T_DATE;
	if (has(d, "TIME"))
		return LK_T_TIME;
	if (has(d, "UUID"))
		return LK_T_UUID;
	if (has(d, "JSON"))
		return LK_T_JSON;
	if (has(d, "NUMERIC") || has(d, "DECIMAL"))
		return LK_T_NUMERIC;
	if (has(d, "BLOB") || has(d, "BYTEA"))
		return LK_T_BYTES;
	/* Then SQLite's affinity rules (datatype3.html §3.1). */
	if (has(d, "INT"))
		return LK_T_INT;
	if (has(d, "CHAR") || has(d, "CLOB") || has(d, "TEXT"))
		return LK_T_TEXT;
	if (has(d, "REAL") || has(d, "FLOA") || has(d, "DOUB"))
		return LK_T_FLOAT;
	return LK_T_OTHER;
}

const char *lk_type_sqlite_decl(enum lk_type t)
{
	switch (t) {
	case LK_T_INT:
		return "INTEGER";
	case LK_T_FLOAT:
		return "REAL";
	case LK_T_NUMERIC:
		return "NUMERIC TEXT"; /* TEXT affinity keeps every digit */
	case LK_T_BOOL:
		return "BOOLEAN";
	case LK_T_UUID:
		return "UUID TEXT";
	case LK_T_JSON:
		return "JSON TEXT";
	case LK_T_BYTES:
		return "BLOB";
	case LK_T_TIMESTAMPTZ:
		return "TIMESTAMPTZ TEXT";
	case LK_T_TIMESTAMP:
		return "TIMESTAMP TEXT";
	case LK_T_DATE:
		return "DATE TEXT";
	case LK_T_TIME:
		return "TIME TEXT";
	case LK_T_TEXT:
	case LK_T_OTHER:
		return "TEXT";
	}
	return "TEXT";
}

const char *lk_type_pg_decl(enum lk_type t)
{
	switch (t) {
	case LK_T_INT:
		return "bigint";
	case LK_T_FLOAT:
		return "double precision";
	case LK_T_NUMERIC:
		return "numeric";
	case LK_T_BOOL:
		return "boolean";
	case LK_T_UUID:
		return "uuid";
	case LK_T_JSON:
		return "jsonb";
	case LK_T_BYTES:
		return "bytea";
	case LK_T_TIMESTAMPTZ:
		return "timestamptz";
	case LK_T_TIMESTAMP:
		return "timestamp";
	case LK_T_DATE:
		return "date";
	case LK_T_TIME:
		return "time";
	case LK_T_TEXT:
	case LK_T_OTHER:
		return "text";
	}
	return "text";
}

/* Canonical encoding for verify: equal values encode equally on both engines. */

static void canon_numeric(struct lk_buf *b, const char *s, size_t len)
{
	const char *dot = memchr(s, '.', len);
	size_t end = len;
	bool neg = len && s[0] == '-';

	if (dot && !memchr(s, 'e', len) && !memchr(s, 'E', len)) {
		while (end > 0 && s[end - 1] == '0')
			end--;
		if (end > 0 && s[end - 1] == '.')
			end--;
	}
	if (end == 2 && neg && s[1] == '0') { /* "-0" */
		lk_buf_addch(b, '0');
		return;
	}
	lk_buf_add(b, s, end);
}

static void canon_float(struct lk_buf *b, const char *s)
{
	char *end;
	double d;

	if (strcasecmp(s, "nan") == 0) {
		lk_buf_adds(b, "NaN");
		return;
	}
	errno = 0;
	d = strtod(s, &end);
	if (*end) {
		lk_buf_adds(b, s);
		return;
	}
	if (isinf(d)) {
		lk_buf_adds(b, d > 0 ? "Infinity" : "-Infinity");
		return;
	}
	lk_buf_addf(b, "%.17g", d == 0 ? 0.0 : d);
}

static void canon_json(struct lk_buf *b, const char *s, size_t len)
{
	json_error_t jerr;
	json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
	char *out;

	if (!j) {
		lk_buf_add(b, s, len);
		return;
	}
	out = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
	if (out) {
		lk_buf_adds(b, out);
		free(out);
	} else {
		lk_buf_add(b, s, len);
	}
	json_decref(j);
}

void lk_value_canonical(struct lk_buf *b, enum lk_type t, const struct lk_value *v)
{
	int64_t n;

	if (v->null) {
		lk_buf_adds(b, "\\N");
		return;
	}
	switch (t) {
	case LK_T_INT:
		if (lk_int64_parse(v->p, &n) == 0)
			lk_buf_add_i64(b, n);
		else
			lk_buf_add(b, v->p, v->len);
		return;
	case LK_T_FLOAT:
		canon_float(b, v->p);
		return;
	case LK_T_NUMERIC:
		canon_numeric(b, v->p, v->len);
		return;
	case LK_T_BOOL:
		if (strcmp(v->p, "t") == 0 || strcmp(v->p, "true") == 0 || strcmp(v->p, "1") == 0)
			lk_buf_addch(b, 't');
		else if (strcmp(v->p, "f") == 0 || strcmp(v->p, "false") == 0 ||
			 strcmp(v->p, "0") == 0)
			lk_buf_addch(b, 'f');
		else
			lk_buf_add(b, v->p, v->len);
		return;
	case LK_T_UUID:
		for (size_t i = 0; i < v->len; i++)
			lk_buf_addch(b, (char)tolower((unsigned char)v->p[i]));
		return;
	case LK_T_JSON:
		canon_json(b, v->p, v->len);
		return;
	case LK_T_TIMESTAMPTZ:
	case LK_T_TIMESTAMP:
		if (lk_ts_parse(v->p, &n) == 0)
			lk_buf_add_i64(b, n);
		else
			lk_buf_add(b, v->p, v->len);
		return;
	case LK_T_BYTES:
	case LK_T_TEXT:
	case LK_T_DATE:
	case LK_T_TIME:
	case LK_T_OTHER:
		lk_buf_add(b, v->p, v->len);
		return;
	}
}

const struct lk_connector_ops *lk_connector_for(enum lk_db_kind kind)
{
	return kind == LK_DB_POSTGRES ? &lk_pg_ops : &lk_sqlite_ops;
}
