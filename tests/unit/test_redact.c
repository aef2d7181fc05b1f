/*
 * test_redact.c - no password of a database URL survives lk_redact_text() or
 * lk_redact_url(), for any URL shape: a table of well-formed and malformed URLs (raw '%',
 * '@', ':', '/', '?' in the password, percent-encoded ones, ?password=, keyword strings
 * quoted or not, URIs libpq rejects, SQLite URLs with odd text), each redacted in libpq's
 * own error message for it (PQconninfoParse), in libpq-like connect messages that quote
 * the URL, the password and its pieces, and in the URL itself (docs/security.md).
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "config/config.h"
#include "core/buf.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

struct url_case {
	const char *url;
	const char *secrets[6]; /* none of these may appear in any redacted output */
	const char *keep;	/* text that must survive in the redacted libpq-like message */
};

static const struct url_case cases[] = {
	{"postgresql://u:pa%ss@127.0.0.1:1/db", {"pa%ss"}, "127.0.0.1"},
	{"postgresql://u:se%zcret@127.0.0.1:1/db", {"se%zcret"}, "127.0.0.1"},
	{"postgresql://u:pw%2@127.0.0.1:1/db", {"pw%2"}, "127.0.0.1"},
	{"postgresql://u:100%@127.0.0.1:1/db", {"100%"}, "127.0.0.1"},
	{"postgresql://u:%@127.0.0.1:1/db", {"u:%@"}, "127.0.0.1"},
	{"postgresql://u:enc%41ded@127.0.0.1:1/db", {"enc%41ded", "encAded"}, "127.0.0.1"},
	{"postgresql://u:%73%65%63%72%65%74@h/db", {"%73%65%63%72%65%74", "secret"}, "h/db"},
	{"postgresql://u:p@ssword@127.0.0.1:1/db", {"p@ssword", "ssword"}, "127.0.0.1"},
	{"postgresql://u:p@ss:wo/rd@127.0.0.1:1/db", {"p@ss:wo/rd", "ss:wo", "rd@"}, "127.0.0.1"},
	{"postgresql://u:pass/word@127.0.0.1:1/db", {"pass/word", "pass", "word"}, "127.0.0.1"},
	{"postgresql://u:pass?word@127.0.0.1:1/db", {"pass?word", "word"}, "127.0.0.1"},
	{"postgresql://u:se:cr:et@127.0.0.1:1/db", {"se:cr:et", "cr:et"}, "127.0.0.1"},
	{"postgresql://u:sec[ret@[::1:1/db", {"sec[ret"}, "IPv6"},
	{"postgresql://u:secret#x@127.0.0.1:1/db", {"secret#x", "secret"}, "127.0.0.1"},
	{"postgresql://u:zzsecret@127.0.0.1:1/db?sslmode=bogus", {"zzsecret"}, "bogus"},
	{"postgres://u@127.0.0.1:1/db?password=qu%ery", {"qu%ery"}, "127.0.0.1"},
	{"postgres://h/db?user=u&password=a%41b&sslmode=x", {"a%41b", "aAb"}, "sslmode"},
	{"postgres://h/db?sslpassword=keypass&password=pw%zz", {"keypass", "pw%zz"}, "h/db"},
	{"postgres://u:top@h/db?password=a@b", {"top", "a@b"}, "port"},
	{"postgres://u:top secret@h/db", {"top secret"}, "h/db"},
	{"host=127.0.0.1 port=1 password=kw%secret dbname=x", {"kw%secret"}, "127.0.0.1"},
	{"host=127.0.0.1 password='quo ted' dbname=x", {"quo ted"}, "127.0.0.1"},
	{"host=h password='it\\'s' dbname=x", {"it\\'s", "it's"}, "dbname"},
	{"host=h password = spaced dbname=x", {"spaced"}, "dbname"},
	{"host=h password=two words dbname=x", {"two words", "words"}, "dbname"},
	{"host=h password='unterminated secret", {"unterminated secret"}, "string"},
	{"host=h sslpassword=keypw password=pw bogus=1", {"keypw"}, "bogus"},
	{"host=h dbname=postgresql://u:nested@h2/db", {"nested"}, "host"},
	{"PASSWORD=upper host=h", {"upper"}, "host"},
	{"sqlite:/tmp/odd%zz@x:y.db", {NULL}, "sqlite"},
	{"sqlite:/tmp/a b password=sqlpw.db", {"sqlpw.db"}, "sqlite"},
	{"postgres:/u:oddpw@h/db", {"oddpw"}, "h/db"},
	{"u:barepw@h", {"barepw"}, "h"},
};

