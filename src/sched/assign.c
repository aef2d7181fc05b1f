/* assign.c - balanced rendezvous hashing of jobs onto instances. */
#include "assign.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t score(const char *job, const char *member)
{
	XXH64_state_t *st = XXH64_createState();
	uint64_t h;

	(void)XXH64_reset(st, 0x6c6f636b73746570ULL);
	(void)XXH64_update(st, job, strlen(job) + 1); /* the NUL separates the two names */
	(void)XXH64_update(st, member, strlen(member));
	h = XXH64_digest(st);
	XXH64_freeState(st);
	return h;
}

void lk_assign(const char *const *jobs, int njobs, const char *const *members, int nmembers,
	       int *owner)
{
	int cap = nmembers > 0 ? (njobs + nmembers - 1) / nmembers : 0;
	int *count = calloc((size_t)(nmembers > 0 ? nmembers : 1), sizeof(*count));

	for (int j = 0; j < njobs; j++) {
		uint64_t best = 0;

		owner[j] = -1;
		for (int m = 0; m < nmembers && count; m++) {
			uint64_t h = score(jobs[j], members[m]);

			if (count[m] < cap && (owner[j] < 0 || h > best)) {
				owner[j] = m;
				best = h;
			}
		}
		if (owner[j] >= 0)
			count[owner[j]]++;
	}
	free(count);
}
