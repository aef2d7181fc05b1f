/*
 * tz.c - TZif (RFC 8536) zones: the explicit transitions of the 64-bit block, the POSIX TZ
 * footer rule after them, and the mapping between instants and local wall time.
 */
#include "tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Zone files are a few KiB; anything this large is not one. */
#define TZ_FILE_MAX (1 << 20)
/* UTC offsets beyond this are refused (RFC 8536 allows -25h59m59s to +25h59m59s). */
#define TZ_OFF_MAX 93600 /* 26 h */

enum rule_kind { RULE_JULIAN, RULE_ZERO, RULE_MONTH };

/* One date of a POSIX TZ rule: "Jn" (1-365, never Feb 29), "n" (0-365) or "Mm.w.d". */
struct tz_rule {
	enum rule_kind kind;
	int day;	/* Jn, n: the day number; Mm.w.d: the weekday d, 0 = Sunday */
	int week;	/* Mm.w.d: 1-5, 5 = the last one in the month */
	int month;	/* Mm.w.d: 1-12 */
	int32_t time_s; /* local time of day of the change, may be negative or past 24h */
};

struct tz_trans {
	int64_t at_s;
	int32_t off_s; /* the offset from at_s on */
};

/* What holds after the last explicit transition. */
enum tz_tail { TAIL_LAST, TAIL_FIXED, TAIL_RULE };

struct lk_tz {
	char name[LK_TZ_NAME_MAX];
	int32_t off0_s; /* before the first transition: local time type 0 */
	size_t ntrans;
	struct tz_trans *trans; /* ascending at_s */
	enum tz_tail tail;
	int32_t std_off_s;	   /* TAIL_FIXED, TAIL_RULE */
	int32_t dst_off_s;	   /* TAIL_RULE */
	struct tz_rule start, end; /* DST starts (given in standard time), ends (given in DST) */
};

/* Instants are clamped to +-LK_TZ_SPAN_S (about 12,000 years) so that year numbers fit. */
#define LK_TZ_SPAN_S 400000000000LL

