/*
 * redact.c - hiding passwords in database URLs and libpq keyword strings before they
 * reach a log line, a status answer or the HTTP API (SPEC §3: secrets show as ***).
 */
#include "config.h"
#include "core/buf.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Keywords and query parameters whose value is a secret. */
static bool is_secret_name(const char *name, size_t len)
{
	return (len == 8 && strncasecmp(name, "password", 8) == 0) ||
	       (len == 11 && strncasecmp(name, "sslpassword", 11) == 0);
}

/* Copies "name=value&name=value..." from s, hiding secret values; s may end in '#...'. */
static void redact_query(const char *s, struct lk_buf *out)
{
	while (*s) {
		size_t seg = strcspn(s, "&"), name = strcspn(s, "=&");

		if (name < seg && is_secret_name(s, name)) {
			lk_buf_add(out, s, name + 1);
			lk_buf_adds(out, "***");
		} else {
			lk_buf_add(out, s, seg);
		}
		s += seg;
		if (*s == '&')
			lk_buf_addch(out, *s++);
	}
}

/*
 * The '@' that ends the user info of a URL whose authority starts at `start`, or NULL.
 * The last '@' of the whole URL: a password may hold unescaped '@', '/' or '?', and
 * hiding too much (an '@' in a query value) is better than showing part of a password.
 */
static const char *userinfo_end(const char *start)
{
	return strrchr(start, '@');
}

/* scheme://user:password@host/path?password=... */
static void redact_uri(const char *url, const char *start, struct lk_buf *out)
{
	const char *at = userinfo_end(start), *rest = start, *q;

	if (at) {
		const char *colon = memchr(start, ':', (size_t)(at - start));

		if (colon) {
			lk_buf_add(out, url, (size_t)(colon + 1 - url));
			lk_buf_adds(out, "***");
		} else {
			lk_buf_add(out, url, (size_t)(at - url));
		}
		rest = at;
	} else {
		lk_buf_add(out, url, (size_t)(start - url));
	}
	q = strchr(rest, '?');
	if (!q) {
		lk_buf_adds(out, rest);
		return;
	}
	lk_buf_add(out, rest, (size_t)(q + 1 - rest));
	redact_query(q + 1, out);
}

/* Length of a keyword-string value at s: 'quoted with \' escapes' or up to a blank. */
static size_t value_len(const char *s)
{
	size_t i = 0;

	if (s[0] != '\'') {
		while (s[i] && !isspace((unsigned char)s[i]))
			i++;
		return i;
	}
	for (i = 1; s[i] && s[i] != '\''; i++) {
		if (s[i] == '\\' && s[i + 1])
			i++;
	}
	return s[i] ? i + 1 : i;
}

/*
 * Length of a password value at v: value_len, and for an unquoted one also the words after
 * it that are not "key=" (libpq stops at the blank, so "password=two words" would show
 * "words" in its complaint about a keyword without '=').
 */
static size_t secret_len(const char *v)
{
	size_t len = value_len(v);

	while (v[0] != '\'') {
		size_t b = strspn(v + len, " \t\r\n"), w = strcspn(v + len + b, "= \t\r\n");

		if (w == 0 || v[len + b + w + strspn(v + len + b + w, " \t\r\n")] == '=')
			break;
		len += b + w;
	}
	return len;
}

/* The first "://" in v[0..len), or NULL. */
static const char *find_scheme(const char *v, size_t len)
{
	for (size_t i = 0; i + 3 <= len; i++) {
		if (memcmp(v + i, "://", 3) == 0)
			return v + i;
	}
	return NULL;
}

/* A keyword value; a URI in it (libpq expands "dbname=postgresql://...") is redacted too. */
static void add_value(struct lk_buf *out, const char *v, size_t len)
{
	const char *scheme = find_scheme(v, len);
	char *copy;

	if (!scheme) {
		lk_buf_add(out, v, len);
		return;
	}
	copy = strndup(v, len);
	if (!copy) {
		lk_buf_adds(out, "***");
		return;
	}
	redact_uri(copy, copy + (scheme - v) + 3, out);
	free(copy);
}

