/*
 * daemon_int.h - what the daemon's files share: config generations, job slots, the worker
 * pool. Ownership: the scheduler loop (the thread in lk_daemon_run) owns the slot list
 * and the generations; `mu` guards each slot's schedule entry and busy flag, the pool's
 * queue and the degraded flag, which workers and real-time threads also touch.
 */
#ifndef LK_DAEMON_INT_H
#define LK_DAEMON_INT_H

#include "api.h"
#include "daemon.h"
#include "sched/cron.h"
#include "sched/sched.h"
#include "sched/tz.h"
#include "store/store.h"

#include <pthread.h>

struct lk_verify_result;

/* One loaded config; freed once no slot uses it. */
struct lk_gen {
	struct lk_config *cfg;
	int users; /* slots pointing into cfg */
	struct lk_gen *next;
};

/* One configured job. Heap-allocated: threads keep pointers to it. */
struct lk_slot {
	const struct lk_job *job; /* in gen->cfg */
	struct lk_gen *gen;
	char *fp; /* lk_config_job_fingerprint (holds secrets: never logged) */
	bool realtime;
	/* scheduled jobs */
	struct lk_sched_entry e;
	struct lk_cron cron;
	struct lk_tz *tz;
	char spec[160]; /* the schedule as stored with its next fire time */
	bool has_cron;
	/* either kind */
	volatile bool stop; /* this slot's work stops at its next checkpoint */
	bool busy;	    /* a run queued or going, or the real-time thread alive */
	bool gone;	    /* removed or replaced by a reload: freed once not busy */
	bool queued;	    /* in the pool's queue (not started yet) */
	bool held;	    /* replaces a slot still busy: starts once that one is idle */
	pthread_t thread;   /* real-time */
	bool thread_started;
	/* real-time thread's own state */
	volatile bool outage; /* read by /api/health */
	volatile bool poke;   /* SIGHUP: a job stopped on its schemas looks again now */
	int64_t outage_ms;
	int attempt;
	char last_msg[LK_ERR_MSG_MAX];
	/* runs the API can name (mu held) */
	char run_id[37];      /* the run queued in the pool or going */
	char next_id[37];     /* the waiting run (sched pending) asked for over HTTP */
	bool next_full;	      /* its type */
	bool run_full;	      /* the going run's type */
	volatile bool cancel; /* a user cancelled the going run (with stop) */
	bool resnap;	      /* real-time: re-snapshot asked for (with stop) */
	/* scheduled runs' failure streak (touched only by the worker running the slot) */
	int fail_streak;
	int64_t fail_logged_ms;
	char fail_msg[LK_ERR_MSG_MAX];
	struct lk_slot *next_queued; /* pool queue link */
	int64_t queued_seq;
	/* the job's lease deadline on CLOCK_BOOTTIME, by which an exec run's process group
	 * must be dead; 0: none. Written by the lease thread (atomic), read by the run. */
	int64_t lease_kill_boot_ms;
	/* verify passes (daemon_verify.c; mu) */
	int64_t verify_next_ms; /* wall clock of the next scheduled pass; 0: not placed yet */
	bool vbusy;		/* a pass is going: the slot is not freed */
	bool vhold;		/* a poll/snapshot job's repair writes: no run of it starts */
	bool verify_now;	/* a pass asked for over HTTP */
	bool verify_now_repair;
	char verify_id[37];
	struct lk_tz *vtz; /* verify.schedule's zone (the job's timezone), loaded when used */
	int64_t v_logged, v_logged_ms; /* the differences last logged, and when (verify thread) */
};

/*
 * A job's lease as this instance knows it (daemon_lease.c; PostgreSQL state store). Under
 * the daemon's mu. Slots run only while their job's lease is held and not releasing.
 */
struct lk_lease {
	char job[128];
	bool held;	    /* this instance holds it */
	bool releasing;	    /* assigned elsewhere now: the job stops, then the lease is freed */
	bool fresh;	    /* just acquired: a scheduled slot re-reads its schedule first */
	int64_t epoch;	    /* the lease row's epoch as last read */
	int64_t ok_boot_ms; /* CLOCK_BOOTTIME at the start of the last successful renewal */
	char holder[160];   /* the holder as last read ("" when free) */
	bool nowhere;	    /* run_on: no live instance has its labels (logged once) */
};

