/*
 * fuzz_cron.c - feeds the input as a cron expression to lk_cron_parse and, when it parses,
 * asks lk_cron_next (in UTC, so no zone file is read) for fires after a few fixed instants
 * (1970, a leap day, the ends of the supported range) and one derived from the input.
 * Checks, with abort() on a violation: a fire is strictly after its start and inside
 * LK_CRON_MIN_MS..LK_CRON_MAX_MS; asking again from a fire moves forward; a calendar fire
 * is on a whole second whose fields the expression accepts, and nothing fires between the
 * start and it (asking from a point in between gives the same fire); @every adds exactly
 * its interval.
 */
#include "core/err.h"
#include "sched/cron.h"
#include "sched/tz.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ALL_DOM (((UINT32_C(1) << 31) - 1) << 1)
#define ALL_DOW UINT8_C(0x7f)
#define DAY_MS 86400000LL

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Whether the UTC instant t_ms (a whole second) is one the expression accepts. */
static bool matches(const struct lk_cron *c, int64_t t_ms)
{
	int64_t s = t_ms / 1000, days = floor_div(s, 86400);
	int sod = (int)(s - days * 86400), y, m, d, wd = lk_tz_weekday(days);
	bool dom_ok, dow_ok, day_ok;

	lk_tz_civil_from_days(days, &y, &m, &d);
	dom_ok = (c->dom >> d) & 1;
	dow_ok = (c->dow >> wd) & 1;
	if (c->dom == ALL_DOM || c->dow == ALL_DOW)
		day_ok = dom_ok && dow_ok;
	else
		day_ok = dom_ok || dow_ok; /* both restricted: either (Vixie cron) */
	return day_ok && ((c->month >> m) & 1) && ((c->hour >> (sod / 3600)) & 1) &&
	       ((c->min >> (sod / 60 % 60)) & 1) && ((c->sec >> (sod % 60)) & 1);
}

static void check_from(const struct lk_cron *c, int64_t start)
{
	int64_t n1 = lk_cron_next(c, NULL, start), n2;

	if (n1 == -1)
		return;
	if (n1 <= start)
		abort();
	if (lk_cron_is_every(c)) {
		if (n1 != start + lk_cron_every_ms(c))
			abort();
		n2 = lk_cron_next(c, NULL, n1);
		if (n2 != -1 && n2 <= n1)
			abort();
		return;
	}
	if (n1 < LK_CRON_MIN_MS || n1 > LK_CRON_MAX_MS || n1 % 1000 != 0 || !matches(c, n1))
		abort();
	if (lk_cron_next(c, NULL, n1 - 1) != n1 ||
	    lk_cron_next(c, NULL, start + (n1 - start) / 2) != n1)
		abort();
	n2 = lk_cron_next(c, NULL, n1);
	if (n2 != -1 && (n2 <= n1 || !matches(c, n2)))
		abort();
	/* Every calendar expression that fires at all fires again within 8 years (Feb 29). */
	if (n2 == -1 && n1 < LK_CRON_MAX_MS - (int64_t)LK_CRON_HORIZON_DAYS * DAY_MS)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int64_t starts[] = {
		0,			      /* 1970-01-01T00:00:00Z */
		951782399999,		      /* just before 2000-02-29 */
		4107542399000,		      /* 2100-02-28T23:59:59Z: no leap day in 2100 */
		LK_CRON_MIN_MS,		      /* 0001-01-01 */
		LK_CRON_MAX_MS - 40 * DAY_MS, /* the last weeks of 9999 */
		-1,
	};
	char expr[300];
	struct lk_cron c;
	struct lk_err err = LK_ERR_INIT;
	uint64_t h = 1469598103934665603ULL; /* FNV-1a: a start that depends on the input */

	if (size >= sizeof(expr))
		return 0; /* longer than the parser's cap anyway (256) */
	memcpy(expr, data, size);
	expr[size] = '\0';
	if (lk_cron_parse(expr, &c, &err) < 0)
		return 0;
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 1099511628211ULL;
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
		check_from(&c, starts[i]);
	check_from(&c, LK_CRON_MIN_MS + (int64_t)(h % (uint64_t)(LK_CRON_MAX_MS - LK_CRON_MIN_MS)));
	return 0;
}
