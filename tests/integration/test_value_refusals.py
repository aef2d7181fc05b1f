"""A value the target cannot hold exactly stops the run with its key and column named.

NaN into SQLite (which would store NULL), text with a NUL byte into PostgreSQL (which
cannot store it), and a numeric with more digits than a double into an SQLite REAL
column. Nothing is silently coerced: the rows of the failing batch are not committed,
the run exits 1, and after the bad value is fixed the next run completes and verify
finds the tables equal.
"""
import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_value_refusals")


def test_nan_into_sqlite():
    src = L.new_db("nan_src")
    L.execute(src, "CREATE TABLE m (id int PRIMARY KEY, v double precision)")
    L.execute(src, "INSERT INTO m SELECT i, i / 4.0 FROM generate_series(1, 100) i")
    L.execute(src, "UPDATE m SET v = 'NaN' WHERE id = 42")
    w = L.Workdir("nan")
    cfg = L.sync_config(w, {"src": src, "lite": "sqlite:" + w.file("t.db")},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "lite", "create": True}}})
    rc, out, err = L.run_lockstep(["sync", "m"], cfg)
    t.eq(rc, 1, "NaN into SQLite: the run fails", L.show(rc, out, err))
    t.check("id=42" in err and "'v'" in err and "NaN" in err,
            "the message names the key (id=42), the column and the value", L.show(rc, out, err))
    c = sqlite3.connect(w.file("t.db"))
    nulls = c.execute("SELECT count(*) FROM m WHERE v IS NULL").fetchone()[0]
    c.close()
    t.eq(nulls, 0, "no NaN was stored as NULL")
    L.execute(src, "UPDATE m SET v = 0 WHERE id = 42")
    rc, s, _ = L.sync(t, cfg, "m")
    L.verify(t, cfg, "m", expect=0)


def test_nul_text_into_postgres():
    dst = L.new_db("nul_dst")
    w = L.Workdir("nul")
    lite = w.file("s.db")
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    c.executemany("INSERT INTO notes VALUES (?, ?)", [(i, "note %d" % i) for i in range(1, 51)])
    c.execute("UPDATE notes SET body = 'bad' || char(0) || 'byte' WHERE id = 7")
    c.commit()
    c.close()
    cfg = L.sync_config(w, {"lite": "sqlite:" + lite, "dst": dst},
                        {"notes": {"source": {"db": "lite", "table": "notes"},
                                   "target": {"db": "dst", "create": True}}})
    rc, out, err = L.run_lockstep(["sync", "notes"], cfg)
    t.eq(rc, 1, "text with a NUL byte into PostgreSQL: the run fails", L.show(rc, out, err))
    t.check("id=7" in err and "'body'" in err and "NUL" in err,
            "the message names the key (id=7) and the column", L.show(rc, out, err))
    t.eq(L.count_rows(dst, "notes"), 0, "the failing batch committed nothing")
    c = sqlite3.connect(lite)
    c.execute("UPDATE notes SET body = 'fixed' WHERE id = 7")
    c.commit()
    c.close()
    rc, s, _ = L.sync(t, cfg, "notes")
    t.eq(L.count_rows(dst, "notes"), 50, "after the fix every row is copied")
    L.verify(t, cfg, "notes", expect=0)


def test_numeric_precision_into_real():
    src = L.new_db("num_src")
    L.execute(src, "CREATE TABLE p (id int PRIMARY KEY, amount numeric)")
    L.execute(src, "INSERT INTO p VALUES (1, 1.5), (2, 12345678901234567890.123456789)")
    w = L.Workdir("num")
    lite = w.file("t.db")
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, amount REAL)")
    c.commit()
    c.close()
    cfg = L.sync_config(w, {"src": src, "lite": "sqlite:" + lite},
                        {"p": {"source": {"db": "src", "table": "p"}, "target": {"db": "lite"}}})
    rc, out, err = L.run_lockstep(["sync", "p"], cfg)
    t.eq(rc, 1, "a numeric a double cannot hold, into REAL: the run fails", L.show(rc, out, err))
    t.check("id=2" in err and "'amount'" in err, "the message names the key and the column",
            L.show(rc, out, err))


t.case(test_nan_into_sqlite)
t.case(test_nul_text_into_postgres)
t.case(test_numeric_precision_into_real)
t.finish()
