/*
 * config_values.c - turning YAML nodes into typed values, with "FILE:LINE:COL: expected X,
 * found Y" errors, "did you mean" suggestions, and table references.
 */
#include "config_int.h"
#include "core/buf.h"
#include "core/units.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lk_cfg_fail(struct lk_cfgctx *c, const struct lk_ynode *at, const char *fmt, ...)
{
	char msg[LK_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return lk_err_set(c->err, LK_ERR_CONFIG, "%s:%d:%d: %s", c->file, at ? at->line : 0,
			  at ? at->col : 0, msg);
}

void lk_ynode_describe(const struct lk_ynode *n, char *out, size_t size)
{
	const char *dots = "";
	int len;

	if (!n) {
		(void)snprintf(out, size, "nothing");
		return;
	}
	switch (n->type) {
	case LK_Y_MAP:
		(void)snprintf(out, size, "a mapping");
		return;
	case LK_Y_SEQ:
		(void)snprintf(out, size, "a list");
		return;
	case LK_Y_NULL:
		(void)snprintf(out, size, "%s", n->len ? "null" : "an empty value");
		return;
	case LK_Y_SCALAR:
		break;
	}
	len = n->len > 40 ? 40 : (int)n->len;
	if (n->len > 40)
		dots = "...";
	(void)snprintf(out, size, "%s'%.*s%s'", n->quoted ? "the quoted string " : "", len, n->text,
		       dots);
}

/* Optimal string alignment distance (edits and swaps of neighbours), capped at 99. */
static int edit_distance(const char *a, const char *b)
{
	int d[33][33];
	size_t la = strlen(a), lb = strlen(b);

	if (la > 32 || lb > 32)
		return 99;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] != b[j - 1], v = d[i - 1][j - 1] + cost;

			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

const char *lk_cfg_suggest(const char *word, const char *const *cands, int n)
{
	const char *best = NULL;
	int best_d = 99, limit = strlen(word) <= 3 ? 1 : 2;

	for (int i = 0; i < n; i++) {
		int d = edit_distance(word, cands[i]);

		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	return best_d <= limit && best_d < (int)strlen(best) ? best : NULL;
}

int lk_cfg_string(struct lk_cfgctx *c, const struct lk_ynode *val, const char *expect, char **out)
{
	char found[96];

	if (val && val->type == LK_Y_SCALAR) {
		free(*out);
		*out = lk_xstrndup(val->text, val->len);
		return 0;
	}
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected %s, found %s", expect ? expect : "a string", found);
}

int lk_cfg_bool(struct lk_cfgctx *c, const struct lk_ynode *val, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE"};
	static const char *const no[] = {"false", "False", "FALSE"};
	char found[96];

	for (int i = 0; val && val->type == LK_Y_SCALAR && !val->quoted && i < 3; i++) {
		if (strcmp(val->text, yes[i]) == 0 || strcmp(val->text, no[i]) == 0) {
			*out = strcmp(val->text, yes[i]) == 0;
			return 0;
		}
	}
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected true or false, found %s", found);
}

int lk_cfg_int(struct lk_cfgctx *c, const struct lk_ynode *val, int64_t min, int64_t max,
	       int64_t *out)
{
	char found[96];
	int64_t v;

	if (val && val->type == LK_Y_SCALAR && !val->quoted && lk_int64_parse(val->text, &v) == 0 &&
	    v >= min && v <= max) {
		*out = v;
		return 0;
	}
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected an integer from %lld to %lld, found %s",
			   (long long)min, (long long)max, found);
}

int lk_cfg_duration(struct lk_cfgctx *c, const struct lk_ynode *val, int64_t min_ms,
		    int64_t *out_ms)
{
	char found[96];
	int64_t v;

	if (val && val->type == LK_Y_SCALAR && lk_duration_parse(val->text, &v) == 0 &&
	    v >= min_ms) {
		*out_ms = v;
		return 0;
	}
	lk_ynode_describe(val, found, sizeof(found));
	if (val && val->type == LK_Y_SCALAR && lk_duration_parse(val->text, &v) == 0 && min_ms > 1)
		return lk_cfg_fail(c, val, "expected a duration of at least %lld ms, found %s",
				   (long long)min_ms, found);
	return lk_cfg_fail(c, val,
			   "expected a %sduration with a unit (500ms, 30s, 5m, 2h, 1d), found %s",
			   min_ms > 0 ? "positive " : "", found);
}

int lk_cfg_size(struct lk_cfgctx *c, const struct lk_ynode *val, int64_t *out)
{
	char found[96];

	if (val && val->type == LK_Y_SCALAR && lk_size_parse(val->text, out) == 0)
		return 0;
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected a size (512, 64KiB, 64MiB, 1GiB), found %s", found);
}

int lk_cfg_number(struct lk_cfgctx *c, const struct lk_ynode *val, double min, double max,
		  double *out)
{
	char found[96];

	if (val && val->type == LK_Y_SCALAR && !val->quoted && val->len > 0) {
		char *end;
		double v;

		errno = 0;
		v = strtod(val->text, &end);
		if (!errno && *end == '\0' && isfinite(v) && v >= min && v <= max) {
			*out = v;
			return 0;
		}
	}
	lk_ynode_describe(val, found, sizeof(found));
	return lk_cfg_fail(c, val, "expected a number from %g to %g, found %s", min, max, found);
}

int lk_cfg_enum(struct lk_cfgctx *c, const struct lk_ynode *val, const char *what,
		const struct lk_kenum *enums, int *out)
{
	const char *names[16];
	struct lk_buf list = LK_BUF_INIT;
	const char *hint = NULL;
	char found[96];
	int n = 0;

	for (; n < 16 && enums[n].name; n++) {
		names[n] = enums[n].name;
		if (!val || val->type != LK_Y_SCALAR || strcmp(val->text, enums[n].name) != 0)
			continue;
		if (!enums[n].built)
			return lk_cfg_fail(c, val, "%s '%s' is not supported yet", what, val->text);
		*out = enums[n].value;
		return 0;
	}
	for (int i = 0; i < n; i++)
		lk_buf_addf(&list, "%s%s", i ? " | " : "", names[i]);
	if (val && val->type == LK_Y_SCALAR)
		hint = lk_cfg_suggest(val->text, names, n);
	lk_ynode_describe(val, found, sizeof(found));
	lk_cfg_fail(c, val, "expected %s, found %s%s%s%s", list.buf, found,
		    hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
	lk_buf_release(&list);
	return -1;
}

static void free_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Checks one list item: a non-empty string not seen before in v[0..n). */
static int check_item(struct lk_cfgctx *c, const struct lk_ynode *it, char **v, int n)
{
	char found[96];

	if (!it || it->type != LK_Y_SCALAR || it->len == 0) {
		lk_ynode_describe(it, found, sizeof(found));
		return lk_cfg_fail(c, it, "expected a non-empty name, found %s", found);
	}
	if (strlen(it->text) != it->len)
		return lk_cfg_fail(c, it, "expected a name, found one with a NUL character");
	for (int i = 0; i < n; i++) {
		if (strcmp(v[i], it->text) == 0)
			return lk_cfg_fail(c, it, "expected distinct names, found '%s' twice",
					   it->text);
	}
	return 0;
}

int lk_cfg_strlist(struct lk_cfgctx *c, const struct lk_ynode *val, bool one_ok, char ***out,
		   int *n)
{
	const struct lk_ynode *const *items = (const struct lk_ynode *const *)&val;
	char found[96], **v;
	int count = 1;

	if (val && val->type == LK_Y_SEQ) {
		items = (const struct lk_ynode *const *)val->kids;
		count = val->nkids;
	} else if (!(one_ok && val && val->type == LK_Y_SCALAR)) {
		lk_ynode_describe(val, found, sizeof(found));
		return lk_cfg_fail(c, val, "expected a list of names%s, found %s",
				   one_ok ? " (or one name)" : "", found);
	}
	if (count == 0)
		return lk_cfg_fail(c, val, "expected a non-empty list of names, found []");
	v = lk_xcalloc((size_t)count, sizeof(*v));
	for (int i = 0; i < count; i++) {
		if (check_item(c, items[i], v, i) < 0) {
			free_list(v, i);
			return -1;
		}
		v[i] = lk_xstrdup(items[i]->text);
	}
	free_list(*out, *n);
	*out = v;
	*n = count;
	return 0;
}

/* Reads one part of a table reference at *p into part; advances *p. */
static int tref_part(const char **p, struct lk_buf *part, char *why, size_t why_size)
{
	const char *s = *p;

	if (*s != '"') {
		while (*s && *s != '.')
			lk_buf_addch(part, *s++);
	} else {
		for (s++;; s++) {
			if (*s == '\0') {
				(void)snprintf(why, why_size, "a double quote is not closed");
				return -1;
			}
			if (*s == '"' && s[1] != '"')
				break;
			if (*s == '"')
				s++; /* "" inside quotes is one quote */
			lk_buf_addch(part, *s);
		}
		s++;
		if (*s && *s != '.') {
			(void)snprintf(why, why_size,
				       "expected '.' or the end after a quoted name");
			return -1;
		}
	}
	*p = s;
	if (part->len == 0) {
		(void)snprintf(why, why_size, "a name is empty");
		return -1;
	}
	return 0;
}

int lk_tref_parse(const char *s, struct lk_tref *out, char *why, size_t why_size)
{
	struct lk_buf parts[2] = {LK_BUF_INIT, LK_BUF_INIT};
	int np = 0;

	for (;;) {
		if (np == 2) {
			(void)snprintf(why, why_size,
				       "more than two dot-separated parts; write a name that "
				       "holds a dot in double quotes");
			goto fail;
		}
		if (tref_part(&s, &parts[np++], why, why_size) < 0)
			goto fail;
		if (*s != '.')
			break;
		s++;
	}
	out->schema = np == 2 ? lk_buf_detach(&parts[0], NULL) : NULL;
	out->name = lk_buf_detach(&parts[np - 1], NULL);
	return 0;
fail:
	lk_buf_release(&parts[0]);
	lk_buf_release(&parts[1]);
	return -1;
}

int lk_cfg_tref(struct lk_cfgctx *c, const struct lk_ynode *val, struct lk_tref *out)
{
	char found[96], why[160];
	struct lk_tref t = {NULL, NULL};

	lk_ynode_describe(val, found, sizeof(found));
	if (!val || val->type != LK_Y_SCALAR)
		return lk_cfg_fail(c, val, "expected a table as name or schema.name, found %s",
				   found);
	if (strlen(val->text) != val->len)
		return lk_cfg_fail(c, val, "expected a table name, found one with a NUL character");
	if (lk_tref_parse(val->text, &t, why, sizeof(why)) < 0)
		return lk_cfg_fail(c, val, "expected a table as name or schema.name, found %s: %s",
				   found, why);
	free(out->schema);
	free(out->name);
	*out = t;
	return 0;
}
