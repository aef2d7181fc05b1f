/*
 * test_apply.c - one batch, one target transaction (src/sync/apply.c): bisection of
 * rejected rows into dead letters, errors at COMMIT, errors that must not be bisected,
 * and fencing. Real SQLite databases in a temporary folder: the job is prepared, locked
 * and sealed as a run does it, the dead letters go to a real SQLite state store.
 */
/* cmocka.h needs these four headers first. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "connector/sqlite_int.h"
#include "core/buf.h"
#include "core/err.h"
#include "store/deadletters.h"
#include "store/store.h"
#include "sync/sync_int.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every case syncs source table t into target table t; the target's DDL varies. */
#define SRC_DDL "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, p INTEGER, note TEXT)"
#define NCOLS 4
/* A target rejecting v < 0 (CHECK constraint v_ok). */
#define DST_CHECK                                                                                  \
	"CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER CONSTRAINT v_ok CHECK (v >= 0),"        \
	" p INTEGER, note TEXT)"
#define CHECK_MSG "CHECK constraint failed: v_ok"

/*
 * Statements the target connection started, by kind: a trace on its sqlite3 handle (it
 * replaces the connector's, which only feeds the `counters` op).
 */
struct stmt_log {
	int begins, commits, rollbacks, savepoints, savepoint_rollbacks, releases;
};

struct fx {
	char dir[64];
	struct lk_config *cfg;
	struct lk_store *store;
	struct lk_job_ctx ctx;
	struct lk_job_lock *lock;
	bool prepared, dl_set;
	struct stmt_log log;
};

/* ---- the fixture: a run's setup, step by step ---- */

static int on_stmt(unsigned type, void *arg, void *stmt, void *sql)
{
	struct stmt_log *l = arg;
	const char *s = sql;

	(void)type;
	(void)stmt;
	if (!s || (s[0] == '-' && s[1] == '-')) /* a trigger's program */
		return 0;
	if (strncmp(s, "BEGIN", 5) == 0)
		l->begins++;
	else if (strcmp(s, "COMMIT") == 0)
		l->commits++;
	else if (strcmp(s, "ROLLBACK") == 0)
		l->rollbacks++;
	else if (strncmp(s, "SAVEPOINT", 9) == 0)
		l->savepoints++;
	else if (strncmp(s, "ROLLBACK TO", 11) == 0)
		l->savepoint_rollbacks++;
	else if (strncmp(s, "RELEASE", 7) == 0)
		l->releases++;
	return 0;
}

static struct lk_conn *open_file(const struct fx *f, const char *name)
{
	char path[128];
	struct lk_dbconf conf = {.kind = LK_DB_SQLITE, .path = path};
	struct lk_err err = LK_ERR_INIT;
	struct lk_conn *c;

	(void)snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	c = lk_sqlite_ops.open(&conf, &err);
	if (!c)
		fail_msg("open %s: %s", path, err.msg);
	return c;
}

static void run_sql(struct lk_conn *c, const char *sql)
{
	struct lk_err err = LK_ERR_INIT;

	if (lk_sqlite_ops.exec(c, sql, 0, NULL, NULL, NULL, &err) < 0)
		fail_msg("%s: %s", sql, err.msg);
}

static void exec_file(const struct fx *f, const char *name, const char *sql)
{
	struct lk_conn *c = open_file(f, name);

	run_sql(c, sql);
	lk_sqlite_ops.close(c);
}

/* The first value of the first row `sql` returns in file `name` ("NULL" for NULL),
 * read on a connection of its own: what is committed. */
static char *query1(const struct fx *f, const char *name, const char *sql)
{
	struct lk_conn *c = open_file(f, name);
	struct lk_err err = LK_ERR_INIT;
	struct lk_rows out;
	char *s;

	lk_rows_init(&out, 0);
	if (lk_sqlite_ops.exec(c, sql, 0, NULL, &out, NULL, &err) < 0)
		fail_msg("%s: %s", sql, err.msg);
	assert_true(out.nrows >= 1);
	s = strdup(LK_ROW(&out, 0)[0].null ? "NULL" : LK_ROW(&out, 0)[0].p);
	lk_rows_release(&out);
	lk_sqlite_ops.close(c);
	return s;
}

static void assert_query(const struct fx *f, const char *name, const char *sql, const char *want)
{
	char *got = query1(f, name, sql);
	char msg[600];
	bool same = strcmp(got, want) == 0;

	(void)snprintf(msg, sizeof(msg), "%s: got '%s', want '%s'", sql, got, want);
	free(got);
	if (!same)
		fail_msg("%s", msg);
}

/* The committed keys of the target table, in order, "1,2,5" ("NULL" when empty). */
static void assert_target(const struct fx *f, const char *want)
{
	assert_query(f, "dst.db",
		     "SELECT group_concat(id, ',') FROM (SELECT id FROM t ORDER BY id)", want);
}

/* The target's committed position row of job j: "EPOCH POS". */
static void assert_position(const struct fx *f, int64_t epoch, const char *pos)
{
	char want[256];

	(void)snprintf(want, sizeof(want), "%lld %s", (long long)epoch, pos);
	assert_query(f, "dst.db",
		     "SELECT epoch || ' ' || pos FROM lockstep_sync_position WHERE job = 'j'",
		     want);
}

/*
 * The job's dead letters in the store, in id order, one "KEY OP SQLSTATE CHANGE ATTEMPTS
 * open|resolved" line each, joined by "; " ("" when none), read on a store handle of its
 * own (what is committed).
 */
