/*
 * exec.h - the runner of an `exec` job: one external command, supervised.
 *
 * The command runs without a shell in its own process group, in a clean
 * environment: PATH, HOME, LANG, LC_ALL and TZ from the daemon's (those that are
 * set), LOCKSTEP_RUN_ID, LOCKSTEP_FENCING_TOKEN and env_extra; nothing else of the
 * daemon's environment (tokens, passwords) reaches it. Its stdout
 * lines that are JSON progress objects become the run's progress; its other
 * stdout lines and its stderr lines go to callbacks (or the log). A timeout or
 * a stop request ends the whole group (SIGTERM, then SIGKILL after a grace
 * period); a lease deadline is a hard one (SIGKILL by then at the latest); a
 * memory watchdog kills it when its resident memory goes over a cap. The exit code decides success.
 * docs/exec-jobs.md is the user-facing page.
 *
 * Threads: lk_exec_run blocks the calling thread until the command and its
 * group are gone; several threads may run commands at once (no shared state).
 * The process must not ignore SIGCHLD (SIG_IGN reaps children behind our back)
 * and no other thread may call wait(-1)/waitpid(-1): the runner waits for its
 * own child by pid only.
 */
#ifndef LK_SCHED_EXEC_H
#define LK_SCHED_EXEC_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A stdout (or stderr) line longer than this is cut: its first LK_EXEC_LINE_MAX bytes are
 * delivered as one line and the rest, up to the next newline, is dropped. */
#define LK_EXEC_LINE_MAX 65536 /* 64 KiB */

/* Default SIGTERM-to-SIGKILL grace when lk_exec_opts.kill_grace_ms is 0. */
#define LK_EXEC_KILL_GRACE_MS 5000

/*
 * Once the command's main process has exited, its output is read for at most this long
 * more; then whatever is left of its process group (background children still holding
 * the pipes) is killed with SIGKILL. The run owns its whole group, like systemd's
 * KillMode=control-group.
 */
#define LK_EXEC_DRAIN_MS 500

/* How often the memory watchdog samples the group's resident memory (only with memory_max). */
#define LK_EXEC_MEM_SAMPLE_MS 250

/* One progress line, parsed. Any field may be unknown; the line said what it said. */
struct lk_exec_progress {
	double progress;   /* 0..100 (above 100 is clamped), -1 when "progress" is absent, not a
			      number, or negative */
	char stage[64];	   /* "stage" (cut at a UTF-8 boundary), "" when absent or not a string */
	int64_t processed; /* stats.processed, a number >= 0; -1 when unknown */
	int64_t total;	   /* stats.total, a number >= 0; -1 when unknown */
	const char *stats_json; /* the "stats" object as compact JSON (keys in their order), or
				   NULL when absent, not an object or longer than the buffer;
				   borrowed: valid only during the callback */
};

/* Receives each progress line, in order, on the thread that called lk_exec_run. */
typedef void (*lk_exec_progress_cb)(void *arg, const struct lk_exec_progress *p);

/*
 * Receives one line (without its "\n" or "\r\n") on the thread that called lk_exec_run.
 * `line` is borrowed for the call. It is NUL-terminated; a NUL byte inside the line
 * ends it early for C-string readers. Lines are cut at LK_EXEC_LINE_MAX bytes.
 */
typedef void (*lk_exec_line_cb)(void *arg, const char *line);

/*
 * The first executable cmd (a name without a slash) in path (colon-separated; NULL: the
 * default PATH), a relative entry taken from cwd, as a command's start would find it;
 * malloc'd, or NULL when there is none. check-config asks it of every exec job.
 */
char *lk_exec_which(const char *cmd, const char *path, const char *cwd);

/*
 * As PID 1 (in a container) lockstep is the parent of every orphaned process: this reaps
 * those that have ended (zombies whose parent is this process), leaving the commands of
 * exec runs to their runs. Returns how many. Any thread; the daemon calls it every second
 * when it is PID 1.
 */
int lk_exec_reap_orphans(void);
/* An exec run's main process is reaped (or lost): the orphan reaper may take its pid. */
void lk_exec_forget(pid_t pid);

