/*
 * sched.h - the scheduler's decisions, without threads or clocks of its own: which job
 * fires now, which fire is skipped because the job is still running, what a misfire
 * policy does after a start, when a run has used 80% of its interval. The daemon calls
 * it under one mutex with the wall clock; the unit tests call it with a fake one.
 */
#ifndef LK_SCHED_H
#define LK_SCHED_H

#include "config/config.h"

#include <stdbool.h>
#include <stdint.h>

/* The next fire time strictly after after_ms (Unix ms), or -1 when there is none. */
typedef int64_t (*lk_sched_next_cb)(void *arg, int64_t after_ms);

/* A fire time missed by less than this at start is run as due, not as a misfire. */
#define LK_SCHED_LATE_OK_MS 2000

struct lk_sched_entry {
	const char *name; /* borrowed */
	enum lk_overlap overlap;
	enum lk_misfire misfire;
	enum lk_priority priority;
	lk_sched_next_cb next; /* NULL: never fires by itself (manual runs only) */
	void *next_arg;
	int64_t next_ms;	 /* the next fire time; 0 when none */
	int64_t run_started_ms;	 /* while running */
	int64_t run_interval_ms; /* the interval of the fire being run, 0 when unknown */
	int pending;		 /* runs waiting to start: queued fire, catch-up, manual */
	bool running;
	bool warned_slow; /* the 80% warning was given for this run */
	bool dirty;	  /* next_ms changed since the caller last persisted it */
	bool removed;	  /* no longer scheduled (config reload); finishes its run */
};

enum lk_sched_act_kind {
	LK_SCHED_RUN,	/* start a run of the job now */
	LK_SCHED_SKIP,	/* record a run with status skipped: it was due while one was running */
	LK_SCHED_SLOW,	/* warn: the running run has taken over 80% of its interval */
	LK_SCHED_CAPPED /* catch-up at start found more missed fires than LK_CATCHUP_MAX */
};

struct lk_sched_act {
	enum lk_sched_act_kind kind;
	int job;	 /* index of the entry */
	int64_t fire_ms; /* RUN/SKIP: the fire time; SLOW: the run's start; CAPPED: fires lost */
};

/*
 * Places a job on the schedule at `now_ms`. stored_next_ms is the next fire time kept in
 * the state store (0 when none): in the future it is kept, so a restart never starves a
 * long interval; in the past (beyond LK_SCHED_LATE_OK_MS) it is a misfire, handled by
 * e->misfire: skip waits for the next fire, once queues one run, catchup queues one run per
 * missed fire up to LK_CATCHUP_MAX (the rest are reported by one CAPPED action).
 * The caller fills name, overlap, misfire, priority, next and next_arg; the rest is set here.
 * acts (room for 1) may receive a CAPPED action; returns the number written.
 */
int lk_sched_place(struct lk_sched_entry *e, int idx, int64_t stored_next_ms, int64_t now_ms,
		   struct lk_sched_act *acts);

/*
 * Decides what happens at now_ms over entries e[0..n). Writes at most `max` actions
 * (RUN actions mark the entry running) and returns how many; entries not reached stay
 * due for the next call. A fire while the job runs (or has a run waiting) is a SKIP with
 * overlap skip; with overlap queue it becomes the one waiting run, and further fires are
 * SKIPs. Missed fires while the process was paused collapse into one.
 */
int lk_sched_tick(struct lk_sched_entry *e, int n, int64_t now_ms, struct lk_sched_act *acts,
		  int max);

/* The run started by a RUN action has ended. */
void lk_sched_finished(struct lk_sched_entry *e, int64_t now_ms);

enum lk_sched_trigger {
	LK_TRIGGER_QUEUED,   /* a run will start at the next tick */
	LK_TRIGGER_COALESCED /* a run was already waiting: this request joins it */
};

/* A hand-triggered run (CLI or HTTP). Coalesces with a waiting run. */
enum lk_sched_trigger lk_sched_trigger(struct lk_sched_entry *e);

/* The earliest time at which lk_sched_tick has something to do, or 0 when nothing is due. */
int64_t lk_sched_next_due(const struct lk_sched_entry *e, int n);

#endif
