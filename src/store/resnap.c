/*
 * resnap.c - the forced re-snapshots of each real-time job, kept in the state store's meta
 * table under the key "resnapshot:JOB" as {"count", "at", "reason", "why"} (store.h), for
 * `lockstep status`: the daemon's counters live and die with its process.
 */
#include "core/buf.h"
#include "core/units.h"
#include "store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stored value of key into *out (NULL when none; the caller decrefs). */
static int load(struct lk_store *s, const char *key, json_t **out, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	int rc;

	*out = NULL;
	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql, "SELECT value FROM %smeta WHERE key = $1", s->prefix);
	rc = lk_store_exec(s, sql.buf, 1, (const char *const[]){key}, &rows, err);
	if (rc == 0 && rows.nrows == 1 && LK_ROW(&rows, 0)[0].p)
		*out = json_loads(LK_ROW(&rows, 0)[0].p, 0, NULL);
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_resnap_note(struct lk_store *s, const char *job, const char *reason, const char *why,
			 struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT, key = LK_BUF_INIT;
	json_t *v = NULL;
	char now[24], *text;
	json_int_t count = 0;
	int rc;

	lk_buf_addf(&key, "resnapshot:%s", job);
	if (load(s, key.buf, &v, err) < 0) {
		lk_buf_release(&key);
		return -1;
	}
	if (v)
		count = json_integer_value(json_object_get(v, "count"));
	json_decref(v);
	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	v = json_pack("{s:I, s:I, s:s, s:s}", "count", count + 1, "at", (json_int_t)lk_wall_ms(),
		      "reason", reason, "why", why ? why : "");
	text = json_dumps(v, JSON_COMPACT);
	lk_buf_addf(&sql,
		    "INSERT INTO %smeta (key, value, updated_ms) VALUES ($1, $2, $3)"
		    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
		    " updated_ms = excluded.updated_ms",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 3, (const char *const[]){key.buf, text ? text : "{}", now},
			   NULL, err);
	free(text);
	json_decref(v);
	lk_buf_release(&sql);
	lk_buf_release(&key);
	return rc;
}

static const char *str(const json_t *v, const char *name)
{
	const char *p = json_string_value(json_object_get(v, name));

	return p ? p : "";
}

int lk_store_resnap_get(struct lk_store *s, const char *job, struct lk_store_resnap *out,
			struct lk_err *err)
{
	struct lk_buf key = LK_BUF_INIT;
	json_t *v = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	lk_buf_addf(&key, "resnapshot:%s", job);
	rc = load(s, key.buf, &v, err);
	lk_buf_release(&key);
	if (rc < 0 || !v)
		return rc;
	out->count = json_integer_value(json_object_get(v, "count"));
	out->at_ms = json_integer_value(json_object_get(v, "at"));
	(void)snprintf(out->reason, sizeof(out->reason), "%s", str(v, "reason"));
	(void)snprintf(out->why, sizeof(out->why), "%s", str(v, "why"));
	out->found = out->count > 0;
	json_decref(v);
	return 0;
}
