/*
 * cdc.h - change capture on a source (SPEC §4 realtime, DESIGN decisions 1-4).
 *
 * The changelog holds keys, not row images: (seq, xid, relid, key, op), the key
 * as a JSON array of its values as text in key order (bytes as hex), spelled as
 * lockstep's own sessions print them whatever the writer's settings (PostgreSQL: the
 * capture function pins them). The applier reads entries from finished transactions
 * only, then asks the source for the current rows of their keys (the connector's
 * ordinal fetch: the source, not a comparison of spellings, says which key has a row);
 * replays and reordering therefore converge.
 *
 * PostgreSQL: schema lockstep_cdc (changelog, tables, consumers, meta), row and
 * TRUNCATE triggers, a statement-level NOTIFY on channel "lockstep_cdc_<relid>".
 * Entries are read by transaction horizon: in one REPEATABLE READ transaction
 * h = pg_snapshot_xmin(pg_current_snapshot()); every transaction with xid < h has
 * finished, so entries with xid < h are final.
 *
 * SQLite: tables lockstep_cdc_changelog / _tables / _consumers / _meta and row
 * triggers; SQLite serialises writers, so `seq` alone is an exact position (xid
 * and horizon stay 0). Woken by polling PRAGMA data_version.
 *
 * Every call runs on the connection of its caller's thread.
 */
#ifndef LK_CDC_H
#define LK_CDC_H

#include "connector.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What change capture is installed for: one source table and its key columns. */
struct lk_cdc_table {
	const struct lk_tref *table;
	const char *const *key_cols;
	const enum lk_type *key_types;
	int nkey;
};

/*
 * A position in a changelog. PostgreSQL: every entry with xid < horizon and, when
 * xid > 0, every entry with (xid, seq) <= (xid, seq) is applied. SQLite: every entry
 * with seq <= seq is applied; horizon is 0 and xid is the stamp of entry seq (its at_ms,
 * which read() returns in the xid column; 0 when unknown), which tells a changelog that
 * went back and grew again from the one the position was taken in.
 */
struct lk_cdc_pos {
	int64_t horizon, xid, seq;
};

/* Columns of the rows cdc read() returns. */
enum { LK_CDC_XID, LK_CDC_SEQ, LK_CDC_OP, LK_CDC_KEY, LK_CDC_NCOLS };

/* Operation letters in the changelog: insert, update, delete, truncate. */
#define LK_CDC_OP_TRUNCATE 'T'
/*
 * A capture gap: changes of the table before this entry may be missing from the changelog
 * (its triggers were off; PostgreSQL: a row whose key the capture function could not read,
 * or key columns changed since it was made); its key column holds the reason as text. A
 * consumer re-snapshots when it reads one, as after a TRUNCATE; capture is whole after it.
 */
#define LK_CDC_OP_GAP 'G'

/* What `status` shows about a consumer. */
struct lk_cdc_lag {
	bool installed;	      /* the changelog exists on the source */
	bool registered;      /* the job is a registered consumer */
	int64_t pending;      /* entries of committed transactions not yet applied */
	double oldest_age_s;  /* age of the oldest pending entry; -1 when none */
	double horizon_age_s; /* how long the oldest open writing transaction has run; 0 if none */
	int holder_pid;	      /* its backend pid; 0 when none (SQLite: always 0) */
	double idle_s;	      /* since the consumer last advanced; -1 when not registered */
	int64_t entries;      /* changelog entries of this table, applied or not */
};

/*
 * Deployments (docs/operations.md, "Several deployments"): a consumer's name is its job's
 * identity "JOB@DEPLOYMENT"; a name without '@' is one an older lockstep registered.
 * What the `orphans` op below is asked: the consumers of `table` whose names are not in
 * keep[0..nkeep) (the identities of the asking config's jobs).
 */
struct lk_cdc_orphans_req {
	const struct lk_tref *table;
	const char *const *keep;
	int nkeep;
	bool remove;	   /* delete those rows (commits); else only list them */
	double min_held_s; /* remove: only consumers holding entries back, and idle, this long
			    * each (0: all) */
};

/* Columns of the rows the `orphans` op appends: the consumer's name, how long it has held
 * changelog entries back (seconds since the oldest entry it has not applied was written;
 * NULL when it holds none), and seconds since it last advanced. */
enum { LK_ORPHAN_NAME, LK_ORPHAN_HELD_S, LK_ORPHAN_IDLE_S, LK_ORPHAN_NCOLS };

