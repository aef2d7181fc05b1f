/* cmd_run.c - `lockstep run`: the daemon, until SIGTERM or SIGINT. */
#include "cli_int.h"
#include "core/units.h"
#include "daemon/daemon.h"
#include "sched/jobs.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const help =
	"usage: lockstep run\n"
	"  The daemon: runs every job of the config until SIGTERM or SIGINT. Real-time\n"
	"  jobs stream on their own threads; jobs with `every` or `schedule` (sync, sql,\n"
	"  exec) fire on time into a pool of workers, never twice at once (overlap,\n"
	"  misfire and priority per job). Transient failures are retried with back-off,\n"
	"  per-database circuit breakers fail fast while a database is down.\n"
	"  SIGHUP reloads the config: added jobs start, removed ones stop, changed ones\n"
	"  restart, the others are not touched; an invalid config is refused.\n"
	"  SIGTERM/SIGINT: running work stops at its next checkpoint (30 s grace, or\n"
	"  $LOCKSTEP_SHUTDOWN_GRACE like 10s), then exit 0; a second signal exits at once.\n"
	"  Exit: 0 stopped on request, 75 another `lockstep run` holds the SQLite state\n"
	"  store, 69 the state store is unreachable, 78 invalid config.\n";

static const char *instance_name(const struct lk_config *cfg, char *host, size_t size)
{
	const char *name = cfg->instance_name;

	if (name && *name)
		return name;
	name = getenv("HOSTNAME");
	if (name && *name)
		return name;
	(void)gethostname(host, size - 1);
	return host[0] ? host : "lockstep";
}

static int64_t grace_ms(void)
{
	const char *g = getenv("LOCKSTEP_SHUTDOWN_GRACE");
	int64_t ms = 0;

	if (g && *g && lk_duration_parse(g, &ms) < 0) {
		(void)fprintf(stderr,
			      "lockstep: ignoring LOCKSTEP_SHUTDOWN_GRACE='%s' (expected a "
			      "duration like 10s)\n",
			      g);
		ms = 0;
	}
	return ms;
}

int lk_cmd_run(struct lk_cli *cli)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct lk_err err = LK_ERR_INIT;
	struct lk_daemon_opts dopts;
	enum lk_daemon_end end = LK_DAEMON_CLEAN;
	struct lk_job_lock *lock;
	struct lk_store *store;
	char host[256] = "";
	int64_t restarts = 0;
	int c, code = 0;

	while ((c = getopt_long(cli->argc, cli->argv, "", opts, NULL)) != -1) {
		if (c == 'h')
			return fputs(help, stdout) < 0;
		return fputs(help, stderr), LK_EXIT_USAGE;
	}
	if (optind != cli->argc)
		return fputs(help, stderr), LK_EXIT_USAGE;
	if (lk_sched_check_config(cli->cfg, &err) < 0) {
		(void)fprintf(stderr, "%s\n", err.msg);
		return LK_EXIT_CONFIG;
	}
	store = lk_cli_open_store(cli, &code);
	if (!store)
		return code;
	lock = lk_store_daemon_lock(store, &err);
	if (!lock) {
		lk_store_close(store);
		return lk_cli_fail(&err);
	}
	memset(&dopts, 0, sizeof(dopts));
	dopts.config_path = cli->config_path;
	dopts.instance = instance_name(cli->cfg, host, sizeof(host));
	dopts.stop = &lk_cli_stop;
	dopts.reload = &lk_cli_reload;
	dopts.grace_ms = grace_ms();
	if (lk_store_instance_start(store, dopts.instance, &restarts, &err) < 0)
		code = lk_cli_fail(&err);
	dopts.restarts = restarts;
	lk_store_close(store); /* the daemon opens its own handles */
	if (code == 0 && lk_daemon_run(&cli->cfg, &dopts, &end, &err) < 0)
		code = lk_cli_fail(&err);
	if (end == LK_DAEMON_ABANDONED) {
		/* Threads still run: leave without freeing what they use. */
		(void)fflush(NULL);
		_exit(0);
	}
	lk_store_job_unlock(lock);
	return code;
}
