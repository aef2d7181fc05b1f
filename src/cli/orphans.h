/*
 * orphans.h - consumers of the config's source tables that belong to none of its jobs
 * (docs/operations.md, "Several deployments"): listed by `status` and `check-config`,
 * removed by `uninstall --orphans`.
 */
#ifndef LK_CLI_ORPHANS_H
#define LK_CLI_ORPHANS_H

#include "cli_int.h"

/* One orphaned consumer: where it is, whose it was, what it holds back. */
struct lk_orphan {
	const char *db;	     /* the config's name of the source database */
	const char *table;   /* the source table, as schema.name */
	const char *name;    /* the consumer's registry name ("JOB@DEPLOYMENT", or "JOB") */
	char job[128];	     /* the part before '@' */
	char deployment[64]; /* the part after '@'; "" for an older lockstep's row */
	double held_s;	     /* since its oldest unapplied entry was written; -1 when none */
	double idle_s;	     /* since it last advanced */
};

typedef void (*lk_orphan_cb)(void *arg, const struct lk_orphan *o);

/*
 * Calls cb for each consumer of the source tables of cfg's real-time jobs that is not one
 * of them in this deployment (lk_store_idents), database by database (one connection try
 * each). remove: deletes them too (cb sees the removed ones). A database that cannot be
 * reached or read: err set, -1, after the others were done. Main thread.
 */
int lk_cli_orphans(struct lk_cli *cli, struct lk_store *store, bool remove, lk_orphan_cb cb,
		   void *arg, struct lk_err *err);

/* Appends "JOB of deployment D, holding entries back for N s" (text form) to out. */
void lk_orphan_describe(const struct lk_orphan *o, char *out, size_t size);

#endif
