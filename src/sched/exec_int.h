/*
 * exec_int.h - shared inside src/sched/ between the exec runner's supervision loop
 * (exec.c) and its process handling (exec_proc.c).
 */
#ifndef LK_SCHED_EXEC_INT_H
#define LK_SCHED_EXEC_INT_H

#include "exec.h"

#include <sys/types.h>

/* A started command: its main process, which leads its own process group. */
struct lk_exec_child {
	pid_t pid;  /* also the process group id */
	int out_fd; /* read end of the command's stdout (O_CLOEXEC); the caller closes it */
	int err_fd; /* read end of its stderr (O_CLOEXEC); the caller closes it */
};

/*
 * Resolves argv[0], builds the environment, forks and execs the command in a new process
 * group with stdin on /dev/null. Returns 0 once execve succeeded, or -1 with err when the
 * command could not start (the child, if any, is reaped; no fd leaks). Everything the
 * child needs is prepared before fork(): between fork and execve the child makes only
 * async-signal-safe calls, since other threads may hold malloc's or libpq's locks.
 */
int lk_exec_spawn(const struct lk_exec_opts *o, struct lk_exec_child *c, struct lk_err *err);

/* Sends sig to every process of the group pgid; ESRCH (no one left) is not an error. */
void lk_exec_signal_group(pid_t pgid, int sig);

/*
 * Sums the resident memory, in bytes, of the processes whose process group is pgid, by
 * reading /proc/<pid>/stat. Returns -1 when /proc cannot be read.
 */
int64_t lk_exec_group_rss(pid_t pgid);

#endif
