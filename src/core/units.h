/*
 * units.h - durations, sizes, timestamps and clocks.
 */
#ifndef LK_UNITS_H
#define LK_UNITS_H

#include <stdbool.h>
#include <stdint.h>

/* Parses "500ms", "30s", "5m", "2h", "1d" (also combined: "1h30m") into milliseconds.
 * Returns 0, or -1 when the text is not a positive duration. A bare number is refused:
 * a unit is required so "30" cannot mean seconds to one reader and minutes to another. */
int lk_duration_parse(const char *s, int64_t *out_ms);

/* Parses "512", "64KiB", "64MiB", "1GiB", "10MB" into bytes. Returns 0 or -1. */
int lk_size_parse(const char *s, int64_t *out_bytes);

/* Parses a decimal int64 with full-string and range checks. Returns 0 or -1. */
int lk_int64_parse(const char *s, int64_t *out);

/*
 * Timestamps in the ISO shape PostgreSQL prints with DateStyle=ISO:
 * "YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]" (a 'T' separator and a 'Z' are accepted too).
 * lk_ts_parse returns microseconds since the epoch (UTC, offset applied) and tells the
 * suffix shape so lk_ts_shift can print the result in the same shape.
 */
int lk_ts_parse(const char *s, int64_t *out_us);

/* Writes s shifted by delta_us into out (size >= 40), in the same shape as s (same separator,
 * same zone suffix, at UTC when s had one). Returns 0, or -1 when s is not a timestamp. */
int lk_ts_shift(const char *s, int64_t delta_us, char *out, unsigned out_size);

/* Monotonic and wall clocks. */
int64_t lk_mono_ms(void);
/* CLOCK_BOOTTIME: like lk_mono_ms, but it also counts time suspended (a paused VM). */
int64_t lk_boot_ms(void);
int64_t lk_wall_ms(void);

/*
 * An interval timer on a monotonic clock: due at its first check, then each time
 * interval_ms has passed since it was last due. CLOCK_MONOTONIC counts from the machine's
 * boot, so a timer kept as "last = 0" would wait out its first interval on a machine that
 * booted less than an interval ago (a daemon's hourly duty would not run at start during
 * the first hour of uptime). A zeroed struct is a fresh timer.
 */
struct lk_every {
	int64_t last_ms; /* when it was last due; meaningless until armed */
	bool armed;	 /* false: due at the next check */
};

/* True when t is due at now_ms (it is then re-armed from now_ms); false otherwise. */
bool lk_every_due(struct lk_every *t, int64_t now_ms, int64_t interval_ms);
/* Makes t due at its next check, whatever its interval. */
void lk_every_reset(struct lk_every *t);
/* Formats a wall time in ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (size >= 32). */
void lk_wall_format(int64_t wall_ms, char *out, unsigned out_size);

/* Sleeps for ms milliseconds (restarting on EINTR unless *stop becomes true). */
void lk_sleep_ms(int64_t ms, volatile const bool *stop);

/*
 * Stop and cancel flags set by one thread (a signal handler, the scheduler, an HTTP
 * request) and polled by another: atomic loads and stores, so the hand-over is defined
 * (and ThreadSanitizer agrees). lk_flag(NULL) is false.
 */
static inline bool lk_flag(volatile const bool *f)
{
	return f && __atomic_load_n(f, __ATOMIC_ACQUIRE);
}

static inline void lk_flag_set(volatile bool *f, bool v)
{
	__atomic_store_n(f, v, __ATOMIC_RELEASE);
}

#endif