static void assert_dead(const struct fx *f, const char *want)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_buf b = LK_BUF_INIT;
	struct lk_store *s = lk_store_open(f->cfg, &err);
	struct lk_rows out;

	if (!s)
		fail_msg("store: %s", err.msg);
	lk_rows_init(&out, 0);
	if (lk_store_dl_list(s, "j", true, 1000, &out, NULL, &err) < 0)
		fail_msg("dead letters: %s", err.msg);
	for (int r = 0; r < out.nrows; r++) {
		const struct lk_value *v = LK_ROW(&out, r);

		lk_buf_addf(&b, "%s%s %s %s %s %s %s", r ? "; " : "", v[LK_DLCOL_KEY].p,
			    v[LK_DLCOL_OP].p,
			    v[LK_DLCOL_SQLSTATE].null ? "-" : v[LK_DLCOL_SQLSTATE].p,
			    v[LK_DLCOL_CHANGE].p, v[LK_DLCOL_ATTEMPTS].p,
			    v[LK_DLCOL_RESOLVED].null ? "open" : "resolved");
	}
	lk_rows_release(&out);
	lk_store_close(s);
	if (strcmp(b.buf, want) != 0) {
		char msg[2048];

		(void)snprintf(msg, sizeof(msg), "dead letters: got '%s', want '%s'", b.buf, want);
		lk_buf_release(&b);
		fail_msg("%s", msg);
	}
	lk_buf_release(&b);
}

/* Message and row image of the dead letter of `key` (a JSON array) and op. */
static void assert_dead_detail(const struct fx *f, const char *key, const char *op,
			       const char *message, const char *row)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_store *s = lk_store_open(f->cfg, &err);
	struct lk_rows out, one;
	bool found = false;

	if (!s)
		fail_msg("store: %s", err.msg);
	lk_rows_init(&out, 0);
	lk_rows_init(&one, 0);
	if (lk_store_dl_list(s, "j", true, 1000, &out, NULL, &err) < 0)
		fail_msg("dead letters: %s", err.msg);
	for (int r = 0; r < out.nrows && !found; r++) {
		const struct lk_value *v = LK_ROW(&out, r);

		if (strcmp(v[LK_DLCOL_KEY].p, key) != 0 || strcmp(v[LK_DLCOL_OP].p, op) != 0)
			continue;
		found = true;
		if (lk_store_dl_get(s, strtoll(v[LK_DLCOL_ID].p, NULL, 10), &one, &err) < 0)
			fail_msg("dead letter: %s", err.msg);
		assert_int_equal(one.nrows, 1);
		assert_string_equal(LK_ROW(&one, 0)[LK_DLCOL_MESSAGE].p, message);
		assert_string_equal(LK_ROW(&one, 0)[LK_DLCOL_ROW].p, row);
	}
	lk_rows_release(&out);
	lk_rows_release(&one);
	lk_store_close(s);
	if (!found)
		fail_msg("no dead letter %s %s", op, key);
}

/*
 * Prepares job j (source src.db, target dst.db holding `dst_ddl`) as a run does: the
 * state store (state.db, or the target's own file when same_file) migrated, the job
 * prepared, locked and sealed with a new epoch, the dead-letter queue set up. Then traces
 * the target connection's statements into f->log.
 */
static void fx_open(struct fx *f, const char *dst_ddl, bool same_file)
{
	struct lk_err err = LK_ERR_INIT;
	char yaml[512], path[128];

	exec_file(f, "src.db", SRC_DDL);
	exec_file(f, "dst.db", dst_ddl);
	(void)snprintf(yaml, sizeof(yaml),
		       "state: sqlite:%s\n"
		       "databases:\n  src: sqlite:src.db\n  dst: sqlite:dst.db\n"
		       "jobs:\n  j:\n    source: {db: src, table: t}\n    target: {db: dst}\n",
		       same_file ? "dst.db" : "state.db");
	(void)snprintf(path, sizeof(path), "%s/lockstep.yaml", f->dir);
	f->cfg = lk_config_load_string(yaml, path, &err);
	if (!f->cfg)
		fail_msg("config: %s", err.msg);
	f->store = lk_store_open(f->cfg, &err);
	if (!f->store || lk_store_migrate(f->store, NULL, &err) < 0)
		fail_msg("store: %s", err.msg);
	f->prepared = true;
	if (lk_job_prepare(&f->ctx, f->cfg, &f->cfg->jobs[0], NULL, true, &err) < 0)
		fail_msg("prepare: %s", err.msg);
	assert_int_equal(f->ctx.ncols, NCOLS);
	f->lock = lk_job_lock_and_seal(&f->ctx, f->store, true, &err);
	if (!f->lock)
		fail_msg("seal: %s", err.msg);
	assert_true(f->ctx.epoch >= 1);
	f->dl_set = true;
	if (lk_dl_setup(&f->ctx, f->store, &err) < 0)
		fail_msg("dead-letter setup: %s", err.msg);
	assert_int_equal(f->ctx.dl_same_file, same_file);
	(void)sqlite3_trace_v2(f->ctx.dst.conn->db, SQLITE_TRACE_STMT, on_stmt, &f->log);
	assert_position(f, f->ctx.epoch, "{}");
}

static void fx_close(struct fx *f)
{
	if (f->dl_set)
		lk_dl_release(&f->ctx);
	if (f->prepared)
		lk_job_release(&f->ctx);
	lk_store_job_unlock(f->lock);
	lk_store_close(f->store);
	lk_config_free(f->cfg);
	f->dl_set = f->prepared = false;
	f->lock = NULL;
	f->store = NULL;
	f->cfg = NULL;
	memset(&f->ctx, 0, sizeof(f->ctx));
	memset(&f->log, 0, sizeof(f->log));
}

/* Empties the folder for the next fixture. */
static void clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		(void)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		(void)unlink(path);
	}
	closedir(d);
}

