/*
 * pg_types.h - a PostgreSQL target made from a PostgreSQL source gets the source's types
 * (docs/types.md, "Types lockstep creates"): what each column's type becomes on the
 * target, and the enum, range and other types made there first.
 */
#ifndef LK_PG_TYPES_H
#define LK_PG_TYPES_H

#include "connector.h"

/*
 * PostgreSQL -> PostgreSQL: the type each source column gets on the target, as SQL text in
 * natives[i] (malloc'd, the caller frees each), after making on the target what that type
 * needs. `cols` are source columns as pg describe filled them (name, native, attnum ...),
 * of table src_table on connection src; dst is the target connection, dst_db its config name
 * (for messages). Runs its DDL on dst outside any transaction of the caller (autocommit), each
 * statement with a short lock_timeout (2 s) retried a few times.
 * Returns 0, or -1 with LK_ERR_SCHEMA (not transient) and a message saying exactly what to do
 * (which extension to CREATE EXTENSION on which database, ...). Everything it refuses is
 * refused before it makes anything. natives NULL: only those checks, no DDL (check-config).
 */
int lk_pg_target_types(struct lk_conn *src, struct lk_conn *dst, const struct lk_tref *src_table,
		       const struct lk_column *cols, int ncols, const char *dst_db, char **natives,
		       struct lk_err *err);
/*
 * Before each run of a PostgreSQL -> PostgreSQL job: for each pair (source column scols[i],
 * target column tcols[i]) whose source type is an enum (or holds one: array, domain, range,
 * composite) and whose target column has an enum type of the same schema and name, adds on the
 * target the labels the source has and the target lacks, in the source's order (ALTER TYPE ... ADD
 * VALUE ... BEFORE/AFTER, autocommit, lock_timeout as above). Target labels the source lacks are
 * left alone.
 */
int lk_pg_sync_enum_labels(struct lk_conn *src, struct lk_conn *dst, const struct lk_column *scols,
			   const struct lk_column *tcols, int n, const char *dst_db,
			   struct lk_err *err);

#endif
