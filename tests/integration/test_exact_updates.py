"""An update that only changes a value's spelling reaches a PostgreSQL target.

The upsert into a non-empty PostgreSQL target skips rows whose columns are unchanged. A
type's own equality calls some different values equal: numeric 2 and 2.000, citext 'abc'
and 'ABC', float8 0 and -0, jsonb {"a": 1.0} and {"a": 1.00}. Such an update must still be
written. Judged by the text of every row on both sides (md5 of the rows as PostgreSQL
prints them) for PG -> PG, and by the strict cross-engine oracle for SQLite -> PG.
"""
import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_exact_updates")


def pg_to_pg():
    src, dst = L.new_db("exact_src"), L.new_db("exact_dst")
    for db in (src, dst):
        L.execute(db, "CREATE EXTENSION IF NOT EXISTS citext")
        L.execute(db, "CREATE TABLE m (id int PRIMARY KEY, n numeric, c citext, f float8, j jsonb, "
                      "t text COLLATE \"C\")")
    # one change a row: a row with another change would be written whole anyway
    L.execute(src, "INSERT INTO m SELECT i, 2, 'abc', 0, '{\"a\": 1.0}', 'x' FROM generate_series(1, 5) i")
    wd = L.Workdir("exact_pg")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "dst", "table": "m"}, "mode": "snapshot"}})
    cols = ["id", "n", "c", "f", "j", "t"]
    L.sync(t, cfg, "m")
    t.eq(L.pg_md5(dst, "m", ["id"], cols), L.pg_md5(src, "m", ["id"], cols), "pg: the first copy is equal")
    L.execute(src, "UPDATE m SET n = 2.000 WHERE id = 1")
    L.execute(src, "UPDATE m SET c = 'ABC' WHERE id = 2")
    L.execute(src, "UPDATE m SET f = '-0' WHERE id = 3")
    L.execute(src, "UPDATE m SET j = '{\"a\": 1.00}' WHERE id = 4")
    L.sync(t, cfg, "m")
    got = L.execute(dst, "SELECT id, n::text, c::text, f::text, j::text FROM m ORDER BY id")
    want = L.execute(src, "SELECT id, n::text, c::text, f::text, j::text FROM m ORDER BY id")
    t.eq(got, want, "pg: updates that only change the spelling reach the target")
    t.eq(L.pg_md5(dst, "m", ["id"], cols), L.pg_md5(src, "m", ["id"], cols), "pg: md5 oracle after the update")


def sqlite_to_pg():
    wd = L.Workdir("exact_lite")
    c = sqlite3.connect(wd.file("src.db"))
    c.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, n NUMERIC TEXT, s TEXT)")
    c.execute("INSERT INTO m VALUES (1, '1.50', 'abc'), (2, '2', 'x')")
    c.commit()
    dst = L.new_db("exact_lite_dst")
    cfg = L.sync_config(wd, {"src": "sqlite:" + wd.file("src.db"), "dst": dst},
                        {"m": {"source": {"db": "src", "table": "m", "key": ["id"]},
                               "target": {"db": "dst", "table": "m", "create": True}, "mode": "snapshot"}})
    L.sync(t, cfg, "m")
    c.execute("UPDATE m SET n = '1.5' WHERE id = 1")
    c.execute("UPDATE m SET n = '2.000' WHERE id = 2")
    c.commit()
    c.close()
    L.sync(t, cfg, "m")
    t.eq(L.execute(dst, "SELECT id, n::text FROM m ORDER BY id"), [(1, "1.5"), (2, "2.000")],
         "sqlite -> pg: a numeric whose scale changed is updated")
    a = L.rows_canonical("sqlite:" + wd.file("src.db"), "m", ["id"])
    b = L.rows_canonical(dst, "m", ["id"])
    diff = L.compare_rows(a, b)
    t.eq(diff, [], "sqlite -> pg: the cross-engine oracle finds no difference", L.describe_diff(a, b, diff))


t.case(pg_to_pg)
t.case(sqlite_to_pg)
t.finish()
