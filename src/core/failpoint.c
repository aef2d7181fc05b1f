/* failpoint.c - LK_FAILPOINT crash points. */
#include "failpoint.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long hits;
static atomic_bool checked;

/* Every point the code passes; a misspelt LK_FAILPOINT would otherwise never fire. */
static const char *const known[] = {"after_target_commit",
				    "mid_copy",
				    "between_pages",
				    "mid_prune",
				    "after_seal",
				    "mid_bisection",
				    "after_dead_letter_insert",
				    "before_batch",
				    "before_register"};

static void check_name(const char *spec, size_t n)
{
	if (atomic_exchange(&checked, true))
		return;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strlen(known[i]) == n && strncmp(spec, known[i], n) == 0)
			return;
	}
	(void)fprintf(stderr, "lockstep: warning: LK_FAILPOINT names no known point: '%.*s'\n",
		      (int)n, spec);
}

void lk_failpoint(const char *name)
{
	const char *spec = getenv("LK_FAILPOINT");
	const char *at, *stop;
	size_t n;
	long want = 1, hit;

	if (!spec || !*spec)
		return;
	stop = strstr(spec, ":stop");
	if (stop && stop[5])
		stop = NULL;
	at = strchr(spec, '@');
	n = at ? (size_t)(at - spec) : stop ? (size_t)(stop - spec) : strlen(spec);
	check_name(spec, n);
	if (strlen(name) != n || strncmp(spec, name, n) != 0)
		return;
	if (at) {
		char *end;

		want = strtol(at + 1, &end, 10);
		if ((*end && end != stop) || want < 1)
			want = 1;
	}
	hit = atomic_fetch_add(&hits, 1) + 1;
	if (hit < want || (stop && hit > want))
		return;
	if (stop) {
		(void)fprintf(stderr, "lockstep: failpoint %s reached, stopping\n", name);
		(void)fflush(stderr);
		(void)raise(SIGSTOP); /* until SIGCONT */
		return;
	}
	(void)fprintf(stderr, "lockstep: failpoint %s reached, aborting\n", name);
	(void)fflush(stderr);
	(void)signal(SIGABRT, SIG_DFL);
	_exit(134); /* like a crash: no atexit handlers, no flushing of our own state */
}