struct lk_daemon {
	const struct lk_daemon_opts *opts;
	const struct lk_config *store_cfg; /* the first config: the state store never moves */
	struct lk_gen *gens;		   /* newest first */
	struct lk_slot **slots;
	int nslots, aslots;
	pthread_mutex_t mu;
	pthread_cond_t cond; /* the pool's queue changed, or a slot became idle */
	/* the pool */
	pthread_t *workers;
	int nworkers;
	struct lk_slot *queue; /* singly linked, unordered; workers pick by priority, then seq */
	int64_t seq;
	bool closing; /* no new runs start */
	bool degraded;
	int running; /* runs going in workers */
	/* memory */
	int64_t rss, rss_peak;
	int64_t limit;
	/* health */
	int64_t started_mono_ms, started_wall_ms;
	int64_t store_ok_ms; /* the last heartbeat the store took (monotonic) */
	/* the API (daemon_api.c) */
	pthread_mutex_t live_mu;
	pthread_cond_t live_cond; /* a live run changed (CLOCK_MONOTONIC) */
	struct lk_live *live;	  /* LK_LIVE_MAX */
	struct lk_jobstat *jobstats;
	int njobstats, ajobstats;
	pthread_mutex_t api_mu;
	struct lk_store *api_store;
	struct lk_http *http;
	bool ready; /* the first config's slots exist: API calls wait for it (mu, cond) */
	/* leases (daemon_lease.c): with a PostgreSQL store, jobs run only under their lease */
	bool cluster;
	char member[160];  /* this process as a lease holder: "NAME#RANDOM" */
	char labels[1040]; /* instance.labels joined by commas (read at start; 16 x 63) */
	struct lk_lease *leases;
	int nleases, aleases;
	int64_t lease_ms, renew_ms;
	pthread_t lease_thread, watch_thread;
	bool lease_started, watch_started;
	volatile bool lease_stop;
	bool lease_release; /* at the stop: free the leases (every job stopped in time) */
	int64_t takeovers, losses, fenced; /* atomics: /metrics */
	/* verify passes (daemon_verify.c) */
	pthread_t verify_thread;
	bool verify_started;
	int vpasses; /* pass threads going (mu) */
	volatile bool verify_stop;
};

/* The live view of runs (daemon_api.c): recent and going runs, by id. */
/* A real-time job stopped on its schemas looks again this often (docs/schema-changes.md). */
#define LK_SCHEMA_RECHECK_MS 10000
#define LK_LIVE_MAX 128
struct lk_live {
	struct lk_api_run r;
	bool used;
};

/* Counters per job for /metrics (live_mu). */
#define LK_HIST_BUCKETS 9
#define LK_NSTATUS 5
struct lk_jobstat {
	char job[128];
	int64_t rows_read, rows_written, rows_failed;
	int64_t runs[LK_NSTATUS];
	int64_t hist[LK_HIST_BUCKETS], hist_count;
	double hist_sum;
	int64_t last_success_ms;
	bool has_lag; /* a real-time run is going and has measured its lag */
	double lag_s;
	int64_t lag_rows;
	/* the last verify pass (docs/verify.md) */
	bool v_has, v_repair, v_failed;
	int64_t v_at_ms, v_rows, v_diffs, v_left, v_repaired_total;
	double v_secs;
	char v_run[37];
};

/* daemon_api.c */
/* The store observer of every handle that records runs (any thread). */
void lk_daemon_observe(void *arg, const struct lk_run *run);
/* A run queued (not started yet) enters the live view. */
void lk_daemon_live_queued(struct lk_daemon *d, const char *id, const char *job, bool full);
/* A run that never started (or never recorded its end) gets a final status. */
void lk_daemon_live_settle(struct lk_daemon *d, const char *id, const char *status,
			   const char *why);

/* daemon_lease.c */
/* Sets up leases for a PostgreSQL store and starts the lease thread (no-op for SQLite). */
int lk_daemon_lease_start(struct lk_daemon *d, struct lk_err *err);
/* Stops the lease thread; it releases every lease it holds (after the jobs stopped). */
void lk_daemon_lease_stop(struct lk_daemon *d);
/*
 * Whether this instance may run the job now (mu held): under its lease, or without leases
 * (an SQLite store) when this instance's labels fit the job's run_on.
 */
bool lk_daemon_may_run(struct lk_daemon *d, const char *job);
/* Whether this instance has every label of the job's run_on. */
bool lk_daemon_labels_fit(const struct lk_daemon *d, const struct lk_job *j);
/* The job's lease entry, or NULL (mu held). */
struct lk_lease *lk_daemon_lease(struct lk_daemon *d, const char *job);

/* daemon_jobs.c */
int lk_daemon_pool_start(struct lk_daemon *d, int nworkers, struct lk_err *err);
/* Closes the queue: runs not started are dropped, workers end after their current run. */
void lk_daemon_pool_close(struct lk_daemon *d);
/* Closes the queue and joins the workers. */
void lk_daemon_pool_join(struct lk_daemon *d);
/*
 * At an exit that cannot wait for them (the shutdown grace ran out): closes the queue and
 * detaches the pool's workers and the real-time threads, which the process's _exit then
 * ends wherever they are. Nothing they use is freed. Main thread, once.
 */
void lk_daemon_pool_abandon(struct lk_daemon *d);
/* Queues a run of slot s (mu held; s->busy already set). */
void lk_daemon_enqueue(struct lk_daemon *d, struct lk_slot *s);
int lk_daemon_realtime_start(struct lk_daemon *d, struct lk_slot *s);

/* daemon_verify.c: the thread of scheduled verify passes (docs/verify.md) */
int lk_daemon_verify_start(struct lk_daemon *d);
/* Stops it: joined, or detached when the exit cannot wait. */
void lk_daemon_verify_stop(struct lk_daemon *d, bool join);
/* daemon_api.c: what a pass found, for /metrics, /api/jobs and /api/health (any thread). */
void lk_daemon_verify_note(struct lk_daemon *d, const char *job, const struct lk_verify_result *res,
			   const char *error, bool repair);

/* daemon_health.c */
int64_t lk_daemon_rss_bytes(void);
/* Samples RSS and moves in or out of DEGRADED (mu not held). */
void lk_daemon_memory_check(struct lk_daemon *d);
/* Writes the heartbeat row: health and a JSON detail (mu not held). */
void lk_daemon_heartbeat(struct lk_daemon *d, struct lk_store *store, const char *health);

#endif
