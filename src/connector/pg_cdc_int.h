/*
 * pg_cdc_int.h - declarations shared by pg_cdc.c (change capture on PostgreSQL) and
 * pg_cdc_health.c (capture health: the signature of capture as installed, checked).
 */
#ifndef LK_PG_CDC_INT_H
#define LK_PG_CDC_INT_H

#include "cdc.h"
#include "pg_int.h"

/* Serialises installs, uninstalls and repairs on one database (any constant of ours). */
#define CDC_LOCK "7154240"

/*
 * What health needs installed besides the base objects: columns capture_sig and
 * capture_sig_at of lockstep_cdc.tables and the functions of the triggers on a captured
 * table's partitions. Several statements; idempotent (an in-place upgrade).
 */
extern const char *const lk_pgc_health_objects;

/*
 * pg_cdc.c: (re)makes the table's capture function when it is out of date, or always when
 * remake (someone replaced it), and creates its missing triggers on the table itself.
 * Inside the install transaction (advisory lock held).
 */
int lk_pgc_repair(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t, int64_t relid,
		  bool remake, struct lk_err *err);

/*
 * The health pass, inside a transaction that holds the install lock: compares capture as
 * it is now (the table's and its partitions' lockstep triggers, their mode and catalogue
 * row versions, the capture function's, the set of leaf partitions) with the signature
 * recorded the last time, repairs it (lk_pgc_repair, ENABLE ALWAYS, the partitions'
 * triggers), logs one LK_CDC_OP_GAP entry saying why when changes may have gone unlogged,
 * and records the new signature. A table without a signature yet (a fresh install, or one
 * made by an older lockstep) gets one and no gap.
 */
int lk_pgc_health(struct lk_conn *c, const char *oid, const struct lk_cdc_table *t, int64_t relid,
		  struct lk_err *err);

/* The cdc op check_capture (cdc.h): one read-only query when capture is as recorded. */
int lk_pgc_check_capture(struct lk_conn *c, const struct lk_cdc_table *t, int64_t relid,
			 const char *job, const struct lk_cdc_pos *pos, char *gap, size_t gap_size,
			 struct lk_err *err);

/*
 * Refuses what would let another role run code with lockstep's rights, or what change
 * capture cannot follow, with one catalogue query that runs nothing of anyone's:
 *  - LK_ERR_PERMISSION: schema lockstep_cdc, or any object in it (tables, their indexes and
 *    sequences, functions, types, operators), is owned by a role that current_user is not
 *    a member of (pg_has_role MEMBER), or a table in it carries a trigger, rule or policy
 *    (lockstep makes none). The message names the object, its owner and the fix.
 *  - LK_ERR_SCHEMA: table oid (NULL: none) has inheritance children (INHERITS, not
 *    partitions), whose writes fire no trigger of the parent.
 * Called before lockstep reads or writes anything in
 * lockstep_cdc: install, check-config, the periodic check, uninstall and status.
 */
int lk_pgc_check_trust(struct lk_conn *c, const char *oid, struct lk_err *err);

/* Drops the triggers lockstep made on the partitions of table oid (those it owns). */
int lk_pgc_drop_part_triggers(struct lk_conn *c, const char *oid, struct lk_err *err);

#endif
