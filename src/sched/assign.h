/*
 * assign.h - which live instance should hold which job (SPEC §5: jobs spread across
 * instances). Pure: every instance computes the same answer from the same inputs.
 */
#ifndef LK_ASSIGN_H
#define LK_ASSIGN_H

/*
 * Balanced rendezvous hashing. jobs and members must be sorted the same way by every
 * caller (byte order). Each job, in order, goes to the member with the highest hash of
 * (job, member) among those holding fewer than ceil(njobs / nmembers) jobs, so no member
 * gets more than that and a change of members moves few jobs. owner[j] is an index into
 * members, or -1 when there are no members.
 */
void lk_assign(const char *const *jobs, int njobs, const char *const *members, int nmembers,
	       int *owner);

#endif
