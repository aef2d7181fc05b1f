/* cmd_run.c - `lockstep run`: the daemon, until SIGTERM or SIGINT. */
#include "cli_int.h"
#include "daemon/daemon.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *const help =
	"usage: lockstep run\n"
	"  The daemon: runs every real-time job (mode: realtime) until SIGTERM or SIGINT,\n"
	"  then stops each at a page boundary with its position committed. Lost\n"
	"  connections are retried with back-off; each job resumes from its position.\n"
	"  Other jobs are run with `lockstep sync JOB` until the scheduler lands.\n"
	"  Exit: 0 stopped on request, 75 another `lockstep run` holds the SQLite state\n"
	"  store, 69 the state store is unreachable, 78 invalid config.\n";

int lk_cmd_run(struct lk_cli *cli)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct lk_err err = LK_ERR_INIT;
	struct lk_job_lock *lock;
	struct lk_store *store;
	char host[256] = "";
	const char *name;
	int64_t restarts = 0;
	int c, code = 0;

	while ((c = getopt_long(cli->argc, cli->argv, "", opts, NULL)) != -1) {
		if (c == 'h')
			return fputs(help, stdout) < 0;
		return fputs(help, stderr), LK_EXIT_USAGE;
	}
	if (optind != cli->argc)
		return fputs(help, stderr), LK_EXIT_USAGE;
	store = lk_cli_open_store(cli, &code);
	if (!store)
		return code;
	lock = lk_store_daemon_lock(store, &err);
	if (!lock) {
		lk_store_close(store);
		return lk_cli_fail(&err);
	}
	name = getenv("HOSTNAME");
	if (!name || !*name) {
		(void)gethostname(host, sizeof(host) - 1);
		name = host[0] ? host : "lockstep";
	}
	if (lk_store_instance_start(store, name, &restarts, &err) < 0 ||
	    lk_daemon_run(cli->cfg, &lk_cli_stop, &err) < 0)
		code = lk_cli_fail(&err);
	lk_store_job_unlock(lock);
	lk_store_close(store);
	return code;
}
