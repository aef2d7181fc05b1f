/*
 * tz.h - named time zones read from TZif files (RFC 8536), without touching TZ or tzset.
 *
 * A zone is loaded once (lk_tz_load), is immutable afterwards and may be read from any
 * number of threads at once. NULL stands for UTC in every function that takes a zone.
 * Instants are Unix seconds (UTC); "wall" seconds are a local date and time counted as if
 * it were UTC (days since 1970-01-01 * 86400 + seconds of the day), so calendar arithmetic
 * on them needs no zone. The explicit transitions of the file are used up to the last one;
 * after it, the POSIX TZ string of the footer (e.g. "CET-1CEST,M3.5.0,M10.5.0/3") gives the
 * rule, so any year up to 9999 is answered. Instants (and wall times) beyond about
 * +-12,000 years from 1970 are answered as at that bound.
 */
#ifndef LK_TZ_H
#define LK_TZ_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct lk_tz;

/* Where lk_tz_load looks for zone files. */
#define LK_TZ_DIR "/usr/share/zoneinfo"

/* Longest zone name kept (and accepted by lk_tz_load). */
#define LK_TZ_NAME_MAX 64

/* A longest stretch of time with one UTC offset: [start_s, end_s) (a transition that keeps
 * the offset, e.g. a new abbreviation, is no boundary). start_s is INT64_MIN before the
 * first transition, end_s is INT64_MAX after the last. prev_off_s is the offset in force
 * just before start_s (equal to off_s when start_s is INT64_MIN). A period that follows a
 * gap (spring forward) has prev_off_s < off_s; one that follows an overlap (fall back) has
 * prev_off_s > off_s. */
struct lk_tz_period {
	int64_t start_s;
	int64_t end_s;
	int32_t off_s; /* local = UTC + off_s */
	int32_t prev_off_s;
};

/*
 * Loads the zone `name` ("Europe/Berlin", "UTC") from LK_TZ_DIR. The name must be relative,
 * of letters, digits and "/_+-.", with no component starting with ".". Returns a zone to release
 * with lk_tz_free, or NULL with err set: LK_ERR_CONFIG for a bad or unknown name or a file
 * that is not a usable TZif (version 1 only, leap seconds, a bad footer), LK_ERR_IO when the
 * file cannot be read, LK_ERR_NOMEM. Any thread; blocking file I/O.
 */
struct lk_tz *lk_tz_load(const char *name, struct lk_err *err);

/*
 * Parses the TZif bytes data[0..len) (version 2 or later) as zone `name` (kept for
 * lk_tz_name and messages; truncated to LK_TZ_NAME_MAX - 1 bytes). Does not keep `data`.
 * Returns the zone or NULL with err set (LK_ERR_CONFIG for malformed data, LK_ERR_NOMEM).
 */
struct lk_tz *lk_tz_parse(const char *name, const void *data, size_t len, struct lk_err *err);

/* Releases a zone; lk_tz_free(NULL) is a no-op. */
void lk_tz_free(struct lk_tz *tz);

/* The zone's name; "UTC" for NULL. Valid until lk_tz_free. */
const char *lk_tz_name(const struct lk_tz *tz);

/* The UTC offset in seconds (local = UTC + offset) in force at instant t_s. */
int32_t lk_tz_offset(const struct lk_tz *tz, int64_t t_s);

/* Fills *out with the period of constant offset that contains instant t_s. */
void lk_tz_period(const struct lk_tz *tz, int64_t t_s, struct lk_tz_period *out);

/*
 * The instants at which the local clock shows wall_s: writes them ascending into out and
 * returns how many there are: 1 normally, 0 when wall_s falls in a gap (spring forward),
 * 2 when it falls in an overlap (fall back; out[0] is the earlier, summer-time one).
 */
int lk_tz_local_to_utc(const struct lk_tz *tz, int64_t wall_s, int64_t out[2]);

/* Proleptic Gregorian calendar helpers (pure, any thread). Days count from 1970-01-01;
 * month is 1-12, day 1-31; valid for any year that fits in an int. */
int64_t lk_tz_days_from_civil(int year, int month, int day);
void lk_tz_civil_from_days(int64_t days, int *year, int *month, int *day);
int lk_tz_days_in_month(int year, int month);
/* Day of the week of a day number: 0 = Sunday ... 6 = Saturday. */
int lk_tz_weekday(int64_t days);

#endif
