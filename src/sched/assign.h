/*
 * assign.h - which live instance should hold which job (SPEC §5: jobs spread across
 * instances). Pure: every instance computes the same answer from the same inputs.
 */
#ifndef LK_ASSIGN_H
#define LK_ASSIGN_H

#include <stdbool.h>

/*
 * Balanced rendezvous hashing. jobs and members must be sorted the same way by every
 * caller (byte order). Each job, in order, goes to the member with the highest hash of
 * (job, member) among those holding fewer than ceil(njobs / nmembers) jobs, so no member
 * gets more than that and a change of members moves few jobs. owner[j] is an index into
 * members, or -1 when no member may take it.
 *
 * eligible, when not NULL, is njobs rows of nmembers flags (run_on: job j may run on
 * member m when eligible[j * nmembers + m]). Jobs with fewer eligible members go first
 * (fewest first, then in order), so pinned jobs get their places before free ones fill
 * them; a job whose eligible members are all at the cap goes to the least loaded of them
 * (the cap then holds only for jobs free to go anywhere).
 */
void lk_assign(const char *const *jobs, int njobs, const char *const *members, int nmembers,
	       const bool *eligible, int *owner);

#endif
