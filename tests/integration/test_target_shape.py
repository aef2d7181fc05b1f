"""test_target_shape - what a target table can hold, decided before any row moves (issue 18:
`deletes: soft:COL` with `create: true`, combinations that can never work, columns the
target computes itself).

On real PostgreSQL clusters and real SQLite files, judged by the md5 oracle
(lktest.pg_md5) and the cross-engine oracle (lktest.rows_canonical + compare_rows):

- soft_create: `create: true` with `deletes: soft:deleted_at` makes the column (PostgreSQL
  and SQLite targets); a row deleted on the source is kept on the target with the time of
  its delete, the others equal the source.
- soft_unfit: `deletes: soft:COL` naming a synced boolean column, or a target soft column
  that is not a time: check-config and the run refuse it with one message naming the
  column, and nothing is written.
- generated: a target made by the user with `GENERATED ALWAYS AS (...) STORED` (PostgreSQL)
  or a generated column (SQLite): the job leaves it out and the target computes it; every
  other column equals the source.
- identity: a synced non-key target column GENERATED ALWAYS AS IDENTITY stops the job with
  the statement that fixes it.
"""

import lktest as L

L.require_pg()
t = L.Suite("test_target_shape")


sql = L.sql  # lktest.sql: each statement in its own transaction


def sqlite(path, *stmts):
    import sqlite3
    c = sqlite3.connect(path)
    try:
        for s in stmts:
            c.execute(s)
        c.commit()
    finally:
        c.close()


def source(name, extra=""):
    src = L.new_db(name + "_s")
    sql(src, "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL%s)" % extra,
        "INSERT INTO items (id, v) SELECT i, 'v ' || i FROM generate_series(1, 50) i")
    return src


def test_soft_create():
    w = L.Workdir("shape_soft")
    src = source("shape_soft")
    dst, lite = L.new_db("shape_soft_t"), w.file("t.db")
    jobs = dict((n, {"source": {"db": "src", "table": "items"}, "mode": "realtime",
                     "target": {"db": db, "table": "items", "create": True,
                                "deletes": "soft:deleted_at"}})
                for n, db in (("pg", "dst"), ("lite", "lite")))
    cfg = L.sync_config(w, {"src": src, "dst": dst, "lite": "sqlite:" + lite}, jobs)
    for job in ("pg", "lite"):
        L.sync(t, cfg, job)
    sql(src, "DELETE FROM items WHERE id IN (3, 4)", "UPDATE items SET v = 'u' WHERE id = 5")
    for job in ("pg", "lite"):
        L.sync(t, cfg, job)
    live = "id NOT IN (3, 4)"
    t.eq(L.pg_md5(dst, "items", ["id"], ["id", "v"], where=live + " AND deleted_at IS NULL"),
         L.pg_md5(src, "items", ["id"], ["id", "v"]),
         "soft_create PG: the live rows equal the source (md5 oracle)")
    try:
        dead = L.scalar(dst, "SELECT count(*) FROM items WHERE id IN (3, 4) AND deleted_at "
                        "BETWEEN now() - interval '1 hour' AND now()")
    except L.psycopg2.Error as e:
        dead = str(e)
    t.eq(dead, 2, "soft_create PG: the deleted rows are kept with the time of their delete")
    a = L.rows_canonical(src, "items", ["id"], ["id", "v"])
    try:
        b, gone = L.rows_canonical("sqlite:" + lite, "items", ["id"], ["id", "v"],
                                   where="deleted_at IS NULL"), None
    except Exception as e:  # the old shape: no deleted_at column
        b, gone = None, str(e)
    diff = L.compare_rows(a, b) if b is not None else ["?"]
    t.check(not diff, "soft_create SQLite: the live rows equal the source (cross-engine oracle)",
            gone if b is None else L.describe_diff(a, b, diff))
    import sqlite3
    try:
        c = sqlite3.connect(lite)
        n = c.execute("SELECT count(*) FROM items WHERE id IN (3, 4) AND deleted_at IS NOT NULL"
                      ).fetchone()[0]
        c.close()
    except sqlite3.Error as e:
        n = str(e)
    t.eq(n, 2, "soft_create SQLite: the deleted rows are kept with the time of their delete")


