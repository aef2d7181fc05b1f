/* units.c - parsing durations, sizes and timestamps; clocks. */
#include "units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int lk_int64_parse(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int lk_duration_parse(const char *s, int64_t *out_ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000LL}, {"d", 86400000LL}};
	int64_t total = 0;
	bool any = false;

	if (!s || !*s)
		return -1;
	while (*s) {
		char *end;
		long long v;
		size_t i, n;

		if (!isdigit((unsigned char)*s))
			return -1;
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno || v < 0 || end == s)
			return -1;
		s = end;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			n = strlen(units[i].unit);
			if (strncmp(s, units[i].unit, n) == 0 && !isalpha((unsigned char)s[n]))
				break;
		}
		if (i == sizeof(units) / sizeof(units[0]))
			return -1;
		if (v > INT64_MAX / units[i].ms || total > INT64_MAX - v * units[i].ms)
			return -1;
		total += v * units[i].ms;
		s += strlen(units[i].unit);
		any = true;
	}
	if (!any)
		return -1;
	*out_ms = total;
	return 0;
}

int lk_size_parse(const char *s, int64_t *out_bytes)
{
	static const struct {
		const char *unit;
		int64_t mult;
	} units[] = {{"KiB", 1024LL},
		     {"MiB", 1048576LL},
		     {"GiB", 1073741824LL},
		     {"KB", 1000LL},
		     {"MB", 1000000LL},
		     {"GB", 1000000000LL},
		     {"B", 1},
		     {"", 1}};
	char *end;
	long long v;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			if (v > INT64_MAX / units[i].mult)
				return -1;
			*out_bytes = v * units[i].mult;
			return 0;
		}
	}
	return -1;
}

/* Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	*y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y += *m <= 2;
}

struct ts_parts {
	int64_t us;	 /* microseconds since epoch, UTC */
	char sep;	 /* ' ' or 'T' */
	int frac_digits; /* digits printed after the point, 0 = none */
	int zone;	 /* 0 none, 1 "+00"-style, 2 "Z", 3 "+00:00"-style */
};

/* Days in month m (1-12) of year y, Gregorian. */
static int month_days(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/* The value of exactly n decimal digits at s (no sign, no blanks), or -1. */
static int fixed_digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int ts_parse_parts(const char *s, struct ts_parts *p)
{
	int Y, M, D, h, mi, sec;
	int64_t frac = 0, off_s = 0;

	Y = fixed_digits(s, 4);
	M = Y < 0 || s[4] != '-' ? -1 : fixed_digits(s + 5, 2);
	D = M < 0 || s[7] != '-' ? -1 : fixed_digits(s + 8, 2);
	if (D < 0)
		return -1;
	s += 10;
	p->sep = ' ';
	p->frac_digits = 0;
	p->zone = 0;
	if (*s == ' ' || *s == 'T') {
		p->sep = *s;
		h = fixed_digits(s + 1, 2);
		mi = h < 0 || s[3] != ':' ? -1 : fixed_digits(s + 4, 2);
		sec = mi < 0 || s[6] != ':' ? -1 : fixed_digits(s + 7, 2);
		if (sec < 0)
			return -1;
		s += 9;
	} else if (*s == '\0') {
		h = mi = sec = 0;
		p->sep = '\0';
	} else {
		return -1;
	}
	if (*s == '.') {
		int digits = 0;

		s++;
		while (isdigit((unsigned char)*s)) {
			if (digits < 6)
				frac = frac * 10 + (*s - '0');
			digits++;
			s++;
		}
		if (!digits)
			return -1;
		p->frac_digits = digits > 6 ? 6 : digits;
		for (int i = digits; i < 6; i++)
			frac *= 10;
	}
	if (*s == 'Z') {
		p->zone = 2;
		s++;
	} else if (*s == '+' || *s == '-') {
		int sign = *s == '-' ? -1 : 1, oh = 0, om = 0;

		if (!isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]))
			return -1;
		oh = (s[1] - '0') * 10 + (s[2] - '0');
		s += 3;
		p->zone = 1;
		if (*s == ':' && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2])) {
			om = (s[1] - '0') * 10 + (s[2] - '0');
			s += 3;
			p->zone = 3;
		}
		off_s = (int64_t)sign * (oh * 3600 + om * 60);
	}
	if (*s)
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > month_days(Y, M) || h > 24 || mi > 59 || sec > 60)
		return -1;
	p->us = ((days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + (int64_t)h * 3600 +
		  (int64_t)mi * 60 + sec - off_s) *
		 1000000) +
		frac;
	return 0;
}

int lk_ts_parse(const char *s, int64_t *out_us)
{
	struct ts_parts p;

	if (ts_parse_parts(s, &p) < 0)
		return -1;
	*out_us = p.us;
	return 0;
}

int lk_ts_shift(const char *s, int64_t delta_us, char *out, unsigned out_size)
{
	struct ts_parts p;
	int64_t us, secs, days, y;
	unsigned m, d;
	int rem, frac, n;
	const char *zone[] = {"", "+00", "Z", "+00:00"};

	if (ts_parse_parts(s, &p) < 0)
		return -1;
	us = p.us + delta_us;
	secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
	frac = (int)(us - secs * 1000000);
	days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	rem = (int)(secs - days * 86400);
	civil_from_days(days, &y, &m, &d);
	if (p.sep == '\0') {
		n = snprintf(out, out_size, "%04lld-%02u-%02u", (long long)y, m, d);
	} else if (p.frac_digits || frac) {
		/* As many fraction digits as s had, or more when the shift needs them. */
		int digits = p.frac_digits ? p.frac_digits : 1, scale = 1;

		for (int i = digits; i < 6; i++)
			scale *= 10;
		while (frac % scale != 0) {
			digits++;
			scale /= 10;
		}
		n = snprintf(out, out_size, "%04lld-%02u-%02u%c%02d:%02d:%02d.%0*d%s", (long long)y,
			     m, d, p.sep, rem / 3600, rem / 60 % 60, rem % 60, digits, frac / scale,
			     zone[p.zone]);
	} else {
		n = snprintf(out, out_size, "%04lld-%02u-%02u%c%02d:%02d:%02d%s", (long long)y, m,
			     d, p.sep, rem / 3600, rem / 60 % 60, rem % 60, zone[p.zone]);
	}
	return (n < 0 || (unsigned)n >= out_size) ? -1 : 0;
}

int64_t lk_mono_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t lk_boot_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool lk_every_due(struct lk_every *t, int64_t now_ms, int64_t interval_ms)
{
	if (t->armed && now_ms - t->last_ms < interval_ms)
		return false;
	t->armed = true;
	t->last_ms = now_ms;
	return true;
}

void lk_every_reset(struct lk_every *t)
{
	t->armed = false;
}

int64_t lk_wall_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void lk_wall_format(int64_t wall_ms, char *out, unsigned out_size)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	(void)gmtime_r(&t, &tm);
	(void)snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		       (int)(wall_ms % 1000));
}

void lk_sleep_ms(int64_t ms, volatile const bool *stop)
{
	int64_t until = lk_mono_ms() + ms;

	while (!lk_flag(stop)) {
		int64_t left = until - lk_mono_ms();
		struct timespec ts;

		if (left <= 0)
			return;
		if (left > 100)
			left = 100; /* wake often enough to honour *stop */
		ts.tv_sec = (time_t)(left / 1000);
		ts.tv_nsec = (long)(left % 1000) * 1000000L;
		(void)nanosleep(&ts, NULL);
	}
}
