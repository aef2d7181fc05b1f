/*
 * position.c - the position JSON of every mode (position.h): its encoder, its decoder,
 * the order of changelog positions, and the key and cursor values inside it.
 */
#include "position.h"

#include "sync_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"", "snapshot", "poll", "realtime"};
static const char *const phase_names[] = {"", "snapshot", "sweep", "stream"};

/* ,"name":"v" (64-bit numbers travel as strings: not every JSON reader keeps 64 bits) */
static void add_i64(struct lk_buf *b, const char *name, int64_t v)
{
	lk_buf_addf(b, ",\"%s\":\"%" PRId64 "\"", name, v);
}

static void add_values(struct lk_buf *b, const char *name, const struct lk_pos_values *v)
{
	lk_buf_addf(b, ",\"%s\":", name);
	lk_pos_add_values(b, v->row, v->types, v->idx, v->n);
}

/* The poll record: ,"seen":…,"prepared":{…} (see poll.c, start_bound). */
static void add_record(struct lk_buf *b, const struct lk_position *p)
{
	char *text;

	if (p->seen[0]) {
		lk_buf_adds(b, ",\"seen\":");
		lk_buf_add_json_str(b, p->seen, strlen(p->seen));
	}
	text = p->prepared ? json_dumps(p->prepared, JSON_COMPACT) : NULL;
	lk_buf_adds(b, ",\"prepared\":");
	lk_buf_adds(b, text ? text : "{}");
	free(text);
}

/* "src": where the source's history comes from (the timeline guard); nothing if unknown. */
static void add_origin(struct lk_buf *b, const struct lk_pos_origin *o)
{
	if (!o->known)
		return;
	lk_buf_adds(b, ",\"src\":{\"sysid\":");
	lk_buf_add_json_str(b, o->sysid, strlen(o->sysid));
	lk_buf_addf(b, ",\"tli\":\"%" PRId64 "\"", o->tli);
	if (o->nx > 0)
		lk_buf_addf(b, ",\"nx\":\"%" PRId64 "\"", o->nx);
	lk_buf_addch(b, '}');
}

static void add_realtime(struct lk_buf *b, const struct lk_position *p)
{
	const struct lk_pos_origin *o = &p->origin;

	lk_buf_addf(b, ",\"phase\":\"%s\"", phase_names[p->phase]);
	add_i64(b, "h", p->cdc.horizon);
	add_i64(b, "xid", p->cdc.xid);
	add_i64(b, "seq", p->cdc.seq);
	if (p->phase == LK_PHASE_SNAPSHOT && p->vals.n > 0)
		add_values(b, "last", &p->vals);
	if (p->need[0]) {
		lk_buf_adds(b, ",\"need\":");
		lk_buf_add_json_str(b, p->need, strlen(p->need));
	}
	add_origin(b, o);
}

void lk_position_encode(struct lk_buf *b, const struct lk_position *p)
{
	lk_buf_adds(b, "{\"v\":1,\"fp\":");
	lk_buf_add_json_str(b, p->fp, strlen(p->fp));
	lk_buf_addf(b, ",\"mode\":\"%s\"", mode_names[p->mode]);
	switch (p->mode) {
	case LK_POS_SNAPSHOT:
		lk_buf_adds(b, p->done ? ",\"done\":true" : ",\"done\":false");
		if (!p->done)
			add_values(b, "last", &p->vals);
		break;
	case LK_POS_POLL:
		if (p->from[0]) {
			lk_buf_adds(b, ",\"from\":");
			lk_buf_add_json_str(b, p->from, strlen(p->from));
		} else {
			add_values(b, "after", &p->vals);
		}
		if (p->has_record)
			add_record(b, p);
		add_origin(b, &p->origin);
		break;
	case LK_POS_REALTIME:
		add_realtime(b, p);
		break;
	case LK_POS_NONE:
		break;
	}
	lk_buf_addch(b, '}');
}

