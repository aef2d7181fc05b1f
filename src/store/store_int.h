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
	lk_run_observer observer;
	void *observer_arg;
};

/* exec() on the store connection. */
int lk_store_exec(struct lk_store *s, const char *sql, int n, const char *const *params,
		  struct lk_rows *out, struct lk_err *err);

#endif