/* fx_close, then a clean folder: a case may try several fixtures in turn. */
static void fx_reset(struct fx *f)
{
	fx_close(f);
	clear_dir(f->dir);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/lk_test_apply_XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	(void)sqlite3_enable_shared_cache(0); /* a failed case may have left it on */
	fx_close(f);
	clear_dir(f->dir);
	(void)rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- batches ---- */

/* Appends row (id, v, p, note); NULL values are SQL NULL. */
static void add(struct lk_rows *r, const char *id, const char *v, const char *p, const char *note)
{
	const char *vals[NCOLS] = {id, v, p, note};

	lk_rows_add(r);
	for (int i = 0; i < NCOLS; i++) {
		if (vals[i])
			lk_rows_set(r, r->nrows - 1, i, vals[i], strlen(vals[i]));
	}
}

static void add_int(struct lk_rows *r, int id, int v)
{
	char ids[16], vs[16];

	(void)snprintf(ids, sizeof(ids), "%d", id);
	(void)snprintf(vs, sizeof(vs), "%d", v);
	add(r, ids, vs, NULL, NULL);
}

/* Applies one batch; returns lk_apply_commit's result. */
static int apply(struct fx *f, const struct lk_rows *up, const struct lk_rows *del, const char *pos,
		 struct lk_apply_counts *n, struct lk_err *err)
{
	struct lk_batch b = {.upserts = up, .deletes = del, .pos = pos, .change = "snapshot"};

	memset(&f->log, 0, sizeof(f->log));
	lk_err_clear(err);
	return lk_apply_commit(&f->ctx, &f->ctx.dl_sink, &b, n, err);
}

static void assert_counts(const struct lk_apply_counts *n, int64_t written, int64_t deleted,
			  int64_t dead)
{
	assert_int_equal(n->written, written);
	assert_int_equal(n->deleted, deleted);
	assert_int_equal(n->dead, dead);
}

/* A failed batch: no counts, the target connection out of its transaction. */
static void assert_failed(const struct fx *f, const struct lk_apply_counts *n)
{
	assert_counts(n, 0, 0, 0);
	assert_true(sqlite3_get_autocommit(f->ctx.dst.conn->db) != 0);
}

/* ---- 1. upserts rejected at scattered positions ---- */

/*
 * The documented bisection (docs/dead-letters.md): a range under a savepoint; when it holds
 * a rejected row it is rolled back and, unless single, split in halves. Counts the
 * savepoints and the rollbacks to one that rows lo..hi-1 cost.
 */
static void bisect_model(const bool *bad, int lo, int hi, int *savepoints, int *rollbacks)
{
	bool any = false;

	for (int i = lo; i < hi; i++)
		any = any || bad[i];
	(*savepoints)++;
	if (!any)
		return;
	(*rollbacks)++;
	if (hi - lo == 1)
		return;
	bisect_model(bad, lo, lo + (hi - lo) / 2, savepoints, rollbacks);
	bisect_model(bad, lo + (hi - lo) / 2, hi, savepoints, rollbacks);
}

/*
 * A batch of 16 upserts whose rows at `bad` (indexes) break the CHECK: exactly those are
 * dead letters (23514, kind upsert, the batch's change), the others land, the position
 * moves, and the bisection stays within its documented cost (2k log2(n/k) savepoints, plus
 * the whole range).
 */
static void check_rejected_upserts(struct fx *f, const int *bad, int nbad, const char *pos)
{
	const int n = 16;
	struct lk_buf keys = LK_BUF_INIT, dead = LK_BUF_INIT;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;
	bool is_bad[16] = {false};
	int want_sp = 0, want_rb = 0;

	fx_reset(f);
	fx_open(f, DST_CHECK, false);
	for (int i = 0; i < nbad; i++)
		is_bad[bad[i]] = true;
	lk_rows_init(&up, NCOLS);
	for (int i = 0; i < n; i++) {
		add_int(&up, i + 1, is_bad[i] ? -(i + 1) : i + 1);
		if (!is_bad[i])
			lk_buf_addf(&keys, "%s%d", keys.len ? "," : "", i + 1);
		else
			lk_buf_addf(&dead, "%s[\"%d\"] upsert 23514 snapshot 1 open",
				    dead.len ? "; " : "", i + 1);
	}
	if (apply(f, &up, NULL, pos, &c, &err) < 0)
		fail_msg("apply: %s", err.msg);
	assert_counts(&c, n - nbad, 0, nbad);
	assert_target(f, keys.len ? keys.buf : "NULL");
	assert_dead(f, dead.buf);
	assert_position(f, f->ctx.epoch, pos);
	/* one plain attempt, then one bisecting transaction; every savepoint ends */
	assert_int_equal(f->log.begins, 2);
	assert_int_equal(f->log.commits, 1);
	assert_int_equal(f->log.rollbacks, 1);
	bisect_model(is_bad, 0, n, &want_sp, &want_rb);
	assert_int_equal(f->log.savepoints, want_sp);
	assert_int_equal(f->log.savepoint_rollbacks, want_rb);
	assert_int_equal(f->log.releases, want_sp); /* each savepoint ends */
	/* the ctx's open keys: a later clean apply of a dead key resolves it */
	assert_int_equal(f->ctx.dl_nopen, nbad);
	lk_rows_release(&up);
	lk_buf_release(&keys);
	lk_buf_release(&dead);
}

static void rejected_upserts_at_scattered_positions(void **state)
{
	struct fx *f = *state;
	static const int first[] = {0}, last[] = {15}, pair[] = {6, 7}, edges[] = {0, 15},
			 mixed[] = {0, 4, 5, 9, 15}, pairs_at_ends[] = {0, 1, 14, 15};
	int all[16];

	for (int i = 0; i < 16; i++)
		all[i] = i;
	check_rejected_upserts(f, first, 1, "{\"b\":\"first\"}");
	check_rejected_upserts(f, last, 1, "{\"b\":\"last\"}");
	check_rejected_upserts(f, pair, 2, "{\"b\":\"pair\"}");
	check_rejected_upserts(f, edges, 2, "{\"b\":\"edges\"}");
	check_rejected_upserts(f, mixed, 5, "{\"b\":\"mixed\"}");
	check_rejected_upserts(f, pairs_at_ends, 4, "{\"b\":\"pairs\"}");
	check_rejected_upserts(f, all, 16, "{\"b\":\"all\"}");
}

/* A clean batch takes the happy path: one transaction, no savepoint, no dead letter. */
static void clean_batch_is_not_bisected(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, DST_CHECK, false);
	lk_rows_init(&up, NCOLS);
	for (int i = 1; i <= 5; i++)
		add_int(&up, i, i);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), 0);
	assert_counts(&c, 5, 0, 0);
	assert_target(f, "1,2,3,4,5");
	assert_dead(f, "");
	assert_position(f, f->ctx.epoch, "{\"b\":1}");
	assert_int_equal(f->log.begins, 1);
	assert_int_equal(f->log.commits, 1);
	assert_int_equal(f->log.rollbacks, 0);
	assert_int_equal(f->log.savepoints, 0);
	lk_rows_release(&up);
}

/*
 * Each SQLite rejection becomes a dead letter with PostgreSQL's SQLSTATE for it, the
 * target's message naming the key, and the row image; lockstep's own refusal (a value
 * the column would round) is dead-lettered too, without a bisection of its own.
 */