struct lk_exec_opts {
	/* The command and its arguments, NULL-terminated; argv[0] is looked up in PATH (the
	 * PATH of the command's environment, so env_extra may set it) when it has no slash,
	 * else taken as a path (relative to cwd). Never a shell. Required. */
	char *const *argv;
	/* Working directory of the command; NULL inherits the daemon's. The scheduler passes
	 * the config file's folder. */
	const char *cwd;
	/* Values of LOCKSTEP_RUN_ID and LOCKSTEP_FENCING_TOKEN; NULL leaves that variable out
	 * (an SQLite state store has no fencing token). */
	const char *run_id;
	const char *fencing_token;
	/* "NAME=VALUE" strings, NULL-terminated, added to the command's environment (the
	 * inherited PATH, HOME, LANG, LC_ALL, TZ and the two above); each replaces a variable
	 * of the same name. NULL: none. The job's `env:` key (lk_job.env). */
	char *const *env_extra;
	/* 0: no timeout. On expiry the group gets SIGTERM, then SIGKILL kill_grace_ms later. */
	int64_t timeout_ms;
	/* SIGTERM-to-SIGKILL grace for timeout and stop; 0 means LK_EXEC_KILL_GRACE_MS. */
	int64_t kill_grace_ms;
	/* NULL or *deadline_boot_ms 0: none. The time on CLOCK_BOOTTIME (lk_boot_ms) by which
	 * the whole group must be dead: the job's lease deadline, after which another instance
	 * may take the job over. Another thread may move it while the command runs (the lease
	 * thread does at every renewal); it is read atomically at every turn, and the loop wakes
	 * up for it. Once it passes, the group gets SIGKILL at once, with no grace; a SIGTERM
	 * sent earlier (timeout, stop) turns into SIGKILL at the end of its grace or at this
	 * deadline, whichever comes first. A SIGKILL the deadline forced ends the run as
	 * "killed at its deadline". */
	volatile const int64_t *deadline_boot_ms;
	/* 0: none. Bytes of resident memory (RSS) the command's process group may use, summed
	 * over its members, sampled every LK_EXEC_MEM_SAMPLE_MS; above it the group gets
	 * SIGKILL at once (no grace, like the kernel's OOM killer). A short spike between two
	 * samples can go unseen; shared pages count once per process. */
	int64_t memory_max;
	/* 0: none. RLIMIT_AS (virtual address space) for the command and its children: a hard
	 * cap enforced by the kernel, but on virtual size, not RSS - node, Java and Go reserve
	 * gigabytes up front and die at start under a few hundred MiB. Opt-in; memory_max is
	 * what the `memory_max` config key maps to. */
	int64_t address_space_max;
	/* Polled at least every 100 ms; once true, the group gets SIGTERM, then SIGKILL after
	 * the grace, and the run ends as cancelled. NULL: never. */
	volatile const bool *stop;
	/* Progress lines; NULL: logged at debug level. */
	lk_exec_progress_cb on_progress;
	/* stderr lines; NULL: logged at info level as `stderr: <line>`. */
	lk_exec_line_cb on_stderr;
	/* stdout lines that are not progress objects; NULL: logged at info as `stdout: <line>`. */
	lk_exec_line_cb on_stdout_text;
	/* Passed to the three callbacks. */
	void *arg;
};

struct lk_exec_result {
	int exit_code;		/* the exit status; -1 when killed by a signal or never started */
	int term_signal;	/* the signal that killed the main process, else 0 */
	bool spawn_failed;	/* the command did not start (not found, not executable, bad cwd) */
	bool timed_out;		/* killed because timeout_ms passed */
	bool deadline_hit;	/* killed because deadline_mono_ms passed */
	bool cancelled;		/* killed because *stop became true */
	bool memory_exceeded;	/* killed by the memory watchdog */
	int64_t elapsed_ms;	/* from start to the main process's end */
	int64_t lines_stdout;	/* lines read from stdout (progress and text) */
	int64_t lines_stderr;	/* lines read from stderr */
	int64_t progress_lines; /* of lines_stdout, how many were progress objects */
	int64_t max_rss_bytes;	/* the main process's peak RSS (from wait4), 0 when unknown */
	int64_t group_rss_bytes; /* the highest group RSS the watchdog saw (0 without memory_max) */
};

/*
 * Runs one command to its end and fills `r` (always, even on failure).
 *
 * When *o->stop is already true the command is not started (cancelled).
 *
 * Returns 0 when the command exited with status 0 by itself; a command that exits 0 after
 * a SIGTERM sent for its timeout or a stop still fails. Otherwise -1 with err, whose
 * message is one of: "command 'node' not found in PATH", "cannot run 'x': <strerror>",
 * "cannot change to directory 'd': <strerror>", "exited with status 3", "killed by signal
 * 9 (SIGKILL)" (plus "; out of memory?" for SIGKILL, and for SIGSEGV or SIGABRT under
 * address_space_max), "killed after its timeout of 5m0s", "killed at its deadline",
 * "killed for using 412MiB, over its memory_max of 200MiB", "cancelled".
 *
 * err codes: LK_ERR_NOTFOUND when argv[0] is not in PATH; LK_ERR_IO for other spawn
 * failures (transient for EAGAIN/ENOMEM from fork) and for every failure of the command
 * itself (exit status, signal, timeout, deadline, memory; never transient: whether to
 * retry a failed command is the job's retry policy, not ours); LK_ERR_CANCELLED for a
 * stop; LK_ERR_INTERNAL when opts are invalid (argv missing or empty).
 *
 * Callbacks run on the calling thread, between reads; a slow callback delays reading
 * (the command then blocks on a full pipe) but not the timeout and stop checks by more
 * than its own duration.
 */
int lk_exec_run(const struct lk_exec_opts *o, struct lk_exec_result *r, struct lk_err *err);

/*
 * Parses one stdout line. Pure, allocation-bounded by the line, and safe on any bytes
 * (NUL, invalid UTF-8, deep nesting): for tests and the fuzzer.
 *
 * A line is a progress line when it is one JSON object (surrounding whitespace allowed;
 * duplicate keys make it plain text) with at least one of the keys "progress", "stage"
 * or "stats". Values of the wrong type are unknown, not errors; other keys are ignored.
 * So `{"level":"info","msg":"x"}` (a JSON logger's line) stays text.
 *
 * line:       the bytes, without the newline (need not be NUL-terminated)
 * len:        their count
 * out:        filled when 1 is returned (untouched otherwise)
 * stats_buf:  receives the compact "stats" JSON, NUL-terminated; out->stats_json points
 *             into it; may be NULL when stats_cap is 0
 * stats_cap:  its size in bytes; a stats object that does not fit gives stats_json NULL
 *
 * Returns 1 for a progress line, 0 for anything else (plain text).
 */
int lk_exec_parse_progress(const char *line, size_t len, struct lk_exec_progress *out,
			   char *stats_buf, size_t stats_cap);

/* Formats a duration the way error messages show it ("300ms", "1.5s", "5m0s", "1h0m0s")
 * into out (size >= 32). */
void lk_exec_format_duration(int64_t ms, char *out, size_t out_size);

#endif
