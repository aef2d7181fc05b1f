/* sqlscan.c - the statements of an sql job's script, word by word, for transaction control. */
#include "sqlscan.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum tok { TOK_END, TOK_WORD, TOK_SEMI, TOK_OTHER };

struct scan {
	const char *p;
	char word[16]; /* the current word, upper-case, cut to fit */
};

static bool word_start(char c)
{
	return isalpha((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80;
}

static bool word_char(char c)
{
	return word_start(c) || isdigit((unsigned char)c) || c == '$';
}

/* Skips a quoted run that starts at s->p (its opening quote q); `backslash`: E'' escapes. */
static void skip_quoted(struct scan *s, char q, bool backslash)
{
	const char *p = s->p + 1;

	while (*p) {
		if ((backslash && *p == '\\' && p[1]) || (*p == q && p[1] == q)) {
			p += 2; /* an escaped or doubled quote stands for itself */
		} else if (*p == q) {
			p++;
			break;
		} else {
			p++;
		}
	}
	s->p = p;
}

/* At '$': skips a dollar-quoted body ($$...$$ or $tag$...$tag$); false for $1 and such. */
static bool skip_dollar(struct scan *s)
{
	const char *p = s->p + 1, *end;
	size_t n;

	while (*p && (isalnum((unsigned char)*p) || *p == '_'))
		p++;
	if (*p != '$' || isdigit((unsigned char)s->p[1]))
		return false;
	n = (size_t)(p - s->p) + 1; /* the tag with both dollars */
	end = strstr(p + 1, "$");
	while (end && strncmp(end, s->p, n) != 0)
		end = strstr(end + 1, "$");
	s->p = end ? end + n : s->p + strlen(s->p);
	return true;
}

/* Skips a comment at s->p, if there is one (nested block comments as PostgreSQL has them). */
static bool skip_comment(struct scan *s)
{
	const char *p = s->p;
	int depth = 0;

	if (p[0] == '-' && p[1] == '-') {
		p += strcspn(p, "\n");
		s->p = p;
		return true;
	}
	if (p[0] != '/' || p[1] != '*')
		return false;
	do {
		if (p[0] == '/' && p[1] == '*') {
			depth++;
			p += 2;
		} else if (p[0] == '*' && p[1] == '/') {
			depth--;
			p += 2;
		} else {
			p++;
		}
	} while (*p && depth > 0);
	s->p = p;
	return true;
}

/* Reads the word at s->p into s->word, upper-case (cut to fit). */
static void read_word(struct scan *s)
{
	size_t n = 0;

	for (; word_char(*s->p); s->p++) {
		if (n + 1 < sizeof(s->word))
			s->word[n++] = (char)toupper((unsigned char)*s->p);
	}
	s->word[n] = '\0';
}

static enum tok next(struct scan *s)
{
	for (;;) {
		char c = *s->p;

		if (!c)
			return TOK_END;
		if (isspace((unsigned char)c) || skip_comment(s)) {
			s->p += isspace((unsigned char)c) ? 1 : 0;
			continue;
		}
		if (c == ';') {
			s->p++;
			return TOK_SEMI;
		}
		if ((c == 'E' || c == 'e') && s->p[1] == '\'') {
			s->p++;
			skip_quoted(s, '\'', true);
			return TOK_OTHER;
		}
		if (word_start(c)) {
			read_word(s);
			return TOK_WORD;
		}
		if (c == '\'' || c == '"' || c == '`') {
			skip_quoted(s, c, false);
		} else if (c == '[') {
			s->p += strcspn(s->p, "]");
			s->p += *s->p ? 1 : 0;
		} else if (!(c == '$' && skip_dollar(s))) {
			s->p++;
		}
		return TOK_OTHER;
	}
}

static bool is(const struct scan *s, const char *w)
{
	return strcmp(s->word, w) == 0;
}

/* At a statement's first word: whether it ends or starts a transaction. */
static bool controls(struct scan *s)
{
	static const char *const words[] = {"BEGIN", "START", "COMMIT", "END", "ABORT"};
	struct scan peek;

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (is(s, words[i]))
			return true;
	}
	if (!is(s, "ROLLBACK"))
		return false;
	peek = *s; /* ROLLBACK [WORK | TRANSACTION] TO a savepoint stays in the transaction */
	if (next(&peek) != TOK_WORD)
		return true;
	if ((is(&peek, "WORK") || is(&peek, "TRANSACTION")) && next(&peek) != TOK_WORD)
		return true;
	return !is(&peek, "TO");
}

const char *lk_sql_txn_control(const char *sql, char *out, size_t out_size)
{
	struct scan s = {.p = sql ? sql : ""};
	bool first = true;
	int depth = 0; /* BEGIN ... END bodies (and CASE ... END inside them) within a statement */
	enum tok t;

	while ((t = next(&s)) != TOK_END) {
		if (t == TOK_SEMI) {
			first = depth == 0;
			continue;
		}
		if (t != TOK_WORD) {
			first = false;
			continue;
		}
		if (first) {
			first = false;
			if (controls(&s)) {
				(void)snprintf(out, out_size, "%s", s.word);
				return out;
			}
		} else if (is(&s, "BEGIN") || (depth > 0 && is(&s, "CASE"))) {
			depth++;
		} else if (depth > 0 && is(&s, "END")) {
			depth--;
		}
	}
	return NULL;
}