static void each_rejection_keeps_its_sqlstate_and_message(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	int want_sp = 0, want_rb = 0;

	fx_open(f,
		"CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL"
		" CONSTRAINT v_ok CHECK (v >= 0), p REAL UNIQUE, note TEXT);"
		"CREATE TRIGGER no_66 BEFORE INSERT ON t WHEN NEW.v = 66"
		" BEGIN SELECT RAISE(ABORT, 'v 66 is reserved'); END;"
		"INSERT INTO t VALUES (100, 1, 7, NULL)",
		false);
	lk_rows_init(&up, NCOLS);
	add(&up, "1", "1", NULL, NULL);
	add(&up, "2", "-2", NULL, NULL);	      /* CHECK: 23514 */
	add(&up, "3", NULL, NULL, NULL);	      /* NOT NULL: 23502 */
	add(&up, "4", "4", "7", NULL);		      /* UNIQUE (p = 7 is row 100's): 23505 */
	add(&up, "5", "66", NULL, NULL);	      /* RAISE(ABORT): P0001 */
	add(&up, "x6", "6", NULL, NULL);	      /* not an integer key: 22P02 */
	add(&up, "7", "7", "9007199254740993", NULL); /* 2^53 + 1: REAL would round, 22003 */
	add(&up, "8", "8", "8", NULL);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), 0);
	assert_counts(&c, 2, 0, 6);
	assert_target(f, "1,8,100");
	/* the target rejected rows 2..x6 (indexes 1..5); row 7 never reached it */
	bisect_model((const bool[8]){false, true, true, true, true, true, false, false}, 0, 8,
		     &want_sp, &want_rb);
	assert_int_equal(f->log.savepoints, want_sp);
	assert_int_equal(f->log.savepoint_rollbacks, want_rb);
	assert_dead(f,
		    "[\"2\"] upsert 23514 snapshot 1 open; [\"3\"] upsert 23502 snapshot 1 open; "
		    "[\"4\"] upsert 23505 snapshot 1 open; [\"5\"] upsert P0001 snapshot 1 open; "
		    "[\"x6\"] upsert 22P02 snapshot 1 open; [\"7\"] upsert 22003 snapshot 1 open");
	assert_dead_detail(f, "[\"2\"]", "upsert", "row (id=2): " CHECK_MSG,
			   "{\"id\":\"2\",\"v\":\"-2\",\"p\":null,\"note\":null}");
	assert_dead_detail(f, "[\"3\"]", "upsert", "row (id=3): NOT NULL constraint failed: t.v",
			   "{\"id\":\"3\",\"v\":null,\"p\":null,\"note\":null}");
	assert_dead_detail(f, "[\"4\"]", "upsert", "row (id=4): UNIQUE constraint failed: t.p",
			   "{\"id\":\"4\",\"v\":\"4\",\"p\":\"7\",\"note\":null}");
	assert_dead_detail(f, "[\"5\"]", "upsert", "row (id=5): v 66 is reserved",
			   "{\"id\":\"5\",\"v\":\"66\",\"p\":null,\"note\":null}");
	assert_dead_detail(f, "[\"x6\"]", "upsert", "row (id=x6): datatype mismatch",
			   "{\"id\":\"x6\",\"v\":\"6\",\"p\":null,\"note\":null}");
	assert_dead_detail(f, "[\"7\"]", "upsert",
			   "row (id=7): column 'p': 9007199254740993 cannot be stored exactly in "
			   "a REAL column",
			   "{\"id\":\"7\",\"v\":\"7\",\"p\":\"9007199254740993\",\"note\":null}");
	assert_position(f, f->ctx.epoch, "{\"b\":1}");
	lk_rows_release(&up);
}

/*
 * A value the target cannot hold exactly is refused while the batch is encoded: a dead
 * letter (LK_ERR_VALUE's 22003) without a round trip, so without a bisection.
 */
static void refused_value_needs_no_bisection(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, "CREATE TABLE t (id INTEGER PRIMARY KEY, v REAL, p INTEGER, note TEXT)", false);
	lk_rows_init(&up, NCOLS);
	add_int(&up, 1, 1);
	add(&up, "2", "9007199254740993", NULL, NULL); /* 2^53 + 1 into REAL */
	add_int(&up, 3, 3);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), 0);
	assert_counts(&c, 2, 0, 1);
	assert_target(f, "1,3");
	assert_dead(f, "[\"2\"] upsert 22003 snapshot 1 open");
	assert_dead_detail(f, "[\"2\"]", "upsert",
			   "row (id=2): column 'v': 9007199254740993 cannot be stored exactly in "
			   "a REAL column",
			   "{\"id\":\"2\",\"v\":\"9007199254740993\",\"p\":null,\"note\":null}");
	assert_position(f, f->ctx.epoch, "{\"b\":1}");
	assert_int_equal(f->log.begins, 1);
	assert_int_equal(f->log.savepoints, 0);
	assert_int_equal(f->log.commits, 1);
	lk_rows_release(&up);
}

/* Without a dead-letter queue a rejected row fails the whole batch, unbisected. */
static void without_a_queue_a_rejected_row_fails_the_batch(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, DST_CHECK, false);
	f->ctx.store = NULL; /* what lk_dl_setup not called means */
	lk_rows_init(&up, NCOLS);
	add_int(&up, 1, 1);
	add_int(&up, 2, -2);
	add_int(&up, 3, 3);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_string_equal(err.sqlstate, "23514");
	assert_string_equal(err.msg, "row (id=2): " CHECK_MSG);
	assert_failed(f, &c);
	assert_int_equal(f->log.begins, 1);
	assert_int_equal(f->log.savepoints, 0);
	assert_target(f, "NULL");
	assert_dead(f, "");
	assert_position(f, f->ctx.epoch, "{}");
	lk_rows_release(&up);
}

