/* cli.c - global options, the command table, and helpers every command uses. */
#include "cli.h"

#include "cli_int.h"
#include "core/units.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile bool lk_cli_stop;
volatile sig_atomic_t lk_cli_reload;

enum { LK_NEEDS_CONFIG = 1 };

struct cli_cmd {
	const char *name;
	int (*fn)(struct lk_cli *cli);
	int flags;
	const char *summary;
};

static const struct cli_cmd commands[] = {
	{"sync", lk_cmd_sync, LK_NEEDS_CONFIG, "sync JOB [--full] [--json]  one run of JOB now"},
	{"verify", lk_cmd_verify, LK_NEEDS_CONFIG,
	 "verify JOB [--json]         compare source and target"},
	{"check-config", lk_cmd_check_config, LK_NEEDS_CONFIG,
	 "check-config                validate the config, databases, tables and columns"},
	{"migrate", lk_cmd_migrate, LK_NEEDS_CONFIG,
	 "migrate [--status]          apply (or list) the state store's migrations"},
	{"status", lk_cmd_status, LK_NEEDS_CONFIG,
	 "status [--json]             jobs, their last runs, this deployment, orphans"},
	{"run", lk_cmd_run, LK_NEEDS_CONFIG,
	 "run                         the daemon: every job on its schedule until SIGTERM"},
	{"errors", lk_cmd_errors, LK_NEEDS_CONFIG,
	 "errors list|show ID|replay ID|resolve ID  the dead-letter queue"},
	{"uninstall", lk_cmd_uninstall, LK_NEEDS_CONFIG,
	 "uninstall JOB | --orphans   remove a job's change capture, or abandoned consumers"},
	{"demo", lk_cmd_demo, 0, "demo [--once]               the embedded SQLite quickstart"},
	{"version", lk_cmd_version, 0, "version                     print the version"},
};

static void usage(FILE *f)
{
	(void)fprintf(f, "usage: lockstep [-c FILE] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		(void)fprintf(f, "  %s\n", commands[i].summary);
	(void)fprintf(f, "\nThe config is -c FILE, else $LOCKSTEP_CONFIG, else ./lockstep.yaml.\n"
			 "Exit codes: 0 ok, 1 a run failed or verify found differences, 2 usage,\n"
			 "69 a database stayed unreachable, 75 another process holds the job,\n"
			 "78 invalid config. 'lockstep COMMAND --help' for a command's options.\n");
}

static void on_hup(int sig)
{
	(void)sig;
	lk_cli_reload = 1;
}

static void on_signal(int sig)
{
	if (lk_flag(&lk_cli_stop)) {
		(void)signal(sig, SIG_DFL); /* a second signal: exit at once */
		(void)raise(sig);
		return;
	}
	lk_flag_set(&lk_cli_stop, true);
}

void lk_cli_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	(void)sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_hup;
	(void)sigaction(SIGHUP, &sa, NULL);
	(void)signal(SIGPIPE, SIG_IGN);
}

int lk_cli_fail(const struct lk_err *err)
{
	(void)fprintf(stderr, "lockstep: %s\n", err->msg);
	if (err->code == LK_ERR_UNAVAILABLE && strstr(err->msg, "database"))
		(void)fprintf(stderr, "hint: check the database URL, that the server runs, and "
				      "the network; retries are set by the job's retry:\n");
	return lk_err_exit_code(err);
}

int lk_cli_load_config(struct lk_cli *cli)
{
	struct lk_err err = LK_ERR_INIT;

	cli->cfg = lk_config_load(cli->config_path, &err);
	if (!cli->cfg) {
		(void)fprintf(stderr, "%s\n", err.msg);
		return LK_EXIT_CONFIG;
	}
	lk_log_setup(cli->cfg->log.level, cli->cfg->log.format);
	return 0;
}

struct lk_store *lk_cli_open_store(struct lk_cli *cli, int *code)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_store *s = lk_store_open(cli->cfg, &err);

	if (s && lk_store_migrate(s, NULL, &err) == 0)
		return s;
	lk_store_close(s);
	*code = lk_cli_fail(&err);
	return NULL;
}

const struct lk_job *lk_cli_job(struct lk_cli *cli, const char *name, int *code)
{
	const struct lk_job *job = lk_config_job(cli->cfg, name);

	if (job)
		return job;
	(void)fprintf(stderr, "lockstep: no job named '%s' in %s; jobs:", name, cli->cfg->path);
	for (int i = 0; i < cli->cfg->njobs; i++)
		(void)fprintf(stderr, " %s", cli->cfg->jobs[i].name);
	(void)fprintf(stderr, "\n");
	*code = LK_EXIT_USAGE;
	return NULL;
}

void lk_cli_time(long long ms, char *out, unsigned size)
{
	if (ms <= 0) {
		out[0] = '\0';
		return;
	}
	lk_wall_format(ms, out, size);
}

int lk_cli_main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct lk_cli cli = {0};
	int c, rc;

	cli.config_path = getenv("LOCKSTEP_CONFIG");
	if (!cli.config_path || !*cli.config_path)
		cli.config_path = "lockstep.yaml";
	while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cli.config_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return LK_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return LK_EXIT_USAGE;
	}
	cli.argc = argc - optind;
	cli.argv = argv + optind;
	optind = 0; /* glibc: 0 re-initialises getopt for the command's own argv */
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(cli.argv[0], commands[i].name) != 0)
			continue;
		if ((commands[i].flags & LK_NEEDS_CONFIG) &&
		    !(cli.argc > 1 && strcmp(cli.argv[1], "--help") == 0)) {
			rc = lk_cli_load_config(&cli);
			if (rc)
				return rc;
		}
		lk_cli_signals();
		rc = commands[i].fn(&cli);
		lk_config_free(cli.cfg);
		return rc;
	}
	(void)fprintf(stderr, "lockstep: unknown command '%s'\n", cli.argv[0]);
	usage(stderr);
	return LK_EXIT_USAGE;
}
