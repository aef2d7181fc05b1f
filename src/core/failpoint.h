/*
 * failpoint.h - named crash points for tests (LK_FAILPOINT=name[@N][:stop]).
 *
 * When the environment names a point, the N-th time (default 1st) the code passes
 * it, lockstep logs one line and aborts at once, as a kill -9 would: no cleanup,
 * no commit, no unlock. With ":stop" it stops itself with SIGSTOP instead, as a frozen
 * process would, and goes on when a test sends SIGCONT (once: later passes go on).
 * Production code pays one branch when the variable is unset.
 */
#ifndef LK_FAILPOINT_H
#define LK_FAILPOINT_H

/* Aborts (or stops) the process if `name` is the configured failpoint and its count is
 * reached. */
void lk_failpoint(const char *name);

#endif