/* A dead key applied cleanly by a later batch resolves its dead letter. */
static void a_later_clean_apply_resolves_the_dead_letter(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, DST_CHECK, false);
	lk_rows_init(&up, NCOLS);
	add_int(&up, 1, -1);
	add_int(&up, 2, -2);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), 0);
	assert_counts(&c, 0, 0, 2);
	assert_dead(f,
		    "[\"1\"] upsert 23514 snapshot 1 open; [\"2\"] upsert 23514 snapshot 1 open");
	lk_rows_reset(&up);
	add_int(&up, 2, 2); /* fixed at the source */
	assert_int_equal(apply(f, &up, NULL, "{\"b\":2}", &c, &err), 0);
	assert_counts(&c, 1, 0, 0);
	assert_target(f, "2");
	assert_dead(f, "[\"1\"] upsert 23514 snapshot 1 open; "
		       "[\"2\"] upsert 23514 snapshot 1 resolved");
	assert_position(f, f->ctx.epoch, "{\"b\":2}");
	lk_rows_release(&up);
}

/* ---- 2. rejected deletes ---- */

/*
 * A BEFORE DELETE trigger refuses some keys: those deletes become dead letters of kind
 * delete (P0001, the key as row image), the other deletes apply; upserts of the same
 * batch are bisected on their own.
 */
static void rejected_deletes_become_dead_letters(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up, del;

	fx_open(f,
		DST_CHECK ";"
			  "CREATE TRIGGER keep BEFORE DELETE ON t WHEN OLD.id IN (2, 5, 6, 8)"
			  " BEGIN SELECT RAISE(ABORT, 'row is kept'); END;"
			  "INSERT INTO t (id, v) VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5),"
			  " (6, 6), (7, 7), (8, 8)",
		false);
	lk_rows_init(&up, NCOLS);
	lk_rows_init(&del, NCOLS);
	add_int(&up, 10, 10);
	add_int(&up, 11, -11);
	for (int i = 1; i <= 8; i++) { /* deletes carry the key; the rest of the row is NULL */
		char id[8];

		(void)snprintf(id, sizeof(id), "%d", i);
		add(&del, id, NULL, NULL, NULL);
	}
	assert_int_equal(apply(f, &up, &del, "{\"b\":1}", &c, &err), 0);
	assert_counts(&c, 1, 4, 5);
	assert_target(f, "2,5,6,8,10");
	assert_dead(f,
		    "[\"11\"] upsert 23514 snapshot 1 open; "
		    "[\"2\"] delete P0001 snapshot 1 open; [\"5\"] delete P0001 snapshot 1 open; "
		    "[\"6\"] delete P0001 snapshot 1 open; [\"8\"] delete P0001 snapshot 1 open");
	assert_dead_detail(f, "[\"5\"]", "delete", "row (id=5): row is kept", "{\"id\":\"5\"}");
	assert_position(f, f->ctx.epoch, "{\"b\":1}");
	lk_rows_release(&up);
	lk_rows_release(&del);
}

/* Every delete refused: all are dead letters, the position still moves. */
static void all_deletes_rejected(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows del;

	fx_open(f,
		DST_CHECK ";"
			  "CREATE TRIGGER keep BEFORE DELETE ON t"
			  " BEGIN SELECT RAISE(ABORT, 'row is kept'); END;"
			  "INSERT INTO t (id, v) VALUES (1, 1), (2, 2), (3, 3)",
		false);
	lk_rows_init(&del, NCOLS);
	add(&del, "1", NULL, NULL, NULL);
	add(&del, "2", NULL, NULL, NULL);
	add(&del, "3", NULL, NULL, NULL);
	assert_int_equal(apply(f, NULL, &del, "{\"b\":1}", &c, &err), 0);
	assert_counts(&c, 0, 0, 3);
	assert_target(f, "1,2,3");
	assert_dead(f,
		    "[\"1\"] delete P0001 snapshot 1 open; [\"2\"] delete P0001 snapshot 1 open; "
		    "[\"3\"] delete P0001 snapshot 1 open");
	assert_position(f, f->ctx.epoch, "{\"b\":1}");
	lk_rows_release(&del);
}

/* ---- 3. an error raised at COMMIT ---- */

/* A target whose p must name a parent, checked at COMMIT (deferred). */
#define DST_DEFERRED                                                                               \
	"CREATE TABLE parent (id INTEGER PRIMARY KEY);"                                            \
	"INSERT INTO parent VALUES (1);"                                                           \
	"CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER CONSTRAINT v_ok CHECK (v >= 0),"        \
	" p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED, note TEXT)"

/* The rows (1..4, p = 1) with row 3's parent missing, and (bad_check) row 2's v < 0. */
static void deferred_batch(struct lk_rows *up, bool bad_check)
{
	add(up, "1", "1", "1", NULL);
	add(up, "2", bad_check ? "-2" : "2", "1", NULL);
	add(up, "3", "3", "7", NULL); /* no parent 7: fails at COMMIT */
	add(up, "4", "4", "1", NULL);
}

/*
 * The deferred foreign key fails at COMMIT: the batch fails as a whole with the target's
 * error, nothing of it is visible, the position stays, no dead letter; the connection is
 * out of the transaction, and the next batch commits.
 */
static void error_at_commit_fails_the_batch(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, DST_DEFERRED, false);
	run_sql(f->ctx.dst.conn, "PRAGMA foreign_keys = ON");
	lk_rows_init(&up, NCOLS);
	deferred_batch(&up, false);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_non_null(strstr(err.msg, "FOREIGN KEY constraint failed"));
	assert_failed(f, &c);
	assert_int_equal(f->log.commits, 1);
	assert_int_equal(f->log.savepoints, 0);
	assert_target(f, "NULL");
	assert_dead(f, "");
	assert_position(f, f->ctx.epoch, "{}");
	/* the next batch (the parent now there) commits on the same connection */
	run_sql(f->ctx.dst.conn, "INSERT INTO parent VALUES (7)");
	assert_int_equal(apply(f, &up, NULL, "{\"b\":2}", &c, &err), 0);
	assert_counts(&c, 4, 0, 0);
	assert_target(f, "1,2,3,4");
	assert_position(f, f->ctx.epoch, "{\"b\":2}");
	lk_rows_release(&up);
}

/*
 * The same with a row the CHECK rejects: the bisection isolates it, but the batch still
 * fails at COMMIT and is rolled back whole. No dead letter may claim that row was
 * isolated while the rest applied: nothing applied. `same_file`: the state store in the
 * target's file (dead letters inside the batch's transaction).
 */
