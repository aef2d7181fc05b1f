/*
 * daemon.h - `lockstep run`: the long-running service. Today it runs every
 * real-time job on its own thread until stop, reconnecting with back-off after
 * any failure; the scheduler, HTTP API and leases join it in later issues.
 */
#ifndef LK_DAEMON_H
#define LK_DAEMON_H

#include "config/config.h"
#include "core/err.h"

#include <stdbool.h>

/*
 * Runs until *stop, then stops every job at a page boundary with its position committed
 * and returns 0. Fails at once (-1) only when the start itself fails (nothing to run).
 */
int lk_daemon_run(const struct lk_config *cfg, volatile const bool *stop, struct lk_err *err);

#endif