def test_soft_unfit():
    w = L.Workdir("shape_unfit")
    src = source("shape_unfit", ", deleted boolean")
    dst = L.new_db("shape_unfit_t")
    sql(dst, "CREATE TABLE mine (id int PRIMARY KEY, v text, gone boolean)")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {
        "synced": {"source": {"db": "src", "table": "items"},
                   "target": {"db": "dst", "table": "items", "create": True,
                              "deletes": "soft:deleted"}},
        "target_bool": {"source": {"db": "src", "table": "items", "columns": ["id", "v"]},
                        "target": {"db": "dst", "table": "mine", "deletes": "soft:gone"}}})
    rc, out, err = L.run_lockstep(["check-config"], cfg)
    t.check(rc != 0 and "column 'deleted' of type bool" in err + out
            and "column 'gone' of type boolean" in err + out,
            "soft_unfit: check-config refuses both jobs, naming the column",
            L.show(rc, out, err))
    for job, col in (("synced", "'deleted'"), ("target_bool", "'gone'")):
        rc, _, err = L.sync(t, cfg, job, expect=1)
        t.check(col in err and "deletes: soft" in err,
                "soft_unfit: sync %s says why, naming %s" % (job, col), err[-2000:])
    t.eq(L.scalar(dst, "SELECT count(*) FROM mine"), 0, "soft_unfit: nothing was written")


def test_generated():
    w = L.Workdir("shape_gen")
    src = source("shape_gen", ", g int")
    sql(src, "UPDATE items SET g = -id")
    dst, lite = L.new_db("shape_gen_t"), w.file("t.db")
    sql(dst, "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, "
        "g int GENERATED ALWAYS AS (id * 3) STORED)")
    sqlite(lite, "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL, "
           "g INTEGER GENERATED ALWAYS AS (id * 3) STORED)")
    jobs = dict((n, {"source": {"db": "src", "table": "items"},
                     "target": {"db": db, "table": "items"}})
                for n, db in (("pg", "dst"), ("lite", "lite")))
    cfg = L.sync_config(w, {"src": src, "dst": dst, "lite": "sqlite:" + lite}, jobs)
    for job in ("pg", "lite"):
        L.sync(t, cfg, job)
    t.eq(L.pg_md5(dst, "items", ["id"], ["id", "v"]), L.pg_md5(src, "items", ["id"], ["id", "v"]),
         "generated PG: every written column equals the source (md5 oracle)")
    t.eq(L.scalar(dst, "SELECT count(*) FROM items WHERE g = id * 3"), 50,
         "generated PG: the target computed its generated column")
    a = L.rows_canonical(src, "items", ["id"], ["id", "v"])
    b = L.rows_canonical("sqlite:" + lite, "items", ["id"], ["id", "v"])
    diff = L.compare_rows(a, b)
    t.check(not diff, "generated SQLite: every written column equals the source (cross-engine "
            "oracle)", L.describe_diff(a, b, diff))


def test_identity():
    w = L.Workdir("shape_idt")
    src = source("shape_idt", ", n int")
    sql(src, "UPDATE items SET n = id * 10")
    dst = L.new_db("shape_idt_t")
    sql(dst, "CREATE TABLE items (id int PRIMARY KEY, v text, n int GENERATED ALWAYS AS IDENTITY)")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {
        "idt": {"source": {"db": "src", "table": "items"},
                "target": {"db": "dst", "table": "items"}}})
    rc, _, err = L.sync(t, cfg, "idt", expect=1)
    t.check("'n' GENERATED ALWAYS AS IDENTITY" in err and "SET GENERATED BY DEFAULT" in err,
            "identity: the job stops naming the column and the statement that fixes it",
            err[-2000:])
    sql(dst, "ALTER TABLE items ALTER COLUMN n SET GENERATED BY DEFAULT")
    L.sync(t, cfg, "idt")
    t.eq(L.pg_md5(dst, "items", ["id"]), L.pg_md5(src, "items", ["id"]),
         "identity: once BY DEFAULT, the target equals the source (md5 oracle)")


t.case(test_soft_create)
t.case(test_soft_unfit)
t.case(test_generated)
t.case(test_identity)
t.finish()