struct lk_cdc_ops {
	/*
	 * Installs, idempotently and versioned, the changelog, the registry and the table's
	 * triggers, in one transaction that it commits. The caller must not be inside a
	 * transaction. Sets *relid (PostgreSQL: the table's oid; SQLite: its id in the
	 * tables registry). A table already captured with other key columns -> LK_ERR_CONFLICT;
	 * a missing privilege -> LK_ERR_PERMISSION naming it and the GRANT that fixes it.
	 * SQLite: a registered table whose triggers were missing (a rebuilt table) gets them
	 * back with an LK_CDC_OP_GAP entry in the same transaction.
	 * PostgreSQL: the table's capture function is remade in place when an older lockstep
	 * made it, or when its key columns changed since (renamed, dropped, retyped: then with
	 * an LK_CDC_OP_GAP entry); the changelog and the consumers' positions stay valid.
	 * PostgreSQL refuses, reading only the catalogue and before anything in lockstep_cdc
	 * runs: schema lockstep_cdc or an object in it owned by a role the session's is not a
	 * member of, or a trigger, rule or policy on its tables -> LK_ERR_PERMISSION naming
	 * the object, its owner and the fix; a table with inheritance children (INHERITS, not
	 * partitions: their writes fire no trigger of the parent) -> LK_ERR_SCHEMA. check and
	 * check_capture refuse the same; uninstall and lag refuse the ownership cases.
	 */
	int (*install)(struct lk_conn *c, const struct lk_cdc_table *t, int64_t *relid,
		       struct lk_err *err);

	/* Read-only: refuses (as install would) a table whose capture cannot be installed. */
	int (*check)(struct lk_conn *c, const struct lk_cdc_table *t, struct lk_err *err);

	/*
	 * Registers (or re-registers) job as a consumer of relid at the current horizon and
	 * commits; *h gets that position: PostgreSQL {xmin of a fresh snapshot, 0, 0};
	 * SQLite {0, 0, max(seq)}. Every change committed after the call is at or after *h.
	 */
	int (*register_consumer)(struct lk_conn *c, const char *job, int64_t relid,
				 struct lk_cdc_pos *h, struct lk_err *err);

	/* Sets *found when job is registered as a consumer of relid. */
	int (*consumer_get)(struct lk_conn *c, const char *job, int64_t relid, bool *found,
			    struct lk_err *err);

	/* Records that job has applied everything up to p (autocommit). */
	int (*consumer_advance)(struct lk_conn *c, const char *job, const struct lk_cdc_pos *p,
				struct lk_err *err);

	/*
	 * Opens a read transaction on c (PostgreSQL: REPEATABLE READ READ ONLY) and appends
	 * to out (ncols LK_CDC_NCOLS) up to max entries of relid after `from`, from finished
	 * transactions only, in (xid, seq) order. *h gets the current horizon (PostgreSQL) or
	 * 0. The transaction stays open: the caller reads the rows for the keys in it, then
	 * commits (or rolls back). PostgreSQL: fails (LK_ERR_SCHEMA, naming the table) when
	 * the table's key columns are no longer those its capture function was made for; the
	 * next install remakes it.
	 */
	int (*read)(struct lk_conn *c, int64_t relid, const struct lk_cdc_pos *from, int max,
		    struct lk_rows *out, int64_t *h, struct lk_err *err);

	/*
	 * The horizon a catch-up must reach to include every transaction that has begun
	 * writing by now (PostgreSQL: pg_snapshot_xmax of a fresh snapshot); 0 when any
	 * drained read is complete (SQLite).
	 */
	int (*catch_up_target)(struct lk_conn *c, int64_t *target, struct lk_err *err);

	/*
	 * Deletes up to max entries of relid that every consumer of relid has applied
	 * (autocommit); *deleted gets how many. Never touches a table without consumers.
	 */
	int (*prune)(struct lk_conn *c, int64_t relid, int max, int64_t *deleted,
		     struct lk_err *err);

	/*
	 * Other consumers of relid that have not advanced for stall_s seconds while entries
	 * wait for them: appends one row (job, idle seconds, pending) per consumer to out.
	 */
	int (*stalled)(struct lk_conn *c, int64_t relid, const char *self, double stall_s,
		       struct lk_rows *out, struct lk_err *err);

