/*
 * config_interp.c - ${VAR} and ${VAR:-default} replaced from the environment before the
 * YAML is parsed, with a map from the output back to the file's lines and columns.
 */
#include "config_int.h"
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Line and column (1-based, in UTF-8 characters) of byte `off` of `s`. */
static void line_col(const char *s, size_t len, size_t off, int *line, int *col)
{
	int l = 1, cc = 1;

	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			l++;
			cc = 1;
		} else if (((unsigned char)s[i] & 0xC0) != 0x80) {
			cc++;
		}
	}
	*line = l;
	*col = cc;
}

static void add_span(struct lk_interp *ip, size_t out_off, size_t out_len, size_t in_off,
		     size_t in_len)
{
	if (ip->nspans == ip->aspans) {
		ip->aspans = ip->aspans ? ip->aspans * 2 : 16;
		ip->spans = lk_xrealloc(ip->spans, sizeof(*ip->spans) * (size_t)ip->aspans);
	}
	ip->spans[ip->nspans++] = (struct lk_interp_span){out_off, out_len, in_off, in_len};
}

static int fail_at(const struct lk_interp *ip, size_t in_off, const char *file, struct lk_err *err,
		   const char *what)
{
	int line, col;

	line_col(ip->orig, ip->orig_len, in_off, &line, &col);
	return lk_err_set(err, LK_ERR_CONFIG, "%s:%d:%d: %s", file, line, col, what);
}

static bool is_name_char(char ch, bool first)
{
	if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_')
		return true;
	return !first && ch >= '0' && ch <= '9';
}

/*
 * Expands the reference starting at text[i] == '$' followed by '{'; appends the value to
 * out and sets *used to the bytes consumed. Returns 0 or -1 with err set.
 */
static int expand_ref(struct lk_interp *ip, size_t i, struct lk_buf *out, size_t *used,
		      const char *file, struct lk_err *err)
{
	const char *t = ip->orig;
	size_t j = i + 2, name_start = j, name_len;
	const char *val;
	char name[256], what[400];

	while (j < ip->orig_len && is_name_char(t[j], j == name_start))
		j++;
	name_len = j - name_start;
	if (name_len == 0 || name_len >= sizeof(name) || j >= ip->orig_len ||
	    (t[j] != '}' && t[j] != ':')) {
		(void)snprintf(what, sizeof(what),
			       "expected ${NAME} or ${NAME:-default} with NAME of letters, digits "
			       "and '_', found '%.*s'",
			       (int)(j < ip->orig_len ? j - i + 1 : j - i), t + i);
		return fail_at(ip, i, file, err, what);
	}
	memcpy(name, t + name_start, name_len);
	name[name_len] = '\0';
	val = getenv(name);
	if (val && strpbrk(val, "\r\n")) { /* the text is read as YAML after: it could add keys */
		(void)snprintf(
			what, sizeof(what),
			"environment variable '%s' holds a line break, which could add keys "
			"to the config; lockstep refuses it (hint: store a value of one line)",
			name);
		return fail_at(ip, i, file, err, what);
	}
	if (t[j] == '}') {
		if (!val) {
			(void)snprintf(what, sizeof(what),
				       "environment variable '%s' is not set (write ${%s:-default} "
				       "to give a default)",
				       name, name);
			return fail_at(ip, i, file, err, what);
		}
		lk_buf_adds(out, val);
		*used = j + 1 - i;
		return 0;
	}
	if (j + 1 >= ip->orig_len || t[j + 1] != '-')
		return fail_at(ip, i, file, err, "expected ':-' after the variable name");
	{
		size_t d = j + 2, e = d;

		while (e < ip->orig_len && t[e] != '}' && t[e] != '\n')
			e++;
		if (e >= ip->orig_len || t[e] != '}')
			return fail_at(ip, i, file, err,
				       "expected '}' to close '${' on the same line, found none");
		if (val && *val)
			lk_buf_adds(out, val);
		else
			lk_buf_add(out, t + d, e - d);
		*used = e + 1 - i;
	}
	return 0;
}

/* Per-line scanner state: quotes, to tell a comment's '#' from one inside a value. */
struct scan {
	char quote; /* '\'' or '"' while inside quotes on this line, else 0 */
	bool comment;
};

static void scan_char(struct scan *s, const char *t, size_t i)
{
	char ch = t[i];

	if (ch == '\n') {
		s->quote = 0;
		s->comment = false;
		return;
	}
	if (s->comment)
		return;
	if (s->quote) {
		if (ch == s->quote && !(s->quote == '"' && i > 0 && t[i - 1] == '\\'))
			s->quote = 0;
		return;
	}
	if (ch == '#' && (i == 0 || t[i - 1] == ' ' || t[i - 1] == '\t' || t[i - 1] == '\n'))
		s->comment = true;
	else if ((ch == '"' || ch == '\'') && (i == 0 || strchr(" \t\n:[{,-", t[i - 1]) != NULL))
		s->quote = ch;
}

int lk_interp_run(struct lk_interp *ip, const char *text, size_t len, const char *file,
		  struct lk_err *err)
{
	struct lk_buf out = LK_BUF_INIT;
	struct scan s = {0, false};
	size_t i = 0;

	memset(ip, 0, sizeof(*ip));
	ip->orig = text;
	ip->orig_len = len;
	while (i < len) {
		size_t used = 0, at = out.len;

		scan_char(&s, text, i);
		if (text[i] == '\0') {
			lk_buf_release(&out);
			return fail_at(ip, i, file, err, "expected text, found a NUL byte");
		}
		if (s.comment || text[i] != '$' || i + 1 >= len ||
		    (text[i + 1] != '$' && text[i + 1] != '{')) {
			lk_buf_addch(&out, text[i++]);
			continue;
		}
		if (text[i + 1] == '$') {
			lk_buf_addch(&out, '$');
			used = 2;
		} else if (expand_ref(ip, i, &out, &used, file, err) < 0) {
			lk_buf_release(&out);
			return -1;
		}
		add_span(ip, at, out.len - at, i, used);
		i += used;
	}
	ip->text = lk_buf_detach(&out, &ip->len);
	return 0;
}

void lk_interp_pos(const struct lk_interp *ip, size_t out_off, int *line, int *col)
{
	size_t in_off = out_off;
	int lo = 0, hi = ip->nspans - 1, best = -1;

	while (lo <= hi) { /* the last span starting at or before out_off */
		int mid = (lo + hi) / 2;

		if (ip->spans[mid].out_off <= out_off) {
			best = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	if (best >= 0) {
		const struct lk_interp_span *sp = &ip->spans[best];

		if (out_off < sp->out_off + sp->out_len)
			in_off = sp->in_off;
		else
			in_off = sp->in_off + sp->in_len + (out_off - sp->out_off - sp->out_len);
	}
	line_col(ip->orig, ip->orig_len, in_off, line, col);
}

size_t lk_interp_out_offset(const struct lk_interp *ip, int line, int col)
{
	size_t i = 0;
	int l = 1, cc = 1;

	if (!ip->text)
		return 0;
	while (i < ip->len && l < line) {
		if (ip->text[i++] == '\n')
			l++;
	}
	while (i < ip->len && ip->text[i] != '\n' && cc < col) {
		i++;
		while (i < ip->len && ((unsigned char)ip->text[i] & 0xC0) == 0x80)
			i++;
		cc++;
	}
	return i;
}

void lk_interp_release(struct lk_interp *ip)
{
	free(ip->text);
	free(ip->spans);
	memset(ip, 0, sizeof(*ip));
}
