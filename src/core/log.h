/*
 * log.h - one key=value (or JSON) line per event on stderr.
 *
 * Each .c file that logs defines LK_LOG_COMPONENT (a string) before using the macros. The
 * macros test the level before evaluating their arguments. Thread-safe:
 * a line is formatted into a local buffer and written with one write(2).
 */
#ifndef LK_LOG_H
#define LK_LOG_H

#include "err.h"

#include <stdbool.h>

enum lk_log_level { LK_LOG_DEBUG = 0, LK_LOG_INFO, LK_LOG_WARN, LK_LOG_ERROR, LK_LOG_OFF };
enum lk_log_format { LK_LOG_TEXT = 0, LK_LOG_JSON };

extern enum lk_log_level lk_log_min_level;

/* Called once at start and at reload (from the main thread). */
void lk_log_setup(enum lk_log_level level, enum lk_log_format format);

/*
 * Tags this thread's lines with the job and run it works for (job=, run= in text; "job",
 * "run" in JSON) until called again; NULL clears. The run id is copied, so it may be set
 * before the run is recorded.
 */
void lk_log_context(const char *job, const char *run_id);

/* Parses "debug" | "info" | "warn" | "error"; returns -1 for anything else. */
int lk_log_level_parse(const char *s, enum lk_log_level *out);

void lk_log_write(enum lk_log_level level, const char *comp, const struct lk_err *err,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define LK_LOG_AT(lvl, err, ...)                                                                   \
	do {                                                                                       \
		if ((int)(lvl) >= (int)__atomic_load_n(&lk_log_min_level, __ATOMIC_RELAXED))       \
			lk_log_write((lvl), LK_LOG_COMPONENT, (err), __VA_ARGS__);                 \
	} while (0)

#define lk_log_debug(...) LK_LOG_AT(LK_LOG_DEBUG, NULL, __VA_ARGS__)
#define lk_log_info(...) LK_LOG_AT(LK_LOG_INFO, NULL, __VA_ARGS__)
#define lk_log_warn(...) LK_LOG_AT(LK_LOG_WARN, NULL, __VA_ARGS__)
#define lk_log_error(...) LK_LOG_AT(LK_LOG_ERROR, NULL, __VA_ARGS__)
#define lk_log_debug_err(e, ...) LK_LOG_AT(LK_LOG_DEBUG, (e), __VA_ARGS__)
#define lk_log_warn_err(e, ...) LK_LOG_AT(LK_LOG_WARN, (e), __VA_ARGS__)
#define lk_log_error_err(e, ...) LK_LOG_AT(LK_LOG_ERROR, (e), __VA_ARGS__)

/* Logs and aborts: for states that cannot happen. */
#define LK_BUG(...)                                                                                \
	do {                                                                                       \
		lk_log_write(LK_LOG_ERROR, "bug", NULL, __VA_ARGS__);                              \
		abort();                                                                           \
	} while (0)

#endif