/* A 64-bit number written as a string (this version) or as a JSON integer; 0 if neither. */
static int64_t json_i64(const json_t *v)
{
	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	return json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) : 0;
}

static int name_index(const json_t *v, const char *const *names, int n)
{
	for (int i = 1; json_is_string(v) && i < n; i++)
		if (strcmp(json_string_value(v), names[i]) == 0)
			return i;
	return 0;
}

static void copy_string(char *dst, size_t size, const json_t *v)
{
	if (json_is_string(v))
		(void)snprintf(dst, size, "%s", json_string_value(v));
}

static void decode_origin(json_t *root, struct lk_position *p)
{
	const json_t *src = json_object_get(root, "src");

	if (json_is_object(src)) {
		p->origin.known = true;
		copy_string(p->origin.sysid, sizeof(p->origin.sysid),
			    json_object_get(src, "sysid"));
		p->origin.tli = json_i64(json_object_get(src, "tli"));
		p->origin.nx = json_i64(json_object_get(src, "nx"));
	}
}

static void decode_realtime(json_t *root, struct lk_position *p)
{

	p->phase = (enum lk_pos_phase)name_index(json_object_get(root, "phase"), phase_names, 4);
	p->cdc.horizon = json_i64(json_object_get(root, "h"));
	p->cdc.xid = json_i64(json_object_get(root, "xid"));
	p->cdc.seq = json_i64(json_object_get(root, "seq"));
	copy_string(p->need, sizeof(p->need), json_object_get(root, "need"));
	decode_origin(root, p);
}

void lk_position_decode(const char *json, struct lk_position *out)
{
	json_t *root = json ? json_loads(json, 0, NULL) : NULL;
	json_t *v;

	memset(out, 0, sizeof(*out));
	out->root = root;
	out->blank = !json_is_object(root) || json_object_size(root) == 0;
	if (out->blank)
		return;
	copy_string(out->fp, sizeof(out->fp), json_object_get(root, "fp"));
	out->mode = (enum lk_pos_mode)name_index(json_object_get(root, "mode"), mode_names, 4);
	out->done = !json_is_false(json_object_get(root, "done"));
	switch (out->mode) {
	case LK_POS_SNAPSHOT:
		out->vals_json = json_object_get(root, "last");
		break;
	case LK_POS_POLL:
		copy_string(out->from, sizeof(out->from), json_object_get(root, "from"));
		out->vals_json = json_object_get(root, "after");
		copy_string(out->seen, sizeof(out->seen), json_object_get(root, "seen"));
		v = json_object_get(root, "prepared");
		out->prepared = json_is_object(v) ? json_incref(v) : NULL;
		out->has_record = out->seen[0] || out->prepared;
		decode_origin(root, out);
		break;
	case LK_POS_REALTIME:
		decode_realtime(root, out);
		out->vals_json = json_object_get(root, "last");
		break;
	case LK_POS_NONE:
		break;
	}
	if (!json_is_array(out->vals_json))
		out->vals_json = NULL;
}

void lk_position_release(struct lk_position *p)
{
	if (p->root) {
		json_decref(p->prepared);
		json_decref(p->root);
	}
	p->root = p->prepared = p->vals_json = NULL;
}

int lk_position_values(const struct lk_position *p, struct lk_value *out, const enum lk_type *types,
		       const int *idx, int n, struct lk_arena *arena)
{
	if (!p->vals_json)
		return -1;
	return lk_pos_parse_values(p->vals_json, out, types, idx, n, arena);
}

/* What a PostgreSQL position has applied, as one ordered pair: everything below the
 * horizon, then (xid, seq) inside the window; a drained window is (h, 0). */
static void pg_order(const struct lk_cdc_pos *p, int64_t *major, int64_t *minor)
{
	bool inside = p->xid > 0 && p->xid >= p->horizon;

	*major = inside ? p->xid : p->horizon;
	*minor = inside ? p->seq : 0;
}

