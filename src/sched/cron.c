/*
 * cron.c - cron expressions: the parser (fields into bitmasks) and the next fire time,
 * found field by field on local wall time, one period of constant UTC offset at a time.
 */
#include "cron.h"

#include "core/units.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ALL_HOURS ((UINT32_C(1) << 24) - 1)
#define ALL_DOM (((UINT32_C(1) << 31) - 1) << 1)
#define ALL_DOW UINT8_C(0x7f)
#define EXPR_MAX 256
#define NO_TIME INT64_MIN

enum fld { F_SEC, F_MIN, F_HOUR, F_DOM, F_MONTH, F_DOW };

static const struct field {
	const char *name;
	int lo, hi;
	const char *names; /* three-letter names of lo, lo + 1, ... (upper case), or NULL */
	const char *name_range;
} fields[6] = {
	{"second", 0, 59, NULL, NULL},
	{"minute", 0, 59, NULL, NULL},
	{"hour", 0, 23, NULL, NULL},
	{"day-of-month", 1, 31, NULL, NULL},
	{"month", 1, 12, "JANFEBMARAPRMAYJUNJULAUGSEPOCTNOVDEC", "JAN-DEC"},
	{"day-of-week", 0, 7, "SUNMONTUEWEDTHUFRISAT", "SUN-SAT"},
};

/* The field being parsed, for messages. */
struct fctx {
	enum fld f;
	int pos; /* 1-based position in the expression as written */
	struct lk_err *err;
};

