/*
 * sched.c - the scheduler's decisions over a table of entries (see sched.h). No clock,
 * no threads, no I/O: every function takes `now` and returns actions.
 */
#include "sched.h"

/* The fire after t, or 0 when the schedule has none. */
static int64_t next_after(const struct lk_sched_entry *e, int64_t t)
{
	int64_t n;

	if (!e->next)
		return 0;
	n = e->next(e->next_arg, t);
	return n > 0 ? n : 0;
}

/* Counts the fires in [from, now] (from itself is one), up to cap + 1. */
static int count_missed(const struct lk_sched_entry *e, int64_t from, int64_t now, int cap)
{
	int n = 0;

	for (int64_t t = from; t > 0 && t <= now && n <= cap; t = next_after(e, t))
		n++;
	return n;
}

int lk_sched_place(struct lk_sched_entry *e, int idx, int64_t stored_next_ms, int64_t now_ms,
		   struct lk_sched_act *acts)
{
	int missed;

	e->running = false;
	e->pending = 0;
	e->warned_slow = false;
	e->dirty = false;
	e->removed = false;
	e->run_started_ms = e->run_interval_ms = 0;
	if (stored_next_ms > 0 && stored_next_ms >= now_ms - LK_SCHED_LATE_OK_MS) {
		e->next_ms = stored_next_ms; /* due soon or now: an ordinary fire */
		return 0;
	}
	e->next_ms = next_after(e, now_ms);
	e->dirty = true;
	if (stored_next_ms <= 0 || e->misfire == LK_MISFIRE_SKIP)
		return 0;
	if (e->misfire == LK_MISFIRE_ONCE) {
		e->pending = 1;
		return 0;
	}
	missed = count_missed(e, stored_next_ms, now_ms, LK_CATCHUP_MAX);
	e->pending = missed > LK_CATCHUP_MAX ? LK_CATCHUP_MAX : missed;
	if (missed <= LK_CATCHUP_MAX)
		return 0;
	acts[0] = (struct lk_sched_act){LK_SCHED_CAPPED, idx,
					count_missed(e, stored_next_ms, now_ms, 1000000) -
						LK_CATCHUP_MAX};
	return 1;
}

/* Handles one due fire of entry i at fire_ms; returns the actions written (0 or 1). */
static int fire(struct lk_sched_entry *e, int i, int64_t fire_ms, struct lk_sched_act *act)
{
	if (!e->running && e->pending == 0) {
		e->pending = 1;
		return 0; /* started below, with the other waiting runs */
	}
	if (e->overlap == LK_OVERLAP_QUEUE && e->pending == 0) {
		e->pending = 1;
		return 0;
	}
	*act = (struct lk_sched_act){LK_SCHED_SKIP, i, fire_ms};
	return 1;
}

/* Starts entry i's waiting run, if it can start. */
static int start(struct lk_sched_entry *e, int i, int64_t now_ms, struct lk_sched_act *act)
{
	int64_t after;

	if (e->running || e->pending == 0 || e->removed)
		return 0;
	e->pending--;
	e->running = true;
	e->warned_slow = false;
	e->run_started_ms = now_ms;
	after = next_after(e, now_ms);
	e->run_interval_ms = after > 0 ? next_after(e, after) - after : 0;
	if (e->run_interval_ms < 0)
		e->run_interval_ms = 0;
	*act = (struct lk_sched_act){LK_SCHED_RUN, i, now_ms};
	return 1;
}

static bool slow(const struct lk_sched_entry *e, int64_t now_ms)
{
	return e->running && !e->warned_slow && e->run_interval_ms > 0 &&
	       (now_ms - e->run_started_ms) * 5 > e->run_interval_ms * 4;
}

int lk_sched_tick(struct lk_sched_entry *e, int n, int64_t now_ms, struct lk_sched_act *acts,
		  int max)
{
	int k = 0;

	for (int i = 0; i < n && k + 2 <= max; i++) {
		struct lk_sched_entry *x = &e[i];

		if (!x->removed && x->next_ms > 0 && x->next_ms <= now_ms) {
			int64_t due = x->next_ms;

			/* Fires missed while the process was paused collapse into this one. */
			x->next_ms = next_after(x, due);
			while (x->next_ms > 0 && x->next_ms <= now_ms)
				x->next_ms = next_after(x, x->next_ms);
			x->dirty = true;
			k += fire(x, i, due, &acts[k]);
		}
		k += start(x, i, now_ms, &acts[k]);
		if (slow(x, now_ms) && k < max) {
			x->warned_slow = true;
			acts[k++] = (struct lk_sched_act){LK_SCHED_SLOW, i, x->run_started_ms};
		}
	}
	return k;
}

void lk_sched_finished(struct lk_sched_entry *e, int64_t now_ms)
{
	(void)now_ms;
	e->running = false;
	e->warned_slow = false;
	e->run_started_ms = 0;
}

enum lk_sched_trigger lk_sched_trigger(struct lk_sched_entry *e)
{
	if (e->pending > 0)
		return LK_TRIGGER_COALESCED;
	e->pending = 1;
	return LK_TRIGGER_QUEUED;
}

int64_t lk_sched_next_due(const struct lk_sched_entry *e, int n)
{
	int64_t best = 0;

	for (int i = 0; i < n; i++) {
		int64_t t = e[i].next_ms;

		if (e[i].removed)
			continue;
		if (!e[i].running && e[i].pending > 0)
			t = 1; /* now */
		if (t > 0 && (best == 0 || t < best))
			best = t;
	}
	return best;
}