/* host=x password=secret dbname=y (blanks around '=' allowed, values maybe quoted). */
static void redact_keywords(const char *s, struct lk_buf *out)
{
	while (*s) {
		size_t blank = strspn(s, " \t\r\n"), name, eq, vlen;

		lk_buf_add(out, s, blank);
		s += blank;
		if (!*s)
			break; /* trailing blanks: stepping over "the word" would pass the NUL */
		name = strcspn(s, "= \t\r\n");
		eq = name + strspn(s + name, " \t\r\n");
		if (s[eq] != '=') { /* not "key = value": copy the word and go on */
			lk_buf_add(out, s, name ? name : 1);
			s += name ? name : 1;
			continue;
		}
		eq++;
		eq += strspn(s + eq, " \t\r\n");
		vlen = is_secret_name(s, name) ? secret_len(s + eq) : value_len(s + eq);
		lk_buf_add(out, s, eq);
		if (is_secret_name(s, name))
			lk_buf_adds(out, "***");
		else
			add_value(out, s + eq, vlen);
		s += eq + vlen;
	}
}

/*
 * Text with an '@' that is neither a URI nor a keyword string ("postgres:/u:pw@h",
 * "u:pw@host"): everything between the first ':' and the last '@' may be a password.
 */
static void redact_odd(const char *url, struct lk_buf *out)
{
	const char *at = strrchr(url, '@'), *colon = strchr(url, ':');

	if (!colon || colon > at) {
		lk_buf_adds(out, url);
		return;
	}
	lk_buf_add(out, url, (size_t)(colon + 1 - url));
	lk_buf_adds(out, "***");
	lk_buf_adds(out, at);
}

void lk_redact_url_buf(const char *url, struct lk_buf *out)
{
	const char *scheme;

	if (!url)
		return;
	scheme = strstr(url, "://");
	if (scheme && strcspn(url, " \t=") > (size_t)(scheme - url))
		redact_uri(url, scheme + 3, out);
	else if (!strchr(url, '=') && strchr(url, '@') && strncmp(url, "sqlite:", 7) != 0)
		redact_odd(url, out);
	else
		redact_keywords(url, out);
}

void lk_redact_url(const char *url, char *out, size_t out_size)
{
	struct lk_buf b = LK_BUF_INIT;
	size_t n;

	if (!out || out_size == 0)
		return;
	lk_redact_url_buf(url, &b);
	n = b.len < out_size - 1 ? b.len : out_size - 1;
	memcpy(out, b.buf, n);
	out[n] = '\0';
	lk_buf_release(&b);
}

/* ---- the secrets of one URL, and text redacted with them ---- */

/* Characters libpq may split a malformed URI or keyword string at. */
#define SPLIT_AT "@:/?&=,[]# \t'\"\\"

/* Secrets shorter than this are replaced only as a whole word, not inside one. */
#define SHORT_SECRET 4

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends s[0..len) with each valid %XX decoded, and a NUL. */
static void add_decoded(struct lk_buf *set, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int hi = i + 2 < len && s[i] == '%' ? hexval(s[i + 1]) : -1;
		int lo = hi >= 0 ? hexval(s[i + 2]) : -1;

		if (hi >= 0 && lo >= 0) {
			lk_buf_addch(set, (char)(hi * 16 + lo));
			i += 2;
		} else {
			lk_buf_addch(set, s[i]);
		}
	}
	lk_buf_addch(set, '\0');
}

/* One secret: raw, percent-decoded, and the pieces a parser may cut it into. */
static void add_secret(struct lk_buf *set, const char *s, size_t len, bool pieces)
{
	if (len == 0)
		return;
	lk_buf_add(set, s, len);
	lk_buf_addch(set, '\0');
	add_decoded(set, s, len);
	for (size_t i = 0; pieces && i < len;) {
		size_t n = 0; /* the span up to a split character, within len (s may not end) */

		while (i + n < len && s[i + n] && !strchr(SPLIT_AT, s[i + n]))
			n++;
		if (n > 0 && n < len)
			add_secret(set, s + i, n, false);
		i += n ? n : 1;
	}
}

