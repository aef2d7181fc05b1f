/*
 * breaker.h - one circuit breaker per database (by URL), shared by every thread of the
 * process. lk_db_open() consults it before it connects and reports every admitted
 * caller's outcome. The states:
 *
 *   closed     every open goes through; a success resets the count; a transient failure
 *              counts, and `breaker.failures` consecutive ones open it. A non-transient
 *              failure (a wrong password, a missing database) is not counted: the
 *              database answered, and failing fast would only hide its message.
 *   open       opens fail fast, until `breaker.cooldown` has passed since it opened; then
 *              the next caller becomes the probe and the breaker is half-open.
 *   half-open  the probe (one try, connect timeout `breaker.probe_timeout`) is out; every
 *              other caller fails fast. The probe's outcome always moves it: success
 *              closes it, any failure (transient or not) opens it again for a new cooldown,
 *              so a database whose password was wrong comes back once it is fixed.
 *
 * A success reported by any caller (one admitted while closed, say) closes it. Each change
 * of state is logged once.
 */
#ifndef LK_BREAKER_H
#define LK_BREAKER_H

#include "config/config.h"

#include <stdbool.h>
#include <stdint.h>

enum lk_breaker_state { LK_BREAKER_CLOSED = 0, LK_BREAKER_OPEN, LK_BREAKER_HALF_OPEN };

struct lk_breaker;

/*
 * Asks to open a connection to `db`. Returns the breaker (never NULL) and sets *admit:
 * false while it is open or half-open with its probe out (err says so, code
 * LK_ERR_UNAVAILABLE, not transient, with the last failure's message), true otherwise;
 * *probe is true when this caller is the half-open probe (one try only, with
 * breaker.probe_timeout). An admitted caller must report its outcome with
 * lk_breaker_success() or lk_breaker_failure(), exactly once. Thread-safe.
 */
struct lk_breaker *lk_breaker_enter(const struct lk_dbconf *db, bool *admit, bool *probe,
				    struct lk_err *err);
/* An admitted open succeeded: the breaker closes and its count is reset. Thread-safe. */
void lk_breaker_success(struct lk_breaker *b);
/*
 * An admitted open failed with `why` (after its retries). `probe` is what
 * lk_breaker_enter() set: the probe's failure, whatever `why`, opens the breaker again for
 * a new cooldown from now. Another caller's failure counts only when why->transient, and
 * opens a closed breaker at `breaker.failures`. Thread-safe.
 */
void lk_breaker_failure(struct lk_breaker *b, bool probe, const struct lk_err *why);

struct lk_breaker_info {
	char db[64]; /* the database's name in the config */
	enum lk_breaker_state state;
	int failures;	     /* consecutive */
	int64_t changed_ms;  /* wall clock of the last state change, 0 if never */
	int64_t probe_in_ms; /* open: time left before the next probe */
};

/* Copies out up to max breakers; returns how many. Thread-safe. */
int lk_breaker_list(struct lk_breaker_info *out, int max);
const char *lk_breaker_state_name(enum lk_breaker_state s);
/* Forgets every breaker (tests). */
void lk_breaker_reset_all(void);
/*
 * Tests only: the monotonic clock (milliseconds) that cooldowns are measured on, so a test
 * can move time instead of sleeping. NULL restores lk_mono_ms(). Call it while no other
 * thread uses a breaker.
 */
void lk_breaker_set_clock(int64_t (*mono_ms)(void));

#endif
