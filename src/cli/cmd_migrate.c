/* cmd_migrate.c - `lockstep migrate [--status]`. */
#include "cli_int.h"

#include <stdio.h>
#include <string.h>

/* The state store's URL is shown with its password hidden (docs/security.md). */
static void print_migrated(const char *url, int applied)
{
	char shown[512];

	lk_redact_url(url, shown, sizeof(shown));
	(void)printf("state store %s: %d migration(s) applied, up to date\n", shown, applied);
}

int lk_cmd_migrate(struct lk_cli *cli)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_store *store;
	struct lk_rows rows;
	bool status = cli->argc > 1 && strcmp(cli->argv[1], "--status") == 0;
	int applied = 0, code = 0;

	if (cli->argc > 2 || (cli->argc == 2 && !status)) {
		(void)fputs("usage: lockstep migrate [--status]\n  Applies the state store's "
			    "pending migrations (--status: lists them).\n",
			    cli->argc == 2 && strcmp(cli->argv[1], "--help") == 0 ? stdout
										  : stderr);
		return cli->argc == 2 && strcmp(cli->argv[1], "--help") == 0 ? 0 : LK_EXIT_USAGE;
	}
	store = lk_store_open(cli->cfg, &err);
	if (!store)
		return lk_cli_fail(&err);
	if (!status) {
		if (lk_store_migrate(store, &applied, &err) < 0)
			code = lk_cli_fail(&err);
		else
			print_migrated(cli->cfg->state_url, applied);
		lk_store_close(store);
		return code;
	}
	lk_rows_init(&rows, 4);
	if (lk_store_migration_status(store, &rows, &err) < 0) {
		code = lk_cli_fail(&err);
	} else {
		(void)printf("%-8s %-20s %-18s %s\n", "version", "name", "checksum", "applied");
		for (int r = 0; r < rows.nrows; r++) {
			const struct lk_value *v = LK_ROW(&rows, r);
			char when[40] = "pending";
			long long ms = 0;

			if (!v[3].null && sscanf(v[3].p, "%lld", &ms) == 1)
				lk_cli_time(ms, when, sizeof(when));
			(void)printf("%-8s %-20s %-18s %s\n", v[0].p, v[1].p, v[2].p, when);
		}
	}
	lk_rows_release(&rows);
	lk_store_close(store);
	return code;
}
