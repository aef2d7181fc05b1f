/*
 * cron.h - cron expressions: parsing into a small plain struct, and the next fire time in
 * a named time zone. docs/cron.md is the user-facing page (syntax, DST rules).
 *
 * Syntax: six fields "sec min hour day-of-month month day-of-week", five fields (seconds
 * = 0), "@every DURATION", or @hourly, @daily, @midnight, @weekly, @monthly, @yearly,
 * @annually. A field is a list of items "a", "a-b", "*" (also "?" in the day fields), each
 * optionally followed by "/step" ("a/n" means a-max/n); months and weekdays take JAN-DEC and
 * SUN-SAT; 0 and 7 are both Sunday. When both day fields are restricted (neither lists
 * every value) a day matches if either does (Vixie cron, croniter).
 *
 * Everything here is pure: no allocation, no globals, callable from any thread.
 */
#ifndef LK_CRON_H
#define LK_CRON_H

#include "core/err.h"
#include "sched/tz.h"

#include <stdbool.h>
#include <stdint.h>

/* lk_cron_next looks this far ahead; no fire within it means the expression never fires
 * (the rarest schedule that can fire, Feb 29, may wait 8 years: 2096 to 2104). */
#define LK_CRON_HORIZON_DAYS (10 * 366)

/* Supported instants: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z. */
#define LK_CRON_MIN_MS (-62135596800000LL)
#define LK_CRON_MAX_MS (253402300800000LL - 1)

/*
 * A parsed expression, stored by value by the caller. For a calendar expression
 * every_ms is 0 and bit i of a mask stands for the value i (dow: 0 = Sunday ... 6; 7 is
 * folded into 0). For @every, every_ms > 0 and the masks are 0.
 */
struct lk_cron {
	uint64_t sec;	  /* bits 0-59 */
	uint64_t min;	  /* bits 0-59 */
	uint32_t hour;	  /* bits 0-23 */
	uint32_t dom;	  /* bits 1-31 */
	uint16_t month;	  /* bits 1-12 */
	uint8_t dow;	  /* bits 0-6 */
	int64_t every_ms; /* @every interval, 0 for calendar expressions */
};

/*
 * Parses expr into *out. Returns 0, or -1 with err set to LK_ERR_CONFIG and a message
 * naming the field and what was expected, e.g. "field 'hour' (3rd): expected 0-23, found
 * 24". The extensions L, W, # and H are refused by name. @every takes a duration of
 * lk_duration_parse ("90s", "1h30m") of at least 1s. *out is untouched on failure.
 */
int lk_cron_parse(const char *expr, struct lk_cron *out, struct lk_err *err);

/*
 * The first fire instant strictly after after_ms (Unix ms, UTC), in ms, in zone tz (NULL:
 * UTC). Returns -1 when there is none within LK_CRON_HORIZON_DAYS (e.g. "0 0 30 2 *"),
 * when after_ms or the fire lies outside LK_CRON_MIN_MS..LK_CRON_MAX_MS, or for a struct
 * that no parse filled (all zero). Pure and thread-safe; a few microseconds per call (the
 * search jumps field by field and period by period, never minute by minute).
 *
 * Calendar expressions fire at whole seconds of local wall time, with these DST rules
 * (docs/cron.md): a wall time in a gap (spring forward) fires once, at the first instant
 * after the gap, unless the expression matches every hour (its hour field lists all 24
 * hours: "*", "0-23"), which just skips it; a wall time in an overlap (fall back) fires at its
 * first occurrence only, unless the expression matches every hour, which fires at both.
 *
 * @every: returns after_ms + every_ms, i.e. the anchor is after_ms. The caller passes the
 * previous fire time (or the start time for the first fire), so fires keep a fixed
 * interval; tz is unused. Overflow returns -1.
 */
int64_t lk_cron_next(const struct lk_cron *c, const struct lk_tz *tz, int64_t after_ms);

/* True for an "@every DURATION" schedule. */
bool lk_cron_is_every(const struct lk_cron *c);

/* The @every interval in ms, or 0 for a calendar expression (whose interval the caller
 * measures as next(next(t)) - next(t)). */
int64_t lk_cron_every_ms(const struct lk_cron *c);

#endif
