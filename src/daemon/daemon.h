/*
 * daemon.h - `lockstep run`: the long-running service. A scheduler loop on the calling
 * thread fires scheduled jobs (sync snapshot/poll, sql, exec) into a bounded worker pool
 * by priority, never running a job twice at once; every real-time job holds its own
 * thread. It watches the memory budget, keeps per-database circuit breakers, reloads the
 * config on SIGHUP, talks to systemd, and stops gracefully.
 */
#ifndef LK_DAEMON_H
#define LK_DAEMON_H

#include "config/config.h"
#include "core/err.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Default time running work gets to reach a checkpoint after SIGTERM (SPEC §5). */
#define LK_DAEMON_GRACE_MS 30000

struct lk_daemon_opts {
	const char *config_path;       /* re-read on reload */
	const char *instance;	       /* this instance's name (restart counter, heartbeat) */
	volatile const bool *stop;     /* set by SIGTERM/SIGINT */
	volatile sig_atomic_t *reload; /* set by SIGHUP; the daemon clears it */
	int64_t grace_ms;	       /* 0: LK_DAEMON_GRACE_MS */
	int64_t restarts;	       /* this instance's restart count, for the logs */
};

enum lk_daemon_end {
	LK_DAEMON_CLEAN = 0, /* everything stopped and was released */
	LK_DAEMON_ABANDONED  /* work did not stop within the grace period: exit now, without
				freeing (other threads still run) */
};

/*
 * Runs until *opts->stop, then stops every job at a checkpoint and returns. *cfgp is the
 * config in force at the start; on return it is the config in force at the end (the
 * caller frees it; the daemon has freed the others). Returns -1 only when the start
 * itself fails (err set).
 */
int lk_daemon_run(struct lk_config **cfgp, const struct lk_daemon_opts *opts,
		  enum lk_daemon_end *end, struct lk_err *err);

#endif