static void check_error_at_commit_after_bisection(struct fx *f, bool same_file)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_reset(f);
	fx_open(f, DST_DEFERRED, same_file);
	run_sql(f->ctx.dst.conn, "PRAGMA foreign_keys = ON");
	lk_rows_init(&up, NCOLS);
	deferred_batch(&up, true);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_non_null(strstr(err.msg, "FOREIGN KEY constraint failed"));
	assert_failed(f, &c);
	assert_int_equal(f->log.begins, 2); /* row 2 failed the plain attempt: bisected */
	assert_target(f, "NULL");
	assert_position(f, f->ctx.epoch, "{}");
	assert_dead(f, "");
	assert_int_equal(f->ctx.dl_nopen, 0);
	/* fixed: the next try dead-letters row 2 once and commits the rest */
	run_sql(f->ctx.dst.conn, "INSERT INTO parent VALUES (7)");
	assert_int_equal(apply(f, &up, NULL, "{\"b\":2}", &c, &err), 0);
	assert_counts(&c, 3, 0, 1);
	assert_target(f, "1,3,4");
	assert_dead(f, "[\"2\"] upsert 23514 snapshot 1 open");
	assert_position(f, f->ctx.epoch, "{\"b\":2}");
	lk_rows_release(&up);
}

static void error_at_commit_after_bisection(void **state)
{
	check_error_at_commit_after_bisection(*state, false);
	check_error_at_commit_after_bisection(*state, true);
}

/* ---- 4. errors that are not about a row ---- */

/* The target table is gone: the batch fails at once, nothing bisected or committed. */
static void dropped_table_is_not_bisected(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, DST_CHECK, false);
	exec_file(f, "dst.db", "DROP TABLE t");
	lk_rows_init(&up, NCOLS);
	add_int(&up, 1, -1); /* would be a dead letter */
	add_int(&up, 2, 2);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_false(lk_err_is_row_level(&err));
	assert_non_null(strstr(err.msg, "no such table"));
	assert_failed(f, &c);
	assert_int_equal(f->log.begins, 1);
	assert_int_equal(f->log.savepoints, 0);
	assert_int_equal(f->log.commits, 0);
	assert_dead(f, "");
	assert_position(f, f->ctx.epoch, "{}");
	lk_rows_release(&up);
}

/*
 * 16 rows whose notes fill 3/4 of a page each, into a target that may grow by 3 pages
 * (max_page_count): it is full a few rows into the batch. Row `bad` breaks the CHECK.
 */
static void full_batch(struct fx *f, struct lk_rows *up, int bad)
{
	char *pages = query1(f, "dst.db", "PRAGMA page_count");
	char *page_size = query1(f, "dst.db", "PRAGMA page_size");
	size_t len = (size_t)strtoll(page_size, NULL, 10) * 3 / 4;
	char *note = malloc(len + 1);
	char pragma[64];

	assert_non_null(note);
	memset(note, 'n', len);
	note[len] = '\0';
	(void)snprintf(pragma, sizeof(pragma), "PRAGMA max_page_count = %lld",
		       strtoll(pages, NULL, 10) + 3);
	run_sql(f->ctx.dst.conn, pragma);
	for (int i = 1; i <= 16; i++) {
		char id[8];

		(void)snprintf(id, sizeof(id), "%d", i);
		add(up, id, i == bad ? "-1" : "1", NULL, note);
	}
	free(pages);
	free(page_size);
	free(note);
}

/*
 * The target fills up mid-batch (SQLITE_FULL, no SQLSTATE): not bisected, returned at
 * once with the target's error, nothing committed.
 */
static void full_target_mid_batch_is_not_bisected(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, DST_CHECK, false);
	lk_rows_init(&up, NCOLS);
	full_batch(f, &up, 0);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_string_equal(err.sqlstate, "");
	assert_false(err.transient);
	assert_non_null(strstr(err.msg, "database or disk is full"));
	assert_null(strstr(err.msg, "row (id=1)")); /* rows were written before it */
	assert_failed(f, &c);
	assert_int_equal(f->log.begins, 1);
	assert_int_equal(f->log.savepoints, 0);
	assert_int_equal(f->log.commits, 0);
	assert_target(f, "NULL");
	assert_dead(f, "");
	assert_position(f, f->ctx.epoch, "{}");
	lk_rows_release(&up);
}

/*
 * A row-level failure first (row 1), then the target fills up during the bisection: the
 * bisection stops there, the batch fails with the second error, and the row it had
 * already isolated is not recorded (its batch did not commit).
 */
static void full_target_during_bisection_stops_it(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f, DST_CHECK, false);
	lk_rows_init(&up, NCOLS);
	full_batch(f, &up, 1);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_non_null(strstr(err.msg, "database or disk is full"));
	assert_failed(f, &c);
	assert_int_equal(f->log.begins, 2);
	assert_true(f->log.savepoints >= 1);
	assert_int_equal(f->log.commits, 0);
	assert_target(f, "NULL");
	assert_dead(f, "");
	assert_int_equal(f->ctx.dl_nopen, 0);
	assert_position(f, f->ctx.epoch, "{}");
	lk_rows_release(&up);
}

/*
 * A transient error mid-batch: the upserts are written, then the deletes fire a trigger
 * writing table `side`, on which another connection of a shared cache holds a read lock
 * (SQLITE_LOCKED, transient; a shared cache takes a statement's table locks when it
 * starts, so the conflict is the first delete's). bad_upsert: an upsert is rejected
 * first, so the lock is met during the bisection. Either way nothing is bisected past
 * it: the error comes back transient, nothing committed, no dead letter; with the lock
 * gone the same batch commits.
 */
