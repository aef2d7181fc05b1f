/*
 * breaker.h - one circuit breaker per database (by URL), shared by every thread of the
 * process. lk_db_open() consults it: closed lets every open through; after
 * `breaker.failures` consecutive failed opens it is open and opens fail fast; after
 * `breaker.cooldown` one caller probes (half-open) while the others still fail fast; the
 * probe's success closes it, its failure opens it again. Each change is logged once.
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
 * false while it is open (err says so, code LK_ERR_UNAVAILABLE, not transient), true
 * otherwise; *probe is true when this caller is the half-open probe (one try only, with
 * breaker.probe_timeout). Thread-safe.
 */
struct lk_breaker *lk_breaker_enter(const struct lk_dbconf *db, bool *admit, bool *probe,
				    struct lk_err *err);
/* The outcome of an admitted open: success closes, failure counts (and may open). */
void lk_breaker_success(struct lk_breaker *b);
void lk_breaker_failure(struct lk_breaker *b, const struct lk_err *why);

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

#endif