static int ferr(const struct fctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "field 'hour' (3rd): <message>" */
static int ferr(const struct fctx *x, const char *fmt, ...)
{
	static const char *const ord[] = {"1st", "2nd", "3rd", "4th", "5th", "6th"};
	char msg[LK_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return lk_err_set(x->err, LK_ERR_CONFIG, "field '%s' (%s): %s", fields[x->f].name,
			  ord[x->pos - 1], msg);
}

static char upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A message for the extensions other crons have (Quartz, Jenkins), or NULL. */
static const char *extension_msg(const char *item)
{
	size_t n = strlen(item);
	char last = n ? upper(item[n - 1]) : '\0';
	char first = upper(item[0]);

	if (strchr(item, '#'))
		return "'#' (nth weekday of the month) is not supported";
	if ((first == 'L' && (n == 1 || item[1] == '-' || upper(item[1]) == 'W')) ||
	    (last == 'L' && n >= 2 && is_digit(item[n - 2])))
		return "'L' (last day) is not supported";
	if (last == 'W' && n >= 2 && is_digit(item[n - 2]))
		return "'W' (nearest weekday) is not supported";
	if (first == 'H' && (n == 1 || item[1] == '(' || item[1] == '/'))
		return "'H' (hashed value) is not supported";
	return NULL;
}

/* "expected 1-12 or JAN-DEC, found <found>" */
static int bad_value(const struct fctx *x, const char *found)
{
	const struct field *fd = &fields[x->f];

	return ferr(x, "expected %d-%d%s%s, found %s", fd->lo, fd->hi, fd->names ? " or " : "",
		    fd->names ? fd->name_range : "", found);
}

/* Reads a number or (month, weekday) a name at *s into *v, checking the field's range. */
static int parse_value(const struct fctx *x, const char **s, int *v)
{
	const struct field *fd = &fields[x->f];
	const char *p = *s;
	char tok[16], quoted[40];
	size_t n = 0;

	while ((is_digit(*p) || is_alpha(*p)) && n < sizeof(tok) - 1)
		tok[n++] = *p++;
	tok[n] = '\0';
	if (n > 0 && strspn(tok, "0123456789") == n) {
		long val = 0;

		for (size_t i = 0; i < n && val <= 1000; i++)
			val = val * 10 + (tok[i] - '0');
		if (val < fd->lo || val > fd->hi)
			return bad_value(x, tok);
		*v = (int)val;
		*s = p;
		return 0;
	}
	for (size_t i = 0; fd->names && n == 3 && fd->names[3 * i]; i++)
		if (upper(tok[0]) == fd->names[3 * i] && upper(tok[1]) == fd->names[3 * i + 1] &&
		    upper(tok[2]) == fd->names[3 * i + 2]) {
			*v = fd->lo + (int)i;
			*s = p;
			return 0;
		}
	if (n == 0 && !**s)
		return bad_value(x, "nothing");
	(void)snprintf(quoted, sizeof(quoted), "'%.20s'", n ? tok : *s);
	return bad_value(x, quoted);
}

/* "/n" after a base: the step, 1 up to the field's span. */
static int parse_step(const struct fctx *x, const char **s, int *step)
{
	const struct field *fd = &fields[x->f];
	const char *p = *s;
	long v = 0;

	while (is_digit(*p)) {
		if (v <= 1000)
			v = v * 10 + (*p - '0');
		p++;
	}
	if (p == *s || v < 1 || v > fd->hi - fd->lo) {
		if (p == *s)
			return ferr(x, "expected a step of 1-%d after '/', found '%s'",
				    fd->hi - fd->lo, *s);
		return ferr(x, "expected a step of 1-%d after '/', found %.*s", fd->hi - fd->lo,
			    (int)(p - *s), *s);
	}
	*step = (int)v;
	*s = p;
	return 0;
}

/* One list item: "*", "?", "a", "a-b", each with an optional "/step"; sets its bits. */
static int parse_item(const struct fctx *x, const char *item, uint64_t *mask)
{
	const struct field *fd = &fields[x->f];
	const char *s = item, *ext = extension_msg(item);
	int a = fd->lo, b = fd->hi, step = 1;
	bool single = false;

	if (ext)
		return ferr(x, "%s", ext);
	if (*s == '*' || *s == '?') {
		if (*s == '?' && x->f != F_DOM && x->f != F_DOW)
			return ferr(x, "'?' is only allowed in the day-of-month and day-of-week "
				       "fields");
		s++;
	} else {
		if (parse_value(x, &s, &a) < 0)
			return -1;
		b = a;
		single = true;
		if (*s == '-') {
			s++;
			if (parse_value(x, &s, &b) < 0)
				return -1;
			single = false;
		}
	}
	if (*s == '/') {
		s++;
		if (parse_step(x, &s, &step) < 0)
			return -1;
		if (single)
			b = fd->hi; /* "a/n" is "a-max/n" */
	}
	if (*s)
		return ferr(x, "cannot read '%s' (expected forms: 5, 1-5, *, */15, 1-30/5, 10/5)",
			    item);
	if (a > b && x->f == F_DOW && b == 0)
		b = 7; /* "FRI-SUN" */
	if (a > b)
		return ferr(x, "range %d-%d is reversed (write it as two ranges, e.g. %d-%d,%d-%d)",
			    a, b, a, fd->hi, fd->lo, b);
	for (int v = a; v <= b; v += step)
		*mask |= UINT64_C(1) << v;
	return 0;
}

/* A comma-separated list of items (text is modified). */
static int parse_field(const struct fctx *x, char *text, uint64_t *mask)
{
	char *item = text;

	*mask = 0;
	for (;;) {
		char *comma = strchr(item, ',');

		if (comma)
			*comma = '\0';
		if (!*item)
			return ferr(x, "expected a value, found an empty list item");
		if (parse_item(x, item, mask) < 0)
			return -1;
		if (!comma)
			return 0;
		item = comma + 1;
	}
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Splits buf on blanks; keeps the first 6 fields in f and returns how many there are. */
static int split_fields(char *buf, char *f[6])
{
	int n = 0;
	char *p = buf;

	for (;;) {
		while (is_space(*p))
			*p++ = '\0';
		if (!*p)
			return n;
		if (n < 6)
			f[n] = p;
		n++;
		while (*p && !is_space(*p))
			p++;
	}
}

/* Five or six fields into *c. */
static int parse_fields(const char *expr, struct lk_cron *c, struct lk_err *err)
{
	char buf[EXPR_MAX], *f[6];
	uint64_t m[6] = {1, 0, 0, 0, 0, 0};
	int n;

	if (strlen(expr) >= sizeof(buf))
		return lk_err_set(err, LK_ERR_CONFIG, "cron expression longer than %d characters",
				  EXPR_MAX - 1);
	memcpy(buf, expr, strlen(expr) + 1);
	n = split_fields(buf, f);
	if (n != 5 && n != 6)
		return lk_err_set(err, LK_ERR_CONFIG,
				  "expected 5 or 6 fields ([sec] min hour day-of-month month "
				  "day-of-week) or an @-schedule, found %d",
				  n);
	for (int i = 0; i < n; i++) {
		struct fctx x = {(enum fld)(i + 6 - n), i + 1, err};

		if (parse_field(&x, f[i], &m[x.f]) < 0)
			return -1;
	}
	memset(c, 0, sizeof(*c));
	c->sec = m[F_SEC];
	c->min = m[F_MIN];
	c->hour = (uint32_t)m[F_HOUR];
	c->dom = (uint32_t)m[F_DOM];
	c->month = (uint16_t)m[F_MONTH];
	c->dow = (uint8_t)((m[F_DOW] | m[F_DOW] >> 7) & ALL_DOW); /* 7 is Sunday too */
	return 0;
}

/* The rest of "@every DURATION" (after the word). */
static int parse_every(const char *rest, struct lk_cron *c, struct lk_err *err)
{
	char dur[64];
	size_t n = 0;
	int64_t ms;

	while (rest[n] && !is_space(rest[n]) && n < sizeof(dur) - 1) {
		dur[n] = rest[n];
		n++;
	}
	dur[n] = '\0';
	if (!n)
		return lk_err_set(
			err, LK_ERR_CONFIG,
			"@every: expected a duration such as 90s or 1h30m, found nothing");
	if (lk_duration_parse(dur, &ms) < 0 || rest[n + strspn(rest + n, " \t\r\n")])
		return lk_err_set(err, LK_ERR_CONFIG,
				  "@every: expected a duration such as 90s or 1h30m, found '%s'",
				  rest);
	if (ms < 1000)
		return lk_err_set(err, LK_ERR_CONFIG,
				  "@every: expected a duration of at least 1s, found '%s'", dur);
	memset(c, 0, sizeof(*c));
	c->every_ms = ms;
	return 0;
}

/* "@every DURATION" and the named schedules. */
static int parse_macro(const char *expr, struct lk_cron *c, struct lk_err *err)
{
	static const struct {
		const char *name, *fields;
	} macros[] = {{"@yearly", "0 0 0 1 1 *"},  {"@annually", "0 0 0 1 1 *"},
		      {"@monthly", "0 0 0 1 * *"}, {"@weekly", "0 0 0 * * 0"},
		      {"@daily", "0 0 0 * * *"},   {"@midnight", "0 0 0 * * *"},
		      {"@hourly", "0 0 * * * *"}};
	char word[16];
	size_t n = 0;
	const char *rest = expr;

	while (*rest && !is_space(*rest) && n < sizeof(word) - 1)
		word[n++] = *rest++;
	word[n] = '\0';
	while (is_space(*rest))
		rest++;
	if (strcasecmp(word, "@every") == 0)
		return parse_every(rest, c, err);
	for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
		if (strcasecmp(word, macros[i].name) == 0 && !*rest)
			return parse_fields(macros[i].fields, c, err);
	return lk_err_set(err, LK_ERR_CONFIG,
			  "unknown schedule '%s': expected @every DURATION, @hourly, @daily, "
			  "@midnight, @weekly, @monthly, @yearly or @annually",
			  expr);
}

int lk_cron_parse(const char *expr, struct lk_cron *out, struct lk_err *err)
{
	struct lk_cron c;

	if (!expr)
		return lk_err_set(err, LK_ERR_CONFIG, "empty cron expression");
	while (is_space(*expr))
		expr++;
	if (!*expr)
		return lk_err_set(err, LK_ERR_CONFIG, "empty cron expression");
	if ((*expr == '@' ? parse_macro(expr, &c, err) : parse_fields(expr, &c, err)) < 0)
		return -1;
	*out = c;
	return 0;
}

/* ---- next fire ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The lowest set bit of mask at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from)
{
	if (from >= 64)
		return -1;
	mask >>= from;
	return mask ? from + __builtin_ctzll(mask) : -1;
}

/* The first day >= d of the month that the day fields accept, or 0 when none is left. */
static int next_day(const struct lk_cron *c, int y, int m, int d)
{
	int dim = lk_tz_days_in_month(y, m);
	int by_dom = next_bit(c->dom, d), by_dow = -1;
	int wd;

	if (d > dim)
		return 0;
	if (c->dom == ALL_DOM && c->dow == ALL_DOW)
		return d;
	wd = lk_tz_weekday(lk_tz_days_from_civil(y, m, d));
	for (int k = 0; k < 7; k++)
		if (c->dow & (1u << ((wd + k) % 7))) {
			by_dow = d + k;
			break;
		}
	if (by_dom > dim)
		by_dom = -1;
	if (by_dow > dim)
		by_dow = -1;
	if (c->dow == ALL_DOW) /* only the day of the month is restricted */
		by_dow = -1;
	else if (c->dom == ALL_DOM) /* only the weekday */
		by_dom = -1;
	/* Otherwise both are restricted, and either may match (Vixie cron, croniter). */
	if (by_dom < 0 || (by_dow >= 0 && by_dow < by_dom))
		by_dom = by_dow;
	return by_dom < 0 ? 0 : by_dom;
}

/*
 * The first wall second in [lo, hi) that the expression matches, or NO_TIME. Works field by
 * field from the largest: a field that does not match moves to its next matching value
 * and resets the smaller fields, or carries into the larger one.
 */
static int64_t wall_next(const struct lk_cron *c, int64_t lo, int64_t hi)
{
	int64_t days = floor_div(lo, 86400);
	int sod = (int)(lo - days * 86400), y, mo, d, v;
	int h = sod / 3600, mi = sod / 60 % 60, s = sod % 60;

	lk_tz_civil_from_days(days, &y, &mo, &d);
	while (lk_tz_days_from_civil(y, mo, 1) * 86400 < hi) {
		if (!(c->month & (1u << mo))) {
			v = next_bit(c->month, mo + 1);
			y += v < 0;
			mo = v < 0 ? next_bit(c->month, 1) : v;
			if (mo < 0)
				return NO_TIME; /* no month at all: not a parsed expression */
			d = 1;
			h = mi = s = 0;
			continue;
		}
		v = next_day(c, y, mo, d);
		if (v == 0) {
			y += mo == 12;
			mo = mo % 12 + 1;
			d = 1;
			h = mi = s = 0;
			continue;
		}
		if (v != d) {
			d = v;
			h = mi = s = 0;
		}
		if ((v = next_bit(c->hour, h)) < 0) {
			d++;
			h = mi = s = 0;
			continue;
		}
		if (v != h) {
			h = v;
			mi = s = 0;
		}
		if ((v = next_bit(c->min, mi)) < 0) {
			h++;
			mi = s = 0;
			continue;
		}
		if (v != mi) {
			mi = v;
			s = 0;
		}
		if ((v = next_bit(c->sec, s)) < 0) {
			mi++;
			s = 0;
			continue;
		}
		days = lk_tz_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 +
		       (int64_t)mi * 60 + v;
		return days < hi ? days : NO_TIME;
	}
	return NO_TIME;
}

/*
 * Walks the periods of constant UTC offset from the first eligible second `a` on. In each,
 * the fires are the matching wall times mapped back with that period's offset, except:
 * entering a period that follows a gap, the gap's wall times fire once at its first
 * instant; in a period that follows an overlap, the wall times seen twice fire again only
 * when the expression matches every hour. An expression matching every hour treats a gap's
 * wall times as the nonexistent times they are.
 */
int64_t lk_cron_next(const struct lk_cron *c, const struct lk_tz *tz, int64_t after_ms)
{
	bool hourly = c->hour == ALL_HOURS;
	int64_t a, limit, max_s = floor_div(LK_CRON_MAX_MS, 1000);

	if (c->every_ms > 0)
		return after_ms > INT64_MAX - c->every_ms ? -1 : after_ms + c->every_ms;
	if (after_ms < LK_CRON_MIN_MS || after_ms >= LK_CRON_MAX_MS || !c->sec || !c->min ||
	    !c->hour || !(c->dom & ALL_DOM) || !(c->month & 0x1ffe) || !(c->dow & ALL_DOW))
		return -1;
	a = floor_div(after_ms, 1000) + 1;
	limit = a + (int64_t)LK_CRON_HORIZON_DAYS * 86400;
	if (limit > max_s + 1)
		limit = max_s + 1;
	while (a < limit) {
		struct lk_tz_period p;
		int64_t lo, end, w;

		lk_tz_period(tz, a, &p);
		if (p.start_s == a && p.off_s > p.prev_off_s && !hourly &&
		    wall_next(c, a + p.prev_off_s, a + p.off_s) != NO_TIME)
			return a * 1000;
		lo = a + p.off_s;
		if (!hourly && p.prev_off_s > p.off_s && lo < p.start_s + p.prev_off_s)
			lo = p.start_s + p.prev_off_s;
		end = p.end_s < limit ? p.end_s : limit;
		w = wall_next(c, lo, end + p.off_s);
		if (w != NO_TIME)
			return (w - p.off_s) * 1000;
		a = end;
	}
	return -1;
}

bool lk_cron_is_every(const struct lk_cron *c)
{
	return c->every_ms > 0;
}

int64_t lk_cron_every_ms(const struct lk_cron *c)
{
	return c->every_ms;
}
