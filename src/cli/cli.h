/*
 * cli.h - the command line (SPEC §2). Only cli/ prints to stdout or decides the
 * exit code; lower layers fill struct lk_err.
 */
#ifndef LK_CLI_H
#define LK_CLI_H

/* Parses global options, dispatches to a command, returns the process exit code. */
int lk_cli_main(int argc, char **argv);

#endif
