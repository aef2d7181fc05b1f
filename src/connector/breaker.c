/* breaker.c - per-database circuit breakers (see breaker.h): a small table under a mutex. */
#include "breaker.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#define LK_LOG_COMPONENT "breaker"
#include "core/log.h"
#include "core/units.h"

#define MAX_BREAKERS 64

struct lk_breaker {
	uint64_t id; /* hash of the URL */
	int64_t cooldown_ms;
	int64_t opened_mono_ms;
	int64_t changed_ms;
	enum lk_breaker_state state;
	int failures;
	int threshold;
	bool probing;
	char name[64];
	char last[200]; /* the last failure's message, for the fail-fast error */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct lk_breaker table[MAX_BREAKERS];
static struct lk_breaker spare; /* when the table is full: a breaker that never opens */
static int ntable;
static int64_t (*now_ms)(void) = lk_mono_ms;

static struct lk_breaker *find(const struct lk_dbconf *db)
{
	uint64_t id = XXH64(db->url ? db->url : "", db->url ? strlen(db->url) : 0, 0);
	struct lk_breaker *b;

	for (int i = 0; i < ntable; i++) {
		if (table[i].id == id)
			return &table[i];
	}
	if (ntable == MAX_BREAKERS)
		return &spare;
	b = &table[ntable++];
	memset(b, 0, sizeof(*b));
	b->id = id;
	(void)snprintf(b->name, sizeof(b->name), "%s", db->name ? db->name : "?");
	return b;
}

static void set_state(struct lk_breaker *b, enum lk_breaker_state s)
{
	b->state = s;
	b->changed_ms = lk_wall_ms();
}

struct lk_breaker *lk_breaker_enter(const struct lk_dbconf *db, bool *admit, bool *probe,
				    struct lk_err *err)
{
	struct lk_breaker *b;
	int64_t left;

	pthread_mutex_lock(&mu);
	b = find(db);
	b->threshold = db->breaker.failures > 0 ? db->breaker.failures : 5;
	b->cooldown_ms = db->breaker.cooldown_ms > 0 ? db->breaker.cooldown_ms : 30000;
	*admit = true;
	*probe = false;
	if (b == &spare || b->state == LK_BREAKER_CLOSED) {
		pthread_mutex_unlock(&mu);
		return b;
	}
	left = b->opened_mono_ms + b->cooldown_ms - now_ms();
	if (b->state == LK_BREAKER_OPEN && left <= 0) {
		set_state(b, LK_BREAKER_HALF_OPEN);
		b->probing = true;
		*probe = true;
		lk_log_info("database '%s': circuit breaker half-open, probing", b->name);
	} else {
		*admit = false;
		lk_err_set(err, LK_ERR_UNAVAILABLE,
			   "database '%s' is failing fast: its circuit breaker is open after %d "
			   "consecutive failures (next probe in %.1f s; last error: %s)",
			   b->name, b->failures, left > 0 ? (double)left / 1000.0 : 0.0,
			   b->last[0] ? b->last : "?");
	}
	pthread_mutex_unlock(&mu);
	return b;
}

void lk_breaker_success(struct lk_breaker *b)
{
	pthread_mutex_lock(&mu);
	if (b != &spare) {
		if (b->state != LK_BREAKER_CLOSED)
			lk_log_info("database '%s': circuit breaker closed, reachable again",
				    b->name);
		if (b->state != LK_BREAKER_CLOSED)
			set_state(b, LK_BREAKER_CLOSED);
		b->failures = 0;
		b->probing = false;
	}
	pthread_mutex_unlock(&mu);
}

static void open_again(struct lk_breaker *b, const struct lk_err *why)
{
	lk_log_warn("database '%s': circuit breaker open after %d consecutive failures (%s); "
		    "failing fast for %.0f s",
		    b->name, b->failures, why ? why->msg : "?", (double)b->cooldown_ms / 1000.0);
	set_state(b, LK_BREAKER_OPEN);
	b->opened_mono_ms = now_ms();
}

void lk_breaker_failure(struct lk_breaker *b, bool probe, const struct lk_err *why)
{
	pthread_mutex_lock(&mu);
	if (b == &spare)
		goto out;
	if (why)
		(void)snprintf(b->last, sizeof(b->last), "%s", why->msg);
	if (probe && b->probing) {
		/* the probe's outcome always moves a half-open breaker, whatever the error */
		b->failures++;
		b->probing = false;
		open_again(b, why);
	} else if (why && why->transient) {
		b->failures++;
		if (b->state == LK_BREAKER_CLOSED && b->failures >= b->threshold)
			open_again(b, why);
	}
out:
	pthread_mutex_unlock(&mu);
}

int lk_breaker_list(struct lk_breaker_info *out, int max)
{
	int n = 0;

	pthread_mutex_lock(&mu);
	for (int i = 0; i < ntable && n < max; i++) {
		const struct lk_breaker *b = &table[i];
		int64_t left = b->opened_mono_ms + b->cooldown_ms - now_ms();

		(void)snprintf(out[n].db, sizeof(out[n].db), "%s", b->name);
		out[n].state = b->state;
		out[n].failures = b->failures;
		out[n].changed_ms = b->changed_ms;
		out[n].probe_in_ms = b->state == LK_BREAKER_OPEN && left > 0 ? left : 0;
		n++;
	}
	pthread_mutex_unlock(&mu);
	return n;
}

const char *lk_breaker_state_name(enum lk_breaker_state s)
{
	static const char *const names[] = {"closed", "open", "half-open"};

	return (unsigned)s < 3 ? names[s] : "?";
}

void lk_breaker_reset_all(void)
{
	pthread_mutex_lock(&mu);
	ntable = 0;
	pthread_mutex_unlock(&mu);
}

void lk_breaker_set_clock(int64_t (*mono_ms)(void))
{
	pthread_mutex_lock(&mu);
	now_ms = mono_ms ? mono_ms : lk_mono_ms;
	pthread_mutex_unlock(&mu);
}
