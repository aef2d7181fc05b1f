/*
 * migrations.c - the state store's schema, embedded and versioned per dialect.
 * Never edit an applied migration: its checksum is recorded, and a changed one
 * stops the start. Add a new version instead.
 */
#include "store_int.h"

static const struct lk_migration sqlite_migrations[] = {
	{1, "initial",
	 "CREATE TABLE lockstep_instances (name TEXT PRIMARY KEY, restarts INTEGER NOT NULL,"
	 " started_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL);"
	 "CREATE TABLE lockstep_runs (id TEXT PRIMARY KEY, job TEXT NOT NULL, type TEXT NOT NULL,"
	 " status TEXT NOT NULL, stage TEXT, progress REAL, rows_read INTEGER NOT NULL DEFAULT 0,"
	 " rows_written INTEGER NOT NULL DEFAULT 0, rows_failed INTEGER NOT NULL DEFAULT 0,"
	 " total_estimate INTEGER, started_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
	 " finished_ms INTEGER, error TEXT, epoch INTEGER NOT NULL DEFAULT 0);"
	 "CREATE INDEX lockstep_runs_job ON lockstep_runs (job, started_ms);"
	 "CREATE TABLE lockstep_positions (job TEXT PRIMARY KEY, epoch INTEGER NOT NULL,"
	 " pos TEXT NOT NULL, updated_ms INTEGER NOT NULL);"
	 "CREATE TABLE lockstep_leases (job TEXT PRIMARY KEY, holder TEXT,"
	 " epoch INTEGER NOT NULL DEFAULT 0, expires_ms INTEGER);"
	 "CREATE TABLE lockstep_errors (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,"
	 " key TEXT NOT NULL, change TEXT NOT NULL, op TEXT NOT NULL, sqlstate TEXT, message TEXT,"
	 " row TEXT, attempts INTEGER NOT NULL DEFAULT 1, created_ms INTEGER NOT NULL,"
	 " resolved_ms INTEGER, UNIQUE (job, key, change));"
	 "CREATE TABLE lockstep_usage_daily (day TEXT NOT NULL, job TEXT NOT NULL, db TEXT NOT "
	 "NULL,"
	 " runs INTEGER NOT NULL DEFAULT 0, rows INTEGER NOT NULL DEFAULT 0,"
	 " queries INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (day, job, db));"},
	{2, "schedules",
	 "CREATE TABLE lockstep_schedules (job TEXT PRIMARY KEY, spec TEXT NOT NULL,"
	 " next_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
	 "CREATE INDEX lockstep_runs_finished ON lockstep_runs (finished_ms);"
	 "ALTER TABLE lockstep_instances ADD COLUMN health TEXT;"
	 "ALTER TABLE lockstep_instances ADD COLUMN detail TEXT;"},
	{3, "members",
	 "CREATE TABLE lockstep_members (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
	 " started_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL,"
	 " stopping INTEGER NOT NULL DEFAULT 0);"},
	{4, "member labels",
	 "ALTER TABLE lockstep_members ADD COLUMN labels TEXT NOT NULL DEFAULT '';"},
	{5, "deployment",
	 "CREATE TABLE lockstep_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
	 " updated_ms INTEGER NOT NULL);"},
};

static const struct lk_migration pg_migrations[] = {
	{1, "initial",
	 "CREATE TABLE lockstep.instances (name text PRIMARY KEY, restarts bigint NOT NULL,"
	 " started_ms bigint NOT NULL, seen_ms bigint NOT NULL);"
	 "CREATE TABLE lockstep.runs (id text PRIMARY KEY, job text NOT NULL, type text NOT NULL,"
	 " status text NOT NULL, stage text, progress double precision,"
	 " rows_read bigint NOT NULL DEFAULT 0, rows_written bigint NOT NULL DEFAULT 0,"
	 " rows_failed bigint NOT NULL DEFAULT 0, total_estimate bigint,"
	 " started_ms bigint NOT NULL, updated_ms bigint NOT NULL, finished_ms bigint, error text,"
	 " epoch bigint NOT NULL DEFAULT 0);"
	 "CREATE INDEX runs_job ON lockstep.runs (job, started_ms);"
	 "CREATE TABLE lockstep.positions (job text PRIMARY KEY, epoch bigint NOT NULL,"
	 " pos text NOT NULL, updated_ms bigint NOT NULL);"
	 "CREATE TABLE lockstep.leases (job text PRIMARY KEY, holder text,"
	 " epoch bigint NOT NULL DEFAULT 0, expires_at timestamptz);"
	 "CREATE TABLE lockstep.errors (id bigserial PRIMARY KEY, job text NOT NULL,"
	 " key text NOT NULL, change text NOT NULL, op text NOT NULL, sqlstate text, message text,"
	 " row text, attempts integer NOT NULL DEFAULT 1, created_ms bigint NOT NULL,"
	 " resolved_ms bigint, UNIQUE (job, key, change));"
	 "CREATE TABLE lockstep.usage_daily (day date NOT NULL, job text NOT NULL, db text NOT "
	 "NULL,"
	 " runs bigint NOT NULL DEFAULT 0, rows bigint NOT NULL DEFAULT 0,"
	 " queries bigint NOT NULL DEFAULT 0, PRIMARY KEY (day, job, db));"},
	{2, "schedules",
	 "CREATE TABLE lockstep.schedules (job text PRIMARY KEY, spec text NOT NULL,"
	 " next_ms bigint NOT NULL, updated_ms bigint NOT NULL);"
	 "CREATE INDEX runs_finished ON lockstep.runs (finished_ms);"
	 "ALTER TABLE lockstep.instances ADD COLUMN health text;"
	 "ALTER TABLE lockstep.instances ADD COLUMN detail text;"},
	{3, "members",
	 "CREATE TABLE lockstep.members (id text PRIMARY KEY, name text NOT NULL,"
	 " started_at timestamptz NOT NULL, seen_at timestamptz NOT NULL,"
	 " stopping boolean NOT NULL DEFAULT false);"},
	{4, "member labels",
	 "ALTER TABLE lockstep.members ADD COLUMN labels text NOT NULL DEFAULT '';"},
	{5, "deployment",
	 "CREATE TABLE lockstep.meta (key text PRIMARY KEY, value text NOT NULL,"
	 " updated_ms bigint NOT NULL);"},
};

const struct lk_migration *lk_store_migration_list(enum lk_db_kind kind, int *n)
{
	if (kind == LK_DB_POSTGRES) {
		*n = (int)(sizeof(pg_migrations) / sizeof(pg_migrations[0]));
		return pg_migrations;
	}
	*n = (int)(sizeof(sqlite_migrations) / sizeof(sqlite_migrations[0]));
	return sqlite_migrations;
}