static int64_t clamp_s(int64_t t)
{
	if (t > LK_TZ_SPAN_S)
		return LK_TZ_SPAN_S;
	if (t < -LK_TZ_SPAN_S)
		return -LK_TZ_SPAN_S;
	return t;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Howard Hinnant's days_from_civil. */
int64_t lk_tz_days_from_civil(int year, int month, int day)
{
	int64_t y = (int64_t)year - (month <= 2);
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t mp = (month + 9) % 12;
	int64_t doy = (153 * mp + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

/* Howard Hinnant's civil_from_days. */
void lk_tz_civil_from_days(int64_t days, int *year, int *month, int *day)
{
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;

	*day = (int)(doy - (153 * mp + 2) / 5 + 1);
	*month = (int)(mp < 10 ? mp + 3 : mp - 9);
	*year = (int)(yoe + era * 400 + (*month <= 2));
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int lk_tz_days_in_month(int year, int month)
{
	static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return month == 2 && is_leap(year) ? 29 : dim[month - 1];
}

int lk_tz_weekday(int64_t days)
{
	return (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday (4) */
}

/* ---- the POSIX TZ footer ---- */

/* A zone abbreviation: "<+1030>" or three or more letters. */
static bool posix_name(const char **s)
{
	const char *p = *s;

	if (*p == '<') {
		while (*++p && *p != '>')
			if (!(*p == '+' || *p == '-' || (*p >= '0' && *p <= '9') ||
			      (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
				return false;
		if (*p != '>' || p - *s < 4)
			return false;
		*s = p + 1;
		return true;
	}
	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
		p++;
	if (p - *s < 3)
		return false;
	*s = p;
	return true;
}

/* Reads up to `max` decimal digits into *out; false when there are none. */
static bool posix_num(const char **s, int max, int *out)
{
	int v = 0, n = 0;

	while (n < max && **s >= '0' && **s <= '9') {
		v = v * 10 + (**s - '0');
		(*s)++;
		n++;
	}
	*out = v;
	return n > 0;
}

/* "[+-]hh[:mm[:ss]]" with hours up to max_h; the value in seconds, signed as written. */
static bool posix_time(const char **s, int max_h, int32_t *out)
{
	int sign = 1, h, m = 0, sec = 0;

	if (**s == '+' || **s == '-')
		sign = *(*s)++ == '-' ? -1 : 1;
	if (!posix_num(s, 3, &h) || h > max_h)
		return false;
	if (**s == ':') {
		(*s)++;
		if (!posix_num(s, 2, &m) || m > 59)
			return false;
		if (**s == ':') {
			(*s)++;
			if (!posix_num(s, 2, &sec) || sec > 59)
				return false;
		}
	}
	*out = sign * (h * 3600 + m * 60 + sec);
	return true;
}

/* ",date[/time]" */
static bool posix_rule(const char **s, struct tz_rule *r)
{
	bool ok;

	if (**s != ',')
		return false;
	(*s)++;
	memset(r, 0, sizeof(*r));
	if (**s == 'M') {
		(*s)++;
		r->kind = RULE_MONTH;
		ok = posix_num(s, 2, &r->month) && r->month >= 1 && r->month <= 12 &&
		     *(*s)++ == '.' && posix_num(s, 1, &r->week) && r->week >= 1 && r->week <= 5 &&
		     *(*s)++ == '.' && posix_num(s, 1, &r->day) && r->day <= 6;
	} else if (**s == 'J') {
		(*s)++;
		r->kind = RULE_JULIAN;
		ok = posix_num(s, 3, &r->day) && r->day >= 1 && r->day <= 365;
	} else {
		r->kind = RULE_ZERO;
		ok = posix_num(s, 3, &r->day) && r->day <= 365;
	}
	if (!ok)
		return false;
	r->time_s = 2 * 3600;
	if (**s == '/') {
		(*s)++;
		return posix_time(s, 167, &r->time_s);
	}
	return true;
}

/* Parses the footer string (without its newlines) into the zone's tail. */
static bool posix_parse(struct lk_tz *tz, const char *s)
{
	int32_t t;

	tz->tail = TAIL_LAST;
	if (!*s)
		return true;
	if (!posix_name(&s) || !posix_time(&s, 24, &t))
		return false;
	tz->std_off_s = -t;
	tz->tail = TAIL_FIXED;
	if (!*s)
		return true;
	if (!posix_name(&s))
		return false;
	tz->dst_off_s = tz->std_off_s + 3600;
	if (*s != ',') {
		if (!posix_time(&s, 24, &t))
			return false;
		tz->dst_off_s = -t;
	}
	if (!posix_rule(&s, &tz->start) || !posix_rule(&s, &tz->end) || *s)
		return false;
	tz->tail = TAIL_RULE;
	return tz->std_off_s > -TZ_OFF_MAX && tz->std_off_s < TZ_OFF_MAX &&
	       tz->dst_off_s > -TZ_OFF_MAX && tz->dst_off_s < TZ_OFF_MAX;
}

/* The day (since 1970-01-01) a rule date falls on in `year`. */
static int64_t rule_day(int year, const struct tz_rule *r)
{
	int64_t first;
	int dim;

	switch (r->kind) {
	case RULE_JULIAN:
		return lk_tz_days_from_civil(year, 1, 1) + r->day - 1 +
		       (is_leap(year) && r->day >= 60);
	case RULE_ZERO:
		return lk_tz_days_from_civil(year, 1, 1) + r->day;
	case RULE_MONTH:
		break;
	}
	first = lk_tz_days_from_civil(year, r->month, 1);
	dim = lk_tz_days_in_month(year, r->month);
	first += (r->day - lk_tz_weekday(first) + 7) % 7 + (int64_t)(r->week - 1) * 7;
	while (first >= lk_tz_days_from_civil(year, r->month, 1) + dim)
		first -= 7;
	return first;
}

/*
 * The rule's transitions around t: the latest at or before t (*prev_s, and whether it
 * starts DST) and the first after t (*next_s). Looks at the year of t and its neighbours,
 * which always hold both, since each year has one start and one end.
 */
static void rule_around(const struct lk_tz *tz, int64_t t, int64_t *prev_s, bool *prev_dst,
			int64_t *next_s)
{
	int y, m, d;

	*prev_s = INT64_MIN;
	*prev_dst = false;
	*next_s = INT64_MAX;
	lk_tz_civil_from_days(floor_div(t + tz->std_off_s, 86400), &y, &m, &d);
	for (int yy = y - 1; yy <= y + 1; yy++) {
		int64_t at[2] = {rule_day(yy, &tz->start) * 86400 + tz->start.time_s -
					 tz->std_off_s,
				 rule_day(yy, &tz->end) * 86400 + tz->end.time_s - tz->dst_off_s};

		for (int k = 0; k < 2; k++) {
			/* On a tie (DST all year: an end and the next start at once) DST wins. */
			if (at[k] <= t && (at[k] > *prev_s || (at[k] == *prev_s && k == 0))) {
				*prev_s = at[k];
				*prev_dst = k == 0;
			}
			if (at[k] > t && at[k] < *next_s)
				*next_s = at[k];
		}
	}
}

/* ---- lookups ---- */

/* The period containing t, without prev_off_s. */
static void period_at(const struct lk_tz *tz, int64_t t, struct lk_tz_period *p)
{
	size_t n = tz ? tz->ntrans : 0, lo, hi;

	p->start_s = INT64_MIN;
	p->end_s = INT64_MAX;
	p->off_s = 0;
	if (!tz)
		return;
	t = clamp_s(t);
	if (n == 0 || t >= tz->trans[n - 1].at_s) {
		if (n > 0)
			p->start_s = tz->trans[n - 1].at_s;
		p->off_s = n > 0 ? tz->trans[n - 1].off_s : tz->off0_s;
		if (tz->tail == TAIL_FIXED)
			p->off_s = tz->std_off_s;
		if (tz->tail == TAIL_RULE) {
			int64_t prev, next;
			bool dst;

			rule_around(tz, t, &prev, &dst, &next);
			if (prev > p->start_s)
				p->start_s = prev;
			p->end_s = next;
			p->off_s = dst ? tz->dst_off_s : tz->std_off_s;
		}
		return;
	}
	if (t < tz->trans[0].at_s) {
		p->end_s = tz->trans[0].at_s;
		p->off_s = tz->off0_s;
		return;
	}
	lo = 0; /* invariant: trans[lo].at_s <= t < trans[hi].at_s */
	hi = n - 1;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (tz->trans[mid].at_s <= t)
			lo = mid;
		else
			hi = mid;
	}
	p->start_s = tz->trans[lo].at_s;
	p->end_s = tz->trans[hi].at_s;
	p->off_s = tz->trans[lo].off_s;
}

int32_t lk_tz_offset(const struct lk_tz *tz, int64_t t_s)
{
	struct lk_tz_period p;

	period_at(tz, t_s, &p);
	return p.off_s;
}

/* Transitions that keep the offset (a new abbreviation, the end of the explicit data of a
 * "fat" file) are no boundaries: the period grows over them. The loops stop at the ends
 * of time, and when clamping makes the neighbour the same period. */
void lk_tz_period(const struct lk_tz *tz, int64_t t_s, struct lk_tz_period *out)
{
	struct lk_tz_period q;

	period_at(tz, t_s, out);
	while (out->end_s != INT64_MAX) {
		period_at(tz, out->end_s, &q);
		if (q.off_s != out->off_s || q.end_s <= out->end_s)
			break;
		out->end_s = q.end_s;
	}
	out->prev_off_s = out->off_s;
	while (out->start_s != INT64_MIN) {
		period_at(tz, out->start_s - 1, &q);
		out->prev_off_s = q.off_s;
		if (q.off_s != out->off_s || q.start_s >= out->start_s)
			break;
		out->start_s = q.start_s;
	}
}

int lk_tz_local_to_utc(const struct lk_tz *tz, int64_t wall_s, int64_t out[2])
{
	struct lk_tz_period p;
	int n = 0;

	/* Any instant showing wall_s lies within TZ_OFF_MAX of it. Walking the periods of
	 * that window forward, the matching instants come in ascending order. */
	wall_s = clamp_s(wall_s);
	period_at(tz, wall_s - TZ_OFF_MAX, &p);
	for (;;) {
		int64_t t = wall_s - p.off_s, end = p.end_s;

		if (t >= p.start_s && t < p.end_s && n < 2)
			out[n++] = t;
		if (end == INT64_MAX || end > wall_s + TZ_OFF_MAX)
			break;
		period_at(tz, end, &p);
		if (p.end_s <= end)
			break; /* clamped at the end of time */
	}
	return n;
}

/* ---- loading ---- */

struct tzif_hdr {
	char version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Reads a 44-byte header at p; returns the length of the data block that follows it (with
 * `timesize`-byte times), or 0 when the header is malformed or the block exceeds `left`. */
static size_t tzif_header(const unsigned char *p, size_t left, int timesize, struct tzif_hdr *h)
{
	size_t blk;

	if (left < 44 || memcmp(p, "TZif", 4) != 0)
		return 0;
	h->version = (char)p[4];
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	if (h->typecnt == 0 || h->typecnt > 256 || (h->isutcnt && h->isutcnt != h->typecnt) ||
	    (h->isstdcnt && h->isstdcnt != h->typecnt))
		return 0;
	blk = (size_t)h->timecnt * ((size_t)timesize + 1) + (size_t)h->typecnt * 6 + h->charcnt +
	      (size_t)h->leapcnt * ((size_t)timesize + 4) + h->isstdcnt + h->isutcnt;
	return blk <= left - 44 ? blk : 0;
}

static const char tz_oom[] = "out of memory";

static struct lk_tz *tz_fail(struct lk_tz *tz, struct lk_err *err, const char *name,
			     const char *what)
{
	lk_tz_free(tz);
	if (what == tz_oom)
		lk_err_set(err, LK_ERR_NOMEM, "%s", tz_oom);
	else
		lk_err_set(err, LK_ERR_CONFIG, "time zone '%s': %s", name, what);
	return NULL;
}

/* Reads the transitions and types of the 64-bit block at q (header h). */
static const char *tzif_block(struct lk_tz *tz, const unsigned char *q, const struct tzif_hdr *h)
{
	const unsigned char *idx = q + (size_t)h->timecnt * 8;
	const unsigned char *types = idx + h->timecnt;
	int32_t off[256] = {0}; /* typecnt >= 1 (tzif_header) */

	for (size_t i = 0; i < h->typecnt; i++) {
		off[i] = (int32_t)be32(types + 6 * i);
		if (off[i] <= -TZ_OFF_MAX || off[i] >= TZ_OFF_MAX || types[6 * i + 5] >= h->charcnt)
			return "malformed local time type";
	}
	tz->off0_s = off[0];
	if (h->timecnt == 0)
		return NULL;
	tz->trans = malloc((size_t)h->timecnt * sizeof(*tz->trans));
	if (!tz->trans)
		return tz_oom;
	for (uint32_t i = 0; i < h->timecnt; i++) {
		int64_t at = be64(q + 8 * (size_t)i);

		if ((i > 0 && at <= tz->trans[i - 1].at_s) || idx[i] >= h->typecnt)
			return "malformed transitions";
		tz->trans[i].at_s = at;
		tz->trans[i].off_s = off[idx[i]];
	}
	tz->ntrans = h->timecnt;
	return NULL;
}

/* The footer "\nTZ string\n" at f (left bytes). */
static const char *tzif_footer(struct lk_tz *tz, const unsigned char *f, size_t left)
{
	char s[128];
	size_t n = 0;

	if (left < 2 || f[0] != '\n')
		return "missing footer";
	while (1 + n < left && f[1 + n] != '\n' && n < sizeof(s) - 1) {
		s[n] = (char)f[1 + n];
		n++;
	}
	if (1 + n >= left || f[1 + n] != '\n')
		return "malformed footer";
	s[n] = '\0';
	return posix_parse(tz, s) ? NULL : "unsupported footer TZ string";
}

struct lk_tz *lk_tz_parse(const char *name, const void *data, size_t len, struct lk_err *err)
{
	const unsigned char *p = data;
	struct tzif_hdr h1, h2;
	struct lk_tz *tz;
	size_t b1, b2;
	const char *bad;

	b1 = tzif_header(p, len, 4, &h1);
	if (!b1)
		return tz_fail(NULL, err, name, "not a TZif file");
	if (h1.version < '2')
		return tz_fail(NULL, err, name, "TZif version 1 is not supported");
	b2 = tzif_header(p + 44 + b1, len - 44 - b1, 8, &h2);
	if (!b2)
		return tz_fail(NULL, err, name, "truncated or malformed 64-bit data");
	if (h2.leapcnt)
		return tz_fail(NULL, err, name, "zones with leap seconds are not supported");
	tz = calloc(1, sizeof(*tz));
	if (!tz)
		return tz_fail(NULL, err, name, tz_oom);
	(void)snprintf(tz->name, sizeof(tz->name), "%s", name);
	bad = tzif_block(tz, p + 88 + b1, &h2);
	if (!bad)
		bad = tzif_footer(tz, p + 88 + b1 + b2, len - 88 - b1 - b2);
	if (bad)
		return tz_fail(tz, err, name, bad);
	return tz;
}

/* A zone name: relative, no "." or ".." component, letters, digits and "/_+-" only. */
static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= LK_TZ_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
		return false;
	for (const char *c = name; *c; c++) {
		bool alnum = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
			     (*c >= '0' && *c <= '9');

		if (!alnum && !strchr("/_+-.", *c))
			return false;
		if (*c == '.' && (c == name || c[-1] == '/'))
			return false; /* ".", "..", hidden files */
		if (*c == '/' && c[1] == '/')
			return false;
	}
	return true;
}

/* Reads the whole file at path (at most TZ_FILE_MAX bytes) into a malloc'ed buffer. */
static int read_all(const char *path, const char *name, unsigned char **buf, size_t *len,
		    struct lk_err *err)
{
	struct stat st;
	ssize_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
		return lk_err_set(err, LK_ERR_CONFIG, "unknown time zone '%s' (no file %s)", name,
				  path);
	if (fd < 0)
		return lk_err_set(err, LK_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > TZ_FILE_MAX) {
		(void)close(fd);
		return lk_err_set(err, LK_ERR_CONFIG, "time zone '%s': %s is not a zone file", name,
				  path);
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (*buf)
		got = read(fd, *buf, (size_t)st.st_size);
	(void)close(fd);
	if (!*buf)
		return lk_err_set(err, LK_ERR_NOMEM, "out of memory");
	if (got != st.st_size) {
		free(*buf);
		*buf = NULL;
		return lk_err_set(err, LK_ERR_IO, "cannot read '%s'", path);
	}
	*len = (size_t)got;
	return 0;
}

struct lk_tz *lk_tz_load(const char *name, struct lk_err *err)
{
	char path[sizeof(LK_TZ_DIR) + LK_TZ_NAME_MAX + 1];
	unsigned char *buf = NULL;
	struct lk_tz *tz;
	size_t len = 0;

	if (!name || !name_ok(name))
		return tz_fail(NULL, err, name ? name : "(null)",
			       "expected a zone name such as Europe/Berlin");
	(void)snprintf(path, sizeof(path), "%s/%s", LK_TZ_DIR, name);
	if (read_all(path, name, &buf, &len, err) < 0)
		return NULL;
	tz = lk_tz_parse(name, buf, len, err);
	free(buf);
	return tz;
}

void lk_tz_free(struct lk_tz *tz)
{
	if (!tz)
		return;
	free(tz->trans);
	free(tz);
}

const char *lk_tz_name(const struct lk_tz *tz)
{
	return tz ? tz->name : "UTC";
}