int lk_cdc_pos_cmp(const struct lk_cdc_pos *a, const struct lk_cdc_pos *b, bool seq_only)
{
	int64_t am, an, bm, bn;

	if (seq_only)
		return (a->seq > b->seq) - (a->seq < b->seq);
	pg_order(a, &am, &an);
	pg_order(b, &bm, &bn);
	if (am != bm)
		return (am > bm) - (am < bm);
	return (an > bn) - (an < bn);
}

void lk_pos_add_values(struct lk_buf *b, const struct lk_value *v, const enum lk_type *types,
		       const int *idx, int n)
{
	lk_buf_addch(b, '[');
	for (int i = 0; i < n; i++) {
		const struct lk_value *x = &v[idx[i]];

		if (i)
			lk_buf_addch(b, ',');
		if (x->null) {
			lk_buf_adds(b, "null");
		} else if (types[idx[i]] == LK_T_BYTES) {
			lk_buf_addch(b, '"');
			lk_buf_add_hex(b, x->p, x->len);
			lk_buf_addch(b, '"');
		} else {
			lk_buf_add_json_str(b, x->p, x->len);
		}
	}
	lk_buf_addch(b, ']');
}

int lk_pos_parse_values(const void *json_array, struct lk_value *out, const enum lk_type *types,
			const int *idx, int n, struct lk_arena *arena)
{
	const json_t *a = json_array;

	if (!json_is_array(a) || (int)json_array_size(a) != n)
		return -1;
	for (int i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, (size_t)i);
		const char *s;
		size_t len;

		if (json_is_null(x)) {
			out[i].p = "";
			out[i].len = 0;
			out[i].null = true;
			continue;
		}
		if (!json_is_string(x))
			return -1;
		s = json_string_value(x);
		len = json_string_length(x);
		out[i].null = false;
		if (types[idx[i]] == LK_T_BYTES) {
			char *p = lk_arena_alloc(arena, len / 2 + 1);

			if (lk_hex_decode(p, s, len) < 0)
				return -1;
			p[len / 2] = '\0';
			out[i].p = p;
			out[i].len = len / 2;
		} else {
			out[i].p = lk_arena_memdup(arena, s, len);
			out[i].len = len;
		}
	}
	return 0;
}

void lk_key_canon(struct lk_buf *b, const struct lk_value *row, const enum lk_type *types,
		  const int *idx, int n)
{
	lk_row_canon(b, row, types, idx, n, false);
}

void lk_row_canon(struct lk_buf *b, const struct lk_value *row, const enum lk_type *types,
		  const int *idx, int n, bool raw_json)
{
	for (int i = 0; i < n; i++) {
		const struct lk_value *v = &row[idx[i]];
		size_t before;

		if (v->null) {
			lk_buf_adds(b, "N;");
			continue;
		}
		lk_buf_addch(b, 'V');
		before = b->len;
		if (types[idx[i]] == LK_T_BYTES) { /* hex: keep the string free of NUL bytes */
			lk_buf_add_hex(b, v->p, v->len);
		} else if (raw_json && types[idx[i]] == LK_T_JSON) {
			lk_buf_add(b, v->p, v->len);
		} else {
			lk_value_canonical(b, types[idx[i]], v);
		}
		lk_buf_addch(b, ':'); /* length-suffixed: no ambiguity */
		lk_buf_add_i64(b, (int64_t)(b->len - 1 - before));
		lk_buf_addch(b, ';');
	}
}

struct lk_position lk_rt_position(const struct lk_job_ctx *ctx, enum lk_pos_phase phase,
				  const struct lk_cdc_pos *p)
{
	struct lk_position pos = {.mode = LK_POS_REALTIME, .phase = phase, .cdc = *p};

	memcpy(pos.fp, ctx->fp, sizeof(pos.fp));
	pos.origin = ctx->rt_origin;
	return pos;
}
