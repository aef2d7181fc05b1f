/*
 * sqlscan.h - finds transaction control in an `sql` job's script.
 *
 * An sql job runs its script inside lockstep's own transaction, whose first statement is
 * the fenced position update (jobs.h): a COMMIT or ROLLBACK in the script would end that
 * transaction, and the statements after it would run outside the fence (a stale holder's
 * run could then change data). Such scripts are refused before they run.
 */
#ifndef LK_SCHED_SQLSCAN_H
#define LK_SCHED_SQLSCAN_H

#include <stddef.h>

/*
 * Looks at the first word of each statement of sql (PostgreSQL or SQLite syntax) and
 * returns the first one that controls the transaction (BEGIN, START, COMMIT, END,
 * ROLLBACK, ABORT), copied upper-case into out (size >= 16), or NULL when there is none.
 * Quoted strings and identifiers, dollar-quoted bodies and comments are skipped; a BEGIN
 * that opens a body inside a statement (a trigger's BEGIN ... END, a function's BEGIN
 * ATOMIC ... END) does not end the statement at its semicolons; ROLLBACK TO a savepoint,
 * SAVEPOINT and RELEASE are allowed (they stay inside the transaction).
 */
const char *lk_sql_txn_control(const char *sql, char *out, size_t out_size);

#endif
