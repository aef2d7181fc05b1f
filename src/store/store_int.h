/* store_int.h - declarations shared inside src/store/. */
#ifndef LK_STORE_INT_H
#define LK_STORE_INT_H

#include "store.h"

struct lk_migration {
	int version;
	const char *name;
	const char *sql;
};

const struct lk_migration *lk_store_migration_list(enum lk_db_kind kind, int *n);

struct lk_store {
	struct lk_dbconf conf; /* a synthetic database entry for the store */
	char name[8];	       /* "state": conf.name points here */
	struct lk_db db;
	enum lk_db_kind kind;
	const char *prefix; /* "lockstep_" or "lockstep." */
	char *lock_base;    /* SQLite: the state file path, base of lock file names */
	char *member;	    /* PostgreSQL: the lease holder this handle's job locks act for */
	int64_t lease_ms, renew_ms; /* cluster.lease and cluster.renew */
	lk_run_observer observer;
	void *observer_arg;
	bool lost; /* PostgreSQL: a statement lost the connection; the next one reconnects */
	/* deployment.c: the config's `deployment` ("" when not named), and the deployment
	 * once read or made ("" until then) */
	char named[LK_DEPLOYMENT_MAX + 1];
	char deployment[LK_DEPLOYMENT_MAX + 1];
};

/*
 * A command's own lease on one job (lease.c): taken for a member "cli@HOST#PID" when free
 * or expired (else LK_ERR_BUSY naming the holder), renewed by a thread, and set as the
 * handle's member; dropping it releases the lease and clears the member.
 */
struct lk_lease_keeper;
struct lk_lease_keeper *lk_lease_keeper_take(struct lk_store *s, const char *job,
					     struct lk_err *err);
void lk_lease_keeper_drop(struct lk_lease_keeper *k, struct lk_store *s);

/* A second handle on the same store (its own connection), for a helper thread. */
struct lk_store *lk_store_clone(const struct lk_store *s, struct lk_err *err);

/* exec() on the store connection (err not NULL); after a lost connection, reconnects first. */
int lk_store_exec(struct lk_store *s, const char *sql, int n, const char *const *params,
		  struct lk_rows *out, struct lk_err *err);

#endif