	/* Subscribes c to the table's wake-ups (PostgreSQL: LISTEN; SQLite: data_version). */
	int (*listen)(struct lk_conn *c, int64_t relid, struct lk_err *err);

	/*
	 * Waits up to timeout_ms for a wake-up on a connection that listen() subscribed.
	 * *woken tells whether one came (false on timeout). Connection loss -> -1, transient.
	 */
	int (*wait)(struct lk_conn *c, int timeout_ms, bool *woken, struct lk_err *err);

	/*
	 * Deregisters job. When no consumer of the table is left, drops its triggers, its
	 * functions and its entries; when no captured table is left, drops every lockstep
	 * change-capture object. Commits. *found: the job was registered; *dropped: the
	 * table's triggers were dropped; *all_gone: no lockstep object is left on the source.
	 * `t` names the table (used when the job was never registered).
	 */
	int (*uninstall)(struct lk_conn *c, const char *job, const struct lk_tref *t, bool *found,
			 bool *dropped, bool *all_gone, struct lk_err *err);

	/* Fills *out for job's consumer on table t (read-only; nothing installed is fine). */
	int (*lag)(struct lk_conn *c, const char *job, const struct lk_tref *t,
		   struct lk_cdc_lag *out, struct lk_err *err);

	/*
	 * Capture health and lineage (DESIGN decisions 13-14), for job at position pos on the
	 * table t captured as relid; at a run's start and periodically while it streams. The
	 * caller must not be inside a transaction.
	 * 1. Capture: when a trigger is missing or out of date, repairs it in a transaction
	 *    that also logs an LK_CDC_OP_GAP entry if changes may have gone unlogged (install
	 *    does the same). A cheap read-only look when all is well. PostgreSQL: compares
	 *    the signature recorded at install (lockstep's triggers on the table and its
	 *    partitions, their modes and catalogue row versions, the capture function, the
	 *    leaf partitions: pg_cdc_health.c); any change is repaired with a gap entry,
	 *    except a new partition holding no row older than its cloned trigger. Its
	 *    lineage is the timeline guard's (guard.c): gap stays empty.
	 * 2. Lineage: whether the changelog still holds the history pos was taken in. When not
	 *    (the source went back: a file restored from an older copy), writes why into gap
	 *    (one sentence, no final period) and the caller must re-snapshot; else gap[0] is
	 *    '\0'.
	 * NULL in an ops table: that source is not checked this way.
	 */
	int (*check_capture)(struct lk_conn *c, const struct lk_cdc_table *t, int64_t relid,
			     const char *job, const struct lk_cdc_pos *pos, char *gap,
			     size_t gap_size, struct lk_err *err);

	/*
	 * Upgrade in place: the consumer row of table t named `older` (the job's name, as an
	 * older lockstep registered it) is renamed `ident` when no row is named ident yet, so
	 * the first deployment that resumes the job goes on from it. *adopted: renamed now.
	 * Autocommit; nothing installed is fine.
	 */
	int (*adopt_consumer)(struct lk_conn *c, const char *older, const char *ident,
			      const struct lk_tref *t, bool *adopted, struct lk_err *err);

	/*
	 * Lists, or removes (q->remove), the consumers of q->table that belong to none of
	 * q->keep: one row per consumer (LK_ORPHAN_NCOLS columns) appended to out, the removed
	 * ones when removing. Removing never drops the table's triggers or entries (the next
	 * prune deletes what no remaining consumer needs); a removed consumer's job, if it
	 * runs again, finds its registry row gone and re-snapshots. Nothing installed: no rows.
	 */
	int (*orphans)(struct lk_conn *c, const struct lk_cdc_orphans_req *q, struct lk_rows *out,
		       struct lk_err *err);
};

extern const struct lk_cdc_ops lk_pg_cdc_ops;
extern const struct lk_cdc_ops lk_sqlite_cdc_ops;

/* PostgreSQL's adopt_consumer and orphans (pg_cdc_orphans.c), for lk_pg_cdc_ops. */
int lk_pg_cdc_adopt(struct lk_conn *c, const char *older, const char *ident,
		    const struct lk_tref *t, bool *adopted, struct lk_err *err);
int lk_pg_cdc_orphans(struct lk_conn *c, const struct lk_cdc_orphans_req *q, struct lk_rows *out,
		      struct lk_err *err);

/* The change-capture ops for a connector (by its ops table). */
const struct lk_cdc_ops *lk_cdc_for(const struct lk_connector_ops *ops);

#endif
