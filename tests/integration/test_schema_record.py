"""test_schema_record - the record of the columns a job last followed (docs/schema-changes.md)
never lets a target end different while lockstep reports success (issue 18, found in
review).

On a real PostgreSQL source and target, poll jobs, judged by the md5 oracle
(lktest.pg_md5) over the source's current columns:

- no_record: a job whose state store has no record yet (an upgrade, a new state store), a
  column added to the source, the job stops (schema_changes: stop, the user's table), the
  user adds the column to the target: every row already there gets its value.
- swapped: two source columns swap names in one transaction (a -> tmp, b -> a, tmp -> b):
  the target's columns hold the values of the source's columns of the same names.
"""

import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_schema_record")


sql = L.sql  # lktest.sql: each statement in its own transaction


def setup(name, target_sql=None):
    w = L.Workdir(name)
    src, dst = L.new_db(name + "_s"), L.new_db(name + "_t")
    sql(src, "CREATE TABLE items (id int PRIMARY KEY, a int, b int, "
        "updated_at timestamptz NOT NULL DEFAULT '2020-01-01')",
        "INSERT INTO items (id, a, b) SELECT i, i, -i FROM generate_series(1, 100) i")
    if target_sql:
        sql(dst, target_sql)
    job = {"source": {"db": "src", "table": "items"}, "mode": "poll", "cursor": "updated_at",
           "target": {"db": "dst", "table": "items", "create": target_sql is None}}
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {"items": job})
    return w, src, dst, cfg


def same(src, dst, what):
    cols = [r[0] for r in L.execute(src, "SELECT attname FROM pg_attribute WHERE attrelid = "
                                    "'items'::regclass AND attnum > 0 AND NOT attisdropped "
                                    "ORDER BY attnum")]
    t.eq(L.pg_md5(dst, "items", ["id"], cols), L.pg_md5(src, "items", ["id"], cols),
         "%s: the target equals the source over its current columns (md5 oracle)" % what)


def test_no_record():
    w, src, dst, cfg = setup("rec_none", "CREATE TABLE items (id int PRIMARY KEY, a int, b int, "
                             "updated_at timestamptz NOT NULL)")
    L.sync(t, cfg, "items")
    c = sqlite3.connect(w.file("state.db"))  # as a version before the record left it
    c.execute("DELETE FROM lockstep_meta WHERE key LIKE 'schema:%'")
    c.commit()
    c.close()
    sql(src, "ALTER TABLE items ADD COLUMN c int DEFAULT 7")
    _, _, err = L.sync(t, cfg, "items", expect=1)
    t.check("column \"c\"" in err and "schema_changes: stop" in err,
            "no_record: the job stops on the added column", err[-2000:])
    sql(dst, "ALTER TABLE items ADD COLUMN c int")
    L.sync(t, cfg, "items")
    same(src, dst, "no_record, the column added to the target by hand")


def test_swapped():
    w, src, dst, cfg = setup("rec_swap")
    L.sync(t, cfg, "items")
    sql(src, "BEGIN", "ALTER TABLE items RENAME COLUMN a TO tmp",
        "ALTER TABLE items RENAME COLUMN b TO a", "ALTER TABLE items RENAME COLUMN tmp TO b",
        "COMMIT")
    L.sync(t, cfg, "items")
    same(src, dst, "swapped")


t.case(test_no_record)
t.case(test_swapped)
t.finish()