/* Fails unless no secret of c appears in text. */
static void assert_clean(const struct url_case *c, const char *what, const char *text)
{
	for (int i = 0; i < 6 && c->secrets[i]; i++) {
		if (strstr(text, c->secrets[i]))
			fail_msg("%s of '%s' shows '%s':\n  %s", what, c->url, c->secrets[i], text);
	}
}

static void redact(const char *text, const char *url, struct lk_buf *out)
{
	lk_buf_reset(out);
	lk_redact_text(text, url, out);
	lk_buf_addch(out, '\0');
}

/* libpq's own message for the URL (when it refuses it), redacted. */
static void check_libpq_parse(const struct url_case *c, struct lk_buf *out)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(c->url, &errmsg);

	if (errmsg) {
		redact(errmsg, c->url, out);
		assert_clean(c, "PQconninfoParse's error", out->buf);
	}
	PQfreemem(errmsg);
	PQconninfoFree(opts);
}

/* Messages shaped like libpq's, quoting the URL, the password or a piece of it. */
static void check_messages(const struct url_case *c, struct lk_buf *out)
{
	struct lk_buf msg = LK_BUF_INIT;

	lk_buf_addf(&msg, "missing \"=\" after \"%s\" in connection info string\n", c->url);
	lk_buf_addf(&msg, "invalid URI: \"%s\" port \"1\" host \"%s\"", c->url, c->keep);
	for (int i = 0; i < 6 && c->secrets[i]; i++)
		lk_buf_addf(&msg, "\ninvalid percent-encoded token: \"%s\"", c->secrets[i]);
	redact(msg.buf, c->url, out);
	assert_clean(c, "a libpq-like message", out->buf);
	if (!strstr(out->buf, c->keep))
		fail_msg("redacting for '%s' lost '%s':\n  %s", c->url, c->keep, out->buf);
	lk_buf_release(&msg);
}

static void test_url_table(void **state)
{
	struct lk_buf out = LK_BUF_INIT;
	char shown[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct url_case *c = &cases[i];

		check_libpq_parse(c, &out);
		check_messages(c, &out);
		lk_redact_url(c->url, shown, sizeof(shown));
		assert_clean(c, "lk_redact_url", shown);
		redact(c->url, c->url, &out);
		assert_clean(c, "the URL redacted as text", out.buf);
	}
	lk_buf_release(&out);
}

/* Short pieces are replaced as words only, longer secrets anywhere; no URL, no change. */
static void test_text_rules(void **state)
{
	struct lk_buf out = LK_BUF_INIT;

	(void)state;
	redact("invalid integer value \"w\" for connection option \"port\"",
	       "postgresql://u:p@ss:w/rd@h/db", &out);
	assert_string_equal(out.buf,
			    "invalid integer value \"***\" for connection option \"port\"");
	redact("server at \"h\", port 1 failed: password authentication failed",
	       "postgres://u:pw@h/db", &out);
	assert_string_equal(out.buf,
			    "server at \"h\", port 1 failed: password authentication failed");
	redact("token \"pa%ss\" in \"postgresql://u:pa%ss@h/db\"", "postgresql://u:pa%ss@h/db",
	       &out);
	assert_string_equal(out.buf, "token \"***\" in \"postgresql://u:***@h/db\"");
	redact("abc secret123 xyz", NULL, &out);
	assert_string_equal(out.buf, "abc secret123 xyz");
	redact("abc secret123 xyz", "postgres://h/db", &out);
	assert_string_equal(out.buf, "abc secret123 xyz");
	redact("", "postgres://u:pw@h/db", &out);
	assert_string_equal(out.buf, "");
	lk_buf_release(&out);
}

static bool in_set(const struct lk_buf *set, const char *s)
{
	for (size_t o = 0; o < set->len; o += strlen(set->buf + o) + 1) {
		if (strcmp(set->buf + o, s) == 0)
			return true;
	}
	return false;
}

/* The secret set: raw, decoded, pieces; nothing for a URL without a password. */
static void test_secret_set(void **state)
{
	struct lk_buf set = LK_BUF_INIT;

	(void)state;
	lk_redact_secrets("postgres://u:a%40b:c@h/db", &set);
	assert_true(set.len > 0);
	assert_true(in_set(&set, "a%40b:c"));
	assert_true(in_set(&set, "a@b:c"));
	assert_true(in_set(&set, "c"));
	lk_buf_reset(&set);
	lk_redact_secrets("postgres://u@h/db?sslmode=require", &set);
	assert_int_equal(set.len, 0);
	lk_redact_secrets("sqlite:/tmp/x.db", &set);
	lk_redact_secrets(NULL, &set);
	assert_int_equal(set.len, 0);
	lk_buf_release(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_table),
		cmocka_unit_test(test_text_rules),
		cmocka_unit_test(test_secret_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
