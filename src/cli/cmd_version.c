/* cmd_version.c - `lockstep version`. */
#include "cli_int.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>

int lk_cmd_version(struct lk_cli *cli)
{
	(void)cli;
	(void)printf("lockstep %s (libpq %d, sqlite %s)\n", LK_VERSION, PQlibVersion(),
		     sqlite3_libversion());
	return 0;
}
