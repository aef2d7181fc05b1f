/*
 * budget.h - the memory budget's lever on the engine (SPEC §7): while the daemon is over
 * 80% of memory.limit it sets a divisor of 2, and every batch the engine sizes from then
 * on is job->batch / divisor (at least 1). Process-wide, thread-safe (an atomic).
 */
#ifndef LK_SYNC_BUDGET_H
#define LK_SYNC_BUDGET_H

#include "config/config.h"

/* 1 restores the configured sizes; 2 halves them. */
void lk_sync_set_batch_divisor(int divisor);
int lk_sync_batch_divisor(void);
/* The batch size to use now for job. */
int lk_sync_batch(const struct lk_job *job);

#endif
