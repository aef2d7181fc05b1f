/* cli_int.h - what the command files share. */
#ifndef LK_CLI_INT_H
#define LK_CLI_INT_H

#include "config/config.h"
#include "core/err.h"
#include "store/store.h"
#include "sync/sync.h"

#include <signal.h>
#include <stdbool.h>

struct lk_cli {
	const char *config_path;
	struct lk_config *cfg;
	int argc; /* the command's own arguments, argv[0] = command name */
	char **argv;
};

/* Exit codes (SPEC §2). */
enum {
	LK_EXIT_OK = 0,
	LK_EXIT_FAILED = 1,
	LK_EXIT_USAGE = 2,
	LK_EXIT_UNAVAILABLE = 69,
	LK_EXIT_TEMPFAIL = 75,
	LK_EXIT_CONFIG = 78
};

/* Loads cli->cfg from the config path; prints the error and returns its exit code on failure,
 * 0 on success. Also applies the log settings. */
int lk_cli_load_config(struct lk_cli *cli);
/* Opens and migrates the state store; prints and returns NULL on failure (*code set). */
struct lk_store *lk_cli_open_store(struct lk_cli *cli, int *code);
/* Prints "lockstep: <msg>" (and a hint for some codes) and returns the exit code. */
int lk_cli_fail(const struct lk_err *err);
/* Finds a job by name or prints an error listing the jobs (exit 2). */
const struct lk_job *lk_cli_job(struct lk_cli *cli, const char *name, int *code);

/* Signals: SIGINT/SIGTERM set this flag; a second signal exits at once. */
extern volatile bool lk_cli_stop;
/* SIGHUP sets this flag (lockstep run reloads its config). */
extern volatile sig_atomic_t lk_cli_reload;
void lk_cli_signals(void);

/* Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise. */
struct lk_progress_view;
struct lk_progress_view *lk_progress_view_new(const char *verb);
void lk_progress_view_cb(void *arg, const struct lk_sync_progress *p);
void lk_progress_view_free(struct lk_progress_view *v); /* ends the bar's line */

/* Formats milliseconds since the epoch as ISO 8601 UTC, or "" for 0. */
void lk_cli_time(long long ms, char *out, unsigned size);

int lk_cmd_sync(struct lk_cli *cli);
int lk_cmd_verify(struct lk_cli *cli);
int lk_cmd_check_config(struct lk_cli *cli);
int lk_cmd_migrate(struct lk_cli *cli);
int lk_cmd_status(struct lk_cli *cli);
int lk_cmd_demo(struct lk_cli *cli);
int lk_cmd_run(struct lk_cli *cli);
int lk_cmd_uninstall(struct lk_cli *cli);
int lk_cmd_errors(struct lk_cli *cli);
int lk_cmd_version(struct lk_cli *cli);

#endif
