/*
 * sqlite_cdc_int.h - what SQLite change capture's two files share: sqlite_cdc.c (the
 * changelog, registry and row triggers) and sqlite_cdc_conflict.c (the rows that an
 * INSERT OR REPLACE or UPDATE OR REPLACE deletes through a uniqueness constraint).
 */
#ifndef LK_SQLITE_CDC_INT_H
#define LK_SQLITE_CDC_INT_H

#include "cdc.h"
#include "core/buf.h"

/*
 * Appends json_array() of the key of row `row` (NEW, OLD or a table alias of t), each
 * value as text the way the applier decodes it (sqlite_cdc.c tells how).
 */
void lk_sqlite_cdc_key_expr(struct lk_buf *b, const struct lk_cdc_table *t, const char *row);

/*
 * The conflict probes of a table: statements that log (op 'D') the key of every row that
 * the new row of an INSERT (ins) or an UPDATE (upd) conflicts with through a uniqueness
 * constraint (a UNIQUE or PRIMARY KEY constraint, a unique index, partial or on
 * expressions, the rowid) that could remove a row with another key. SQLite fires no
 * DELETE trigger for the rows a REPLACE removes unless the writer turned on PRAGMA
 * recursive_triggers; a BEFORE trigger running these sees them before they go. Each
 * statement is complete, without its final ';'. n is 0 when no constraint can remove a
 * row with another key (the common `id INTEGER PRIMARY KEY` table needs no probe).
 */
struct lk_sqlite_probes {
	char **ins, **upd; /* n statements each, owned */
	int n;
};

/*
 * Fills *out for table t (its relid in the registry) from the table's current schema.
 * A unique index on an expression whose definition lockstep cannot read -> LK_ERR_SCHEMA
 * naming it (out is then empty). The caller releases out in every case.
 */
int lk_sqlite_cdc_probes(struct lk_conn *c, const struct lk_cdc_table *t, int64_t relid,
			 struct lk_sqlite_probes *out, struct lk_err *err);
void lk_sqlite_cdc_probes_release(struct lk_sqlite_probes *p);

#endif
