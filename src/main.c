/* main.c - argv to the command table; nothing else. */
#include "cli/cli.h"

int main(int argc, char **argv)
{
	return lk_cli_main(argc, argv);
}