static void check_transient_lock_mid_batch(struct fx *f, bool bad_upsert)
{
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_conn *reader;
	struct lk_rows up, del;

	fx_reset(f);
	assert_int_equal(sqlite3_enable_shared_cache(1), SQLITE_OK);
	fx_open(f,
		DST_CHECK ";CREATE TABLE side (id INTEGER);"
			  "CREATE TRIGGER log_delete BEFORE DELETE ON t"
			  " BEGIN INSERT INTO side VALUES (OLD.id); END;"
			  "INSERT INTO t (id, v) VALUES (7, 7), (8, 8)",
		false);
	reader = open_file(f, "dst.db");
	assert_int_equal(sqlite3_enable_shared_cache(0), SQLITE_OK);
	run_sql(reader, "BEGIN; SELECT count(*) FROM side");
	lk_rows_init(&up, NCOLS);
	lk_rows_init(&del, NCOLS);
	for (int i = 1; i <= 6; i++)
		add_int(&up, i, bad_upsert && i == 2 ? -2 : i);
	add(&del, "7", NULL, NULL, NULL);
	add(&del, "8", NULL, NULL, NULL);
	assert_int_equal(apply(f, &up, &del, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_true(err.transient);
	assert_false(lk_err_is_row_level(&err));
	assert_string_equal(err.msg, "row (id=7): database table is locked: side");
	assert_failed(f, &c);
	/* bad_upsert: one plain attempt, then the bisection of the upserts (1 savepoint for
	 * the whole list, 2 x 3 below it) and of the deletes, which stops at the first */
	assert_int_equal(f->log.begins, bad_upsert ? 2 : 1);
	assert_int_equal(f->log.savepoints, bad_upsert ? 8 : 0);
	assert_int_equal(f->log.commits, 0);
	assert_target(f, "7,8");
	assert_dead(f, "");
	assert_int_equal(f->ctx.dl_nopen, 0);
	assert_position(f, f->ctx.epoch, "{}");
	run_sql(reader, "COMMIT");
	lk_sqlite_ops.close(reader);
	assert_int_equal(apply(f, &up, &del, "{\"b\":2}", &c, &err), 0);
	assert_counts(&c, bad_upsert ? 5 : 6, 2, bad_upsert ? 1 : 0);
	assert_target(f, bad_upsert ? "1,3,4,5,6" : "1,2,3,4,5,6");
	assert_dead(f, bad_upsert ? "[\"2\"] upsert 23514 snapshot 1 open" : "");
	assert_position(f, f->ctx.epoch, "{\"b\":2}");
	lk_rows_release(&up);
	lk_rows_release(&del);
}

static void transient_lock_mid_batch_is_not_bisected(void **state)
{
	check_transient_lock_mid_batch(*state, false);
	check_transient_lock_mid_batch(*state, true);
}

/*
 * A trigger's RAISE(ROLLBACK) ends the whole transaction (docs/dead-letters.md, limits):
 * the bisection cannot go on under a savepoint, so the batch fails, nothing committed.
 */
static void raise_rollback_fails_the_batch(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up;

	fx_open(f,
		DST_CHECK ";CREATE TRIGGER stop BEFORE INSERT ON t WHEN NEW.id = 3"
			  " BEGIN SELECT RAISE(ROLLBACK, 'never 3'); END",
		false);
	lk_rows_init(&up, NCOLS);
	for (int i = 1; i <= 4; i++)
		add_int(&up, i, i);
	assert_int_equal(apply(f, &up, NULL, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_SQLITE);
	assert_non_null(strstr(err.msg, "rolled back the whole transaction"));
	assert_failed(f, &c);
	assert_target(f, "NULL");
	assert_dead(f, "");
	assert_position(f, f->ctx.epoch, "{}");
	lk_rows_release(&up);
}

/* ---- 5. lk_err_is_row_level ---- */

static void row_level_classification(void **state)
{
	static const struct {
		enum lk_errcode code;
		const char *sqlstate;
		bool transient, want;
	} cases[] = {
		/* PostgreSQL: data exceptions, integrity constraints, RAISE */
		{LK_ERR_PG, "22001", false, true}, /* string_data_right_truncation */
		{LK_ERR_PG, "22003", false, true}, /* numeric_value_out_of_range */
		{LK_ERR_PG, "22021", false, true}, /* character_not_in_repertoire (NUL) */
		{LK_ERR_PG, "22P02", false, true}, /* invalid_text_representation */
		{LK_ERR_PG, "22007", false, true}, /* invalid_datetime_format */
		{LK_ERR_PG, "23000", false, true},
		{LK_ERR_PG, "23502", false, true}, /* not_null_violation */
		{LK_ERR_PG, "23503", false, true}, /* foreign_key_violation */
		{LK_ERR_PG, "23505", false, true}, /* unique_violation */
		{LK_ERR_PG, "23514", false, true}, /* check_violation */
		{LK_ERR_PG, "23P01", false, true}, /* exclusion_violation */
		{LK_ERR_PG, "P0001", false, true}, /* raise_exception */
		/* PostgreSQL: not about a row */
		{LK_ERR_PG, "P0002", false, false}, /* no_data_found */
		{LK_ERR_PG, "P0003", false, false}, /* too_many_rows */
		{LK_ERR_PG, "P0004", false, false}, /* assert_failure */
		{LK_ERR_PG, "42P01", false, false}, /* undefined_table */
		{LK_ERR_PG, "42703", false, false}, /* undefined_column */
		{LK_ERR_PG, "42501", false, false}, /* insufficient_privilege */
		{LK_ERR_PG, "25P02", false, false}, /* in_failed_sql_transaction */
		{LK_ERR_PG, "57014", false, false}, /* query_canceled (statement timeout) */
		{LK_ERR_PG, "40001", true, false},  /* serialization_failure */
		{LK_ERR_PG, "40P01", true, false},  /* deadlock_detected */
		{LK_ERR_PG, "08006", true, false},  /* connection_failure */
		{LK_ERR_PG, "57P01", true, false},  /* admin_shutdown */
		{LK_ERR_PG, "53100", true, false},  /* disk_full */
		{LK_ERR_PG, "", true, false},	    /* connection lost, no SQLSTATE */
		{LK_ERR_PG, "", false, false},
		{LK_ERR_PG, "23505", true, false}, /* never true when transient */
		{LK_ERR_PG, "22003", true, false},
		/* SQLite, with the connector's mapped SQLSTATEs */
		{LK_ERR_SQLITE, "23514", false, true},	/* CHECK */
		{LK_ERR_SQLITE, "23502", false, true},	/* NOT NULL */
		{LK_ERR_SQLITE, "23505", false, true},	/* UNIQUE, PRIMARY KEY */
		{LK_ERR_SQLITE, "23503", false, true},	/* FOREIGN KEY */
		{LK_ERR_SQLITE, "23000", false, true},	/* another constraint */
		{LK_ERR_SQLITE, "P0001", false, true},	/* RAISE(ABORT) */
		{LK_ERR_SQLITE, "22P02", false, true},	/* datatype mismatch */
		{LK_ERR_SQLITE, "22001", false, true},	/* too big */
		{LK_ERR_SQLITE, "", false, false},	/* no such table, disk full, ... */
		{LK_ERR_SQLITE, "", true, false},	/* SQLITE_BUSY, SQLITE_LOCKED */
		{LK_ERR_SQLITE, "57014", false, false}, /* interrupted at the deadline */
		{LK_ERR_SQLITE, "23505", true, false},
		/* lockstep's own refusal of a value, whatever its SQLSTATE */
		{LK_ERR_VALUE, "22003", false, true},
		{LK_ERR_VALUE, "22021", false, true},
		{LK_ERR_VALUE, "", false, true},
		/* other codes never, even with a row-level SQLSTATE */
		{LK_OK, "", false, false},
		{LK_ERR_SCHEMA, "23505", false, false},
		{LK_ERR_FENCED, "23505", false, false},
		{LK_ERR_FENCED, "", false, false},
		{LK_ERR_PERMISSION, "42501", false, false},
		{LK_ERR_IO, "22003", false, false},
		{LK_ERR_UNAVAILABLE, "", true, false},
		{LK_ERR_INTERNAL, "P0001", false, false},
		{LK_ERR_CONFLICT, "23505", false, false},
		{LK_ERR_NOMEM, "", false, false},
		{LK_ERR_CANCELLED, "", false, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lk_err e = LK_ERR_INIT;

		lk_err_set(&e, cases[i].code, "case %zu", i);
		e.transient = cases[i].transient;
		(void)snprintf(e.sqlstate, sizeof(e.sqlstate), "%s", cases[i].sqlstate);
		if (lk_err_is_row_level(&e) != cases[i].want)
			fail_msg("case %zu: %s sqlstate '%s'%s: want %s", i,
				 lk_err_code_name(cases[i].code), cases[i].sqlstate,
				 cases[i].transient ? " transient" : "",
				 cases[i].want ? "row-level" : "not row-level");
	}
}

/* ---- 6. fencing ---- */

/*
 * The position row holds a newer epoch (another holder sealed after us): the batch is
 * refused with LK_ERR_FENCED before any row is written; no dead letter either, although
 * the batch holds rows the target would reject.
 */
static void stale_epoch_is_refused(void **state)
{
	struct fx *f = *state;
	struct lk_err err = LK_ERR_INIT;
	struct lk_apply_counts c;
	struct lk_rows up, del;
	char sql[160];

	fx_open(f, DST_CHECK ";INSERT INTO t (id, v) VALUES (7, 7)", false);
	(void)snprintf(sql, sizeof(sql),
		       "UPDATE lockstep_sync_position SET epoch = %lld, pos = '{\"newer\":1}'"
		       " WHERE job = 'j'",
		       (long long)f->ctx.epoch + 1);
	exec_file(f, "dst.db", sql);
	lk_rows_init(&up, NCOLS);
	lk_rows_init(&del, NCOLS);
	add_int(&up, 1, 1);
	add_int(&up, 2, -2); /* would be a dead letter */
	add(&del, "7", NULL, NULL, NULL);
	assert_int_equal(apply(f, &up, &del, "{\"b\":1}", &c, &err), -1);
	assert_int_equal(err.code, LK_ERR_FENCED);
	assert_false(lk_err_is_row_level(&err));
	assert_failed(f, &c);
	assert_int_equal(f->log.begins, 1);
	assert_int_equal(f->log.savepoints, 0);
	assert_int_equal(f->log.commits, 0);
	assert_target(f, "7");
	assert_dead(f, "");
	assert_position(f, f->ctx.epoch + 1, "{\"newer\":1}");
	/* the same epoch as ours is still ours */
	(void)snprintf(sql, sizeof(sql),
		       "UPDATE lockstep_sync_position SET epoch = %lld WHERE job = 'j'",
		       (long long)f->ctx.epoch);
	exec_file(f, "dst.db", sql);
	assert_int_equal(apply(f, &up, &del, "{\"b\":2}", &c, &err), 0);
	assert_counts(&c, 1, 1, 1);
	assert_target(f, "1");
	assert_position(f, f->ctx.epoch, "{\"b\":2}");
	lk_rows_release(&up);
	lk_rows_release(&del);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(clean_batch_is_not_bisected, setup, teardown),
		cmocka_unit_test_setup_teardown(rejected_upserts_at_scattered_positions, setup,
						teardown),
		cmocka_unit_test_setup_teardown(each_rejection_keeps_its_sqlstate_and_message,
						setup, teardown),
		cmocka_unit_test_setup_teardown(refused_value_needs_no_bisection, setup, teardown),
		cmocka_unit_test_setup_teardown(without_a_queue_a_rejected_row_fails_the_batch,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_later_clean_apply_resolves_the_dead_letter, setup,
						teardown),
		cmocka_unit_test_setup_teardown(rejected_deletes_become_dead_letters, setup,
						teardown),
		cmocka_unit_test_setup_teardown(all_deletes_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(error_at_commit_fails_the_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(error_at_commit_after_bisection, setup, teardown),
		cmocka_unit_test_setup_teardown(dropped_table_is_not_bisected, setup, teardown),
		cmocka_unit_test_setup_teardown(full_target_mid_batch_is_not_bisected, setup,
						teardown),
		cmocka_unit_test_setup_teardown(full_target_during_bisection_stops_it, setup,
						teardown),
		cmocka_unit_test_setup_teardown(transient_lock_mid_batch_is_not_bisected, setup,
						teardown),
		cmocka_unit_test_setup_teardown(raise_rollback_fails_the_batch, setup, teardown),
		cmocka_unit_test(row_level_classification),
		cmocka_unit_test_setup_teardown(stale_epoch_is_refused, setup, teardown),
	};

	lk_log_setup(LK_LOG_ERROR, LK_LOG_TEXT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
