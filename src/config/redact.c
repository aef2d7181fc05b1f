/*
 * redact.c - hiding passwords in database URLs and libpq keyword strings before they
 * reach a log line, a status answer or the HTTP API (SPEC §3: secrets show as ***).
 */
#include "config.h"
#include "core/buf.h"

#include <ctype.h>
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
		vlen = value_len(s + eq);
		lk_buf_add(out, s, eq);
		if (is_secret_name(s, name))
			lk_buf_adds(out, "***");
		else
			lk_buf_add(out, s + eq, vlen);
		s += eq + vlen;
	}
}

void lk_redact_url_buf(const char *url, struct lk_buf *out)
{
	const char *scheme;

	if (!url)
		return;
	scheme = strstr(url, "://");
	if (scheme && strcspn(url, " \t=") > (size_t)(scheme - url))
		redact_uri(url, scheme + 3, out);
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