/* ?password=... and &sslpassword=... anywhere in a URI (a password may hold '?'). */
static void uri_query_secrets(const char *s, struct lk_buf *set)
{
	for (; *s; s++) {
		size_t name, vlen;

		if (*s != '?' && *s != '&')
			continue;
		name = strcspn(s + 1, "=&#");
		if (s[1 + name] != '=' || !is_secret_name(s + 1, name))
			continue;
		vlen = strcspn(s + 2 + name, "&#");
		add_secret(set, s + 2 + name, vlen, true);
	}
}

static void uri_secrets(const char *start, struct lk_buf *set)
{
	const char *at = strrchr(start, '@');
	const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;

	if (colon)
		add_secret(set, colon + 1, (size_t)(at - colon - 1), true);
	uri_query_secrets(start, set);
}

/* A keyword password: 'quoted \' escaped' (raw and unescaped), or secret_len's words. */
static void keyword_secret(const char *v, struct lk_buf *set)
{
	size_t len = value_len(v), n = 0;
	char *plain;

	if (v[0] != '\'') {
		add_secret(set, v, secret_len(v), true);
		return;
	}
	add_secret(set, v + 1, len > 1 && v[len - 1] == '\'' ? len - 2 : len - 1, true);
	plain = malloc(len + 1);
	if (!plain)
		return;
	for (size_t i = 1; i < len && v[i] != '\''; i++)
		plain[n++] = v[i] == '\\' && i + 1 < len ? v[++i] : v[i];
	plain[n] = '\0';
	add_secret(set, plain, n, true);
	free(plain);
}

/* A URI given as a keyword value ("dbname=postgresql://u:pw@h/db", maybe quoted). */
static void value_secrets(const char *v, size_t len, struct lk_buf *set)
{
	char *copy = strndup(v, len);

	if (copy)
		lk_redact_secrets(copy, set);
	free(copy);
}

static void keyword_secrets(const char *s, struct lk_buf *set)
{
	while (*s) {
		size_t name, eq;

		s += strspn(s, " \t\r\n");
		if (!*s)
			break;
		name = strcspn(s, "= \t\r\n");
		eq = name + strspn(s + name, " \t\r\n");
		if (s[eq] != '=') {
			s += name ? name : 1;
			continue;
		}
		eq++;
		eq += strspn(s + eq, " \t\r\n");
		if (is_secret_name(s, name))
			keyword_secret(s + eq, set);
		else if (find_scheme(s + eq, value_len(s + eq)))
			value_secrets(s + eq, value_len(s + eq), set);
		s += eq + value_len(s + eq);
	}
}

void lk_redact_secrets(const char *url, struct lk_buf *set)
{
	const char *scheme;

	if (!url)
		return;
	scheme = strstr(url, "://");
	if (scheme && strcspn(url, " \t=") > (size_t)(scheme - url))
		uri_secrets(scheme + 3, set);
	else if (!strchr(url, '=') && strchr(url, '@') && strncmp(url, "sqlite:", 7) != 0)
		uri_secrets(url, set);
	else
		keyword_secrets(url, set);
}

static bool is_word(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Length of the longest secret of set found at text + i, or 0. */
static size_t match_at(const char *text, size_t i, const struct lk_buf *set)
{
	size_t best = 0;

	for (size_t o = 0; o < set->len; o += strlen(set->buf + o) + 1) {
		const char *sec = set->buf + o;
		size_t n = strlen(sec);

		if (n <= best || strncmp(text + i, sec, n) != 0)
			continue;
		if (n < SHORT_SECRET && ((i > 0 && is_word(text[i - 1])) || is_word(text[i + n])))
			continue;
		best = n;
	}
	return best;
}

void lk_redact_text(const char *text, const char *url, struct lk_buf *out)
{
	struct lk_buf set = LK_BUF_INIT;

	if (!text)
		return;
	lk_redact_secrets(url, &set);
	for (size_t i = 0; text[i];) {
		size_t n = set.len ? match_at(text, i, &set) : 0;

		if (n) {
			lk_buf_adds(out, "***");
			i += n;
		} else {
			lk_buf_addch(out, text[i++]);
		}
	}
	lk_buf_release(&set);
}
