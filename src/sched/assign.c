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

struct order {
	int job;
	int neligible;
};

static int cmp_order(const void *a, const void *b)
{
	const struct order *x = a, *y = b;

	if (x->neligible != y->neligible)
		return x->neligible < y->neligible ? -1 : 1;
	return x->job < y->job ? -1 : x->job > y->job;
}

void lk_assign(const char *const *jobs, int njobs, const char *const *members, int nmembers,
	       const bool *eligible, int *owner)
{
	int cap = nmembers > 0 ? (njobs + nmembers - 1) / nmembers : 0;
	int *count = calloc((size_t)(nmembers > 0 ? nmembers : 1), sizeof(*count));
	struct order *ord = calloc((size_t)(njobs > 0 ? njobs : 1), sizeof(*ord));

	for (int j = 0; j < njobs; j++) {
		owner[j] = -1;
		if (!ord)
			continue;
		ord[j].job = j;
		ord[j].neligible = nmembers;
		for (int m = 0; eligible && m < nmembers; m++)
			ord[j].neligible -= !eligible[(size_t)j * (size_t)nmembers + (size_t)m];
	}
	if (ord)
		qsort(ord, (size_t)njobs, sizeof(*ord), cmp_order);
	for (int k = 0; k < njobs && count && ord; k++) {
		int j = ord[k].job, over = -1;
		uint64_t best = 0, best_over = 0;

		for (int m = 0; m < nmembers; m++) {
			uint64_t h;

			if (eligible && !eligible[(size_t)j * (size_t)nmembers + (size_t)m])
				continue;
			h = score(jobs[j], members[m]);
			if (count[m] < cap) {
				if (owner[j] < 0 || h > best) {
					owner[j] = m;
					best = h;
				}
			} else if (over < 0 || count[m] < count[over] ||
				   (count[m] == count[over] && h > best_over)) {
				over = m;
				best_over = h;
			}
		}
		if (owner[j] < 0)
			owner[j] = over;
		if (owner[j] >= 0)
			count[owner[j]]++;
	}
	free(ord);
	free(count);
}
